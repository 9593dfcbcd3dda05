"""The papers' tables and figures as library calls (the experiment scripts are thin
wrappers around these; ``experiments/run_all.py`` calls them in one process).

* :func:`dsrh_figures` — DSRH Fig. 3 (CIFAR-10) / Fig. 4 (NUS-WIDE): (a) mAP vs code
  length, (b) precision within Hamming radius 2 vs code length, (c) PR curves at 48 bits;
* :func:`dseh_table1` — DSEH Table 1: mAP at 16/32/48/64 bits for every method;
* :func:`dseh_figures` — DSEH Fig. 3 (PR curves at 32 bits) and Fig. 4 (precision@N,
  N = 100..1000, at 32 bits).

Each trains what is missing through ``sweep.run_grid`` (runs are shared through
``runs_dir``), writes a report (``report.write_report``) to ``out`` and logs the tables
with the published numbers beside them. Returns the report dict plus ``runs`` (the sweep
records).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from deephash import presets, report, sweep


def _figure_number(dataset: str, multilabel: bool | None, paper: str) -> str:
    from deephash import published

    ref = published.reference_dataset(dataset, paper)
    if paper == "dsrh":
        if ref == "cifar10" or (ref is None and multilabel is False):
            return "Fig. 3 (CIFAR-10)"
        return "Fig. 4 (NUS-WIDE)"
    return ""


def _run_and_report(
    methods,
    dataset,
    bits,
    *,
    paper,
    title,
    metrics,
    curve_bits,
    preset,
    out,
    runs_dir,
    seeds,
    allow_missing,
    features,
    root,
    weights,
    epochs,
    lr,
    hparams,
    log,
    reuse,
    seed_bits=None,
) -> dict:
    runs_dir = runs_dir or os.path.join(out, "runs")
    log(f"{title}: {dataset}, preset={preset}, seeds={list(seeds)}, runs in {runs_dir}")
    grid = dict(
        preset=preset,
        paper=paper,
        runs_dir=runs_dir,
        allow_missing=allow_missing,
        features=features,
        root=root,
        weights=weights,
        epochs=epochs,
        lr=lr,
        hparams=hparams,
        log=log,
        reuse=reuse,
    )
    if seed_bits is None:
        records = sweep.run_grid(methods, dataset, bits, seeds=seeds, **grid)
    else:  # every seed at seed_bits, the first seed elsewhere
        records = sweep.run_grid(methods, dataset, bits, seeds=list(seeds)[:1], **grid)
        more = [b for b in bits if b in set(seed_bits)]
        if more and len(seeds) > 1:
            records += sweep.run_grid(methods, dataset, more, seeds=list(seeds)[1:], **grid)
    if not records:
        raise ValueError(
            f"{title}: none of the methods {list(methods)} is available; nothing to report"
        )
    rep = report.write_report(
        [r["run_dir"] for r in records],
        out,
        paper=paper,
        title=f"{title} on {dataset}",
        methods=[m.lower() for m in methods],
        metrics=metrics,
        curve_bits=curve_bits,
        retrieval_bits=curve_bits[0] if curve_bits else None,
    )
    log(report.format_tables(rep))
    log(f"report: {rep['files'][0]}")
    rep["runs"] = records
    return rep


def _common(kw: dict) -> dict:
    keys = (
        "preset",
        "out",
        "runs_dir",
        "seeds",
        "allow_missing",
        "features",
        "root",
        "weights",
        "epochs",
        "lr",
        "hparams",
        "log",
        "reuse",
        "seed_bits",
    )
    return {k: kw[k] for k in keys}


def dsrh_figures(
    dataset: str = "digits",
    *,
    preset: str = "quick",
    out: str = "results/dsrh_figures",
    runs_dir: str | None = None,
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = presets.DSRH_FIGURE_METHODS,
    bits: Sequence[int] = presets.DSRH_BITS,
    pr_bits: int = presets.DSRH_PR_BITS,
    allow_missing: bool = False,
    features: str | None = None,
    root: str | None = None,
    weights: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    hparams: dict | None = None,
    log: Callable[[str], None] = print,
    reuse: str = "any",
    seed_bits: Sequence[int] | None = None,
) -> dict:
    """DSRH Fig. 3 / Fig. 4 panels (a)-(c) for ``methods`` on ``dataset``. ``seed_bits``
    (every function here): run the seeds after the first only at these code lengths (None:
    every seed at every code length)."""
    multilabel = None
    if dataset in ("digits", "digits_multi", "cifar10"):
        multilabel = dataset == "digits_multi"
    title = f"DSRH {_figure_number(dataset, multilabel, 'dsrh')}"
    if pr_bits not in bits:
        raise ValueError(f"--pr_bits={pr_bits} is not among the code lengths {list(bits)}")
    return _run_and_report(
        methods,
        dataset,
        bits,
        paper="dsrh",
        title=title,
        metrics=("map", "precision_radius_2"),
        curve_bits=(pr_bits,),
        **_common(locals()),
    )


def dseh_table1(
    dataset: str = "digits_multi",
    *,
    preset: str = "quick",
    out: str = "results/dseh_table1",
    runs_dir: str | None = None,
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = presets.DSEH_TABLE1_METHODS,
    bits: Sequence[int] = presets.DSEH_BITS,
    allow_missing: bool = False,
    features: str | None = None,
    root: str | None = None,
    weights: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    hparams: dict | None = None,
    log: Callable[[str], None] = print,
    reuse: str = "any",
    seed_bits: Sequence[int] | None = None,
) -> dict:
    """DSEH Table 1: mAP of ``methods`` at ``bits`` on ``dataset``."""
    return _run_and_report(
        methods,
        dataset,
        bits,
        paper="dseh",
        title="DSEH Table 1 (mAP)",
        metrics=("map",),
        curve_bits=(),
        **_common(locals()),
    )


def dseh_figures(
    dataset: str = "digits_multi",
    *,
    preset: str = "quick",
    out: str = "results/dseh_figures",
    runs_dir: str | None = None,
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = presets.DSEH_TABLE1_METHODS,
    bits: int = presets.DSEH_FIGURE_BITS,
    allow_missing: bool = False,
    features: str | None = None,
    root: str | None = None,
    weights: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    hparams: dict | None = None,
    log: Callable[[str], None] = print,
    reuse: str = "any",
    seed_bits: Sequence[int] | None = None,
) -> dict:
    """DSEH Fig. 3 (precision-recall) and Fig. 4 (precision@N) at ``bits`` on ``dataset``;
    the paper publishes these as plots only, so the printed table is mAP at ``bits`` beside
    Table 1's column."""
    bits_list = (int(bits),)
    return _run_and_report(
        methods,
        dataset,
        bits_list,
        paper="dseh",
        title=f"DSEH Fig. 3 / Fig. 4 ({bits} bits)",
        metrics=("map", "precision_radius_2"),
        curve_bits=bits_list,
        **_common(locals()),
    )


__all__ = ["dsrh_figures", "dseh_table1", "dseh_figures"]
