"""DPSH (Li, Wang & Kang, IJCAI 2016): deep pairwise-supervised hashing.

Network (paper §3.1): backbone (CNN-F in the paper) -> linear hash layer ``u_i = Wᵀφ(x_i) + v``
(``Dense(bits)``, name "hash"); codes ``b_i = sgn(u_i)`` (bit = ``u_i > 0``).

Loss (Eq. 6) with ``s_ij = 1`` when items i and j share a label:

    J = mean_{pairs} [ log(1 + e^{Θ_ij}) - s_ij Θ_ij ] + eta * mean_i ||b_i - u_i||²,
    Θ_ij = ½ u_iᵀ u_j

(``losses.pairwise_likelihood_loss``, the same likelihood DSEH uses, and
``losses.sign_quantization_loss``). The paper writes both terms as sums, the first over
all n(n-1) pairs of the n training images and the second over the images, with η = 10;
dividing by the pair count gives the means used here with ``eta = η / (n - 1)``: 0.002 for
η = 10 and CIFAR-10's 5,000 training images (the default).

**Which pairs** (``pairs``). ``"table"`` (the default, as the reference implementations
do: jiangqy/DPSH-pytorch ``DPSH_CIFAR_10.py`` keeps a table ``U`` of the outputs of all
``n`` training images and pairs each batch item with every row, the loss divided by
``n x batch``): each batch item i is paired with all training items j through a stored
table of their hash-layer outputs, recomputed at the start of every epoch (the reference
overwrites a row whenever its image is in a batch; either way a row is at most one epoch
old); gradients flow through the batch side. ``"batch"``: the pairs ``i != j`` of the
global batch only (with ImageNet-100's 100 classes and batch 128, about 1.3 similar pairs
per item).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from deephash import losses
from deephash.methods.base import register
from deephash.methods.hparams import HParam, choice, number
from deephash.methods.pairwise_method import PairwiseHashingMethod, common_hparams

PAIRS = ("table", "batch")


@register("dpsh")
@keras.saving.register_keras_serializable(package="deephash")
class DPSH(PairwiseHashingMethod):
    """DPSH as a Keras model (module docstring). Hyper-parameters: ``eta`` (quantization
    weight, 0.002), ``pairs`` ("table" or "batch") plus the common ones of
    ``PairwiseHashingMethod`` (``bits``, ``backbone``, ``num_classes``, ``multilabel``,
    ``image_shape``, ``preprocessing``, ``augment``, ``weights``, ``input_shape``)."""

    method = "dpsh"
    HPARAMS = common_hparams(
        eta=HParam(0.002, number(minimum=0)),
        pairs=HParam("table", choice(*PAIRS)),
    )

    def term_names(self):
        return ("likelihood", "quantization")

    def loss_weights(self):
        return {"likelihood": 1.0, "quantization": self.eta}

    def loss_terms(self, outputs, labels, training_mode):
        u_local = outputs["hash"]
        table = getattr(self, "_table", None)
        if self.pairs == "table" and training_mode and table is not None:
            s = losses.similarity_matrix(labels, table["labels"])
            pairs = losses.pairwise_likelihood_loss(u_local, table["codes"], s, reduction="none")
            likelihood = tf.reduce_mean(pairs)  # this replica's items, each against all n
        else:
            u, s, mask = self.global_pairs(u_local, labels)
            pairs = losses.pairwise_likelihood_loss(u, u, s, reduction="none")
            likelihood = self.masked_mean(pairs, mask)
        return {
            "likelihood": likelihood,
            "quantization": tf.reduce_mean(losses.sign_quantization_loss(u_local)),
        }

    def refresh_table(self, split=None) -> None:
        """Recompute the stored hash-layer outputs of all training images; ``split`` (the
        training split) allocates a new, empty table instead (``fit_dataset`` does this)."""
        if split is not None:
            labels = np.asarray(split.labels, np.float32)
            with self.distribute_strategy.scope():
                table = {
                    "labels": tf.Variable(labels, trainable=False, name="dpsh_train_labels"),
                    "codes": tf.Variable(
                        tf.zeros((len(labels), self.bits)), trainable=False, name="dpsh_train_codes"
                    ),
                }
            object.__setattr__(self, "_table", table)
            object.__setattr__(self, "_table_split", split)
            object.__setattr__(
                self, "_table_model", self.code_logits_model()
            )  # one model: no retracing
            return  # filled at the start of the first epoch (after a resume restored the weights)
        self._table["codes"].assign(self._predict(self._table_model, self._table_split, 256))

    def fit_dataset(self, dataset, config=None, callbacks=None) -> dict:
        if self.pairs != "table":
            return super().fit_dataset(dataset, config, callbacks)
        split = dataset.train if hasattr(dataset, "train") else dataset
        self.refresh_table(split)
        self.train_function = None  # trace the table into train_step
        try:
            return super().fit_dataset(dataset, config, [_RefreshTable(self), *(callbacks or [])])
        finally:
            object.__setattr__(self, "_table", None)
            object.__setattr__(self, "_table_split", None)
            object.__setattr__(self, "_table_model", None)
            self.train_function = None


class _RefreshTable(keras.callbacks.Callback):
    """Recompute DPSH's table of training outputs at the start of every epoch."""

    def __init__(self, method: DPSH):
        super().__init__()
        self._method = method

    def on_epoch_begin(self, epoch, logs=None):
        self._method.refresh_table()


__all__ = ["DPSH", "PAIRS"]
