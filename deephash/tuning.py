"""Hyper-parameters of the quick preset chosen on validation data, never on the queries.

The papers chose their settings on validation data; the quick preset does the same, once
per data set, and keeps the choices in versioned tables in the package that record how they
were chosen: the data set, code length and seed, the grid, every grid point's validation mAP
and the choice. ``deephash/tuned/quick.json`` is chosen on digits and applies to every data
set without a table of its own; ``deephash/tuned/quick_<dataset>.json`` to that data set
(:func:`table_for`; digits_multi has one: settings chosen on single-label digits do not
carry over to multi-label data). ``experiments/select_hparams.py --dataset=NAME``
recomputes a table (:func:`select`); :func:`quick_choice` reads it for
:func:`deephash.presets.spec`.

What is chosen (in this order, each stage using the earlier stages' choices):

1. the learning rate: for the triplet-ranking methods (DSRH, DRH, DRH+, NINH) one rate
   chosen on DRH (:data:`REPRESENTATIVE`); for each pairwise method (CNNH, DPSH, DHN,
   HashNet) its own; the DSEH family keeps its own settings. (NINH was first trained at the
   pairwise methods' 0.1, where two of three seeds collapsed to one code; DHN at DPSH's 0.1
   fell off a cliff mid-run at 16, 32 and 48 bits: validation mAP 0.63 -> 0.21 at 16 bits.)
2. the triplet margin of DRH, DRH+ and DSRH (DRH's choice) and NINH, relative to the code length:
   ``margin = margin_per_bit * bits`` (the papers' margin 1 is 1/32 per bit at 32 bits);
3. the orthogonality weight lambda of DSRH and DRH+.

Each grid point is one quick-preset run (early stopping on the validation split, see
:mod:`deephash.early_stopping`), or for the learning rates optionally one run per code
length (``lr_bits``), and in every stage optionally one run per seed (``seeds``), scored
by its best validation mAP (the mean over its runs): the validation queries
are carved from the training split and searched against the rest of it. The query split
plays no part.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import os

log = logging.getLogger(__name__)

TABLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tuned")
TABLE = os.path.join(TABLES, "quick.json")  # chosen on digits; the default of every data set
DEFAULT_DATASET = "digits"
VERSION = 1
# two values per setting keep the selection affordable on 2 CPU cores (about 11 quick runs);
# the learning rates bracket the quick preset's earlier values, 1/32 per bit is the papers'
# margin 1 at 32 bits and 0.25 the DSRH paper's lambda
GRID = {
    "lr": {
        "triplet": [0.01, 0.02],
        **{m: [0.05, 0.1] for m in ("dpsh", "dhn", "hashnet", "cnnh")},
    },
    "margin_per_bit": [1 / 32, 1 / 8],
    "ortho_weight": [0.05, 0.25],
}
STAGES = ("lr", "margin_per_bit", "ortho_weight")
NOT_SELECTED = {
    "lr": "not selected in this table: the presets' QUICK_LR (deephash.presets) apply",
    "margin_per_bit": "not selected in this table: the methods' margin 1 applies",
    "ortho_weight": "not selected in this table: the methods' lambda 0.25 applies",
}
REPRESENTATIVE = {
    "triplet": "drh",
    "dpsh": "dpsh",
    "dhn": "dhn",
    "hashnet": "hashnet",
    "cnnh": "cnnh",
}
# method -> whose margin selection it uses. DSRH takes DRH's like DRH+: with the paper's margin
# 1 beside its variants' validated 4 it was handicapped (validation mAP 0.846 against 0.904).
# A table holding a method's own margin selection (--margin_methods=dsrh) overrides this:
# on digits_multi DRH learns at no grid point, so its choice says nothing about DSRH's margin.
MARGIN_METHODS = {"dsrh": "drh", "drh": "drh", "drh+": "drh", "ninh": "ninh"}
ORTHO_METHODS = ("dsrh", "drh+")
DSRH_FAMILY = ("dsrh", "drh", "drh+")
LR_FAMILY_OF = {
    "dsrh": "triplet",
    "drh": "triplet",
    "drh+": "triplet",
    "ninh": "triplet",
    "cnnh": "cnnh",  # the pairwise methods: one learning rate each
    "dpsh": "dpsh",
    "dhn": "dhn",
    "hashnet": "hashnet",
}

_cache: dict = {}


def load_table(path: str = TABLE) -> dict:
    """The table of choices (``{}`` when the package has none: the presets' defaults apply)."""
    if path not in _cache:
        if not os.path.exists(path):
            _cache[path] = {}
        else:
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
            if table.get("version") != VERSION:
                raise ValueError(
                    f"{path}: tuning table version {table.get('version')!r}, this library reads "
                    f"version {VERSION}; recompute it with experiments/select_hparams.py"
                )
            _cache[path] = table
    return _cache[path]


def default_path(dataset: str) -> str:
    """Where the table selected on ``dataset`` goes: :data:`TABLE` for digits,
    ``deephash/tuned/quick_<dataset>.json`` for any other data set."""
    name = str(dataset).lower()
    if name == DEFAULT_DATASET:
        return TABLE
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"tuning: not a data set name. Received: dataset={dataset!r}")
    return os.path.join(TABLES, f"quick_{name}.json")


