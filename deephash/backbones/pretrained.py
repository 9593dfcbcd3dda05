"""Published ImageNet weights of the pretrained backbones: ``weights="imagenet"``.

``resolve(backbone, weights)`` turns ``weights="imagenet"`` (for ``backbones.get`` and the
methods) into the local path of the published file, fetched once into a cache and
verified; ``None`` (random initialisation) and local paths pass through unchanged.
Downloads go through :mod:`deephash.downloads` (verified, atomic, switched off
by ``$DEEPHASH_OFFLINE=1`` or ``--download=false``).

* ``vgg19``: Keras' published file ``vgg19_weights_tf_dim_ordering_tf_kernels.h5``
  (about 549 MB) from the URL that ``keras.applications.VGG19(weights="imagenet")`` uses,
  checked against the md5 Keras publishes for it, cached where Keras caches it
  (``$KERAS_HOME/models`` or ``~/.keras/models``): a copy Keras already fetched is reused.
* ``cnn_f``: MatConvNet's ``imagenet-vgg-f.mat`` from its published location on
  vlfeat.org, cached in ``$DEEPHASH_CACHE/weights`` (default ``~/.cache/deephash/weights``).
  MatConvNet publishes no checksum for it, so a download is accepted only if it parses as
  a MatConvNet simplenn model with CNN-F's layer shapes (conv1 11x11x3x64 ... fc7
  1x1x4096x4096), and its sha256 is then recorded beside it (``.sha256``) and checked on
  every later use. An expected sha256 can be pinned with ``file_hash=`` or
  ``$DEEPHASH_CNN_F_SHA256``; it then replaces the recorded one.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from deephash import downloads

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
CNN_F_SHA256_ENV = "DEEPHASH_CNN_F_SHA256"


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's published weights come from and how they are checked."""

    backbone: str
    url: str
    file_name: str
    file_hash: str | None  # md5 (32 hex) or sha256 (64 hex) as published; None: none published
    approx_size: str  # for messages and docs
    cache: str  # "keras" ($KERAS_HOME/models) or "deephash" ($DEEPHASH_CACHE/weights)
    source: str


# From keras/src/applications/vgg19.py (WEIGHTS_PATH and the file_hash passed to get_file).
VGG19_IMAGENET = PretrainedWeights(
    backbone="vgg19",
    url="https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    file_name="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    file_hash="cbe5617147190e668d6c5d5026f83318",
    approx_size="549 MB",
    cache="keras",
    source="keras.applications.VGG19(weights='imagenet'): Keras' published file and md5",
)
# MatConvNet's pretrained-model page (doc/site/docs/pretrained.md: models/imagenet-vgg-f.mat).
CNN_F_IMAGENET = PretrainedWeights(
    backbone="cnn_f",
    url="http://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat",
    file_name="imagenet-vgg-f.mat",
    file_hash=None,
    approx_size="about 0.24 GB (61 M float32 parameters; not published)",
    cache="deephash",
    source=(
        "MatConvNet pretrained models (Chatfield et al. 2014, 'Return of the Devil'); "
        "no published checksum"
    ),
)
PUBLISHED = {w.backbone: w for w in (VGG19_IMAGENET, CNN_F_IMAGENET)}


def keras_cache_dir() -> str:
    """Keras' download cache: ``$KERAS_HOME`` or ``~/.keras`` (as ``keras.utils.get_file``)."""
    return os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")


def weights_cache_dir() -> str:
    """This library's weights cache: ``$DEEPHASH_CACHE/weights`` (default
    ``~/.cache/deephash/weights``)."""
    root = os.environ.get("DEEPHASH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "deephash"
    )
    return os.path.join(root, "weights")


def cache_path(backbone: str) -> str:
    """Where the published weights of ``backbone`` are (or will be) cached."""
    w = _published(backbone)
    folder = (
        os.path.join(keras_cache_dir(), "models") if w.cache == "keras" else weights_cache_dir()
    )
    return os.path.join(folder, w.file_name)


