"""DHN (Zhu, Long, Wang & Cao, AAAI 2016): deep hashing network.

Network: backbone (AlexNet in the paper) -> hash layer ``fch`` with ``bits`` units
(``Dense(bits)``, name "hash"), continuous codes ``z_i`` (identity activation by default;
``hash_activation="tanh"`` squashes them into (-1, 1)); codes ``h_i = sgn(z_i)`` (bit =
``z_i > 0``, the same for both activations).

Loss (Eq. 7 = Eq. 5 + λ Eq. 6), on the pairs ``i != j`` of the global batch with
``s_ij = 1`` when the items share a label:

    C = mean_{i≠j} [ log(1 + exp⟨z_i, z_j⟩) - s_ij ⟨z_i, z_j⟩ ]
        + quantization_weight * mean_i Σ_k log cosh(|z_ik| - 1)

(``losses.pairwise_cross_entropy`` with alpha = 1, ``losses.log_cosh_quantization_loss``,
the smooth surrogate of the bimodal Laplacian prior ``|| |z_i| - 1 ||_1``). The paper
sums the first term over all n(n-1) training pairs and the second over the n images and
picks λ on validation data; as means, the weight here is ``λ / (n - 1)``. The default
0.005 is the value that trained well on digits (a larger weight pulls every code to the
same corner while the codes are still small; see docs/baselines.md).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from deephash import losses
from deephash.methods.base import register
from deephash.methods.hparams import HParam, choice, number
from deephash.methods.pairwise_method import PairwiseHashingMethod, common_hparams

_ACTIVATIONS = ("linear", "tanh")


@register("dhn")
@keras.saving.register_keras_serializable(package="deephash")
class DHN(PairwiseHashingMethod):
    """DHN as a Keras model (module docstring). Hyper-parameters: ``quantization_weight``
    (λ / (n - 1), 0.005) and ``hash_activation`` ("linear" or "tanh") plus the common ones of
    ``PairwiseHashingMethod``."""

    method = "dhn"
    HPARAMS = common_hparams(
        quantization_weight=HParam(0.005, number(minimum=0)),
        hash_activation=HParam("linear", choice(*_ACTIVATIONS, lower=True)),
    )

    def term_names(self):
        return ("cross_entropy", "quantization")

    def loss_weights(self):
        return {"cross_entropy": 1.0, "quantization": self.quantization_weight}

    def continuous_codes(self, logits):
        return tf.tanh(logits) if self.hash_activation == "tanh" else logits

    def loss_terms(self, outputs, labels, training_mode):
        z_local = self.continuous_codes(outputs["hash"])
        z, s, mask = self.global_pairs(z_local, labels)
        pairs = losses.pairwise_cross_entropy(z, z, s, alpha=1.0, reduction="none")
        return {
            "cross_entropy": self.masked_mean(pairs, mask),
            "quantization": tf.reduce_mean(losses.log_cosh_quantization_loss(z_local)),
        }


__all__ = ["DHN"]
