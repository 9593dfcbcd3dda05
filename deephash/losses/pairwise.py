"""DSEH losses: pairwise likelihood, quantization, label regression, code cross-entropy.

Notation of the DSEH paper (Li et al., IJCAI 2018): ``Θ_ij = ½ u_iᵀ v_j``; the negative
log-likelihood of a similarity matrix ``S`` is ``J = -Σ_ij (s_ij Θ_ij - log(1 + e^Θ_ij))``,
computed as ``softplus(Θ) - s Θ`` so that it stays finite for |Θ| in the hundreds (the
authors' ``log(1 + exp(Θ))`` overflows). Functions take and return tensors; the Loss
classes wrap them for ``compile``/``fit`` (per-sample values, Keras reduces over the batch).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from deephash.validation import check_choice, check_number

_REDUCTIONS = ("none", "sum", "mean")


def _reduce(values, reduction: str):
    if reduction == "none":
        return values
    if reduction == "sum":
        return tf.reduce_sum(values)
    if reduction == "mean":
        return tf.reduce_mean(values)
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_reduction(reduction: str) -> None:
    check_choice(reduction, _REDUCTIONS, "reduction")


def _float(x, dtype=None):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, dtype or tf.float32)
    return x


def _same_shape(a, b, what: str) -> None:
    if (
        a.shape.rank is not None
        and b.shape.rank is not None
        and not a.shape.is_compatible_with(b.shape)
    ):
        raise ValueError(f"{what}: shapes {a.shape} and {b.shape} differ")


def similarity_matrix(labels_u, labels_v, positive: float = 1.0):
    """``s_ij = positive`` if items i and j share a label, else 0:
    ``(n_u, c), (n_v, c) -> (n_u, n_v)``."""
    yu, yv = _float(labels_u), _float(labels_v)
    if (
        yu.shape.rank != 2
        or yv.shape.rank != 2
        or (yu.shape[1] is not None and yv.shape[1] is not None and yu.shape[1] != yv.shape[1])
    ):
        raise ValueError(f"labels must be (n, c) with the same c, got {yu.shape} and {yv.shape}")
    shared = tf.matmul(yu, yv, transpose_b=True) > 0
    return tf.cast(shared, yu.dtype) * tf.cast(positive, yu.dtype)


def pairwise_likelihood_loss(u, v, s, reduction: str = "mean"):
    """DSEH's pairwise negative log-likelihood over all pairs (i, j).

    ``u``: (n_u, d), ``v``: (n_v, d), ``s``: (n_u, n_v) similarities (0 or the positive
    value). ``l_ij = softplus(Θ_ij) - s_ij Θ_ij`` with ``Θ_ij = ½ u_iᵀ v_j``.
    ``reduction``: "none" -> the (n_u, n_v) matrix, "sum" -> the paper's ``J = Σ_ij l_ij``,
    "mean" -> ``J / (n_u n_v)``.
    """
    _check_reduction(reduction)
    u = _float(u)
    v = tf.cast(_float(v), u.dtype)
    s = tf.cast(_float(s), u.dtype)
    if u.shape.rank != 2 or v.shape.rank != 2:
        raise ValueError(f"u and v must be (n, d) matrices, got {u.shape} and {v.shape}")
    if u.shape[1] is not None and v.shape[1] is not None and u.shape[1] != v.shape[1]:
        raise ValueError(f"u and v must have the same width, got {u.shape} and {v.shape}")
    theta = 0.5 * tf.matmul(u, v, transpose_b=True)
    _same_shape(theta, s, "pairwise_likelihood_loss: s must be (n_u, n_v)")
    return _reduce(tf.nn.softplus(theta) - s * theta, reduction)


_ROW_REDUCTIONS = ("sum", "mean")


def _row_reduce(values, over: str, what: str):
    """Reduce ``(n, d)`` per row: "sum" (the paper's norms) or "mean" (the authors' code)."""
    if over == "sum":
        return tf.reduce_sum(values, axis=-1)
    if over == "mean":
        return tf.reduce_mean(values, axis=-1)
    raise ValueError(
        f"{what}: the per-row reduction must be one of {_ROW_REDUCTIONS}, got {over!r}"
    )


def quantization_loss(h, reduction: str = "none", over: str = "sum"):
    """``|| |h| - 1 ||_1`` per row: (n, k) -> (n,) ("none"), or its "sum" / "mean" over rows.

    ``over="mean"`` divides each row by k (the DSEH authors' ``tf.losses.absolute_difference``,
    a mean over all elements of the batch).
    """
    _check_reduction(reduction)
    h = _float(h)
    if h.shape.rank != 2:
        raise ValueError(f"h must be (n, k), got {h.shape}")
    return _reduce(_row_reduce(tf.abs(tf.abs(h) - 1.0), over, "quantization_loss"), reduction)


def label_regression_loss(y, y_hat, over: str = "sum"):
    """``||y - ŷ||²`` per row (DSEH's J4): (n, c), (n, c) -> (n,); ``over="mean"`` divides by c."""
    y_hat = _float(y_hat)
    y = tf.cast(_float(y), y_hat.dtype)
    _same_shape(y, y_hat, "label_regression_loss")
    return _row_reduce(tf.square(y - y_hat), over, "label_regression_loss")


def code_cross_entropy(
    logits, target_codes, over: str = "sum", logit_scale: float = 1.0, target_value: float = 1.0
):
    """Sigmoid cross-entropy of hash logits against target codes, per row: -> (n,).

    Target bit = ``target_value`` where ``target_codes > 0`` else 0, i.e. ``sign(codes)``
    mapped to {0, 1}; this reads {-1, +1} codes, {0, 1} / bool codes and real-valued (tanh)
    codes alike. The cross-entropy is of ``logit_scale * logits``, summed (``over="sum"``,
    the paper) or averaged (``"mean"``) over bits. The DSEH authors' code uses
    ``logit_scale=10``, ``target_value=0.999`` and the mean.
    """
    logits = _float(logits)
    target = tf.convert_to_tensor(target_codes)
    if target.dtype != tf.bool:
        target = target > tf.zeros((), target.dtype)
    target = tf.cast(target, logits.dtype) * tf.cast(target_value, logits.dtype)
    _same_shape(logits, target, "code_cross_entropy")
    z = logits * tf.cast(logit_scale, logits.dtype)
    return _row_reduce(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=z), over, "code_cross_entropy"
    )


