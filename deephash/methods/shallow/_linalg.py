"""Numerical helpers shared by the shallow hashing methods: input checks, PCA, RBF anchors.

numpy/scipy only. Every function takes float64 arrays; shapes are in the docstrings.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def as_labels(labels, n: int, *, method: str) -> np.ndarray:
    """Multi-hot labels ``(n, c)`` (or class ids ``(n,)``) -> float64 ``(n, c)`` in {0, 1}."""
    if labels is None:
        raise ValueError(
            f"{method} is supervised: fit() needs labels (multi-hot (n, c) or class ids (n,))"
        )
    y = np.asarray(labels)
    if y.ndim == 1:
        if y.shape[0] != n:
            raise ValueError(f"{method}: {y.shape[0]} labels for {n} feature vectors")
        if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise ValueError(
                f"{method}: 1-D labels must be non-negative integer class ids, got dtype {y.dtype}"
            )
        onehot = np.zeros((n, int(y.max()) + 1), dtype=np.float64)
        onehot[np.arange(n), y] = 1.0
        return onehot
    if y.ndim != 2:
        raise ValueError(
            f"{method}: labels must be multi-hot (n, c) or class ids (n,), got shape {y.shape}"
        )
    if y.shape[0] != n:
        raise ValueError(f"{method}: {y.shape[0]} labels for {n} feature vectors")
    y = y.astype(np.float64)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{method}: multi-hot labels must hold only 0 and 1")
    return y


def pca(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of centred data ``(n, d)``.

    Returns ``(W (d, k), variances (k,))``: orthonormal columns, variances descending.
    Each column's sign is fixed so that its largest-magnitude entry is positive
    (eigenvectors are only defined up to sign; this makes fits reproducible).
    """
    n, d = centred.shape
    cov = centred.T @ centred / max(n - 1, 1)
    vals, vecs = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    return fix_signs(vecs), np.maximum(vals, 0.0)


def fix_signs(vecs: np.ndarray) -> np.ndarray:
    """Flip columns so that each one's largest-magnitude entry is positive."""
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vecs * signs


def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(n, m)`` between rows of ``a (n, d)`` and ``b (m, d)``."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def rbf(x: np.ndarray, anchors: np.ndarray, sigma: float) -> np.ndarray:
    """RBF kernel to anchors: ``exp(-||x - a_j||^2 / (2 sigma^2))``, shape ``(n, m)``."""
    return np.exp(-sqdist(x, anchors) / (2.0 * sigma * sigma))


def choose_anchors(x: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct training rows drawn at random (all of them when ``n <= m``), shape
    ``(m', d)``."""
    n = x.shape[0]
    if m >= n:
        return x.copy()
    return x[np.sort(rng.choice(n, size=m, replace=False))].copy()


def similarity_matrix(y: np.ndarray) -> np.ndarray:
    """Pairwise similarity in {-1, +1}: +1 when two items share at least one label, shape
    ``(n, n)``."""
    return np.where(y @ y.T > 0, 1.0, -1.0)


def signs(x: np.ndarray) -> np.ndarray:
    """``sgn`` into {-1, +1} with ``sgn(0) = +1`` (codes must stay binary)."""
    return np.where(x >= 0, 1.0, -1.0)