def fetch(backbone: str, *, file_hash: str | None = None, url: str | None = None) -> str:
    """Local path of ``backbone``'s published ImageNet weights, downloaded and verified on
    first use.

    ``file_hash`` pins an expected sha256/md5 (default: the published one; for ``cnn_f``
    ``$DEEPHASH_CNN_F_SHA256`` or the sha256 recorded at the first download). ``url``
    overrides the published address (a mirror, or a ``file://`` copy).
    """
    w = _published(backbone)
    path = cache_path(backbone)
    expected = file_hash or w.file_hash
    check: Callable[[str], None] | None = None
    record, from_record = None, False
    if w.backbone == "cnn_f":
        expected = expected or os.environ.get(CNN_F_SHA256_ENV) or None
        check = _check_cnn_f_file
        record = path + ".sha256"
        if os.path.isfile(record) and not os.path.isfile(path):
            os.unlink(record)  # recorded for a file that is gone: a new download records its own
        if expected is None and os.path.isfile(record):
            with open(record, encoding="utf-8") as f:
                expected = (f.read().split() or [None])[0]
            from_record = True
    command = (
        f"python -m deephash.backbones.pretrained {w.backbone}   "
        f"(or: curl -L --create-dirs -o {path} {url or w.url})"
    )
    try:
        local = downloads.fetch(
            url or w.url,
            path,
            file_hash=expected,
            check=check,
            what=f"the ImageNet weights of {w.backbone} ({w.file_name}, {w.approx_size})",
            command=command,
        )
    except ValueError as e:
        if record is None:
            raise
        raise ValueError(
            f"{e}. If the published file changed, remove {record} and retry, or pin the new "
            f"sha256 with ${CNN_F_SHA256_ENV}"
        ) from None
    if record is not None and not from_record:  # first download, or a pinned hash: (re)record it
        from deephash.io import atomic_write

        pinned = expected is not None and downloads.hash_algorithm(expected) == "sha256"
        digest = expected.strip().lower() if pinned else downloads.file_digest(local, "sha256")
        with atomic_write(record, "w", encoding="utf-8") as f:
            f.write(f"{digest}  {w.file_name}\n")
        log.info("%s: sha256 %s recorded in %s", w.file_name, digest, record)
    return local


def resolve(backbone: str, weights):
    """``"imagenet"`` -> the local path of the published file (fetched and verified if
    needed); anything else (``None``, a local path) is returned unchanged for the backbone's
    own loader to check."""
    if isinstance(weights, str) and weights.strip().lower() == IMAGENET:
        return fetch(str(backbone).lower())
    return weights


def check_weights_arg(weights: str | None, flag: str = "--weights") -> None:
    """For scripts: accept None, ``imagenet`` or an existing path (FileNotFoundError otherwise)."""
    if weights and weights.strip().lower() != IMAGENET and not os.path.exists(weights):
        raise FileNotFoundError(
            f"{flag}: no file at {weights!r} (or '{IMAGENET}' for the published weights)"
        )


def _published(backbone: str) -> PretrainedWeights:
    key = str(backbone).lower()
    if key not in PUBLISHED:
        raise ValueError(
            f"backbone {backbone!r} has no published ImageNet weights; available: "
            f"{', '.join(sorted(PUBLISHED))}"
        )
    return PUBLISHED[key]


def _check_cnn_f_file(path: str) -> None:
    """Reject a download that is not a MatConvNet simplenn model shaped like CNN-F: conv
    layers conv1..conv5, fc6, fc7 in a consistent channel chain, conv1 11x11 on 3 channels
    at stride 4 (CNN-F's first layer; CNN-M/S start 7x7 at stride 2). The full geometry
    (filter counts, pads, LRN) is checked when the file is loaded into the model."""
    from deephash.backbones.cnn_f import CNN_F_LAYERS, read_matconvnet

    try:
        net = read_matconvnet(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"not a MatConvNet model ({e})") from None
    convs = {layer["name"]: layer for layer in net["layers"] if layer.get("type") == "conv"}
    names = [layer["name"] for layer in CNN_F_LAYERS if layer["type"] == "conv"]
    missing = [n for n in names if n not in convs]
    if missing:
        raise ValueError(
            f"no conv layers {missing} (CNN-F has {names}; the file has {sorted(convs)})"
        )
    conv1 = convs["conv1"]
    if tuple(conv1["filters"].shape[:3]) != (11, 11, 3) or tuple(conv1["stride"]) != (4, 4):
        raise ValueError(
            f"conv1 has {tuple(conv1['filters'].shape)} filters at stride "
            f"{tuple(conv1['stride'])}; "
            "CNN-F has 11x11x3 filters at stride 4"
        )
    for previous, name in itertools.pairwise(names):
        if convs[name]["filters"].shape[2] != convs[previous]["filters"].shape[3]:
            raise ValueError(
                f"{name} reads {convs[name]['filters'].shape[2]} channels, {previous} gives "
                f"{convs[previous]['filters'].shape[3]}"
            )


def main(argv: list[str] | None = None) -> int:
    """``python -m deephash.backbones.pretrained vgg19 cnn_f``: fetch and print the paths."""
    import sys

    names = (argv if argv is not None else sys.argv[1:]) or sorted(PUBLISHED)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in names:
        print(f"{name}: {fetch(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
