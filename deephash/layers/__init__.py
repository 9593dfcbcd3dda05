"""Custom Keras layers (registered under the "deephash" package for ``load_model``)."""

from deephash.layers.bag_hash import BagHash
from deephash.layers.lrn import LocalResponseNormalization  # noqa: F401  (CNN-F)

__all__ = ["BagHash"]
