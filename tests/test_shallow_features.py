"""deephash.features: feature extraction (raw pixels, a backbone layer), save/load, and
fitting a shallow method on the result."""

import dataclasses
import os

import numpy as np
import pytest

from deephash import backbones, data, methods
from deephash.features import extract_features, feature_matrix, load_features, save_features


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return data.load("digits", split_dir=str(tmp_path_factory.mktemp("split")))


@pytest.fixture(scope="module")
def pixels(digits):
    return extract_features("pixels", digits)


def test_pixel_features_are_the_flattened_images(digits, pixels):
    assert pixels.image_shape == (1, 1, 64)
    for name in ("query", "train", "database"):
        src, out = getattr(digits, name), getattr(pixels, name)
        assert out.images.shape == (len(src), 1, 1, 64)
        np.testing.assert_array_equal(feature_matrix(out), src.images.reshape(len(src), 64))
        np.testing.assert_array_equal(out.labels, src.labels)
        np.testing.assert_array_equal(out.indices, src.indices)
        np.testing.assert_array_equal(out.class_ids, src.class_ids)
    assert pixels.checksum == digits.checksum and pixels.protocol == digits.protocol


def test_save_load_round_trip(pixels, tmp_path):
    save_features(pixels, tmp_path / "f", source={"backbone": "pixels"})
    names = sorted(os.listdir(tmp_path / "f"))
    assert (
        "features.json" in names
        and "train_features.npy" in names
        and "query_class_ids.npy" in names
    )
    assert not [n for n in names if n.endswith(".tmp")]
    loaded = load_features(tmp_path / "f")
    assert (
        loaded.checksum == pixels.checksum
        and loaded.name == "digits"
        and loaded.protocol == pixels.protocol
    )
    for name in ("query", "train", "database"):
        a, b = getattr(pixels, name), getattr(loaded, name)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_load_names_the_missing_file_and_checks_the_split(pixels, tmp_path):
    d = tmp_path / "f"
    save_features(pixels, d)
    os.remove(d / "train_labels.npy")
    with pytest.raises(FileNotFoundError, match="train_labels.npy"):
        load_features(d)
    save_features(pixels, d)
    idx = np.load(d / "query_indices.npy")
    np.save(d / "query_indices.npy", idx[::-1])
    with pytest.raises(ValueError, match="checksum"):
        load_features(d)
    save_features(pixels, d)
    np.save(d / "database_features.npy", np.load(d / "database_features.npy")[:, :10])
    with pytest.raises(ValueError, match="dimension 64"):
        load_features(d)
    with pytest.raises(FileNotFoundError, match="features.json"):
        load_features(tmp_path / "empty")


def test_shallow_method_fits_on_a_feature_dataset(pixels):
    m = methods.create("itq", bits=16)
    history = m.fit_dataset(pixels)
    assert len(history["quantization_loss"]) == 101
    codes = m.encode(pixels.query)
    assert codes.shape == (len(pixels.query), 16) and codes.dtype == bool
    np.testing.assert_array_equal(codes, m.encode(feature_matrix(pixels.query)))


def test_backbone_layer_features_match_a_direct_forward_pass(digits):
    pre = data.for_backbone("small_cnn", input_shape=digits.image_shape)
    model = backbones.get("small_cnn", input_shape=digits.image_shape)
    feats = extract_features(model, digits, layer="flatten", batch_size=128, preprocess=pre)
    sub = model.get_layer("flatten").output.shape[-1]
    assert feats.image_shape == (1, 1, sub)
    import keras

    direct = keras.Model(model.inputs, model.get_layer("flatten").output)(
        pre(digits.query.images[:7])
    )
    np.testing.assert_allclose(
        feature_matrix(feats.query)[:7], np.asarray(direct), rtol=1e-5, atol=1e-5
    )
    # training items are database items: their features are the same rows
    pos = {int(i): p for p, i in enumerate(digits.database.indices)}
    rows = [pos[int(i)] for i in digits.train.indices]
    np.testing.assert_array_equal(feature_matrix(feats.train), feature_matrix(feats.database)[rows])


def test_backbone_by_name_defaults_to_its_output(digits):
    feats = extract_features("small_cnn", digits, batch_size=256)
    out_dim = backbones.get("small_cnn", input_shape=digits.image_shape).output.shape[-1]
    assert feature_matrix(feats.database).shape == (len(digits.database), out_dim)


def test_bad_requests_raise_value_error(digits):
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        extract_features("small_cnn", digits, layer="fc9")
    with pytest.raises(ValueError, match="batch_size"):
        extract_features("pixels", digits, batch_size=0)
    with pytest.raises(ValueError, match="no layer or weights"):
        extract_features("pixels", digits, layer="fc7")
    files = dataclasses.replace(
        digits,
        query=dataclasses.replace(
            digits.query,
            images=None,
            paths=np.array([f"/x/{i}.jpg" for i in range(len(digits.query))]),
        ),
    )
    with pytest.raises(ValueError, match="in-memory"):
        extract_features("pixels", files)
    with pytest.raises(ValueError, match="unknown backbone"):
        extract_features("resnet", digits)


def test_extract_features_script_writes_a_loadable_directory(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "DEEPHASH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "feat"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "experiments", "extract_features.py"),
            "--dataset=digits",
            "--backbone=pixels",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "64-d features from pixels" in proc.stdout
    loaded = load_features(out)
    assert loaded.image_shape == (1, 1, 64) and len(loaded.query) == 200
    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "experiments", "extract_features.py"),
            "--dataset=digits",
            "--backbone=pixels",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode != 0 and "--out" in bad.stderr
