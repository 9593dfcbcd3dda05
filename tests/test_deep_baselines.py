"""Deep baselines NINH, CNNH, DPSH, DHN, HashNet: architecture, loss terms against numpy
references, CNNH's stage 1 against brute force, MirroredStrategy == one device (DPSH),
train.py end to end, and learning on digits (save/reload: tests/test_method_contract.py)."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import Interrupt, StopAt, approx_history

import deephash  # noqa: F401
from deephash import data, methods, metrics, training
from deephash.layers import BagHash
from deephash.methods import cnnh as cnnh_mod
from deephash.methods.ninh import PiecewiseThreshold

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("ninh", "cnnh", "dpsh", "dhn", "hashnet")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _create(name, ds, bits=8, seed=0, strategy=None, **hparams):
    training.set_seed(seed)
    with (strategy or training.get_strategy("default")).scope():
        return methods.create(name, bits=bits, dataset=ds, **hparams)


def _small(ds, n):
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(n)))


def _labeled_batch(ds, model, n=12):
    images = model.preprocessor()(ds.train.images[:n])
    return images, ds.train.labels[:n].astype(np.float32)


def _sp(x):
    return np.logaddexp(0.0, x)


# ------------------------------------------------------------ registry and architecture
def test_every_deep_baseline_is_registered_and_built_from_the_dataset(digits):
    assert set(NAMES) <= set(methods.available("deep"))
    for name in NAMES:
        m = _create(name, digits, bits=16)
        assert m.bits == 16 and m.num_classes == 10 and m.image_shape == (8, 8, 1)
        assert m.backbone.name == "small_cnn"  # embedded data set -> small_cnn
        assert m.encode(digits.query.images[:5]).shape == (5, 16)


def test_ninh_divides_the_backbone_features_with_no_fc_layer_in_front(digits):
    m = _create("ninh", digits, bits=32)
    module = m.get_layer("divide_encode")
    assert isinstance(module, BagHash) and (module.bits, module.bags) == (32, 256 // 32)
    # the module reads the backbone's 256 features directly: no fully connected layer in front
    assert [layer.name for layer in m.layers] == ["images", "small_cnn", "divide_encode", "codes"]
    # 24 bits of 256 features: slices of 10, the last 16 features unused
    m24 = _create("ninh", digits, bits=24)
    assert (
        m24.get_layer("divide_encode").bags == 10
        and m24.get_layer("divided_features").output.shape[-1] == 240
    )
    with pytest.raises(ValueError, match="backbone features"):
        _create("ninh", digits, bits=512)


def test_pairwise_baselines_put_one_hash_layer_on_the_backbone(digits):
    for name in ("cnnh", "dpsh", "dhn", "hashnet"):
        m = _create(name, digits, bits=12)
        assert [layer.name for layer in m.layers][:3] == ["images", "small_cnn", "hash"]
        assert tuple(m.get_layer("hash").kernel.shape) == (256, 12)
        assert "classifier" not in [layer.name for layer in m.layers]
    plus = _create("cnnh", digits, bits=12, with_labels=True)
    assert plus.get_layer("classifier").units == 10


@pytest.mark.parametrize(
    "name, hparams, match",
    [
        ("dpsh", {"eta": -1.0}, "eta"),
        ("dhn", {"hash_activation": "relu"}, "hash_activation"),
        ("dhn", {"quantization_weight": float("nan")}, "quantization_weight"),
        ("hashnet", {"beta_step": 0}, "beta_step"),
        ("hashnet", {"alpha": 0.0}, "alpha"),
        ("cnnh", {"with_labels": "yes"}, "with_labels"),
        ("cnnh", {"sweeps": 0}, "sweeps"),
        ("ninh", {"threshold_epsilon": 0.7}, "threshold_epsilon"),
        ("ninh", {"margin": -1}, "margin"),
        ("dpsh", {"lamda": 1.0}, "unknown hyper-parameter"),
        ("ninh", {"bags": 3}, "unknown hyper-parameter"),
        ("dpsh", {"backbone": 3}, "backbone"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(digits, name, hparams, match):
    with pytest.raises(ValueError, match=match):
        _create(name, digits, **hparams)


# ------------------------------------------------------------ loss terms vs numpy references
def _pair_reference(codes, labels, pair_loss):
    """Mean over i != j of pair_loss(theta-free inputs) written out pair by pair."""
    n = len(codes)
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += pair_loss(codes[i], codes[j], float(labels[i] @ labels[j] > 0), i, j)
                count += 1
    return total / count


def test_dpsh_terms_match_a_numpy_reference(digits):
    m = _create("dpsh", digits, eta=0.3)
    images, y = _labeled_batch(digits, m)
    u = m(images)["hash"].numpy().astype(np.float64)
    terms = {
        k: float(v)
        for k, v in m.loss_terms(
            {"hash": tf.constant(u, tf.float32)}, tf.constant(y), False
        ).items()
    }

    def like(a, b, s, i, j):
        theta = 0.5 * a @ b
        return _sp(theta) - s * theta

    assert terms["likelihood"] == pytest.approx(_pair_reference(u, y, like), rel=1e-5)
    b = np.where(u > 0, 1.0, -1.0)
    assert terms["quantization"] == pytest.approx(np.mean(np.sum((b - u) ** 2, axis=1)), rel=1e-5)
    assert m.loss_weights() == {"likelihood": 1.0, "quantization": 0.3}


def test_dpsh_pairs_each_batch_item_with_a_table_of_all_training_outputs(digits):
    """pairs="table" (the reference DPSH_CIFAR_10.py): Θ = ½ u_batch · Uᵀ over all n training
    items, the likelihood averaged over batch x n; "batch" keeps the in-batch pairs."""
    ds = _small(digits, 40)
    m = _create("dpsh", ds, eta=0.3)
    assert m.pairs == "table"
    m.refresh_table(ds.train)
    m.refresh_table()
    table = m._table["codes"].numpy().astype(np.float64)
    np.testing.assert_allclose(
        table, m._predict(m.code_logits_model(), ds.train, 64), rtol=1e-5, atol=1e-6
    )
    images, y = _labeled_batch(ds, m)
    u = m(images)["hash"].numpy().astype(np.float64)
    terms = m.loss_terms({"hash": tf.constant(u, tf.float32)}, tf.constant(y), True)
    s = (y @ ds.train.labels.T > 0).astype(np.float64)
    theta = 0.5 * u @ table.T
    assert float(terms["likelihood"]) == pytest.approx(np.mean(_sp(theta) - s * theta), rel=1e-5)
    batch = _create("dpsh", ds, eta=0.3, pairs="batch")
    assert float(
        batch.loss_terms({"hash": tf.constant(u, tf.float32)}, tf.constant(y), True)["likelihood"]
    ) == pytest.approx(
        _pair_reference(u, y, lambda a, b, s_, i, j: _sp(0.5 * a @ b) - s_ * 0.5 * a @ b), rel=1e-5
    )
    # a fit refreshes the table every epoch and leaves no table behind
    refreshed = []
    original = m.refresh_table
    m.refresh_table = lambda split=None: refreshed.append(split is None) or original(split)
    m.fit_dataset(ds, training.TrainConfig(epochs=2, batch_size=16, lr=0.01, verbose=0))
    assert refreshed == [False, True, True] and m._table is None
    with pytest.raises(ValueError, match="pairs"):
        _create("dpsh", ds, pairs="all")


@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_dhn_terms_match_a_numpy_reference(digits, activation):
    m = _create("dhn", digits, hash_activation=activation)
    images, y = _labeled_batch(digits, m)
    logits = 3.0 * m(images)["hash"].numpy().astype(np.float64)  # larger codes: |z| around 1
    terms = {
        k: float(v)
        for k, v in m.loss_terms(
            {"hash": tf.constant(logits, tf.float32)}, tf.constant(y), False
        ).items()
    }
    z = np.tanh(logits) if activation == "tanh" else logits

    def ce(a, b, s, i, j):
        return _sp(a @ b) - s * (a @ b)

    assert terms["cross_entropy"] == pytest.approx(_pair_reference(z, y, ce), rel=1e-5)
    assert terms["quantization"] == pytest.approx(
        np.mean(np.sum(np.log(np.cosh(np.abs(z) - 1)), axis=1)), rel=1e-5
    )


def test_hashnet_terms_match_a_numpy_reference_at_the_scheduled_beta(digits):
    m = _create("hashnet", digits, bits=8)
    m.compile(optimizer=keras.optimizers.SGD(0.1))
    m.optimizer.iterations.assign(450)  # beta = (1 + 0.005 * 400)^0.5 = sqrt(3)
    images, y = _labeled_batch(digits, m)
    z = 5.0 * m(images)["hash"].numpy().astype(np.float64)
    terms = {
        k: float(v)
        for k, v in m.loss_terms(
            {"hash": tf.constant(z, tf.float32)}, tf.constant(y), False
        ).items()
    }
    beta, alpha = math.sqrt(3.0), 10.0 / 8
    assert terms["beta"] == pytest.approx(beta, rel=1e-6)
    h = np.tanh(beta * z)
    sim = [(i, j) for i in range(12) for j in range(12) if i != j and y[i] @ y[j] > 0]
    dis = [(i, j) for i in range(12) for j in range(12) if i != j and y[i] @ y[j] == 0]

    def pair(i, j, s):
        theta = alpha * h[i] @ h[j]
        return _sp(theta) - s * theta

    expected = np.mean([pair(i, j, 1.0) for i, j in sim]) + np.mean(
        [pair(i, j, 0.0) for i, j in dis]
    )
    assert terms["weighted_likelihood"] == pytest.approx(expected, rel=1e-5)


def test_ninh_loss_is_the_triplet_hinge_on_the_relaxed_codes(digits):
    m = _create("ninh", digits, bits=16)
    batch = next(iter(data.triplet_dataset(digits.train, 6, seed=2, preprocess=m.preprocessor())))
    (a, p, n), _ = batch
    h = m(tf.concat([a, p, n], 0)).numpy().astype(np.float64)
    ha, hp, hn = h[:6], h[6:12], h[12:]
    ref = np.mean(np.maximum(0.0, 1.0 - np.sum((ha - hn) ** 2, 1) + np.sum((ha - hp) ** 2, 1)))
    assert float(m.compute_loss_value(batch, training_mode=False)) == pytest.approx(ref, rel=1e-5)


def test_piecewise_threshold_is_eq_4_in_training_and_identity_at_inference():
    layer = PiecewiseThreshold(0.1)
    s = tf.constant([[0.1, 0.39, 0.4, 0.5, 0.6, 0.61, 0.95]])
    np.testing.assert_allclose(
        layer(s, training=True).numpy(), [[0.0, 0.0, 0.4, 0.5, 0.6, 1.0, 1.0]], rtol=1e-6
    )
    np.testing.assert_array_equal(layer(s, training=False).numpy(), s.numpy())
    with pytest.raises(ValueError, match="epsilon"):
        PiecewiseThreshold(0.6)


# ----------------------------------------------------------------------------- CNNH stage 1
def test_cubic_roots_match_numpy():
    rng = np.random.default_rng(0)
    out = np.empty(3)
    for _ in range(200):
        a, b, c = rng.normal(0, 3, 3)
        k = cnnh_mod._cubic_real_roots(a, b, c, out)
        expected = np.sort(
            np.roots([1.0, a, b, c]).real[np.abs(np.roots([1.0, a, b, c]).imag) < 1e-7]
        )
        assert k == len(expected) or (k == 3 and len(expected) == 1)  # near-double roots
        for r in out[:k]:
            assert abs(r**3 + a * r**2 + b * r + c) < 1e-6 * max(1.0, abs(r) ** 3)


def test_each_coordinate_step_finds_the_brute_force_minimum():
    rng = np.random.default_rng(1)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 7)]
    s = cnnh_mod.similarity_signs(labels)
    h = rng.uniform(-1, 1, (7, 3))
    for flat in rng.permutation(21)[:8]:
        i, j = divmod(int(flat), 3)
        grid = np.linspace(-1.0, 1.0, 40001)
        values = []
        for x in grid:
            trial = h.copy()
            trial[i, j] = x
            values.append(cnnh_mod.objective(s, trial))
        r = 3 * s - h @ h.T
        cnnh_mod._sweep(r, h, np.array([flat]))
        np.testing.assert_allclose(r, 3 * s - h @ h.T, atol=1e-9)  # residual kept exact
        assert cnnh_mod.objective(s, h) <= min(values) + 1e-6
        assert abs(h[i, j] - grid[int(np.argmin(values))]) < 1e-3


def test_stage1_objective_never_rises_and_its_codes_preserve_the_labels(digits):
    codes, trace = cnnh_mod.approximate_codes(digits.train.labels, 16, seed=0, sweeps=8)
    assert (
        codes.dtype == np.int8
        and codes.shape == (len(digits.train), 16)
        and set(np.unique(codes)) <= {-1, 1}
    )
    assert all(b <= a + 1e-9 for a, b in zip(trace, trace[1:]))
    assert trace[-1] < 0.8 * trace[0]
    y = digits.train.labels
    assert metrics.evaluate(codes, codes, y, y)["map"] > 0.9
    # compiled and plain loops agree
    small = y[:40]
    fast = cnnh_mod.approximate_codes(small, 6, seed=3, sweeps=3, use_numba=True)
    slow = cnnh_mod.approximate_codes(small, 6, seed=3, sweeps=3, use_numba=False)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12)


def test_cnnh_fit_runs_both_stages_and_reuses_stage1_from_the_checkpoint_dir(
    digits, tmp_path, monkeypatch
):
    ds = _small(digits, 64)
    config = training.TrainConfig(
        epochs=1, batch_size=16, lr=0.05, verbose=0, checkpoint_dir=str(tmp_path)
    )
    m = _create("cnnh", ds, bits=8, with_labels=True)
    history = m.fit_dataset(ds, config)
    assert {"stage1_objective", "loss", "codes", "classification"} <= set(history)
    assert os.path.exists(tmp_path / "cnnh_stage1.npz")
    monkeypatch.setattr(
        cnnh_mod, "approximate_codes", lambda *a, **k: pytest.fail("stage 1 ran again")
    )
    again = _create("cnnh", ds, bits=8, with_labels=True)
    h2 = again.fit_dataset(ds, config.replace(epochs=2))
    assert h2["stage1_objective"] == history["stage1_objective"]
    np.testing.assert_array_equal(again.approximate_codes, m.approximate_codes)


# ----------------------------------------------------------------------------- strategy
def test_dpsh_on_two_mirrored_devices_matches_one_device(digits):
    """9 DPSH steps (global-batch likelihood, per-sample quantization, weight decay):
    MirroredStrategy over 2 CPU devices == one device with the same global batch.

    The training split holds 3 batches, reshuffled each epoch: labeled_dataset's batches
    depend only on (seed, step), so both runs see the same global batches."""
    ds = _small(digits, 48)
    # lr 0.05: at 0.2 the loss diverges over 9 steps and rounding differences grow past 1e-5
    config = training.TrainConfig(epochs=3, batch_size=16, lr=0.05, weight_decay=1e-2, verbose=0)
    one = _create("dpsh", ds, eta=0.5)
    two = _create("dpsh", ds, eta=0.5, strategy=training.get_strategy("mirrored"))
    assert two.distribute_strategy.num_replicas_in_sync == 2
    start = [w.numpy() for w in one.weights]
    h1 = one.fit_dataset(ds, config)
    h2 = two.fit_dataset(ds, config)
    assert max(float(np.max(np.abs(w.numpy() - s))) for w, s in zip(one.weights, start)) > 1e-3
    assert (
        max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one.weights, two.weights))
        < 1e-5
    )
    for k in h1:
        assert h1[k] == pytest.approx(h2[k], rel=1e-5)


def test_interrupted_dpsh_resumes_to_the_weights_of_an_uninterrupted_run(
    digits, tmp_path, monkeypatch
):
    """The resumed run rebuilds the shuffled stream at batch epoch * steps (start_step),
    so it sees exactly the later batches of the uninterrupted run."""
    ds = _small(digits, 48)  # 3 steps per epoch, reshuffled each epoch
    config = training.TrainConfig(epochs=3, batch_size=16, lr=0.05, lr_decay_steps=4, verbose=0)
    full = _create("dpsh", ds, eta=0.5)
    h_full = full.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "a")))
    with pytest.raises(Interrupt):  # dies in the middle of epoch 2
        _create("dpsh", ds, eta=0.5).fit_dataset(
            ds, config.replace(checkpoint_dir=str(tmp_path / "b")), callbacks=[StopAt(5)]
        )
    starts = []
    build = data.labeled_dataset
    monkeypatch.setattr(
        data,
        "labeled_dataset",
        lambda *a, **k: starts.append(k.get("start_step")) or build(*a, **k),
    )
    resumed = _create("dpsh", ds, eta=0.5)
    h_resumed = resumed.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert starts == [3]  # after epoch 1's checkpoint
    assert (
        max(
            float(np.max(np.abs(a.numpy() - b.numpy())))
            for a, b in zip(full.weights, resumed.weights)
        )
        < 1e-6
    )
    assert int(resumed.optimizer.iterations.numpy()) == 9
    assert h_resumed == approx_history(h_full)


def test_hashnet_beta_follows_the_optimizer_steps(digits):
    ds = _small(digits, 64)  # 4 steps per epoch
    m = _create("hashnet", ds, beta_step=4, gamma=0.5, power=1.0)
    history = m.fit_dataset(ds, training.TrainConfig(epochs=2, batch_size=16, verbose=0))
    # epoch 1: steps 0-3 -> beta 1; epoch 2: steps 4-7 -> beta 1 + 0.5 * 4 = 3
    assert history["beta"] == pytest.approx([1.0, 3.0])


@pytest.mark.parametrize("name", ["ninh", "hashnet"])
def test_triplet_and_pairwise_baselines_train_under_the_mixed_float16_policy(digits, name):
    """The GPU mixed-precision path (forced here on CPU): loss scaling, float32 hash layers."""
    ds = _small(digits, 32)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        m = _create(name, ds)
        start = [w.numpy() for w in m.trainable_weights]
        history = m.fit_dataset(
            ds, training.TrainConfig(epochs=1, batch_size=16, lr=0.1, verbose=0)
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(m.optimizer).__name__ == "LossScaleOptimizer"
    head = m.get_layer("divide_encode" if name == "ninh" else "hash")
    assert (
        m.backbone.get_layer("conv1").compute_dtype == "float16" and head.compute_dtype == "float32"
    )
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert (
        max(float(np.max(np.abs(w.numpy() - s))) for w, s in zip(m.trainable_weights, start)) > 1e-4
    )
    assert m.encode(ds.query.images[:4]).dtype == bool


def test_train_script_writes_the_same_run_directory_as_dsrh(tmp_path, digits):
    out = tmp_path / "dhn_digits_16"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "experiments", "train.py"),
            "--method=dhn",
            "--dataset=digits",
            "--bits=16",
            "--epochs=2",
            "--batch_size=64",
            "--lr=0.05",
            f"--out={out}",
            "--verbose=0",
            "--hparams=quantization_weight=0.005",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == sorted(
        [
            "config.json",
            "split.json",
            "model.keras",
            "codes.npz",
            "history.json",
            "metrics.json",
            "pr_curve.png",
            "training_curve.png",
            "manifest.json",
        ]
    )
    assert sorted(os.listdir(tmp_path)) == ["dhn_digits_16"]
    m = json.loads((out / "metrics.json").read_text())
    assert (m["method"], m["dataset"], m["bits"], m["checksum"]) == (
        "dhn",
        "digits",
        16,
        digits.checksum,
    )
    for key in ("map", "precision_radius_2", "pr_curve", "precision_at_n", "conventions"):
        assert key in m
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hparams"]["quantization_weight"] == 0.005 and cfg["train"]["epochs"] == 2
    assert cfg["hparams"]["backbone"] == "small_cnn"
    assert set(json.loads((out / "history.json").read_text())) == {
        "loss",
        "cross_entropy",
        "quantization",
    }


# ----------------------------------------------------------------------------- learning
# digits at 32 bits, default hyper-parameters, 50 epochs of 7 steps. Random codes score ~0.1
# mAP; the UNTRAINED networks already score ~0.3 (random features of the pixels), so
# training must add more.
LEARNING = {
    "ninh": ({}, 0.1),
    "cnnh": ({}, 0.05),
    "dpsh": ({"pairs": "batch"}, 0.05),  # the table form learns more slowly in 50 short epochs
    "dhn": ({}, 0.05),
    "hashnet": ({}, 0.05),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_baseline_learns_codes_far_better_than_random_and_untrained(digits, name):
    hparams, lr = LEARNING[name]
    rng = np.random.default_rng(0)
    random_map = metrics.evaluate(
        rng.random((len(digits.query), 32)) > 0.5,
        rng.random((len(digits.database), 32)) > 0.5,
        digits.query.labels,
        digits.database.labels,
    )["map"]
    assert random_map < 0.15
    m = _create(name, digits, bits=32, **hparams)

    def score():
        return metrics.evaluate(
            m.encode(digits.query),
            m.encode(digits.database),
            digits.query.labels,
            digits.database.labels,
        )["map"]

    untrained = score()
    history = m.fit_dataset(
        digits, training.TrainConfig(epochs=50, lr=lr, lr_decay_steps=None, verbose=0)
    )
    assert history["loss"][-1] < history["loss"][0]
    trained = score()
    assert trained > 0.55 and trained > untrained + 0.2, (name, untrained, trained)


def test_deep_benchmark_reports_ratios_to_drh():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_baselines", os.path.join(REPO, "benchmarks", "baselines.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.bench_deep(["drh", "dpsh"], [64], [], 8, 0, repeats=1, epochs=2, batch_size=16)
    assert [r["method"] for r in rows] == ["drh", "dpsh"]
    ref = rows[0]
    assert ref["fit_vs_drh"] == ref["epoch_vs_drh"] == ref["encode_rate_vs_drh"] == 1.0
    assert all(r["fit_s"] > 0 and r["epoch_s"] > 0 and r["encode_images_per_s"] > 0 for r in rows)
    assert rows[1]["epoch_vs_drh"] == pytest.approx(rows[1]["epoch_s"] / ref["epoch_s"])
    assert "epoch/DRH" in bench.format_deep_table(rows)
