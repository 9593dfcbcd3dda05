"""Turn run directories into markdown/CSV tables and PNG plots, with the published numbers
beside the ones of this run.

    python -m deephash.report RUN_DIR [RUN_DIR ...] --out DIR [--paper=auto|dsrh|dseh|none]

A RUN_DIR may also be a directory holding run directories (searched recursively). Runs of
the same data set, method and code length (several seeds) are averaged. For each data set
the report gives

* a header: data set, protocol, split checksum(s) and seeds, metric conventions;
* one table per metric (``map``, ``precision_radius_2``, and the DSEH Table 2 quantities
  ``n_h``, ``map_l``, ``map_i`` when the runs have them): rows = method x source ("this run",
  "paper (<data set>)"), columns = code lengths; written as markdown (``report.md``) and
  CSV (``<dataset>_<metric>.csv``);
* with several seeds, ``mean ± std`` over the seeds in the markdown tables (the CSV files
  hold the means);
* a section on the papers' qualitative claims (``deephash.claims``: DSRH > DRH+ > DRH,
  deep above shallow, DSEH above every baseline) with the seed spread of each difference;
* with ``retrieval_bits``, ``<dataset>_retrieval_<bits>b.png``: each method's top-ranked
  database images for a few fixed queries, relevant ones framed green;
* plots: ``<dataset>_map_vs_bits.png``, ``<dataset>_precision_radius_2_vs_bits.png``, and per
  code length ``<dataset>_pr_<bits>b.png`` (precision-recall over Hamming radii) and
  ``<dataset>_precision_at_n_<bits>b.png``.

A run directory that cannot be used (damaged JSON, a file that differs from the hashes in
its ``manifest.json``) is skipped and listed under "skipped run directories" with why;
it never aborts the report nor enters a table.

Paper numbers come from ``deephash.published``; for the embedded sets the paper's numbers
of the real data set they stand in for are shown, labelled with that data set's name.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import os
import sys
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from deephash import claims, plots, published, validation
from deephash.io import atomic_write

METRICS = ("map", "precision_radius_2", "n_h", "map_l", "map_i")
METRIC_NAMES = {
    "map": "mAP",
    "precision_radius_2": "precision within Hamming radius 2",
    "n_h": "n_h (distinct LabNet codes)",
    "map_l": "map_l (LabNet label codes)",
    "map_i": "map_i (ImgNet image codes)",
}
UNIT_METRICS = ("map", "precision_radius_2", "map_l", "map_i")  # values in [0, 1]
NOT_TRANSCRIBED = "n/t"


# --------------------------------------------------------------------------- collecting
def find_runs(paths: Iterable[str]) -> list[str]:
    """Run directories (holding ``metrics.json``) among ``paths`` and below them, sorted."""
    found: set[str] = set()
    for p in paths:
        if not os.path.isdir(p):
            raise FileNotFoundError(f"no run directory at {p!r}")
        if os.path.exists(os.path.join(p, "metrics.json")):
            found.add(os.path.abspath(p))
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if "metrics.json" in filenames:
                found.add(os.path.abspath(dirpath))
                dirnames[:] = []
    if not found:
        raise FileNotFoundError(
            f"no run directories (with metrics.json) under {', '.join(map(str, paths))}"
        )
    return sorted(found)


def collect(run_dirs: Iterable[str], skipped: list | None = None) -> list[dict]:
    """One row per run: dataset, method, bits, seed, checksum, conventions, protocol, metrics.

    A run directory that cannot be used (a damaged JSON file, a file that differs from its
    ``manifest.json``, missing fields) is left out; with ``skipped`` (a list) it is recorded
    there as ``(run_dir, why)``, else the error is raised."""
    from deephash import runs

    rows = []
    for d in run_dirs:
        try:
            r = runs.load_run(d)
            _check_row(r)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if skipped is None:
                raise
            skipped.append(
                (
                    os.path.abspath(d),
                    str(e)
                    if isinstance(e, (OSError, ValueError))
                    else f"{os.path.join(d, 'metrics.json')}: missing or malformed field {e}",
                )
            )
            continue
        m, cfg, split = r["metrics"], r.get("config", {}), r.get("split", {})
        rows.append(
            {
                "run_dir": r["dir"],
                "dataset": m["dataset"],
                "method": m["method"],
                "bits": int(m["bits"]),
                "seed": int(cfg.get("train", {}).get("seed", 0)),
                "checksum": m.get("checksum", split.get("checksum", "")),
                "conventions": m.get("conventions", {}),
                "protocol": split.get("protocol", {}),
                "sizes": split.get("sizes", {}),
                "metrics": m,
            }
        )
    return rows


def _check_row(r: dict) -> None:
    """KeyError/TypeError/ValueError unless a loaded run has what the report reads."""
    m = r["metrics"]
    for key in ("dataset", "method", "bits"):
        if key not in m:
            raise KeyError(key)
    int(m["bits"])
    for metric in METRICS:
        if metric in m and not validation.is_number(m[metric]):
            raise TypeError(f"{r['dir']}: metrics.json {metric!r} is not a number: {m[metric]!r}")


def _mean_curve(curves: list[dict]) -> dict:
    keys = curves[0].keys()
    return {k: np.mean([np.asarray(c[k], float) for c in curves], axis=0).tolist() for k in keys}


def aggregate(rows: Sequence[dict]) -> dict:
    """``{(dataset, method, bits): {"n": runs, metric: mean, metric + "_std": std,
    "pr_curve": mean curve, "precision_at_n": {N: mean}}}``."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["method"], r["bits"])].append(r["metrics"])
    out = {}
    for key, ms in groups.items():
        agg: dict = {"n": len(ms)}
        for metric in METRICS:
            vals = [float(m[metric]) for m in ms if validation.is_number(m.get(metric))]
            if vals:
                agg[metric] = float(np.mean(vals))
                agg[metric + "_std"] = claims.seed_std(vals)
        pr = [m["pr_curve"] for m in ms if m.get("pr_curve")]
        if pr and len({len(c["precision"]) for c in pr}) == 1:
            agg["pr_curve"] = _mean_curve(pr)
        pn = [m["precision_at_n"] for m in ms if m.get("precision_at_n")]
        if pn:
            ns = sorted(set.intersection(*(set(p) for p in pn)), key=int)
            agg["precision_at_n"] = {n: float(np.mean([p[n] for p in pn])) for n in ns}
        out[key] = agg
    return out


