"""Run a grid of methods x code lengths x seeds through ``experiment.run``, reusing finished
run directories with the same settings, so experiment scripts share trained models.

Each run lives in ``runs_dir/<dataset>/<method>/<bits>b-seed<seed>-<key>`` where ``key``
hashes the run's full request (:meth:`presets.RunSpec.request`: method, data set, bits,
seed, training config, hyper-parameters, features, data set options). A directory with a
``metrics.json`` and a matching ``request.json`` is reused instead of retrained; anything
else at that path is an error (nothing is overwritten silently). A run whose JSON files
differ from its ``manifest.json`` (damaged or edited after it finished) is never reused:
it is retrained and replaced.

Which code trained a run is recorded in its ``config.json`` (``versions.deephash_source``,
a digest of the library's sources, see :func:`deephash.runs.source_digest`). The request
key deliberately leaves it out, so an unrelated change does not orphan every trained
model; instead ``reuse`` decides: ``"any"`` (default) reuses a finished run and notes when
it came from other code, ``"same_code"`` retrains such a run and replaces its directory
(atomically: the old one stays until the new one is complete).

    cfg = ExperimentConfig(preset="quick", paper="dsrh", seeds=(0,), runs_dir="results/runs")
    results = sweep.run_grid(["dsrh", "itq"], "digits", [16, 32], cfg)

Progress goes to this module's logger (``logging.getLogger("deephash.sweep")``, INFO).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import time
from concurrent import futures
from typing import Iterable, Iterator, Sequence

from deephash import experiment_config, presets
from deephash.experiment_config import REUSE, ExperimentConfig
from deephash.validation import check_int

log = logging.getLogger(__name__)


def run_key(spec: presets.RunSpec) -> str:
    """sha256 (hex) of the canonical JSON of ``spec.request()``."""
    text = json.dumps(spec.request(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_dir_for(runs_dir: str, spec: presets.RunSpec) -> str:
    """Where the run of ``spec`` lives under ``runs_dir``."""
    safe = spec.method.replace("+", "_plus")
    return os.path.join(
        os.path.abspath(runs_dir),
        spec.dataset,
        safe,
        f"{spec.bits}b-seed{spec.seed}-{run_key(spec)[:12]}",
    )


def finished(run_dir: str, spec: presets.RunSpec) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly ``spec``; ValueError when it
    holds something else (a different request, or no metrics); ``runs.CorruptRunError``
    (a ValueError) when its JSON files are damaged or differ from its ``manifest.json``."""
    from deephash import runs

    if not os.path.exists(run_dir):
        return False
    req_path = os.path.join(run_dir, "request.json")
    if not os.path.exists(os.path.join(run_dir, "metrics.json")) or not os.path.exists(req_path):
        raise ValueError(
            f"{run_dir!r} exists but is not a finished sweep run (no metrics.json / request.json); "
            "remove it to retrain"
        )
    runs.verify_run(run_dir, [n for n in CHECKED if os.path.exists(os.path.join(run_dir, n))])
    stored = runs.read_json(req_path, "request.json")
    if json.loads(json.dumps(spec.request(), default=str)) != stored:
        raise ValueError(
            f"{run_dir!r} holds a run with different settings than requested; remove it to retrain"
        )
    return True


def check_methods(names: Iterable[str], allow_missing: bool = False) -> list[str]:
    """The registered names among ``names`` (lower-cased, order kept). A name that is not
    registered raises ValueError, or with ``allow_missing`` is skipped with a logged note."""
    from deephash import methods

    known = set(methods.available())
    out = []
    for n in names:
        key = str(n).strip().lower()
        if not key:
            continue
        if key in known:
            out.append(key)
        elif allow_missing:
            log.info(
                f"note: method {key!r} is not registered in this installation; skipped "
                f"(registered: {', '.join(sorted(known))})"
            )
        else:
            raise ValueError(
                f"method {key!r} is not registered (registered: {', '.join(sorted(known))}); "
                "pass --allow_missing to skip methods that are not available"
            )
    return out


