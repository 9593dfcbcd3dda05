"""DSEH Fig. 3 (precision-recall curves at 32 bits) and Fig. 4 (precision@N, N = 100..1000,
at 32 bits) for every method of DSEH Table 1.

    python experiments/dseh_figures.py                                    # digits_multi
    python experiments/dseh_figures.py --dataset=coco --root=/data/coco --preset=paper \\
        --weights=models/imagenet-vgg-f.mat --features=features/coco_cnnf_fc7 \\
        --out=results/dseh_figs_coco

The paper publishes these figures as plots only; the printed table is mAP (and precision
within radius 2) at 32 bits beside Table 1's 32-bit column. Writes OUT/report.md,
OUT/<dataset>_pr_32b.png and OUT/<dataset>_precision_at_n_32b.png.
"""

from __future__ import annotations

import sys

import _flags
from absl import app

from deephash import presets

FLAGS = _flags.FLAGS

_flags.define(
    "digits_multi", "results/dseh_figures", presets.DSEH_TABLE1_METHODS, [presets.DSEH_FIGURE_BITS]
)


def main(argv):
    del argv
    from deephash import reproduce

    _flags.show_progress()

    try:
        experiment = _flags.experiment_config()
        bits = _flags.ints(FLAGS.bits, "bits")
        if len(bits) != 1:
            raise ValueError(f"--bits: the figures are drawn at one code length, got {bits}")
        reproduce.dseh_figures(
            FLAGS.dataset, experiment, out=FLAGS.out, methods=_flags.methods(), bits=bits[0]
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
