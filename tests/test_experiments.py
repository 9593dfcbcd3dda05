"""Experiments (issue 8): published numbers, presets, the sweep, the report command and the
experiment scripts in their smallest settings (tiny epochs, one or two code lengths, few
methods); outputs are checked: tables parse, plots are PNGs, values lie in [0, 1]."""

import contextlib
import csv
import json
import logging
import os
import subprocess
import sys

import pytest

from deephash import presets, published, report, sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"


def _run(args, timeout=400):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


def _script(name, *args, timeout=400):
    return _run([os.path.join(REPO, "experiments", name), *args], timeout=timeout)


@contextlib.contextmanager
def logged(name="deephash.sweep"):
    """The messages logged to ``name`` (INFO and above) during the block."""
    notes = []

    class Collect(logging.Handler):
        def emit(self, record):
            notes.append(record.getMessage())

    logger, handler = logging.getLogger(name), Collect()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _check_unit_table(path, methods, bits):
    rows = _csv(path)
    assert rows[0] == ["method", "source", *map(str, bits)]
    ours = {r[0]: r[2:] for r in rows[1:] if r[1] == "this run"}
    assert sorted(ours) == sorted(methods)
    for values in ours.values():
        assert len(values) == len(bits)
        assert all(0.0 <= float(v) <= 1.0 for v in values)
    for r in rows[1:]:
        assert r[1] == "this run" or r[1].startswith("paper (")
        assert all(v == "" or 0.0 <= float(v) <= 1.0 for v in r[2:])
    return rows


def _check_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == PNG


# ----------------------------------------------------------------------------- published numbers
def test_published_tables_load_and_hold_the_design_numbers():
    assert {"dseh_table1", "dseh_table2", "dsrh_text"} <= set(published.available())
    assert published.value("dseh_table1", "nuswide21", "dseh", 32) == 0.7312
    assert published.value("dseh_table1", "imagenet100", "hashnet", 16) == 0.3260
    assert published.value("dseh_table1", "coco", "dseh", 64) == 0.6188
    assert published.value("dsrh_text", "nuswide21", "dsrh", 48, "map") == 0.8761
    assert published.value("dsrh_text", "nuswide21", "dsrh", 48, "precision_radius_2") == 0.7359
    assert published.value("dsrh_text", "cifar10", "dsrh", 32, "precision_radius_2") == 0.7857
    assert published.value("dsrh_text", "cifar10", "dsrh", 48, "precision_radius_2") == 0.7917
    assert published.value("dseh_table2", "nuswide21", "dseh-ss", 32, "n_h") == 1164


def test_every_dseh_table1_cell_is_a_number_in_range_or_marked_not_transcribed():
    recs = published.records("dseh_table1")
    methods = set(presets.DSEH_TABLE1_METHODS)
    assert {r.method for r in recs} == methods
    assert len(recs) == 3 * len(methods) * 4  # 3 data sets x methods x 4 code lengths
    for r in recs:
        assert r.bits in (16, 32, 48, 64) and r.metric == "map"
        if r.value is None:
            assert r.method not in ("dseh", "hashnet") and "not transcribed" in r.note
        else:
            assert 0.0 < r.value < 1.0


def test_published_lookup_errors_and_stand_ins():
    with pytest.raises(FileNotFoundError, match="no published table"):
        published.load("dseh_table9")
    with pytest.raises(KeyError):
        published.value("dseh_table1", "nuswide21", "dseh", 24)
    with pytest.raises(ValueError, match="unknown paper"):
        published.reference_dataset("digits", "dpsh")
    assert published.reference_dataset("digits", "dsrh") == "cifar10"
    assert published.reference_dataset("digits", "dseh") == "imagenet100"
    assert published.reference_dataset("digits_multi", "dseh") == "nuswide21"
    assert published.reference_dataset("coco", "dseh") == "coco"
    assert published.reference_dataset("coco", "dsrh") is None
    improvements = published.relative_improvements("cifar10")
    assert {(r["over"], r["low"], r["high"]) for r in improvements} >= {
        ("ksh", 1.321, 1.795),
        ("ninh", 0.338, 0.416),
    }


