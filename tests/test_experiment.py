"""The experiment runner, run directories, plots, experiments/train.py and the quick start."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import deephash  # noqa: F401
from deephash import data, experiment, methods, plots, runs, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "experiments"))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _script(name, *args, timeout=300):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


TINY = training.TrainConfig(epochs=2, batch_size=32, lr=0.05, verbose=0)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "dsrh3"}, "unknown method"),
        ({"dataset": "mnist"}, "unknown dataset"),
        ({"bits": 0}, "bits"),
        ({"bits": 2.5}, "bits"),
    ],
)
def test_run_rejects_bad_arguments_before_any_work(tmp_path, kwargs, match):
    args = {
        "method": "drh",
        "dataset": "digits",
        "bits": 8,
        "config": TINY,
        "out_dir": str(tmp_path / "run"),
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        experiment.run(**args)
    assert os.listdir(tmp_path) == []


def test_run_refuses_an_existing_run_directory_without_overwrite(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="already exists"):
        experiment.run("drh", "digits", 8, TINY, str(tmp_path / "run"))
    assert os.listdir(tmp_path / "run") == ["metrics.json"]


def test_a_failing_run_leaves_no_directory_behind(tmp_path, digits, monkeypatch):
    def boom(self, dataset, config=None, callbacks=None):
        raise RuntimeError("training failed")

    monkeypatch.setattr(methods.keras_method.KerasHashingMethod, "fit_dataset", boom)
    with pytest.raises(RuntimeError, match="training failed"):
        experiment.run("drh", digits, 8, TINY, str(tmp_path / "run"))
    assert not [p for p in os.listdir(tmp_path) if not p.endswith(".ckpt")]


# ----------------------------------------------------------------------------- end to end
def test_run_writes_a_complete_run_directory(tmp_path, digits):
    out = tmp_path / "dsrh_digits_16"
    result = experiment.run(
        "dsrh", "digits", 16, TINY, str(out), hparams={"backbone": "small_cnn", "bags": 4}
    )
    files = sorted(os.listdir(out))
    assert files == sorted(
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
    assert sorted(os.listdir(tmp_path)) == ["dsrh_digits_16"]  # no temp or checkpoint dirs left

    m = json.loads((out / "metrics.json").read_text())
    for key in ("map", "precision_radius_2", "pr_curve", "precision_at_n", "conventions"):
        assert key in m
    assert (m["method"], m["dataset"], m["bits"], m["checksum"]) == (
        "dsrh",
        "digits",
        16,
        digits.checksum,
    )
    assert m["conventions"]["top_k"] is None  # digits: mAP over the whole database
    assert 0.0 <= m["map"] <= 1.0 and m["map"] == pytest.approx(result["map"])

    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["train"]["epochs"] == 2
        and cfg["hparams"]["bags"] == 4
        and cfg["hparams"]["variant"] == "dsrh"
    )
    assert cfg["hparams"]["backbone"] == "small_cnn"
    assert "tensorflow" in cfg["versions"]

    assert cfg["versions"]["deephash_source"] == runs.source_digest()[:16]
    split = json.loads((out / "split.json").read_text())
    assert split["checksum"] == digits.checksum and split["sizes"]["query"] == len(digits.query)
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2

    codes = runs.load_codes(str(out / "codes.npz"))
    model = methods.load(str(out / "model.keras"))
    np.testing.assert_array_equal(codes["query"], model.encode(digits.query))
    np.testing.assert_array_equal(codes["database"], model.encode(digits.database))
    np.testing.assert_array_equal(codes["query_labels"], digits.query.labels)
    loaded = runs.load_run(str(out))
    assert loaded["metrics"]["map"] == m["map"] and loaded["model"].endswith("model.keras")

    # overwrite replaces the directory in one rename
    again = experiment.run("drh", digits, 16, TINY.replace(epochs=1), str(out), overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["method"] == "drh" == again["method"]


def test_run_trains_shallow_methods_on_flattened_images(tmp_path, digits):
    if "lsh" not in methods.available("shallow"):
        pytest.skip("shallow methods not registered")
    result = experiment.run("lsh", digits, 16, TINY, str(tmp_path / "lsh"))
    assert os.path.exists(tmp_path / "lsh" / "model.npz") and 0.0 <= result["map"] <= 1.0
    assert not os.path.exists(tmp_path / "lsh" / "training_curve.png")


def test_run_fits_shallow_methods_on_a_feature_directory(tmp_path, digits):
    if "lsh" not in methods.available("shallow"):
        pytest.skip("shallow methods not registered")
    from deephash import features

    feat_dir = features.save_features(digits, str(tmp_path / "feat"))  # raw pixels as features
    result = experiment.run("lsh", "digits", 16, TINY, str(tmp_path / "run"), features=feat_dir)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["features"] == feat_dir
    assert result["checksum"] == digits.checksum
    with pytest.raises(ValueError, match="shallow"):
        experiment.run("drh", "digits", 16, TINY, None, features=feat_dir)
    other = features.save_features(data.load("digits", seed=1), str(tmp_path / "feat1"))
    with pytest.raises(ValueError, match="split"):
        experiment.run("lsh", "digits", 16, TINY, None, features=other)


def test_checkpoints_of_other_settings_stop_the_run_unless_overwrite_checkpoints(tmp_path, digits):
    ckpt = tmp_path / "ckpt"
    config = TINY.replace(checkpoint_dir=str(ckpt), epochs=1)
    experiment.run("drh", digits, 8, config, None)
    assert training.latest_checkpoint(str(ckpt)).endswith("ckpt-1.npz")
    # other settings: an error naming the directory and the difference, nothing deleted
    with pytest.raises(
        ValueError, match=r"ckpt.*other settings \(bits: 8 -> 16.*overwrite_checkpoints"
    ):
        experiment.run("drh", digits, 16, config, None)
    assert training.latest_checkpoint(str(ckpt)).endswith("ckpt-1.npz")
    # the explicit flag discards them (only the library's files)
    (ckpt / "notes.txt").write_text("mine")
    experiment._prepare_checkpoints(str(ckpt), {"other": "settings"}, overwrite=True)
    assert (
        training.latest_checkpoint(str(ckpt)) is None and (ckpt / "notes.txt").read_text() == "mine"
    )


def test_plots_write_png_files(tmp_path):
    curve = {"precision": [1.0, 0.8, 0.5], "recall": [0.1, 0.4, 1.0]}
    for path in (
        plots.pr_curve(curve, str(tmp_path / "a.png")),
        plots.pr_curve({"x": curve, "y": curve}, str(tmp_path / "b.png")),
        plots.training_curves(
            {"loss": [3, 2, 1], "triplet": [1, 0.5, 0.2]}, str(tmp_path / "c.png")
        ),
        plots.metric_vs_bits(
            {"dsrh": {16: 0.5, 32: 0.6}, "drh": {"16": 0.4, "32": 0.5}}, str(tmp_path / "d.png")
        ),
    ):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plots.training_curves({}, str(tmp_path / "e.png"))
    with pytest.raises(ValueError):
        plots.pr_curve({"precision": [1.0], "recall": [0.1, 0.2]}, str(tmp_path / "f.png"))


def test_training_curve_draws_the_chance_level_in_the_validation_subplot(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig) or path)
    plots.training_curves(
        {"loss": [3, 2, 1, 0.5], "val_map": [0.4, 0.6]},
        str(tmp_path / "c.png"),
        epochs={"val_map": [2, 4]},
        best_epoch=4,
        levels={"val_map": (0.372, "learned nothing 0.372")},
    )
    loss_ax, val_ax = figures[0].axes
    flat = [ln for ln in val_ax.get_lines() if ln.get_label() == "learned nothing 0.372"]
    assert len(flat) == 1 and list(flat[0].get_ydata()) == [0.372, 0.372]
    assert not [ln for ln in loss_ax.get_lines() if ln.get_label().startswith("learned")]


def test_format_table_lists_every_run(digits):
    rows = [
        {
            "method": "dsrh",
            "dataset": "digits",
            "bits": 32,
            "map": 0.81234,
            "precision_radius_2": 0.7,
            "conventions": {"top_k": None},
            "checksum": digits.checksum,
        }
    ]
    table = experiment.format_table(rows)
    assert (
        "dsrh" in table and "0.8123" in table and digits.checksum[:12] in table and "all" in table
    )


# ----------------------------------------------------------------------------- scripts
def test_train_flags_are_validated_in_process(tmp_path):
    from _helpers import script_module

    with script_module(
        os.path.join(REPO, "experiments", "train.py"), "train_under_test"
    ) as train_script:
        _check_train_build(train_script, tmp_path)


def _check_train_build(train_script, tmp_path):
    class F:  # the flag values train.build reads
        method, dataset, bits, out, overwrite, hparams = (
            "dsrh",
            "digits",
            32,
            str(tmp_path / "r"),
            False,
            "bags=3,augment=true",
        )
        backbone, weights, ortho_weight, epochs, batch_size, lr = (
            "small_cnn",
            None,
            "auto",
            1,
            64,
            0.01,
        )
        momentum, weight_decay, lr_decay_steps, lr_decay_rate = 0.9, 2e-4, 0, 0.1
        strategy, seed, mixed_precision, checkpoint_dir, verbose = "default", 0, False, None, 0
        num_devices = 0
        preset = paper = features = root = patience = validation_every = validation_fraction = None

    run = train_script.build(F)
    assert (run.method, run.dataset, run.bits) == ("dsrh", "digits", 32)
    assert run.config.lr_decay_steps is None and run.out == F.out and run.features is None
    assert run.hparams == {
        "bags": 3,
        "augment": True,
        "backbone": "small_cnn",
        "ortho_weight": "auto",
        "margin": 4.0,  # the quick preset's validated margin (1/8 per bit, DRH's choice)
    }
    for attr, value, match in [
        ("method", "nope", "unknown method"),
        ("dataset", "nope", "unknown dataset"),
        ("bits", 0, "bits"),
        ("ortho_weight", "lots", "ortho_weight"),
        ("hparams", "bags", "key=value"),
        ("weights", "/no/such.h5", "weights"),
        ("bits", 100000, "at most 4096 bits"),
        ("backbone", "resnet", "unknown --backbone"),
        ("features", "gist", "shallow methods"),
        ("num_devices", -1, "num_devices"),
        ("out", str(tmp_path / "file" / "run"), "is a file"),
    ]:
        (tmp_path / "file").write_text("")
        bad = type("B", (F,), {attr: value})
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            train_script.build(bad)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("")
    with pytest.raises(ValueError, match="already exists"):
        train_script.build(F)


def test_train_script_stops_bad_flags_with_one_line(tmp_path):
    out = _script("train.py", "--method=nope", f"--out={tmp_path / 'r'}")
    assert out.returncode != 0
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: unknown method 'nope'")
    assert "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.slow
def test_train_script_runs_mirrored_over_two_devices_with_auto_lambda(tmp_path):
    out = _script(
        "train.py",
        "--method=drh+",
        "--dataset=digits",
        "--bits=8",
        "--epochs=1",
        "--batch_size=64",
        "--strategy=mirrored",
        "--num_devices=2",
        "--ortho_weight=auto",
        "--verbose=0",
        "--hparams=bags=4",
        f"--out={tmp_path / 'run'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "drh+" in out.stdout and "run directory" in out.stdout
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    sel = m["hparam_selection"]["ortho_weight"]
    assert (
        set(sel["validation_map"]) == {repr(g) for g in sel["grid"]}
        and sel["chosen"] in sel["grid"]
    )
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (
        cfg["train"]["strategy"] == "mirrored" and cfg["hparams"]["ortho_weight"] == sel["chosen"]
    )


@pytest.mark.slow
def test_quickstart_smoke(tmp_path):
    out = _script("quickstart.py", "--epochs=1", f"--out={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    for method in ("dsrh", "drh", "drh+"):
        assert method in out.stdout
    for name in ("dsrh_digits_32", "drh_digits_32", "drh_plus_digits_32"):
        assert os.path.exists(tmp_path / name / "pr_curve.png")
        assert str(tmp_path / name / "pr_curve.png") in out.stdout
