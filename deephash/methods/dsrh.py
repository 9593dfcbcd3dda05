"""DSRH, DRH and DRH+ (Yao et al., IJCAI 2016): deep semantic-preserving and
ranking-based hashing.

Architecture (paper §3, §4.2): backbone (VGG-19 through fc7, or a small CNN) ->
``fc8 = Dense(bags * bits)`` -- the paper's 19th layer with ``s * k`` units, the shared
representation that BOTH streams read -> hash stream ``BagHash`` (each bag of ``bags``
features -> one unit) -> sigmoid codes ``H`` in [0, 1]; classification stream
``Dense(num_classes)`` on the same fc8 (softmax for single-label, sigmoid for multi-label
data).

Loss per step on a batch of ``m`` triplets ``(X, X+, X-)`` run as one batch of ``3m``:
``mean_m triplet(H*, H+, H-)`` (Eq. 2, on ``H``)
``+ ortho_weight * orthogonality(2H*-1, 2H+-1, 2H--1)`` (Eq. 6, over the GLOBAL batch)
``+ classification_weight * mean_3m CE`` (Eq. 8 / Eq. 11)
plus Caffe-style weight decay. Variants: ``dsrh`` = all terms; ``drh+`` = triplet +
orthogonality (no classification stream); ``drh`` = triplet only.

Codes: bit = 1 where the bag unit's pre-activation is > 0, i.e. sigmoid > 0.5.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from deephash import losses, training
from deephash.layers import BagHash
from deephash.methods.base import register
from deephash.methods.hparams import HParam, choice, integer, number, protocol
from deephash.methods.triplet_method import TripletHashingMethod

log = logging.getLogger(__name__)

VARIANTS = ("dsrh", "drh", "drh+")
# the orthogonality weights tried by select_ortho_weight (the paper's 0.25 and "off")
ORTHO_GRID = (0.0, 0.05, 0.25)


@register("dsrh")
@register("drh")
@register("drh+")
@keras.saving.register_keras_serializable(package="deephash")
class DSRH(TripletHashingMethod):
    """DSRH / DRH / DRH+ as one Keras model (see the module docstring).

    Args:
        bits: code length ``k``.
        backbone: a ``keras.Model`` (images -> features ``(b, d)``) or a name for
            ``deephash.backbones.get`` ("small_cnn", "vgg19", "cnn_f").
        num_classes: classes of the classification stream (``dsrh`` only; stored always).
        multilabel: sigmoid cross-entropy (Eq. 11) instead of softmax (Eq. 8).
        variant: "dsrh", "drh" or "drh+".
        bags: features per bit ``s`` (30 in the paper).
        ortho_weight: lambda of Eq. 5 (the paper: 0.25, chosen on validation data; ignored
            by ``drh``). See :func:`select_ortho_weight`.
        classification_weight: weight of the classification loss (``dsrh`` only).
        margin: triplet hinge margin (1 in Eq. 2).
        image_shape: raw image shape ``(h, w, ch)`` the model encodes (None: file-based).
        preprocessing: backbone name for ``data.preprocessing.for_backbone``, or "none"
            when images are fed to the backbone as they are. Derived when ``backbone`` is
            a name.
        augment: augment training images (the backbone preprocessing's training mode:
            small_cnn random translation; vgg19 random crop + flip).
        weights: local weight file for a named backbone (construction only; not saved).
        input_shape: override a named backbone's input shape (construction only).
    """

    LOGITS_LAYER = "bag_hash"  # bit = bag unit's pre-activation > 0
    method = "dsrh"
    HPARAMS = {
        **protocol("bits", "backbone", "num_classes", "multilabel", backbone="small_cnn"),
        "variant": HParam("dsrh", choice(*VARIANTS, lower=True)),
        "bags": HParam(30, integer()),
        "ortho_weight": HParam(0.25, number(minimum=0)),
        "classification_weight": HParam(1.0, number(minimum=0)),
        "margin": HParam(1.0, number(minimum=0)),
        **protocol("image_shape", "preprocessing", "augment"),
        "triplet_on": HParam("centred", choice("centred", "relaxed")),
        **protocol("weights", "input_shape"),
    }

    def __init__(self, bits: int, backbone: Any = None, **kwargs):
        hp = self.check_hparams(bits=bits, backbone=backbone, **self.pop_hparams(kwargs))
        variant = hp["variant"]
        # === Layers ===
        backbone_model, hp["preprocessing"] = self.make_backbone(hp, variant)

        # === Functional model ===
        inputs = keras.Input(shape=tuple(backbone_model.input_shape[1:]), name="images")
        features = backbone_model(inputs)
        fc8 = keras.layers.Dense(hp["bags"] * hp["bits"], name="fc8")(features)
        logits = BagHash(hp["bits"], bags=hp["bags"], activation=None, name="bag_hash")(fc8)
        codes = keras.layers.Activation("sigmoid", dtype="float32", name="codes")(logits)
        outputs = {"codes": codes}
        if variant == "dsrh":
            outputs["class_logits"] = keras.layers.Dense(
                hp["num_classes"], dtype="float32", name="classifier"
            )(fc8)
        kwargs.setdefault("name", variant.replace("+", "_plus"))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone_model
        self.set_hparams(hp)
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "triplet", "orthogonality", "classification")
        }

    # ------------------------------------------------------------------ hyper-parameter selection
    @classmethod
    def resolve_hparams(
        cls, name: str, dataset, bits: int, config: training.TrainConfig, hparams: dict
    ):
        """Resolve ``ortho_weight="auto"`` with :func:`select_ortho_weight` (validation
        split carved from training). Returns ``(hparams, selection record)``."""
        if str(hparams.get("ortho_weight", "")).lower() != "auto":
            return dict(hparams), {}
        if name == "drh":
            raise ValueError("drh has no orthogonality term: ortho_weight=auto does not apply")
        rest = {k: v for k, v in hparams.items() if k != "ortho_weight"}
        best, scores = select_ortho_weight(dataset, bits, config, variant=name, **rest)
        record = {
            "ortho_weight": {
                "chosen": best,
                "grid": list(ORTHO_GRID),
                "validation_map": scores,
                "validation": f"10% of the training split (seed {config.seed}) as queries, "
                "the rest as database",
            }
        }
        return {**rest, "ortho_weight": best}, record

    # ------------------------------------------------------------------ training
    def compute_losses(self, data, training_mode: bool = True) -> dict:
        """Per-replica loss terms for one batch of triplets (unscaled; see train_step)."""
        (a, p, n), (ya, yp, yn), _ = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.concat([a, p, n], axis=0)
        out = self(x, training=training_mode)
        h = tf.cast(out["codes"], tf.float32)
        ha, hp, hn = tf.split(h, 3, axis=0)
        if self.triplet_on == "centred":  # Eq. 4-5: the triplet loss of the centred codes
            ta, tp, tn = (losses.centre_codes(t) for t in (ha, hp, hn))
        else:  # Eq. 2 on H in [0, 1]
            ta, tp, tn = ha, hp, hn
        terms = {
            "triplet": tf.reduce_mean(losses.triplet_ranking_loss(ta, tp, tn, margin=self.margin))
        }
        if self.variant in ("dsrh", "drh+"):
            centred = [losses.centre_codes(training.gather_replicas(t)) for t in (ha, hp, hn)]
            terms["orthogonality"] = losses.orthogonality_loss(*centred)
        if self.variant == "dsrh":
            y = tf.cast(tf.concat([ya, yp, yn], axis=0), tf.float32)
            ce = losses.sigmoid_cross_entropy if self.multilabel else losses.softmax_cross_entropy
            terms["classification"] = tf.reduce_mean(
                ce(y, tf.cast(out["class_logits"], tf.float32))
            )
        return terms

    def _total(self, terms: dict):
        # every term is a mean over this replica's triplets or a global-batch statistic,
        # so each is divided by the replica count (gradients are summed over replicas)
        total = training.scale_to_replicas(terms["triplet"])
        if "orthogonality" in terms:
            total += self.ortho_weight * training.scale_to_replicas(terms["orthogonality"])
        if "classification" in terms:
            total += self.classification_weight * training.scale_to_replicas(
                terms["classification"]
            )
        return total

    def train_step(self, data):
        with tf.GradientTape() as tape:
            terms = self.compute_losses(data, training_mode=True)
            total = self._total(terms) + self.regularization_loss()
            scaled = self.optimizer.scale_loss(total)
        self.minimize(tape, scaled)
        return self._update_trackers(terms)

    def test_step(self, data):
        return self._update_trackers(self.compute_losses(data, training_mode=False))

    def _update_trackers(self, terms: dict) -> dict:
        loss = terms["triplet"]
        if "orthogonality" in terms:
            loss = loss + self.ortho_weight * terms["orthogonality"]
        if "classification" in terms:
            loss = loss + self.classification_weight * terms["classification"]
        return self.record_losses(loss, terms)


def select_ortho_weight(
    dataset,
    bits: int,
    config: training.TrainConfig,
    grid: Sequence[float] = ORTHO_GRID,
    variant: str = "dsrh",
    fraction: float = 0.1,
    **hparams,
) -> tuple[float, dict[str, float]]:
    """Choose the orthogonality weight lambda on a validation split carved from
    ``dataset.train`` (``dataset.validation_split(fraction, seed=config.seed)``), never
    on the queries: for each value in ``grid`` train on the rest of the training split,
    encode the validation items as queries against it, and score mAP (at the protocol's
    depth). Returns ``(best lambda, {str(lambda): validation mAP})``; ties go to the
    value listed first.
    """
    from deephash import methods, metrics

    if variant not in ("dsrh", "drh+"):
        raise ValueError(f"select_ortho_weight: {variant!r} has no orthogonality term")
    grid = [float(g) for g in grid]
    if not grid or any(not np.isfinite(g) or g < 0 for g in grid):
        raise ValueError(f"select_ortho_weight: grid must hold non-negative numbers, got {grid!r}")
    fit, val = dataset.validation_split(fraction=fraction, seed=config.seed)
    inner = dataclasses.replace(dataset, train=fit, query=val, database=fit)
    strategy = training.get_strategy(config.strategy)
    scores: dict[str, float] = {}
    for lam in grid:
        training.set_seed(config.seed)
        with strategy.scope():
            model = methods.create(
                variant, bits=bits, dataset=inner, **{**hparams, "ortho_weight": lam}
            )
        model.fit_dataset(inner, config.replace(checkpoint_dir=None))
        result = metrics.evaluate(
            model.encode(val),
            model.encode(fit),
            val.labels,
            fit.labels,
            top_k=dataset.protocol.map_depth,
        )
        scores[repr(lam)] = float(result["map"])
        log.info("%s: lambda=%g validation mAP %.4f", variant, lam, scores[repr(lam)])
        del model
    best = max(grid, key=lambda g: (scores[repr(g)], -grid.index(g)))
    return best, scores
