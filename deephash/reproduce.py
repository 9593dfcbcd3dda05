"""The papers' tables and figures as library calls (the experiment scripts are thin
wrappers around these; ``experiments/run_all.py`` calls them in one process).

* :func:`dsrh_figures` — DSRH Fig. 3 (CIFAR-10) / Fig. 4 (NUS-WIDE): (a) mAP vs code
  length, (b) precision within Hamming radius 2 vs code length, (c) PR curves at 48 bits;
* :func:`dseh_table1` — DSEH Table 1: mAP at 16/32/48/64 bits for every method;
* :func:`dseh_figures` — DSEH Fig. 3 (PR curves at 32 bits) and Fig. 4 (precision@N,
  N = 100..1000, at 32 bits);
* :func:`dseh_ablation` — DSEH Table 2: DSEH, DSEH-S, DSEH-SS, DSEH-L and DSEH-A over
  several seeds (``n_h``, ``map_l``, ``map_i`` as mean ± sample std) beside the paper's.

Each trains what is missing through ``sweep.run_grid`` (runs are shared through
``runs_dir``), writes a report (``report.write_report``) to ``out`` and logs the tables
with the published numbers beside them (``logging.getLogger("deephash.reproduce")``, INFO).
Every function takes the experiment's settings as one :class:`ExperimentConfig`
(``experiment``; keyword ``settings`` with its field names replace its values; each
function sets ``paper``). The figures and Table 1 return the report dict plus ``runs``
(the sweep records).
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import logging
import os
from typing import Sequence

import numpy as np

from deephash import claims, experiment_config, presets, report, sweep
from deephash.experiment_config import ExperimentConfig

log = logging.getLogger(__name__)


def _figure_number(dataset: str, paper: str) -> str:
    from deephash import published

    ref = published.reference_dataset(dataset, paper)
    if paper == "dsrh":
        if ref == "cifar10" or (ref is None and presets.multilabel(dataset) is False):
            return "Fig. 3 (CIFAR-10)"
        return "Fig. 4 (NUS-WIDE)"
    return ""


def _run_grid(methods, dataset, bits, exp: ExperimentConfig) -> list[dict]:
    """The sweep's records: every seed at every code length, or with ``exp.seed_bits``
    every seed at those code lengths and the first seed elsewhere."""
    if exp.seed_bits is None:
        return sweep.run_grid(methods, dataset, bits, exp)
    seeds = exp.seeds
    with sweep.parallel(exp.jobs or 1):  # one set of workers for both grids
        records = sweep.run_grid(methods, dataset, bits, exp.replace(seeds=seeds[:1]))
        more = [b for b in bits if b in set(exp.seed_bits)]
        if more and len(seeds) > 1:
            records += sweep.run_grid(methods, dataset, more, exp.replace(seeds=seeds[1:]))
    return records


def _run_and_report(
    methods, dataset, bits, exp: ExperimentConfig, *, title, metrics, curve_bits, out
) -> dict:
    exp = exp.replace(runs_dir=exp.runs_dir or os.path.join(out, "runs"))
    log.info(
        f"{title}: {dataset}, preset={exp.preset}, seeds={list(exp.seeds)}, runs in {exp.runs_dir}"
    )
    records = _run_grid(methods, dataset, bits, exp)
    if not records:
        raise ValueError(
            f"{title}: none of the methods {list(methods)} is available; nothing to report"
        )
    rep = report.write_report(
        [r["run_dir"] for r in records],
        out,
        paper=exp.paper,
        title=f"{title} on {dataset}",
        methods=[m.lower() for m in methods],
        metrics=metrics,
        curve_bits=curve_bits,
        retrieval_bits=curve_bits[0] if curve_bits else None,
    )
    log.info(report.format_tables(rep))
    log.info(f"report: {rep['files'][0]}")
    rep["runs"] = records
    return rep


def dsrh_figures(
    dataset: str = "digits",
    experiment: ExperimentConfig | None = None,
    *,
    out: str = "results/dsrh_figures",
    methods: Sequence[str] = presets.DSRH_FIGURE_METHODS,
    bits: Sequence[int] = presets.DSRH_BITS,
    pr_bits: int = presets.DSRH_PR_BITS,
    **settings,
) -> dict:
    """DSRH Fig. 3 / Fig. 4 panels (a)-(c) for ``methods`` on ``dataset``.
    ``experiment.seed_bits`` (every function here): run the seeds after the first only at
    these code lengths (None: every seed at every code length)."""
    exp = experiment_config.from_settings(experiment, settings).replace(paper="dsrh")
    if pr_bits not in bits:
        raise ValueError(f"--pr_bits={pr_bits} is not among the code lengths {list(bits)}")
    return _run_and_report(
        methods,
        dataset,
        bits,
        exp,
        title=f"DSRH {_figure_number(dataset, 'dsrh')}",
        metrics=("map", "precision_radius_2"),
        curve_bits=(pr_bits,),
        out=out,
    )


def dseh_table1(
    dataset: str = "digits_multi",
    experiment: ExperimentConfig | None = None,
    *,
    out: str = "results/dseh_table1",
    methods: Sequence[str] = presets.DSEH_TABLE1_METHODS,
    bits: Sequence[int] = presets.DSEH_BITS,
    **settings,
) -> dict:
    """DSEH Table 1: mAP of ``methods`` at ``bits`` on ``dataset``."""
    exp = experiment_config.from_settings(experiment, settings).replace(paper="dseh")
    return _run_and_report(
        methods,
        dataset,
        bits,
        exp,
        title="DSEH Table 1 (mAP)",
        metrics=("map",),
        curve_bits=(),
        out=out,
    )


def dseh_figures(
    dataset: str = "digits_multi",
    experiment: ExperimentConfig | None = None,
    *,
    out: str = "results/dseh_figures",
    methods: Sequence[str] = presets.DSEH_TABLE1_METHODS,
    bits: int = presets.DSEH_FIGURE_BITS,
    **settings,
) -> dict:
    """DSEH Fig. 3 (precision-recall) and Fig. 4 (precision@N) at ``bits`` on ``dataset``;
    the paper publishes these as plots only, so the printed table is mAP at ``bits`` beside
    Table 1's column."""
    exp = experiment_config.from_settings(experiment, settings).replace(paper="dseh")
    bits_list = (int(bits),)
    return _run_and_report(
        methods,
        dataset,
        bits_list,
        exp,
        title=f"DSEH Fig. 3 / Fig. 4 ({bits} bits)",
        metrics=("map", "precision_radius_2"),
        curve_bits=bits_list,
        out=out,
    )


