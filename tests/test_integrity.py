"""Nothing lost, nothing silently wrong (issue 12): checkpoint directories the library did not
create, one writer per run directory, diverged runs, damaged checkpoints / codes / models /
JSON, run manifests checked by the report and the sweep, strict JSON, encoding without
retracing, file permissions and stale staging directories."""

import dataclasses
import io as _io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _helpers import approx_history

import deephash  # noqa: F401
from deephash import (
    checkpoints,
    data,
    experiment,
    io,
    methods,
    presets,
    report,
    runs,
    sweep,
    training,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = training.TrainConfig(epochs=1, batch_size=32, lr=0.05, verbose=0)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def small(digits):
    """digits with 64 training images (2 steps of 32 per epoch)."""
    return dataclasses.replace(digits, train=digits.train.subset(np.arange(64)))


# --------------------------------------------------------------------------- 1. checkpoint dirs
def test_a_checkpoint_dir_the_library_did_not_create_is_never_deleted(tmp_path, small):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("precious")
    for flag in (False, True):
        with pytest.raises(ValueError, match=r"victim.*not a deephash checkpoint directory"):
            experiment.run(
                "drh",
                small,
                8,
                TINY.replace(checkpoint_dir=str(victim)),
                str(tmp_path / "v"),
                overwrite_checkpoints=flag,
            )
        assert (victim / "notes.txt").read_text() == "precious" and (victim / "sub").is_dir()
    assert not (tmp_path / "v").exists()


def test_a_damaged_run_json_keeps_intact_checkpoints(tmp_path):
    ckpt = tmp_path / "ckpt"
    fingerprint = {"method": "drh", "config": {"lr": 0.02}}
    experiment._prepare_checkpoints(str(ckpt), fingerprint)
    (ckpt / "ckpt-3.npz").write_bytes(b"weights")
    (ckpt / "run.json").write_text('{"key": "abc", "sett')  # damaged
    with pytest.raises(ValueError, match=r"run.json is damaged.*Nothing was deleted"):
        experiment._prepare_checkpoints(str(ckpt), fingerprint)
    assert (ckpt / "ckpt-3.npz").read_bytes() == b"weights"


def test_removing_a_finished_runs_checkpoints_takes_every_library_file_and_nothing_else(tmp_path):
    ckpt = tmp_path / "ckpt"
    checkpoints.prepare(str(ckpt), {"method": "drh"})
    for name in (
        "ckpt-2.npz",
        "ckpt-3.npz",
        "best-4.npz",
        "cnnh_stage1.npz",
        "ckpt-3.npz.abcd1234.tmp",
    ):
        (ckpt / name).write_bytes(b"x")
    (ckpt / "notes.txt").write_text("mine")
    assert "best-4.npz" in checkpoints.library_files(str(ckpt))  # early stopping's best weights
    checkpoints.remove(str(ckpt))
    assert sorted(os.listdir(ckpt)) == ["notes.txt"]
    (ckpt / "notes.txt").unlink()
    checkpoints.prepare(str(ckpt), {"method": "drh"})
    (ckpt / "best-1.npz").write_bytes(b"x")
    checkpoints.remove(str(ckpt))
    assert not ckpt.exists()  # only the library's files were there: the directory goes too


def test_checkpoint_settings_differences_are_named():
    text = checkpoints.differences(
        {"bits": 16, "config": {"lr": 0.02, "seed": 0}},
        {"bits": 16, "config": {"lr": 0.05, "seed": 0}, "extra": 1},
    )
    assert text == "config.lr: 0.02 -> 0.05, extra: '<unset>' -> 1"


# --------------------------------------------------------------------------- 2. one writer
def _hold_lock(directory):
    """A child process holding ``directory``'s lock until killed."""
    code = (
        "import sys, time; from deephash import runs; runs.DirectoryLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(120)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_of_a_run_directory_fails_at_once_and_kill_9_leaves_no_stale_lock(
    tmp_path, small
):
    out = tmp_path / "conc" / "mix"
    child = _hold_lock(out)
    try:
        t0 = time.perf_counter()
        with pytest.raises(
            runs.DirectoryLockedError,
            match=rf"run directory .*mix.* in use by another run \(process {child.pid}\)",
        ):
            experiment.run("drh", small, 8, TINY, str(out))
        assert time.perf_counter() - t0 < 5  # at once, before any training
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with runs.DirectoryLock(out):  # the kernel released the killed holder's lock
        pass


def test_a_shared_checkpoint_directory_is_locked_too(tmp_path, small):
    ckpt = tmp_path / "shared_ckpt"
    child = _hold_lock(ckpt)
    try:
        with pytest.raises(runs.DirectoryLockedError, match="checkpoint directory .*shared_ckpt"):
            experiment.run(
                "drh", small, 8, TINY.replace(checkpoint_dir=str(ckpt)), str(tmp_path / "b")
            )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not (tmp_path / "b").exists()


def test_directory_lock_is_exclusive_within_and_across_objects(tmp_path):
    a = runs.DirectoryLock(tmp_path / "x").acquire()
    runs.DirectoryLock(tmp_path / "x").acquire()  # same process: reentrant no-op
    a.release()
    assert not os.path.exists(runs.lock_path(tmp_path / "x"))


# ------------------------------------------------------------------- 4. diverged runs, strict JSON
def test_a_diverged_run_stops_with_an_error_and_writes_nothing(tmp_path, small):
    out, ckpt = tmp_path / "nan", tmp_path / "nan_ckpt"
    with pytest.raises(
        training.NonFiniteLossError, match="training diverged: .* is nan after epoch 1"
    ):
        experiment.run("drh", small, 8, TINY.replace(lr=1e30, checkpoint_dir=str(ckpt)), str(out))
    assert not out.exists()
    assert training.latest_checkpoint(str(ckpt)) is None  # a NaN model is never checkpointed


def test_non_finite_histories_and_checkpoints_are_refused(tmp_path):
    with pytest.raises(training.NonFiniteLossError, match=r"loss is inf .*\(entry 2\)"):
        training.check_finite({"loss": [1.0, float("inf")]}, "in the history")
    training.check_finite({"loss": [1.0, 0.5]}, "in the history")


def test_json_is_strict(tmp_path):
    path = tmp_path / "h.json"
    with pytest.raises(
        ValueError, match=r"h.json: refusing to write a non-finite number at \['loss'\]\[1\]"
    ):
        io.write_json(path, {"loss": [1.0, np.float32("nan")]})
    assert not path.exists()
    (tmp_path / "nan.json").write_text('{"map": NaN}')
    with pytest.raises(runs.CorruptRunError, match="nan.json.*NaN"):
        runs.read_json(str(tmp_path / "nan.json"))


# --------------------------------------------------------------------------- 7. damaged files
def _trained(small, ckpt, epochs):
    model = methods.create("drh", bits=8, dataset=small, backbone="small_cnn")
    return model, model.fit_dataset(small, TINY.replace(epochs=epochs, checkpoint_dir=str(ckpt)))


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, small, damage, caplog
):
    ckpt = tmp_path / "ckpt"
    _, history = _trained(small, ckpt, 2)
    assert sorted(os.listdir(ckpt)) == ["ckpt-1.npz", "ckpt-2.npz"]  # the previous one is kept
    latest = ckpt / "ckpt-2.npz"
    raw = latest.read_bytes()
    latest.write_bytes(
        {
            "truncate": raw[: len(raw) // 2],
            "empty": b"",
            "flip": raw[:200] + bytes([raw[200] ^ 0x10]) + raw[201:],
        }[damage]
    )
    model = methods.create("drh", bits=8, dataset=small, backbone="small_cnn")
    model.compile(optimizer=training.make_optimizer(TINY))
    with caplog.at_level(logging.WARNING):
        done, resumed = training.resume(model, str(ckpt))
    assert done == 1 and resumed == approx_history({k: v[:1] for k, v in history.items()})
    assert "ckpt-2.npz: damaged checkpoint" in caplog.text
    (ckpt / "ckpt-1.npz").write_bytes(b"")
    with pytest.raises(
        training.CorruptCheckpointError, match=r"no readable checkpoint .*ckpt-2.npz.*ckpt-1.npz"
    ):
        training.resume(model, str(ckpt))


def test_damaged_codes_model_and_json_files_are_named(tmp_path, small):
    r = experiment.run("drh", small, 8, TINY, str(tmp_path / "run"))
    run_dir = r["run_dir"]
    for name in ("codes.npz", "model.keras"):
        p = os.path.join(run_dir, name)
        raw = open(p, "rb").read()
        with open(p, "wb") as f:
            f.write(raw[: len(raw) // 3])
    with pytest.raises(runs.CorruptRunError, match=r"codes.npz: damaged codes file"):
        runs.load_codes(os.path.join(run_dir, "codes.npz"))
    with pytest.raises(ValueError, match=r"model.keras.*damaged or not a deephash model"):
        methods.load(os.path.join(run_dir, "model.keras"))
    with open(os.path.join(run_dir, "history.json"), "w") as f:
        f.write('{"loss": [0.5,')
    with pytest.raises(runs.CorruptRunError, match="history.json"):
        runs.load_run(run_dir)


# --------------------------------------------------------------------------- 6. manifests
def test_a_run_directory_has_a_manifest_and_a_tampered_file_is_reported(tmp_path, small):
    run_dir = experiment.run("drh", small, 8, TINY, str(tmp_path / "run"))["run_dir"]
    manifest = json.loads(open(os.path.join(run_dir, "manifest.json")).read())["files"]
    assert {"config.json", "metrics.json", "codes.npz", "model.keras", "history.json"} <= set(
        manifest
    )
    assert runs.load_run(run_dir)["verified"] is True
    mode = os.stat(os.path.join(run_dir, "model.keras")).st_mode & 0o777  # 9: like every other file
    assert mode == os.stat(os.path.join(run_dir, "metrics.json")).st_mode & 0o777
    _tamper(os.path.join(run_dir, "metrics.json"))
    with pytest.raises(runs.CorruptRunError, match="metrics.json: content differs from the sha256"):
        runs.load_run(run_dir)


def _tamper(path):
    m = json.loads(open(path).read())
    m["map"] = round(m["map"] + 0.1, 4)  # a "bit flip" that still parses
    with open(path, "w") as f:
        json.dump(m, f, indent=2)


def test_the_report_skips_damaged_run_directories_and_says_why(tmp_path, digits):
    good = experiment.run("lsh", digits, 8, TINY, str(tmp_path / "runs" / "good"))["run_dir"]
    bad = experiment.run("lsh", digits, 16, TINY, str(tmp_path / "runs" / "tampered"))["run_dir"]
    broken = experiment.run("lsh", digits, 32, TINY, str(tmp_path / "runs" / "broken"))["run_dir"]
    _tamper(os.path.join(bad, "metrics.json"))
    with open(os.path.join(broken, "config.json"), "w") as f:
        f.write("{")
    rep = report.write_report(
        [str(tmp_path / "runs")], str(tmp_path / "rep"), paper=None, plots=False
    )
    skipped = dict(rep["skipped"])
    assert set(skipped) == {bad, broken}
    assert "metrics.json: content differs" in skipped[bad] and "config.json" in skipped[broken]
    header, rows = rep["tables"][("digits", "map")]
    assert (
        header == ["method", "source", "8 bits"] and len(rows) == 1
    )  # only the good run is tabulated
    assert "## skipped run directories" in rep["markdown"] and "tampered" in rep["markdown"]
    assert good


def test_the_sweep_never_reuses_a_tampered_run(tmp_path, digits, caplog):
    spec = presets.spec("lsh", "digits", 16, preset="quick", paper="dsrh", seed=0)
    first = sweep.run_spec(spec, str(tmp_path))
    honest = first["metrics"]["map"]
    assert sweep.run_spec(spec, str(tmp_path))["reused"]
    _tamper(os.path.join(first["run_dir"], "metrics.json"))
    with caplog.at_level(logging.INFO, logger="deephash.sweep"):
        again = sweep.run_spec(spec, str(tmp_path))
    assert not again["reused"] and again["metrics"]["map"] == pytest.approx(honest)
    logs = [r.getMessage() for r in caplog.records if r.name == "deephash.sweep"]
    assert any("damaged" in line and "metrics.json" in line for line in logs)
    assert runs.load_run(again["run_dir"])["metrics"]["map"] == pytest.approx(honest)


# --------------------------------------------------------------- 8., 9. early checks, housekeeping
def test_early_checks_before_any_training(tmp_path, small):
    with pytest.raises(ValueError, match="batch_size 1000 is larger than the training set"):
        experiment.run("drh", small, 8, TINY.replace(batch_size=1000), str(tmp_path / "a"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        experiment.run("lsh", small, 8, TINY, str(tmp_path / "file" / "run"))
    with pytest.raises(ValueError, match="at most 4096 bits"):
        experiment.run("lsh", small, 100000, TINY, str(tmp_path / "b"))
    with pytest.raises(ValueError, match="unknown hyper-parameter 'foo'"):
        methods.create("lsh", bits=8, dataset=small, foo=1)


def test_stale_staging_directories_of_a_killed_run_are_removed(tmp_path, digits):
    stale = tmp_path / ".run.ab12cd_9.tmp"
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")
    other = tmp_path / ".run.x.ab12cd_9.tmp"  # another run directory's ("run.x") staging directory
    other.mkdir()
    experiment.run("lsh", digits, 8, TINY, str(tmp_path / "run"))
    assert not stale.exists() and other.exists()
    assert sorted(os.listdir(tmp_path)) == [
        ".run.x.ab12cd_9.tmp",
        "run",
    ]  # no lock file left either


def test_train_script_reports_runtime_errors_in_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "experiments", "train.py"),
            "--method=drh",
            "--hparams=foo=1",
            "--epochs=1",
            f"--out={tmp_path / 'r'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: drh: unknown hyper-parameter")


def test_train_script_verifies_list_file_images_before_training(tmp_path):
    from PIL import Image

    root = tmp_path / "in100"
    rng = np.random.default_rng(0)
    lines = {"database.txt": [], "test.txt": []}
    for i in range(120):
        rel = f"images/{i:03d}.jpg"
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(
            root / rel, quality=95
        )
        label = " ".join("1" if c == i % 100 else "0" for c in range(100))
        lines["test.txt" if i >= 100 else "database.txt"].append(f"{rel} {label}")
    for name, rows in {**lines, "train.txt": lines["database.txt"][:50]}.items():
        (root / name).write_text("\n".join(rows) + "\n")
    bad = root / "images" / "007.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "experiments", "train.py"),
            "--method=drh",
            "--dataset=imagenet100",
            f"--root={root}",
            "--bits=8",
            "--epochs=1",
            "--batch_size=8",
            "--verbose=0",
            f"--out={tmp_path / 'r'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "007.jpg" in last
    assert (
        not (tmp_path / "r").exists() and not (tmp_path / ".r.ckpt").exists()
    )  # stopped before training


# ------------------------------------------------------------------ 11. encoding without retracing
def test_encoding_many_models_does_not_retrace(small, digits):
    stream = _io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tensorflow")
    for lam in (
        0.0,
        0.05,
        0.25,
    ):  # what ortho_weight="auto" does: fit, encode validation and training items
        model = methods.create(
            "dsrh", bits=8, dataset=small, backbone="small_cnn", ortho_weight=lam
        )
        model.fit_dataset(small, TINY)
        logger.addHandler(handler)  # TensorFlow's warnings while encoding (not training)
        try:
            model.encode(digits.query.images[:50])
            codes = model.encode(digits.train)
        finally:
            logger.removeHandler(handler)
    logger.addHandler(handler)
    try:  # TensorFlow counts traces per code object: many models, one trace each, is no retracing
        for _ in range(8):
            methods.create("dsrh", bits=8, dataset=small, backbone="small_cnn").encode(
                digits.query.images[:50]
            )
    finally:
        logger.removeHandler(handler)
    assert "retracing" not in stream.getvalue()
    whole = model.relaxed_codes(digits.train)
    parts = np.concatenate(
        [model.relaxed_codes(digits.train.images[i : i + 100]) for i in range(0, 500, 100)]
    )
    np.testing.assert_allclose(whole, parts, atol=1e-6)
    assert codes.shape == (500, 8) and codes.dtype == bool


# ------------------------------------------------------------------------- 10. version-proof tests
def test_approx_history_compares_lists_per_metric():
    assert {"loss": [1.0, 0.5]} == approx_history({"loss": [1.0 + 1e-9, 0.5]})
    assert {"loss": [1.0, 0.5]} != approx_history({"loss": [1.0, 0.6]})
    assert {"loss": [1.0]} != approx_history({"loss": [1.0], "triplet": [1.0]})
