"""Training presets of the experiments: what a run of ``method`` on ``dataset`` at ``bits``
uses under ``--preset=quick`` or ``--preset=paper`` (:func:`spec` -> :class:`RunSpec`).

* ``quick``: the embedded data (digits, digits_multi) or any set, each method's default
  backbone for small images (``small_cnn``); deep methods train to their validation
  plateau (early stopping, best weights restored, at most ``QUICK_STEPS`` steps;
  :func:`quick_schedule`; the DSEH family's ImgNet phases each to their own,
  :func:`quick_dseh_schedule`), the papers' schedules scaled to that
  length, and the learning rate, triplet margins and lambdas chosen on validation data
  (``deephash.tuning``; the record goes to ``RunSpec.selection`` and metrics.json).
* ``paper``: the papers' settings where they state them, our stated choice where they do
  not (``PAPER_NOTES`` lists which is which). DSRH, DRH, DRH+: VGG-19, batch 64 triplets,
  SGD lr 0.01 momentum 0.9, x0.1 after 5,000 (CIFAR-10) / 20,000 (NUS-WIDE) iterations,
  weight decay 2e-4, 30 bags, lambda 0.25. DSEH: CNN-F, ImgNet batch 128, LabNet batch 32,
  new layers at 10x, 3 alternating rounds, and the authors' released configuration where the
  paper is silent (:func:`dseh_paper`; ``hparams={"dseh_setting": "paper_text"}`` for the text's).
  Deep baselines: CNN-F (DSEH's comparison) or the method's own default (NINH in DSRH's).
  Shallow methods: feature vectors from ``experiments/extract_features.py`` (``features``),
  or computed features by name (``features="gist"``); DSRH on CIFAR-10 defaults to
  ``"gist"``, computed once per split and cached (``deephash.features.cached_features``).

``paper`` selects which paper an experiment reproduces ("dsrh" or "dseh"); it decides the
protocol options (NUS-WIDE mAP depth) and the deep baselines' backbone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from deephash import experiment_config, training, tuning
from deephash.experiment_config import PAPERS, PRESETS, ExperimentConfig

DSRH_FAMILY = ("dsrh", "drh", "drh+")
DSEH_FAMILY = ("dseh", "dseh-s", "dseh-ss", "dseh-l", "dseh-a")

# the methods and code lengths of each figure / table
DSRH_FIGURE_METHODS = ("dsrh", "drh+", "drh", "ninh", "ksh", "itq", "sh", "lsh", "pcah")
DSRH_BITS = (12, 24, 32, 48)
DSEH_TABLE1_METHODS = (
    "dseh",
    "hashnet",
    "dhn",
    "dpsh",
    "cnnh",
    "sdh",
    "itq-cca",
    "ksh",
    "itq",
    "sh",
    "lsh",
)
DSEH_BITS = (16, 32, 48, 64)
DSEH_FIGURE_BITS = 32
DSRH_PR_BITS = 48

# --- quick preset: optimiser steps are len(train) // batch per epoch (digits: 500 training
# images, digits_multi: 1,000). Learning rates and the baselines' weights are those their
# learning tests use on digits. The DSEH family (every script, experiments/dseh_ablation.py
# included, takes its quick settings from here): 3 rounds of 9 LabNet epochs and an ImgNet
# phase trained to its plateau (quick_dseh_schedule) at a constant lr 0.01 (at lr 0.03 the
# small CNN's ReLUs all died on some seeds; with 3 LabNet epochs ImgNet chased half-trained
# LabNet codes in round 1 and gave every image one code at 48/64 bits on digits;
# docs/dseh.md), and S in {0, 5} on single-label sets, as the paper does on ImageNet (with
# S = 1 its image codes collapse to one code on digits).
QUICK_LR = {"dsrh_family": 0.02, "dseh_family": 0.01, "deep": 0.05}
QUICK_BATCH = 64
# DPSH: in-batch pairs on the embedded data; its default, the reference's table of all training
# outputs, gave every digits_multi image one code from small_cnn's random start (docs/baselines.md)
QUICK_HPARAMS = {"dpsh": {"eta": 0.002, "pairs": "batch"}, "dhn": {"quantization_weight": 0.005}}
QUICK_DSEH = {
    "rounds": 3,
    "labnet_epochs": 9,
}  # "dseh-a": 1 round (no alternation); ImgNet phases: quick_dseh_schedule
QUICK_SINGLE_LABEL_SIMILARITY = 5.0  # DSEH family on single-label data sets
QUICK_SHALLOW = {"ksh": {"n_anchors": 150, "n_labeled": 500, "max_iter": 10}}
# Deep methods other than the DSEH family train to the validation plateau (issue 14;
# deephash.early_stopping): a cap of QUICK_STEPS optimiser steps, validation mAP every ~
# QUICK_VALIDATE_STEPS steps on QUICK_VALIDATION_FRACTION of the training split, stop after
# QUICK_PATIENCE validations without improvement, best weights restored. Counted in steps
# (epochs follow from the training size), so schedules are relative to the run's length.
# The DSEH family keeps its 3 alternating rounds; each ImgNet phase trains to its own plateau
# (quick_dseh_schedule: the same cap and patience spread over the rounds).
QUICK_STEPS = 1500
QUICK_VALIDATE_STEPS = 30
QUICK_PATIENCE = 15
QUICK_VALIDATION_FRACTION = 0.2
QUICK_TRAIN_SIZE = {"digits": 500, "digits_multi": 1000}
# HashNet's continuation in the authors' released code: beta_step 200 and gamma 0.005 over
# 10,000 iterations. The quick preset maps those 10,000 onto its QUICK_STEPS (scale_schedule).
HASHNET_SCHEDULE = {"iterations": 10000, "beta_step": 200, "gamma": 0.005}

# --- paper preset
# DSRH: iterations of the step schedule; total training = 2x the decay point (our choice)
PAPER_DSRH_DECAY = {"cifar10": 5000, "nuswide21": 20000}
PAPER_TRAIN_SIZE = {"cifar10": 5000, "nuswide21": 10500, "imagenet100": 13000, "coco": 10000}
PAPER_DSEH_EPOCHS = 20  # per phase and round (not stated in the paper; our choice)
PAPER_DSEH_LR = 1e-3  # within the paper's search range 1e-2..1e-6 (choose on validation)
PAPER_BASELINE_EPOCHS = 50  # deep baselines (not stated in DSEH; our choice)
# DSEH section 4.1 trains on 100 ImageNet images per class (10,000); HashNet's lists hold 130
# (13,000): every method of a DSEH experiment gets the paper's 100 (dataset_options)
PAPER_DSEH_OPTIONS = {"nuswide21": {"map_depth": 5000}, "imagenet100": {"train_per_class": 100}}
PAPER_POSITIVE_SIMILARITY = {"imagenet100": 5.0}

# DSEH under --preset=paper: which configuration (hparams dseh_setting=...). "authors" is the
# released code (lelan-li/DSEH: main.py, DSEH.py, net_vggf.py), which produced the published
# numbers; "paper_text" is what the paper's text states, our choices elsewhere (docs/dseh.md
# has the knob-by-knob table).
DSEH_SETTINGS = ("authors", "paper_text")
PAPER_DSEH_SETTING = "authors"
# main.py: lr lists 0.1 ** (x0, x0 + 0.5, ...), indexed by epoch // 10 + round
_AUTHORS_DECAY = 10**-0.5
# main.py 'lr': LabNet 1e-3 everywhere; ImgNet's new layers 1e-4 / 10^-3.5 / 10^-4.5. On
# NUS-WIDE and MS-COCO DSEH.py trains CNN-F's layers at 0.1x that rate (two Adam
# optimisers); on ImageNet one optimiser at the same rate for all layers, with the gradients
# clipped.
AUTHORS_DSEH_IMGNET_LR = {"nuswide21": 1e-4, "coco": 10**-3.5, "imagenet100": 10**-4.5}
# DSEH.py train_label: LabNet epochs of round r = 30 - 10r (NUS-WIDE), 40 - 10r (COCO),
# 4 - r (ImageNet)
AUTHORS_DSEH_LABNET_EPOCHS = {
    "nuswide21": (30, 20, 10),
    "coco": (40, 30, 20),
    "imagenet100": (4, 3, 2),
}
AUTHORS_DSEH_IMGNET_EPOCHS = 40  # DSEH.py train_image: n = 40 every round
# main.py 's' (label_fea / label_hash; ImgNet's J1 uses 0.999 on every set, DSEH.py image_loss)
AUTHORS_DSEH_SIMILARITY = {"nuswide21": 0.999, "coco": 0.8, "imagenet100": 5.0}

PAPER_NOTES = {
    "stated": [
        "DSRH/DRH/DRH+: VGG-19, 30 bags, lambda 0.25, SGD momentum 0.9, lr 0.01 x0.1 after 5,000 "
        "(CIFAR-10) / 20,000 (NUS-WIDE) iterations, batch 64, weight decay 2e-4 (DSRH section 4.2)",
        "DSEH: CNN-F, LabNet batch 32, ImgNet batch 128, new layers at 10x lr, alpha = gamma = 1, "
        "beta = 0.005, eta = 1, S in {0, 5} on ImageNet (DSEH section 4.1)",
        "shallow baselines: GIST-512 (CIFAR-10) and AlexNet fc8 (NUS-WIDE) in DSRH, CNN-F fc7 in "
        "DSEH",
    ],
    "chosen": [
        "DSRH total iterations: twice the decay point (10,000 on CIFAR-10, 40,000 on NUS-WIDE)",
        "DSEH (dseh_setting=authors, the default): the released code's configuration where the "
        "paper is silent or the code differs (per-element loss means, ReLU semantic layers, Adam "
        "clipped to +-1, lr x10^-0.5 every 10 epochs and every round, per-data-set epochs / "
        "weights / similarities, Algorithm 1's joint step, Table 2 over train + retrieval at full "
        "depth; docs/dseh.md)",
        f"DSEH (dseh_setting=paper_text): {PAPER_DSEH_EPOCHS} epochs per phase, 3 rounds, SGD lr "
        f"{PAPER_DSEH_LR:g} (the paper selects lr on validation data in 1e-2..1e-6; pass --lr to "
        "change it)",
        f"deep baselines: {PAPER_BASELINE_EPOCHS} epochs, batch 128, lr 1e-3, CNN-F in DSEH's "
        "comparison",
        "shallow baselines on CIFAR-10: 512-d GIST (deephash.gist, LMgist's parameters) of the "
        "images at their own 32x32 size (the size is our choice; the paper does not state it), "
        "computed once per split and cached (--features=gist, the default here; a feature "
        "directory given with --features replaces it)",
    ],
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything ``experiment.run`` needs for one run (plus the data set's options)."""

    method: str
    dataset: str
    bits: int
    seed: int
    config: training.TrainConfig
    hparams: dict
    features: str | None = None
    root: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    # how the preset's tuned values were chosen (deephash.tuning; written to metrics.json)
    selection: dict = dataclasses.field(default_factory=dict)

    def request(self) -> dict:
        """The settings that identify this run (for reuse of run directories)."""
        cfg = {
            k: v for k, v in self.config.to_dict().items() if k not in ("verbose", "checkpoint_dir")
        }
        return {
            "method": self.method,
            "dataset": self.dataset,
            "bits": int(self.bits),
            "seed": int(self.seed),
            "config": cfg,
            "hparams": dict(sorted(self.hparams.items())),
            "features": self.features,
            "root": self.root,
            "dataset_options": dict(sorted(self.dataset_options.items())),
        }