def table_for(dataset: str | None) -> str:
    """The table a quick run on ``dataset`` reads: the data set's own
    (:func:`default_path`) when the package has one, else :data:`TABLE` (chosen on digits)."""
    if dataset is None:
        return TABLE
    own = default_path(dataset)
    return own if os.path.exists(own) else TABLE


def quick_choice(
    method: str, bits: int, path: str | None = None, dataset: str | None = None
) -> tuple[dict, dict]:
    """``(values, record)`` for a quick run of ``method`` at ``bits`` on ``dataset``: the
    chosen ``lr`` and hyper-parameters (``margin``, ``ortho_weight``) from the data set's
    table (:func:`table_for`; ``path`` replaces it) and, per value, the record of its
    selection (grid, validation mAP per grid point, choice, how and on which data set it was
    chosen) for metrics.json. Methods the table does not cover get ``({}, {})``."""
    path = path or table_for(dataset)
    table = load_table(path)
    stages = table.get("stages", {})
    values: dict = {}
    record: dict = {}
    how = {
        k: table.get(k)
        for k in ("version", "dataset", "bits", "seed", "selected_on", "command", "created")
    }
    how["file"] = os.path.basename(path)
    if dataset is not None:
        how["applied_to"] = str(dataset)
    family = LR_FAMILY_OF.get(method)
    lr = stages.get("lr", {}).get(family) if family else None
    if lr:
        values["lr"] = float(lr["chosen"])
        record["lr"] = {**lr, "family": family, "table": how}
    margin_from = _margin_owner(method, stages.get("margin_per_bit", {}))
    margin = stages.get("margin_per_bit", {}).get(margin_from) if margin_from else None
    if margin:
        values["margin"] = float(margin["chosen"]) * int(bits)
        record["margin"] = {
            **margin,
            "margin": values["margin"],
            "margin_is": "margin_per_bit * bits",
            "selected_for": margin_from,
            "table": how,
        }
    ortho = stages.get("ortho_weight", {}).get(method) if method in ORTHO_METHODS else None
    if ortho:
        values["ortho_weight"] = float(ortho["chosen"])
        record["ortho_weight"] = {**ortho, "table": how}
    return values, copy.deepcopy(record)


def _margin_owner(method: str, margin_stage: dict) -> str | None:
    """Whose margin selection ``method`` uses: its own when the table holds one, else
    :data:`MARGIN_METHODS`' (None for methods without a margin)."""
    if method not in MARGIN_METHODS:
        return None
    return method if method in margin_stage else MARGIN_METHODS[method]


def _choose(scores: dict) -> float:
    """The grid value with the best score (ties: the value listed first)."""
    items = list(scores.items())
    return float(max(items, key=lambda kv: (kv[1], -items.index(kv)))[0])


