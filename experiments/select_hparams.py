"""Recompute the quick preset's settings chosen on validation data (deephash/tuned/quick.json).

    python experiments/select_hparams.py            # every stage, digits, 32 bits, seed 0
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
flags.DEFINE_list("margin_methods", [], "only these methods' margins (default: drh, ninh)")
_flags.define_flag("threads")
_flags.define_flag("jobs")
flags.DEFINE_list("ortho_methods", [], "only these methods' lambdas (default: dsrh, drh+)")
flags.DEFINE_string(
    "runs_dir", "runs/tuning", "run directories of the grid points (kept and reused)"
)
flags.DEFINE_string(
    "out", None, "table to write (default: the package's deephash/tuned/quick.json)"
)


def main(argv):
    del argv
    from deephash import tuning

    _flags.show_progress()
    unknown = set(FLAGS.stages) - set(tuning.STAGES)
    if unknown:
        sys.exit(
            f"error: unknown stage(s) {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(tuning.STAGES)}"
        )
    if FLAGS.threads is not None:
        from deephash import training

        training.set_threads(FLAGS.threads)
    narrow = {}
    if FLAGS.lr_families:
        unknown = set(FLAGS.lr_families) - set(tuning.REPRESENTATIVE)
        if unknown:
            sys.exit(
                f"error: unknown learning-rate famil(ies) {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(tuning.REPRESENTATIVE)}"
            )
        narrow["representative"] = {f: tuning.REPRESENTATIVE[f] for f in FLAGS.lr_families}
    if FLAGS.margin_methods:
        narrow["margin"] = FLAGS.margin_methods
    if FLAGS.ortho_methods:
        narrow["ortho"] = FLAGS.ortho_methods
    from deephash import sweep

    jobs = 1 if FLAGS.threads is not None else _flags.jobs()  # --threads: in this process
    with sweep.parallel(jobs):  # each stage's grid points side by side
        table = tuning.select(
            FLAGS.dataset,
            FLAGS.bits,
            FLAGS.seed,
            runs_dir=FLAGS.runs_dir,
            path=FLAGS.out or tuning.TABLE,
            methods_=narrow or None,
            stages=tuple(FLAGS.stages),
        )
    for stage, entries in table["stages"].items():
        for who, e in entries.items():
            print(
                f"{stage:<15} {who:<12} chosen {e['chosen']:g}  validation mAP "
                f"{e['validation_map']}"
            )
    print(f"table: {FLAGS.out or tuning.TABLE}")


if __name__ == "__main__":
    app.run(main)