# ----------------------------------------------------------------------------- presets
def test_presets_give_the_papers_settings_and_reject_bad_requests():
    s = presets.spec("dsrh", "cifar10", 48, preset="paper", paper="dsrh")
    c = s.config
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay, c.lr_decay_steps, c.lr_decay_rate) == (
        64,
        0.01,
        0.9,
        2e-4,
        5000,
        0.1,
    )
    assert s.hparams == {"backbone": "vgg19", "bags": 30, "ortho_weight": 0.25}
    assert presets.spec("drh", "nuswide21", 48, preset="paper").config.lr_decay_steps == 20000
    d = presets.spec("dseh", "nuswide21", 32, preset="paper", paper="dseh")
    assert d.dataset_options == {"map_depth": 5000} and d.config.batch_size == 128
    assert d.hparams["labnet_batch_size"] == 32 and d.hparams["backbone"] == "cnn_f"
    assert (
        presets.spec("dseh", "imagenet100", 32, preset="paper", paper="dseh").hparams[
            "positive_similarity"
        ]
        == 5.0
    )
    assert presets.spec("dseh", "nuswide21", 32, preset="paper", paper="dsrh").dataset_options == {}
    q = presets.spec("ksh", "digits", 16, epochs=3)
    assert q.features is None and q.hparams["n_anchors"] == 150
    assert (
        presets.spec("itq", "cifar10", 32, preset="paper").features == "gist"
    )  # DSRH's GIST, cached
    with pytest.raises(ValueError, match="--features.*--features=gist"):
        presets.spec("itq", "cifar10", 32, preset="paper", paper="dseh")
    with pytest.raises(ValueError, match="unknown preset"):
        presets.spec("itq", "digits", 32, preset="fast")
    with pytest.raises(ValueError, match="unknown method"):
        presets.spec("nosuch", "digits", 32)


def test_experiment_config_is_one_frozen_validated_object():
    import dataclasses

    from deephash.experiment_config import ExperimentConfig, from_settings

    cfg = ExperimentConfig(seeds=[0, 2], hparams={"DSRH": {"bags": 3}}, epochs=2, lr=1)
    assert cfg.seeds == (0, 2) and cfg.lr == 1.0 and cfg.method_hparams("dsrh") == {"bags": 3}
    assert cfg.method_hparams("itq") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.preset = "paper"
    assert cfg.replace(preset="paper").preset == "paper" and cfg.preset == "quick"
    for bad, match in (
        ({"preset": "fast"}, "unknown preset"),
        ({"paper": "dpsh"}, "unknown paper"),
        ({"reuse": "never"}, "reuse must be one of"),
        ({"seeds": (0, -1)}, "seeds"),
        ({"epochs": 0}, "epochs"),
    ):
        with pytest.raises(ValueError, match=match):
            ExperimentConfig(**bad)
    assert from_settings(cfg, {"preset": "paper"}).preset == "paper"
    with pytest.raises(TypeError, match="nosuch"):
        from_settings(None, {"nosuch": 1})
    # passed whole: the spec of a config equals the spec of its settings as keywords
    paper = ExperimentConfig(preset="paper", paper="dseh", epochs=3, lr=0.001)
    by_object = presets.spec("dseh", "nuswide21", 32, paper, seed=1)
    by_keywords = presets.spec(
        "dseh", "nuswide21", 32, preset="paper", paper="dseh", epochs=3, lr=0.001, seed=1
    )
    assert by_object.request() == by_keywords.request()
    assert presets.spec("dsrh", "digits", 32, cfg).hparams["bags"] == 3  # the method's hparams