def infer_paper(method_names: Iterable[str]) -> str:
    """ "dsrh" when any DSRH-family or NINH/PCAH run is present (DSRH's figures), else "dseh"."""
    names = set(method_names)
    return "dsrh" if names & {"dsrh", "drh", "drh+", "ninh", "pcah"} else "dseh"


# --------------------------------------------------------------------------- tables
def _fmt(metric: str, v) -> str:
    if v is None:
        return ""
    if metric == "n_h":
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.4f}"


def _cell(metric: str, a: dict, spread: bool) -> str:
    """``mean`` or, over several seeds with ``spread``, ``mean ± std``."""
    text = _fmt(metric, a.get(metric))
    if spread and text and a.get("n", 1) > 1 and a.get(metric + "_std") is not None:
        text += f" ± {_fmt(metric, a[metric + '_std'])}"
    return text


def table_rows(
    agg: dict,
    dataset: str,
    metric: str,
    method_order: Sequence[str],
    bits: Sequence[int],
    paper: str | None,
    spread: bool = False,
) -> list[list[str]]:
    """Rows ``[method, source, value per bits...]`` of one metric table: a "this run" row
    per method with results, and a "paper (<data set>)" row when the paper's table has
    that method (``n/t`` = in the paper, not transcribed here). ``spread``: cells averaged
    over several seeds read ``mean ± std`` (the sample standard deviation over the seeds)."""
    ref = published.reference_dataset(dataset, paper) if paper else None
    tables = published.PAPER_TABLES.get(paper, ()) if paper else ()
    tables = tuple(t for t in tables if t in published.available())
    label = f"paper ({published.dataset_name(ref)})" if ref else None
    rows = []
    for m in method_order:
        cells = [agg.get((dataset, m, b), {}).get(metric) for b in bits]
        if any(c is not None for c in cells):
            rows.append(
                [
                    m,
                    "this run",
                    *(_cell(metric, agg.get((dataset, m, b), {}), spread) for b in bits),
                ]
            )
        if ref:
            recs = {r.bits: r for r in published.lookup(ref, m, metric=metric, tables=tables)}
            if recs:
                rows.append(
                    [
                        m,
                        label,
                        *(
                            (
                                NOT_TRANSCRIBED
                                if recs[b].value is None
                                else _fmt(metric, recs[b].value)
                            )
                            if b in recs
                            else ""
                            for b in bits
                        ),
                    ]
                )
    return rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c if c != "" else "-" for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _csv_text(header, rows) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if c == NOT_TRANSCRIBED else c for c in row])
    return buf.getvalue()


