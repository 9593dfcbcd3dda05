"""DSRH Fig. 3 (CIFAR-10) / Fig. 4 (NUS-WIDE): (a) mAP vs code length, (b) precision within
Hamming radius 2 vs code length, (c) precision-recall curves at 48 bits, for DSRH, DRH+,
DRH, NINH, KSH, ITQ, SH, LSH and PCAH.

    python experiments/dsrh_figures.py                  # digits (CIFAR-10 stand-in)
    python experiments/dsrh_figures.py --dataset=digits_multi  # NUS-WIDE stand-in
    python experiments/dsrh_figures.py --dataset=cifar10 --preset=paper \\
        --weights=models/vgg19.h5 --features=features/cifar10_fc7 --out=results/dsrh_fig3

Writes OUT/report.md, OUT/<dataset>_{map,precision_radius_2}.csv and the plots, and prints
each table with the paper's numbers beside it ("paper" / "this run").
"""

from __future__ import annotations

import sys

import _flags
from absl import app, flags

from deephash import presets

FLAGS = _flags.FLAGS

_flags.define("digits", "results/dsrh_figures", presets.DSRH_FIGURE_METHODS, presets.DSRH_BITS)
flags.DEFINE_integer(
    "pr_bits", presets.DSRH_PR_BITS, "code length of the precision-recall curves (panel c)"
)


def main(argv):
    del argv
    from deephash import reproduce

    _flags.show_progress()

    try:
        reproduce.dsrh_figures(
            FLAGS.dataset,
            _flags.experiment_config(),
            out=FLAGS.out,
            methods=_flags.methods(),
            bits=_flags.ints(FLAGS.bits, "bits"),
            pr_bits=FLAGS.pr_bits,
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