# ---- DSEH Table 2 (the ablation) ----------------------------------------------------------
ABLATION_VARIANTS = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")
ABLATION_COLUMNS = ("n_h", "map_l", "map_i")


def ablation_spec(
    variant: str,
    dataset: str,
    bits: int,
    seed: int,
    experiment: ExperimentConfig | None = None,
    *,
    equal_budget: bool = False,
    **settings,
) -> presets.RunSpec:
    """The ``presets.RunSpec`` of one (variant, seed) of Table 2: ``presets.spec`` with
    ``paper="dseh"``, the experiment's strategy and, with ``equal_budget``, ``dseh-a``
    given rounds x the epochs of each of DSEH's phases (the alternating variants' rounds;
    under the quick preset its ImgNet cap is already DSEH's three phases' together)."""
    from deephash.backbones.pretrained import check_weights_arg

    exp = experiment_config.from_settings(experiment, settings).replace(paper="dseh")
    check_weights_arg(exp.weights)
    s = presets.spec(variant, dataset, bits, exp, seed=seed)
    s = dataclasses.replace(s, config=s.config.replace(strategy=exp.strategy))
    if variant == "dseh-a" and equal_budget:
        alternating = ExperimentConfig(preset=exp.preset, paper="dseh", epochs=exp.epochs)
        alt = presets.spec("dseh", dataset, bits, alternating, seed=seed)
        rounds = int(alt.hparams.get("rounds", 3))
        hp = dict(s.hparams)
        for key in ("labnet_epochs", "imgnet_epochs"):  # the alternating variants' phases
            hp[key] = rounds * int(alt.hparams.get(key) or alt.config.epochs)
        s = dataclasses.replace(s, hparams=hp)
    return s


