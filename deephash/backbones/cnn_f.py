"""CNN-F ("imagenet-vgg-f", Chatfield et al. 2014) and a reader for its MatConvNet weights.

The network mirrors MatConvNet's simplenn layer list, with MatConvNet's layer names:

    conv1 64x11x11 /4 · relu1 · norm1 (LRN) · pool1 3x3 /2 pad [0 1 0 1]
    conv2 256x5x5 pad 2 · relu2 · norm2 · pool2 3x3 /2
    conv3, conv4, conv5 256x3x3 pad 1 (+ relu) · pool5 3x3 /2
    fc6 4096 (a VALID conv covering the whole pool5 map, 6x6 at 224x224) · relu6 · dropout6
    fc7 4096 (1x1 conv) · relu7 · dropout7  ->  flatten: features (b, 4096)

MatConvNet conventions, applied exactly: filters are ``H x W x in x out`` (TensorFlow's
HWIO, cross-correlation, no flip); ``pad`` is ``[top bottom left right]`` and is applied
explicitly before a VALID convolution / pooling; ``stride`` is ``[y x]``; LRN ``param``
is ``[N kappa alpha beta]`` (see :class:`deephash.layers.LocalResponseNormalization`).
Max-pooling pads with zeros, which equals MatConvNet's -inf padding because every padded
pool in CNN-F reads non-negative (post-ReLU) values; the builder checks this.

``load_matconvnet_weights`` reads every importer version of ``imagenet-vgg-f.mat``:
beta3-11 (top-level ``layers``, ``normalization``, ``classes``; conv layers hold ``filters``
and ``biases``), beta12-16 (conv layers hold ``weights = {filters, biases}``, normalization
still top-level) and beta17+ (``vl_simplenn_tidy``: ``meta.normalization``,
``meta.classes``). A file's pad may differ from the model's where both read the same
windows (same top / left pad and output size: beta17+'s pool2 pad ``[0 1 0 1]`` on CNN-F's
27x27 map equals ``[0 0 0 0]``).
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Sequence

import keras
import numpy as np

from deephash.layers.lrn import LocalResponseNormalization
from deephash.validation import check_fraction

log = logging.getLogger(__name__)

INPUT_SHAPE = (224, 224, 3)

# MatConvNet simplenn layer list of CNN-F up to relu7 (fc8/prob are not part of the backbone).
CNN_F_LAYERS: tuple[dict, ...] = (
    dict(name="conv1", type="conv", size=(11, 11, 3, 64), stride=(4, 4), pad=(0, 0, 0, 0)),
    dict(name="relu1", type="relu"),
    dict(name="norm1", type="lrn", param=(5, 2.0, 1e-4, 0.75)),
    dict(name="pool1", type="pool", method="max", pool=(3, 3), stride=(2, 2), pad=(0, 1, 0, 1)),
    dict(name="conv2", type="conv", size=(5, 5, 64, 256), stride=(1, 1), pad=(2, 2, 2, 2)),
    dict(name="relu2", type="relu"),
    dict(name="norm2", type="lrn", param=(5, 2.0, 1e-4, 0.75)),
    dict(name="pool2", type="pool", method="max", pool=(3, 3), stride=(2, 2), pad=(0, 0, 0, 0)),
    dict(name="conv3", type="conv", size=(3, 3, 256, 256), stride=(1, 1), pad=(1, 1, 1, 1)),
    dict(name="relu3", type="relu"),
    dict(name="conv4", type="conv", size=(3, 3, 256, 256), stride=(1, 1), pad=(1, 1, 1, 1)),
    dict(name="relu4", type="relu"),
    dict(name="conv5", type="conv", size=(3, 3, 256, 256), stride=(1, 1), pad=(1, 1, 1, 1)),
    dict(name="relu5", type="relu"),
    dict(name="pool5", type="pool", method="max", pool=(3, 3), stride=(2, 2), pad=(0, 0, 0, 0)),
    dict(name="fc6", type="conv", size=(6, 6, 256, 4096), stride=(1, 1), pad=(0, 0, 0, 0)),
    dict(name="relu6", type="relu"),
    dict(name="fc7", type="conv", size=(1, 1, 4096, 4096), stride=(1, 1), pad=(0, 0, 0, 0)),
    dict(name="relu7", type="relu"),
)
LAST_LAYER = "relu7"
_DROPOUT_AFTER = ("relu6", "relu7")


# ----------------------------------------------------------------------------- model


def cnn_f(
    input_shape: Sequence[int] | None = INPUT_SHAPE,
    weights: str | os.PathLike | None = None,
    *,
    dropout: float = 0.5,
    name: str = "cnn_f",
) -> keras.Model:
    """CNN-F up to fc7 as a functional model: images ``(b, h, w, 3)`` -> features ``(b, 4096)``.

    Inputs are what MatConvNet feeds the network: RGB, mean-subtracted (see the average
    image returned by :func:`matconvnet_metadata`), 224x224. ``weights`` is the path of a
    MatConvNet ``imagenet-vgg-f.mat``; the layer geometry (filter counts, pads, strides, LRN
    parameters) is then taken from the file and its weights loaded. ``weights=None`` builds
    the standard CNN-F randomly initialised (with a logged warning); on inputs other than
    224x224 its fc6 then covers whatever pool5 map the input gives.
    """
    check_fraction(dropout, "dropout", allow_zero=True, owner="cnn_f")
    if weights is None:
        log.warning("cnn_f: no weights file given, the backbone starts from random initialisation")
        shape = _check_input_shape(INPUT_SHAPE if input_shape is None else input_shape)
        return _build(CNN_F_LAYERS, shape, dropout=dropout, name=name, adapt_fc=True)
    net = read_matconvnet(weights)
    if input_shape is None:
        input_shape = net["image_size"] or INPUT_SHAPE
    model = _build(
        net["layers"], _check_input_shape(input_shape), dropout=dropout, name=name, adapt_fc=False
    )
    _assign(model, net)
    return model


def _check_input_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {shape}")
    return shape


def _build(
    layers: Sequence[dict], input_shape, *, dropout: float, name: str, adapt_fc: bool
) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    nonnegative = False  # whether x >= 0 everywhere (zero-padding == -inf padding for max-pool)
    names = [layer["name"] for layer in layers]
    if LAST_LAYER not in names:
        raise ValueError(
            f"the network has no layer {LAST_LAYER!r} (CNN-F's features end there); layers: {names}"
        )
    for layer in layers[: names.index(LAST_LAYER) + 1]:
        kind, lname = layer["type"], layer["name"]
        if kind == "conv":
            x, nonnegative = _conv(x, layer, input_shape, adapt_fc), False
        elif kind == "relu":
            x, nonnegative = keras.layers.ReLU(name=lname)(x), True
        elif kind == "lrn":
            x = LocalResponseNormalization.from_matconvnet(layer["param"], name=lname)(x)
        elif kind == "pool":
            x = _max_pool(x, layer, nonnegative)
        elif kind == "dropout":
            continue  # dropout is placed after relu6/relu7 below, whatever the file says
        else:
            raise ValueError(f"{lname}: unsupported MatConvNet layer type {kind!r}")
        if lname in _DROPOUT_AFTER and dropout > 0:
            x = keras.layers.Dropout(dropout, name="dropout" + lname[-1])(x)
    if x.shape[1] != 1 or x.shape[2] != 1:
        raise ValueError(
            f"input_shape {tuple(input_shape)} leaves a {x.shape[1]}x{x.shape[2]} map after "
            f"{LAST_LAYER}; the weights need the input size they were trained for (224x224 "
            "for CNN-F)"
        )
    outputs = keras.layers.Flatten(name="features")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv(x, layer: dict, input_shape, adapt_fc: bool):
    """A MatConvNet conv (or fc) layer: padding, then a valid Conv2D."""
    lname = layer["name"]
    h, w, cin, cout = layer["size"]
    if x.shape[-1] != cin:
        raise ValueError(
            f"{lname}: filters expect {cin} input channels, the layer gets {x.shape[-1]}"
        )
    x = _pad(x, layer["pad"], lname)
    if adapt_fc and lname.startswith("fc") and h > 1:
        h, w = x.shape[1], x.shape[2]  # fc6 covers whatever map it gets
    if x.shape[1] < h or x.shape[2] < w:
        raise ValueError(
            f"{lname}: a {h}x{w} filter does not fit the {x.shape[1]}x{x.shape[2]} map that "
            f"input_shape {tuple(input_shape)} gives (CNN-F expects 224x224 inputs)"
        )
    return keras.layers.Conv2D(cout, (h, w), strides=layer["stride"], padding="valid", name=lname)(
        x
    )


def _max_pool(x, layer: dict, nonnegative: bool):
    """A MatConvNet max-pool layer: zero padding (exact only on non-negative maps)."""
    lname = layer["name"]
    if layer.get("method", "max") != "max":
        raise ValueError(f"{lname}: only max pooling is supported, got {layer.get('method')!r}")
    if any(layer["pad"]) and not nonnegative:
        raise ValueError(
            f"{lname}: padded max pooling of possibly negative values is not supported"
        )
    x = _pad(x, layer["pad"], lname)
    return keras.layers.MaxPooling2D(
        layer["pool"], strides=layer["stride"], padding="valid", name=lname
    )(x)


def _pad(x, pad, lname):
    top, bottom, left, right = pad
    if top or bottom or left or right:
        x = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"{lname}_pad")(x)
    return x


# ----------------------------------------------------------------------------- weights


def load_matconvnet_weights(model: keras.Model, path: str | os.PathLike) -> dict:
    """Copy the conv/fc weights of a MatConvNet simplenn ``.mat`` into ``model`` by layer name.

    Layers are matched by MatConvNet name (``conv1`` ... ``fc7``; ``fc8`` is skipped). Every
    Conv2D of ``model`` must be in the file with the same filter shape, and the file's pads,
    strides, pool sizes and LRN parameters must equal the model's (ValueError naming the layer
    otherwise). Returns the file's metadata (see :func:`matconvnet_metadata`) plus ``loaded``
    and ``skipped`` (layer names).
    """
    net = read_matconvnet(path)
    _check_geometry(model, net)
    loaded, skipped = _assign(model, net)
    return {**net["meta"], "loaded": loaded, "skipped": skipped}


def matconvnet_metadata(path: str | os.PathLike) -> dict:
    """The non-weight content of a MatConvNet model file.

    Keys: ``layout`` ("old" or "tidy"), ``average_image`` (float32 array as stored, often
    224x224x3 or 3 values; None when empty), ``mean`` (float32 (3,) per-channel mean of the
    average image, RGB; None when there is none), ``class_names`` / ``class_descriptions``
    (lists of str), ``image_size`` ((h, w, c) or None).
    """
    return read_matconvnet(path)["meta"]


def read_matconvnet(path: str | os.PathLike) -> dict:
    """Parse a MatConvNet simplenn ``.mat`` into
    ``{"layers": [...], "meta": {...}, "image_size"}``.

    Each layer is a dict like the entries of :data:`CNN_F_LAYERS`; conv layers also carry
    ``filters`` (H, W, in, out) and ``biases`` (out,) as float32.
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"MatConvNet weights file {path!r} does not exist; get imagenet-vgg-f.mat from the "
            "MatConvNet pretrained-model page and pass its local path"
        )
    try:
        top = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # not a MAT file, truncated, HDF5-based v7.3, ...
        raise ValueError(
            f"{path!r} is not a readable MATLAB .mat file ({e}); MATLAB v7.3 (HDF5) files are "
            "not supported: re-save with save(..., '-v7')"
        ) from e
    keys = sorted(k for k in top if not k.startswith("__"))
    if "layers" not in top:
        raise ValueError(
            f"{path!r} is not a MatConvNet simplenn model: it has no 'layers' "
            f"(top-level keys: {keys})"
        )
    if "meta" in top:
        layout, meta_src = "tidy", top["meta"]
        normalization = _field(meta_src, "normalization", path, "meta.normalization")
        classes = getattr(meta_src, "classes", None)
    elif "normalization" in top:
        layout, normalization, classes = "old", top["normalization"], top.get("classes")
    else:
        raise ValueError(
            f"{path!r}: neither 'meta' (vl_simplenn_tidy layout) nor 'normalization' "
            f"(old layout) found; top-level keys: {keys}"
        )
    layers = []
    channels = None
    weights_field = False
    for i, raw in enumerate(np.atleast_1d(top["layers"]).ravel()):
        layer = _parse_layer(raw, i, path, layout, channels)
        if layer["type"] == "conv":
            channels = layer["size"][3]
            weights_field = weights_field or hasattr(raw, "weights")
        layers.append(layer)
    # MatConvNet importer versions: beta3-11 conv layers hold filters/biases beside a top-level
    # normalization; beta12-16 hold weights = {filters, biases}, still top-level normalization;
    # beta17+ (vl_simplenn_tidy) move normalization and classes into meta
    importer = "beta17+" if layout == "tidy" else ("beta12-16" if weights_field else "beta3-11")

    mean, average, image_size = _normalization(normalization, path)
    meta = {
        "layout": layout,
        "importer": importer,
        "average_image": average,
        "mean": mean,
        "class_names": _strings(getattr(classes, "name", None)),
        "class_descriptions": _strings(getattr(classes, "description", None)),
        "image_size": image_size,
    }
    return {"layers": layers, "meta": meta, "image_size": image_size}


