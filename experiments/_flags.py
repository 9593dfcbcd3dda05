"""Flags shared by the experiment scripts (dsrh_figures, dseh_table1, dseh_figures) and
the translation of those flags into keyword arguments of ``deephash.reproduce``."""

from __future__ import annotations

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS


def define(default_dataset: str, default_out: str, default_methods, default_bits) -> None:
    flags.DEFINE_string(
        "dataset",
        default_dataset,
        "data set name (deephash.data.available()); the embedded "
        "digits / digits_multi run anywhere",
    )
    flags.DEFINE_enum(
        "preset",
        "quick",
        ["quick", "paper"],
        "quick: small CNN, few epochs; paper: the papers' "
        "backbones and hyper-parameters (see deephash.presets)",
    )
    flags.DEFINE_string("out", default_out, "output directory (report.md, CSV tables, PNG plots)")
    flags.DEFINE_string(
        "runs_dir",
        None,
        "where run directories are kept and reused (default: OUT/runs); "
        "share it between scripts to share trained models",
    )
    flags.DEFINE_enum(
        "reuse",
        "any",
        ["any", "same_code"],
        "finished runs in --runs_dir trained by other "
        "library code: 'any' reuses them (with a note), 'same_code' retrains them",
    )
    flags.DEFINE_list("seeds", ["0"], "seeds (data split, initialisation); results are averaged")
    flags.DEFINE_list("methods", list(default_methods), "methods, in table order")
    flags.DEFINE_list("bits", [str(b) for b in default_bits], "code lengths")
    flags.DEFINE_bool(
        "allow_missing", False, "skip (with a note) methods not registered in this installation"
    )
    flags.DEFINE_string("root", None, "directory of a file-based data set (paper preset)")
    flags.DEFINE_string(
        "features",
        None,
        "feature directory for the shallow methods, or 'gist' (computed and "
        "cached); --preset=paper needs one, except DSRH on cifar10 (GIST by default)",
    )
    flags.DEFINE_string(
        "weights",
        None,
        "pretrained backbone weights: 'imagenet' (the published file, downloaded once "
        "and cached) or a local file (VGG-19 .h5 for DSRH, CNN-F .mat otherwise)",
    )
    flags.DEFINE_bool(
        "download",
        True,
        "allow downloads (tfds data sets, published weights); --download=false "
        "(or DEEPHASH_OFFLINE=1) fails instead, naming the command to run on a machine with internet",
    )
    flags.DEFINE_integer("epochs", None, "override the preset's epochs (deep methods)")
    flags.DEFINE_float("lr", None, "override the preset's learning rate (deep methods)")


def _ints(values, name: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(
            f"--{name} must be a comma-separated list of integers, got {','.join(values)!r}"
        ) from None


def kwargs(with_bits: bool = True) -> dict:
    """The shared flags as keyword arguments of the ``deephash.reproduce`` functions."""
    from deephash import downloads
    from deephash.backbones.pretrained import check_weights_arg

    check_weights_arg(FLAGS.weights)
    if not FLAGS.download:
        downloads.set_network_allowed(False)
    if FLAGS.features and FLAGS.features.lower() != "gist" and not os.path.isdir(FLAGS.features):
        raise FileNotFoundError(
            f"--features: no feature directory at {FLAGS.features!r} (or 'gist')"
        )
    kw = dict(
        dataset=FLAGS.dataset,
        preset=FLAGS.preset,
        out=FLAGS.out,
        runs_dir=FLAGS.runs_dir,
        seeds=_ints(FLAGS.seeds, "seeds"),
        methods=[m.strip() for m in FLAGS.methods if m.strip()],
        allow_missing=FLAGS.allow_missing,
        root=FLAGS.root,
        features=FLAGS.features,
        weights=FLAGS.weights,
        epochs=FLAGS.epochs,
        lr=FLAGS.lr,
        reuse=FLAGS.reuse,
    )
    if with_bits:
        kw["bits"] = _ints(FLAGS.bits, "bits")
    return kw