@keras.saving.register_keras_serializable(package="deephash")
class PairwiseLikelihoodLoss(keras.losses.Loss):
    """In-batch pairwise likelihood: ``y_true`` multi-hot labels (b, c), ``y_pred`` features (b, d).

    Per sample i: ``(1/b) Σ_j l_ij`` over the batch, with ``s_ij = positive_similarity`` when
    i and j share a label; the default batch mean then equals the function's "mean".
    """

    def __init__(
        self, positive_similarity: float = 1.0, name: str = "pairwise_likelihood", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.positive_similarity = check_number(
            positive_similarity, "positive_similarity", positive=True
        )

    def call(self, y_true, y_pred):
        s = similarity_matrix(y_true, y_true, self.positive_similarity)
        return tf.reduce_mean(
            pairwise_likelihood_loss(y_pred, y_pred, s, reduction="none"), axis=-1
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "positive_similarity": self.positive_similarity}


@keras.saving.register_keras_serializable(package="deephash")
class QuantizationLoss(keras.losses.Loss):
    """``|| |h| - 1 ||_1`` per sample; ``y_true`` is ignored, ``y_pred`` the relaxed codes
    (b, k)."""

    def __init__(self, name: str = "quantization", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return quantization_loss(y_pred, reduction="none")


@keras.saving.register_keras_serializable(package="deephash")
class LabelRegressionLoss(keras.losses.Loss):
    """``||y - ŷ||²`` per sample; ``y_true`` multi-hot labels, ``y_pred`` predicted labels."""

    def __init__(self, name: str = "label_regression", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return label_regression_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="deephash")
class CodeCrossEntropy(keras.losses.Loss):
    """Sigmoid cross-entropy summed over bits; ``y_true`` target codes, ``y_pred`` hash logits."""

    def __init__(self, name: str = "code_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return code_cross_entropy(y_pred, y_true)
