"""VGG-19 through fc7 ("the first 18 layers" of DSRH: 16 conv + fc6 + fc7), and a loader
for the Keras applications weights file ``vgg19_weights_tf_dim_ordering_tf_kernels.h5``.

Layer names follow ``keras.applications.VGG19`` (``block1_conv1`` ... ``block5_pool``,
``flatten``, ``fc1``, ``fc2``) so that the weights file assigns by name; ``fc1`` is VGG's
fc6 and ``fc2`` its fc7.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import keras
import numpy as np

from deephash.validation import check_fraction, check_int

logger = logging.getLogger(__name__)

# (block, number of 3x3 conv layers, filters) of VGG-19 (configuration "E").
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels.h5"


def vgg19(
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | os.PathLike | None = None,
    fc_units: int = 4096,
    dropout: float = 0.5,
    name: str = "vgg19",
) -> keras.Model:
    """VGG-19 up to fc7: image batch ``(b, h, w, 3)`` -> features ``(b, fc_units)``.

    Expects VGG's preprocessing (BGR, ImageNet mean subtracted; see
    ``deephash.data.preprocessing.for_backbone("vgg19")``). ``fc1`` and ``fc2`` are followed
    by ``Dropout(dropout)`` layers ``fc1_dropout`` / ``fc2_dropout`` (VGG's training setup).

    Args:
        input_shape: ``(h, w, channels)``; 224x224x3 for the pretrained fc layers. Other sizes
            (at least 32x32) build, but the file's ``fc1`` kernel then does not fit.
        weights: ``"imagenet"`` (Keras' published file, downloaded once and cached; see
            :mod:`deephash.backbones.pretrained`), the path of a Keras applications VGG-19
            ``.h5`` file (see :func:`load_vgg19_weights`), or ``None`` for random
            initialisation (logged as a warning: DSRH fine-tunes an ImageNet model).
        fc_units: units of fc6/fc7 (4096 in VGG).
        dropout: dropout rate after fc6 and fc7, in ``[0, 1)``.
    """
    input_shape = _check_input_shape(input_shape)
    fc_units = check_int(fc_units, "fc_units", owner="vgg19")
    check_fraction(dropout, "dropout", allow_zero=True, owner="vgg19")
    if input_shape[0] < 32 or input_shape[1] < 32:
        raise ValueError(
            f"vgg19: images must be at least 32x32 (five 2x2 poolings), got {input_shape}"
        )

    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for block, convs, filters in VGG19_BLOCKS:
        for i in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{i}"
            )(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
    x = keras.layers.Dense(fc_units, activation="relu", name="fc2")(x)
    x = keras.layers.Dropout(dropout, name="fc2_dropout")(x)
    model = keras.Model(inputs, x, name=name)

    if isinstance(weights, str) and weights.strip().lower() == "imagenet":
        from deephash.backbones.pretrained import fetch

        weights = fetch("vgg19")
    if weights is None:
        logger.warning(
            "vgg19: no weights file given, the backbone starts from RANDOM initialisation "
            "(pass weights='imagenet' or the path of %s to fine-tune from ImageNet as the paper "
            "does)",
            WEIGHTS_FILE,
        )
    else:
        load_vgg19_weights(model, weights)
    return model


def vgg19_layer_names() -> list[str]:
    """Names of the layers with weights in :func:`vgg19` (16 conv, fc1, fc2)."""
    names = [f"block{b}_conv{i}" for b, convs, _ in VGG19_BLOCKS for i in range(1, convs + 1)]
    return names + ["fc1", "fc2"]


def load_vgg19_weights(model: keras.Model, path: str | os.PathLike) -> list[str]:
    """Assign the arrays of a Keras applications VGG-19 weights file to ``model`` by layer name.

    File format (Keras' legacy HDF5 weights format, as in
    ``vgg19_weights_tf_dim_ordering_tf_kernels.h5``): the root attribute ``layer_names``
    lists the layers; each has a group of that name whose attribute ``weight_names`` lists
    its datasets in layer-weight order (kernel, bias), e.g.
    ``block1_conv1/block1_conv1_W_1:0`` in the published file or
    ``block1_conv1/block1_conv1/kernel:0`` in files written by later Keras versions. Files
    saved as whole models (weights under ``model_weights``) are also accepted.

    Every VGG layer of ``model`` that has weights (``block*_conv*``, ``fc1``, ``fc2``) must be
    in the file; layers of the file that the model lacks (``predictions``) are ignored.

    Returns:
        The names of the layers that were assigned.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not such an HDF5 weights file, a layer is missing from it, or
            an array's shape differs from the model's (the message names the layer).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG-19 weights file not found: {path!r} (expected the Keras applications file "
            f"{WEIGHTS_FILE}; see docs/models.md)"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path!r} is not an HDF5 file ({e}); expected {WEIGHTS_FILE}") from None
    with f:
        group = f
        if _attribute(f, "layer_names") is None and "model_weights" in f:
            group = f["model_weights"]
        layer_names = _attribute(group, "layer_names")
        if layer_names is None:
            raise ValueError(
                f"{path!r} is not a Keras HDF5 weights file: it has no 'layer_names' attribute "
                f"(expected the format of {WEIGHTS_FILE})"
            )
        plan = _plan_assignment(model, group, path, layer_names)
        for layer, datasets in plan:
            layer.set_weights([np.asarray(d) for d in datasets])
        assigned = [layer.name for layer, _ in plan]
    logger.info("vgg19: loaded weights of %d layers from %s", len(assigned), path)
    return assigned


def _plan_assignment(model, group, path: str, layer_names) -> list:
    """``[(layer, datasets)]`` for every VGG layer of ``model``, checking names and shapes
    without reading arrays, so that a bad file leaves the model untouched."""
    file_layers = {_decode(n) for n in layer_names}
    plan = []
    for layer in _leaf_layers(model):
        if not layer.weights or layer.name not in vgg19_layer_names():
            continue
        if layer.name not in file_layers or layer.name not in group:
            raise ValueError(f"{path!r} has no weights for layer {layer.name!r} of the model")
        datasets = _layer_datasets(group[layer.name], layer.name, path)
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(d.shape) for d in datasets]
        if expected != found:
            raise ValueError(
                f"weights for layer {layer.name!r} in {path!r} have shapes {found}, the model "
                f"needs {expected} (was the model built with input_shape=(224, 224, 3) and "
                "fc_units=4096?)"
            )
        plan.append((layer, datasets))
    if not plan:
        raise ValueError(
            f"no VGG-19 layer of model {model.name!r} found to assign weights from {path!r}"
        )
    return plan


