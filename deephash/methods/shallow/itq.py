"""Iterative quantization (ITQ).

Gong & Lazebnik, "Iterative quantization: a Procrustean approach to learning binary
codes", CVPR 2011 (and TPAMI 2013). Data are centred and projected on the top ``c``
principal directions, ``V = X W`` (Sec. 2); then the rotation ``R`` minimising the
quantization loss (Eq. 2)

    Q(B, R) = || B - V R ||_F^2,   B in {-1, 1}^{n x c},  R^T R = I

is found by alternating (Sec. 2.2): fix ``R``, ``B = sgn(V R)``; fix ``B``, take the SVD
``B^T V = S Omega S_hat^T`` and set ``R = S_hat S^T`` (orthogonal Procrustes). Each
half-step cannot raise ``Q``. Codes: ``sgn(W^T (x - mu) R)``.
"""

from __future__ import annotations

import numpy as np

from deephash.methods.base import register
from deephash.methods.shallow._linalg import pca, signs
from deephash.methods.shallow._linear import LinearHash
from deephash.validation import check_int


def random_rotation(c: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(c, c)`` orthogonal matrix (left singular vectors of a Gaussian matrix)."""
    u, _, _ = np.linalg.svd(rng.standard_normal((c, c)))
    return u


def itq_rotation(
    v: np.ndarray, n_iter: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[float]]:
    """ITQ alternation on embedded data ``v (n, c)``.

    Returns ``(R (c, c), losses)``; ``losses`` holds ``||B - V R||_F^2`` at the start
    and after every half-step (``1 + 2 * n_iter`` values, never rising).
    """
    r = random_rotation(v.shape[1], rng)
    b = signs(v @ r)
    losses = [float(np.sum((b - v @ r) ** 2))]
    for _ in range(n_iter):
        s, _, s_hat_t = np.linalg.svd(b.T @ v)  # B^T V = S Omega S_hat^T
        r = s_hat_t.T @ s.T  # R = S_hat S^T
        vr = v @ r
        losses.append(float(np.sum((b - vr) ** 2)))
        b = signs(vr)
        losses.append(float(np.sum((b - vr) ** 2)))
    return r, losses


class RotatedLinearHash(LinearHash):
    """Codes ``sgn((x - mu) W R)`` with the ITQ rotation ``R``: the common part of ITQ and
    ITQ-CCA, which differ only in the embedding ``W``."""

    def _fit_rotation(self, centred: np.ndarray, seed: int) -> "RotatedLinearHash":
        """Learn ``rotation`` on ``V = centred @ projection`` with ``hp["n_iter"]``
        alternations, record ``history["quantization_loss"]`` and finish the fit."""
        rng = np.random.default_rng(seed)
        self.rotation, losses = itq_rotation(centred @ self.projection, self.hp["n_iter"], rng)
        return self._finish_fit({"quantization_loss": losses})

    def _project(self, features: np.ndarray) -> np.ndarray:
        return super()._project(features) @ self.rotation


@register("itq", family="shallow")
class ITQ(RotatedLinearHash):
    """PCA to ``bits`` dimensions, then ``n_iter`` (50, as in the paper) Procrustes
    rotations. Needs ``bits <= d``.

    State: ``mean (d,)``, ``projection (d, bits)`` (PCA), ``rotation (bits, bits)``.
    ``history["quantization_loss"]``: ``||B - V R||_F^2`` after every half-step.
    """

    name = "itq"
    _state = ("mean", "projection", "rotation")

    def __init__(self, bits: int, n_iter: int = 50):
        super().__init__(bits, n_iter=check_int(n_iter, "n_iter", minimum=0, owner="itq"))

    def fit(self, features, labels=None, seed: int = 0) -> "ITQ":
        x, _ = self._fit_inputs(features, labels)
        d = x.shape[1]
        if self.bits > d:
            raise ValueError(f"itq: bits ({self.bits}) must be <= the feature dimension ({d})")
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        self.projection, _ = pca(xc, self.bits)
        return self._fit_rotation(xc, seed)