def dataset_header(rows: Sequence[dict], dataset: str) -> str:
    """Markdown lines naming the data set, protocol, checksums, seeds and conventions."""
    mine = [r for r in rows if r["dataset"] == dataset]
    proto = mine[0]["protocol"]
    sizes = mine[0]["sizes"]
    sums = sorted({(r["seed"], r["checksum"]) for r in mine})
    convs = sorted({json.dumps(r["conventions"], sort_keys=True) for r in mine})
    depth = proto.get("map_depth")
    lines = [
        f"**data set**: {dataset} ({'multi' if proto.get('multilabel') else 'single'}-label, "
        f"{proto.get('num_classes', '?')} classes; query {sizes.get('query', '?')}, train "
        f"{sizes.get('train', '?')}, database {sizes.get('database', '?')})",
        f"**protocol**: {proto.get('description', '?')}; mAP depth: "
        f"{'all' if depth is None else depth}",
        "**split checksum**: " + ", ".join(f"seed {s}: `{c[:16]}`" for s, c in sums),
        "**metric conventions**: "
        + " | ".join(", ".join(f"{k}={v}" for k, v in json.loads(c).items()) for c in convs),
    ]
    return "  \n".join(lines)


# --------------------------------------------------------------------------- plots
_plt, _save_png = plots.pyplot, plots.save_png


_MARKERS = "osD^v<>pPX*h"


def line_plot(
    series: dict,
    path: str,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    xticks=None,
    xlim=None,
    ylim=(0, 1.02),
) -> str:
    """``series = {label: (x, y)}``: one line per label, each with its own colour and
    marker (up to 20 distinguishable), the legend outside the axes; PNG to ``path``."""
    if not series:
        raise ValueError("line_plot: nothing to plot")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    cmap = plt.get_cmap("tab20" if len(series) > 10 else "tab10")
    for i, (label, (x, y)) in enumerate(series.items()):
        if len(x) != len(y):
            raise ValueError(f"line_plot: {label!r} has {len(x)} x values but {len(y)} y values")
        ax.plot(
            x,
            y,
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=4,
            color=cmap(i % cmap.N),
            label=label,
        )
    if xticks is not None:
        ax.set_xticks(list(xticks))
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save_png(fig, path)


def precision_at_n_plot(curves: dict, path: str, title: str) -> str:
    """``curves = {method: {N: precision}}``: precision of the top N against N."""
    series = {
        label: ([int(n) for n in sorted(pn, key=int)], [pn[n] for n in sorted(pn, key=int)])
        for label, pn in curves.items()
    }
    return line_plot(
        series, path, xlabel="N (top returned items)", ylabel="precision@N", title=title
    )