def test_presets_decide_by_the_protocol():
    from deephash import data

    assert presets.multilabel("digits") is False and presets.multilabel("nuswide21") is True
    assert presets.multilabel("unknown_set") is None
    for name in ("digits", "digits_multi"):
        ds = data.load(name)
        assert presets.multilabel(ds) == ds.protocol.multilabel == data.multilabel(name)
    expected = {"cifar10": False, "nuswide21": True, "imagenet100": False, "coco": True}
    assert {name: data.multilabel(name) for name in expected} == expected
    with pytest.raises(ValueError, match="unknown data set"):
        data.multilabel("unknown_set")


# ----------------------------------------------------------------------------- sweep + report
@pytest.fixture(scope="module")
def shallow_runs(tmp_path_factory):
    runs_dir = str(tmp_path_factory.mktemp("runs"))
    experiment = presets.ExperimentConfig(runs_dir=runs_dir, allow_missing=True)
    with logged() as notes:
        records = sweep.run_grid(["lsh", "nosuch", "itq"], "digits", [8, 16], experiment)
    return runs_dir, records, notes


def test_sweep_runs_the_grid_and_reuses_finished_runs(shallow_runs):
    from deephash import runs

    runs_dir, records, notes = shallow_runs
    assert [(r["spec"].method, r["spec"].bits) for r in records] == [
        ("lsh", 8),
        ("lsh", 16),
        ("itq", 8),
        ("itq", 16),
    ]
    assert not any(r["reused"] for r in records)
    assert any("'nosuch' is not registered" in n for n in notes)
    with logged() as notes:
        again = sweep.run_grid(["lsh", "itq"], "digits", [8, 16], runs_dir=runs_dir)
    assert all(r["reused"] for r in again) and len(notes) == 4
    assert [r["run_dir"] for r in again] == [r["run_dir"] for r in records]
    assert [r["metrics"]["map"] for r in again] == pytest.approx(
        [r["metrics"]["map"] for r in records]
    )
    # a different request gets its own directory; a tampered one is refused, not overwritten
    other = presets.spec("lsh", "digits", 8, seed=1)
    assert sweep.run_dir_for(runs_dir, other) != records[0]["run_dir"]
    with open(os.path.join(records[0]["run_dir"], "request.json"), "w") as f:
        json.dump({"method": "lsh"}, f)
    runs.write_manifest(
        records[0]["run_dir"]
    )  # a consistent directory of another request (hand edits without
    # a new manifest are retrained: test_integrity.py::test_the_sweep_never_reuses_a_tampered_run)
    with pytest.raises(ValueError, match="different settings"):
        sweep.run_grid(["lsh"], "digits", [8], runs_dir=runs_dir)