def _group(method: str, family: str) -> str:
    if method in DSRH_FAMILY:
        return "dsrh_family"
    if method in DSEH_FAMILY:
        return "dseh_family"
    return "deep" if family == "deep" else "shallow"


# whether each named data set's protocol is multi-label (``data.Protocol.multilabel``; the
# loaders' protocols, listed here so that a preset is chosen without loading the data)
def multilabel(dataset) -> bool | None:
    """Whether ``dataset``'s protocol is multi-label: ``dataset.protocol.multilabel`` for a
    ``data.Dataset``, ``data.multilabel(name)`` for a name (None for a name data does not
    know)."""
    if isinstance(dataset, str):
        from deephash import data

        return data.multilabel(dataset) if dataset.lower() in data.available() else None
    return bool(dataset.protocol.multilabel)


def dataset_options(dataset: str, paper: str, preset: str) -> dict:
    """Loader options of the paper's protocol (e.g. NUS-WIDE mAP@5000 in DSEH)."""
    if preset == "paper" and paper == "dseh":
        return dict(PAPER_DSEH_OPTIONS.get(dataset, {}))
    return {}


def spec(
    method: str,
    dataset: str,
    bits: int,
    experiment: ExperimentConfig | None = None,
    *,
    seed: int = 0,
    hparams: dict | None = None,
    **settings,
) -> RunSpec:
    """The :class:`RunSpec` of one run of ``method`` on ``dataset`` at ``bits`` under the
    experiment's settings (``experiment``, an :class:`ExperimentConfig`; ``settings``: its
    fields by name, replacing its values, e.g. ``preset="paper"``). ``weights``: a local
    backbone weight file (VGG-19 .h5 for the DSRH family, CNN-F .mat otherwise; paper
    preset); ``epochs``/``lr`` override the preset's (for the DSEH family ``epochs`` is
    every phase's length); ``hparams`` (default: the experiment's for ``method``) are
    merged last; ``hparams["dseh_setting"]`` picks the DSEH family's paper configuration
    (:data:`DSEH_SETTINGS`, read by the DSEH family only, so that a table may pass it with
    every method's hparams). Unknown methods, presets or papers raise ValueError."""
    from deephash import methods

    exp = experiment_config.from_settings(experiment, settings)
    name = str(method).lower()
    group = _group(name, methods.family(name))  # ValueError naming the registered methods
    given = dict(hparams if hparams is not None else exp.method_hparams(name) or {})
    dseh_setting = given.pop("dseh_setting", PAPER_DSEH_SETTING)
    if dseh_setting not in DSEH_SETTINGS:
        raise ValueError(
            f"unknown DSEH setting {dseh_setting!r}; choose one of {', '.join(DSEH_SETTINGS)}"
        )
    run = _Settings(name, group, dataset, int(bits), int(seed), exp, dseh_setting)
    config, hp, selection, features = _preset_settings(run)
    config, hp = _override(run, config, hp, selection)
    hp.update(given)
    for key in given:
        selection.pop(key, None)
    return RunSpec(
        name,
        dataset,
        int(bits),
        int(seed),
        config,
        hp,
        features if group == "shallow" else None,
        exp.root,
        dataset_options(dataset, exp.paper, exp.preset),
        selection,
    )


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What :func:`spec`'s steps read."""

    name: str
    group: str
    dataset: str
    bits: int
    seed: int
    exp: ExperimentConfig
    dseh_setting: str


