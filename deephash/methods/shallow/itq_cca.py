"""ITQ on a CCA embedding (supervised ITQ, "CCA-ITQ").

Gong, Lazebnik, Gordo & Perronnin, "Iterative quantization: a Procrustean approach to
learning binary codes for large-scale image retrieval", TPAMI 2013, Sec. 4: replace PCA
by canonical correlation analysis between the features ``X`` and the label matrix ``Y``,
scale each CCA direction by its eigenvalue, then run the ITQ rotation. We take the
eigenvalue as the canonical correlation ``rho_k`` (the square root of the eigenvalue of the
problem below, which is what the usual ``cca`` routine returns); directions without label
correlation thus get weight ~0.

CCA (Hotelling 1936) as the generalized symmetric eigenproblem

    C_xy C_yy^{-1} C_yx w_k = rho_k^2 C_xx w_k,   w_k^T C_xx w_k = 1,

with ``C_xx = cov(X) + reg I`` and ``C_yy = cov(Y) + reg I`` (``reg = 1e-4``, the value in
the authors' code; it keeps ``C_xx`` invertible when features are constant or collinear,
e.g. always-zero pixels). The embedding is ``V = (X - mu) [rho_1 w_1, ..., rho_c w_c]``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from deephash.methods.base import register
from deephash.methods.shallow._linalg import fix_signs
from deephash.methods.shallow.itq import RotatedLinearHash
from deephash.validation import check_int, check_number


@register("itq-cca", family="shallow")
class ITQCCA(RotatedLinearHash):
    """CCA with the labels to ``bits`` dimensions, directions scaled by their canonical
    correlations, then ITQ (``n_iter`` = 50 rotations).

    **Bits limit.** ``cov(X, Y)`` has rank at most ``min(d, c)`` (``c - 1`` for
    single-label one-hot labels, whose centred columns sum to zero), so at most that many
    canonical correlations are non-zero. ``bits > d`` raises ValueError. ``bits`` above
    the number of non-zero correlations is allowed (the papers' tables use 32-64 bits on
    21-label NUS-WIDE): those directions get weight ``rho ~ 0``, the ITQ rotation spreads
    the informative dimensions over all bits, and a ``UserWarning`` names the limit.

    State: ``mean (d,)``, ``projection (d, bits)`` (scaled CCA directions),
    ``rotation (bits, bits)``, ``correlations (bits,)``.
    """

    name = "itq-cca"
    supervised = True
    _state = ("mean", "projection", "rotation", "correlations")

    def __init__(self, bits: int, n_iter: int = 50, reg: float = 1e-4):
        super().__init__(
            bits,
            n_iter=check_int(n_iter, "n_iter", minimum=0, owner="itq-cca"),
            reg=check_number(reg, "reg", positive=True, owner="itq-cca"),
        )

    def fit(self, features, labels=None, seed: int = 0) -> "ITQCCA":
        x, y = self._fit_inputs(features, labels)
        n, d = x.shape
        if self.bits > d:
            raise ValueError(f"itq-cca: bits ({self.bits}) must be <= the feature dimension ({d})")
        reg = self.hp["reg"]
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        yc = y - y.mean(axis=0)
        cxx = xc.T @ xc / n + reg * np.eye(d)
        cyy = yc.T @ yc / n + reg * np.eye(y.shape[1])
        cxy = xc.T @ yc / n
        m = cxy @ np.linalg.solve(cyy, cxy.T)
        m = 0.5 * (m + m.T)
        vals, vecs = scipy.linalg.eigh(m, cxx, subset_by_index=[d - self.bits, d - 1])
        order = np.argsort(vals)[::-1]
        rho = np.sqrt(np.clip(vals[order], 0.0, 1.0))
        informative = int(np.sum(rho > 1e-6))
        if self.bits > informative:
            warnings.warn(
                f"itq-cca: {self.bits} bits but only {informative} non-zero canonical correlations "
                f"(CCA gives at most min(d, c) = {min(d, y.shape[1])} directions, c - 1 for "
                "single-label "
                "one-hot labels); the extra directions carry no label information",
                UserWarning,
                stacklevel=2,
            )
        self.correlations = rho
        self.projection = fix_signs(vecs[:, order]) * rho
        return self._fit_rotation(xc, seed)
