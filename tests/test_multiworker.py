"""MultiWorkerMirroredStrategy on localhost: two worker processes (one CPU device each,
TF_CONFIG per process) train DSRH through ``experiment.run`` and must end with the weights
and codes of a one-process default-strategy run; only the chief writes the run directory
and the checkpoints, and no worker leaves a temporary directory behind."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from deephash import runs, training

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "_multiworker_worker.py")
TIMEOUT_S = 240

sys.path.insert(0, HERE)
import _multiworker_worker as worker  # noqa: E402


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
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _launch(tmp_path, ports, index):
    tmp = tmp_path / f"tmp-{index}"  # the worker's TMPDIR: where a non-chief checkpoints
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CONFIG": _tf_config(ports, index), "TMPDIR": str(tmp),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, WORKER, str(tmp_path / "mw" / "run"), str(tmp_path / "mw" / "ckpt"),
            str(tmp_path / "results"), "multiworker", str(index)]
    log = open(tmp_path / f"worker-{index}.log", "w")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _wait_all(procs, tmp_path):
    try:
        for i, (p, _) in enumerate(procs):
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
        worker.main(str(tmp_path / "one" / "run"), str(tmp_path / "one" / "ckpt"), str(tmp_path / "results"),
                    "default", "one")
    finally:
        codes, logs = _wait_all(procs, tmp_path)
    for i, (rc, log) in enumerate(zip(codes, logs)):
        assert rc == 0, f"worker {i} failed (rc {rc}):\n{log}"

    # the same training: weights to float32 round-off (the all-reduce sums the two halves'
    # gradients in another order than one device's batch mean), identical codes
    chief, other, one = (_weights(tmp_path / "results" / f"weights-{tag}.npz") for tag in ("0", "1", "one"))
    assert len(chief) == len(other) == len(one)
    for w0, w1 in zip(chief, other):
        np.testing.assert_array_equal(w0, w1)  # the workers hold one model
    for a, b in zip(chief, one):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    mw, single = runs.load_codes(str(tmp_path / "mw" / "run" / "codes.npz")), \
        runs.load_codes(str(tmp_path / "one" / "run" / "codes.npz"))
    np.testing.assert_array_equal(mw["query"], single["query"])
    np.testing.assert_array_equal(mw["database"], single["database"])

    # only the chief wrote: one run directory, one checkpoint, nothing temporary left
    summaries = [json.loads((tmp_path / "results" / f"summary-{i}.json").read_text()) for i in range(2)]
    assert [s["is_chief"] for s in summaries] == [True, False]
    assert summaries[0]["run_dir"] == str(tmp_path / "mw" / "run") and summaries[1]["run_dir"] is None
    assert summaries[0]["map"] == summaries[1]["map"]
    assert sorted(os.listdir(tmp_path / "mw")) == ["ckpt", "run"]
    assert sorted(os.listdir(tmp_path / "mw" / "ckpt")) == [f"ckpt-{worker.EPOCHS}.npz", "run.json"]
    assert sorted(os.listdir(tmp_path / "mw" / "run")) == sorted(os.listdir(tmp_path / "one" / "run"))
    assert [os.listdir(tmp_path / f"tmp-{i}") for i in range(2)] == [[], []]
