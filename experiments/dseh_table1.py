"""DSEH Table 1: mAP at 16/32/48/64 bits for DSEH, HashNet, DHN, DPSH, CNNH, SDH, ITQ-CCA,
KSH, ITQ, SH and LSH.

    python experiments/dseh_table1.py                   # digits_multi (NUS-WIDE stand-in)
    python experiments/dseh_table1.py --dataset=digits  # ImageNet stand-in (single label)
    python experiments/dseh_table1.py --dataset=nuswide21 --root=/data/nuswide --preset=paper \\
        --weights=models/imagenet-vgg-f.mat --features=features/nus_cnnf_fc7 \\
        --out=results/dseh_table1_nus

Prints the table with the paper's numbers beside it ("paper" / "this run") and writes
OUT/report.md and OUT/<dataset>_map.csv.
"""

from __future__ import annotations

import sys

import _flags
from absl import app

from deephash import presets

FLAGS = _flags.FLAGS

_flags.define("digits_multi", "results/dseh_table1", presets.DSEH_TABLE1_METHODS, presets.DSEH_BITS)


def main(argv):
    del argv
    from deephash import reproduce

    _flags.show_progress()

    try:
        reproduce.dseh_table1(
            FLAGS.dataset,
            _flags.experiment_config(),
            out=FLAGS.out,
            methods=_flags.methods(),
            bits=_flags.ints(FLAGS.bits, "bits"),
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
