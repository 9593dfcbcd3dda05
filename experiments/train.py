"""Train one hashing method on one data set and write a run directory.

    python experiments/train.py --method=dsrh --dataset=digits --bits=32 --out=runs/dsrh_digits_32

Without training flags a run takes the data set's preset (``deephash.presets``): ``quick``
on the embedded sets (digits, digits_multi: the small CNN, training to the validation
plateau with early stopping, settings chosen on validation, ``deephash.tuning``),
``paper`` on the papers' sets. A training flag given explicitly replaces that one value;
config.json's ``sources`` records where each value came from, metrics.json's
``early_stopping`` the epochs run, the best epoch and the validation curve.
``deephash.experiment.run`` does the work. Bad flags stop
with a one-line error before anything is trained. The defaults of the flags that are not
the preset's (strategy, seed, ...) are ``deephash.training.TrainConfig``'s.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import NamedTuple

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _flags  # noqa: E402

from deephash import training  # noqa: E402

FLAGS = flags.FLAGS
LIST_SETS = ("nuswide21", "imagenet100", "coco")  # list-file data sets (deephash.data.listfile)
CONFIG = {f.name: f.default for f in dataclasses.fields(training.TrainConfig)}
PRESET = "(default: the preset's)"

flags.DEFINE_string("method", "dsrh", "method name (see deephash.methods.available())")
_flags.define_flag("dataset", "digits")
_flags.define_flag("root")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_string(
    "backbone", None, "backbone name for deep methods (default: the method's, small_cnn / vgg19)"
)
_flags.define_flag(
    "weights",
    help="pretrained backbone weights: 'imagenet' (the published file, downloaded once and "
    "cached) or a local weights file",
)
_flags.define_flag("download")
_flags.define_flag(
    "preset",
    None,
    "training settings of deephash.presets (default: quick on the embedded sets "
    "digits/digits_multi, paper on the papers' sets); a training flag given explicitly "
    "overrides the preset's value",
)
flags.DEFINE_enum(
    "paper",
    None,
    ["dsrh", "dseh"],
    "--preset=paper: whose settings (default: dseh for the DSEH "
    "family and its baselines hashnet/dhn/dpsh/cnnh, else dsrh)",
)
# the training flags a preset provides (each None: the preset's value)
flags.DEFINE_integer("epochs", None, f"training epochs, the cap with early stopping {PRESET}")
flags.DEFINE_integer(
    "batch_size", None, f"global batch size, triplets for triplet methods {PRESET}"
)
flags.DEFINE_float("lr", None, f"initial learning rate {PRESET}")
flags.DEFINE_float("momentum", None, f"SGD momentum {PRESET}")
flags.DEFINE_float("weight_decay", None, f"Caffe-style L2 weight decay {PRESET}")
flags.DEFINE_integer(
    "lr_decay_steps",
    None,
    f"multiply the learning rate by lr_decay_rate every this many steps (0: never) {PRESET}",
)
flags.DEFINE_float("lr_decay_rate", None, f"learning-rate step factor {PRESET}")
flags.DEFINE_integer(
    "patience",
    None,
    "early stopping: validations without improvement of validation mAP "
    f"before stopping (0: off, train all epochs) {PRESET}",
)
flags.DEFINE_integer("validation_every", None, f"epochs between validations {PRESET}")
flags.DEFINE_float(
    "validation_fraction",
    None,
    f"share of the training split held out for validation {PRESET}",
)
# the other TrainConfig fields (defaults: TrainConfig's)
_flags.define_flag("strategy", CONFIG["strategy"])
flags.DEFINE_integer("seed", CONFIG["seed"], "random seed (data split, initialisation, batches)")
flags.DEFINE_bool(
    "mixed_precision", CONFIG["mixed_precision"], "mixed float16 on GPUs (ignored on CPU)"
)
flags.DEFINE_string(
    "checkpoint_dir",
    CONFIG["checkpoint_dir"],
    "per-epoch checkpoints (default: a hidden sibling of --out, "
    "removed at the end; re-running after an interruption resumes)",
)
flags.DEFINE_enum(
    "verbose",
    str(CONFIG["verbose"]),
    ["0", "1", "2", "epochs"],
    "progress: 0 silent, 1 Keras step bar, 2 one line per epoch, epochs one bar over the epochs",
)
_flags.define_flag("out", help="run directory to write (required)")
flags.DEFINE_bool("overwrite", False, "replace an existing run directory")
flags.DEFINE_string(
    "ortho_weight", None, "DSRH/DRH+ orthogonality weight: a number or 'auto' (validation split)"
)
_flags.define_flag("features")
_flags.define_flag("threads")
flags.DEFINE_integer(
    "num_devices", 0, "simulate this many CPU devices (for --strategy=mirrored without GPUs)"
)
flags.DEFINE_string("hparams", "", "method hyper-parameters as key=value,key=value")
flags.DEFINE_bool(
    "overwrite_checkpoints",
    False,
    "discard checkpoints of other settings found in the checkpoint "
    "directory (without it such a run stops with an error naming the differences)",
)
flags.DEFINE_bool(
    "verify_images",
    True,
    "list-file data sets: decode every image before training (a corrupt "
    "one stops the run at once, naming the file); verified files are remembered",
)


def parse_hparams(text: str) -> dict:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (ints, floats, true/false/none parsed)."""
    out: dict = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"--hparams: expected key=value, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        out[key] = _value(value)
    return out


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


