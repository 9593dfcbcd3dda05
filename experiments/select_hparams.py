"""Recompute the quick preset's settings chosen on validation data: deephash/tuned/quick.json
(chosen on digits, the default of every data set) or quick_<dataset>.json (--dataset).

    python experiments/select_hparams.py            # every stage, digits, 32 bits, seed 0
    python experiments/select_hparams.py --dataset=digits_multi   # its own table
    python experiments/select_hparams.py --stages=margin_per_bit,ortho_weight

Each grid point is a quick-preset run (early stopping on a validation split carved from the
training split) scored by its best validation mAP; the queries are never used. Finished runs
in --runs_dir are reused. ``deephash.tuning`` documents the grid and the stages.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "data set the settings are selected on")
flags.DEFINE_integer("bits", 32, "code length of the selection runs (margins are stored per bit)")
flags.DEFINE_integer("seed", 0, "seed of the split, the validation split and the runs")
flags.DEFINE_list(
    "stages",
    ["lr", "margin_per_bit", "ortho_weight"],
    "stages to select (the others keep the presets' values)",
)
flags.DEFINE_list(
    "lr_families",
    [],
    "only these learning-rate families (default: all of deephash.tuning.REPRESENTATIVE)",
)
flags.DEFINE_list(
    "margin_methods",
    [],
    "only these methods' margins (default: drh, ninh; DSRH and DRH+ use DRH's unless named "
    "here: a method named gets its own)",
)
_flags.define_flag("threads")
_flags.define_flag("jobs")
flags.DEFINE_list("ortho_methods", [], "only these methods' lambdas (default: dsrh, drh+)")
flags.DEFINE_list(
    "lr_bits",
    [],
    "code lengths the learning rates are scored at, by the mean of their validation mAP "
    "(default: --bits only)",
)
flags.DEFINE_list(
    "seeds",
    [],
    "seeds every stage is scored at: one run per seed for each grid point (the learning "
    "rates: per seed and code length of --lr_bits); each seed draws its own split and "
    "initialisation (default: --seed only)",
)
flags.DEFINE_string(
    "runs_dir", "runs/tuning", "run directories of the grid points (kept and reused)"
)
flags.DEFINE_string(
    "out",
    None,
    "table to write (default: the package's table of --dataset: deephash/tuned/quick.json for "
    "digits, quick_<dataset>.json otherwise)",
)


def _check(given, known, what: str) -> None:
    """Exit with an error naming the values of ``given`` not in ``known``."""
    unknown = set(given) - set(known)
    if unknown:
        sys.exit(f"error: {what} {', '.join(sorted(unknown))}; choose from {', '.join(known)}")


def _ints(name: str, what: str, low: int) -> tuple[int, ...]:
    """The list flag ``name`` as integers >= ``low``, or exit with an error naming the bad
    value."""
    out = []
    for v in getattr(FLAGS, name):
        try:
            out.append(int(v))
        except ValueError:
            out.append(low - 1)
        if out[-1] < low:
            sys.exit(f"error: --{name} takes {what}. Received: {name}={v!r}")
    return tuple(out)


def _narrow() -> dict:
    """The methods each stage is narrowed to by the flags (``tuning.select``'s ``methods_``)."""
    from deephash import tuning

    narrow = {}
    if FLAGS.lr_families:
        _check(FLAGS.lr_families, tuning.REPRESENTATIVE, "unknown learning-rate famil(ies)")
        narrow["representative"] = {f: tuning.REPRESENTATIVE[f] for f in FLAGS.lr_families}
    if FLAGS.margin_methods:
        _check(FLAGS.margin_methods, tuning.MARGIN_METHODS, "no triplet margin to select for")
        narrow["margin"] = FLAGS.margin_methods
    if FLAGS.ortho_methods:
        _check(FLAGS.ortho_methods, tuning.ORTHO_METHODS, "no orthogonality weight to select for")
        narrow["ortho"] = FLAGS.ortho_methods
    return narrow


def main(argv):
    del argv
    from deephash import tuning

    _flags.show_progress()
    _check(FLAGS.stages, tuning.STAGES, "unknown stage(s)")
    try:
        out = tuning.default_path(FLAGS.dataset)  # checks the name even with --out
        out = FLAGS.out or out
    except ValueError as e:
        sys.exit(f"error: {e}")
    narrow = _narrow()  # every flag checked before TensorFlow starts
    lr_bits = _ints("lr_bits", "positive code lengths", 1)
    seeds = _ints("seeds", "seeds (integers >= 0)", 0)
    if FLAGS.threads is not None:
        from deephash import training

        training.set_threads(FLAGS.threads)
    from deephash import sweep

    jobs = 1 if FLAGS.threads is not None else _flags.jobs()  # --threads: in this process
    with sweep.parallel(jobs):  # each stage's grid points side by side
        table = tuning.select(
            FLAGS.dataset,
            FLAGS.bits,
            FLAGS.seed,
            runs_dir=FLAGS.runs_dir,
            path=out,
            methods_=narrow or None,
            stages=tuple(FLAGS.stages),
            lr_bits=lr_bits or None,
            seeds=seeds or None,
        )
    for stage, entries in table["stages"].items():
        for who, e in entries.items():
            print(
                f"{stage:<15} {who:<12} chosen {e['chosen']:g}  validation mAP "
                f"{e['validation_map']}"
            )
    print(f"table: {out}")


if __name__ == "__main__":
    app.run(main)
