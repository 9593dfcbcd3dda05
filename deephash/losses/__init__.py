"""Losses as pure functions (per-sample values, or a documented batch statistic) plus
registered ``keras.losses.Loss`` classes that validate their arguments."""

from deephash.losses.baselines import (
    LogCoshQuantizationLoss,
    PairwiseCrossEntropyLoss,
    SignQuantizationLoss,
    balanced_pair_weights,
    hashnet_beta,
    log_cosh_quantization_loss,
    pairwise_cross_entropy,
    sign_quantization_loss,
)
from deephash.losses.classification import (
    SigmoidCrossEntropy,
    SoftmaxCrossEntropy,
    sigmoid_cross_entropy,
    softmax_cross_entropy,
)
from deephash.losses.orthogonality import OrthogonalityLoss, centre_codes, orthogonality_loss
from deephash.losses.pairwise import (
    CodeCrossEntropy,
    LabelRegressionLoss,
    PairwiseLikelihoodLoss,
    QuantizationLoss,
    code_cross_entropy,
    label_regression_loss,
    pairwise_likelihood_loss,
    quantization_loss,
    similarity_matrix,
)
from deephash.losses.triplet import TripletRankingLoss, triplet_ranking_loss

__all__ = [
    "CodeCrossEntropy",
    "LabelRegressionLoss",
    "LogCoshQuantizationLoss",
    "OrthogonalityLoss",
    "PairwiseCrossEntropyLoss",
    "PairwiseLikelihoodLoss",
    "QuantizationLoss",
    "SigmoidCrossEntropy",
    "SignQuantizationLoss",
    "SoftmaxCrossEntropy",
    "TripletRankingLoss",
    "balanced_pair_weights",
    "centre_codes",
    "code_cross_entropy",
    "hashnet_beta",
    "label_regression_loss",
    "log_cosh_quantization_loss",
    "orthogonality_loss",
    "pairwise_cross_entropy",
    "pairwise_likelihood_loss",
    "quantization_loss",
    "sigmoid_cross_entropy",
    "sign_quantization_loss",
    "similarity_matrix",
    "softmax_cross_entropy",
    "triplet_ranking_loss",
]