def select(
    dataset: str = "digits",
    bits: int = 32,
    seed: int = 0,
    runs_dir: str = "runs/tuning",
    path: str | None = "auto",
    grid: dict | None = None,
    methods_: dict | None = None,
    stages: tuple = STAGES,
    lr_bits: tuple | None = None,
    seeds: tuple | None = None,
) -> dict:
    """Recompute the table (module docstring) with quick-preset runs on ``dataset`` at
    ``bits`` and ``seed`` through ``sweep`` (finished runs in ``runs_dir`` are reused), and
    write it to ``path`` (``"auto"``: the data set's table, :func:`default_path`; None: do
    not write). ``stages``: which of :data:`STAGES` to select
    (the others keep the presets' values); ``methods_`` may narrow the methods of a stage
    (``{"representative": {...}, "margin": [...], "ortho": [...]}``), e.g. to split the
    work over processes and merge the tables with :func:`merge`. Stages not selected now use
    the choices of the table already at ``path`` (the package's when None); a partial
    selection (some stages or methods) keeps that table's other entries when it is of the
    same data set, code length and seed (both commands recorded), a full one replaces it.
    ``lr_bits``: code lengths the learning rates are scored at (default ``(bits,)``): each
    grid point's score is the mean of its best validation mAP over them (a rate that is
    best at one code length but collapses at another loses), recorded per code length.
    ``seeds``: seeds every stage is scored at (default ``(seed,)``; each seed draws its own
    split and initialisation): each grid point is one run per seed (per seed and code length
    of ``lr_bits`` for the learning rates), so a setting that fails on one seed loses the
    same way. A failure can need the later stages' settings (DRH on digits collapsed on one
    seed only at the margin chosen after its learning rate), hence every stage.
    Returns the table."""
    from deephash import presets

    if path == "auto":
        path = default_path(dataset)
    grid = grid or GRID
    reps = (methods_ or {}).get("representative", REPRESENTATIVE)
    margin_methods = (methods_ or {}).get("margin", sorted(set(MARGIN_METHODS.values())))
    ortho_methods = (methods_ or {}).get("ortho", ORTHO_METHODS)
    wanted = tuple(stages)
    found: dict = {"lr": {}, "margin_per_bit": {}, "ortho_weight": {}}
    score = _Scorer(dataset, runs_dir)
    lr_bits = tuple(int(b) for b in (lr_bits or (bits,)))
    seeds = tuple(int(s) for s in (seeds or (seed,)))
    if "lr" in wanted:  # every run starts from the presets without a table, plus the stages
        found["lr"] = score.stage(  # so far
            {
                f: [
                    (float(v), m, float(v), {}, b, s)
                    for v in grid["lr"][f]
                    for s in seeds
                    for b in lr_bits
                ]
                for f, m in reps.items()
            },
            grid["lr"],
        )
        for family, method in reps.items():
            found["lr"][family]["selected_on"] = method
    # stages not selected now keep the choices of the table already there
    earlier_table = load_table(path or table_for(dataset))
    earlier = earlier_table.get("stages", {})
    lr_stage = found["lr"] if "lr" in wanted else earlier.get("lr", {})
    lr_of = {m: lr_stage[f]["chosen"] for m, f in LR_FAMILY_OF.items() if f in lr_stage}
    if "margin_per_bit" in wanted:
        found["margin_per_bit"] = score.stage(
            {
                m: [(float(v), m, lr_of.get(m), {"margin": float(v) * bits}, bits, s)
                    for v in grid["margin_per_bit"] for s in seeds]
                for m in margin_methods
            },
            {m: grid["margin_per_bit"] for m in margin_methods},
        )  # fmt: skip
    margin_stage = (
        found["margin_per_bit"] if "margin_per_bit" in wanted else earlier.get("margin_per_bit", {})
    )
    if "ortho_weight" in wanted:
        owner = {m: _margin_owner(m, margin_stage) for m in ortho_methods}
        margin = {
            m: {"margin": margin_stage[owner[m]]["chosen"] * bits}
            for m in ortho_methods
            if owner[m] in margin_stage
        }
        found["ortho_weight"] = score.stage(
            {
                m: [(float(v), m, lr_of.get(m),
                     {**margin.get(m, {}), "ortho_weight": float(v)}, bits, s)
                    for v in grid["ortho_weight"] for s in seeds]
                for m in ortho_methods
            },
            {m: grid["ortho_weight"] for m in ortho_methods},
        )  # fmt: skip
    table = {
        "version": VERSION,
        "dataset": dataset,
        "bits": int(bits),
        "seed": int(seed),
        "selected_on": (
            "best validation mAP of a quick-preset run with early stopping; validation queries "
            f"carved from the training split ({presets.QUICK_VALIDATION_FRACTION:.0%}, seeded), "
            "database = the rest of the training split; the queries are never used"
        ),
        "command": _command(dataset, bits, seed, wanted, methods_ or {}, lr_bits, seeds),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "applies_to": (
            "the quick preset on every data set without a table of its own, at every code "
            "length (margins scale with the code length)"
            if dataset == DEFAULT_DATASET
            else f"the quick preset on {dataset} at every code length (margins scale with the "
            "code length)"
        ),
        "stages": found,
        "not_selected": {k: NOT_SELECTED[k] for k in STAGES if not found[k]},
    }
    if set(wanted) != set(STAGES) or methods_:  # a partial selection keeps the other choices
        table = _over_earlier(earlier_table, table)
    if path:
        _write(path, table)
    return table


