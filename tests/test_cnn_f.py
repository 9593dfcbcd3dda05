"""CNN-F, the LRN layer and the MatConvNet weight reader.

The weights test writes small MatConvNet files itself (both layouts, with CNN-F's layer
names, pads and strides but few filters and a non-square 127x95 input so that any H/W or
in/out mix-up changes the output), builds the model from them and compares a forward pass
with an independent numpy computation of MatConvNet's layers.
"""

import keras
import numpy as np
import pytest
import scipy.io

import deephash  # noqa: F401  (registers the layers)
from deephash.backbones.cnn_f import cnn_f, load_matconvnet_weights, matconvnet_metadata
from deephash.layers.lrn import LocalResponseNormalization

# ----------------------------------------------------------------------------- numpy reference


def np_conv(x, f, b, stride, pad):
    """MatConvNet vl_nnconv: x (H, W, C), f (h, w, C, K), pad [t b l r], stride [y x]."""
    t, bo, left, r = pad
    x = np.pad(x, ((t, bo), (left, r), (0, 0)))
    h, w, _, k = f.shape
    oh, ow = (x.shape[0] - h) // stride[0] + 1, (x.shape[1] - w) // stride[1] + 1
    out = np.zeros((oh, ow, k))
    for i in range(oh):
        for j in range(ow):
            patch = x[i * stride[0] : i * stride[0] + h, j * stride[1] : j * stride[1] + w, :]
            out[i, j] = np.tensordot(patch, f, axes=([0, 1, 2], [0, 1, 2])) + b
    return out