def pr_plot(curves: dict, path: str, title: str) -> str:
    """``curves = {method: {"precision": [...], "recall": [...]}}`` over Hamming radii 0..k."""
    series = {label: (list(c["recall"]), list(c["precision"])) for label, c in curves.items()}
    return line_plot(series, path, xlabel="recall", ylabel="precision", title=title, xlim=(0, 1.02))


def metric_vs_bits_plot(results: dict, path: str, metric: str, title: str) -> str:
    """``results = {method: {bits: value}}``; n_h is plotted on its own scale."""
    bits = sorted({b for v in results.values() for b in v})
    series = {m: (sorted(v), [v[b] for b in sorted(v)]) for m, v in results.items()}
    return line_plot(
        series,
        path,
        xlabel="bits",
        ylabel=METRIC_NAMES.get(metric, metric),
        title=title,
        xticks=bits,
        ylim=(0, 1.02) if metric in UNIT_METRICS else None,
    )


# --------------------------------------------------------------------------- report
def write_report(
    run_dirs: Sequence[str],
    out: str,
    *,
    paper: str | None = "auto",
    title: str | None = None,
    methods: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    curve_bits: Sequence[int] | None = None,
    plots: bool = True,
    retrieval_bits: int | None = None,
    with_claims: bool = True,
) -> dict:
    """Write ``out/report.md``, one CSV per (data set, metric) and the PNG plots.

    ``paper``: "dsrh", "dseh", None (no paper rows) or "auto" (:func:`infer_paper`).
    ``methods``: row order (default: the order found). ``metrics``: which tables
    (default: every one of :data:`METRICS` the runs have). ``curve_bits``: code lengths of
    the PR and precision@N plots (default: all). ``retrieval_bits``: draw the qualitative
    retrieval figure (``claims.retrieval_figure``) at that code length. ``with_claims``: a
    section checking the papers' qualitative claims with the seed spread (``claims.check``).
    Returns ``{"markdown", "files", "tables"}``
    where ``tables[(dataset, metric)] = (header, rows)``.
    """
    skipped: list = []
    rows = collect(find_runs(run_dirs), skipped)
    if not rows:
        raise ValueError(
            "no usable run directories: " + "; ".join(f"{d}: {why}" for d, why in skipped)
        )
    found_methods = list(dict.fromkeys(r["method"] for r in rows))
    order = [m for m in (methods or found_methods) if m in found_methods] + [
        m for m in found_methods if methods and m not in methods
    ]
    if paper == "auto":
        paper = infer_paper(found_methods)
    if paper not in (None, "dsrh", "dseh"):
        raise ValueError(f"paper must be 'auto', 'dsrh', 'dseh' or None, got {paper!r}")
    os.makedirs(out, exist_ok=True)
    ctx = _Report(rows, aggregate(rows), order, paper, out, metrics, curve_bits, retrieval_bits)
    md = [f"# {title or 'Retrieval results'}", ""]
    if paper:
        md += [
            f"Published numbers: {paper.upper()} ({', '.join(published.PAPER_TABLES[paper])} "
            "in `deephash.published`); `n/t` = in the paper, not transcribed here; `-` = not "
            "run / not published.",
            "",
        ]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        md += _dataset_section(ctx, dataset, plots)
    found_claims = claims.check(rows, paper) if with_claims else []
    if found_claims:
        claims_md = claims.markdown(found_claims)
        ctx.headers["claims"] = claims_md
        md += ["## the papers' claims on these runs", "", claims_md, ""]
    text = "\n".join(md + _run_list(rows, skipped, out))
    path = os.path.join(out, "report.md")
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return {
        "markdown": text,
        "files": [path, *ctx.files],
        "tables": ctx.tables,
        "headers": ctx.headers,
        "skipped": skipped,
    }


@dataclasses.dataclass
class _Report:
    """What :func:`write_report`'s steps read, and what they add (files, tables, headers)."""

    rows: list
    agg: dict
    order: list
    paper: str | None
    out: str
    metrics: Sequence[str] | None
    curve_bits: Sequence[int] | None
    retrieval_bits: int | None
    files: list = dataclasses.field(default_factory=list)
    tables: dict = dataclasses.field(default_factory=dict)
    headers: dict = dataclasses.field(default_factory=dict)


