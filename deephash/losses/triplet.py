"""Triplet ranking hinge loss of DSRH (Yao et al. 2016, Eq. 2); also NINH's loss."""

from __future__ import annotations

import keras
from keras import ops

from deephash.losses._common import (
    as_float,
    check_margin,
    check_rank,
    check_same_shape,
    split_triple,
)


def triplet_ranking_loss(h, h_pos, h_neg, margin: float = 1.0):
    """Per-triplet hinge ``max(0, margin - ||h - h_neg||^2 + ||h - h_pos||^2)`` (Eq. 2).

    Args:
        h, h_pos, h_neg: relaxed codes of anchors, positives and negatives, each ``(m, k)``.
            DSRH's Eq. 4 applies the loss to the centred codes ``2H - 1``; pass whichever
            the method uses (distances of centred codes are 4x those of ``H``).
        margin: the hinge margin (1 in the paper), ``>= 0``.

    Returns:
        ``(m,)`` losses, one per triplet. Where the hinge is active the gradients are
        Eq. 3: ``2(h_neg - h_pos)`` for ``h``, ``2(h_pos - h)`` for ``h_pos`` and
        ``2(h - h_neg)`` for ``h_neg``; elsewhere 0.
    """
    margin = check_margin(margin)
    h, h_pos, h_neg = as_float(h), as_float(h_pos), as_float(h_neg)
    check_rank(h, 2, "triplet_ranking_loss: h")
    check_same_shape({"h": h, "h_pos": h_pos, "h_neg": h_neg}, "triplet_ranking_loss")
    h_pos = ops.cast(h_pos, h.dtype)
    h_neg = ops.cast(h_neg, h.dtype)
    d_pos = ops.sum(ops.square(h - h_pos), axis=-1)
    d_neg = ops.sum(ops.square(h - h_neg), axis=-1)
    return ops.relu(margin - d_neg + d_pos)


@keras.saving.register_keras_serializable(package="deephash")
class TripletRankingLoss(keras.losses.Loss):
    """``keras.losses.Loss`` form of :func:`triplet_ranking_loss`.

    ``y_true`` is ignored (may be ``None``) (the triplet structure is the supervision);
    ``y_pred`` is a tuple
    ``(h, h_pos, h_neg)`` of ``(m, k)`` tensors or one stacked tensor ``(m, 3, k)``. The
    per-triplet values are reduced by ``reduction`` (default: mean over the batch).
    """

    def __init__(
        self,
        margin: float = 1.0,
        reduction: str = "sum_over_batch_size",
        name: str = "triplet_ranking_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_margin(margin)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # y_true is ignored; allow None (Keras' Loss would try to convert it).
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        h, h_pos, h_neg = split_triple(y_pred, self.name)
        return triplet_ranking_loss(h, h_pos, h_neg, margin=self.margin)

    def get_config(self) -> dict:
        config = super().get_config()
        config["margin"] = self.margin
        return config
