"""Quick start: train DSRH, DRH and DRH+ on the embedded ``digits`` data at 32 bits,
evaluate them under the digits protocol and print a metrics table and the plot paths.

    python experiments/quickstart.py            # about 2-3 minutes on a 2-core CPU

Each variant writes a run directory under ``--out`` (config.json, split.json,
model.keras, codes.npz, metrics.json, pr_curve.png, training_curve.png).

The orthogonality weight lambda of DSRH and DRH+ is chosen as the paper did, on a
validation split carved from the training images (grid 0, 0.05, 0.25; the queries are
never used); ``--ortho_weight=0.25`` trains with the paper's value instead.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/quickstart", "parent directory of the three run directories")
flags.DEFINE_list("methods", ["dsrh", "drh", "drh+"], "variants to train")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_integer("epochs", 40, "epochs (7 steps of 64 triplets each on digits)")
flags.DEFINE_float("lr", 0.02, "learning rate (SGD, momentum 0.9, constant)")
flags.DEFINE_string(
    "ortho_weight", "auto", "lambda for DSRH / DRH+: 'auto' (validation split) or a number"
)
flags.DEFINE_integer("batch_size", 64, "triplets per step")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_bool("overwrite", True, "replace earlier quick-start runs")


def main(argv):
    del argv
    from absl import logging

    from deephash import experiment, training

    logging.set_verbosity(logging.WARNING)  # the table below says what matters

    start = time.perf_counter()
    config = training.TrainConfig(
        epochs=FLAGS.epochs,
        lr=FLAGS.lr,
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        lr_decay_steps=None,
        verbose="epochs",
    )
    results = []
    for method in FLAGS.methods:
        t0 = time.perf_counter()
        out = os.path.join(FLAGS.out, f"{method.replace('+', '_plus')}_digits_{FLAGS.bits}")
        hparams = {"backbone": "small_cnn"}
        if method != "drh":
            hparams["ortho_weight"] = (
                FLAGS.ortho_weight if FLAGS.ortho_weight == "auto" else float(FLAGS.ortho_weight)
            )
        r = experiment.run(
            method, "digits", FLAGS.bits, config, out, hparams=hparams, overwrite=FLAGS.overwrite
        )
        lam = r["model"].ortho_weight if method != "drh" else None
        sel = r.get("hparam_selection", {}).get("ortho_weight")
        note = f", lambda={lam:g}" if lam is not None else ""
        if sel:
            note += (
                " (validation mAP "
                + ", ".join(f"{k}: {v:.3f}" for k, v in sel["validation_map"].items())
                + ")"
            )
        print(f"{method}: mAP {r['map']:.4f}{note} ({time.perf_counter() - t0:.0f} s)", flush=True)
        results.append(r)
    print()
    print(experiment.format_table(results))
    print(f"\nconventions: {experiment.conventions_line(results[0])}")
    print("\nrun directories and plots:")
    for r in results:
        print(f"  {r['method']:5s} {r['run_dir']}")
        for png in ("pr_curve.png", "training_curve.png"):
            print(f"        {os.path.join(r['run_dir'], png)}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
