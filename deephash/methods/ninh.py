"""NINH (Lai, Pan, Liu & Yan, CVPR 2015): simultaneous feature learning and hash coding
with a shared network, a divide-and-encode module and a triplet ranking loss.

Architecture (paper §3.2-3.3): the images of a triplet go through ONE shared network (the
backbone; the paper's stacked network-in-network layers) giving the intermediate feature
``x`` of width ``d``. The **divide-and-encode module** splits ``x`` into ``bits`` slices of
equal length ``d // bits`` and encodes each slice into one unit by its own fully connected
unit followed by a sigmoid (``layers.BagHash`` with ``bags = d // bits``); when ``d`` is not
a multiple of ``bits`` the last ``d mod bits`` features are not used. During training a
piece-wise threshold function (Eq. 4) pushes the outputs towards binary values:

    g(s) = 0 if s < 0.5 - ε;   s if 0.5 - ε <= s <= 0.5 + ε;   1 if s > 0.5 + ε

(``threshold_epsilon`` = ε). It is OFF by default (ε = 0): it zeroes the gradient of every
unit outside the band, which on a randomly initialised backbone freezes most bits at
their initial values (digits, 32 bits, 50 epochs at lr 0.1: mAP 0.84 with ε = 0, 0.73 with
ε = 0.02, 0.52 with ε = 0.1). Codes: bit = slice unit's pre-activation > 0 (sigmoid > 0.5).

**Difference from DSRH/DRH.** DSRH puts a learned ``Dense(s * k)`` layer ("fc8") between
the backbone and the bag layer, so each bag reads features made for it; NINH divides the
backbone's feature vector itself, with no fully connected layer in front of the module.

Loss (Eq. 2): the triplet ranking hinge on the relaxed codes ``F(I) ∈ [0, 1]^q`` of triplets
``(I, I+, I-)`` (``I+`` shares a label with ``I``, ``I-`` none):
``max(0, margin - (||F(I) - F(I-)||² - ||F(I) - F(I+)||²))`` with margin 1, averaged over
the batch (``losses.triplet_ranking_loss``); triplets come from ``data.triplet_dataset``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from deephash import losses, training
from deephash.layers import BagHash
from deephash.methods.base import register
from deephash.methods.hparams import HParam, number, protocol
from deephash.methods.triplet_method import TripletHashingMethod
from deephash.validation import check_number


@keras.saving.register_keras_serializable(package="deephash")
class PiecewiseThreshold(keras.layers.Layer):
    """NINH's Eq. 4 on sigmoid outputs in training; identity at inference.

    ``(b, k) -> (b, k)``: values below ``0.5 - epsilon`` become 0, above ``0.5 + epsilon``
    become 1 (gradient 0 there), the band in between passes unchanged.
    """

    def __init__(self, epsilon: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = check_number(
            epsilon, "epsilon", minimum=0, maximum=0.5, owner="PiecewiseThreshold"
        )

    def call(self, inputs, training=None):
        if not training or self.epsilon == 0.0:
            return inputs
        low = ops.cast(inputs < 0.5 - self.epsilon, inputs.dtype)
        high = ops.cast(inputs > 0.5 + self.epsilon, inputs.dtype)
        band = 1.0 - low - high
        return band * inputs + high

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@register("ninh")
@keras.saving.register_keras_serializable(package="deephash")
class NINH(TripletHashingMethod):
    """NINH as one Keras model (see the module docstring).

    Args:
        bits: code length ``q``; at most the backbone's feature width.
        backbone: a ``keras.Model`` (images -> features ``(b, d)``) or a name for
            ``deephash.backbones.get``.
        num_classes, multilabel: the data's protocol (stored; NINH does not classify).
        threshold_epsilon: ε of the piece-wise threshold (default 0 = off; see above).
        margin: triplet hinge margin (1 in Eq. 2).
        image_shape, preprocessing, augment, weights, input_shape: as in ``methods.dsrh.DSRH``.
    """

    LOGITS_LAYER = "divide_encode"  # bit = slice unit's pre-activation > 0
    method = "ninh"
    HPARAMS = {
        **protocol("bits", "backbone", "num_classes", "multilabel", backbone="vgg19"),
        "threshold_epsilon": HParam(0.0, number(minimum=0, maximum=0.5)),
        "margin": HParam(1.0, number(minimum=0)),
        **protocol("image_shape", "preprocessing", "augment", "weights", "input_shape"),
    }

    def __init__(self, bits: int, backbone: Any = None, **kwargs):
        hp = self.check_hparams(bits=bits, backbone=backbone, **self.pop_hparams(kwargs))
        bits = hp["bits"]
        # === Layers ===
        backbone_model, hp["preprocessing"] = self.make_backbone(hp, "ninh")
        width = int(backbone_model.outputs[0].shape[-1])
        if bits > width:
            raise ValueError(
                f"ninh: {bits} bits need at least {bits} backbone features, the backbone "
                f"gives {width}. Received: bits={bits}"
            )
        slice_len = width // bits

        # === Functional model ===
        inputs = keras.Input(shape=tuple(backbone_model.input_shape[1:]), name="images")
        features = backbone_model(inputs)
        used = slice_len * bits
        if used < width:  # drop the last d mod bits features
            features = keras.layers.Reshape((width, 1), name="as_sequence")(features)
            features = keras.layers.Cropping1D((0, width - used), name="drop_remainder")(features)
            features = keras.layers.Reshape((used,), name="divided_features")(features)
        logits = BagHash(
            bits, bags=slice_len, activation=None, dtype="float32", name="divide_encode"
        )(features)
        codes = keras.layers.Activation("sigmoid", dtype="float32", name="codes")(logits)
        kwargs.setdefault("name", "ninh")
        super().__init__(inputs=inputs, outputs=codes, **kwargs)
        # the training-time threshold sits outside the inference graph
        self.threshold = PiecewiseThreshold(
            hp["threshold_epsilon"], dtype="float32", name="piecewise_threshold"
        )

        # === Config ===
        self.backbone = backbone_model
        self.set_hparams(hp)
        self.slice_length = slice_len
        self._trackers = {"loss": keras.metrics.Mean(name="loss")}

    # ------------------------------------------------------------------ training
    def compute_loss_value(self, data, training_mode: bool = True):
        """This replica's mean triplet loss (Eq. 2) on one batch of triplets."""
        (a, p, n), _, _ = keras.utils.unpack_x_y_sample_weight(data)
        h = tf.cast(self(tf.concat([a, p, n], axis=0), training=training_mode), tf.float32)
        h = self.threshold(h, training=training_mode)
        ha, hp, hn = tf.split(h, 3, axis=0)
        return tf.reduce_mean(losses.triplet_ranking_loss(ha, hp, hn, margin=self.margin))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.compute_loss_value(data, training_mode=True)
            total = training.scale_to_replicas(loss) + self.regularization_loss()
            scaled = self.optimizer.scale_loss(total)
        self.minimize(tape, scaled)
        return self.record_losses(loss)

    def test_step(self, data):
        return self.record_losses(self.compute_loss_value(data, training_mode=False))


__all__ = ["NINH", "PiecewiseThreshold"]