def dseh_ablation(
    dataset: str = "digits_multi",
    experiment: ExperimentConfig | None = None,
    *,
    out: str = "results/dseh_table2",
    bits: int = 32,
    variants: Sequence[str] = ABLATION_VARIANTS,
    equal_budget: bool = False,
    **settings,
) -> dict:
    """DSEH Table 2 on ``dataset`` at ``bits``: every variant x seed run (or reused) through
    the sweep in ``experiment.runs_dir`` (default ``OUT/runs``), then ``OUT/table.md`` and
    ``OUT/table.csv`` with ``n_h``, ``map_l``, ``map_i`` as mean and sample standard deviation
    over the seeds beside the paper's numbers for the data set (for the embedded sets: the
    real set they stand in for, labelled as such). Returns ``{"summary", "markdown",
    "files", "runs"}``."""
    from deephash import io, methods

    exp = experiment_config.from_settings(experiment, settings).replace(paper="dseh")
    unknown = set(variants) - set(ABLATION_VARIANTS)
    if unknown:
        raise ValueError(
            f"unknown variant(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(ABLATION_VARIANTS)}"
        )
    methods.check_bits(bits, method="dseh")
    chosen = [v for v in ABLATION_VARIANTS if v in variants]
    specs = [
        ablation_spec(v, dataset, bits, seed, exp, equal_budget=equal_budget)
        for v in chosen
        for seed in exp.seeds
    ]
    with sweep.parallel(exp.jobs or 1):
        results, records = _ablation_runs(
            specs, exp.runs_dir or os.path.join(out, "runs"), exp.reuse
        )
    summary = ablation_summary(results)
    ref, paper = ablation_published(dataset)
    md = ablation_markdown(summary, dataset, bits, ref, paper, exp.preset)
    files = [os.path.join(out, "table.md"), os.path.join(out, "table.csv")]
    with io.atomic_write(files[0]) as f:
        f.write(md)
    with io.atomic_write(files[1]) as f:
        f.write(ablation_csv(summary, ref, paper))
    log.info(md)
    log.info(f"written: {files[0]}, {files[1]}")
    return {"summary": summary, "markdown": md, "files": files, "runs": records}


def _ablation_runs(specs, runs_dir: str, reuse: str) -> tuple[dict[str, list[dict]], list]:
    """Run (or reuse, through the sweep) every spec: ``({variant: [metrics, ...]}, records)``."""
    results: dict[str, list[dict]] = {}
    records = sweep.run_specs(specs, runs_dir, reuse=reuse)
    for s, record in zip(specs, records):
        result = record["metrics"]
        log.info(
            f"{s.method:8s} seed {s.seed}: n_h={result['n_h']:5d}  map_l={result['map_l']:.4f}  "
            f"map_i={result['map_i']:.4f}"
        )
        results.setdefault(s.method, []).append(result)
    return results, records


def ablation_summary(results: dict[str, list[dict]]) -> dict[str, dict]:
    """``{variant: {column: (mean, sample std), "seeds": n}}``."""
    out = {}
    for variant, runs in results.items():
        row = {"seeds": len(runs)}
        for c in ABLATION_COLUMNS:
            v = np.array([float(r[c]) for r in runs])
            row[c] = (float(v.mean()), claims.seed_std(v))
        out[variant] = row
    return out


def ablation_published(dataset: str) -> tuple[str | None, dict]:
    """(reference data set, ``{variant: {column: value}}``) from the paper's Table 2."""
    from deephash import published

    ref = published.reference_dataset(dataset, "dseh")
    rows: dict = {}
    if ref is not None:
        for r in published.lookup(ref, tables=("dseh_table2",)):
            rows.setdefault(r.method, {})[r.metric] = r.value
    return ref, rows


