"""Custom Keras layers (registered under the "deephash" package for ``load_model``)."""
from deephash.layers.bag_hash import BagHash

__all__ = ["BagHash"]
