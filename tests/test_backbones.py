"""Backbones: small CNN, VGG-19 through fc7 and its weights-file loader, dispatch by name."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import types

import h5py
import keras
import numpy as np
import pytest

import deephash
from deephash import backbones
from deephash.backbones.vgg19 import load_vgg19_weights, vgg19_layer_names
from deephash.layers import BagHash

SMALL_VGG = dict(input_shape=(32, 32, 3), fc_units=32)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _random_arrays(model, seed):
    """{layer name: [kernel, bias]} random arrays shaped like the model's VGG layers."""
    rng = np.random.default_rng(seed)
    return {
        layer.name: [rng.normal(scale=0.05, size=w.shape).astype("float32") for w in layer.weights]
        for layer in model.layers
        if layer.name in vgg19_layer_names()
    }


def _write_keras_applications_h5(path, arrays, style="W_1"):
    """Write ``arrays`` in the layout of vgg19_weights_tf_dim_ordering_tf_kernels.h5.

    Root attribute ``layer_names`` (every layer, weightless ones included, plus the
    ``predictions`` layer the backbone lacks); per layer a group with attribute
    ``weight_names``; datasets ``<layer>_W_1:0`` / ``<layer>_b_1:0`` (the published file) or
    ``<layer>/kernel:0`` / ``<layer>/bias:0`` (files written by later Keras versions).
    """
    names = ["input_1"]
    for block, convs, _ in ((1, 2, 0), (2, 2, 0), (3, 4, 0), (4, 4, 0), (5, 4, 0)):
        names += [f"block{block}_conv{i}" for i in range(1, convs + 1)] + [f"block{block}_pool"]
    names += ["flatten", "fc1", "fc2", "predictions"]
    rng = np.random.default_rng(0)
    fc = arrays["fc2"][1].shape[0]
    arrays = dict(
        arrays, predictions=[rng.normal(size=(fc, 10)).astype("float32"), np.zeros(10, "float32")]
    )
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in names:
            g = f.create_group(name)
            values = arrays.get(name, [])
            if style == "W_1":
                wnames = [f"{name}_{s}_1:0" for s in ("W", "b")][: len(values)]
            else:
                wnames = [f"{name}/{s}:0" for s in ("kernel", "bias")][: len(values)]
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames])
            for wname, value in zip(wnames, values):
                g.create_dataset(wname, data=value)


# ---------------------------------------------------------------- registry


def test_available_lists_the_three_backbones():
    assert backbones.available() == ["cnn_f", "small_cnn", "vgg19"]


def test_unknown_backbone_raises_value_error_listing_names():
    with pytest.raises(ValueError, match="resnet.*small_cnn"):
        backbones.get("resnet")


def test_get_dispatches_cnn_f_to_its_module(monkeypatch):
    calls = {}

    def fake_cnn_f(input_shape=(224, 224, 3), weights=None, **kwargs):
        calls.update(input_shape=input_shape, weights=weights, **kwargs)
        return "model"

    fake = types.ModuleType("deephash.backbones.cnn_f")
    fake.cnn_f = fake_cnn_f
    monkeypatch.setitem(sys.modules, "deephash.backbones.cnn_f", fake)
    assert backbones.get("CNN_F", input_shape=(64, 64, 3), weights="f.mat", dropout=0.1) == "model"
    assert calls == {"input_shape": (64, 64, 3), "weights": "f.mat", "dropout": 0.1}


def test_cnn_f_import_failure_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "deephash.backbones.cnn_f", None)  # makes the import fail
    with pytest.raises(ImportError, match="backbone 'cnn_f' is unavailable"):
        backbones.get("cnn_f")


# ---------------------------------------------------------------- small CNN


@pytest.mark.parametrize("shape", [(8, 8, 1), (16, 16, 1), (28, 28, 3)])
def test_small_cnn_maps_images_to_feature_matrix(shape):
    model = backbones.get("small_cnn", input_shape=shape, features=64)
    out = model(np.random.default_rng(0).uniform(size=(5, *shape)).astype("float32"))
    assert tuple(out.shape) == (5, 64)
    assert np.all(_np(out) >= 0)  # relu features


