"""Quick start: train DSRH, DRH and DRH+ on the embedded ``digits`` data at 32 bits with the
quick preset (the settings behind docs/results), evaluate them under the digits protocol and
print a metrics table and the plot paths.

    python experiments/quickstart.py            # about 2-3 minutes on a 2-core CPU

Every run trains to its validation plateau (early stopping on the mAP of a validation split
carved from the training images, best weights restored; the queries are never used), with
the learning rate, triplet margin and orthogonality weight lambda that the quick preset chose
on validation (``deephash/tuned/quick.json``). The runs train side by side in worker
processes (``--jobs``), so each cell equals the same cell of ``experiments/run_all.py``
trained with the same thread count. Each variant writes a run directory under ``--out``
(config.json, split.json, model.keras, codes.npz, metrics.json, pr_curve.png,
training_curve.png with the validation curve).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/quickstart", "parent directory of the three run directories")
flags.DEFINE_list("methods", ["dsrh", "drh", "drh+"], "variants to train")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_integer("seed", 0, "random seed (also draws the split)")
_flags.define_flag("epochs", help="override the quick preset's epoch cap (smoke tests)")
_flags.define_flag("jobs")
flags.DEFINE_bool("overwrite", True, "replace earlier quick-start runs")


def main(argv):
    del argv
    from absl import logging

    from deephash import experiment, presets, sweep
    from deephash.experiment_config import ExperimentConfig

    logging.set_verbosity(logging.WARNING)  # the table below says what matters
    start = time.perf_counter()
    exp = ExperimentConfig(preset="quick", seeds=(FLAGS.seed,), epochs=FLAGS.epochs)
    runs = [
        (
            presets.spec(m, "digits", FLAGS.bits, exp, seed=FLAGS.seed),
            os.path.join(FLAGS.out, f"{m.replace('+', '_plus')}_digits_{FLAGS.bits}"),
        )
        for m in FLAGS.methods
    ]
    jobs = min(_flags.jobs(), len(runs))
    print(f"training {', '.join(FLAGS.methods)} at {FLAGS.bits} bits, {jobs} at a time ...")
    with sweep.parallel(jobs):
        records = sweep.train_specs(runs, overwrite=FLAGS.overwrite)
    results = [{**r["metrics"], "run_dir": r["run_dir"]} for r in records]
    for r, (spec, _) in zip(results, runs):
        print(f"{spec.method}: mAP {r['map']:.4f}{_settings(spec, r)}")
    print()
    print(experiment.format_table(results))
    print(f"\nconventions: {experiment.conventions_line(results[0])}")
    print("\nrun directories and plots:")
    for r in results:
        print(f"  {r['method']:5s} {r['run_dir']}")
        for png in ("pr_curve.png", "training_curve.png"):
            print(f"        {os.path.join(r['run_dir'], png)}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


def _settings(spec, result: dict) -> str:
    """The preset's chosen values and where training stopped, for the summary line."""
    chosen = [
        f"{name}={spec.hparams[name]:g}"
        for name in ("ortho_weight", "margin")
        if isinstance(spec.hparams.get(name), (int, float))
    ]
    chosen.append(f"lr={spec.config.lr:g}")
    stop = result.get("early_stopping") or {}
    if stop.get("best_epoch"):
        chosen.append(
            f"best validation mAP {stop['best_validation_map']:.3f} at epoch "
            f"{stop['best_epoch']} of {stop['epochs_run']}"
        )
    return " (" + ", ".join(chosen) + ")"


if __name__ == "__main__":
    app.run(main)
