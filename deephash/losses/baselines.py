"""Losses of the deep pairwise baselines DPSH, DHN and HashNet.

* **DPSH** (Li, Wang & Kang, IJCAI 2016, Eq. 4/6): the pairwise negative log-likelihood
  with ``Θ_ij = ½ u_iᵀ u_j`` is DSEH's :func:`deephash.losses.pairwise_likelihood_loss`
  (same math); the quantization term ``η Σ_i ||b_i - u_i||²`` with ``b_i = sgn(u_i)`` is
  :func:`sign_quantization_loss`.
* **DHN** (Zhu, Long, Wang & Cao, AAAI 2016, Eq. 3-6): pairwise cross-entropy
  ``Σ_ij log(1 + exp(⟨z_i, z_j⟩)) - s_ij ⟨z_i, z_j⟩`` (:func:`pairwise_cross_entropy` with
  ``alpha=1``) plus the bimodal-Laplacian quantization smoothed by ``log cosh``,
  ``Σ_i Σ_k log cosh(|z_ik| - 1)`` (:func:`log_cosh_quantization_loss`).
* **HashNet** (Cao, Long, Wang & Yu, ICCV 2017, Eq. 4-6): weighted maximum likelihood
  ``Σ_ij w_ij (log(1 + exp(α⟨h_i, h_j⟩)) - α s_ij ⟨h_i, h_j⟩)`` with ``h = tanh(βz)``;
  ``w_ij = |S|/|S_1|`` for similar and ``|S|/|S_0|`` for dissimilar pairs
  (:func:`balanced_pair_weights`); ``β`` grows by continuation (:func:`hashnet_beta`).

Every likelihood is computed as ``softplus(θ) - sθ``, finite for any ``|θ|``.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from deephash.losses._common import as_float
from deephash.losses.pairwise import (
    _check_reduction,
    _float,
    _reduce,
    _same_shape,
    similarity_matrix,
)
from deephash.validation import check_int, check_number

_LOG2 = math.log(2.0)


def _matrices(u, v, what: str):
    u = as_float(u)
    v = tf.cast(as_float(v), u.dtype)
    if u.shape.rank != 2 or v.shape.rank != 2:
        raise ValueError(f"{what}: u and v must be (n, d) matrices, got {u.shape} and {v.shape}")
    if u.shape[1] is not None and v.shape[1] is not None and u.shape[1] != v.shape[1]:
        raise ValueError(f"{what}: u and v must have the same width, got {u.shape} and {v.shape}")
    return u, v


def pairwise_cross_entropy(u, v, s, alpha: float = 1.0, weights=None, reduction: str = "mean"):
    """Pairwise cross-entropy of DHN (Eq. 5, ``alpha=1``) and HashNet (Eq. 6).

    ``u`` (n_u, k), ``v`` (n_v, k) continuous codes, ``s`` (n_u, n_v) similarities in {0, 1}
    (HashNet's continuous similarity in [0, 1] also works), ``weights`` (n_u, n_v) pair
    weights ``w_ij`` or None (all 1). With ``θ_ij = alpha ⟨u_i, v_j⟩``:
    ``l_ij = w_ij (softplus(θ_ij) - s_ij θ_ij)``. ``reduction``: "none" -> the (n_u, n_v)
    matrix, "sum" -> ``Σ_ij l_ij``, "mean" -> ``Σ_ij l_ij / (n_u n_v)``.
    """
    _check_reduction(reduction)
    alpha = check_number(alpha, "alpha", positive=True)
    u, v = _matrices(u, v, "pairwise_cross_entropy")
    s = tf.cast(_float(s), u.dtype)
    theta = alpha * tf.matmul(u, v, transpose_b=True)
    _same_shape(theta, s, "pairwise_cross_entropy: s must be (n_u, n_v)")
    loss = tf.nn.softplus(theta) - s * theta
    if weights is not None:
        w = tf.cast(_float(weights), u.dtype)
        _same_shape(theta, w, "pairwise_cross_entropy: weights must be (n_u, n_v)")
        loss = w * loss
    return _reduce(loss, reduction)


def balanced_pair_weights(s, mask=None):
    """HashNet's weights for imbalanced similarity data (Eq. 4 with ``c_ij = 1``).

    ``s`` (n_u, n_v) in {0, 1}; ``mask`` (n_u, n_v) marks the pairs that count (e.g. off the
    diagonal), None = all. Over the counted pairs ``S = S_1 ∪ S_0``:
    ``w_ij = |S| / |S_1|`` where ``s_ij = 1`` and ``|S| / |S_0|`` where ``s_ij = 0``; pairs
    outside the mask get 0. So ``Σ_ij w_ij l_ij / |S|`` is the mean loss over the similar
    pairs PLUS the mean over the dissimilar pairs (a class that is absent contributes 0).
    """
    s = _float(s)
    if s.shape.rank != 2:
        raise ValueError(f"balanced_pair_weights: s must be (n_u, n_v), got {s.shape}")
    counted = tf.ones_like(s) if mask is None else tf.cast(_float(mask), s.dtype)
    _same_shape(s, counted, "balanced_pair_weights: mask must have the shape of s")
    similar = tf.cast(s > 0.5, s.dtype) * counted
    dissimilar = counted - similar
    total = tf.reduce_sum(counted)
    n1, n0 = tf.reduce_sum(similar), tf.reduce_sum(dissimilar)
    w1 = tf.math.divide_no_nan(total, n1)
    w0 = tf.math.divide_no_nan(total, n0)
    return similar * w1 + dissimilar * w0


def log_cosh_quantization_loss(z, reduction: str = "none"):
    """DHN's smoothed bimodal-Laplacian quantization ``Σ_k log cosh(|z_ik| - 1)`` (Eq. 6).

    ``z`` (n, k) -> (n,) ("none"), or the "sum" / "mean" over rows. Computed as
    ``|x| + softplus(-2|x|) - log 2`` with ``x = |z| - 1``: exact and finite for any z.
    """
    _check_reduction(reduction)
    z = as_float(z)
    if z.shape.rank != 2:
        raise ValueError(f"log_cosh_quantization_loss: z must be (n, k), got {z.shape}")
    x = tf.abs(tf.abs(z) - 1.0)
    return _reduce(tf.reduce_sum(x + tf.nn.softplus(-2.0 * x) - _LOG2, axis=-1), reduction)


def sign_quantization_loss(u, reduction: str = "none"):
    """DPSH's quantization ``||b_i - u_i||²`` with ``b_i = sgn(u_i)`` (Eq. 6).

    ``u`` (n, k) -> (n,) ("none"), or the "sum" / "mean" over rows. ``b`` is +1 where
    ``u > 0`` and -1 elsewhere (the library's bit convention) and is a constant for the
    gradient, which is ``2 (u_i - b_i)`` as in the paper's Eq. 8.
    """
    _check_reduction(reduction)
    u = as_float(u)
    if u.shape.rank != 2:
        raise ValueError(f"sign_quantization_loss: u must be (n, k), got {u.shape}")
    b = tf.stop_gradient(tf.where(u > 0, tf.ones_like(u), -tf.ones_like(u)))
    return _reduce(tf.reduce_sum(tf.square(b - u), axis=-1), reduction)


def hashnet_beta(
    step, beta0: float = 1.0, gamma: float = 0.005, power: float = 0.5, step_size: int = 200
):
    """HashNet's continuation schedule ``β_t = β_0 (1 + γ t)^p``,
    ``t = step_size ⌊step / step_size⌋``.

    β rises step-wise every ``step_size`` optimiser steps (the authors' released code:
    ``β_0 = 1, γ = 0.005, p = 0.5, step_size = 200``), so ``tanh(βz)`` tends to ``sgn(z)``.
    ``step`` may be a Python number or a tensor; returns the same kind (float32 tensor).
    """
    beta0 = check_number(beta0, "beta0", positive=True)
    gamma = check_number(gamma, "gamma", minimum=0)
    power = float(power)
    step_size = check_int(step_size, "step_size")
    if isinstance(step, (int, float)):
        t = step_size * math.floor(step / step_size)
        return beta0 * (1.0 + float(gamma) * t) ** power
    step = tf.cast(step, tf.float32)
    t = float(step_size) * tf.floor(step / float(step_size))
    return beta0 * tf.pow(1.0 + float(gamma) * t, power)


def off_diagonal_mask(n, dtype=tf.float32):
    """(n, n) mask that is 0 on the diagonal (an item paired with itself) and 1 elsewhere."""
    return tf.ones((n, n), dtype) - tf.eye(n, dtype=dtype)


# ----------------------------------------------------------------------------- Loss classes
@keras.saving.register_keras_serializable(package="deephash")
class PairwiseCrossEntropyLoss(keras.losses.Loss):
    """In-batch pairwise cross-entropy (DHN; HashNet with ``weighted=True``).

    ``y_true`` multi-hot labels (b, c), ``y_pred`` continuous codes (b, k). Pairs are all
    ``i != j`` of the batch, ``s_ij = 1`` when items share a label. Per sample i:
    ``Σ_{j≠i} w_ij l_ij / (b - 1)``, so the default batch mean is the mean over pairs
    (with ``weighted=True``: the mean over similar pairs plus the mean over dissimilar ones).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        weighted: bool = False,
        name: str = "pairwise_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.alpha = check_number(alpha, "alpha", positive=True)
        self.weighted = bool(weighted)

    def call(self, y_true, y_pred):
        s = similarity_matrix(y_true, y_true)
        n = tf.shape(s)[0]
        mask = off_diagonal_mask(n, s.dtype)
        w = balanced_pair_weights(s, mask) if self.weighted else mask
        per_pair = pairwise_cross_entropy(
            y_pred, y_pred, s, self.alpha, weights=w, reduction="none"
        )
        return tf.reduce_sum(per_pair, axis=-1) / tf.maximum(tf.cast(n - 1, per_pair.dtype), 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "weighted": self.weighted}


@keras.saving.register_keras_serializable(package="deephash")
class LogCoshQuantizationLoss(keras.losses.Loss):
    """DHN's ``Σ_k log cosh(|z_k| - 1)`` per sample; ``y_true`` is ignored (may be None)."""

    def __init__(self, name: str = "log_cosh_quantization", **kwargs):
        super().__init__(name=name, **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # y_true is ignored; allow None (Keras' Loss would try to convert it)
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return log_cosh_quantization_loss(y_pred)


@keras.saving.register_keras_serializable(package="deephash")
class SignQuantizationLoss(keras.losses.Loss):
    """DPSH's ``||sgn(u) - u||²`` per sample; ``y_true`` is ignored (may be None)."""

    def __init__(self, name: str = "sign_quantization", **kwargs):
        super().__init__(name=name, **kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # y_true is ignored; allow None (Keras' Loss would try to convert it)
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return sign_quantization_loss(y_pred)


__all__ = [
    "LogCoshQuantizationLoss",
    "PairwiseCrossEntropyLoss",
    "SignQuantizationLoss",
    "balanced_pair_weights",
    "hashnet_beta",
    "log_cosh_quantization_loss",
    "off_diagonal_mask",
    "pairwise_cross_entropy",
    "sign_quantization_loss",
]
