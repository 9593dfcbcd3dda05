"""Kernel-based supervised hashing (KSH).

Liu, Wang, Ji, Jiang & Chang, "Supervised hashing with kernels", CVPR 2012.

* Hash functions (Eq. 2-3): ``h_k(x) = sgn(a_k^T kbar(x))`` with zero-centred kernel
  features ``kbar(x) = [k(x_(1), x) - mu_1, ..., k(x_(m), x) - mu_m]`` on ``m`` anchors
  drawn at random from the training data; ``k`` is the RBF kernel
  ``exp(-||x - x_(j)||^2 / (2 sigma^2))`` with ``sigma^2`` the mean squared
  sample-anchor distance (the authors' heuristic); ``mu_j`` is the mean over the ``l``
  labeled samples.
* Objective (Eq. 6) on ``l`` labeled samples with ``S_ij = +1`` (share a label) / ``-1``:
  ``min_H ||H H^T - r S||_F^2``, ``H = sgn(Kbar_l A)`` in {-1,1}^{l x r}.
* Greedy bit by bit (Eq. 8-9): with the residue ``R_{k-1} = r S - sum_{t<k} h_t h_t^T``,
  bit ``k`` minimises ``-sgn(Kbar_l a)^T R_{k-1} sgn(Kbar_l a)``.
* Spectral relaxation (Eq. 10) for the initial ``a^0``: the top generalized eigenvector
  of ``Kbar_l^T R_{k-1} Kbar_l a = lambda Kbar_l^T Kbar_l a``, scaled to
  ``a^T Kbar_l^T Kbar_l a = l``.
* Sigmoid smoothing (Eq. 11): ``phi(x) = 2 / (1 + exp(-x)) - 1``,
  ``g(a) = -phi(Kbar_l a)^T R_{k-1} phi(Kbar_l a)``, minimised by gradient descent from
  ``a^0`` with the gradient of Eq. 12, ``-Kbar_l^T ((R_{k-1} b) * (1 - b * b))``,
  ``b = phi(Kbar_l a)``. (The authors use Nesterov's method; we use plain gradient
  descent with Armijo backtracking, so ``g`` falls at every step.) If the smoothed
  solution's discrete objective is worse than the spectral one's, ``a^0`` is kept (Alg. 1).
* ``R_k = R_{k-1} - h_k h_k^T``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from deephash.methods.base import ShallowMethod, register
from deephash.methods.shallow._linalg import choose_anchors, rbf, signs, similarity_matrix, sqdist
from deephash.validation import check_int


def _phi(x: np.ndarray) -> np.ndarray:
    """``2 / (1 + exp(-x)) - 1`` (= tanh(x / 2))."""
    return np.tanh(0.5 * x)


def smoothed_objective(a: np.ndarray, k: np.ndarray, r: np.ndarray) -> tuple[float, np.ndarray]:
    """Eq. 11 and its gradient (Eq. 12): ``g(a) = -phi(K a)^T R phi(K a)``."""
    b = _phi(k @ a)
    rb = r @ b
    return float(-b @ rb), -k.T @ (rb * (1.0 - b * b))


def gradient_descent(a: np.ndarray, k: np.ndarray, r: np.ndarray, max_iter: int, tol: float = 1e-6):
    """Minimise ``g`` from ``a`` with Armijo backtracking; returns ``(a, values)``."""
    value, grad = smoothed_objective(a, k, r)
    values = [value]
    step = 1.0 / max(
        float(np.sum(k * k)) * float(np.abs(r).sum(1).max()), 1e-12
    )  # 1 / Lipschitz bound
    for _ in range(max_iter):
        g2 = float(grad @ grad)
        if g2 == 0.0:
            break
        while True:
            cand = a - step * grad
            cand_value, cand_grad = smoothed_objective(cand, k, r)
            if cand_value <= value - 0.5 * step * g2 or step < 1e-20:
                break
            step *= 0.5
        if cand_value > value:  # no descent possible at machine precision
            break
        improvement = value - cand_value
        a, value, grad = cand, cand_value, cand_grad
        values.append(value)
        step *= 2.0
        if improvement <= tol * abs(value):
            break
    return a, values


@register("ksh", family="shallow")
class KSH(ShallowMethod):
    """KSH with ``n_anchors`` (300, as in the paper; all samples when fewer) RBF anchors
    and ``n_labeled`` labeled samples (1000 in the paper's CIFAR-10 setting; all when fewer).

    State: ``anchors (m, d)``, ``sigma ()``, ``kernel_mean (m,)``, ``coefficients (m, bits)``.
    ``history``: per bit, ``residue`` = ``||H_k H_k^T - r S||_F^2`` after bits 0..k
    (index 0 = no bit), ``smoothed_start`` / ``smoothed_end`` = ``g`` before and after
    gradient descent, ``discrete_spectral`` / ``discrete_chosen`` = the bit's discrete
    objective ``-h^T R_{k-1} h`` for ``a^0`` and for the kept ``a``.
    """

    name = "ksh"
    supervised = True
    _state = ("anchors", "sigma", "kernel_mean", "coefficients")

    def __init__(self, bits: int, n_anchors: int = 300, n_labeled: int = 1000, max_iter: int = 100):
        super().__init__(
            bits,
            n_anchors=check_int(n_anchors, "n_anchors", owner="ksh"),
            n_labeled=check_int(n_labeled, "n_labeled", owner="ksh"),
            max_iter=check_int(max_iter, "max_iter", owner="ksh"),
        )

    def fit(self, features, labels=None, seed: int = 0) -> "KSH":
        x, y = self._fit_inputs(features, labels)
        n = x.shape[0]
        rng = np.random.default_rng(seed)
        self.anchors = choose_anchors(x, self.hp["n_anchors"], rng)
        n_labeled = min(self.hp["n_labeled"], n)
        idx = np.sort(rng.choice(n, size=n_labeled, replace=False))
        xl, yl = x[idx], y[idx]
        self.sigma = np.asarray(np.sqrt(max(sqdist(xl, self.anchors).mean(), 1e-12)))
        kl = rbf(xl, self.anchors, float(self.sigma))
        self.kernel_mean = kl.mean(axis=0)
        kl = kl - self.kernel_mean
        ktk = kl.T @ kl
        m = ktk.shape[0]
        ridge = 1e-4 * max(np.trace(ktk) / m, 1e-12) * np.eye(m)
        resid = self.bits * similarity_matrix(yl)
        hist = {
            k: []
            for k in (
                "residue",
                "smoothed_start",
                "smoothed_end",
                "discrete_spectral",
                "discrete_chosen",
            )
        }
        hist["residue"].append(float(np.sum(resid**2)))
        coefs = np.zeros((m, self.bits))
        lhs = kl.T @ resid @ kl  # Kbar_l^T R_{k-1} Kbar_l, updated by a rank-one term per bit
        for bit in range(self.bits):
            _, vec = scipy.linalg.eigh(
                0.5 * (lhs + lhs.T), ktk + ridge, subset_by_index=[m - 1, m - 1]
            )
            a0 = vec[:, 0]
            a0 *= np.sqrt(n_labeled / max(float(a0 @ ktk @ a0), 1e-300))
            a, values = gradient_descent(a0, kl, resid, self.hp["max_iter"])
            h0, h = signs(kl @ a0), signs(kl @ a)
            d0, d1 = float(-h0 @ resid @ h0), float(-h @ resid @ h)
            if d1 > d0:
                a, h, d1 = a0, h0, d0
            coefs[:, bit] = a
            resid = resid - np.outer(h, h)
            kh = kl.T @ h
            lhs = lhs - np.outer(kh, kh)
            hist["residue"].append(float(np.sum(resid**2)))
            hist["smoothed_start"].append(values[0])
            hist["smoothed_end"].append(values[-1])
            hist["discrete_spectral"].append(d0)
            hist["discrete_chosen"].append(d1)
        self.coefficients = coefs
        self.history = hist
        self.fitted = True
        return self

    def _project(self, features: np.ndarray) -> np.ndarray:
        return (
            rbf(features, self.anchors, float(self.sigma)) - self.kernel_mean
        ) @ self.coefficients

    @property
    def input_dim(self) -> int:
        return int(self.anchors.shape[1])