def _normalization(normalization, path: str):
    """``(mean RGB, averageImage, image_size)`` from a MatConvNet ``normalization`` struct."""
    average = getattr(normalization, "averageImage", None)
    average = None if average is None or np.size(average) == 0 else np.asarray(average, np.float32)
    mean = None
    if average is not None:
        if average.size % 3 or (average.ndim > 1 and average.shape[-1] != 3):
            raise ValueError(f"{path!r}: averageImage of shape {average.shape} is not RGB")
        mean = average.reshape(-1, 3).mean(axis=0).astype(np.float32)
    size = getattr(normalization, "imageSize", None)
    image_size = None
    if size is not None and np.size(size) >= 2:
        s = [int(v) for v in np.atleast_1d(size)]
        image_size = (s[0], s[1], s[2] if len(s) > 2 else 3)
    return mean, average, image_size


def _field(struct: Any, name: str, path: str, where: str):
    if not hasattr(struct, name):
        raise ValueError(f"{path!r}: missing {where}")
    return getattr(struct, name)


def _strings(values) -> list[str]:
    if values is None:
        return []
    return [str(v) for v in np.atleast_1d(values).ravel()]


def _pairs(value, n: int, what: str) -> tuple[int, ...]:
    v = [int(x) for x in np.atleast_1d(value).ravel()]
    if len(v) == 1:
        v = v * n
    if len(v) != n:
        raise ValueError(f"{what}: expected 1 or {n} values, got {v}")
    return tuple(v)


