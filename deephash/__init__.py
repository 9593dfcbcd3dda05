"""deephash: deep supervised hashing and Hamming-space retrieval (TensorFlow 2 / Keras 3).

Importing ``deephash`` registers every custom Keras layer, loss and model, so that
``keras.models.load_model(path)`` works in a fresh process after ``import deephash``.

Layers of the library, bottom up:
``codes`` / ``index`` / ``metrics`` (numpy only) · ``data`` · ``layers``, ``losses``,
``backbones`` · ``training`` · ``methods``.
"""

from deephash._compat import check_tensorflow
from deephash._version import __version__

check_tensorflow()

from deephash import (  # noqa: E402  (numpy-only core)  # noqa: E402
    backbones,
    codes,
    data,  # noqa: E402
    downloads,  # noqa: E402  (stdlib only: verified, cached downloads; the no-network switch)
    early_stopping,  # noqa: E402
    index,
    io,
    layers,
    losses,
    methods,  # noqa: E402
    metrics,
    training,  # noqa: E402
)
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
