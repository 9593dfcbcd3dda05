"""deephash: deep supervised hashing and Hamming-space retrieval (TensorFlow 2 / Keras 3).

Importing ``deephash`` registers every custom Keras layer, loss and model, so that
``keras.models.load_model(path)`` works in a fresh process after ``import deephash``.

Layers of the library, bottom up:
``codes`` / ``index`` / ``metrics`` (numpy only) · ``data`` · ``layers``, ``losses``,
``backbones`` · ``training`` · ``methods``.
"""
from deephash._version import __version__
from deephash._compat import check_tensorflow

check_tensorflow()

from deephash import codes, index, io, metrics  # noqa: E402  (numpy-only core)
from deephash import downloads  # noqa: E402  (stdlib only: verified, cached downloads; the no-network switch)
from deephash import data  # noqa: E402
from deephash import layers, losses, backbones  # noqa: E402
from deephash import training  # noqa: E402
from deephash import early_stopping  # noqa: E402
from deephash import methods  # noqa: E402
from deephash.index import HammingIndex, MultiIndexHashing  # noqa: E402

__all__ = [
    "__version__",
    "HammingIndex",
    "MultiIndexHashing",
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
]
