"""Locality-sensitive hashing with sign random projections.

Gionis, Indyk & Motwani, "Similarity search in high dimensions via hashing", VLDB 1999;
the sign-random-projection family of Charikar, "Similarity estimation techniques from
rounding algorithms", STOC 2002.
"""

from __future__ import annotations

import numpy as np

from deephash.methods.base import register
from deephash.methods.shallow._linear import LinearHash


@register("lsh", family="shallow")
class LSH(LinearHash):
    """``h_k(x) = sgn(w_k^T (x - mu))`` with ``w_k ~ N(0, I_d)`` drawn independently.

    For two vectors at angle ``theta`` (after centring), each bit collides with
    probability ``1 - theta / pi`` (Charikar 2002, Sec. 3). Learning is only the mean
    ``mu`` (``centre=True``, zero otherwise); the projections are data-independent.

    State: ``mean (d,)``, ``projection (d, bits)``.
    """

    name = "lsh"
    _state = ("mean", "projection")

    def __init__(self, bits: int, centre: bool = True):
        super().__init__(bits, centre=bool(centre))

    def fit(self, features, labels=None, seed: int = 0) -> "LSH":
        x, _ = self._fit_inputs(features, labels)
        rng = np.random.default_rng(seed)
        self.mean = x.mean(axis=0) if self.hp["centre"] else np.zeros(x.shape[1])
        self.projection = rng.standard_normal((x.shape[1], self.bits))
        return self._finish_fit({})