def _parse_conv(raw: Any, where: str, channels: int | None) -> dict:
    """A conv layer's filters (H, W, in, out), biases, stride and pad."""
    if hasattr(raw, "weights"):
        w = np.atleast_1d(raw.weights)
        if w.dtype != object or w.size != 2:
            raise ValueError(f"{where}: 'weights' must hold {{filters, biases}}")
        filters, biases = w[0], w[1]
    elif hasattr(raw, "filters") and hasattr(raw, "biases"):
        filters, biases = raw.filters, raw.biases
    else:
        raise ValueError(
            f"{where}: a conv layer needs 'weights' (tidy layout) or 'filters' and 'biases' (old)"
        )
    biases = np.asarray(biases, np.float32).ravel()
    filters = np.asarray(filters, np.float32)
    size = getattr(raw, "size", None)
    size = (
        tuple(int(s) for s in np.atleast_1d(size))
        if size is not None and np.size(size) == 4
        else None
    )
    filters = _restore_filters(
        filters, biases.size, channels if channels is not None else 3, size, where
    )
    if np.any(np.atleast_1d(getattr(raw, "dilate", 1)) != 1):
        raise ValueError(f"{where}: dilated convolution is not supported")
    return dict(
        size=filters.shape,
        filters=filters,
        biases=biases,
        stride=_pairs(getattr(raw, "stride", 1), 2, f"{where} stride"),
        pad=_pairs(getattr(raw, "pad", 0), 4, f"{where} pad"),
    )


