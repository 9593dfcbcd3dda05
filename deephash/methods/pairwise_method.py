"""Shared plumbing of the deep baselines trained on labeled images (CNNH, DPSH, DHN, HashNet).

Architecture: backbone (``deephash.backbones``) -> ``Dense(bits, name="hash")``, the
paper's hash layer, whose outputs are the codes' logits: bit = logit > 0. A subclass may
add a ``classifier`` head (CNNH+) and chooses which loss terms it trains.

Training batches are ``(images, labels)`` from ``data.labeled_dataset`` (shuffled, drop the
remainder): a stateless stream whose batch ``i`` depends only on ``(config.seed, i)``, so it
is the same under any strategy, and a run resumed from a checkpoint restarts it at batch
``epoch * steps_per_epoch`` (``start_step``) and sees exactly the batches of an
uninterrupted run. **In-batch pairs under a strategy.** Each replica sees its share of the
global batch; the pairwise terms are computed on the GLOBAL batch, gathered with
``training.gather_replicas`` (identical on every replica, differentiable), and every term
goes through ``training.scale_to_replicas``, so training on N replicas equals one device
with the same global batch. Pairs are all ``i != j`` of the global batch (an item paired
with itself carries no information about the hash function); DPSH's default pairs each
item with a stored table of all training outputs instead (``methods/dpsh.py``).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from deephash import losses, training
from deephash.methods.hparams import HParam, protocol
from deephash.methods.keras_method import KerasHashingMethod


def common_hparams(**own: HParam) -> dict[str, HParam]:
    """The table of a pairwise method: the common entries (``bits``, ``backbone`` (cnn_f),
    ``num_classes``, ``multilabel``, ``image_shape``, ``preprocessing``, ``augment``), then
    the method's ``own``, then the construction-only ``weights`` and ``input_shape``."""
    return {
        **protocol("bits", "backbone", "num_classes", "multilabel", backbone="cnn_f"),
        **protocol("image_shape", "preprocessing", "augment"),
        **own,
        **protocol("weights", "input_shape"),
    }


class PairwiseHashingMethod(KerasHashingMethod):
    """Base class: backbone -> hash logits (+ optional classifier), trained on labeled batches.

    Subclasses set ``method`` (registry name), ``HPARAMS`` (``common_hparams(**own)``),
    and implement :meth:`loss_terms` and :meth:`loss_weights`.
    """

    method = "pairwise"
    HPARAMS = common_hparams()
    with_classifier = False

    code_threshold = 0.0  # on the hash layer's outputs (logits)

    def __init__(self, bits: int, backbone: Any = None, **kwargs):
        hp = self.check_hparams(bits=bits, backbone=backbone, **self.pop_hparams(kwargs))
        # === Layers ===
        backbone_model, hp["preprocessing"] = self.make_backbone(hp, self.method)
        hash_layer = keras.layers.Dense(hp["bits"], dtype="float32", name="hash")
        classifier = None
        if self.uses_classifier(hp):
            classifier = keras.layers.Dense(hp["num_classes"], dtype="float32", name="classifier")

        # === Functional model ===
        inputs = keras.Input(shape=tuple(backbone_model.input_shape[1:]), name="images")
        features = backbone_model(inputs)
        outputs = {"hash": hash_layer(features)}
        if classifier is not None:
            outputs["class_logits"] = classifier(features)
        kwargs.setdefault("name", self.method.replace("+", "_plus"))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone_model
        self.set_hparams(hp)
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in ("loss", *self.term_names())
        }

    # ------------------------------------------------------------------ subclass hooks
    @classmethod
    def uses_classifier(cls, hp: dict) -> bool:
        return cls.with_classifier

    def term_names(self) -> tuple[str, ...]:
        """Names of the loss terms (history keys besides ``loss``)."""
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float]:
        """Weight of each term in the training loss."""
        raise NotImplementedError

    def loss_terms(self, outputs: dict, labels, training_mode: bool) -> dict:
        """Scalar loss terms of one (per-replica) batch; each must be this replica's mean
        of a per-sample quantity or a global-batch statistic (see the module docstring)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for subclasses
    @staticmethod
    def global_pairs(codes, labels):
        """``(codes, similarity, mask)`` of the global batch: codes gathered over the
        replicas ``(B, k)``, ``s_ij`` = items share a label ``(B, B)``, ``mask`` = 1 off
        the diagonal."""
        codes = training.gather_replicas(codes)
        labels = training.gather_replicas(tf.cast(labels, tf.float32))
        s = losses.similarity_matrix(labels, labels)
        mask = losses.baselines.off_diagonal_mask(tf.shape(s)[0], s.dtype)
        return codes, s, mask

    @staticmethod
    def masked_mean(values, mask):
        """Mean of ``values`` over the entries where ``mask`` is 1."""
        return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))

    # ------------------------------------------------------------------ models
    def code_logits_model(self) -> keras.Model:
        """Preprocessed images -> hash-layer outputs; bit = output > 0."""
        return self.layer_model("hash", "hash_logits")

    def hash_model(self) -> keras.Model:
        """Preprocessed images -> relaxed codes ``tanh(z)`` in (-1, 1) (same signs as the codes)."""
        relaxed = keras.layers.Activation("tanh", dtype="float32", name="relaxed_codes")(
            self.get_layer("hash").output
        )
        return keras.Model(self.inputs, relaxed, name=f"{self.name}_hash")

    def _terms(self, data, training_mode: bool) -> dict:
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        out = self(images, training=training_mode)
        out = {k: tf.cast(v, tf.float32) for k, v in out.items()}
        return self.loss_terms(out, tf.cast(labels, tf.float32), training_mode)

    def _weighted(self, terms: dict, scale: bool):
        weights = self.loss_weights()
        total = 0.0
        for k, v in terms.items():
            w = weights.get(k, 1.0)
            if w:
                total += w * (training.scale_to_replicas(v) if scale else v)
        return total

    def train_step(self, data):
        with tf.GradientTape() as tape:
            terms = self._terms(data, training_mode=True)
            total = self._weighted(terms, scale=True) + self.regularization_loss()
            scaled = self.optimizer.scale_loss(total)
        self.minimize(tape, scaled)
        return self._update_trackers(terms)

    def test_step(self, data):
        return self._update_trackers(self._terms(data, training_mode=False))

    def _update_trackers(self, terms: dict) -> dict:
        return self.record_losses(self._weighted(terms, scale=False), terms)


__all__ = ["PairwiseHashingMethod", "common_hparams"]