class DatasetCache:
    """Data sets loaded once per (name, seed, root, options)."""

    def __init__(self):
        self._cache: dict = {}

    def get(self, name: str, seed: int, root: str | None = None, options: dict | None = None):
        from deephash import data

        key = (name, int(seed), root, json.dumps(options or {}, sort_keys=True))
        if key not in self._cache:
            self._cache[key] = data.load(name, root=root, seed=int(seed), **(options or {}))
        return self._cache[key]


CHECKED = (
    "request.json",
    "metrics.json",
    "config.json",
)  # files the reuse check verifies against manifest.json


def trained_by(run_dir: str) -> str | None:
    """The source digest (``versions.deephash_source``) recorded in a run's config.json,
    or None when the run predates the record or has no readable config."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("versions", {}).get("deephash_source")
    except (OSError, ValueError, AttributeError):
        return None


def run_spec(
    spec: presets.RunSpec,
    runs_dir: str,
    datasets: DatasetCache | None = None,
    reuse: str = "any",
) -> dict:
    """Train and evaluate ``spec`` (or reuse its finished run, see ``reuse`` in the module
    docstring). Returns ``{"run_dir", "reused", "metrics", "spec"}``."""
    return run_specs([spec], runs_dir, datasets, reuse)[0]


def run_specs(
    specs: Sequence[presets.RunSpec],
    runs_dir: str,
    datasets: DatasetCache | None = None,
    reuse: str = "any",
) -> list[dict]:
    """:func:`run_spec` of every spec; records in the order of ``specs``. Finished runs are
    reused here; inside :func:`parallel` the others train in its worker processes."""
    if reuse not in REUSE:
        raise ValueError(f"reuse must be one of {', '.join(REUSE)}, got {reuse!r}")
    records: list = [None] * len(specs)
    tasks = {}
    for i, spec in enumerate(specs):
        out = run_dir_for(runs_dir, spec)
        records[i], replace = _reusable(spec, out, reuse)
        if records[i] is None:
            tasks[i] = (spec, out, replace)
    for i, record in _execute(tasks, datasets).items():
        records[i] = record
    return records


def train_specs(
    runs: Sequence[tuple[presets.RunSpec, str]],
    *,
    overwrite: bool = False,
    datasets: DatasetCache | None = None,
) -> list[dict]:
    """Train and evaluate every ``(spec, run directory)``, never reusing (``overwrite``:
    replace a run directory already there); inside :func:`parallel` in its workers. Returns
    the records in order (``{"run_dir", "reused", "metrics", "spec"}``)."""
    done = _execute({i: (s, out, overwrite) for i, (s, out) in enumerate(runs)}, datasets)
    return [done[i] for i in range(len(runs))]


def _reusable(spec: presets.RunSpec, out: str, reuse: str) -> tuple[dict | None, bool]:
    """``(record of the finished run to reuse, None to train; whether training replaces a
    run directory already in ``out``)``."""
    from deephash import runs

    try:
        done = finished(out, spec)
    except runs.CorruptRunError as e:  # never reuse a damaged run: retrain it (the old one
        log.info(f"  retrain {_what(spec)}: its run directory is damaged: {e}")  # stays)
        return None, True
    if not done:
        return None, False
    reused = _reuse(out, spec, _what(spec), reuse)
    return reused, reused is None


def _what(spec: presets.RunSpec) -> str:
    return f"{spec.method:<8} {spec.dataset} {spec.bits:>3} bits seed {spec.seed}"


def _reuse(out: str, spec: presets.RunSpec, what: str, reuse: str) -> dict | None:
    """The record of the finished run in ``out``, or None when ``reuse`` asks to retrain it
    (it was trained by other library code)."""
    from deephash import runs

    current, stored = runs.source_digest()[:16], trained_by(out)
    other = f"source {stored or 'not recorded'}, now {current}"  # which code trained it
    if stored != current and reuse != "any":
        log.info(f"  retrain {what}: its run was trained by other library code ({other})")
        return None
    m = runs.read_json(os.path.join(out, "metrics.json"), "metrics.json")
    log.info(f"  reuse  {what}: mAP {m['map']:.4f}")
    if stored != current:
        log.info(
            f"  note: that run was trained by other library code ({other}); pass "
            "reuse='same_code' (--reuse=same_code) to retrain it"
        )
    return {"run_dir": out, "reused": True, "metrics": m, "spec": spec}


def _train(spec: presets.RunSpec, out: str, replace: bool, datasets: DatasetCache) -> dict:
    """Train and evaluate ``spec`` into ``out`` (replacing the run there when ``replace``)."""
    from deephash import experiment

    ds = datasets.get(spec.dataset, spec.seed, spec.root, spec.dataset_options)
    t0 = time.perf_counter()
    result = experiment.run(
        spec.method,
        ds,
        spec.bits,
        spec.config,
        out,
        hparams=dict(spec.hparams),
        features=spec.features,
        overwrite=replace,
        extra_json={"request.json": spec.request()},
        hparam_selection=spec.selection,
    )
    result.pop("model", None)
    _release()
    return {
        "run_dir": out,
        "reused": False,
        "metrics": {k: v for k, v in result.items() if k != "run_dir"},
        "spec": spec,
        "seconds": time.perf_counter() - t0,
    }


def _release() -> None:
    """Free the finished model's graph (long sweeps build many models in one process)."""
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def _trained(record: dict, where: str = "") -> dict:
    """Log a trained run (its mAP and time) and return its record without the time."""
    s, m = record["spec"], record["metrics"]
    log.info(f"  trained {_what(s)}: mAP {m['map']:.4f} ({record.pop('seconds'):.1f} s{where})")
    return record