class _Scorer:
    """Validation mAP of grid points, each a quick-preset run through ``sweep.run_specs``
    (side by side inside ``sweep.parallel``; finished runs in ``runs_dir`` reused)."""

    def __init__(self, dataset: str, runs_dir: str):
        from deephash import sweep

        self.dataset, self.runs_dir = dataset, runs_dir
        self.datasets = sweep.DatasetCache()

    def stage(self, points: dict, grids: dict) -> dict:
        """``{owner: entry}`` for ``points`` (``{owner: [(grid value, method, lr, hparams,
        bits, seed)]}``): each owner's grid, validation mAP per grid value (the mean over its
        runs when it has several: per code length under ``validation_map_by_bits``, per seed
        and code length under ``validation_map_by_run`` when the seeds vary), choice and the
        runs' threads."""
        from deephash import presets, sweep

        flat = [(owner, p) for owner, ps in points.items() for p in ps]
        specs = []
        for _, (_, method, lr, hp, bits, seed) in flat:
            spec = presets.spec(
                method, self.dataset, bits, preset="quick", seed=seed, lr=lr, hparams=hp
            )
            specs.append(_without_table(spec, method, bits, lr, hp))
        records = sweep.run_specs(specs, self.runs_dir, self.datasets)
        out: dict = {}
        for (owner, (value, method, _, hp, bits, seed)), spec, rec in zip(flat, specs, records):
            v = float(rec["metrics"]["early_stopping"]["best_validation_map"])
            log.info(
                f"  {method} {bits} bits seed {seed} lr={spec.config.lr:g} {hp}: "
                f"validation mAP {v:.4f}"
            )
            entry = out.setdefault(owner, {"grid": grids[owner], "by_run": {}})
            entry["by_run"].setdefault((seed, bits), {})[repr(value)] = v
            entry.setdefault("threads", set()).add(_run_threads(rec.get("run_dir")))
        for entry in out.values():
            by_run = entry.pop("by_run")
            values = list(next(iter(by_run.values())))
            entry["validation_map"] = {
                k: sum(scores[k] for scores in by_run.values()) / len(by_run) for k in values
            }
            seeds = sorted({s for s, _ in by_run})
            if len(by_run) > 1 and len(seeds) == 1:
                entry["bits"] = [int(b) for _, b in by_run]
                entry["validation_map_is"] = "mean over the code lengths in bits"
                entry["validation_map_by_bits"] = {str(b): v for (_, b), v in by_run.items()}
            elif len(by_run) > 1:
                entry["bits"] = sorted({int(b) for _, b in by_run})
                entry["seeds"] = seeds
                entry["validation_map_is"] = "mean over every seed and code length"
                entry["validation_map_by_run"] = {
                    f"seed {s}, {b} bits": v for (s, b), v in by_run.items()
                }
            entry["chosen"] = _choose(entry["validation_map"])
            threads = entry.pop("threads")
            entry["threads"] = threads.pop() if len(threads) == 1 else sorted(map(str, threads))
        return out