def _dataset_section(ctx: _Report, dataset: str, plots: bool) -> list[str]:
    """One data set's markdown: header, tables (also written as CSV), plots."""
    bits = sorted({r["bits"] for r in ctx.rows if r["dataset"] == dataset})
    ctx.headers[dataset] = _dataset_head(ctx, dataset)
    md = [f"## {dataset}", "", ctx.headers[dataset], ""]
    present = [
        m
        for m in METRICS
        if any(m in ctx.agg.get((dataset, mm, b), {}) for mm in ctx.order for b in bits)
    ]
    shown = [m for m in (ctx.metrics or present) if m in present]
    for metric in shown:
        md += _table(ctx, dataset, metric, bits)
    for key in _FLAGGED:
        md += _flagged_section(ctx, dataset, key)
    if plots:
        figs = _vs_bits_plots(ctx, dataset, bits, ctx.metrics or present)
        figs += _curve_plots(ctx, dataset, bits)
        figs += _retrieval_plot(ctx, dataset, bits)
        if figs:
            md += (
                ["### plots", ""]
                + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figs]
                + [""]
            )
        ctx.files += figs
    return md


def _collapse_item(r: dict, epoch: int, es: dict) -> str:
    best = es.get("best_validation_map")
    return (
        f"one code from epoch {epoch}; the best weights kept are epoch {es.get('best_epoch')}'s "
        "(validation mAP "
        + (f"{best:.4f}" if validation.is_number(best) else "-")
        + f"), query mAP {_fmt('map', r['metrics'].get('map'))}"
    )


def _near_chance_item(r: dict, fraction: float, es: dict) -> str:
    return (
        f"best validation mAP {es['best_validation_map']:.4f} against "
        f"{es['validation_chance_map']:.4f} for a model that learned nothing ({fraction:.0%} "
        f"of the gap to 1 closed), query mAP {_fmt('map', r['metrics'].get('map'))}"
    )


def _still_improving_item(r: dict, gain: float, es: dict) -> str:
    curve = es["validation_curve"]
    n = min(int(es["patience"]), len(curve["map"]) - 1)  # validations since the earlier best
    best = es["best_validation_map"]
    return (
        f"best validation mAP {best - gain:.4f} up to epoch {curve['epoch'][-n - 1]}, "
        f"{best:.4f} by epoch {curve['epoch'][-1]} (epoch cap {es['epoch_cap']}), query mAP "
        f"{_fmt('map', r['metrics'].get('map'))}"
    )


# the failed runs a report names: header key -> (which runs, intro, one line per run)
_FLAGGED = {
    "collapses": (
        claims.collapsed,
        "**Training collapses.** These runs' training collapsed every validation image to one "
        "code (a saturated hash layer no gradient moves); early stopping kept the best weights "
        "from before the collapse, so their numbers measure a failed training, not the method "
        "at its best:",
        _collapse_item,
    ),
    "near chance": (
        claims.near_chance,
        "**Near chance.** These runs trained without collapsing but did not learn: their best "
        f"validation mAP closed less than {claims.NEAR_CHANCE:.0%} of the gap between the "
        "validation mAP of a model that learned nothing (every image on one code) and 1, so "
        "their numbers measure a training that failed, not a ranking of methods:",
        _near_chance_item,
    ),
    "still improving": (
        claims.still_improving,
        "**Still improving at the epoch cap.** These runs ended at the preset's epoch cap "
        "before early stopping fired, and their best validation mAP rose by more than "
        f"{claims.STILL_IMPROVING} over their last patience window: their numbers are those of "
        "a training cut short, below the method's plateau (`--epochs` raises the cap):",
        _still_improving_item,
    ),
}


