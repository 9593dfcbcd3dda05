"""DSEH's ablation (Table 2): DSEH, DSEH-S, DSEH-SS, DSEH-L and DSEH-A over several seeds.

    python experiments/dseh_ablation.py --dataset=digits_multi --bits=32 --seeds=3 \\
        --out=runs/dseh_ablation

Each (variant, seed) is one run directory ``RUNS/<dataset>/<variant>/<bits>b-seed<k>-<key>``
(``RUNS`` = --runs_dir, default ``OUT/runs``); ``OUT/table.md``
and ``OUT/table.csv`` hold Table 2's layout -- ``n_h``, ``map_l``, ``map_i`` as mean and
sample standard deviation over the seeds -- beside the paper's numbers for the data set
(for the embedded sets: the real set they stand in for, labelled as such). The seed also
draws the data split, so the spread includes split-to-split variation.

Settings come from ``deephash.presets.spec`` (the same as every other experiment script):
``quick`` (embedded data on a CPU: 3 rounds of 9 LabNet epochs and an ImgNet phase trained to
its validation plateau (at most 500 steps; DSEH-A's one round 1,500), batch 64, lr 0.01,
small_cnn backbone on small images, S in {0, 5} on single-label sets) and ``paper`` (CNN-F from
--weights, ImgNet batch 128, LabNet batch 32, 3 rounds of 20 + 20 epochs (our choice), S in
{0, 5} on ImageNet, mAP@5000 on NUS-WIDE; the paper chose the learning rate in 1e-2..1e-6 on a
validation split -- pass the one you chose with --lr). Runs go through ``deephash.sweep``: a
run directory is keyed by its complete request, so a finished run is reused only when its
settings match, and runs are shared with the other scripts given the same --runs_dir.
``deephash.reproduce.dseh_ablation`` does the work (``experiments/run_all.py`` calls it too).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flags  # noqa: E402

VARIANTS = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")  # reproduce.ABLATION_VARIANTS

FLAGS = flags.FLAGS
_flags.define_flag("dataset", "digits_multi")
_flags.define_flag("root")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_integer("seeds", 3, "number of seeds (0, 1, ..., seeds-1)")
_flags.define_flag("out", help="output directory (required)")
_flags.define_flag(
    "runs_dir", help="run directories, shared with the other scripts (default OUT/runs)"
)
_flags.define_flag("reuse")
_flags.define_flag("preset", help="training preset (deephash.presets)")
flags.DEFINE_list("variants", list(VARIANTS), "variants to run")
_flags.define_flag("epochs", help="epochs of every LabNet and ImgNet phase (overrides the preset)")
flags.DEFINE_bool(
    "equal_budget",
    False,
    "give dseh-a (one round) rounds x the epochs of each phase, "
    "i.e. the same number of epochs as the alternating variants",
)
_flags.define_flag("lr", help="learning rate of the backbone (overrides the preset)")
_flags.define_flag(
    "weights",
    help="'imagenet' (MatConvNet's imagenet-vgg-f.mat, downloaded once) or a local "
    "copy, for the cnn_f backbone (paper preset)",
)
_flags.define_flag("strategy")
_flags.define_flag("jobs")
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
    """The ``presets.RunSpec`` of one (variant, seed) (``reproduce.ablation_spec``)."""
    from deephash import reproduce

    experiment = reproduce.ExperimentConfig(
        preset=preset,
        paper="dseh",
        epochs=epochs,
        lr=lr,
        weights=weights,
        strategy=strategy,
        verbose=verbose,
        root=root,
    )
    return reproduce.ablation_spec(
        variant, dataset, bits, seed, experiment, equal_budget=equal_budget
    )


def main(argv):
    del argv
    from deephash import data, reproduce

    _flags.show_progress()
    try:
        if not FLAGS.out:
            raise ValueError("--out is required")
        if FLAGS.dataset not in data.available():
            raise ValueError(
                f"unknown dataset {FLAGS.dataset!r}; available: {', '.join(data.available())}"
            )
        if FLAGS.seeds < 1:
            raise ValueError("--seeds must be >= 1")
        experiment = reproduce.ExperimentConfig(
            preset=FLAGS.preset,
            paper="dseh",
            seeds=tuple(range(FLAGS.seeds)),
            epochs=FLAGS.epochs,
            lr=FLAGS.lr,
            weights=FLAGS.weights,
            strategy=FLAGS.strategy,
            verbose=FLAGS.verbose,
            root=FLAGS.root,
            runs_dir=FLAGS.runs_dir,
            reuse=FLAGS.reuse,
            jobs=_flags.jobs() if FLAGS.strategy == "default" else 1,
        )
        reproduce.dseh_ablation(
            FLAGS.dataset,
            experiment,
            out=FLAGS.out,
            bits=FLAGS.bits,
            variants=FLAGS.variants,
            equal_budget=FLAGS.equal_budget,
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
