"""Orthogonality penalty of DSRH (Yao et al. 2016, Eq. 4-7): decorrelates the bits."""

from __future__ import annotations

import keras
from keras import ops

from deephash.losses._common import as_float, check_rank
from deephash.validation import check_bool


def centre_codes(h):
    """``H~ = 2H - 1``: maps relaxed codes in ``[0, 1]`` to ``[-1, 1]`` (DSRH §3.2)."""
    return 2.0 * as_float(h) - 1.0


def orthogonality_loss(*centred_codes):
    """Mean over the given matrices of ``||(1/m) H~^T H~ - I||_F^2`` (a batch statistic).

    Args:
        *centred_codes: one or more ``(m, k)`` matrices that ARE the centred codes
            ``H~ = 2H - 1`` (see :func:`centre_codes`); all must have the same ``k``.
            Passing the anchor, positive and negative matrices gives Eq. 6,
            ``(1/3) sum_{H~ in {H~*, H~+, H~-}} ||(1/m) H~^T H~ - I||_F^2``.

    Returns:
        A scalar. It is a statistic of the whole batch (``m`` rows), not a per-sample
        value: under a distribution strategy it must be scaled or computed on the
        gathered global batch by the caller.

    Gradient: for each of ``n`` matrices, ``d/dH~ = (4/(n m)) H~ ((1/m) H~^T H~ - I)``; with
    ``n = 3`` that is ``(4/(3m)) H~ ((1/m) H~^T H~ - I)``. The paper's printed Eq. 7,
    ``(4/(3m)) H~ (H~^T H~ - I)``, drops the ``1/m`` inside the bracket; the derivative of
    Eq. 6 as written (which this function computes) is the formula given here.
    """
    if not centred_codes:
        raise ValueError("orthogonality_loss needs at least one (m, k) code matrix")
    mats = [as_float(h) for h in centred_codes]
    k = None
    for i, h in enumerate(mats):
        check_rank(h, 2, f"orthogonality_loss: code matrix {i}")
        if k is None:
            k = h.shape[-1]
        elif h.shape[-1] is not None and k is not None and h.shape[-1] != k:
            raise ValueError(
                f"orthogonality_loss: all code matrices need the same number of bits; "
                f"matrix 0 has {k}, matrix {i} has {h.shape[-1]}"
            )
    dtype = mats[0].dtype
    terms = []
    for h in mats:
        h = ops.cast(h, dtype)
        m = ops.cast(ops.shape(h)[0], dtype)
        gram = ops.matmul(ops.transpose(h), h) / m
        eye = ops.eye(ops.shape(h)[1], dtype=dtype)
        terms.append(ops.sum(ops.square(gram - eye)))
    return ops.mean(ops.stack(terms))


@keras.saving.register_keras_serializable(package="deephash")
class OrthogonalityLoss(keras.losses.Loss):
    """``keras.losses.Loss`` form of :func:`orthogonality_loss` (Eq. 6), a scalar.

    ``y_true`` is ignored (may be ``None``); ``y_pred`` is a tuple/list of ``(m, k)`` code
    matrices or one stacked tensor ``(m, n, k)`` holding ``n`` matrices (e.g. anchors, positives,
    negatives). With ``centre=True`` (default) ``y_pred`` are the sigmoid outputs ``H`` in
    ``[0, 1]`` and are centred (``2H - 1``) first; with ``centre=False`` they are already
    centred. The result is already a batch statistic; ``reduction`` leaves a scalar as is.
    """

    def __init__(
        self,
        centre: bool = True,
        reduction: str = "sum_over_batch_size",
        name: str = "orthogonality_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.centre = check_bool(centre, "centre", owner="OrthogonalityLoss")

    def __call__(self, y_true, y_pred, sample_weight=None):
        # y_true is ignored; allow None (Keras' Loss would try to convert it).
        return super().__call__(0.0 if y_true is None else y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        if isinstance(y_pred, (list, tuple)):
            mats = list(y_pred)
        else:
            y_pred = ops.convert_to_tensor(y_pred)
            if len(y_pred.shape) == 2:
                mats = [y_pred]
            elif len(y_pred.shape) == 3 and y_pred.shape[1] is not None:
                mats = [y_pred[:, i] for i in range(y_pred.shape[1])]
            else:
                raise ValueError(
                    f"{self.name}: y_pred must be code matrices (m, k), a stacked (m, n, k) tensor "
                    f"or a tuple of matrices, got shape {tuple(y_pred.shape)}"
                )
        if self.centre:
            mats = [centre_codes(h) for h in mats]
        return orthogonality_loss(*mats)

    def get_config(self) -> dict:
        config = super().get_config()
        config["centre"] = self.centre
        return config
