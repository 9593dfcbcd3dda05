"""CIFAR-10 through tensorflow-datasets, under the DSRH protocol.

All 60,000 images (tfds ``train`` then ``test``, in file order) are pooled; item index
``i`` is the position in that order. Queries: 100 per class (1,000); training: 500 per
class (5,000) from the non-queries; database: the other 59,000 (training included).
The data comes through tensorflow-datasets: ``root`` is a tfds data directory (default:
tfds' standard one, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). When CIFAR-10 is not
prepared there it is downloaded (163 MB) and prepared (about 132 MB) first, unless
downloads are off (``download=False``, ``$DEEPHASH_OFFLINE=1``,
``deephash.downloads.set_network_allowed(False)``): then the error names the command to
run on a machine with internet (see ``deephash.data.tfds_sources``). An explicit ``root``
must exist (an existing copy, or an empty folder to prepare into).
"""

from __future__ import annotations

import os

import numpy as np

from deephash.data.dataset import Dataset, Protocol, assemble
from deephash.data.splits import cache_dir, seeded_split

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _default_root() -> str:
    from deephash.data.tfds_sources import default_data_dir

    return default_data_dir()


def read_cifar10(root: str, download: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 60,000 images (uint8 (n, 32, 32, 3)) and class ids from the tfds data in ``root``,
    prepared there first when missing and downloads are allowed (see module docstring)."""
    import tensorflow_datasets as tfds

    from deephash.data.tfds_sources import ensure_prepared

    try:
        ds = tfds.load(
            "cifar10", split="train+test", data_dir=root, download=False, shuffle_files=False
        )
    except AssertionError:  # tfds signals "not prepared" with an AssertionError
        ensure_prepared(
            "cifar10", root, download=download
        )  # DownloadDisabledError names the command
        ds = tfds.load(
            "cifar10", split="train+test", data_dir=root, download=False, shuffle_files=False
        )
    images, labels = [], []
    for batch in tfds.as_numpy(ds.batch(4096)):
        images.append(batch["image"])
        labels.append(batch["label"])
    if not images:
        raise ValueError(f"the CIFAR-10 data in {root!r} is empty")
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def load_cifar10(
    root: str | None = None,
    seed: int = 0,
    *,
    query_per_class: int = 100,
    train_per_class: int = 500,
    split_dir: str | None = None,
    download: bool | None = None,
) -> Dataset:
    """CIFAR-10 under the DSRH protocol; split files in ``root/deephash_splits/cifar10/seed<seed>``.

    ``download``: None = prepare through tfds when missing unless downloads are switched off;
    False = never download (error naming the command to run elsewhere)."""
    if root is not None:
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"CIFAR-10 data directory {root!r} does not exist: it should hold the prepared "
                "tfds folder cifar10/ (or leave root unset to use tfds' standard cache, "
                "downloading when needed)"
            )
    else:
        root = _default_root()
    raw, class_ids = read_cifar10(root, download=download)
    if class_ids.min() < 0 or class_ids.max() >= 10:
        raise ValueError(
            f"CIFAR-10 labels must be in 0..9, got {class_ids.min()}..{class_ids.max()}"
        )
    labels = np.eye(10, dtype=np.uint8)[class_ids]
    params = dict(
        dataset="cifar10",
        seed=int(seed),
        num_items=int(len(labels)),
        query_per_class=int(query_per_class),
        train_per_class=int(train_per_class),
    )
    directory = split_dir or os.path.join(root, "deephash_splits", "cifar10", f"seed{int(seed)}")
    q, t, d, checksum, directory = seeded_split(
        directory,
        labels,
        seed,
        params,
        fallback_dir=os.path.join(cache_dir(), "cifar10", f"seed{int(seed)}"),
        query_per_class=query_per_class,
        train_per_class=train_per_class,
    )
    protocol = Protocol(
        num_classes=10,
        multilabel=False,
        map_depth=None,
        class_names=CLASS_NAMES,
        description=f"DSRH CIFAR-10: {query_per_class} queries/class, "
        f"{train_per_class} train/class, database = the other images, mAP over the whole "
        "database",
    )
    # raw stays uint8 here: each Split converts only its own subset to float32
    return assemble(
        "cifar10",
        protocol,
        labels,
        q,
        t,
        d,
        checksum,
        images=raw,
        class_ids=class_ids,
        root=root,
        split_dir=directory,
    )