# --------------------------------------------------------------------------- parallel runs
_POOL: contextvars.ContextVar = contextvars.ContextVar("deephash_sweep_pool", default=None)
_WORKER_DATASETS: DatasetCache | None = None  # a worker process's data sets


def default_jobs() -> int:
    """Worker processes for a sweep on this machine: one per CPU core (at most 8) when
    there is no GPU, else 1. The embedded sets' models are too small for TensorFlow to keep
    two threads busy: on 2 cores two one-thread runs at a time finish 1.7x as many runs per
    minute as one two-thread run."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def default_threads(jobs: int) -> int:
    """Threads per worker when ``jobs`` workers share this machine: the CPU count // jobs."""
    return max(1, (os.cpu_count() or 1) // int(jobs))


@contextlib.contextmanager
def parallel(jobs: int, threads: int | None = None) -> Iterator[None]:
    """Within the block, :func:`run_specs` and :func:`train_specs` (and so :func:`run_grid`
    and every ``reproduce`` function) train in ``jobs`` worker processes, spawned once for
    the block, each with ``threads`` TensorFlow / BLAS / numba threads (default: the CPU
    count // ``jobs``); ``jobs=1`` trains in this process. A run's numbers do not depend on
    which worker trains it, but on its thread count (``training.set_threads``), which its
    config.json records. Like any ``multiprocessing`` code, a script using it needs an
    ``if __name__ == "__main__":`` guard. Nested inside another such block it adds no
    workers."""
    jobs = check_int(jobs, "jobs", minimum=1, owner="sweep.parallel")
    if jobs == 1 or _POOL.get() is not None:  # in an enclosing block its workers serve
        yield
        return
    threads = check_int(
        threads if threads is not None else default_threads(jobs),
        "threads",
        minimum=1,
        owner="sweep.parallel",
    )
    context = multiprocessing.get_context("spawn")  # a fresh TensorFlow runtime per worker
    with futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(threads, os.getpid())
    ) as pool:
        with _thread_environment(threads):  # read by the workers' libraries as they load
            for f in [pool.submit(_ready) for _ in range(jobs)]:
                f.result()
        token = _POOL.set(pool)
        try:
            yield
        finally:
            _POOL.reset(token)


_THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                     "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")  # fmt: skip


@contextlib.contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker(threads: int, parent: int) -> None:
    import threading

    from deephash import training

    # the parent's pid comes from the parent: it may die while this worker is still starting
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    training.set_threads(threads)
    logging.getLogger("deephash").setLevel(logging.WARNING)  # the parent logs each run


def _exit_with(parent: int) -> None:
    """End this worker when its parent is gone (killed, even with SIGKILL): a pool worker
    would otherwise finish its run for nobody. The run's staging directory is left for
    the next run of that directory to remove; nothing half-written is ever a run."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _ready() -> int:
    time.sleep(0.2)  # hold this worker so that the next submission starts another
    return os.getpid()


def _train_in_worker(spec: presets.RunSpec, out: str, replace: bool) -> dict:
    global _WORKER_DATASETS
    if _WORKER_DATASETS is None:
        _WORKER_DATASETS = DatasetCache()
    return _train(spec, out, replace, _WORKER_DATASETS)


def _execute(tasks: dict, datasets: DatasetCache | None) -> dict[int, dict]:
    """``{i: record}`` of ``tasks`` (``{i: (spec, out, replace)}``), trained here or in the
    workers of :func:`parallel`; the first failure cancels the runs not yet started."""
    pool = _POOL.get()
    if pool is None:
        datasets = datasets or DatasetCache()
        return {i: _trained(_train(*task, datasets)) for i, task in tasks.items()}
    pending = {}
    for i, (spec, out, replace) in tasks.items():
        quiet = dataclasses.replace(spec, config=spec.config.replace(verbose=0))  # no bars
        pending[pool.submit(_train_in_worker, quiet, out, replace)] = i
    done = {}
    try:
        for f in futures.as_completed(pending):
            i = pending[f]
            done[i] = _trained({**f.result(), "spec": tasks[i][0]}, ", worker")
    finally:
        for f in pending:
            f.cancel()
    return done


def run_grid(
    method_names: Sequence[str],
    dataset: str,
    bits: Sequence[int],
    experiment: ExperimentConfig | None = None,
    *,
    datasets: DatasetCache | None = None,
    **settings,
) -> list[dict]:
    """Every method x bits x seed (``experiment.seeds``) through :func:`run_spec`, in run
    directories under ``experiment.runs_dir`` (default ``results/runs``); returns the run
    records in that order. ``experiment``: the settings of every run (an
    :class:`ExperimentConfig`; ``settings``, its fields by name, replace its values);
    ``experiment.hparams`` maps a method name to hyper-parameters merged over the preset's.
    All specs are built (and validated) before any training starts."""
    from deephash import methods

    exp = experiment_config.from_settings(experiment, settings)
    names = check_methods(method_names, exp.allow_missing)
    if not bits:
        raise ValueError("run_grid: no code lengths given")
    if not exp.seeds:
        raise ValueError("run_grid: no seeds given")
    specs = [
        presets.spec(m, dataset, int(b), exp, seed=s)
        for m in names
        for b in bits
        for s in exp.seeds
    ]
    for s in specs:
        methods.check_bits(s.bits, method=s.method)
    with parallel(exp.jobs or 1):
        return run_specs(specs, exp.runs_dir or "results/runs", datasets, exp.reuse)


__all__ = [
    "REUSE",
    "run_key",
    "run_dir_for",
    "finished",
    "trained_by",
    "check_methods",
    "DatasetCache",
    "run_spec",
    "run_specs",
    "train_specs",
    "run_grid",
    "parallel",
    "default_jobs",
    "default_threads",
]