def _parse_layer(raw: Any, i: int, path: str, layout: str, channels: int | None) -> dict:
    kind = str(getattr(raw, "type", "")).strip()
    name = str(getattr(raw, "name", "") or f"layer{i + 1}")
    where = f"{path!r} layer {i + 1} ({name})"
    if not kind:
        raise ValueError(f"{where}: no 'type'")
    kind = {"normalize": "lrn"}.get(kind, kind)
    layer: dict = {"name": name, "type": kind}
    if kind == "conv":
        layer.update(_parse_conv(raw, where, channels))
    elif kind == "pool":
        layer.update(
            method=str(getattr(raw, "method", "max")),
            pool=_pairs(_field(raw, "pool", path, f"layer {name}.pool"), 2, f"{where} pool"),
            stride=_pairs(getattr(raw, "stride", 1), 2, f"{where} stride"),
            pad=_pairs(getattr(raw, "pad", 0), 4, f"{where} pad"),
        )
    elif kind == "lrn":
        param = np.atleast_1d(_field(raw, "param", path, f"layer {name}.param")).astype(float)
        if param.size != 4:
            raise ValueError(
                f"{where}: LRN param must be [N kappa alpha beta], got {param.tolist()}"
            )
        layer.update(param=tuple(float(p) for p in param))
    elif kind == "dropout":
        layer.update(rate=float(getattr(raw, "rate", 0.5)))
    return layer


