"""A small convolutional backbone for the embedded 8x8x1 / 16x16x1 digit images.

No BatchNormalization (its statistics are per replica, so training under
MirroredStrategy would differ from one device) and no randomness besides the weight
initialisation and optional dropout: with a fixed seed training is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import keras

from deephash.backbones.vgg19 import _check_input_shape
from deephash.validation import check_fraction, check_int


def small_cnn(
    input_shape: Sequence[int],
    features: int = 256,
    dropout: float = 0.0,
    name: str = "small_cnn",
) -> keras.Model:
    """Image batch ``(b, h, w, c)`` -> features ``(b, features)``.

    Layers: ``conv1`` 3x3x32 relu, ``pool1`` 2x2 max (when the map is larger than 4x4),
    ``conv2`` 3x3x64 relu, ``conv3`` 3x3x64 relu, further 2x2 max pooling (``pool2``, ...)
    until the map is at most 4x4, ``flatten``, ``fc`` dense ``features`` relu, then
    ``dropout`` when ``dropout > 0``. About 0.3M parameters for 8x8 or 16x16 inputs.

    Inputs should be scaled to about ``[0, 1]`` (``data.preprocessing.for_backbone
    ("small_cnn")``), not the raw ``[0, 255]`` range.
    """
    input_shape = _check_input_shape(input_shape)
    features = check_int(features, "features", owner="small_cnn")
    check_fraction(dropout, "dropout", allow_zero=True, owner="small_cnn")

    inputs = keras.Input(shape=input_shape, name="images")
    h, w = input_shape[0], input_shape[1]
    pools = 0

    def can_pool() -> bool:
        return max(h, w) > 4 and min(h, w) >= 2

    def pool(x):
        nonlocal h, w, pools
        pools += 1
        h, w = h // 2, w // 2
        return keras.layers.MaxPooling2D(2, name=f"pool{pools}")(x)

    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    if can_pool():
        x = pool(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    while can_pool():
        x = pool(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(features, activation="relu", name="fc")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, x, name=name)