def _flagged_section(ctx: _Report, dataset: str, key: str) -> list[str]:
    """The section ``key`` of :data:`_FLAGGED`: the runs of ``dataset`` it names, one line
    each; also the header ``"<dataset> <key>"``, so that run_all's index shows it."""
    which, intro, item = _FLAGGED[key]
    rows = [r for r in ctx.rows if r["dataset"] == dataset]
    flags = which(rows)
    items = [
        f"- {r['method']}, {r['bits']} bits, seed {r['seed']}: "
        + item(r, value, r["metrics"]["early_stopping"])
        for r in rows
        if (value := flags.get((dataset, r["method"], r["bits"]), {}).get(r["seed"])) is not None
    ]
    if not items:
        return []
    text = "\n".join([intro, "", *items])
    ctx.headers[f"{dataset} {key}"] = text
    return [text, ""]


def _dataset_head(ctx: _Report, dataset: str) -> str:
    """The data set's header: protocol and split, the stand-in note, the seeds."""
    ref = published.reference_dataset(dataset, ctx.paper) if ctx.paper else None
    head = [dataset_header(ctx.rows, dataset)]
    if ref and ref != dataset:
        name = published.dataset_name(ref)
        head.append(
            f"The embedded set `{dataset}` stands in for {name}: the paper rows are {name} "
            "numbers, for scale only (a different data set)."
        )
    if len({r["seed"] for r in ctx.rows if r["dataset"] == dataset}) > 1:
        counts = sorted({ctx.agg[k]["n"] for k in ctx.agg if k[0] == dataset})
        head.append(
            "Values are mean ± sample standard deviation (ddof=1) over the seeds (each seed "
            f"also draws the split): {' or '.join(map(str, counts))} seed(s) per cell"
            + (" (fewer seeds where a cell has no ±)" if len(counts) > 1 else "")
            + "."
        )
    return "\n\n".join(head)


def _table(ctx: _Report, dataset: str, metric: str, bits: list) -> list[str]:
    """One metric's table: markdown (mean ± std) and ``<dataset>_<metric>.csv`` (means)."""
    header = ["method", "source", *(f"{b} bits" for b in bits)]
    trows = table_rows(ctx.agg, dataset, metric, ctx.order, bits, ctx.paper, spread=True)
    ctx.tables[(dataset, metric)] = (header, trows)
    path = os.path.join(ctx.out, f"{dataset}_{metric}.csv")
    with atomic_write(path, "w", encoding="utf-8") as f:  # numbers only: the means
        f.write(
            _csv_text(
                ["method", "source", *map(str, bits)],
                table_rows(ctx.agg, dataset, metric, ctx.order, bits, ctx.paper),
            )
        )
    ctx.files.append(path)
    return [f"### {METRIC_NAMES.get(metric, metric)}", "", markdown_table(header, trows), ""]


def _vs_bits_plots(ctx: _Report, dataset: str, bits: list, wanted) -> list[str]:
    """mAP and precision within radius 2 against the code length (two code lengths or more)."""
    figs = []
    for metric in ("map", "precision_radius_2"):
        series = {
            m: {
                b: ctx.agg[(dataset, m, b)][metric]
                for b in bits
                if metric in ctx.agg.get((dataset, m, b), {})
            }
            for m in ctx.order
        }
        series = {m: v for m, v in series.items() if v}
        if series and metric in wanted and len(bits) > 1:
            figs.append(
                metric_vs_bits_plot(
                    series,
                    os.path.join(ctx.out, f"{dataset}_{metric}_vs_bits.png"),
                    metric,
                    title=f"{METRIC_NAMES[metric]} vs code length: {dataset}",
                )
            )
    return figs