class Run(NamedTuple):
    """What the flags ask for: ``experiment.run``'s arguments."""

    method: str
    dataset: str
    bits: int
    config: training.TrainConfig
    out: str
    hparams: dict
    sources: dict  # where each setting came from (config.json)
    selection: dict  # how the preset's values were chosen (metrics.json)
    features: str | None


def build(argv_flags) -> Run:
    """Flags -> :class:`Run`; ValueError on bad flags."""
    f = argv_flags
    method = f.method.lower()
    _check_flags(f, method)
    hparams = _flag_hparams(f)
    config, hparams, sources, selection, features = preset_settings(f, method, hparams)
    return Run(method, f.dataset, f.bits, config, f.out, hparams, sources, selection, features)


def _check_flags(f, method: str) -> None:
    from deephash import backbones, data, methods, runs, validation

    if not f.out:
        raise ValueError("--out (the run directory) is required")
    family = methods.family(method)  # unknown method -> ValueError
    if f.dataset not in data.available():
        raise ValueError(f"unknown dataset {f.dataset!r}; available: {', '.join(data.available())}")
    methods.check_bits(f.bits, method=method)
    runs.check_out_dir(f.out, f.overwrite)
    validation.check_int(f.num_devices, "--num_devices", minimum=0)
    if f.features is not None and family != "shallow":
        raise ValueError(f"--features applies to shallow methods; {method!r} is a deep method")
    if f.backbone and f.backbone.lower() not in backbones.available():
        raise ValueError(
            f"unknown --backbone {f.backbone!r}; available: {', '.join(backbones.available())}"
        )


def _flag_hparams(f) -> dict:
    """--hparams with --backbone, --weights and --ortho_weight."""
    hparams = parse_hparams(f.hparams)
    if f.backbone:
        hparams["backbone"] = f.backbone
    if f.weights:
        from deephash.backbones.pretrained import check_weights_arg

        check_weights_arg(f.weights)
        hparams["weights"] = f.weights
    if f.ortho_weight is None:
        return hparams
    if f.ortho_weight.lower() == "auto":
        hparams["ortho_weight"] = "auto"
        return hparams
    try:
        hparams["ortho_weight"] = float(f.ortho_weight)
    except ValueError:
        raise ValueError(
            f"--ortho_weight must be a number or 'auto', got {f.ortho_weight!r}"
        ) from None
    return hparams


def _user_error(e: Exception) -> bool:
    from deephash import runs

    return isinstance(e, (ValueError, FileNotFoundError, runs.DirectoryLockedError))


EMBEDDED = ("digits", "digits_multi")
DSEH_PAPER_METHODS = ("hashnet", "dhn", "dpsh", "cnnh")
# flag -> TrainConfig field of the training flags a preset provides
TRAIN_FLAGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "lr_decay_steps": "lr_decay_steps",
    "lr_decay_rate": "lr_decay_rate",
    "patience": "patience",
    "validation_every": "validation_every",
    "validation_fraction": "validation_fraction",
}


