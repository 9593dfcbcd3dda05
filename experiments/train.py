"""Train one hashing method on one data set and write a run directory.

    python experiments/train.py --method=dsrh --dataset=digits --bits=32 --out=runs/dsrh_digits_32

Without training flags a run takes the data set's preset (``deephash.presets``): ``quick``
on the embedded sets (digits, digits_multi: the small CNN, training to the validation
plateau with early stopping, settings chosen on validation, ``deephash.tuning``),
``paper`` on the papers' sets. A training flag given explicitly replaces that one value;
config.json's ``sources`` records where each value came from, metrics.json's
``early_stopping`` the epochs run, the best epoch and the validation curve.
``deephash.experiment.run`` does the work. Bad flags stop
with a one-line error before anything is trained.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
LIST_SETS = ("nuswide21", "imagenet100", "coco")  # list-file data sets (deephash.data.listfile)
flags.DEFINE_string("method", "dsrh", "method name (see deephash.methods.available())")
flags.DEFINE_string("dataset", "digits", "data set name (see deephash.data.available())")
flags.DEFINE_string("root", None, "directory holding the data set's files (file-based sets)")
flags.DEFINE_integer("bits", 32, "code length")
flags.DEFINE_string(
    "backbone", None, "backbone name for deep methods (default: the method's, small_cnn / vgg19)"
)
flags.DEFINE_string(
    "weights",
    None,
    "pretrained backbone weights: 'imagenet' (the published file, downloaded "
    "once and cached) or a local weights file",
)
flags.DEFINE_bool(
    "download",
    True,
    "allow downloads (tfds data sets, published weights); --download=false (or "
    "DEEPHASH_OFFLINE=1) fails instead, naming the command to run on a machine with internet",
)
flags.DEFINE_enum(
    "preset",
    None,
    ["quick", "paper"],
    "training settings of deephash.presets (default: quick on "
    "the embedded sets digits/digits_multi, paper on the papers' sets); a training flag given "
    "explicitly overrides the preset's value",
)
flags.DEFINE_enum(
    "paper",
    None,
    ["dsrh", "dseh"],
    "--preset=paper: whose settings (default: dseh for the DSEH "
    "family and its baselines hashnet/dhn/dpsh/cnnh, else dsrh)",
)
flags.DEFINE_integer(
    "epochs", None, "training epochs, the cap with early stopping (default: the preset's)"
)
flags.DEFINE_integer(
    "batch_size", None, "global batch size, triplets for triplet methods (default: the preset's)"
)
flags.DEFINE_float("lr", None, "initial learning rate (default: the preset's)")
flags.DEFINE_float("momentum", None, "SGD momentum (default: the preset's)")
flags.DEFINE_float("weight_decay", None, "Caffe-style L2 weight decay (default: the preset's)")
flags.DEFINE_integer(
    "lr_decay_steps",
    None,
    "multiply the learning rate by lr_decay_rate every this many steps "
    "(0: never; default: the preset's)",
)
flags.DEFINE_float("lr_decay_rate", None, "learning-rate step factor (default: the preset's)")
flags.DEFINE_integer(
    "patience",
    None,
    "early stopping: validations without improvement of validation mAP "
    "before stopping (0: off, train all epochs; default: the preset's)",
)
flags.DEFINE_integer("validation_every", None, "epochs between validations (default: the preset's)")
flags.DEFINE_float(
    "validation_fraction",
    None,
    "share of the training split held out for validation (default: the preset's)",
)
flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multiworker"], "tf.distribute strategy"
)
flags.DEFINE_integer("seed", 0, "random seed (data split, initialisation, batches)")
flags.DEFINE_string("out", None, "run directory to write (required)")
flags.DEFINE_bool("overwrite", False, "replace an existing run directory")
flags.DEFINE_string(
    "ortho_weight", None, "DSRH/DRH+ orthogonality weight: a number or 'auto' (validation split)"
)
flags.DEFINE_string(
    "features",
    None,
    "shallow methods: directory of precomputed features, or 'gist' "
    "(computed from the images once per split and cached)",
)
flags.DEFINE_integer(
    "num_devices", 0, "simulate this many CPU devices (for --strategy=mirrored without GPUs)"
)
flags.DEFINE_bool("mixed_precision", False, "mixed float16 on GPUs (ignored on CPU)")
flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "per-epoch checkpoints (default: a hidden sibling of --out, "
    "removed at the end; re-running after an interruption resumes)",
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
flags.DEFINE_enum(
    "verbose",
    "1",
    ["0", "1", "2", "epochs"],
    "progress: 0 silent, 1 Keras step bar, 2 one line per epoch, epochs one bar over the epochs",
)


def parse_hparams(text: str) -> dict:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (ints, floats, true/false/none parsed)."""
    out: dict = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"--hparams: expected key=value, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif low == "none":
            out[key] = None
        else:
            for cast in (int, float):
                try:
                    out[key] = cast(value)
                    break
                except ValueError:
                    continue
            else:
                out[key] = value
    return out


