"""DPSH (Li, Wang & Kang, IJCAI 2016): deep pairwise-supervised hashing.

Network (paper §3.1): backbone (CNN-F in the paper) -> linear hash layer ``u_i = Wᵀφ(x_i) + v``
(``Dense(bits)``, name "hash"); codes ``b_i = sgn(u_i)`` (bit = ``u_i > 0``).

Loss (Eq. 6), on the pairs ``i != j`` of the global batch with ``s_ij = 1`` when the items
share a label:

    J = mean_{i≠j} [ log(1 + e^{Θ_ij}) - s_ij Θ_ij ] + eta * mean_i ||b_i - u_i||²,   Θ_ij = ½ u_iᵀ u_j

(``losses.pairwise_likelihood_loss``, the same likelihood DSEH uses, and
``losses.sign_quantization_loss``). The paper writes both terms as sums, the first over
all n(n-1) pairs of the n training images and the second over the images, with η = 10;
dividing by n(n-1) gives the means used here with ``eta = η / (n - 1)``: 0.002 for
η = 10 and CIFAR-10's 5,000 training images (the default). The in-batch mean over pairs
estimates the mean over all pairs.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from deephash import losses
from deephash.methods.base import register
from deephash.methods.pairwise_method import PairwiseHashingMethod, check_number


@register("dpsh")
@keras.saving.register_keras_serializable(package="deephash")
class DPSH(PairwiseHashingMethod):
    """DPSH as a Keras model (module docstring). Hyper-parameters: ``eta`` (quantization
    weight, 0.002) plus the common ones of ``PairwiseHashingMethod`` (``bits``, ``backbone``,
    ``num_classes``, ``multilabel``, ``image_shape``, ``preprocessing``, ``augment``,
    ``weights``, ``input_shape``)."""

    method = "dpsh"
    default_backbone = "cnn_f"
    HPARAMS = {"eta": 0.002}

    @classmethod
    def check_hparams(cls, hp: dict) -> dict:
        return {"eta": check_number(cls.method, "eta", hp["eta"])}

    def term_names(self):
        return ("likelihood", "quantization")

    def loss_weights(self):
        return {"likelihood": 1.0, "quantization": self.eta}

    def loss_terms(self, outputs, labels, training_mode):
        u_local = outputs["hash"]
        u, s, mask = self.global_pairs(u_local, labels)
        pairs = losses.pairwise_likelihood_loss(u, u, s, reduction="none")
        return {
            "likelihood": self.masked_mean(pairs, mask),
            "quantization": tf.reduce_mean(losses.sign_quantization_loss(u_local)),
        }


__all__ = ["DPSH"]