def _preset_settings(run: _Settings) -> tuple:
    """``(TrainConfig, hparams, selection, features)`` of the preset (before overrides)."""
    exp, group = run.exp, run.group
    if group == "shallow":
        config, hp, features = _shallow(run)
        return config, hp, {}, features
    if exp.preset == "quick" and group == "dseh_family":
        config, hp = _quick_dseh(run)
        return config, hp, {}, None
    if exp.preset == "quick":
        return (*_quick_deep(run), None)
    if group == "dseh_family":
        config, hp = dseh_paper(
            run.name, run.dataset, run.dseh_setting, seed=run.seed, verbose=exp.verbose
        )
    else:
        config, hp = _paper_deep(run.name, group, run.dataset, exp.paper, run.seed, exp.verbose)
    if exp.weights is not None:
        hp["weights"] = exp.weights
    return config, hp, {}, None


def _shallow(run: _Settings) -> tuple:
    """``(TrainConfig, hparams, features)`` of a shallow method."""
    exp = run.exp
    config = training.TrainConfig(epochs=1, seed=run.seed, verbose=exp.verbose)
    if exp.preset == "quick":
        return config, dict(QUICK_SHALLOW.get(run.name, {})), exp.features
    if exp.features is not None:
        return config, {}, exp.features
    if exp.paper == "dsrh" and run.dataset == "cifar10":
        return config, {}, "gist"  # DSRH's 512-d GIST, computed once per split and cached
    raise ValueError(_features_required(run.name))