def _run_threads(run_dir: str | None):
    """The intra-op thread count a run's config.json records (this process's without one)."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            return json.load(f)["threads"]["intra_op"]
    except (TypeError, OSError, ValueError, KeyError):
        return _threads()


def _command(
    dataset: str,
    bits: int,
    seed: int,
    stages: tuple,
    narrow: dict,
    lr_bits: tuple = (),
    seeds: tuple = (),
) -> str:
    """The select_hparams.py command line of a selection."""
    out = f"python experiments/select_hparams.py --dataset={dataset} --bits={bits} --seed={seed}"
    if "lr" in stages and tuple(lr_bits) not in ((), (bits,)):
        out += f" --lr_bits={','.join(map(str, lr_bits))}"
    if tuple(seeds) not in ((), (seed,)):
        out += f" --seeds={','.join(map(str, seeds))}"
    if set(stages) != set(STAGES):
        out += f" --stages={','.join(stages)}"
    flags = (
        ("representative", "lr_families"),
        ("margin", "margin_methods"),
        ("ortho", "ortho_methods"),
    )
    for key, flag in flags:
        if narrow.get(key):
            out += f" --{flag}={','.join(narrow[key])}"
    if _threads() != "default":
        out += f" --threads={_threads()}"
    return out


def _threads():
    """TensorFlow's intra-op thread count of this process ("default": TensorFlow's choice):
    a run's numbers, and so a selection, depend on it."""
    from deephash import training

    return training.thread_settings()["intra_op"]


def _over_earlier(earlier: dict, table: dict) -> dict:
    """``table`` merged over the ``earlier`` table of the same data set, code length and seed
    (a selection of some stages or methods keeps the other choices, and both commands are
    recorded); ``table`` alone when there is no such earlier table."""
    key = ("dataset", "bits", "seed")
    if not earlier or any(earlier.get(k) != table[k] for k in key):
        return table
    out = merge([earlier, table], path=None)
    for k in ("command", "created"):
        if earlier.get(k) and earlier[k] != table[k]:
            out[k] = f"{earlier[k]}; then {table[k]}"
    return out


def _write(path: str, table: dict) -> None:
    from deephash.io import write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json(path, table)
    _cache.pop(path, None)


def merge(tables: list[dict], path: str | None = TABLE) -> dict:
    """One table from several :func:`select` tables of the same data set, bits and seed
    (their stages' entries united); written to ``path`` unless None."""
    if not tables or len({(t["dataset"], t["bits"], t["seed"]) for t in tables}) != 1:
        raise ValueError("merge: give tables of one data set, code length and seed")
    out = copy.deepcopy(tables[0])
    for t in tables[1:]:
        for stage, entries in t["stages"].items():
            out["stages"].setdefault(stage, {}).update(entries)
    out["not_selected"] = {k: NOT_SELECTED[k] for k in STAGES if not out["stages"].get(k)}
    if path:
        _write(path, out)
    return out


def _without_table(spec, method: str, bits: int, lr: float | None, hp: dict):
    """``spec`` with the table's values replaced by the presets' own defaults, except the
    values given (``lr``, ``hp``): a selection run must not depend on an earlier table."""
    import dataclasses

    from deephash import presets

    values, _ = quick_choice(method, bits, dataset=spec.dataset)
    hparams = {k: v for k, v in spec.hparams.items() if k not in values or k in hp}
    config = spec.config
    if lr is None:
        config = config.replace(lr=presets.QUICK_LR[presets._group(method, "deep")])
    return dataclasses.replace(spec, config=config, hparams=hparams, selection={})


__all__ = [
    "GRID",
    "STAGES",
    "TABLE",
    "VERSION",
    "default_path",
    "load_table",
    "merge",
    "quick_choice",
    "select",
    "table_for",
]