def _curve_plots(ctx: _Report, dataset: str, bits: list) -> list[str]:
    """Precision-recall and precision@N curves at each of ``curve_bits`` (default: all)."""
    figs = []
    for b in [b for b in bits if ctx.curve_bits is None or b in ctx.curve_bits]:
        cells = {m: ctx.agg.get((dataset, m, b), {}) for m in ctx.order}
        pr = {m: c["pr_curve"] for m, c in cells.items() if "pr_curve" in c}
        if pr:
            path = os.path.join(ctx.out, f"{dataset}_pr_{b}b.png")
            figs.append(pr_plot(pr, path, title=f"Precision-recall @ {b} bits: {dataset}"))
        pn = {m: c["precision_at_n"] for m, c in cells.items() if c.get("precision_at_n")}
        if pn:
            path = os.path.join(ctx.out, f"{dataset}_precision_at_n_{b}b.png")
            figs.append(precision_at_n_plot(pn, path, title=f"Precision@N @ {b} bits: {dataset}"))
    return figs


def _retrieval_plot(ctx: _Report, dataset: str, bits: list) -> list[str]:
    """The qualitative retrieval figure at ``retrieval_bits`` (when run at that length)."""
    b = ctx.retrieval_bits
    if b is None or b not in bits:
        return []
    path = os.path.join(ctx.out, f"{dataset}_retrieval_{b}b.png")
    fig = claims.retrieval_figure(ctx.rows, dataset, b, path, methods=ctx.order)
    return [fig] if fig else []


def _run_list(rows: list, skipped: list, out: str) -> list[str]:
    """The report's last sections: the runs, and the directories skipped."""
    md = [
        "## runs",
        "",
        *(f"- `{os.path.relpath(r['run_dir'], os.path.abspath(out))}`" for r in rows),
        "",
    ]
    if skipped:
        md += [
            "## skipped run directories",
            "",
            *(f"- `{os.path.relpath(d, os.path.abspath(out))}`: {why}" for d, why in skipped),
            "",
        ]
    return md


def format_tables(report: dict) -> str:
    """The report's tables as plain text for a terminal (``paper`` and ``this run`` rows),
    each data set's header (protocol, split checksum, conventions) first."""
    out = []
    shown: set = set()
    for (dataset, metric), (header, rows) in report["tables"].items():
        if dataset not in shown and dataset in report.get("headers", {}):
            shown.add(dataset)
            out += [
                report["headers"][dataset].replace("**", "").replace("`", "").replace("  \n", "\n"),
                "",
            ]
        widths = [
            max(len(str(h)), *(len(str(r[i]) or "-") for r in rows)) if rows else len(h)
            for i, h in enumerate(header)
        ]
        out.append(f"{dataset} - {METRIC_NAMES.get(metric, metric)}")
        out.append("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
        out += ["  ".join((str(c) or "-").ljust(w) for c, w in zip(r, widths)) for r in rows]
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m deephash.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dirs", nargs="+", help="run directories, or directories holding them")
    parser.add_argument(
        "--out", required=True, help="output directory for report.md, CSV and PNG files"
    )
    parser.add_argument(
        "--paper",
        default="auto",
        choices=["auto", "dsrh", "dseh", "none"],
        help="whose published numbers to show beside the runs",
    )
    parser.add_argument("--title", default=None)
    parser.add_argument("--methods", default=None, help="comma-separated row order")
    parser.add_argument(
        "--curve_bits", default=None, help="comma-separated code lengths of the PR / P@N plots"
    )
    args = parser.parse_args(argv)
    try:
        rep = write_report(
            args.run_dirs,
            args.out,
            paper=None if args.paper == "none" else args.paper,
            title=args.title,
            methods=args.methods.split(",") if args.methods else None,
            curve_bits=[int(b) for b in args.curve_bits.split(",")] if args.curve_bits else None,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_tables(rep))
    for d, why in rep.get("skipped", []):
        print(f"skipped {d}: {why}", file=sys.stderr)
    print(f"report: {rep['files'][0]} ({len(rep['files'])} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "find_runs",
    "collect",
    "aggregate",
    "infer_paper",
    "table_rows",
    "markdown_table",
    "dataset_header",
    "line_plot",
    "precision_at_n_plot",
    "pr_plot",
    "metric_vs_bits_plot",
    "write_report",
    "format_tables",
    "main",
    "METRICS",
]