def test_small_cnn_has_no_batch_normalization_and_is_seed_deterministic():
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1)).astype("float32")
    outs = []
    for _ in range(2):
        keras.utils.set_random_seed(123)
        model = backbones.small_cnn((8, 8, 1), features=32)
        assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
        outs.append(_np(model(x)))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_small_cnn_dropout_is_only_active_in_training():
    model = backbones.small_cnn((8, 8, 1), features=64, dropout=0.5)
    x = np.random.default_rng(2).uniform(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(_np(model(x, training=False)), _np(model(x, training=False)))
    assert np.mean(_np(model(x, training=True)) == 0) > np.mean(_np(model(x, training=False)) == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "input_shape"),
        ({"input_shape": (8, 8, 1), "weights": "w.h5"}, "no pretrained weights"),
        ({"input_shape": (8, 8)}, "input_shape"),
        ({"input_shape": (8, 8, 1), "features": 0}, "features"),
        ({"input_shape": (8, 8, 1), "dropout": 1.0}, "dropout"),
    ],
)
def test_small_cnn_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.get("small_cnn", **kwargs)


# ---------------------------------------------------------------- VGG-19


def test_vgg19_has_the_keras_applications_layer_names_and_shapes(caplog):
    with caplog.at_level(logging.WARNING):
        model = backbones.get("vgg19", **SMALL_VGG)
    assert "RANDOM initialisation" in caplog.text
    reference = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    ours = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers}
    for layer in reference.layers[1:]:  # every conv and pool layer, same name, same shapes
        assert ours[layer.name] == [tuple(w.shape) for w in layer.weights]
    names = [layer.name for layer in model.layers]
    assert names[-6:] == ["block5_pool", "flatten", "fc1", "fc1_dropout", "fc2", "fc2_dropout"]
    assert len([n for n in names if "conv" in n]) == 16
    assert model.get_layer("fc2").activation is keras.activations.relu
    assert tuple(model.output.shape) == (None, 32)


@pytest.mark.parametrize("style", ["W_1", "kernel"])
def test_load_vgg19_weights_assigns_every_layer_by_name(tmp_path, style):
    donor = backbones.vgg19(**SMALL_VGG)
    arrays = _random_arrays(donor, seed=7)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    _write_keras_applications_h5(path, arrays, style=style)

    model = backbones.get("vgg19", weights=str(path), **SMALL_VGG)
    for name, values in arrays.items():
        for got, want in zip(model.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(got, want)
    for name, values in arrays.items():
        donor.get_layer(name).set_weights(values)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_np(model(x)), _np(donor(x)), rtol=1e-5, atol=1e-6)


def test_load_vgg19_weights_reads_a_file_written_by_keras_legacy_h5_saver(tmp_path):
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    donor = backbones.vgg19(**SMALL_VGG)
    for name, values in _random_arrays(donor, seed=8).items():
        donor.get_layer(name).set_weights(values)
    path = tmp_path / "keras_written.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, donor)
    model = backbones.vgg19(**SMALL_VGG)
    wrapper = _hash_model(model)  # the loader also finds the backbone nested in a bigger model
    assert load_vgg19_weights(wrapper, path) == vgg19_layer_names()
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_np(model(x)), _np(donor(x)), rtol=1e-5, atol=1e-6)