def preset_settings(f, method: str, hparams: dict) -> tuple:
    """``(TrainConfig, hparams, sources, selection, features)``: the preset's settings of
    ``method`` on ``--dataset`` (``deephash.presets.spec``), each training flag given
    explicitly replacing one value; ``sources`` names where every value came from (written
    to config.json)."""
    from deephash import presets

    preset = f.preset or ("quick" if f.dataset in EMBEDDED else "paper")
    paper = f.paper or (
        "dseh" if method in presets.DSEH_FAMILY or method in DSEH_PAPER_METHODS else "dsrh"
    )
    experiment = presets.ExperimentConfig(
        preset=preset, paper=paper, features=f.features, root=f.root
    )
    spec = presets.spec(method, f.dataset, f.bits, experiment, seed=f.seed, hparams=hparams)
    explicit = _explicit(f)
    values = {
        **spec.config.to_dict(),
        **explicit,
        "strategy": f.strategy,
        "seed": f.seed,
        "mixed_precision": f.mixed_precision,
        "checkpoint_dir": f.checkpoint_dir,
        "verbose": f.verbose if f.verbose == "epochs" else int(f.verbose),
    }
    selection = dict(spec.selection)
    if "lr" in explicit:
        selection.pop("lr", None)
    sources = _sources(preset, paper, explicit, hparams, spec.hparams, selection)
    return training.TrainConfig(**values), dict(spec.hparams), sources, selection, spec.features


def _explicit(f) -> dict:
    """The training flags given, as TrainConfig values (0 turns off a decay or patience)."""
    explicit = {}
    for flag, field in TRAIN_FLAGS.items():
        value = getattr(f, flag)
        if value is None:
            continue
        explicit[field] = (value or None) if flag in ("lr_decay_steps", "patience") else value
    return explicit


def _sources(preset, paper, explicit, given, hparams, selection) -> dict:
    """Where every training value and hyper-parameter came from (config.json)."""
    origin = f"preset {preset}" + (f" ({paper})" if preset == "paper" else "")
    sources = {"preset": preset, **({"paper": paper} if preset == "paper" else {})}
    sources["train"] = {
        field: ("flag" if field in explicit else origin) for field in TRAIN_FLAGS.values()
    }
    tuned = "selected on validation (deephash.tuning)"
    sources["hparams"] = {
        k: ("flag" if k in given else (tuned if k in selection else origin)) for k in hparams
    }
    return sources


def main(argv):
    del argv
    try:
        result = _run()
    except Exception as e:  # bad input, a locked or damaged directory, a diverged run:
        if not _user_error(e):  # one line, no traceback
            raise
        sys.exit(f"error: {e}")
    from deephash import experiment

    print(experiment.format_table([result]))
    print(f"conventions: {experiment.conventions_line(result)}")
    print(
        f"run directory: {result['run_dir']}"
        if result["run_dir"]
        else "run directory: written by the chief worker (this process is another worker of "
        "the cluster)"
    )


def _run() -> dict:
    from deephash import data, downloads, experiment, validation

    if FLAGS.threads is not None:
        training.set_threads(FLAGS.threads)
    if validation.check_int(FLAGS.num_devices, "--num_devices", minimum=0):
        training.simulate_devices(FLAGS.num_devices)
    if not FLAGS.download:
        downloads.set_network_allowed(False)
    run = build(FLAGS)
    dataset = run.dataset
    if FLAGS.verify_images and dataset in LIST_SETS:  # every image decoded before any training
        dataset = data.load(dataset, root=FLAGS.root, seed=run.config.seed, verify_images=True)
    return experiment.run(
        run.method,
        dataset,
        run.bits,
        run.config,
        run.out,
        hparams=run.hparams,
        overwrite=FLAGS.overwrite,
        features=run.features,
        root=FLAGS.root,
        overwrite_checkpoints=FLAGS.overwrite_checkpoints,
        hparam_selection=run.selection,
        sources=run.sources,
    )


if __name__ == "__main__":
    app.run(main)
