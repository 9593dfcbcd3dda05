"""Common base of the shallow methods whose codes are linear in the centred features."""

from __future__ import annotations

import numpy as np

from deephash.methods.base import ShallowMethod


class LinearHash(ShallowMethod):
    """Codes ``sgn((x - mu) W)``: subclasses learn ``mean (d,)`` and ``projection (d, bits)``
    in ``fit`` and end it with :meth:`_finish_fit`."""

    def _finish_fit(self, history: dict) -> "LinearHash":
        """Record the training history, mark the method fitted and return it."""
        self.history = history
        self.fitted = True
        return self

    def _project(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) @ self.projection

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])
