"""Losses as pure functions (per-sample values, or a documented batch statistic) plus
registered ``keras.losses.Loss`` classes that validate their arguments."""
from deephash.losses.classification import (
    SigmoidCrossEntropy,
    SoftmaxCrossEntropy,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
)
from deephash.losses.orthogonality import OrthogonalityLoss, centre_codes, orthogonality_loss
from deephash.losses.triplet import TripletRankingLoss, triplet_ranking_loss

__all__ = [
    "OrthogonalityLoss",
    "SigmoidCrossEntropy",
    "SoftmaxCrossEntropy",
    "TripletRankingLoss",
    "centre_codes",
    "orthogonality_loss",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "triplet_ranking_loss",
]
