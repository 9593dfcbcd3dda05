"""Spectral hashing (SH).

Weiss, Torralba & Fergus, "Spectral hashing", NIPS 2008, Sec. 3-4 (Algorithm, Eq. 6-7):

1. PCA: project the data on its top ``min(bits, d)`` principal directions.
2. Fit a uniform distribution on ``[a_j, b_j]`` (the data range) along each direction.
3. The 1-D Laplacian eigenfunctions of a uniform distribution on ``[a, b]`` are
   ``Phi_k(x) = sin(pi/2 + k pi / (b - a) x)`` (x measured from ``a``) with eigenvalues
   ``lambda_k = 1 - exp(-(eps^2 / 2) |k pi / (b - a)|^2)`` (Eq. 7), ``k = 1, 2, ...``.
   Over all (direction, mode) pairs, pick the ``bits`` with the smallest eigenvalues.
4. Bit = ``sgn(Phi_k(x_j))`` of the picked eigenfunction.

``lambda_k`` is increasing in ``omega^2 = (k pi / (b - a))^2`` for every ``eps`` > 0, so the
ordering (and hence the codes) does not depend on ``eps``; like the authors' code we
order by ``omega^2`` and store it as ``eigenvalues`` (ascending). Ties are broken by
direction, then mode. As in the authors' code the mean is not removed (the shift by
``a_j`` makes it irrelevant) and the range is ``[min - eps_mach, max + eps_mach]``.
"""

from __future__ import annotations

import numpy as np

from deephash.methods.base import ShallowMethod, register
from deephash.methods.shallow._linalg import pca


def candidate_modes(ranges: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (direction, mode k = 1..bits) pairs with ``omega^2 = (k pi / range)^2``,
    sorted ascending (stable: direction, then mode, on ties).

    Returns ``(directions, modes, omega2)`` each of shape ``(len(ranges) * bits,)``.
    """
    dirs, ks = np.meshgrid(np.arange(len(ranges)), np.arange(1, bits + 1), indexing="ij")
    dirs, ks = dirs.ravel(), ks.ravel()
    omega2 = (ks * np.pi / ranges[dirs]) ** 2
    order = np.lexsort((ks, dirs, omega2))
    return dirs[order], ks[order], omega2[order]


@register("sh", family="shallow")
class SH(ShallowMethod):
    """Spectral hashing; ``bits`` may exceed ``d`` (a direction then gives several modes).

    State: ``components (d, p)``, ``low (p,)``, ``high (p,)`` (the box ``[a, b]`` per
    direction), ``directions (bits,)``, ``modes (bits,)``, ``eigenvalues (bits,)`` (omega^2,
    ascending).
    """

    name = "sh"
    _state = ("components", "low", "high", "directions", "modes", "eigenvalues")

    def fit(self, features, labels=None, seed: int = 0) -> "SH":
        x, _ = self._fit_inputs(features, labels)
        p = min(self.bits, x.shape[1])
        self.components, _ = pca(x - x.mean(axis=0), p)
        proj = x @ self.components
        eps = np.finfo(np.float64).eps
        self.low = proj.min(axis=0) - eps
        self.high = proj.max(axis=0) + eps
        dirs, ks, omega2 = candidate_modes(self.high - self.low, self.bits)
        self.directions = dirs[: self.bits]
        self.modes = ks[: self.bits]
        self.eigenvalues = omega2[: self.bits]
        self.history = {}
        self.fitted = True
        return self

    def _project(self, features: np.ndarray) -> np.ndarray:
        proj = features @ self.components - self.low  # x measured from a
        omega = self.modes * np.pi / (self.high - self.low)[self.directions]
        return np.sin(np.pi / 2 + proj[:, self.directions] * omega)  # Phi_k(x)

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[0])
