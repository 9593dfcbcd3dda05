"""HashNet (Cao, Long, Wang & Yu, ICCV 2017): deep learning to hash by continuation.

Network: backbone (AlexNet in the paper) -> hash layer ``z`` (``Dense(bits)``, name
"hash") -> ``h = tanh(β z)`` during training; codes ``sgn(z)`` (bit = ``z > 0``), which
``tanh(βz)`` approaches as ``β`` grows.

Loss (Eq. 6): weighted maximum likelihood over the pairs ``i != j`` of the global batch,

    L = (1/|S|) Σ_{i≠j} w_ij [ log(1 + exp(α⟨h_i, h_j⟩)) - α s_ij ⟨h_i, h_j⟩ ]

with ``w_ij = |S|/|S_1|`` for similar and ``|S|/|S_0|`` for dissimilar pairs counted in the
batch (Eq. 4 with ``c_ij = 1``, i.e. binary similarity), so L is the mean over similar
pairs plus the mean over dissimilar pairs (``losses.balanced_pair_weights``,
``losses.pairwise_cross_entropy``). ``alpha`` defaults to ``10 / bits`` (the authors'
setting). Continuation (§3.2): ``β_t = beta0 (1 + gamma t)^power`` with ``t`` the optimiser
step rounded down to a multiple of ``beta_step`` (``losses.hashnet_beta``; defaults 1,
0.005, 0.5, 200 as in the released code). β is computed from ``optimizer.iterations``, so a
resumed run continues the schedule exactly.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from deephash import losses
from deephash.methods.base import register
from deephash.methods.hparams import HParam, integer, number, optional
from deephash.methods.pairwise_method import PairwiseHashingMethod, common_hparams


@register("hashnet")
@keras.saving.register_keras_serializable(package="deephash")
class HashNet(PairwiseHashingMethod):
    """HashNet as a Keras model (module docstring). Hyper-parameters: ``alpha`` (None:
    10 / bits), ``beta0``, ``gamma``, ``power``, ``beta_step``, plus the common ones of
    ``PairwiseHashingMethod``."""

    method = "hashnet"
    HPARAMS = common_hparams(
        alpha=HParam(None, optional(number(positive=True))),
        beta0=HParam(1.0, number(positive=True)),
        gamma=HParam(0.005, number(minimum=0)),
        power=HParam(0.5, number(minimum=0)),
        beta_step=HParam(200, integer()),
    )

    @property
    def sigmoid_alpha(self) -> float:
        """α of the adaptive sigmoid: the ``alpha`` hyper-parameter, or 10 / bits."""
        return float(self.alpha) if self.alpha is not None else 10.0 / self.bits

    def beta(self, step=None):
        """β of the continuation at optimiser ``step`` (default: the current one)."""
        if step is None:
            opt = getattr(self, "optimizer", None)
            step = opt.iterations if opt is not None else 0
        return losses.hashnet_beta(step, self.beta0, self.gamma, self.power, self.beta_step)

    def term_names(self):
        return ("weighted_likelihood", "beta")

    def loss_weights(self):
        return {"weighted_likelihood": 1.0, "beta": 0.0}  # beta is reported, not trained

    def loss_terms(self, outputs, labels, training_mode):
        beta = tf.cast(self.beta(), tf.float32)
        h, s, mask = self.global_pairs(tf.tanh(beta * outputs["hash"]), labels)
        w = losses.balanced_pair_weights(s, mask)
        pairs = losses.pairwise_cross_entropy(
            h, h, s, alpha=self.sigmoid_alpha, weights=w, reduction="none"
        )
        return {"weighted_likelihood": self.masked_mean(pairs, mask), "beta": beta}


__all__ = ["HashNet"]