def test_save_vgg19_weights_round_trips_through_the_loader(tmp_path):
    donor = backbones.vgg19(**SMALL_VGG)
    path = tmp_path / "converted.h5"
    assert backbones.save_vgg19_weights(_hash_model(donor), path) == vgg19_layer_names()
    model = backbones.vgg19(weights=path, **SMALL_VGG)
    for a, b in zip(model.get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(a, b)
    with h5py.File(path) as f:  # the published file's layout: layer_names / weight_names
        assert [n.decode() for n in f.attrs["layer_names"]] == vgg19_layer_names()
        assert [n.decode() for n in f["fc2"].attrs["weight_names"]] == [
            "fc2/kernel:0",
            "fc2/bias:0",
        ]
    with pytest.raises(ValueError, match="no VGG-19 layers"):
        backbones.save_vgg19_weights(backbones.small_cnn((8, 8, 1)), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_load_vgg19_weights_errors(tmp_path):
    model = backbones.vgg19(**SMALL_VGG)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_vgg19_weights(model, tmp_path / "missing.h5")
    not_h5 = tmp_path / "weights.h5"
    not_h5.write_text("not an hdf5 file")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load_vgg19_weights(model, not_h5)
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="layer_names"):
        load_vgg19_weights(model, bare)
    # a file for fc_units=32 does not fit a model with fc_units=16: the message names fc1
    good = tmp_path / "good.h5"
    _write_keras_applications_h5(good, _random_arrays(model, seed=9))
    narrow = backbones.vgg19(input_shape=(32, 32, 3), fc_units=16)
    before = narrow.get_layer("block1_conv1").get_weights()[0].copy()
    with pytest.raises(ValueError, match="'fc1'"):
        load_vgg19_weights(narrow, good)
    np.testing.assert_array_equal(
        narrow.get_layer("block1_conv1").get_weights()[0], before
    )  # untouched
    # a file without block5_conv4
    arrays = _random_arrays(model, seed=9)
    del arrays["block5_conv4"]
    partial = tmp_path / "partial.h5"
    _write_keras_applications_h5(partial, arrays)
    with pytest.raises(ValueError, match="block5_conv4"):
        load_vgg19_weights(model, partial)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (16, 16, 3)}, "at least 32x32"),
        ({"fc_units": 0}, "fc_units"),
        ({"dropout": -0.1}, "dropout"),
        ({"input_shape": (32, 32)}, "input_shape"),
    ],
)
def test_vgg19_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.vgg19(**kwargs)


# ---------------------------------------------------------------- serialization


def _hash_model(backbone, bits=8, bags=3):
    inputs = keras.Input(shape=backbone.input_shape[1:])
    features = backbone(inputs)
    x = keras.layers.Dense(bits * bags, name="fc8")(features)
    return keras.Model(inputs, BagHash(bits, bags=bags, name="bag_hash")(x))


def test_backbone_inside_a_model_saves_and_reloads_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(0)
    model = _hash_model(backbones.small_cnn((8, 8, 1), features=32))
    x = np.random.default_rng(5).uniform(size=(6, 8, 8, 1)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        import deephash
        model = keras.models.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, keras.ops.convert_to_numpy(model(x)))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(deephash.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), _np(model(x)))


@pytest.mark.parametrize(
    "name, kwargs", [("small_cnn", {"input_shape": (16, 16, 1)}), ("vgg19", SMALL_VGG)]
)
def test_backbone_get_config_json_round_trip(name, kwargs):
    model = backbones.get(name, **kwargs)
    config = json.loads(json.dumps(model.get_config()))
    clone = keras.Model.from_config(config)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(6).uniform(size=(2, *kwargs["input_shape"])).astype("float32")
    np.testing.assert_allclose(_np(clone(x)), _np(model(x)), rtol=1e-6)


@pytest.mark.slow  # builds 140M parameters (4-10 s on 2 cores)
def test_full_size_vgg19_has_the_parameters_of_keras_vgg19_without_predictions():
    model = backbones.vgg19()  # 224x224x3, fc_units=4096; built only, no forward pass
    assert tuple(model.input_shape) == (None, 224, 224, 3)
    assert tuple(model.output_shape) == (None, 4096)
    # keras.applications.VGG19 has 143,667,240 parameters; its predictions layer 4096*1000 + 1000
    assert model.count_params() == 143_667_240 - (4096 * 1000 + 1000)


def test_cnn_f_name_resolves_to_the_cnn_f_module_builder():
    import importlib

    module = importlib.import_module("deephash.backbones.cnn_f")
    assert callable(module.cnn_f)
