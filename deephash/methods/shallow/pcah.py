"""PCA hashing: the sign of the top principal components.

The PCAH baseline of Wang, Kumar & Chang, "Semi-supervised hashing for large-scale
search" (TPAMI 2012) and Gong & Lazebnik (CVPR 2011, Sec. 2): ``W`` = the ``k`` leading
eigenvectors of the data covariance, ``h(x) = sgn(W^T (x - mu))``.
"""

from __future__ import annotations

from deephash.methods.base import register
from deephash.methods.shallow._linalg import pca
from deephash.methods.shallow._linear import LinearHash


@register("pcah", family="shallow")
class PCAH(LinearHash):
    """``h(x) = sgn(W^T (x - mu))``, ``W (d, bits)`` = top-``bits`` eigenvectors of
    ``cov(X)`` (orthonormal columns). Needs ``bits <= d``.

    State: ``mean (d,)``, ``projection (d, bits)``; ``variances (bits,)`` for inspection.
    """

    name = "pcah"
    _state = ("mean", "projection", "variances")

    def fit(self, features, labels=None, seed: int = 0) -> "PCAH":
        x, _ = self._fit_inputs(features, labels)
        d = x.shape[1]
        if self.bits > d:
            raise ValueError(f"pcah: bits ({self.bits}) must be <= the feature dimension ({d})")
        self.mean = x.mean(axis=0)
        self.projection, self.variances = pca(x - self.mean, self.bits)
        return self._finish_fit({})
