"""Reading and validating image files (JPEG, and PNG/GIF/BMP through the same decoder).

Decoding uses TensorFlow's ``tf.io.decode_image`` so that up-front validation and the
tf.data pipelines accept and reject exactly the same files.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str = ""):
        self.path = path
        super().__init__(f"corrupt or unreadable image file {path!r}" + (f": {reason}" if reason else ""))


def decode_file(path: str, channels: int = 3) -> np.ndarray:
    """Decode one image file to uint8 ``(h, w, channels)``.

    FileNotFoundError for a missing file, ``CorruptImageError`` (a ValueError naming the
    file) for one that does not decode.
    """
    import tensorflow as tf

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path!r} does not exist") from None
    if not data:
        raise CorruptImageError(path, "empty file")
    try:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise CorruptImageError(path, e.message.splitlines()[0] if e.message else "") from None
    return image.numpy()


def check_files_exist(paths: Sequence[str], sources: Sequence[str] | None = None) -> None:
    """FileNotFoundError naming the first missing file (and, if given, where it is listed)."""
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            where = f" (listed in {sources[i]})" if sources is not None else ""
            raise FileNotFoundError(f"image file {p!r}{where} does not exist")


def verify_images(paths: Iterable[str], on_corrupt: str = "raise", channels: int = 3) -> list[str]:
    """Decode every file; returns the corrupt ones.

    ``on_corrupt="raise"``: ValueError listing the corrupt files (after checking them all);
    ``"skip"``: log a warning naming them and return the list.
    """
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    bad = []
    for p in paths:
        try:
            decode_file(str(p), channels=channels)
        except CorruptImageError:
            bad.append(str(p))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        if on_corrupt == "raise":
            raise CorruptImageError(bad[0], f"{len(bad)} corrupt image file(s): {shown}")
        log.warning("skipping %d corrupt image file(s): %s", len(bad), shown)
    return bad