def _fmt(column: str, value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if column == "n_h" else f"{value:.4f}"


def _ranking(rows: dict, column: str) -> str:
    """Variants from best to worst by ``column`` (mean for ours); equal values joined by "="."""

    def value(v):
        x = rows[v][column]
        return round(float(x[0] if isinstance(x, tuple) else x), 4)

    present = sorted((v for v in rows if rows[v].get(column) is not None), key=lambda v: -value(v))
    text = ""
    for i, v in enumerate(present):
        if i:
            text += " = " if value(v) == value(present[i - 1]) else " > "
        text += v.upper()
    return text


ABLATION_NOTE = (
    "(each seed also draws the data split). n_h = distinct LabNet codes of the TRAINING labels "
    "(as the authors' DSEH.py counts them; runs made before this count report the database "
    "labels'); map_l = mAP of LabNet codes of the query labels against those of the database "
    "labels; map_i = mAP of ImgNet codes of the images. --preset=quick ranks the protocol's "
    "database at its depth; --preset=paper ranks as the authors' evaluate.py does: map_i "
    "against the training + database images, both at full depth (DSEH "
    'evaluation="authors").'
)


def ablation_markdown(
    summary: dict, dataset: str, bits: int, ref: str | None, paper: dict, preset: str
) -> str:
    """Table 2 as markdown: ours (mean ± std) beside the paper's, then the orderings."""
    from deephash import published

    ref_name = published.dataset_name(ref) if ref else None
    head = ["method", *(f"{c} (ours)" for c in ABLATION_COLUMNS)]
    if ref:
        head += [f"{c} (paper, {ref_name})" for c in ABLATION_COLUMNS]
    lines = [f"# DSEH ablation (Table 2) on {dataset}, {bits} bits, preset {preset}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for variant, row in summary.items():
        cells = [variant.upper()]
        cells += [f"{_fmt(c, row[c][0], 1)} ± {_fmt(c, row[c][1], 1)}" for c in ABLATION_COLUMNS]
        if ref:
            cells += [_fmt(c, paper.get(variant, {}).get(c)) for c in ABLATION_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({row["seeds"] for row in summary.values()})
    lines += [
        "",
        f"Ours: mean ± sample standard deviation over {', '.join(map(str, seeds))} seed(s) "
        + ABLATION_NOTE,
    ]
    if ref is not None and ref != dataset:
        lines.append(
            f"The paper has no {dataset}; its {ref_name} numbers stand beside ours for "
            "orientation only (different data, backbone and scale)."
        )
    return "\n".join(lines + _orderings(summary, ref_name, paper)) + "\n"


def _orderings(summary: dict, ref_name: str | None, paper: dict) -> list[str]:
    lines = ["", f"Ordering by map_i, ours: {_ranking(summary, 'map_i')}"]
    if ref_name:
        lines.append(f"Ordering by map_i, paper ({ref_name}): {_ranking(paper, 'map_i')}")
    lines += [f"Ordering by n_h, ours: {_ranking(summary, 'n_h')}"]
    if ref_name:
        lines.append(f"Ordering by n_h, paper ({ref_name}): {_ranking(paper, 'n_h')}")
    return lines


def ablation_csv(summary: dict, ref: str | None, paper: dict) -> str:
    """Table 2 as CSV: per variant the seeds, each column's mean and std, the paper's."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "method",
            "seeds",
            *(f"{c}_{s}" for c in ABLATION_COLUMNS for s in ("mean", "std")),
            "paper_dataset",
            *(f"paper_{c}" for c in ABLATION_COLUMNS),
        ]
    )
    for variant, row in summary.items():
        published_cells = [paper.get(variant, {}).get(c) for c in ABLATION_COLUMNS]
        w.writerow(
            [
                variant,
                row["seeds"],
                *(f"{x:.6g}" for c in ABLATION_COLUMNS for x in row[c]),
                ref or "",
                *("" if v is None else v for v in published_cells),
            ]
        )
    return buf.getvalue()


__all__ = [
    "ExperimentConfig",
    "dsrh_figures",
    "dseh_table1",
    "dseh_figures",
    "dseh_ablation",
    "ablation_spec",
    "ablation_summary",
    "ablation_published",
    "ablation_markdown",
    "ablation_csv",
    "ABLATION_VARIANTS",
    "ABLATION_COLUMNS",
]