def test_sweep_notes_or_retrains_runs_trained_by_other_library_code(tmp_path):
    from deephash import runs

    runs_dir = str(tmp_path / "runs")
    first = sweep.run_grid(["lsh"], "digits", [8, 16], runs_dir=runs_dir)
    current = runs.source_digest()[:16]
    for r in first:
        assert sweep.trained_by(r["run_dir"]) == current
    # pretend the 8-bit run came from other code
    cfg_path = os.path.join(first[0]["run_dir"], "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["versions"]["deephash_source"] = "0123456789abcdef"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    runs.write_manifest(first[0]["run_dir"])  # as that other code would have written it
    with logged() as notes:
        again = sweep.run_grid(["lsh"], "digits", [8, 16], runs_dir=runs_dir)
    assert [r["reused"] for r in again] == [True, True]
    assert sum("trained by other library code" in n and "0123456789abcdef" in n for n in notes) == 1
    same_code = presets.ExperimentConfig(runs_dir=runs_dir, reuse="same_code")
    with logged() as notes:
        fresh = sweep.run_grid(["lsh"], "digits", [8, 16], same_code)
    assert [r["reused"] for r in fresh] == [False, True]
    assert fresh[0]["run_dir"] == first[0]["run_dir"]
    assert sweep.trained_by(fresh[0]["run_dir"]) == current
    assert any(n.strip().startswith("retrain") for n in notes)
    assert sorted(os.listdir(os.path.dirname(first[0]["run_dir"]))) == sorted(
        os.path.basename(r["run_dir"]) for r in first
    )  # replaced in place, no leftovers
    with pytest.raises(ValueError, match="reuse must be one of"):
        sweep.run_grid(["lsh"], "digits", [8], runs_dir=runs_dir, reuse="never")


def test_parallel_sweep_trains_in_workers_records_their_threads_and_keeps_spec_order(
    shallow_runs, tmp_path
):
    _, in_process, _ = shallow_runs
    runs_dir = str(tmp_path / "runs")
    experiment = presets.ExperimentConfig(runs_dir=runs_dir)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with sweep.parallel(2, threads=1):
        with logged() as notes:
            records = sweep.run_grid(["lsh", "itq"], "digits", [8, 16], experiment)
        with logged() as again_notes:
            again = sweep.run_grid(["lsh", "itq"], "digits", [8, 16], experiment)
        with pytest.raises(Exception, match="a_file"):  # a worker's failure reaches the caller
            sweep.train_specs([(presets.spec("lsh", "digits", 8), str(blocker / "run"))])
    assert [(r["spec"].method, r["spec"].bits) for r in records] == [
        (r["spec"].method, r["spec"].bits) for r in in_process
    ]
    assert sum("worker" in n and n.strip().startswith("trained") for n in notes) == 4
    # LSH is the same in any process; ITQ's SVD may round differently with another BLAS
    # thread count, which config.json records
    assert records[0]["metrics"]["map"] == in_process[0]["metrics"]["map"]
    assert [r["metrics"]["map"] for r in records] == pytest.approx(
        [r["metrics"]["map"] for r in in_process], abs=1e-3
    )
    for r in records:
        with open(os.path.join(r["run_dir"], "config.json")) as f:
            assert json.load(f)["threads"]["intra_op"] == 1
    assert all(r["reused"] for r in again) and len(again_notes) == 4
    assert sweep.default_jobs() >= 1


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_sweep_workers_exit_when_their_parent_is_killed(tmp_path):
    """kill -9 of a script inside sweep.parallel leaves no worker training for nobody."""
    import signal
    import time

    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from deephash import sweep\n"
        "if __name__ == '__main__':\n"
        "    with sweep.parallel(2, threads=1):\n"
        "        print(*sweep._POOL.get()._processes, flush=True)\n"
        "        time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_experiment_config_checks_jobs():
    assert presets.ExperimentConfig(jobs=3).jobs == 3
    with pytest.raises(ValueError, match="jobs must be"):
        presets.ExperimentConfig(jobs=0)
    with pytest.raises(ValueError, match="multiworker"):
        presets.ExperimentConfig(jobs=2, strategy="multiworker")
    with pytest.raises(ValueError, match="Received: jobs=0"):
        with sweep.parallel(0):
            pass


def test_extra_json_files_land_inside_the_atomic_run_directory(tmp_path):
    from deephash import experiment

    out = tmp_path / "run"
    experiment.run("lsh", "digits", 8, out_dir=str(out), extra_json={"request.json": {"a": 1}})
    assert json.loads((out / "request.json").read_text()) == {"a": 1}
    for bad in ("../escape.json", "metrics.json", "notes.txt"):
        with pytest.raises(ValueError, match="extra_json"):
            experiment.run("lsh", "digits", 8, out_dir=str(tmp_path / "bad"), extra_json={bad: {}})
    assert not (tmp_path / "bad").exists() and not (tmp_path / "escape.json").exists()


def test_sweep_refuses_unregistered_methods_without_allow_missing(tmp_path):
    with pytest.raises(ValueError, match="'ninh2' is not registered.*--allow_missing"):
        sweep.run_grid(["ninh2"], "digits", [8], runs_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_report_tables_and_plots_from_two_run_directories(shallow_runs, tmp_path):
    _, records, _ = shallow_runs
    dirs = [records[1]["run_dir"], records[3]["run_dir"]]  # lsh and itq at 16 bits
    out = str(tmp_path / "report")
    rep = report.write_report(dirs, out, paper="dsrh")
    text = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    split = json.load(open(os.path.join(dirs[0], "split.json")))
    for needle in (
        "## digits",
        "protocol",
        split["checksum"][:16],
        "tie_order",
        "| lsh | this run |",
        "CIFAR-10",
    ):
        assert needle in text
    _check_unit_table(os.path.join(out, "digits_map.csv"), ["lsh", "itq"], [16])
    _check_unit_table(os.path.join(out, "digits_precision_radius_2.csv"), ["lsh", "itq"], [16])
    for name in ("digits_pr_16b.png", "digits_precision_at_n_16b.png"):
        _check_png(os.path.join(out, name))
    assert not os.path.exists(
        os.path.join(out, "digits_map_vs_bits.png")
    )  # one code length: no line plot
    assert set(rep["tables"]) == {("digits", "map"), ("digits", "precision_radius_2")}

    # a directory holding run directories: every run below it, both code lengths
    out2 = str(tmp_path / "all")
    report.write_report(
        [os.path.dirname(os.path.dirname(records[0]["run_dir"]))], out2, paper=None, curve_bits=[8]
    )
    _check_unit_table(os.path.join(out2, "digits_map.csv"), ["lsh", "itq"], [8, 16])
    for name in (
        "digits_map_vs_bits.png",
        "digits_precision_radius_2_vs_bits.png",
        "digits_pr_8b.png",
    ):
        _check_png(os.path.join(out2, name))
    assert not os.path.exists(os.path.join(out2, "digits_pr_16b.png"))


def test_report_puts_the_paper_rows_beside_this_run():
    agg = {
        ("digits_multi", "dseh", 32): {"map": 0.5},
        ("digits_multi", "dhn", 32): {"map": 0.25},
        ("digits_multi", "itq", 32): {"map": 0.125},
    }
    rows = report.table_rows(
        agg, "digits_multi", "map", ["dseh", "dhn", "itq", "ninh"], [16, 32], "dseh"
    )
    assert ["dseh", "this run", "", "0.5000"] in rows
    assert ["dseh", "paper (NUS-WIDE)", "0.7119", "0.7312"] in rows
    assert ["dhn", "paper (NUS-WIDE)", "n/t", "n/t"] in rows  # in the paper, not transcribed here
    assert not any(r[0] == "ninh" for r in rows)  # neither run nor published in DSEH
    cifar = report.table_rows(
        {("cifar10", "dsrh", 48): {"precision_radius_2": 0.7}},
        "cifar10",
        "precision_radius_2",
        ["dsrh"],
        [32, 48],
        "dsrh",
    )
    assert cifar == [
        ["dsrh", "this run", "", "0.7000"],
        ["dsrh", "paper (CIFAR-10)", "0.7857", "0.7917"],
    ]


def test_report_command_line(shallow_runs, tmp_path):
    runs_dir, records, _ = shallow_runs
    out = str(tmp_path / "cli")
    proc = _run(
        [
            "-m",
            "deephash.report",
            records[2]["run_dir"],
            records[3]["run_dir"],
            "--out",
            out,
            "--paper",
            "dseh",
        ],
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "this run" in proc.stdout and "split checksum" in proc.stdout
    _check_unit_table(os.path.join(out, "digits_map.csv"), ["itq"], [8, 16])
    proc = _run(["-m", "deephash.report", str(tmp_path / "missing"), "--out", out], timeout=200)
    assert proc.returncode == 2 and "no run directory" in proc.stderr


# ----------------------------------------------------------------------------- scripts
@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    return str(tmp_path_factory.mktemp("shared_runs"))


def test_dsrh_figures_script(tmp_path, shared_runs):
    out = str(tmp_path / "fig")
    proc = _script(
        "dsrh_figures.py",
        "--methods=dsrh,lsh",
        "--bits=8,16",
        "--pr_bits=16",
        "--epochs=1",
        f"--out={out}",
        f"--runs_dir={shared_runs}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "paper (CIFAR-10)" in proc.stdout
        and "this run" in proc.stdout
        and "split checksum" in proc.stdout
    )
    _check_unit_table(os.path.join(out, "digits_map.csv"), ["dsrh", "lsh"], [8, 16])
    _check_unit_table(os.path.join(out, "digits_precision_radius_2.csv"), ["dsrh", "lsh"], [8, 16])
    for name in (
        "digits_map_vs_bits.png",
        "digits_precision_radius_2_vs_bits.png",
        "digits_pr_16b.png",
    ):
        _check_png(os.path.join(out, name))
    assert not os.path.exists(os.path.join(out, "digits_pr_8b.png"))  # panel (c) at --pr_bits only


def test_dseh_table1_and_figures_scripts_share_runs(tmp_path, shared_runs):
    out = str(tmp_path / "t1")
    proc = _script(
        "dseh_table1.py",
        "--methods=dseh,nosuch,lsh",
        "--allow_missing",
        "--bits=16,32",
        "--epochs=1",
        f"--out={out}",
        f"--runs_dir={shared_runs}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'nosuch' is not registered" in proc.stdout
    assert "paper (NUS-WIDE)" in proc.stdout
    rows = _check_unit_table(os.path.join(out, "digits_multi_map.csv"), ["dseh", "lsh"], [16, 32])
    assert ["dseh", "paper (NUS-WIDE)", "0.7119", "0.7312"] in rows
    assert not os.path.exists(
        os.path.join(out, "digits_multi_precision_radius_2.csv")
    )  # Table 1 is mAP only

    figs = str(tmp_path / "figs")
    proc = _script(
        "dseh_figures.py",
        "--methods=dseh,lsh",
        "--bits=32",
        "--epochs=1",
        f"--out={figs}",
        f"--runs_dir={shared_runs}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("reuse") == 2 and "trained" not in proc.stdout
    _check_png(os.path.join(figs, "digits_multi_pr_32b.png"))
    _check_png(os.path.join(figs, "digits_multi_precision_at_n_32b.png"))

    proc = _script("dseh_table1.py", "--methods=ninh2", f"--out={out}")
    assert proc.returncode != 0 and "'ninh2' is not registered" in proc.stderr
    proc = _script("dseh_table1.py", "--bits=16,x", f"--out={out}")
    assert proc.returncode != 0 and "--bits must be" in proc.stderr


def test_run_all_in_its_smallest_setting(tmp_path):
    out, runs = str(tmp_path / "results"), str(tmp_path / "runs")
    proc = _script(
        "run_all.py",
        f"--out={out}",
        f"--runs_dir={runs}",
        "--epochs=1",
        "--dsrh_methods=drh,itq",
        "--dseh_methods=dpsh,itq",
        "--dsrh_bits=8",
        "--dseh_bits=8",
        "--only=dsrh_fig3,dseh_table1",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "DSRH Fig. 3" in index and "DSEH Table 1" in index and "minutes" in index
    assert sorted(os.listdir(out)) == [
        "README.md",
        "dseh_table1_digits",
        "dseh_table1_digits_multi",
        "dsrh_fig3_digits",
    ]
    _check_unit_table(os.path.join(out, "dsrh_fig3_digits", "digits_map.csv"), ["drh", "itq"], [8])
    _check_unit_table(
        os.path.join(out, "dseh_table1_digits", "digits_map.csv"), ["dpsh", "itq"], [8]
    )
    lines = index.splitlines()
    for line in lines:  # every image the index shows exists
        if line.startswith("!["):
            _check_png(os.path.join(out, line.split("](")[1].rstrip(")")))
    for before, line in zip(lines, lines[1:]):  # each header its own paragraph or list
        if before.startswith("- "):
            assert line == "" or line.startswith("- "), (before, line)
        if line.startswith(("**", "Differences in mAP", "Values are mean")):
            assert before == "" or before.endswith("  "), (before, line)  # or a line break
