"""Checks that the installed TensorFlow / Keras are in the tested range."""

from __future__ import annotations

import os
import warnings

TESTED_TENSORFLOW = ((2, 16), (2, 21))
TESTED_KERAS = ((3, 5), (3, 15))


def _version_tuple(v: str) -> tuple[int, int]:
    parts = v.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def check_tensorflow() -> None:
    """Import TensorFlow and Keras; fail clearly when missing, warn when untested."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "deephash needs TensorFlow: install it with `pip install deephash[cpu]` "
            "(or `deephash[gpu]` on a CUDA machine)"
        ) from e
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"deephash needs the TensorFlow backend of Keras, but KERAS_BACKEND={keras.backend.backend()!r}"
        )
    for name, version, (lo, hi) in (
        ("tensorflow", tf.__version__, TESTED_TENSORFLOW),
        ("keras", keras.__version__, TESTED_KERAS),
    ):
        if not lo <= _version_tuple(version) <= hi:
            warnings.warn(
                f"deephash was tested with {name} {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}, found {version}",
                RuntimeWarning,
                stacklevel=3,
            )
