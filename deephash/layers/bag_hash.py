"""Bag-wise hash layer of DSRH (Yao et al. 2016, §3.2 "multiple bags construction").

The same construction is NINH's divide-and-encode module (Lai et al. 2015): the feature
vector is divided into ``bits`` slices ("bags") and each slice is encoded into one bit by
its own fully connected unit.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from deephash.validation import check_int


def _default_kernel_initializer() -> keras.initializers.Initializer:
    # Each output unit sees ``bags`` inputs. The kernel has shape (bits, bags), so Keras'
    # "fan_out" (= shape[-1] = bags) is each unit's fan-in: this is LeCun-normal per bag.
    return keras.initializers.VarianceScaling(
        scale=1.0, mode="fan_out", distribution="truncated_normal"
    )


@keras.saving.register_keras_serializable(package="deephash")
class BagHash(keras.layers.Layer):
    """Split ``bags * bits`` features into ``bits`` bags; each bag gives one relaxed bit.

    Input ``(b, bags * bits)``, output ``(b, bits)``. Bag ``j`` is the input slice
    ``[j * bags, (j + 1) * bags)`` and output ``j`` is

        h_j = activation( sum_i x[j * bags + i] * kernel[j, i] + bias[j] )

    with ONE kernel tensor of shape ``(bits, bags)`` and a bias of shape ``(bits,)`` (not
    ``bits`` separate Dense layers). With the default ``activation="sigmoid"`` the outputs
    lie in ``[0, 1]`` (DSRH's relaxed codes ``H``); ``activation=None`` returns the
    pre-activations (logits), so that codes can be thresholded at ``logit > 0``, which is
    ``sigmoid > 0.5``.

    This is also NINH's divide-and-encode module (Lai et al. 2015).

    Args:
        bits: number of output bits ``k`` (>= 1).
        bags: features per bag ``s`` (DSRH uses 30).
        activation: a Keras activation name/callable, or ``None`` for linear outputs.
        use_bias: add the per-bit bias.
        kernel_initializer: default is LeCun-normal with fan-in ``bags``.
        bias_initializer, kernel_regularizer, bias_regularizer: as in ``keras.layers.Dense``.
    """

    def __init__(
        self,
        bits: int,
        bags: int = 30,
        activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = None,
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bits = check_int(bits, "bits", owner="BagHash")
        self.bags = check_int(bags, "bags", owner="BagHash")
        self.activation = keras.activations.get(activation)  # None -> linear
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else _default_kernel_initializer()
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape) -> None:
        width = input_shape[-1]
        expected = self.bags * self.bits
        if width is None or int(width) != expected:
            raise ValueError(
                f"BagHash(bits={self.bits}, bags={self.bags}) needs an input of width "
                f"bags*bits = {expected}, got input shape {tuple(input_shape)} (width {width})"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.bits, self.bags),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.bits,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        else:
            self.bias = None
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: expected})

    def call(self, inputs):
        batch_shape = ops.shape(inputs)[:-1]
        bags = ops.reshape(inputs, (*batch_shape, self.bits, self.bags))
        outputs = ops.sum(bags * self.kernel, axis=-1)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.bits)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "bits": self.bits,
                "bags": self.bags,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
