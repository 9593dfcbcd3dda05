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

import math
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from deephash import losses, training
from deephash.methods.base import check_bits
from deephash.methods.keras_method import KerasHashingMethod, default_backbone, resolve_backbone

_COMMON_CONFIG = (
    "bits",
    "backbone",
    "num_classes",
    "multilabel",
    "image_shape",
    "preprocessing",
    "augment",
)
_COMMON_ARGS = (*_COMMON_CONFIG, "weights", "input_shape")


def check_number(method: str, name: str, value, *, positive: bool = False) -> float:
    """``value`` as a float, or ValueError unless it is a finite non-negative (positive) number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{method}: {name} must be a {kind} number, got {value!r}")
    return float(value)


def check_int(method: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{method}: {name} must be a positive integer, got {value!r}")
    return int(value)


class PairwiseHashingMethod(KerasHashingMethod):
    """Base class: backbone -> hash logits (+ optional classifier), trained on labeled batches.

    Subclasses set ``method`` (registry name), ``default_backbone``, ``HPARAMS`` (their own
    hyper-parameters with defaults, validated by :meth:`check_hparams`), and implement
    :meth:`loss_terms` and :meth:`loss_weights`.
    """

    method = "pairwise"
    default_backbone = "cnn_f"
    HPARAMS: dict = {}
    with_classifier = False

    code_threshold = 0.0  # on the hash layer's outputs (logits)

    def __init__(
        self,
        bits: int,
        backbone: Any = None,
        num_classes: int = 10,
        multilabel: bool = False,
        image_shape: Sequence[int] | None = None,
        preprocessing: str | None = None,
        augment: bool = False,
        weights: str | None = None,
        input_shape: Sequence[int] | None = None,
        **kwargs,
    ):
        method = self.method
        hp = {k: kwargs.pop(k, v) for k, v in self.HPARAMS.items()}
        hp = self.check_hparams(hp)
        bits = check_bits(bits, method=method)
        num_classes = check_int(method, "num_classes", num_classes)
        image_shape = tuple(int(d) for d in image_shape) if image_shape is not None else None
        backbone_model, preprocessing = resolve_backbone(
            method,
            backbone if backbone is not None else self.default_backbone,
            image_shape,
            weights,
            input_shape,
            preprocessing,
        )
        inputs = keras.Input(shape=tuple(backbone_model.input_shape[1:]), name="images")
        features = backbone_model(inputs)
        outputs = {"hash": keras.layers.Dense(bits, dtype="float32", name="hash")(features)}
        if self.uses_classifier(hp):
            outputs["class_logits"] = keras.layers.Dense(
                num_classes, dtype="float32", name="classifier"
            )(features)
        kwargs.setdefault("name", method.replace("+", "_plus"))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.bits = bits
        self.backbone = backbone_model
        self.num_classes = num_classes
        self.multilabel = bool(multilabel)
        self.image_shape = image_shape
        self.preprocessing = preprocessing
        self.augment = bool(augment)
        for k, v in hp.items():
            setattr(self, k, v)
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in ("loss", *self.term_names())
        }

    # ------------------------------------------------------------------ subclass hooks
    @classmethod
    def check_hparams(cls, hp: dict) -> dict:
        """Validate and normalise the method's own hyper-parameters (ValueError)."""
        return hp

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

    # ------------------------------------------------------------------ registry / config
    @classmethod
    def registry_kwargs(cls, name: str, bits: int, dataset: Any = None, **hparams) -> dict:
        kw = cls.protocol_kwargs(bits, dataset, hparams, backbone_fallback=cls.default_backbone)
        known = (*_COMMON_ARGS, *cls.HPARAMS)
        cls.check_known(name, kw, known, sorted(set(known) - {"weights", "input_shape"}))
        return kw

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The common arguments, then the method's own ``HPARAMS``."""
        return (*_COMMON_CONFIG, *cls.HPARAMS)

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


__all__ = [
    "PairwiseHashingMethod",
    "check_int",
    "check_number",
    "default_backbone",
    "resolve_backbone",
]
