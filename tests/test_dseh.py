"""DSEH: objective vs a numpy reference, ablation switches, Algorithm 1's schedule, the
learning-rate multiplier, MirroredStrategy == one device, resume, learning on digits_multi
through experiments/train.py with a reload in a fresh process, and the PCA notebook."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import approx_history

import deephash  # noqa: F401
from deephash import data, methods, metrics, runs, training
from deephash.methods.dseh import DSEH, VARIANTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits_multi():
    return data.load("digits_multi")


def _small(ds, n):
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(n)))


def _tiny(ds, variant="dseh", strategy=None, **hparams):
    training.set_seed(0)
    strategy = strategy or training.get_strategy("default")
    kw = dict(labnet_hidden=64, semantic_dim=16, labnet_batch_size=16)
    kw.update(hparams)
    with strategy.scope():
        return methods.create(variant, bits=8, dataset=ds, **kw)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _pair_mean(a, b, s):
    theta = 0.5 * a.astype(np.float64) @ b.astype(np.float64).T
    return (_softplus(theta) - s * theta).mean(axis=1)


# ----------------------------------------------------------------------------- construction


def test_every_variant_is_registered_with_its_settings(digits_multi):
    assert set(VARIANTS) <= set(methods.available())
    for variant in VARIANTS:
        m = _tiny(digits_multi, variant)
        assert isinstance(m, DSEH) and m.variant == variant
        assert m.backbone.name == "small_cnn"  # 16x16 images -> the small backbone
        assert m.rounds == (1 if variant == "dseh-a" else 3)
        assert m.lr_multiplier == 1.0  # randomly initialised backbone: no 10x for new layers
    m = _tiny(digits_multi, rounds=2, labnet_epochs=3, imgnet_epochs=5)
    config = training.TrainConfig(epochs=7)
    assert m.phases(config) == [("labnet", 3), ("imgnet", 5), ("labnet", 3), ("imgnet", 5)]
    assert _tiny(digits_multi, "dseh-a").phases(config) == [("labnet", 7), ("imgnet", 7)]


def test_bad_arguments_are_rejected(digits_multi):
    with pytest.raises(ValueError, match="variant"):
        DSEH(
            bits=8, num_classes=10, backbone="small_cnn", variant="dseh-x", image_shape=(16, 16, 1)
        )
    with pytest.raises(ValueError, match="rounds"):
        _tiny(digits_multi, "dseh-a", rounds=3)
    with pytest.raises(ValueError, match="beta"):
        _tiny(digits_multi, beta=-1.0)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        _tiny(digits_multi, lamda=1.0)
    m = _tiny(digits_multi)
    with pytest.raises(ValueError, match=r"\(n, 10\)"):
        m.encode_labels(np.ones((3, 4)))
    with pytest.raises(ValueError, match="images and/or labels"):
        m.semantic_features()


def test_lr_multiplier_defaults_to_ten_with_pretrained_weights(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_cnn_f_tests", os.path.join(REPO, "tests", "test_cnn_f.py")
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)  # the small .mat writer of the CNN-F tests
    INPUT, small_net, write_mat = helpers.INPUT, helpers.small_net, helpers.write_mat
    path = str(tmp_path / "vgg-f.mat")
    write_mat(path, small_net(0), "tidy", np.full(INPUT, 100.0, np.float32))
    m = DSEH(
        bits=8,
        num_classes=3,
        backbone="cnn_f",
        weights=path,
        input_shape=INPUT,
        labnet_hidden=16,
        semantic_dim=8,
    )
    assert m.lr_multiplier == 10.0
    # the file's FULL average image, as MatConvNet and the authors' DSEH.py subtract it
    np.testing.assert_array_equal(np.asarray(m.image_mean), np.full(INPUT, 100.0, np.float32))
    assert m.preprocessor().input_shape == INPUT


# ----------------------------------------------------------------------------- objective


@pytest.mark.parametrize("variant", VARIANTS)
def test_objective_matches_numpy_reference(digits_multi, variant):
    ds = _small(digits_multi, 40)
    m = _tiny(ds, variant, alpha=0.7, beta=0.3, gamma=1.3, eta=0.6, positive_similarity=2.0)
    m.refresh_store(ds.train.labels)
    y_all = ds.train.labels.astype(np.float32)
    lab_all = m._labnet_outputs(y_all)
    y = y_all[:8]
    lab = m._labnet_outputs(y)
    s = 2.0 * ((y @ y_all.T) > 0)

    terms = {k: v.numpy() for k, v in m.labnet_losses(tf.constant(y), training_mode=False).items()}
    expected = {
        "semantic": _pair_mean(lab["semantic"], lab_all["semantic"], s),
        "hash": _pair_mean(lab["codes"], lab_all["codes"], s),
        "quantization": np.abs(np.abs(lab["codes"]) - 1).sum(axis=1),
        "label": ((y - lab["labels"]) ** 2).sum(axis=1),
    }
    if variant == "dseh-ss":
        del expected["semantic"]
    if variant == "dseh-l":
        del expected["label"]
    assert set(terms) == set(expected)
    for k in expected:
        np.testing.assert_allclose(terms[k], expected[k], rtol=2e-5, atol=1e-5, err_msg=k)
    weights = {"semantic": 1.0, "hash": 0.7, "quantization": 0.3, "label": 1.3}
    np.testing.assert_allclose(
        m._labnet_total({k: tf.constant(v) for k, v in terms.items()}).numpy(),
        sum(weights[k] * v for k, v in expected.items()),
        rtol=1e-5,
    )

    pre = m.preprocessor()
    images = pre(tf.constant(ds.train.images[:8]), training=False)
    img = m.imgnet(images, training=False)
    terms = {
        k: v.numpy()
        for k, v in m.imgnet_losses(images, tf.constant(y), training_mode=False).items()
    }
    z, t = img["hash"].numpy().astype(np.float64), (lab["codes"] > 0).astype(np.float64)
    expected = {
        "semantic": _pair_mean(img["semantic"].numpy(), lab_all["semantic"], s),
        "codes": (_softplus(z) - t * z).sum(axis=1),
    }
    if variant in ("dseh-s", "dseh-ss"):
        del expected["semantic"]
    assert set(terms) == set(expected)
    for k in expected:
        np.testing.assert_allclose(terms[k], expected[k], rtol=2e-5, atol=1e-5, err_msg=k)


def test_imgnet_step_gives_new_layers_the_lr_multiplier(digits_multi, monkeypatch):
    ds = _small(digits_multi, 32)
    m = _tiny(ds, lr_multiplier=10.0)
    m.refresh_store(ds.train.labels)
    base, head = m.imgnet_weights()
    images = m.preprocessor()(tf.constant(ds.train.images), training=False)
    y = tf.constant(ds.train.labels, tf.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_mean(m._imgnet_total(m.imgnet_losses(images, y)))
    grads = [g.numpy() for g in tape.gradient(total, base + head)]
    before = [v.numpy() for v in base + head]
    monkeypatch.setattr(m, "phases", lambda config: [("imgnet", 1)])
    lr = 0.05
    m.fit_dataset(
        ds,
        training.TrainConfig(
            epochs=1,
            batch_size=32,
            lr=lr,
            momentum=0.0,
            weight_decay=0.0,
            lr_decay_steps=None,
            verbose=0,
        ),
    )
    for v, b, g, factor in zip(base + head, before, grads, [1.0] * len(base) + [10.0] * len(head)):
        np.testing.assert_allclose(
            v.numpy(), b - lr * factor * g, rtol=1e-4, atol=1e-6, err_msg=v.path
        )


# ----------------------------------------------------------------------------- training machinery


def test_mirrored_training_over_two_devices_matches_one_device(digits_multi):
    """Two rounds of both phases, all loss terms and weight decay: 2 replicas == 1 device.
    ImgNet batches of 8 from a 32-item split, reshuffled each epoch (labeled_dataset's
    batches depend only on (seed, step), whatever the strategy); LabNet's order is
    strategy-independent by construction."""
    ds = _small(digits_multi, 32)
    config = training.TrainConfig(
        epochs=2, batch_size=8, lr=0.05, weight_decay=1e-2, lr_decay_steps=None, verbose=0
    )
    one = _tiny(ds, rounds=2)
    two = _tiny(ds, rounds=2, strategy=training.get_strategy("mirrored"))
    assert two.distribute_strategy.num_replicas_in_sync == 2
    start = [w.numpy() for w in one.weights]
    h1, h2 = one.fit_dataset(ds, config), two.fit_dataset(ds, config)
    assert max(float(np.abs(w.numpy() - s).max()) for w, s in zip(one.weights, start)) > 1e-3
    assert (
        max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(one.weights, two.weights))
        < 1e-5
    )
    assert len(h1["labnet_loss"]) == len(h1["imgnet_loss"]) == 4
    for k in h1:
        assert h1[k] == pytest.approx(h2[k], rel=1e-4), k


class _Interrupt(Exception):
    pass


class _StopAtPhase(keras.callbacks.Callback):
    def __init__(self, phase):
        super().__init__()
        self.phase, self.count = phase, 0

    def on_train_begin(self, logs=None):
        self.count += 1
        if self.count == self.phase:
            raise _Interrupt


def test_interrupted_training_resumes_after_the_last_finished_phase(digits_multi, tmp_path):
    ds = _small(digits_multi, 48)
    config = training.TrainConfig(epochs=1, batch_size=16, lr=0.05, lr_decay_steps=None, verbose=0)
    full = _tiny(ds, rounds=2)
    h_full = full.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "a")))
    with pytest.raises(_Interrupt):  # dies at the start of round 2's LabNet phase
        _tiny(ds, rounds=2).fit_dataset(
            ds, config.replace(checkpoint_dir=str(tmp_path / "b")), callbacks=[_StopAtPhase(3)]
        )
    resumed = _tiny(ds, rounds=2)
    h_resumed = resumed.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert (
        max(
            float(np.abs(a.numpy() - b.numpy()).max())
            for a, b in zip(full.weights, resumed.weights)
        )
        < 1e-6
    )
    assert h_resumed == approx_history(h_full)


def test_two_identical_fits_give_identical_weights_and_codes(digits_multi):
    """Training depends on the settings and ``config.seed`` only: a second identical fit,
    with every global random state (Python, numpy, TensorFlow, Keras) disturbed between
    building the model and fitting it, ends with bit-identical weights, history and codes."""
    import random

    ds = _small(digits_multi, 48)
    config = training.TrainConfig(
        epochs=1, batch_size=16, lr=0.05, lr_decay_steps=None, verbose=0, seed=3
    )
    a = _tiny(ds, rounds=2)
    h_a = a.fit_dataset(ds, config)
    b = _tiny(ds, rounds=2)
    random.seed(99), np.random.seed(99), tf.random.set_seed(99)
    tf.random.uniform((3,)), keras.random.normal((2,))
    h_b = b.fit_dataset(ds, config)
    assert h_a == h_b
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)
    np.testing.assert_array_equal(a.encode(ds.query), b.encode(ds.query))
    np.testing.assert_array_equal(
        a.encode_labels(ds.query.labels), b.encode_labels(ds.query.labels)
    )


# ------------------------------------------------------------ learning, run directory, reload


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """experiments/train.py --method=dseh on digits_multi: shorter than the quick preset (2
    rounds of 3 LabNet + 8 ImgNet epochs; LabNet at lr 0.03 to make up for it), on the whole
    training split (--patience=0: no validation carve, no early stopping)."""
    out = str(tmp_path_factory.mktemp("dseh") / "run")
    cmd = [
        sys.executable,
        os.path.join(REPO, "experiments", "train.py"),
        "--method=dseh",
        "--dataset=digits_multi",
        "--bits=32",
        "--lr=0.01",
        "--lr_decay_steps=0",
        "--batch_size=64",
        "--hparams=rounds=2,labnet_epochs=3,imgnet_epochs=8,labnet_lr=0.03",
        "--patience=0",
        "--verbose=0",
        f"--out={out}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_dseh_learns_on_digits_multi(trained_run, digits_multi):
    with open(os.path.join(trained_run, "metrics.json")) as f:
        result = json.load(f)
    ds = digits_multi
    rng = np.random.default_rng(0)
    random_map = metrics.mean_average_precision(
        rng.random((len(ds.query), 32)) > 0.5,
        rng.random((len(ds.database), 32)) > 0.5,
        ds.query.labels,
        ds.database.labels,
    )
    assert result["map_i"] == result["map"]
    assert result["map_l"] > 0.95  # label codes retrieve labels almost perfectly
    assert result["map_i"] > random_map + 0.2, (result["map_i"], random_map)
    assert 20 <= result["n_h"] <= len(ds.database)
    history = json.load(open(os.path.join(trained_run, "history.json")))
    assert history["labnet_loss"][-1] < 0.5 * history["labnet_loss"][0]
    assert history["imgnet_loss"][-1] < history["imgnet_loss"][0]


def test_saved_run_reloads_with_identical_codes(trained_run, digits_multi):
    """The model was trained and saved by another process; codes recomputed here match."""
    model = methods.load(os.path.join(trained_run, "model.keras"))
    assert isinstance(model, DSEH) and model.variant == "dseh" and model.rounds == 2
    saved = runs.load_codes(os.path.join(trained_run, "codes.npz"))
    np.testing.assert_array_equal(model.encode(digits_multi.query), saved["query"])
    np.testing.assert_array_equal(model.encode(digits_multi.database), saved["database"])
    result = json.load(open(os.path.join(trained_run, "metrics.json")))
    extra = model.extra_metrics(digits_multi, saved["query"], saved["database"])
    assert extra["n_h"] == result["n_h"] and extra["map_l"] == pytest.approx(result["map_l"])
    lab_codes = model.encode_labels(digits_multi.query.labels)
    assert lab_codes.shape == (len(digits_multi.query), 32) and lab_codes.dtype == bool
    f_img, f_lab = model.semantic_features(
        images=digits_multi.query.images[:5], labels=digits_multi.query.labels[:5]
    )
    assert f_img.shape == f_lab.shape == (5, 512)


def test_pca_notebook_runs_headless():
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(REPO, "notebooks", "semantic_features_pca.ipynb")
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + old if old else "")
    try:
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": os.path.dirname(path)}},
        ).execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook drew no figure"


@pytest.fixture
def ablation():
    """experiments/dseh_ablation.py as a module; its absl flags are unregistered afterwards."""
    from _helpers import script_module

    with script_module(
        os.path.join(REPO, "experiments", "dseh_ablation.py"), "dseh_ablation_under_test"
    ) as module:
        yield module


def test_ablation_takes_its_settings_from_the_presets(ablation):
    """One source of truth: every variant's quick run is presets.spec(variant, ...) (lr 0.01,
    3 rounds of 9 LabNet epochs and an ImgNet phase of at most 500 steps, 1,500 for DSEH-A's
    one round; S = 5 on single-label digits)."""
    from deephash import presets

    # ImgNet epochs: ceil(1500 / rounds / steps per epoch); 6 steps on digits, 12 on digits_multi
    imgnet = {
        ("digits", 3): 84,
        ("digits_multi", 3): 42,
        ("digits", 1): 250,
        ("digits_multi", 1): 125,
    }
    for variant in VARIANTS:
        for dataset in ("digits", "digits_multi"):
            s = ablation.spec(variant, dataset, 32, seed=1)
            assert s.request() == presets.spec(variant, dataset, 32, paper="dseh", seed=1).request()
            assert s.config.lr == 0.01 and s.config.batch_size == 64
            rounds = 1 if variant == "dseh-a" else 3
            epochs = imgnet[dataset, rounds]
            assert (s.hparams["labnet_epochs"], s.hparams["imgnet_epochs"]) == (9, epochs)
            assert s.hparams.get("rounds") == (None if variant == "dseh-a" else 3)
            assert s.hparams.get("positive_similarity") == (5.0 if dataset == "digits" else None)
    equal = ablation.spec("dseh-a", "digits_multi", 32, seed=0, equal_budget=True).hparams
    assert (equal["labnet_epochs"], equal["imgnet_epochs"]) == (27, 126)  # DSEH's 3 phases
    short = ablation.spec("dseh", "digits_multi", 32, seed=0, epochs=2)
    assert (
        short.config.epochs == 2
        and "labnet_epochs" not in short.hparams
        and "imgnet_epochs" not in short.hparams
    )


def test_ablation_script_writes_table_2_beside_the_paper(trained_run, tmp_path, ablation):
    """experiments/dseh_ablation.py reuses finished sweep runs with the same request: given
    one (here a copy of trained_run, filed under the quick preset's request), it only tabulates."""
    import shutil

    from deephash import runs, sweep

    out = tmp_path / "ablation"
    s = ablation.spec("dseh", "digits_multi", 32, seed=0)
    run_dir = sweep.run_dir_for(str(out / "runs"), s)
    shutil.copytree(trained_run, run_dir)
    with open(os.path.join(run_dir, "request.json"), "w") as f:
        json.dump(s.request(), f)
    runs.write_manifest(run_dir)  # as the sweep files it: request.json among the hashed files
    cmd = [
        sys.executable,
        os.path.join(REPO, "experiments", "dseh_ablation.py"),
        "--dataset=digits_multi",
        "--seeds=1",
        "--variants=dseh",
        f"--out={out}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out / "runs" / "digits_multi" / "dseh")) == [
        os.path.basename(run_dir)
    ]  # no new run
    result = json.load(open(os.path.join(trained_run, "metrics.json")))
    md = (out / "table.md").read_text()
    assert (
        "| DSEH | " in md and "NUS-WIDE" in md and "0.7312" in md
    )  # the paper's DSEH map_i on NUS-WIDE
    assert f"{result['map_i']:.4f} ± 0.0000" in md
    rows = (out / "table.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["method", "seeds", "n_h_mean", "n_h_std"]
    cells = rows[1].split(",")
    assert cells[0] == "dseh" and float(cells[6]) == pytest.approx(result["map_i"], abs=1e-5)
    assert cells[8:] == ["nuswide21", "2008.0", "0.9664", "0.7312"]