def _quick_dseh(run: _Settings) -> tuple:
    """The DSEH family's quick settings: Algorithm 1's alternating rounds, each ImgNet phase
    trained to its validation plateau (:func:`quick_dseh_schedule`)."""
    hp = {**QUICK_HPARAMS.get(run.name, {}), **QUICK_DSEH}
    if run.name == "dseh-a":
        hp.pop("rounds")
    if multilabel(run.dataset) is False:
        hp["positive_similarity"] = QUICK_SINGLE_LABEL_SIMILARITY
    rounds = int(hp.get("rounds", 1))  # dseh-a: one round
    config, schedule = quick_dseh_schedule(rounds, run.dataset, run.seed, run.exp.verbose)
    hp.update(schedule)
    return config, hp


def quick_dseh_schedule(rounds: int, dataset: str, seed: int, verbose) -> tuple:
    """``(TrainConfig, hparams)`` of the DSEH family's quick schedule: ``rounds`` rounds of
    :data:`QUICK_DSEH` ``labnet_epochs`` LabNet epochs, then an ImgNet phase of at most
    ``QUICK_STEPS / rounds`` steps (DSEH-A, one round: ``QUICK_STEPS``) that stops once
    ``QUICK_PATIENCE / rounds`` validations (every ~``QUICK_VALIDATE_STEPS`` steps) since the
    phase's start, or since the best if later, brought no improvement; the best weights over
    all phases are restored (``early_stopping.ValidationMAP``'s ``per_phase``). So every
    deep method gets the same step cap and patience, and the DSEH family keeps the paper's
    alternation."""
    per_epoch = quick_steps_per_epoch(dataset)
    imgnet_epochs = math.ceil(QUICK_STEPS / rounds / per_epoch)
    config = training.TrainConfig(
        epochs=imgnet_epochs,
        batch_size=QUICK_BATCH,
        lr=QUICK_LR["dseh_family"],
        lr_decay_steps=None,
        seed=seed,
        verbose=verbose,
        patience=max(1, QUICK_PATIENCE // rounds),
        validation_every=max(1, int(round(QUICK_VALIDATE_STEPS / per_epoch))),
        validation_fraction=QUICK_VALIDATION_FRACTION,
    )
    return config, {"imgnet_epochs": imgnet_epochs}


def _quick_deep(run: _Settings) -> tuple:
    """``(TrainConfig, hparams, selection)`` of a quick deep run (not the DSEH family): the
    schedule of :func:`quick_schedule` and the values chosen on validation
    (``deephash.tuning``)."""
    hp = dict(QUICK_HPARAMS.get(run.name, {}))
    config, schedule = quick_schedule(
        run.name, run.group, run.dataset, run.bits, run.seed, run.exp.verbose
    )
    hp.update(schedule)
    chosen, record = tuning.quick_choice(run.name, run.bits, dataset=run.dataset)
    if "lr" in chosen:
        config = config.replace(lr=chosen.pop("lr"))
    hp.update(chosen)
    return config, hp, record


def _override(run: _Settings, config, hp: dict, selection: dict) -> tuple:
    """The experiment's ``epochs`` and ``lr`` over the preset's (``selection`` loses what
    they replace)."""
    exp = run.exp
    if exp.epochs is not None:
        config = config.replace(epochs=int(exp.epochs))
        if run.group == "dseh_family":  # every LabNet and ImgNet phase gets `epochs`
            hp.pop("labnet_epochs", None)
            hp.pop("imgnet_epochs", None)
            if config.patience is not None:  # validated, never stopped early
                config = config.replace(patience=int(exp.epochs) * int(hp.get("rounds", 1)))
    if exp.lr is not None:
        config = config.replace(lr=float(exp.lr))
        selection.pop("lr", None)
    return config, hp


def quick_steps_per_epoch(
    dataset: str,
    validation_fraction: float = QUICK_VALIDATION_FRACTION,
    batch_size: int = QUICK_BATCH,
) -> int:
    """Optimiser steps per epoch of a quick run on ``dataset`` (the training split less the
    validation items; sizes of the embedded sets, else the papers' training sizes)."""
    n = QUICK_TRAIN_SIZE.get(dataset, PAPER_TRAIN_SIZE.get(dataset, 5000))
    return max(1, (n - int(round(validation_fraction * n))) // batch_size)


def scale_schedule(steps: int, paper_steps: int, run_steps: int) -> int:
    """A step count of a paper's schedule (``steps`` out of ``paper_steps`` iterations)
    mapped onto a run of ``run_steps`` iterations (at least 1)."""
    return max(1, int(round(steps * run_steps / paper_steps)))


def quick_schedule(name: str, group: str, dataset: str, bits: int, seed: int, verbose) -> tuple:
    """``(TrainConfig, schedule hparams)`` of a quick run of a deep method (not DSEH):
    the epoch cap from :data:`QUICK_STEPS`, validation every ~:data:`QUICK_VALIDATE_STEPS`
    steps, early stopping after :data:`QUICK_PATIENCE` validations; the papers' schedules
    scaled to the cap (:func:`scale_schedule`): the DSRH family's learning-rate step at half
    the run (the paper: 5,000 of 10,000 iterations), HashNet's continuation (the authors':
    beta step 200 and gamma 0.005 over 10,000 iterations) over the whole run."""
    per_epoch = quick_steps_per_epoch(dataset)
    epochs = math.ceil(QUICK_STEPS / per_epoch)
    run_steps = epochs * per_epoch
    every = max(1, int(round(QUICK_VALIDATE_STEPS / per_epoch)))
    decay = scale_schedule(5000, 10000, run_steps) if group == "dsrh_family" else None
    config = training.TrainConfig(
        epochs=epochs,
        batch_size=QUICK_BATCH,
        lr=QUICK_LR[group],
        lr_decay_steps=decay,
        seed=seed,
        verbose=verbose,
        patience=QUICK_PATIENCE,
        validation_every=every,
        validation_fraction=QUICK_VALIDATION_FRACTION,
    )
    hp: dict[str, Any] = {}
    if name == "hashnet":
        s = HASHNET_SCHEDULE
        hp["beta_step"] = scale_schedule(s["beta_step"], s["iterations"], run_steps)
        hp["gamma"] = s["gamma"] * s["iterations"] / run_steps
    return config, hp


def dseh_paper(
    name: str, dataset: str, setting: str = PAPER_DSEH_SETTING, *, seed: int = 0, verbose: int = 0
) -> tuple[training.TrainConfig, dict]:
    """(config, hparams) of a DSEH-family run under ``--preset=paper``. ``setting="authors"``
    (the default): the released code's configuration (data sets other than NUS-WIDE, ImageNet-100
    and MS-COCO get NUS-WIDE's); ``"paper_text"``: the paper's stated settings, SGD, sums."""
    if setting not in DSEH_SETTINGS:
        raise ValueError(
            f"unknown DSEH setting {setting!r}; choose one of {', '.join(DSEH_SETTINGS)}"
        )
    rounds = {} if name == "dseh-a" else {"rounds": 3}
    if setting == "paper_text":
        config = training.TrainConfig(
            epochs=PAPER_DSEH_EPOCHS,
            batch_size=128,
            lr=PAPER_DSEH_LR,
            momentum=0.9,
            weight_decay=5e-4,
            lr_decay_steps=None,
            seed=seed,
            verbose=verbose,
        )
        hp = {
            "backbone": "cnn_f",
            "labnet_batch_size": 32,
            "alpha": 1.0,
            "beta": 0.005,
            "gamma": 1.0,
            "eta": 1.0,
            **rounds,
        }
        if dataset in PAPER_POSITIVE_SIMILARITY:
            hp["positive_similarity"] = PAPER_POSITIVE_SIMILARITY[dataset]
        return config, hp
    key = dataset if dataset in AUTHORS_DSEH_IMGNET_LR else "nuswide21"
    imagenet = key == "imagenet100"
    multiplier = 1.0 if imagenet else 10.0
    labnet_epochs = AUTHORS_DSEH_LABNET_EPOCHS[key]
    config = training.TrainConfig(
        epochs=AUTHORS_DSEH_IMGNET_EPOCHS,
        batch_size=128,
        lr=AUTHORS_DSEH_IMGNET_LR[key] / multiplier,
        weight_decay=0.0,
        lr_decay_steps=None,
        seed=seed,
        verbose=verbose,
    )
    hp = {
        "backbone": "cnn_f",
        "labnet_batch_size": 32,
        "labnet_lr": 1e-3,
        "lr_multiplier": multiplier,
        "alpha": 1.0,
        "beta": 0.01,
        "gamma": 0.1 if imagenet else 1.0,
        "eta": 1.0,
        "labnet_semantic_weight": 0.0 if imagenet else 1.0,
        "positive_similarity": AUTHORS_DSEH_SIMILARITY[key],
        "imgnet_similarity": 0.999,
        "loss_scale": "authors",
        "code_logit_scale": 10.0,
        "code_target": 0.999,
        "semantic_activation": "relu",
        "hash_input": "pre_activation",
        "labnet_hidden": 2048,
        "labnet_lrn": True,
        "optimizer": "adam",
        "clip_value": 1.0,
        "imgnet_clip_value": 1.0 if imagenet else None,
        "lr_decay_epochs": 10,
        "lr_decay_rate": _AUTHORS_DECAY,
        "round_lr_decay": _AUTHORS_DECAY,
        "joint_table": "imgnet",
        "evaluation": "authors",
        "augment": True,
        "labnet_epochs": list(labnet_epochs) if name != "dseh-a" else labnet_epochs[0],
        "imgnet_epochs": AUTHORS_DSEH_IMGNET_EPOCHS,
        **rounds,
    }
    return config, hp


def _features_required(name: str) -> str:
    msg = (
        f"--preset=paper: the shallow method {name!r} is fit on feature vectors; give a feature "
        "directory with --features"
    )
    return (
        f"{msg} (experiments/extract_features.py), or --features=gist for 512-d GIST features "
        "computed from the images and cached"
    )


def _paper_deep(name: str, group: str, dataset: str, paper: str, seed: int, verbose: int):
    if group == "dsrh_family":
        decay = PAPER_DSRH_DECAY.get(dataset, 5000)
        steps_per_epoch = max(1, PAPER_TRAIN_SIZE.get(dataset, 5000) // 64)
        config = training.TrainConfig(
            epochs=math.ceil(2 * decay / steps_per_epoch),
            batch_size=64,
            lr=0.01,
            momentum=0.9,
            weight_decay=2e-4,
            lr_decay_steps=decay,
            lr_decay_rate=0.1,
            seed=seed,
            verbose=verbose,
        )
        hp = {"backbone": "vgg19", "bags": 30}
        if name != "drh":
            hp["ortho_weight"] = 0.25
        return config, hp
    if group == "dseh_family":
        return dseh_paper(name, dataset, seed=seed, verbose=verbose)
    config = training.TrainConfig(
        epochs=PAPER_BASELINE_EPOCHS,
        batch_size=128,
        lr=1e-3,
        momentum=0.9,
        weight_decay=5e-4,
        lr_decay_steps=None,
        seed=seed,
        verbose=verbose,
    )
    return config, ({"backbone": "cnn_f"} if paper == "dseh" else {})


__all__ = [
    "ExperimentConfig",
    "multilabel",
    "PRESETS",
    "PAPERS",
    "RunSpec",
    "spec",
    "quick_schedule",
    "scale_schedule",
    "quick_steps_per_epoch",
    "dataset_options",
    "dseh_paper",
    "DSEH_SETTINGS",
    "PAPER_NOTES",
    "DSRH_FIGURE_METHODS",
    "DSRH_BITS",
    "DSEH_TABLE1_METHODS",
    "DSEH_BITS",
    "DSEH_FIGURE_BITS",
    "DSRH_PR_BITS",
]