def _restore_filters(filters: np.ndarray, out: int, cin: int, size, where: str) -> np.ndarray:
    """Undo ``squeeze_me``: give the filter bank back its singleton H/W/in/out axes."""
    if size is not None:
        if int(np.prod(size)) != filters.size:
            raise ValueError(f"{where}: filters of {filters.size} values do not match size {size}")
        return filters.reshape(size)
    if filters.ndim == 4:
        shape = filters.shape
    else:
        candidates = set()
        for positions in itertools.combinations(range(4), 4 - filters.ndim):
            dims = iter(filters.shape)
            shape = tuple(1 if k in positions else next(dims) for k in range(4))
            if shape[3] == out and shape[2] == cin:
                candidates.add(shape)
        if len(candidates) != 1:
            raise ValueError(
                f"{where}: cannot tell the H x W x in x out layout of filters {filters.shape}"
            )
        shape = candidates.pop()
    if shape[3] != out:
        raise ValueError(f"{where}: {shape[3]} filters but {out} biases")
    if shape[2] != cin:
        raise ValueError(
            f"{where}: filters of shape {shape} expect {shape[2]} input channels, "
            f"the layer gets {cin}"
        )
    return filters.reshape(shape)


def _check_geometry(model: keras.Model, net: dict) -> None:
    by_name = {layer.name: layer for layer in model.layers}
    for layer in net["layers"]:
        name = layer["name"]
        if name not in by_name or layer["type"] not in ("conv", "pool", "lrn"):
            continue
        target = by_name[name]
        if layer["type"] in ("conv", "pool"):
            pad_layer = by_name.get(f"{name}_pad")
            pad = (0, 0, 0, 0)
            if pad_layer is not None:
                (t, b), (l_, r) = pad_layer.padding
                pad = (t, b, l_, r)
            size = tuple(target.kernel_size if layer["type"] == "conv" else target.pool_size)
            in_shape = (pad_layer or target).input.shape
            got = {"pad": pad, "stride": tuple(target.strides)}
            want = {"pad": tuple(layer["pad"]), "stride": tuple(layer["stride"])}
            if same_windows(want["pad"], pad, size, want["stride"], in_shape[1:3]):
                want["pad"] = pad  # e.g. beta17+'s pool2 pad [0 1 0 1] on CNN-F's 27x27 map
            if layer["type"] == "pool":
                got["pool"], want["pool"] = tuple(target.pool_size), tuple(layer["pool"])
        else:
            ref = LocalResponseNormalization.from_matconvnet(layer["param"])
            got = {k: getattr(target, k) for k in ("depth_radius", "bias", "alpha", "beta")}
            want = {k: getattr(ref, k) for k in got}
        for key in want:
            if not np.allclose(got[key], want[key]):
                raise ValueError(
                    f"layer {name}: the file has {key} {want[key]}, the model {got[key]}"
                )


def same_windows(pad_a, pad_b, size, stride, in_hw) -> bool:
    """Whether two paddings ``[top bottom left right]`` of a VALID window operation (filter or
    pool ``size``, ``stride``) on an ``in_hw`` map read the same windows: equal top / left pads
    and equal output sizes (extra bottom / right padding that no window reaches). False when
    the map size is unknown and the pads differ."""
    if tuple(pad_a) == tuple(pad_b):
        return True
    if any(d is None for d in in_hw) or pad_a[0] != pad_b[0] or pad_a[2] != pad_b[2]:
        return False
    for axis, (lo, hi) in enumerate(((0, 1), (2, 3))):
        n, k, s = int(in_hw[axis]), int(size[axis]), int(stride[axis])
        out_a = (n + pad_a[lo] + pad_a[hi] - k) // s + 1
        out_b = (n + pad_b[lo] + pad_b[hi] - k) // s + 1
        if out_a != out_b:
            return False
    return True


def _assign(model: keras.Model, net: dict) -> tuple[list[str], list[str]]:
    convs = {layer["name"]: layer for layer in net["layers"] if layer["type"] == "conv"}
    loaded, skipped = [], []
    for target in model.layers:
        if not isinstance(target, keras.layers.Conv2D):
            continue
        if target.name not in convs:
            raise ValueError(
                f"the weights file has no conv layer {target.name!r} (it has {sorted(convs)})"
            )
        src = convs[target.name]
        kernel, bias = target.get_weights()
        if tuple(kernel.shape) != tuple(src["filters"].shape):
            raise ValueError(
                f"layer {target.name}: the file's filters are {src['filters'].shape} "
                "(H x W x in x out), "
                f"the model's kernel is {kernel.shape}"
            )
        target.set_weights([src["filters"], src["biases"]])
        loaded.append(target.name)
    skipped = [name for name in convs if name not in loaded]
    return loaded, skipped
