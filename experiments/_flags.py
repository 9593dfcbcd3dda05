"""Flags of the experiment scripts, each defined once here, and the translation of the
table scripts' flags (dsrh_figures, dseh_table1, dseh_figures) into one
``deephash.experiment_config.ExperimentConfig``; :func:`show_progress` sends the library's
progress lines (``deephash`` loggers, INFO) to stdout."""

from __future__ import annotations

import logging
import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
STRATEGIES = ["default", "mirrored", "multiworker"]
DOWNLOAD_HELP = (
    "allow downloads (tfds data sets, published weights); --download=false (or "
    "DEEPHASH_OFFLINE=1) fails instead, naming the command to run on a machine with internet"
)
REUSE_HELP = (
    "finished runs in --runs_dir trained by other library code: 'any' reuses them (with a "
    "note), 'same_code' retrains them"
)
# name -> (absl definer, default, help, extra keyword arguments)
SPECS = {
    "dataset": (flags.DEFINE_string, "digits", "data set name (deephash.data.available())", {}),
    "root": (
        flags.DEFINE_string,
        None,
        "directory holding the data set's files (file-based sets)",
        {},
    ),
    "preset": (
        flags.DEFINE_enum,
        "quick",
        "quick: small CNN, few epochs; paper: the papers' backbones and hyper-parameters "
        "(see deephash.presets)",
        {"enum_values": ["quick", "paper"]},
    ),
    "out": (flags.DEFINE_string, None, "output directory", {}),
    "runs_dir": (
        flags.DEFINE_string,
        None,
        "where run directories are kept and reused (default: OUT/runs); share it between "
        "scripts to share trained models",
        {},
    ),
    "reuse": (flags.DEFINE_enum, "any", REUSE_HELP, {"enum_values": ["any", "same_code"]}),
    "features": (
        flags.DEFINE_string,
        None,
        "shallow methods: directory of precomputed features, or 'gist' (computed from the "
        "images once per split and cached)",
        {},
    ),
    "weights": (
        flags.DEFINE_string,
        None,
        "pretrained backbone weights: 'imagenet' (the published file, downloaded once and "
        "cached) or a local file (VGG-19 .h5 for DSRH, CNN-F .mat otherwise)",
        {},
    ),
    "download": (flags.DEFINE_bool, True, DOWNLOAD_HELP, {}),
    "epochs": (flags.DEFINE_integer, None, "override the preset's epochs (deep methods)", {}),
    "lr": (flags.DEFINE_float, None, "override the preset's learning rate (deep methods)", {}),
    "strategy": (
        flags.DEFINE_enum,
        "default",
        "tf.distribute strategy",
        {"enum_values": STRATEGIES},
    ),
    "jobs": (
        flags.DEFINE_integer,
        None,
        "worker processes training runs side by side, each with cores // jobs threads "
        "(default: one per CPU core, at most 8, without a GPU; 1 with one); 1 trains in this "
        "process. A run's numbers depend on its thread count, which its config.json records",
        {"lower_bound": 1},
    ),
    "threads": (
        flags.DEFINE_integer,
        None,
        "TensorFlow threads (default: TensorFlow's choice); a run repeats bit for bit with "
        "the thread count its config.json records ('threads')",
        {"lower_bound": 1},
    ),
    "allow_missing": (
        flags.DEFINE_bool,
        False,
        "skip (with a note) methods not registered in this installation",
        {},
    ),
}


_OWN = object()  # "the flag's own default"


def define_flag(name: str, default=_OWN, help: str | None = None, **extra) -> None:
    """Define flag ``name`` of :data:`SPECS`; ``default`` and ``help`` replace its own."""
    definer, own_default, own_help, own_extra = SPECS[name]
    definer(
        name,
        own_default if default is _OWN else default,
        help=help or own_help,
        **{**own_extra, **extra},
    )


def define(default_dataset: str, default_out: str, default_methods, default_bits) -> None:
    """The table scripts' flags (dsrh_figures, dseh_table1, dseh_figures)."""
    define_flag(
        "dataset",
        default_dataset,
        "data set name (deephash.data.available()); the embedded digits / digits_multi run "
        "anywhere",
    )
    define_flag("preset")
    define_flag("out", default_out, "output directory (report.md, CSV tables, PNG plots)")
    define_flag("runs_dir")
    define_flag("reuse")
    flags.DEFINE_list("seeds", ["0"], "seeds (data split, initialisation); results are averaged")
    flags.DEFINE_list("methods", list(default_methods), "methods, in table order")
    flags.DEFINE_list("bits", [str(b) for b in default_bits], "code lengths")
    define_flag("allow_missing")
    define_flag("root", help="directory of a file-based data set (paper preset)")
    define_flag(
        "features",
        help="feature directory for the shallow methods, or 'gist' (computed and cached); "
        "--preset=paper needs one, except DSRH on cifar10 (GIST by default)",
    )
    define_flag("weights")
    define_flag("download")
    define_flag("epochs")
    define_flag("lr")
    define_flag("jobs")


def jobs() -> int:
    """--jobs, or the machine's default (``sweep.default_jobs``)."""
    from deephash import sweep

    return FLAGS.jobs if FLAGS.jobs is not None else sweep.default_jobs()


def ints(values, name: str) -> list[int]:
    """A list flag's values as integers (ValueError naming the flag)."""
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(
            f"--{name} must be a comma-separated list of integers, got {','.join(values)!r}"
        ) from None


def experiment_config():
    """The table scripts' flags as one ``ExperimentConfig`` (and the download switch set)."""
    from deephash import downloads
    from deephash.backbones.pretrained import check_weights_arg
    from deephash.experiment_config import ExperimentConfig

    check_weights_arg(FLAGS.weights)
    if not FLAGS.download:
        downloads.set_network_allowed(False)
    if FLAGS.features and FLAGS.features.lower() != "gist" and not os.path.isdir(FLAGS.features):
        raise FileNotFoundError(
            f"--features: no feature directory at {FLAGS.features!r} (or 'gist')"
        )
    return ExperimentConfig(
        preset=FLAGS.preset,
        runs_dir=FLAGS.runs_dir,
        seeds=tuple(ints(FLAGS.seeds, "seeds")),
        allow_missing=FLAGS.allow_missing,
        root=FLAGS.root,
        features=FLAGS.features,
        weights=FLAGS.weights,
        epochs=FLAGS.epochs,
        lr=FLAGS.lr,
        reuse=FLAGS.reuse,
        jobs=jobs(),
    )


def methods() -> list[str]:
    """--methods without empty entries."""
    return [m.strip() for m in FLAGS.methods if m.strip()]


class _Stdout(logging.StreamHandler):
    """A handler writing to the current ``sys.stdout`` (also when it is replaced later)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


# the library modules whose INFO lines are the scripts' progress output (they were printed)
PROGRESS_LOGGERS = ("deephash.reproduce", "deephash.sweep", "deephash.tuning")


def show_progress() -> None:
    """Print the progress lines of :data:`PROGRESS_LOGGERS` (INFO and above) on stdout as
    plain lines, as the scripts always have; the other ``deephash`` loggers keep going
    through absl's handler."""
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        if any(getattr(h, "deephash_progress", False) for h in logger.handlers):
            continue
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.deephash_progress = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # not a second time through absl's handler
