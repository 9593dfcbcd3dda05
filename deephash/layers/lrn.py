"""Local response normalization across channels (CNN-F / AlexNet style).

Keras 3 has no LRN layer; this wraps ``tf.nn.local_response_normalization``::

    y[..., c] = x[..., c] / (bias + alpha * sum_{c' = c-r}^{c+r} x[..., c']^2) ** beta

with ``r = depth_radius`` (channels outside ``[0, C)`` are skipped). MatConvNet's
``vl_nnnormalize`` with ``param = [N, kappa, alpha, beta]`` computes the same thing with
``r = (N - 1) / 2``, ``bias = kappa`` and the SAME ``alpha`` (MatConvNet, like TensorFlow,
does not divide alpha by the window size; Caffe does): use
:meth:`LocalResponseNormalization.from_matconvnet`.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from deephash.validation import check_int, check_number


@keras.saving.register_keras_serializable(package="deephash")
class LocalResponseNormalization(keras.layers.Layer):
    """LRN over the channel axis of ``(b, h, w, c)`` inputs; output has the input's shape."""

    def __init__(
        self,
        depth_radius: int = 2,
        bias: float = 2.0,
        alpha: float = 1e-4,
        beta: float = 0.75,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = "LocalResponseNormalization"
        self.depth_radius = check_int(depth_radius, "depth_radius", minimum=0, owner=owner)
        self.bias = check_number(bias, "bias", minimum=0, owner=owner)
        self.alpha = check_number(alpha, "alpha", minimum=0, owner=owner)
        self.beta = check_number(beta, "beta", minimum=0, owner=owner)

    @classmethod
    def from_matconvnet(cls, param: Sequence[float], **kwargs) -> "LocalResponseNormalization":
        """Layer equal to MatConvNet's LRN with ``param = [N, kappa, alpha, beta]`` (N odd)."""
        values = [float(v) for v in list(param)]
        if len(values) != 4:
            raise ValueError(f"MatConvNet LRN param must be [N, kappa, alpha, beta], got {param!r}")
        n, kappa, alpha, beta = values
        if n < 1 or n != int(n) or int(n) % 2 == 0:
            raise ValueError(
                f"MatConvNet LRN window N must be a positive odd integer (symmetric window), "
                f"got {n}"
            )
        return cls(depth_radius=(int(n) - 1) // 2, bias=kappa, alpha=alpha, beta=beta, **kwargs)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        if x.shape.rank != 4:
            raise ValueError(
                f"LocalResponseNormalization expects (b, h, w, c) inputs, got rank {x.shape.rank}"
            )
        return tf.nn.local_response_normalization(
            x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return config
