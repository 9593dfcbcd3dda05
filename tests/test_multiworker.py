"""MultiWorkerMirroredStrategy on localhost: two worker processes (one CPU device each,
TF_CONFIG per process) train DSRH through ``experiment.run`` and must end with the weights
and codes of a one-process default-strategy run; only the chief writes the run directory
and the checkpoints, and no worker leaves a temporary directory behind. (With the
auto-shard policy OFF instead of DATA the workers see other batches and the weights
differ by ~1e-3, far outside the 1e-5 tolerance; training moves them by 1e-4 to 1e-2.)
Every subprocess is killed after TIMEOUT_S."""

import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from deephash import runs, training

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_multiworker_worker.py")
TIMEOUT_S = 180

sys.path.insert(0, HERE)
import _multiworker_worker as worker  # noqa: E402


def _fake_strategy(cluster, task_type, task_id):
    """An object with the cluster resolver a MultiWorkerMirroredStrategy would have."""
    spec = tf.train.ClusterSpec(cluster)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


WORKERS = {"worker": ["localhost:1", "localhost:2"]}


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief",
    [
        (WORKERS, "worker", 0, True),  # no chief task: worker 0 is the chief
        (WORKERS, "worker", 1, False),
        ({"chief": ["localhost:3"], **WORKERS}, "chief", 0, True),
        ({"chief": ["localhost:3"], **WORKERS}, "worker", 0, False),
        ({}, None, None, True),  # a single process
    ],
)
def test_is_chief_follows_the_cluster_roles(cluster, task_type, task_id, chief):
    strategy = _fake_strategy(cluster, task_type, task_id)
    assert training.is_chief(strategy) is chief
    assert training.task(strategy) == ((task_type, task_id) if cluster else (None, 0))
    assert training.in_cluster(strategy) is bool(cluster)


def test_single_process_strategies_are_chief():
    assert training.task("default") == (None, 0) and training.is_chief("default")
    assert training.is_chief("mirrored") and not training.in_cluster("mirrored")


def test_worker_dir_is_the_real_one_on_the_chief_and_a_removed_temporary_elsewhere(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    real = str(tmp_path / "ckpt")
    with training.worker_dir(real, _fake_strategy(WORKERS, "worker", 0)) as d:
        assert d == real
    with training.worker_dir(None, _fake_strategy(WORKERS, "worker", 1)) as d:
        assert d is None
    with pytest.raises(RuntimeError):
        with training.worker_dir(real, _fake_strategy(WORKERS, "worker", 1)) as d:
            assert d != real and os.path.dirname(d) == str(tmp_path / "tmp") and "worker1" in d
            training.save_checkpoint(types.SimpleNamespace(variables=[tf.Variable([1.0])]), d, 1)
            assert os.listdir(d) == ["ckpt-1.npz"]
            raise RuntimeError("training failed")
    assert os.listdir(tmp_path / "tmp") == [] and not os.path.exists(real)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def _launch(tmp_path, ports, index):
    tmp = tmp_path / f"tmp-{index}"  # the worker's TMPDIR: where a non-chief checkpoints
    tmp.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": REPO,
        "TF_CONFIG": _tf_config(ports, index),
        "TMPDIR": str(tmp),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    args = [
        sys.executable,
        WORKER,
        str(tmp_path / "mw" / "run"),
        str(tmp_path / "mw" / "ckpt"),
        str(tmp_path / "results"),
        "multiworker",
        str(index),
    ]
    log = open(tmp_path / f"worker-{index}.log", "w")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _wait_all(procs, tmp_path):
    try:
        for p, _ in procs:
            p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    logs = [(tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in range(len(procs))]
    return [p.returncode for p, _ in procs], logs


def _weights(path):
    with np.load(path) as z:
        return [z[f"w{i}"] for i in range(len(z.files))]


def test_two_workers_train_like_one_device_and_only_the_chief_writes(tmp_path):
    (tmp_path / "results").mkdir()
    ports = _free_ports(2)
    procs = [_launch(tmp_path, ports, i) for i in range(2)]
    try:  # the one-process reference runs meanwhile, in this process, under the default strategy
        worker.main(
            str(tmp_path / "one" / "run"),
            str(tmp_path / "one" / "ckpt"),
            str(tmp_path / "results"),
            "default",
            "one",
        )
    finally:
        codes, logs = _wait_all(procs, tmp_path)
    for i, (rc, log) in enumerate(zip(codes, logs)):
        assert rc == 0, f"worker {i} failed (rc {rc}):\n{log}"

    # the same training: weights to float32 round-off (the all-reduce sums the two halves'
    # gradients in another order than one device's batch mean), identical codes
    chief, other, one = (
        _weights(tmp_path / "results" / f"weights-{tag}.npz") for tag in ("0", "1", "one")
    )
    assert len(chief) == len(other) == len(one)
    for w0, w1 in zip(chief, other):
        np.testing.assert_array_equal(w0, w1)  # the workers hold one model
    for a, b in zip(chief, one):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    mw, single = (
        runs.load_codes(str(tmp_path / "mw" / "run" / "codes.npz")),
        runs.load_codes(str(tmp_path / "one" / "run" / "codes.npz")),
    )
    np.testing.assert_array_equal(mw["query"], single["query"])
    np.testing.assert_array_equal(mw["database"], single["database"])

    # only the chief wrote: one run directory, one checkpoint, nothing temporary left
    summaries = [
        json.loads((tmp_path / "results" / f"summary-{i}.json").read_text()) for i in range(2)
    ]
    assert [s["is_chief"] for s in summaries] == [True, False]
    assert (
        summaries[0]["run_dir"] == str(tmp_path / "mw" / "run") and summaries[1]["run_dir"] is None
    )
    assert summaries[0]["map"] == summaries[1]["map"]
    assert sorted(os.listdir(tmp_path / "mw")) == ["ckpt", "run"]
    assert sorted(os.listdir(tmp_path / "mw" / "ckpt")) == [
        f"ckpt-{worker.EPOCHS - 1}.npz",
        f"ckpt-{worker.EPOCHS}.npz",
        "run.json",
    ]  # the latest and its fallback
    assert sorted(os.listdir(tmp_path / "mw" / "run")) == sorted(
        os.listdir(tmp_path / "one" / "run")
    )
    assert [os.listdir(tmp_path / f"tmp-{i}") for i in range(2)] == [[], []]


AGREE = """
import sys
from deephash import training
strategy = training.get_strategy("multiworker")
index = training.task(strategy)[1]
assert training.same_on_all_workers(7, "a constant", strategy) == 7
try:
    training.same_on_all_workers(index, "the task index", strategy)
except ValueError as e:
    print("REFUSED:", e)
"""


def test_workers_that_disagree_stop_with_an_error_naming_the_values(tmp_path):
    ports = _free_ports(2)
    procs = []
    for i in range(2):
        env = {
            **os.environ,
            "PYTHONPATH": REPO,
            "TF_CONFIG": _tf_config(ports, i),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        log = open(tmp_path / f"worker-{i}.log", "w")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", AGREE],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    codes, logs = _wait_all(procs, tmp_path)
    for rc, log in zip(codes, logs):
        assert rc == 0, log
        assert "REFUSED: the workers disagree on the task index: [0, 1]" in log
