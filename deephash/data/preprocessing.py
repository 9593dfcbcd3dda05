"""Preprocessing per backbone: size, channel order, mean subtraction, augmentation.

``for_backbone(name)`` returns a ``Preprocessor``; call it on a float32 batch
``(b, h, w, ch)`` in [0, 255] as ``pre(images, training=False, seed=None)``:

* ``small_cnn``: native size (or ``input_shape``), values scaled to [0, 1], no mean;
  training: random translation by up to 1/8 of the size (zero padding), no flip
  (digits are not mirror-symmetric).
* ``vgg19`` (DSRH, Caffe weights): resize so the shorter side is 256, crop 224x224 (centre at
  test; random position + horizontal flip when training), RGB -> BGR, subtract the Caffe
  ImageNet means ``[103.939, 116.779, 123.68]`` (BGR).
* ``cnn_f`` (DSEH, MatConvNet weights): resize to 224x224, RGB, subtract ``mean`` — the
  MatConvNet average image ``(224, 224, 3)`` (pass the one from ``imagenet-vgg-f.mat``) or
  a per-channel RGB mean (default the ImageNet means ``[123.68, 116.779, 103.939]``);
  training: horizontal flip.

Gray images are repeated to 3 channels for the RGB backbones. ``seed`` (an int pair /
shape-(2,) tensor) makes augmentation stateless and reproducible; without it the global
TF random state is used. File-based pipelines first bring each decoded image to a fixed
size with ``prepare_image`` (vgg19: shorter side 256 then the central 256x256; cnn_f:
224x224; small_cnn: ``input_shape``) so that images can be batched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)
BACKBONES = ("small_cnn", "vgg19", "cnn_f")


class Preprocessor:
    """Callable turning [0, 255] float32 image batches into a backbone's input."""

    def __init__(
        self,
        name: str,
        input_shape: tuple[int, int, int] | None,
        *,
        resize_shorter: int | None = None,
        prepare_size: tuple[int, int] | None = None,
        mean: np.ndarray | Sequence[float] | None = None,
        bgr: bool = False,
        scale: float = 1.0,
        flip: bool = False,
        random_crop: bool = False,
        translate: bool = False,
    ):
        self.name = name
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.resize_shorter = resize_shorter
        self.prepare_size = prepare_size
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.bgr = bgr
        self.scale = float(scale)
        self.flip = flip
        self.random_crop = random_crop
        self.translate = translate

    def __repr__(self) -> str:
        return f"Preprocessor({self.name!r}, input_shape={self.input_shape})"

    # ------------------------------------------------------------------ per image (files)
    def prepare_image(self, image):
        """One decoded image (h, w, ch) -> float32 of a fixed size, ready to be batched."""
        x = tf.cast(image, tf.float32)
        size = self.prepare_size or (None if self.input_shape is None else self.input_shape[:2])
        if size is None:
            raise ValueError(
                f"{self.name}: image files need a fixed size; pass input_shape to for_backbone()"
            )
        if self.resize_shorter:
            x = _resize_shorter(x[None], self.resize_shorter)[0]
            x = _center_crop(x[None], size)[0]
        else:
            x = tf.image.resize(x, size)
        return x

    # ------------------------------------------------------------------ per batch
    def __call__(self, images, training: bool = False, seed=None):
        x = tf.convert_to_tensor(images)
        if x.shape.rank != 4:
            raise ValueError(
                f"{self.name}: expected an image batch (b, h, w, ch), got shape {x.shape}"
            )
        x = tf.cast(x, tf.float32)
        seeds = (
            None
            if seed is None
            else tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
        )
        channels = None if self.input_shape is None else self.input_shape[2]
        if channels == 3 and x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        x = self._resize_and_crop(x, training, None if seeds is None else seeds[0])
        if training and self.translate:
            x = _random_translate(x, None if seeds is None else seeds[1])
        if training and self.flip:
            x = _random_flip(x, None if seeds is None else seeds[2])
        if self.bgr:
            x = tf.reverse(x, [3])  # RGB -> BGR; a negative-stride slice is 3x slower on CPU
        if self.mean is not None:
            x = x - self._mean_for(x)
        if self.scale != 1.0:
            x = x * self.scale
        return x

    def _resize_and_crop(self, x, training: bool, seed):
        """To ``input_shape``: resize (the shorter side, or the whole image), then a centre
        crop, or a random crop when training with ``random_crop``."""
        if self.resize_shorter:
            x = _resize_shorter(x, self.resize_shorter)
        elif self.input_shape is not None:
            h, w = self.input_shape[:2]
            if x.shape[1] != h or x.shape[2] != w:
                x = tf.image.resize(x, (h, w))
        if self.input_shape is not None and (self.resize_shorter or self.random_crop):
            size = self.input_shape[:2]
            x = (
                _random_crop(x, size, seed)
                if training and self.random_crop
                else _center_crop(x, size)
            )
        return x

    def _mean_for(self, x):
        """The mean to subtract: a scalar/per-channel mean, or a mean image resized to x."""
        mean = tf.constant(self.mean)
        if self.mean.ndim == 3 and self.mean.shape[:2] != tuple(x.shape[1:3]):
            mean = tf.image.resize(mean[None], tf.shape(x)[1:3])[0]
        return mean


