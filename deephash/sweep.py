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

import gc
import hashlib
import json
import logging
import os
import time
from typing import Iterable, Sequence

from deephash import experiment_config, presets
from deephash.experiment_config import REUSE, ExperimentConfig

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
    from deephash import runs

    if reuse not in REUSE:
        raise ValueError(f"reuse must be one of {', '.join(REUSE)}, got {reuse!r}")
    out = run_dir_for(runs_dir, spec)
    what = f"{spec.method:<8} {spec.dataset} {spec.bits:>3} bits seed {spec.seed}"
    replace = False
    try:
        done = finished(out, spec)
    except runs.CorruptRunError as e:  # never reuse a damaged run: retrain it (the old one
        log.info(f"  retrain {what}: its run directory is damaged: {e}")  # stays until then)
        done, replace = False, True
    if done:
        reused = _reuse(out, spec, what, reuse)
        if reused is not None:
            return reused
        replace = True
    return _train(spec, out, replace, datasets or DatasetCache())


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
    log.info(
        f"  trained {spec.method:<8} {spec.dataset} {spec.bits:>3} bits seed {spec.seed}: "
        f"mAP {result['map']:.4f} ({time.perf_counter() - t0:.1f} s)"
    )
    return {
        "run_dir": out,
        "reused": False,
        "metrics": {k: v for k, v in result.items() if k != "run_dir"},
        "spec": spec,
    }


def _release() -> None:
    """Free the finished model's graph (long sweeps build many models in one process)."""
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


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
    datasets = datasets or DatasetCache()
    runs_dir = exp.runs_dir or "results/runs"
    return [run_spec(s, runs_dir, datasets, exp.reuse) for s in specs]


__all__ = [
    "REUSE",
    "run_key",
    "run_dir_for",
    "finished",
    "trained_by",
    "check_methods",
    "DatasetCache",
    "run_spec",
    "run_grid",
]
