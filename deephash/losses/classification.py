"""Classification-stream losses of DSRH (Yao et al. 2016, §3.3): Eq. 8 and Eq. 11.

Both return per-sample values ``(m,)``; the ``1/n`` of the equations is the batch mean
that the caller (or the ``Loss`` class's default reduction) applies. Logits are computed
in float32 even under mixed precision.
"""

from __future__ import annotations

import keras
from keras import ops

from deephash.losses._common import check_rank


def _logits32(logits, what: str):
    logits = ops.convert_to_tensor(logits)
    if str(logits.dtype) != "float64":
        logits = ops.cast(logits, "float32")
    check_rank(logits, 2, f"{what}: logits")
    return logits


def softmax_cross_entropy(labels, logits):
    """Softmax cross-entropy per sample (Eq. 8 without the batch mean), single label.

    Args:
        labels: class ids ``(m,)`` (or ``(m, 1)`` when there is more than one class), or
            one-hot rows ``(m, c)`` (any probability rows are accepted).
        logits: ``(m, c)`` unnormalised scores ``theta_j^T x``.

    Returns:
        ``(m,)``: ``-log softmax(logits)[y]`` (one-hot: ``-sum_j y_j log softmax_j``).
    """
    logits = _logits32(logits, "softmax_cross_entropy")
    labels = ops.convert_to_tensor(labels)
    c = logits.shape[-1]
    log_p = ops.log_softmax(logits, axis=-1)
    ids_given = len(labels.shape) == 1 or (
        len(labels.shape) == 2 and labels.shape[-1] == 1 and c != 1
    )
    if ids_given:
        ids = ops.reshape(labels, (-1,))
        if (
            labels.shape[0] is not None
            and logits.shape[0] is not None
            and labels.shape[0] != logits.shape[0]
        ):
            raise ValueError(
                f"softmax_cross_entropy: {labels.shape[0]} labels for {logits.shape[0]} rows "
                "of logits"
            )
        ids = ops.cast(ids, "int32")
        return -ops.take_along_axis(log_p, ids[:, None], axis=-1)[:, 0]
    if len(labels.shape) != 2 or (
        labels.shape[-1] is not None and c is not None and labels.shape[-1] != c
    ):
        raise ValueError(
            f"softmax_cross_entropy: labels must be class ids (m,) or one-hot (m, {c}), "
            f"got shape {tuple(labels.shape)} for logits {tuple(logits.shape)}"
        )
    return -ops.sum(ops.cast(labels, log_p.dtype) * log_p, axis=-1)


def sigmoid_cross_entropy(labels, logits):
    """Sigmoid (binary) cross-entropy per sample for multi-hot labels (Eq. 11).

    ``-sum_j [y_j log sigma(z_j) + (1 - y_j) log(1 - sigma(z_j))]``, SUMMED over the ``c``
    classes as in Eq. 11 (``keras.losses.BinaryCrossentropy`` averages over classes
    instead, i.e. is ``1/c`` of this). Computed stably as ``softplus(z) - y z``.

    Args:
        labels: multi-hot ``(m, c)`` in {0, 1} (soft targets in [0, 1] also work).
        logits: ``(m, c)``.

    Returns:
        ``(m,)``.
    """
    logits = _logits32(logits, "sigmoid_cross_entropy")
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(labels.shape, logits.shape)
    ):
        raise ValueError(
            f"sigmoid_cross_entropy: labels must be multi-hot with the logits' shape "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    labels = ops.cast(labels, logits.dtype)
    return ops.sum(ops.softplus(logits) - labels * logits, axis=-1)


@keras.saving.register_keras_serializable(package="deephash")
class SoftmaxCrossEntropy(keras.losses.Loss):
    """``keras.losses.Loss`` form of :func:`softmax_cross_entropy`: ``(y_true, logits)``."""

    def __init__(
        self,
        reduction: str = "sum_over_batch_size",
        name: str = "softmax_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return softmax_cross_entropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="deephash")
class SigmoidCrossEntropy(keras.losses.Loss):
    """``keras.losses.Loss`` form of :func:`sigmoid_cross_entropy` (sum over classes)."""

    def __init__(
        self,
        reduction: str = "sum_over_batch_size",
        name: str = "sigmoid_cross_entropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return sigmoid_cross_entropy(y_true, y_pred)