def np_lrn(x, n, kappa, alpha, beta):
    """MatConvNet vl_nnnormalize: window G(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)],
    alpha not / N."""
    d = x.shape[-1]
    out = np.empty_like(x)
    for k in range(d):
        lo, hi = max(0, k - (n - 1) // 2), min(d - 1, k + int(np.ceil((n - 1) / 2)))
        out[..., k] = (
            x[..., k] * (kappa + alpha * np.sum(x[..., lo : hi + 1] ** 2, axis=-1)) ** -beta
        )
    return out


def np_maxpool(x, pool, stride, pad):
    t, bo, left, r = pad
    x = np.pad(x, ((t, bo), (left, r), (0, 0)), constant_values=-np.inf)
    oh, ow = (x.shape[0] - pool[0]) // stride[0] + 1, (x.shape[1] - pool[1]) // stride[1] + 1
    out = np.empty((oh, ow, x.shape[2]))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = x[
                i * stride[0] : i * stride[0] + pool[0], j * stride[1] : j * stride[1] + pool[1]
            ].max(axis=(0, 1))
    return out


def np_forward(layers, image):
    x = image.astype(np.float64)
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            x = np_conv(x, layer["f"], layer["b"], layer["stride"], layer["pad"])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind in ("lrn", "normalize"):
            x = np_lrn(x, *layer["param"])
        elif kind == "pool":
            x = np_maxpool(x, layer["pool"], layer["stride"], layer["pad"])
        if layer["name"] == "relu7":
            break
    return x.reshape(-1)


# ----------------------------------------------------------------------------- small .mat files

INPUT = (127, 95, 3)  # pool5 map 3x2 -> fc6 is a 3x2 VALID conv


def small_net(seed=0, lrn_param=(5, 2.0, 1e-1, 0.75)):
    rng = np.random.default_rng(seed)

    def conv(name, h, w, cin, cout, stride, pad):
        f = rng.normal(0, np.sqrt(2.0 / (h * w * cin)), (h, w, cin, cout)).astype(np.float32)
        b = rng.normal(0, 0.1, cout).astype(np.float32)
        return dict(name=name, type="conv", f=f, b=b, stride=stride, pad=pad)

    return [
        conv("conv1", 11, 11, 3, 4, (4, 4), (0, 0, 0, 0)),
        dict(name="relu1", type="relu"),
        dict(name="norm1", type="lrn", param=lrn_param),
        dict(name="pool1", type="pool", pool=(3, 3), stride=(2, 2), pad=(0, 1, 0, 1)),
        conv("conv2", 5, 5, 4, 6, (1, 1), (2, 2, 2, 2)),
        dict(name="relu2", type="relu"),
        dict(name="norm2", type="lrn", param=lrn_param),
        dict(name="pool2", type="pool", pool=(3, 3), stride=(2, 2), pad=(0, 0, 0, 0)),
        conv("conv3", 3, 3, 6, 6, (1, 1), (1, 1, 1, 1)),
        dict(name="relu3", type="relu"),
        conv("conv4", 3, 3, 6, 6, (1, 1), (1, 1, 1, 1)),
        dict(name="relu4", type="relu"),
        conv("conv5", 3, 3, 6, 6, (1, 1), (1, 1, 1, 1)),
        dict(name="relu5", type="relu"),
        dict(name="pool5", type="pool", pool=(3, 3), stride=(2, 2), pad=(0, 0, 0, 0)),
        conv("fc6", 3, 2, 6, 8, (1, 1), (0, 0, 0, 0)),
        dict(name="relu6", type="relu"),
        conv("fc7", 1, 1, 8, 8, (1, 1), (0, 0, 0, 0)),
        dict(name="relu7", type="relu"),
        conv("fc8", 1, 1, 8, 5, (1, 1), (0, 0, 0, 0)),
        dict(name="prob", type="softmax"),
    ]


def _cell(items):
    cell = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        cell[i] = item
    return cell


def write_mat(path, layers, layout, average_image):
    classes = {
        "name": _cell(["n001", "n002", "n003", "n004", "n005"]),
        "description": _cell(["a", "b", "c", "d", "e"]),
    }
    normalization = {
        "averageImage": average_image,
        "imageSize": np.array([127.0, 95.0, 3.0]),
        "interpolation": "bilinear",
    }
    structs = []
    for layer in layers:
        s = {"name": layer["name"], "type": layer["type"]}
        if layer["type"] == "conv":
            if layout in ("tidy", "beta12"):  # beta12-16 already hold weights = {filters, biases}
                s["weights"] = _cell([layer["f"], layer["b"][None, :]])
                s["dilate"] = 1.0
                s["precious"] = False
            else:
                s["filters"], s["biases"] = layer["f"], layer["b"][None, :]
            s["stride"], s["pad"] = np.array(layer["stride"], float), np.array(layer["pad"], float)
        elif layer["type"] == "pool":
            s.update(
                method="max",
                pool=np.array(layer["pool"], float),
                stride=np.array(layer["stride"], float),
                pad=np.array(layer["pad"], float),
            )
        elif layer["type"] == "lrn":
            s["param"] = np.array(layer["param"], float)
            if layout in ("old", "beta12"):
                s["type"] = "normalize"  # MatConvNet's name before vl_simplenn_tidy
        structs.append(s)
    if layout == "tidy":
        content = {
            "layers": _cell(structs),
            "meta": {
                "normalization": normalization,
                "classes": classes,
                "inputs": {"name": "data"},
            },
        }
    else:
        content = {"layers": _cell(structs), "normalization": normalization, "classes": classes}
    scipy.io.savemat(path, content)


@pytest.fixture(scope="module")
def mats(tmp_path_factory):
    root = tmp_path_factory.mktemp("mat")
    rng = np.random.default_rng(1)
    average = rng.uniform(0, 255, INPUT).astype(np.float32)
    net = small_net(0)
    paths = {}
    for layout in ("tidy", "old", "beta12"):
        paths[layout] = str(root / f"vgg-f-{layout}.mat")
        write_mat(paths[layout], net, layout, average)
    paths["other_weights"] = str(root / "vgg-f-other.mat")
    write_mat(paths["other_weights"], small_net(7), "tidy", average)
    paths["other_lrn"] = str(root / "vgg-f-lrn.mat")
    write_mat(paths["other_lrn"], small_net(0, lrn_param=(3, 1.0, 1e-1, 0.75)), "tidy", average)
    return paths, net, average


def _features(model, image):
    return model(image[None].astype(np.float32), training=False).numpy()[0]


# ----------------------------------------------------------------------------- tests


def test_lrn_matches_matconvnet_formula_including_edge_channels():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (2, 4, 3, 7)).astype(np.float32)
    param = (5, 2.0, 0.05, 0.75)
    layer = LocalResponseNormalization.from_matconvnet(param)
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 0.05, 0.75)
    np.testing.assert_allclose(
        layer(x).numpy(), np_lrn(x.astype(np.float64), *param), rtol=1e-5, atol=1e-6
    )


