"""The papers' qualitative claims checked on a set of runs, with the spread over seeds, and
the qualitative retrieval figure (top-ranked database images of a few fixed queries).

Claims (each evaluated per data set and code length where the runs have the methods):

* DSRH paper: ``DSRH > DRH+ > DRH`` (the contribution of the orthogonality and the
  classification terms);
* both papers: deep methods above shallow ones (each deep method against the best shallow
  method of the same runs);
* DSEH paper: DSEH above every baseline (against the best other method).

A difference is the mean over seeds of the per-seed difference (runs paired by seed, which
also draws the split), with its sample standard deviation over seeds (``seed_std``: ddof=1,
the convention of every spread this library prints). A claim *holds* where the
mean difference is positive, and *clearly* holds where it exceeds the standard deviation
(one seed: no spread, reported as such). A comparison that pairs a run whose training
collapsed to one code (``collapsed``: its early-stopping record's ``collapsed_at_epoch``)
names that run beside its verdict: the difference then measures a failed training, not
the method at its best; so does one that pairs a run that trained without learning
(``near_chance``: its best validation mAP closed less than :data:`NEAR_CHANCE` of the gap
between the validation mAP of a model that learned nothing and 1), and one that pairs a run
cut short by its epoch cap while still improving (``still_improving``: early stopping never
fired and its best validation mAP rose by more than :data:`STILL_IMPROVING` over its last
patience window, so the number is below the method's plateau). The Table 2 ablation
order is checked by ``experiments/dseh_ablation.py`` (its table states whether the paper's
order holds).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

import numpy as np

from deephash import codes, validation

DEEP = ("dsrh", "drh+", "drh", "ninh", "dseh", "hashnet", "dhn", "dpsh", "cnnh")
SHALLOW = ("ksh", "sdh", "itq-cca", "itq", "sh", "lsh", "pcah")
# A run "near chance" closed less than this fraction of the gap between the validation mAP
# of a model that learned nothing (every image on one code) and 1. In the committed results
# the triplet-only methods on digits_multi (query mAP at the level of random projections)
# close 0.07-0.19 of it; every other deep run closes 0.72 or more.
NEAR_CHANCE = 0.25
# A run "still improving" ended at its epoch cap (early stopping never fired) while its best
# validation mAP rose by more than this over its last patience window. In the committed
# results 16 runs gain 0.012-0.139 there (DPSH and DHN on digits_multi, NINH on digits, ...);
# the other 21 runs that end at the cap gain 0.007 or less (a plateau).
STILL_IMPROVING = 0.01


def seed_std(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof=1) of per-seed values; 0.0 for a single seed.
    Every ``mean ± std`` this library prints (tables, claims, Table 2) uses it."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def _by_seed(rows: Sequence[dict], metric: str) -> dict:
    """``{(dataset, method, bits): {seed: value}}``."""
    out: dict = defaultdict(dict)
    for r in rows:
        v = r["metrics"].get(metric)
        if validation.is_number(v):
            out[(r["dataset"], r["method"], r["bits"])][r["seed"]] = float(v)
    return out


def collapsed(rows: Sequence[dict]) -> dict:
    """``{(dataset, method, bits): {seed: epoch}}`` of the runs whose training ended with
    every validation image on one code (``codes.collapse_start`` of the validation curve's
    ``distinct_codes``; a record without the curve: its ``collapsed_at_epoch``)."""
    out: dict = defaultdict(dict)
    for r in rows:
        es = r["metrics"].get("early_stopping") or {}
        curve = es.get("validation_curve") or {}
        epoch = es.get("collapsed_at_epoch")
        if curve.get("distinct_codes") and len(curve["distinct_codes"]) == len(curve["epoch"]):
            start = codes.collapse_start(curve["distinct_codes"])
            epoch = None if start is None else curve["epoch"][start]
        if epoch is not None:
            out[(r["dataset"], r["method"], r["bits"])][r["seed"]] = int(epoch)
    return out


def near_chance(rows: Sequence[dict]) -> dict:
    """``{(dataset, method, bits): {seed: fraction}}`` of the runs that trained without
    learning: the fraction of the gap between the validation mAP of a model that learned
    nothing (the record's ``validation_chance_map``) and 1 that their best validation mAP
    closed is below :data:`NEAR_CHANCE`. A collapsed run (:func:`collapsed`) is named as
    such instead; a record without the chance level (older runs, shallow methods) is not
    judged."""
    failed = collapsed(rows)
    out: dict = defaultdict(dict)
    for r in rows:
        es = r["metrics"].get("early_stopping") or {}
        best, chance = es.get("best_validation_map"), es.get("validation_chance_map")
        key = (r["dataset"], r["method"], r["bits"])
        if not (validation.is_number(best) and validation.is_number(chance)) or chance >= 1:
            continue
        fraction = (float(best) - float(chance)) / (1.0 - float(chance))
        if fraction < NEAR_CHANCE and r["seed"] not in failed.get(key, {}):
            out[key][r["seed"]] = fraction
    return out


def still_improving(rows: Sequence[dict]) -> dict:
    """``{(dataset, method, bits): {seed: gain}}`` of the runs cut short by their epoch cap:
    early stopping never fired (``stopped_early`` false, patience on) and the best
    validation mAP rose by more than :data:`STILL_IMPROVING` over the last ``patience``
    validations (``gain`` = the best of the curve - the best before those validations; the
    whole curve when it is that short: the best - its first value). A collapsed or
    near-chance run is named as such instead; DSEH's records (a patience per ImgNet phase)
    and records without the curve are not judged."""
    failed = [collapsed(rows), near_chance(rows)]
    out: dict = defaultdict(dict)
    for r in rows:
        es = r["metrics"].get("early_stopping") or {}
        maps = (es.get("validation_curve") or {}).get("map") or []
        patience = es.get("patience") or 0
        if es.get("stopped_early") is not False or patience < 1 or "patience_counts" in es:
            continue
        if not maps or not all(validation.is_number(v) for v in maps):
            continue
        key = (r["dataset"], r["method"], r["bits"])
        before = max(maps[:-patience]) if len(maps) > patience else maps[0]
        gain = float(max(maps)) - float(before)
        if gain > STILL_IMPROVING and not any(r["seed"] in f.get(key, {}) for f in failed):
            out[key][r["seed"]] = gain
    return out


def _diff(a: dict, b: dict) -> tuple[float, float, int] | None:
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    d = np.array([a[s] - b[s] for s in seeds])
    return float(d.mean()), seed_std(d), len(seeds)


def _best_of(
    vals: dict, dataset: str, bits: int, methods: Sequence[str]
) -> tuple[str, dict] | None:
    """The method with the highest mean among ``methods`` and its per-seed values."""
    cands = [
        (np.mean(list(vals[(dataset, m, bits)].values())), m)
        for m in methods
        if (dataset, m, bits) in vals
    ]
    if not cands:
        return None
    _, m = max(cands)
    return m, vals[(dataset, m, bits)]


def _verdict(d: tuple[float, float, int]) -> str:
    mean, std, n = d
    if mean <= 0:
        return "does **not** hold"
    if n < 2:
        return "holds (one seed, no spread)"
    return "holds clearly" if mean > std else "holds within the seed spread"


def _fmt(d: tuple[float, float, int]) -> str:
    mean, std, n = d
    return f"{mean:+.4f}" + (f" ± {std:.4f} ({n} seeds)" if n > 1 else " (1 seed)")


def check(rows: Sequence[dict], paper: str | None, metric: str = "map") -> list[dict]:
    """The claims of ``paper`` ("dsrh", "dseh"; None: both) on ``rows``
    (``report.collect``): a list of ``{"claim", "dataset", "bits", "comparison",
    "difference": (mean, std, n), "verdict", "collapsed", "near_chance", "still_improving"}``
    (``"method seed s"`` of the compared runs whose training collapsed to one code, that
    trained without learning: :func:`near_chance`, or that the epoch cap cut short:
    :func:`still_improving`)."""
    vals = _by_seed(rows, metric)
    flags = {
        "collapsed": collapsed(rows),
        "near_chance": near_chance(rows),
        "still_improving": still_improving(rows),
    }
    out = []
    for dataset, bits in sorted({(d, b) for d, _, b in vals}):
        have = {m for d, m, b in vals if d == dataset and b == bits}
        found = []
        if paper in (None, "dsrh"):
            found += _dsrh_order(vals, dataset, bits, have)
        found += _deep_over_shallow(vals, dataset, bits, have)
        if paper in (None, "dseh") and "dseh" in have:
            found += _dseh_over_baselines(vals, dataset, bits, have)
        out += [
            {
                "claim": claim,
                "dataset": dataset,
                "bits": bits,
                "comparison": comparison,
                "difference": d,
                "verdict": _verdict(d),
                **{
                    name: [
                        f"{m} seed {seed}"
                        for m in pair
                        for seed in sorted(runs.get((dataset, m, bits), {}))
                        if seed in vals[(dataset, pair[0], bits)]
                        and seed in vals[(dataset, pair[1], bits)]
                    ]
                    for name, runs in flags.items()
                },
            }
            for claim, comparison, d, pair in found
            if d is not None
        ]
    return out


def _dsrh_order(vals: dict, dataset: str, bits: int, have: set) -> list[tuple]:
    """DSRH > DRH+ > DRH: ``(claim, comparison, difference)`` of each pair present."""
    return [
        (
            "DSRH > DRH+ > DRH",
            f"{hi} - {lo}",
            _diff(vals[(dataset, hi, bits)], vals[(dataset, lo, bits)]),
            (hi, lo),
        )
        for hi, lo in (("dsrh", "drh+"), ("drh+", "drh"))
        if {hi, lo} <= have
    ]


def _deep_over_shallow(vals: dict, dataset: str, bits: int, have: set) -> list[tuple]:
    """Every deep method against the best shallow one."""
    best = _best_of(vals, dataset, bits, [m for m in SHALLOW if m in have])
    if not best:
        return []
    return [
        (
            "deep methods above shallow ones",
            f"{m} - {best[0]} (best shallow)",
            _diff(vals[(dataset, m, bits)], best[1]),
            (m, best[0]),
        )
        for m in DEEP
        if m in have
    ]


def _dseh_over_baselines(vals: dict, dataset: str, bits: int, have: set) -> list[tuple]:
    """DSEH against the best method outside the DSEH family."""
    others = [m for m in have if m != "dseh" and not m.startswith("dseh-")]
    best = _best_of(vals, dataset, bits, others)
    if not best:
        return []
    return [
        (
            "DSEH above every baseline",
            f"dseh - {best[0]} (best baseline)",
            _diff(vals[(dataset, "dseh", bits)], best[1]),
            ("dseh", best[0]),
        )
    ]


# the failed runs a comparison can pair (keys of ``check``'s results): the summary line's
# words for a run of the kind, and the verdict's label
_FLAG_NOTES = (
    ("collapsed", "whose training collapsed to one code", "training collapsed to one code"),
    ("near_chance", "that trained without learning (near chance)", "near chance"),
    (
        "still_improving",
        "cut short by the epoch cap while still improving",
        "still improving at the epoch cap",
    ),
)


def markdown(results: Sequence[dict], metric_name: str = "mAP") -> str:
    """The claims as markdown: a summary line per claim and data set, then a table."""
    if not results:
        return ""
    lines = [
        f"Differences in {metric_name}: mean over seeds of the per-seed difference ± its sample "
        "standard deviation (runs paired by seed; each seed also draws the split). "
        "*holds clearly*: the mean difference exceeds the spread; *within the seed spread*: "
        "positive but not beyond one standard deviation.",
        "",
    ]
    groups: dict = defaultdict(list)
    for r in results:
        groups[(r["claim"], r["dataset"])].append(r)
    for (claim, dataset), rs in groups.items():
        held = sum(r["difference"][0] > 0 for r in rs)
        notes = [
            f"{n} of them pair a run {which}"
            for key, which, _ in _FLAG_NOTES
            if (n := sum(bool(r.get(key)) for r in rs))
        ]
        lines.append(
            f"- **{claim}** on {dataset}: holds in {held} of {len(rs)} comparisons"
            + (f" ({'; '.join(notes)})" if notes else "")
            + (
                f"; smallest margin {min(rs, key=lambda r: r['difference'][0])['comparison']} at "
                f"{min(rs, key=lambda r: r['difference'][0])['bits']} bits: "
                f"{_fmt(min(rs, key=lambda r: r['difference'][0])['difference'])}"
                if rs
                else ""
            )
        )
    lines += [
        "",
        "| claim | data set | bits | comparison | difference | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['claim']} | {r['dataset']} | {r['bits']} | {r['comparison']} | "
        f"{_fmt(r['difference'])} | {r['verdict']}"
        + "".join(f" ({label}: {', '.join(r[key])})" for key, _, label in _FLAG_NOTES if r.get(key))
        + " |"
        for r in results
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- retrieval figure
def retrieval_figure(
    rows: Sequence[dict],
    dataset: str,
    bits: int,
    path: str,
    *,
    methods: Sequence[str] | None = None,
    num_queries: int = 3,
    top: int = 8,
    seed: int | None = None,
) -> str | None:
    """For ``num_queries`` fixed queries (the first query of each of the first classes, so
    the same images for every method), each method's ``top`` database items ranked by Hamming
    distance (ties: database index ascending), relevant ones framed green, others red;
    one row per (query, method). Uses the runs of ``seed`` (default: the smallest seed) at
    ``bits``; images come from the data set (in-memory sets only: returns None for
    file-based ones). Returns the PNG path."""
    from deephash import data, plots, runs

    mine = [r for r in rows if r["dataset"] == dataset and r["bits"] == bits]
    if not mine:
        return None
    seed = min(r["seed"] for r in mine) if seed is None else seed
    mine = [r for r in mine if r["seed"] == seed]
    order = [m for m in (methods or []) if any(r["method"] == m for r in mine)] or list(
        dict.fromkeys(r["method"] for r in mine)
    )
    ds = data.load(dataset, seed=seed)
    if ds.query.images is None or ds.database.images is None:
        return None
    if ds.checksum != mine[0]["checksum"]:
        raise ValueError(
            f"retrieval_figure: the runs of {dataset} seed {seed} were made on split "
            f"{mine[0]['checksum'][:12]}, the loader gives {ds.checksum[:12]}"
        )
    qlabels = ds.query.labels.astype(bool)
    picked = _pick_queries(qlabels, num_queries)
    by_method = {r["method"]: r for r in mine}
    ranked = {}
    for m in order:
        run_codes = runs.load_codes(os.path.join(by_method[m]["run_dir"], "codes.npz"))
        q, db = run_codes["query"][picked], run_codes["database"]
        dist = (q[:, None, :] != db[None, :, :]).sum(-1)
        ranked[m] = np.argsort(dist, axis=1, kind="stable")[:, :top]
    plt = plots.pyplot()
    n_rows = len(picked) * len(order)
    fig, axes = plt.subplots(
        n_rows, top + 1, figsize=(0.9 * (top + 1) + 1.2, 0.95 * n_rows), squeeze=False
    )
    gray = ds.query.images.shape[-1] == 1
    row = 0
    for qi, qpos in enumerate(picked):
        for m in order:
            _show(axes[row][0], ds.query.images[qpos], gray, "black")
            axes[row][0].set_ylabel(m, rotation=0, ha="right", va="center", fontsize=8)
            for j, dpos in enumerate(ranked[m][qi]):
                relevant = bool((qlabels[qpos] & ds.database.labels[dpos].astype(bool)).any())
                colour = "tab:green" if relevant else "tab:red"
                _show(axes[row][j + 1], ds.database.images[dpos], gray, colour)
            row += 1
    axes[0][0].set_title("query", fontsize=8)
    for j in range(top):
        axes[0][j + 1].set_title(f"#{j + 1}", fontsize=8)
    fig.suptitle(
        f"Top {top} by Hamming distance, {bits} bits, {dataset} seed {seed} (green: relevant, "
        "red: not)",
        fontsize=9,
        y=1.0,
    )
    return plots.save_png(fig, path)


def _pick_queries(qlabels: np.ndarray, num_queries: int) -> list[int]:
    """The first query holding each class, classes in order, ``num_queries`` of them."""
    picked: list[int] = []
    for c in range(qlabels.shape[1]):
        hits = np.flatnonzero(qlabels[:, c])
        if len(hits) and hits[0] not in picked:
            picked.append(int(hits[0]))
        if len(picked) == num_queries:
            break
    return picked


def _show(ax, img, gray: bool, colour=None) -> None:
    """One image in ``ax``, framed in ``colour`` (no frame: None)."""
    img = np.asarray(img, np.float32) / 255.0
    ax.imshow(img[..., 0] if gray else img, cmap="gray_r" if gray else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(colour is not None)
        if colour:
            spine.set_color(colour)
            spine.set_linewidth(2.5)


__all__ = ["check", "markdown", "retrieval_figure", "DEEP", "SHALLOW"]
