"""DSEH's ablation (Table 2): DSEH, DSEH-S, DSEH-SS, DSEH-L and DSEH-A over several seeds.

    python experiments/dseh_ablation.py --dataset=digits_multi --bits=32 --seeds=3 --out=runs/dseh_ablation

Each (variant, seed) is one run directory ``OUT/runs/<variant>/seed<k>`` written by
``deephash.experiment.run`` (finished runs are reused unless --overwrite); ``OUT/table.md``
and ``OUT/table.csv`` hold Table 2's layout -- ``n_h``, ``map_l``, ``map_i`` as mean and
sample standard deviation over the seeds -- beside the paper's numbers for the data set
(for the embedded sets: the real set they stand in for, labelled as such). The seed also
draws the data split, so the spread includes split-to-split variation.

Presets: ``quick`` (embedded data on a CPU: 3 rounds of 3 LabNet + 8 ImgNet epochs, batch 64,
lr 0.01, small_cnn backbone on small images) and ``paper`` (CNN-F from --weights, ImgNet batch
128, LabNet batch 32, 3 rounds of 20 + 20 epochs (our choice), S in {0, 5} on ImageNet, mAP@5000
on NUS-WIDE; the paper chose the learning rate in 1e-2..1e-6 on a validation split -- pass the
one you chose with --lr).
"""
from __future__ import annotations

import csv
import io as _io
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")
COLUMNS = ("n_h", "map_l", "map_i")
PRESETS = {
    "quick": {"train": dict(epochs=8, batch_size=64, lr=0.01, lr_decay_steps=None, weight_decay=2e-4),
              "hparams": {"labnet_epochs": 3, "imgnet_epochs": 8, "rounds": 3}},
    "paper": {"train": dict(epochs=20, batch_size=128, lr=1e-3, lr_decay_steps=None, weight_decay=5e-4),
              "hparams": {"backbone": "cnn_f", "labnet_batch_size": 32, "rounds": 3}},
}

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits_multi", "data set name (see deephash.data.available())")
flags.DEFINE_string("root", None, "directory holding the data set's files (file-based sets)")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_integer("seeds", 3, "number of seeds (0, 1, ..., seeds-1)")
flags.DEFINE_string("out", None, "output directory (required)")
flags.DEFINE_enum("preset", "quick", sorted(PRESETS), "training preset")
flags.DEFINE_list("variants", list(VARIANTS), "variants to run")
flags.DEFINE_integer("epochs", None, "epochs of every LabNet and ImgNet phase (overrides the preset)")
flags.DEFINE_bool("equal_budget", False, "give dseh-a (one round) rounds x the epochs of each phase, "
                  "i.e. the same number of epochs as the alternating variants")
flags.DEFINE_float("lr", None, "learning rate of the backbone (overrides the preset)")
flags.DEFINE_string("weights", None, "imagenet-vgg-f.mat for the cnn_f backbone (paper preset)")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker"], "tf.distribute strategy")
flags.DEFINE_bool("overwrite", False, "re-run variants whose run directory exists")
flags.DEFINE_integer("verbose", 0, "Keras progress output")


def settings(preset: str, dataset: str, epochs: int | None, lr: float | None, weights: str | None,
             strategy: str, verbose: int):
    """(TrainConfig, hparams) of a preset with the overrides applied."""
    from deephash import training

    spec = PRESETS[preset]
    train = dict(spec["train"], strategy=strategy, verbose=verbose)
    hparams = dict(spec["hparams"])
    if epochs is not None:
        train["epochs"] = epochs
        hparams.pop("labnet_epochs", None)
        hparams.pop("imgnet_epochs", None)
    if lr is not None:
        train["lr"] = lr
    if weights:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"--weights: no file at {weights!r}")
        hparams["weights"] = weights
    if preset == "paper" and dataset == "imagenet100":
        hparams["positive_similarity"] = 5.0  # the paper's S in {0, 5} for the sparse single-label set
    return training.TrainConfig(**train), hparams


