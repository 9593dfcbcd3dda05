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
from deephash.losses.pairwise import CodeCrossEntropy, LabelRegressionLoss, PairwiseLikelihoodLoss, QuantizationLoss, code_cross_entropy, label_regression_loss, pairwise_likelihood_loss, quantization_loss, similarity_matrix  # noqa: F401,E501  (DSEH)

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
from deephash.losses.baselines import LogCoshQuantizationLoss, PairwiseCrossEntropyLoss, SignQuantizationLoss, balanced_pair_weights, hashnet_beta, log_cosh_quantization_loss, pairwise_cross_entropy, sign_quantization_loss  # noqa: F401,E402,E501  (deep baselines)