def build(argv_flags) -> tuple:
    """Flags -> (method, dataset, bits, TrainConfig, out, hparams); ValueError on bad flags."""
    from deephash import data, methods, runs

    f = argv_flags
    if not f.out:
        raise ValueError("--out (the run directory) is required")
    method = f.method.lower()
    methods.family(method)  # unknown method -> ValueError
    if f.dataset not in data.available():
        raise ValueError(f"unknown dataset {f.dataset!r}; available: {', '.join(data.available())}")
    methods.check_bits(f.bits, method=method)
    runs.check_out_dir(f.out, f.overwrite)
    if f.num_devices < 0:
        raise ValueError(
            f"--num_devices must be 0 (no simulation) or a positive number of CPU devices, got {f.num_devices}"
        )
    if f.features is not None and methods.family(method) != "shallow":
        raise ValueError(f"--features applies to shallow methods; {method!r} is a deep method")
    if f.backbone:
        from deephash import backbones

        if f.backbone.lower() not in backbones.available():
            raise ValueError(
                f"unknown --backbone {f.backbone!r}; available: {', '.join(backbones.available())}"
            )
    hparams = parse_hparams(f.hparams)
    if f.backbone:
        hparams["backbone"] = f.backbone
    if f.weights:
        from deephash.backbones.pretrained import check_weights_arg

        check_weights_arg(f.weights)
        hparams["weights"] = f.weights
    if f.ortho_weight is not None:
        if f.ortho_weight.lower() == "auto":
            hparams["ortho_weight"] = "auto"
        else:
            try:
                hparams["ortho_weight"] = float(f.ortho_weight)
            except ValueError:
                raise ValueError(
                    f"--ortho_weight must be a number or 'auto', got {f.ortho_weight!r}"
                ) from None
    config, hparams, sources, selection, features = preset_settings(f, method, hparams)
    build.sources, build.selection, build.features = sources, selection, features
    return method, f.dataset, f.bits, config, f.out, hparams


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
    """``(TrainConfig, hparams, sources, selection, features)``: the preset's settings of ``method`` on
    ``--dataset`` (``deephash.presets.spec``), each training flag given explicitly replacing
    one value; ``sources`` names where every value came from (written to config.json)."""
    from deephash import presets, training

    preset = f.preset or ("quick" if f.dataset in EMBEDDED else "paper")
    paper = f.paper or (
        "dseh" if method in presets.DSEH_FAMILY or method in DSEH_PAPER_METHODS else "dsrh"
    )
    origin = f"preset {preset}" + (f" ({paper})" if preset == "paper" else "")
    spec = presets.spec(
        method,
        f.dataset,
        f.bits,
        preset=preset,
        paper=paper,
        seed=f.seed,
        features=f.features,
        root=f.root,
        hparams=hparams,
    )
    explicit = {}
    for flag, field in TRAIN_FLAGS.items():
        value = getattr(f, flag)
        if value is None:
            continue
        if flag == "lr_decay_steps" or flag == "patience":
            value = value or None
        explicit[field] = value
    values = {
        **spec.config.to_dict(),
        **explicit,
        "strategy": f.strategy,
        "seed": f.seed,
        "mixed_precision": f.mixed_precision,
        "checkpoint_dir": f.checkpoint_dir,
        "verbose": f.verbose if f.verbose == "epochs" else int(f.verbose),
    }
    config = training.TrainConfig(**values)
    sources = {"preset": preset, **({"paper": paper} if preset == "paper" else {})}
    sources["train"] = {
        field: ("flag" if field in explicit else origin) for field in TRAIN_FLAGS.values()
    }
    selection = dict(spec.selection)
    if "lr" in explicit:
        selection.pop("lr", None)
    sources["hparams"] = {
        k: (
            "flag"
            if k in hparams
            else ("selected on validation (deephash.tuning)" if k in selection else origin)
        )
        for k in spec.hparams
    }
    return config, dict(spec.hparams), sources, selection, spec.features


def main(argv):
    del argv
    try:
        if FLAGS.num_devices:
            from deephash import training

            if FLAGS.num_devices < 0:
                raise ValueError(
                    f"--num_devices must be 0 or a positive number of CPU devices, got {FLAGS.num_devices}"
                )
            training.simulate_devices(FLAGS.num_devices)
        import deephash
        from deephash import data, downloads, experiment

        if not FLAGS.download:
            downloads.set_network_allowed(False)
        method, dataset, bits, config, out, hparams = build(FLAGS)
        if FLAGS.verify_images and dataset in LIST_SETS:  # every image decoded before any training
            dataset = data.load(dataset, root=FLAGS.root, seed=config.seed, verify_images=True)
        result = experiment.run(
            method,
            dataset,
            bits,
            config,
            out,
            hparams=hparams,
            overwrite=FLAGS.overwrite,
            features=build.features,
            root=FLAGS.root,
            overwrite_checkpoints=FLAGS.overwrite_checkpoints,
            hparam_selection=build.selection,
            sources=build.sources,
        )
    except (
        Exception
    ) as e:  # bad input, a locked or damaged directory, a diverged run: one line, no traceback
        if not _user_error(e):
            raise
        sys.exit(f"error: {e}")
    print(experiment.format_table([result]))
    print(f"conventions: {experiment.conventions_line(result)}")
    print(
        f"run directory: {result['run_dir']}"
        if result["run_dir"]
        else "run directory: written by the chief worker (this process is another worker of the cluster)"
    )
    del deephash


if __name__ == "__main__":
    app.run(main)
