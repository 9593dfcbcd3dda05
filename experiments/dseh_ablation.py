"""DSEH's ablation (Table 2): DSEH, DSEH-S, DSEH-SS, DSEH-L and DSEH-A over several seeds.

    python experiments/dseh_ablation.py --dataset=digits_multi --bits=32 --seeds=3 --out=runs/dseh_ablation

Each (variant, seed) is one run directory ``RUNS/<dataset>/<variant>/<bits>b-seed<k>-<key>``
(``RUNS`` = --runs_dir, default ``OUT/runs``); ``OUT/table.md``
and ``OUT/table.csv`` hold Table 2's layout -- ``n_h``, ``map_l``, ``map_i`` as mean and
sample standard deviation over the seeds -- beside the paper's numbers for the data set
(for the embedded sets: the real set they stand in for, labelled as such). The seed also
draws the data split, so the spread includes split-to-split variation.

Settings come from ``deephash.presets.spec`` (the same as every other experiment script):
``quick`` (embedded data on a CPU: 3 rounds of 9 LabNet + 8 ImgNet epochs, batch 64, lr 0.01,
small_cnn backbone on small images, S in {0, 5} on single-label sets) and ``paper`` (CNN-F from
--weights, ImgNet batch 128, LabNet batch 32, 3 rounds of 20 + 20 epochs (our choice), S in
{0, 5} on ImageNet, mAP@5000 on NUS-WIDE; the paper chose the learning rate in 1e-2..1e-6 on a
validation split -- pass the one you chose with --lr). Runs go through ``deephash.sweep``: a
run directory is keyed by its complete request, so a finished run is reused only when its
settings match, and runs are shared with the other scripts given the same --runs_dir.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")
COLUMNS = ("n_h", "map_l", "map_i")
PRESETS = ("quick", "paper")

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits_multi", "data set name (see deephash.data.available())")
flags.DEFINE_string("root", None, "directory holding the data set's files (file-based sets)")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_integer("seeds", 3, "number of seeds (0, 1, ..., seeds-1)")
flags.DEFINE_string("out", None, "output directory (required)")
flags.DEFINE_string(
    "runs_dir", None, "run directories, shared with the other scripts (default OUT/runs)"
)
flags.DEFINE_enum(
    "reuse",
    "any",
    ["any", "same_code"],
    "finished runs in --runs_dir trained by other library "
    "code: 'any' reuses them (with a note), 'same_code' retrains them",
)
flags.DEFINE_enum("preset", "quick", list(PRESETS), "training preset (deephash.presets)")
flags.DEFINE_list("variants", list(VARIANTS), "variants to run")
flags.DEFINE_integer(
    "epochs", None, "epochs of every LabNet and ImgNet phase (overrides the preset)"
)
flags.DEFINE_bool(
    "equal_budget",
    False,
    "give dseh-a (one round) rounds x the epochs of each phase, "
    "i.e. the same number of epochs as the alternating variants",
)
flags.DEFINE_float("lr", None, "learning rate of the backbone (overrides the preset)")
flags.DEFINE_string(
    "weights",
    None,
    "'imagenet' (MatConvNet's imagenet-vgg-f.mat, downloaded once) or a local "
    "copy, for the cnn_f backbone (paper preset)",
)
flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multiworker"], "tf.distribute strategy"
)
flags.DEFINE_integer("verbose", 0, "Keras progress output")


def spec(
    variant: str,
    dataset: str,
    bits: int,
    seed: int,
    preset: str = "quick",
    epochs: int | None = None,
    lr: float | None = None,
    weights: str | None = None,
    strategy: str = "default",
    verbose: int = 0,
    equal_budget: bool = False,
    root: str | None = None,
):
    """The ``presets.RunSpec`` of one (variant, seed): ``presets.spec(..., paper="dseh")`` with
    the strategy set and, with ``equal_budget``, ``dseh-a`` given 3x the epochs of each phase
    (the alternating variants' 3 rounds)."""
    from deephash import presets
    from deephash.backbones.pretrained import check_weights_arg

    check_weights_arg(weights)
    s = presets.spec(
        variant,
        dataset,
        bits,
        preset=preset,
        paper="dseh",
        seed=seed,
        root=root,
        weights=weights,
        epochs=epochs,
        lr=lr,
        verbose=verbose,
    )
    s = dataclasses.replace(s, config=s.config.replace(strategy=strategy))
    if variant == "dseh-a" and equal_budget:
        rounds = int(
            presets.spec(
                "dseh", dataset, bits, preset=preset, paper="dseh", epochs=epochs
            ).hparams.get("rounds", 3)
        )
        hp = dict(s.hparams)
        for key in ("labnet_epochs", "imgnet_epochs"):
            hp[key] = rounds * int(hp.get(key) or s.config.epochs)
        s = dataclasses.replace(s, hparams=hp)
    return s


def _notes_only(msg: str) -> None:
    """Print the sweep's notes and retrain messages, not its per-run lines (printed below)."""
    if "note:" in msg or "retrain" in msg:
        print(msg.strip(), flush=True)


def run_all(specs, runs_dir: str, reuse: str = "any") -> dict[str, list[dict]]:
    """Run (or reuse, through ``deephash.sweep``) every spec; returns ``{variant: [metrics, ...]}``."""
    from deephash import sweep

    results: dict[str, list[dict]] = {}
    datasets = sweep.DatasetCache()
    for s in specs:
        result = sweep.run_spec(s, runs_dir, datasets, log=_notes_only, reuse=reuse)["metrics"]
        print(
            f"{s.method:8s} seed {s.seed}: n_h={result['n_h']:5d}  map_l={result['map_l']:.4f}  "
            f"map_i={result['map_i']:.4f}",
            flush=True,
        )
        results.setdefault(s.method, []).append(result)
    return results


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """``{variant: {column: (mean, sample std), "seeds": n}}``."""
    out = {}
    for variant, runs in results.items():
        row = {"seeds": len(runs)}
        for c in COLUMNS:
            v = np.array([float(r[c]) for r in runs])
            row[c] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        out[variant] = row
    return out


def published_rows(dataset: str) -> tuple[str | None, dict]:
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


def markdown(
    summary: dict, dataset: str, bits: int, ref: str | None, paper: dict, preset: str
) -> str:
    from deephash import published

    ref_name = published.dataset_name(ref) if ref else None
    stand_in = ref is not None and ref != dataset
    head = ["method", *(f"{c} (ours)" for c in COLUMNS)]
    if ref:
        head += [f"{c} (paper, {ref_name})" for c in COLUMNS]
    lines = [f"# DSEH ablation (Table 2) on {dataset}, {bits} bits, preset {preset}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for variant, row in summary.items():
        cells = [variant.upper()]
        for c in COLUMNS:
            m, s = row[c]
            cells.append(f"{_fmt(c, m, 1)} ± {_fmt(c, s, 1)}")
        if ref:
            cells += [_fmt(c, paper.get(variant, {}).get(c)) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({row["seeds"] for row in summary.values()})
    lines += [
        "",
        f"Ours: mean ± sample standard deviation over {', '.join(map(str, seeds))} seed(s) "
        "(each seed also draws the data split). n_h = distinct LabNet codes of the TRAINING labels (as the "
        "authors' DSEH.py counts them; runs made before this count report the database labels'); "
        "map_l = mAP of LabNet codes of the query labels against those of the database labels; "
        "map_i = mAP of ImgNet codes of the images. --preset=quick ranks the protocol's database at its "
        "depth; --preset=paper ranks as the authors' evaluate.py does: map_i against the training + "
        'database images, both at full depth (DSEH evaluation="authors").',
    ]
    if stand_in:
        lines.append(
            f"The paper has no {dataset}; its {ref_name} numbers stand beside ours for orientation only "
            "(different data, backbone and scale)."
        )
    lines += ["", f"Ordering by map_i, ours: {_ranking(summary, 'map_i')}"]
    if ref:
        lines.append(f"Ordering by map_i, paper ({ref_name}): {_ranking(paper, 'map_i')}")
    lines += [f"Ordering by n_h, ours: {_ranking(summary, 'n_h')}"]
    if ref:
        lines.append(f"Ordering by n_h, paper ({ref_name}): {_ranking(paper, 'n_h')}")
    return "\n".join(lines) + "\n"


def csv_text(summary: dict, ref: str | None, paper: dict) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "method",
            "seeds",
            *(f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")),
            "paper_dataset",
            *(f"paper_{c}" for c in COLUMNS),
        ]
    )
    for variant, row in summary.items():
        w.writerow(
            [
                variant,
                row["seeds"],
                *(f"{x:.6g}" for c in COLUMNS for x in row[c]),
                ref or "",
                *(
                    "" if paper.get(variant, {}).get(c) is None else paper[variant][c]
                    for c in COLUMNS
                ),
            ]
        )
    return buf.getvalue()


def main(argv):
    del argv
    import deephash  # noqa: F401
    from deephash import data, io, methods

    try:
        if not FLAGS.out:
            raise ValueError("--out is required")
        if FLAGS.dataset not in data.available():
            raise ValueError(
                f"unknown dataset {FLAGS.dataset!r}; available: {', '.join(data.available())}"
            )
        if FLAGS.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        unknown = set(FLAGS.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(
                f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}"
            )
        methods.check_bits(FLAGS.bits, method="dseh")
        variants = [v for v in VARIANTS if v in FLAGS.variants]
        specs = [
            spec(
                v,
                FLAGS.dataset,
                FLAGS.bits,
                seed,
                FLAGS.preset,
                FLAGS.epochs,
                FLAGS.lr,
                FLAGS.weights,
                FLAGS.strategy,
                FLAGS.verbose,
                FLAGS.equal_budget,
                FLAGS.root,
            )
            for v in variants
            for seed in range(FLAGS.seeds)
        ]
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    results = run_all(specs, FLAGS.runs_dir or os.path.join(FLAGS.out, "runs"), FLAGS.reuse)
    summary = summarize(results)
    ref, paper = published_rows(FLAGS.dataset)
    md = markdown(summary, FLAGS.dataset, FLAGS.bits, ref, paper, FLAGS.preset)
    with io.atomic_write(os.path.join(FLAGS.out, "table.md")) as f:
        f.write(md)
    with io.atomic_write(os.path.join(FLAGS.out, "table.csv")) as f:
        f.write(csv_text(summary, ref, paper))
    print(md)
    print(f"written: {os.path.join(FLAGS.out, 'table.md')}, {os.path.join(FLAGS.out, 'table.csv')}")


if __name__ == "__main__":
    app.run(main)
