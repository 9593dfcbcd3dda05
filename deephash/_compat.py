"""TensorFlow / Keras availability: the tested range, and the clear error where they are missing.

``import deephash`` asks :func:`tensorflow_problem` (cheap when TensorFlow is not installed:
no import is attempted). With TensorFlow, :func:`check_tensorflow` imports it and Keras and
warns outside the tested range. Without it, :func:`block_tensorflow_parts` makes importing a
part of the library that needs TensorFlow (``deephash.methods``, ``deephash.data``, ...) fail
with an ``ImportError`` naming the ``deephash[cpu]`` / ``deephash[gpu]`` extras, while the
other parts (``codes``, ``index``, ``metrics``, ``validation``, ``io``, ...) import as usual;
:data:`NEEDS_TENSORFLOW` lists the parts that need it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import warnings

TESTED_TENSORFLOW = ((2, 16), (2, 21))
TESTED_KERAS = ((3, 5), (3, 15))

INSTALL_HINT = (
    "deephash needs TensorFlow: install it with `pip install deephash[cpu]` "
    "(or `deephash[gpu]` on a CUDA machine)"
)

# Parts of deephash that import TensorFlow or Keras (the others use numpy, scipy, numba or
# the standard library only, or reach TensorFlow through one of these).
NEEDS_TENSORFLOW = frozenset(
    {
        "backbones",
        "data",
        "early_stopping",
        "experiment",
        "features",
        "layers",
        "losses",
        "methods",
        "training",
    }
)


def _version_tuple(v: str) -> tuple[int, int]:
    parts = v.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package hidden or broken
        return False


def tensorflow_problem() -> str | None:
    """``None`` when TensorFlow and Keras can be imported (nothing is imported to tell),
    else the message of the error that parts needing them raise."""
    missing = [name for name in ("tensorflow", "keras") if not _installed(name)]
    if missing:
        return f"{INSTALL_HINT}; not found: {', '.join(missing)}"
    return None


def check_tensorflow() -> None:
    """Import TensorFlow and Keras; fail clearly when missing, warn when untested."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from e
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "deephash needs the TensorFlow backend of Keras, but "
            f"KERAS_BACKEND={keras.backend.backend()!r}"
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


class _NeedsTensorFlow(importlib.abc.MetaPathFinder):
    """Import hook, installed only where TensorFlow is missing: importing a part of deephash
    in :data:`NEEDS_TENSORFLOW` (or a module inside one) raises ``ImportError(message)``."""

    def __init__(self, message: str):
        self.message = message

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if parts[0] == "deephash" and len(parts) > 1 and parts[1] in NEEDS_TENSORFLOW:
            raise ImportError(f"{fullname}: {self.message}", name=fullname)
        return None


def block_tensorflow_parts(message: str) -> None:
    """Make the parts of deephash that need TensorFlow fail to import with ``message``
    (once per process; the numpy-only modules are not affected)."""
    if not any(isinstance(f, _NeedsTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NeedsTensorFlow(message))