def _layer_datasets(g, name: str, path: str) -> list:
    """The datasets of one layer's group, in ``weight_names`` order."""
    weight_names = [_decode(n) for n in _attribute(g, "weight_names", [])]
    missing = [w for w in weight_names if w not in g]
    if missing:
        raise ValueError(
            f"{path!r}: layer {name!r} lacks the datasets {missing} listed in weight_names"
        )
    return [g[w] for w in weight_names]


def save_vgg19_weights(model: keras.Model, path: str | os.PathLike) -> list[str]:
    """Write the VGG layers of ``model`` in the format :func:`load_vgg19_weights` reads.

    Use it to convert: any Keras model whose layers carry the VGG-19 names (for example
    ``keras.applications.VGG19(weights=...)`` or a fine-tuned :func:`vgg19`) becomes a
    ``layer_names`` / ``weight_names`` HDF5 file, written atomically. Returns the layer names.
    """
    import h5py

    from deephash.io import atomic_write

    layers = [
        layer
        for layer in _leaf_layers(model)
        if layer.weights and layer.name in vgg19_layer_names()
    ]
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no VGG-19 layers (block1_conv1 ... fc2) to save"
        )
    with atomic_write(path, "w+b") as fileobj, h5py.File(fileobj, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode("utf8")
        for layer in layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = np.array([n.encode("utf8") for n in names])
            for name, value in zip(names, layer.get_weights()):
                g.create_dataset(name, data=value)
    return [layer.name for layer in layers]


def _leaf_layers(model):
    """Layers of ``model``, descending into nested models (a backbone inside a bigger model)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _attribute(group, name: str, default=None):
    """An HDF5 list attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in group.attrs:
        return list(group.attrs[name])
    if f"{name}0" in group.attrs:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
        return values
    return default


def _decode(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive sizes, got {input_shape!r}"
        )
    return shape