def _random_translate(x, seed):
    """Shift by up to 1/8 of the height: pad with zeros, then a random crop of the size."""
    pad = tf.maximum(1, tf.shape(x)[1] // 8)
    shape = tf.shape(x)
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return _random_crop(padded, (shape[1], shape[2]), seed, static=x.shape)


def _resize_shorter(x, side: int):
    if x.shape[1] is not None and x.shape[2] is not None and min(x.shape[1], x.shape[2]) == side:
        return x  # already the right size (e.g. files brought to side x side when decoded)
    shape = tf.shape(x)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    r = float(side) / tf.minimum(h, w)
    new = tf.cast(tf.round(tf.stack([h * r, w * r])), tf.int32)
    new = tf.maximum(new, side)
    return tf.image.resize(x, new)


def _center_crop(x, size):
    h, w = size
    shape = tf.shape(x)
    oy, ox = (shape[1] - h) // 2, (shape[2] - w) // 2
    return x[:, oy : oy + h, ox : ox + w, :]


def _random_crop(x, size, seed, static=None):
    """Crop each image of the batch at its own random position."""
    h, w = size
    shape = tf.shape(x)
    b = shape[0]
    maxval = tf.stack([shape[1] - h + 1, shape[2] - w + 1])
    if seed is None:
        u = tf.random.uniform((b, 2))
    else:
        u = tf.random.stateless_uniform((b, 2), seed=seed)
    offsets = tf.cast(tf.floor(u * tf.cast(maxval, tf.float32)), tf.int32)
    rows = offsets[:, :1] + tf.range(h)[None]
    cols = offsets[:, 1:] + tf.range(w)[None]
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    x = tf.gather(x, cols, axis=2, batch_dims=1)
    if static is not None:
        x = tf.ensure_shape(x, static)
    elif isinstance(h, int) and isinstance(w, int):
        x = tf.ensure_shape(x, [None, h, w, None])
    return x


def _random_flip(x, seed):
    b = tf.shape(x)[0]
    u = tf.random.uniform((b,)) if seed is None else tf.random.stateless_uniform((b,), seed=seed)
    return tf.where(
        (u < 0.5)[:, None, None, None], tf.reverse(x, [2]), x
    )  # 2x faster than x[:, :, ::-1]


def for_backbone(
    name: str, input_shape: tuple[int, int, int] | None = None, mean=None
) -> Preprocessor:
    """The ``Preprocessor`` of backbone ``name`` (``small_cnn``, ``vgg19``, ``cnn_f``).

    ``input_shape`` overrides the backbone's input (default 224x224x3 for vgg19/cnn_f, the
    images' native size for small_cnn). ``mean`` (cnn_f, vgg19): per-channel mean in the
    backbone's channel order, or an average image (h, w, 3).
    """
    key = str(name).lower()
    if key not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; preprocessing exists for {', '.join(BACKBONES)}"
        )
    if input_shape is not None and (len(input_shape) != 3 or any(int(s) < 1 for s in input_shape)):
        raise ValueError(f"input_shape must be (h, w, channels), got {input_shape!r}")
    if mean is not None:
        m = np.asarray(mean, np.float32)
        if not (m.shape == (3,) or (m.ndim == 3 and m.shape[-1] == 3)):
            raise ValueError(
                "mean must be 3 per-channel values or an (h, w, 3) average image, "
                f"got shape {m.shape}"
            )
    if key == "small_cnn":
        return Preprocessor(key, input_shape, scale=1.0 / 255.0, translate=True)
    shape = tuple(input_shape) if input_shape is not None else (224, 224, 3)
    if key == "vgg19":
        side = int(round(max(shape[:2]) * 256 / 224))
        return Preprocessor(
            key,
            shape,
            resize_shorter=side,
            prepare_size=(side, side),
            mean=CAFFE_BGR_MEAN if mean is None else mean,
            bgr=True,
            flip=True,
            random_crop=True,
        )
    return Preprocessor(
        key,
        shape,
        prepare_size=shape[:2],
        mean=IMAGENET_RGB_MEAN if mean is None else mean,
        flip=True,
    )
