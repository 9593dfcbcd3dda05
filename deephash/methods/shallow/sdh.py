"""Supervised discrete hashing (SDH).

Shen, Shen, Liu & Shen, "Supervised discrete hashing", CVPR 2015. With RBF anchor
features ``phi(x) = [exp(-||x - a_1||^2 / (2 sigma^2)), ..., exp(-||x - a_m||^2 / (2 sigma^2)), 1]``
(``m`` = 1000 random training anchors; the trailing 1 is the bias column of the authors'
code) and hash functions ``F(x) = P^T phi(x)``, SDH solves (Eq. 5-6, rows = samples here)

    min_{B, W, P}  ||Y - B W||_F^2 + lam ||W||_F^2 + nu (||B - Phi P||_F^2 + delta ||P||_F^2)
    s.t. B in {-1, 1}^{n x L}

by alternating exact steps:

* W-step (G-step, Eq. 7): ``W = (B^T B + lam I)^{-1} B^T Y``;
* P-step (F-step, Eq. 8): ``P = (Phi^T Phi + delta I)^{-1} Phi^T B`` (``delta = 1e-2`` is the
  ridge of the authors' code; we count it in the objective so each step minimises it);
* B-step (Eq. 9-14): with ``Q = Y W^T + nu Phi P`` the problem is
  ``min_B ||B W||^2 - 2 tr(B^T Q)``; discrete cyclic coordinate descent updates one bit
  column ``z`` at a time in closed form, ``z = sgn(q - B' W' w)`` (Eq. 14; ``B'``, ``W'``
  without that bit, ``w`` its row of W), which never raises the objective.

``lam = 1``, ``nu = 1e-5`` and 5 outer iterations are the paper's settings. ``B`` starts
from random signs. Codes: ``sgn(P^T phi(x))``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from deephash.methods.base import ShallowMethod, register
from deephash.methods.shallow._linalg import choose_anchors, rbf, sqdist
from deephash.validation import check_int, check_number


def sdh_objective(y, b, w, phi, p, lam, nu, delta) -> float:
    """The SDH objective above (float)."""
    return float(
        np.sum((y - b @ w) ** 2)
        + lam * np.sum(w**2)
        + nu * (np.sum((b - phi @ p) ** 2) + delta * np.sum(p**2))
    )


def dcc_sweep(b: np.ndarray, q: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """One sweep of discrete cyclic coordinate descent for ``min_B ||B W||^2 - 2 tr(B^T Q)``.

    Every bit column of ``b (n, L)`` in {-1, 1} is set in turn to its closed-form
    minimiser given the others (Eq. 14); a zero score keeps the current bit. Returns
    ``(B, changed)``.
    """
    b = b.copy()
    bits = b.shape[1]
    gram = w @ w.T  # (L, L)
    changed = False
    for k in range(bits):
        others = np.arange(bits) != k
        score = q[:, k] - b[:, others] @ gram[others, k]
        z = np.where(score > 0, 1.0, np.where(score < 0, -1.0, b[:, k]))
        if np.any(z != b[:, k]):
            changed = True
            b[:, k] = z
    return b, changed


@register("sdh", family="shallow")
class SDH(ShallowMethod):
    """SDH with ``n_anchors`` RBF anchors (1000; all samples when fewer).

    ``sigma=None`` uses the root mean squared sample-anchor distance (the authors' demo
    fixes 0.4 for unit-norm features; pass ``sigma`` to do the same).

    State: ``anchors (m, d)``, ``sigma ()``, ``projection (m + 1, bits)`` (P).
    ``history["objective"]``: the objective after initialisation and after every W-, P-
    and DCC sweep of the B-step, in order; ``history["outer"]``: after each outer iteration.
    """

    name = "sdh"
    supervised = True
    _state = ("anchors", "sigma", "projection")

    def __init__(
        self,
        bits: int,
        n_anchors: int = 1000,
        sigma: float | None = None,
        lam: float = 1.0,
        nu: float = 1e-5,
        delta: float = 1e-2,
        n_iter: int = 5,
        dcc_sweeps: int = 10,
    ):
        owner = "sdh"
        super().__init__(
            bits,
            n_anchors=check_int(n_anchors, "n_anchors", owner=owner),
            sigma=(
                None if sigma is None else check_number(sigma, "sigma", positive=True, owner=owner)
            ),
            lam=check_number(lam, "lam", positive=True, owner=owner),
            nu=check_number(nu, "nu", positive=True, owner=owner),
            delta=check_number(delta, "delta", positive=True, owner=owner),
            n_iter=check_int(n_iter, "n_iter", owner=owner),
            dcc_sweeps=check_int(dcc_sweeps, "dcc_sweeps", owner=owner),
        )

    def _features(self, x: np.ndarray) -> np.ndarray:
        k = rbf(x, self.anchors, float(self.sigma))
        return np.hstack([k, np.ones((x.shape[0], 1))])

    def fit(self, features, labels=None, seed: int = 0) -> "SDH":
        x, y = self._fit_inputs(features, labels)
        hp = self.hp
        lam, nu, delta = hp["lam"], hp["nu"], hp["delta"]
        rng = np.random.default_rng(seed)
        self.anchors = choose_anchors(x, hp["n_anchors"], rng)
        sigma = (
            hp["sigma"]
            if hp["sigma"] is not None
            else np.sqrt(max(sqdist(x, self.anchors).mean(), 1e-12))
        )
        self.sigma = np.asarray(float(sigma))
        phi = self._features(x)
        chol = scipy.linalg.cho_factor(phi.T @ phi + delta * np.eye(phi.shape[1]))
        bits = self.bits

        def w_step(b):
            return np.linalg.solve(b.T @ b + lam * np.eye(bits), b.T @ y)

        def p_step(b):
            return scipy.linalg.cho_solve(chol, phi.T @ b)

        b = np.where(rng.standard_normal((x.shape[0], bits)) >= 0, 1.0, -1.0)
        w, p = w_step(b), p_step(b)
        objective = [sdh_objective(y, b, w, phi, p, lam, nu, delta)]
        outer = [objective[0]]
        for _ in range(hp["n_iter"]):
            q = y @ w.T + nu * (phi @ p)
            for _sweep in range(hp["dcc_sweeps"]):
                b, changed = dcc_sweep(b, q, w)
                objective.append(sdh_objective(y, b, w, phi, p, lam, nu, delta))
                if not changed:
                    break
            w = w_step(b)
            objective.append(sdh_objective(y, b, w, phi, p, lam, nu, delta))
            p = p_step(b)
            objective.append(sdh_objective(y, b, w, phi, p, lam, nu, delta))
            outer.append(objective[-1])
        self.projection = p
        self.history = {"objective": objective, "outer": outer}
        self.fitted = True
        return self

    def _project(self, features: np.ndarray) -> np.ndarray:
        return self._features(features) @ self.projection

    @property
    def input_dim(self) -> int:
        return int(self.anchors.shape[1])
