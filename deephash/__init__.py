"""deephash: deep supervised hashing and Hamming-space retrieval (TensorFlow 2 / Keras 3).

Layers of the library, bottom up:
``codes`` / ``index`` / ``metrics`` (numpy only) · ``data`` · ``layers``, ``losses``,
``backbones`` · ``training`` · ``methods``.

Subpackages and re-exported names (``deephash.HammingIndex``, ...) are imported lazily, on
first attribute access (PEP 562), so that the numpy-only core (``deephash.codes``,
``deephash.index``, ``deephash.metrics``, ``deephash.validation``, ``deephash.io``) works
without TensorFlow, e.g. to score codes computed with another framework.

Keras registration: where TensorFlow and Keras are installed, ``import deephash`` imports
them and the modules that register custom Keras objects (``layers``, ``losses``,
``backbones``, ``methods``), so that ``keras.models.load_model(path)`` works in a fresh
process after ``import deephash``, as before. Where they are not installed (found without
importing anything), nothing is registered and importing a part that needs TensorFlow
(``deephash.methods``, ``deephash.data``, ...) raises an ``ImportError`` naming the
``deephash[cpu]`` / ``deephash[gpu]`` extras (``deephash._compat``).
"""

from __future__ import annotations

import importlib

from deephash import _compat
from deephash._version import __version__

_SUBMODULES = (
    "backbones",
    "codes",
    "data",
    "downloads",
    "early_stopping",
    "index",
    "io",
    "layers",
    "losses",
    "methods",
    "metrics",
    "training",
)
_REEXPORTS = {"HammingIndex": "index", "MultiIndexHashing": "index"}
# imported by ``import deephash`` where TensorFlow is installed: they register Keras objects
_REGISTERING = ("layers", "losses", "backbones", "methods")

__all__ = ["__version__", *sorted(_REEXPORTS), *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _REEXPORTS:
        module = importlib.import_module(f"{__name__}.{_REEXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _register_or_block() -> None:
    problem = _compat.tensorflow_problem()
    if problem is None:
        try:
            _compat.check_tensorflow()
        except ImportError as e:  # e.g. Keras set to another backend
            problem = str(e)
    if problem is not None:
        _compat.block_tensorflow_parts(problem)
        return
    for name in _REGISTERING:
        importlib.import_module(f"{__name__}.{name}")


_register_or_block()
