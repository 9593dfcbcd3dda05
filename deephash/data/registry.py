"""``load(name, ...)`` and ``available()``: the data sets by name."""

from __future__ import annotations

from typing import Callable

from deephash.data.dataset import Dataset
from deephash.validation import check_choice, check_int


def _list_loader(name: str) -> Callable[..., Dataset]:
    def load(root=None, seed=0, source=None, **options):
        from deephash.data.listfile import load_list_dataset
        from deephash.data.tfds_sources import TFDS_NAMES, load_from_tfds

        if source is None:  # no root: the tensorflow-datasets source where there is one
            source = "tfds" if root is None and name in TFDS_NAMES else "lists"
        if source == "tfds":
            return load_from_tfds(name, seed, data_dir=root, **options)
        check_choice(source, ("lists", "tfds"), "source", owner=name)
        return load_list_dataset(name, root, seed, **options)

    return load


def _digits(root=None, seed=0, **options):
    from deephash.data.embedded import load_digits

    return load_digits(root, seed, **options)


def _digits_multi(root=None, seed=0, **options):
    from deephash.data.embedded import load_digits_multi

    return load_digits_multi(root, seed, **options)


def _cifar10(root=None, seed=0, **options):
    from deephash.data.cifar10 import load_cifar10

    return load_cifar10(root, seed, **options)


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits,
    "digits_multi": _digits_multi,
    "cifar10": _cifar10,
    "nuswide21": _list_loader("nuswide21"),
    "imagenet100": _list_loader("imagenet100"),
    "coco": _list_loader("coco"),
}


# Whether each embedded / tfds-only set's protocol is multi-label (the list sets' comes from
# their listfile.SPECS entry); the loaders build their Protocol with the same value.
_MULTILABEL = {"digits": False, "digits_multi": True, "cifar10": False}


def multilabel(name: str) -> bool:
    """Whether data set ``name``'s protocol is multi-label, without loading it (what
    ``load(name).protocol.multilabel`` says). Unknown names raise ValueError."""
    key = _key(name)
    if key in _MULTILABEL:
        return _MULTILABEL[key]
    from deephash.data.listfile import SPECS

    return bool(SPECS[key].multilabel)


def _key(name: str) -> str:
    """The registry key of ``name`` (case-insensitive); ValueError naming the known sets."""
    key = str(name).lower()
    if key not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available())}")
    return key


def available() -> list[str]:
    """Names accepted by ``load``."""
    return list(_LOADERS)


def load(name: str, root: str | None = None, seed: int = 0, **options) -> Dataset:
    """Load data set ``name`` under its paper protocol with the split of ``seed``.

    ``root``: where the data (and the split files, in ``root/deephash_splits/``) live;
    embedded sets need none (their split files go to ``$DEEPHASH_CACHE/splits`` or
    ``~/.cache/deephash/splits``). ``cifar10`` without ``root`` uses tfds' standard cache
    and, like ``coco`` and ``imagenet100`` without ``root`` (or with ``source="tfds"``:
    ``root`` is then the tfds data directory), is prepared through tensorflow-datasets on
    first use (``download=False`` or ``$DEEPHASH_OFFLINE=1`` forbid downloading; see
    ``deephash.data.tfds_sources``). ``options`` are passed to the loader (protocol counts,
    ``split_dir``, ``download``, and for list sets ``image_root``, ``list_file``,
    ``map_depth``, ``check_files``, ``verify_images``). Unknown names raise ValueError.
    """
    key = _key(name)
    seed = check_int(seed, "seed", minimum=0)
    return _LOADERS[key](root=root, seed=seed, **options)