def variant_hparams(variant: str, config, hparams: dict, equal_budget: bool = False) -> dict:
    """The hyper-parameters of one variant: ``dseh-a`` has one round (and, with
    ``equal_budget``, ``rounds`` times the epochs per phase)."""
    hp = dict(hparams)
    if variant == "dseh-a":
        rounds = int(hp.pop("rounds", 3))
        if equal_budget:
            for key in ("labnet_epochs", "imgnet_epochs"):
                hp[key] = rounds * int(hp.get(key) or config.epochs)
    return hp


def dataset_options(dataset: str, preset: str) -> dict:
    """``data.load`` options of the DSEH protocol: mAP@5000 on NUS-WIDE (paper preset)."""
    return {"map_depth": 5000} if preset == "paper" and dataset == "nuswide21" else {}


def run_all(dataset: str, bits: int, seeds: int, out: str, config, hparams: dict, variants=VARIANTS,
            overwrite: bool = False, root: str | None = None, equal_budget: bool = False,
            options: dict | None = None) -> dict[str, list[dict]]:
    """Run (or reuse) every variant x seed; returns ``{variant: [metrics.json content, ...]}``."""
    import json

    import keras

    from deephash import data, experiment

    results: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in range(seeds):
            run_dir = os.path.join(out, "runs", variant, f"seed{seed}")
            done = os.path.join(run_dir, "metrics.json")
            if os.path.exists(done) and not overwrite:
                with open(done, encoding="utf-8") as f:
                    result = json.load(f)
            else:
                ds = data.load(dataset, root=root, seed=seed, **options) if options else dataset
                result = experiment.run(variant, ds, bits, config.replace(seed=seed), out_dir=run_dir,
                                        hparams=variant_hparams(variant, config, hparams, equal_budget),
                                        overwrite=overwrite, root=root)
                result = {k: v for k, v in result.items() if k != "model"}
                keras.backend.clear_session()
            print(f"{variant:8s} seed {seed}: n_h={result['n_h']:5d}  map_l={result['map_l']:.4f}  "
                  f"map_i={result['map_i']:.4f}", flush=True)
            results.setdefault(variant, []).append(result)
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


def markdown(summary: dict, dataset: str, bits: int, ref: str | None, paper: dict, preset: str) -> str:
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
    lines += ["", f"Ours: mean ± sample standard deviation over {', '.join(map(str, seeds))} seed(s) "
              "(each seed also draws the data split). n_h = distinct LabNet codes of the database labels; "
              "map_l = mAP of LabNet codes of the query labels against those of the database labels; "
              "map_i = mAP of ImgNet codes of the images."]
    if stand_in:
        lines.append(f"The paper has no {dataset}; its {ref_name} numbers stand beside ours for orientation only "
                     "(different data, backbone and scale).")
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
    w.writerow(["method", "seeds", *(f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")), "paper_dataset",
                *(f"paper_{c}" for c in COLUMNS)])
    for variant, row in summary.items():
        w.writerow([variant, row["seeds"], *(f"{x:.6g}" for c in COLUMNS for x in row[c]), ref or "",
                    *("" if paper.get(variant, {}).get(c) is None else paper[variant][c] for c in COLUMNS)])
    return buf.getvalue()


def main(argv):
    del argv
    import deephash  # noqa: F401
    from deephash import data, io, methods

    try:
        if not FLAGS.out:
            raise ValueError("--out is required")
        if FLAGS.dataset not in data.available():
            raise ValueError(f"unknown dataset {FLAGS.dataset!r}; available: {', '.join(data.available())}")
        if FLAGS.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        unknown = set(FLAGS.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
        methods.check_bits(FLAGS.bits, method="dseh")
        config, hparams = settings(FLAGS.preset, FLAGS.dataset, FLAGS.epochs, FLAGS.lr, FLAGS.weights,
                                   FLAGS.strategy, FLAGS.verbose)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    variants = [v for v in VARIANTS if v in FLAGS.variants]
    results = run_all(FLAGS.dataset, FLAGS.bits, FLAGS.seeds, FLAGS.out, config, hparams, variants,
                      FLAGS.overwrite, FLAGS.root, FLAGS.equal_budget, dataset_options(FLAGS.dataset, FLAGS.preset))
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