def test_lrn_config_round_trip_and_bad_parameters():
    layer = LocalResponseNormalization(depth_radius=3, bias=1.5, alpha=0.01, beta=0.5, name="n")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, LocalResponseNormalization)
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta) == (3, 1.5, 0.01, 0.5)
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization.from_matconvnet((4, 2, 1e-4, 0.75))
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)


def test_cnn_f_architecture_at_224():
    model = cnn_f()
    assert model.output_shape == (None, 4096)
    assert model.get_layer("conv1").kernel.shape == (11, 11, 3, 64)
    assert model.get_layer("conv1").strides == (4, 4)
    assert model.get_layer("pool1_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    assert model.get_layer("fc6").kernel.shape == (6, 6, 256, 4096)
    assert model.get_layer("fc7").kernel.shape == (1, 1, 4096, 4096)
    assert model.count_params() == 56_737_536  # CNN-F's 60.9M minus fc8 (4096*1000 + 1000)


@pytest.mark.parametrize("layout", ["tidy", "old", "beta12"])
def test_forward_pass_with_loaded_weights_equals_numpy_matconvnet(mats, layout):
    paths, net, average = mats
    model = cnn_f(INPUT, weights=paths[layout])
    assert model.output_shape == (None, 8)
    image = np.random.default_rng(2).uniform(0, 255, INPUT) - average
    expected = np_forward(net, image)
    got = _features(model, image)
    assert np.abs(expected).max() > 0.1  # the comparison is not between zero vectors
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


def test_both_layouts_give_the_same_model_and_metadata(mats):
    paths, _, average = mats
    image = np.random.default_rng(3).uniform(-100, 100, INPUT)
    a, b = cnn_f(INPUT, weights=paths["tidy"]), cnn_f(INPUT, weights=paths["old"])
    np.testing.assert_allclose(_features(a, image), _features(b, image), rtol=1e-6)
    meta_t, meta_o = matconvnet_metadata(paths["tidy"]), matconvnet_metadata(paths["old"])
    assert (meta_t["layout"], meta_o["layout"]) == ("tidy", "old")
    for meta in (meta_t, meta_o):
        assert meta["class_names"] == ["n001", "n002", "n003", "n004", "n005"]
        assert meta["class_descriptions"] == ["a", "b", "c", "d", "e"]
        assert meta["image_size"] == INPUT
        np.testing.assert_allclose(meta["average_image"], average)
        np.testing.assert_allclose(meta["mean"], average.reshape(-1, 3).mean(0), rtol=1e-5)


def test_every_importer_version_is_recognised_and_loads_into_one_model(mats):
    paths, net, _ = mats
    expected = {"old": "beta3-11", "beta12": "beta12-16", "tidy": "beta17+"}
    model = cnn_f(INPUT, weights=paths["tidy"])
    image = np.random.default_rng(5).uniform(-100, 100, INPUT)
    for layout, importer in expected.items():
        assert matconvnet_metadata(paths[layout])["importer"] == importer
        info = load_matconvnet_weights(model, paths[layout])
        assert info["importer"] == importer and info["loaded"][-1] == "fc7"
        np.testing.assert_allclose(
            _features(model, image), np_forward(net, image), rtol=2e-4, atol=1e-4
        )


def test_pool_padding_that_reads_the_same_windows_is_accepted(tmp_path, mats):
    from deephash.backbones.cnn_f import same_windows

    paths, _, average = mats
    # CNN-F at 224: pool2 reads a 27x27 map; beta17+ files pad it [0 1 0 1], older ones [0 0 0 0]
    assert same_windows((0, 1, 0, 1), (0, 0, 0, 0), (3, 3), (2, 2), (27, 27))
    assert not same_windows(
        (0, 1, 0, 1), (0, 0, 0, 0), (3, 3), (2, 2), (28, 28)
    )  # one more output row
    assert not same_windows((1, 0, 1, 0), (0, 1, 0, 1), (3, 3), (2, 2), (27, 27))  # shifted windows
    assert not same_windows((0, 1, 0, 1), (0, 0, 0, 0), (3, 3), (2, 2), (None, 27))
    # the small net's pool2 reads a 15x11 map: pad [0 1 0 1] gives the same 7x5 output
    net = small_net(3)
    pool2 = next(layer for layer in net if layer["name"] == "pool2")
    pool2["pad"] = (0, 1, 0, 1)
    padded = str(tmp_path / "pool2-padded.mat")
    write_mat(padded, net, "tidy", average)
    model = cnn_f(INPUT, weights=paths["tidy"])  # built with pool2 pad [0 0 0 0]
    assert load_matconvnet_weights(model, padded)["loaded"][0] == "conv1"
    image = np.random.default_rng(6).uniform(-100, 100, INPUT)
    np.testing.assert_allclose(
        _features(model, image), np_forward(net, image), rtol=2e-4, atol=1e-4
    )
    pool2["pad"] = (1, 0, 1, 0)  # same output size, shifted windows: refused
    shifted = str(tmp_path / "pool2-shifted.mat")
    write_mat(shifted, net, "tidy", average)
    with pytest.raises(ValueError, match="pool2.*pad"):
        load_matconvnet_weights(model, shifted)


def test_load_matconvnet_weights_replaces_every_layer(mats):
    paths, _, average = mats
    model = cnn_f(INPUT, weights=paths["tidy"])
    info = load_matconvnet_weights(model, paths["other_weights"])
    assert info["loaded"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    assert info["skipped"] == ["fc8"]
    image = np.random.default_rng(4).uniform(-100, 100, INPUT)
    np.testing.assert_allclose(
        _features(model, image), np_forward(small_net(7), image), rtol=2e-4, atol=1e-4
    )


def test_loader_refuses_mismatched_geometry(mats):
    paths, _, _ = mats
    model = cnn_f(INPUT, weights=paths["tidy"])
    with pytest.raises(ValueError, match="norm1"):
        load_matconvnet_weights(model, paths["other_lrn"])
    with pytest.raises(ValueError, match="layer (conv1|norm1)"):
        load_matconvnet_weights(cnn_f(), paths["tidy"])  # full-size CNN-F vs the small file
    with pytest.raises(ValueError, match="224x224|does not fit|map"):
        cnn_f((64, 64, 3), weights=paths["tidy"])


def test_loader_errors_name_the_problem(tmp_path, mats):
    paths, _, _ = mats
    with pytest.raises(FileNotFoundError, match="nowhere.mat"):
        cnn_f(INPUT, weights=str(tmp_path / "nowhere.mat"))
    foreign = str(tmp_path / "foreign.mat")
    scipy.io.savemat(foreign, {"x": np.ones(3)})
    with pytest.raises(ValueError, match="layers"):
        matconvnet_metadata(foreign)
    no_meta = str(tmp_path / "no_meta.mat")
    scipy.io.savemat(no_meta, {"layers": _cell([{"name": "conv1", "type": "relu"}])})
    with pytest.raises(ValueError, match="meta.*normalization"):
        matconvnet_metadata(no_meta)
    not_mat = tmp_path / "text.mat"
    not_mat.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        matconvnet_metadata(str(not_mat))


def test_saved_model_round_trip(tmp_path, mats):
    paths, _, _ = mats
    model = cnn_f(INPUT, weights=paths["tidy"])
    path = str(tmp_path / "cnn_f.keras")
    model.save(path)
    clone = keras.models.load_model(path)
    image = np.random.default_rng(5).uniform(-100, 100, INPUT)
    np.testing.assert_array_equal(_features(model, image), _features(clone, image))


def test_extract_features_subtracts_the_files_full_average_image(tmp_path, monkeypatch):
    from deephash import data, features

    net = small_net(0)
    for i, layer in enumerate(net):  # CNN-F's 6x6 fc6 so that the file fits 224x224 inputs
        if layer["name"] == "fc6":
            rng = np.random.default_rng(9)
            net[i] = dict(layer, f=rng.normal(0, 0.1, (6, 6, 6, 8)).astype(np.float32))
    average = np.broadcast_to(
        np.linspace(0, 255, 224, dtype=np.float32)[:, None, None], (224, 224, 3)
    ).copy()
    path = str(tmp_path / "vgg-f-224.mat")
    write_mat(path, net, "tidy", average)
    seen = {}

    def capture(model, split, batch_size, preprocess):
        seen["mean"] = preprocess.mean
        return np.zeros((len(split), 8), np.float32)

    monkeypatch.setattr(features, "_run", capture)
    features.extract_features("cnn_f", data.load("digits"), weights=path)
    np.testing.assert_array_equal(seen["mean"], average)  # not its per-channel mean (127.5)
