"""Training to the validation plateau: validation mAP after every few epochs, early stopping
with patience, the best weights restored.

A validation split is carved from the training split (``Dataset.validation_split``; never
from the queries): its items are the validation queries, the remaining training items
(the ones the model trains on) the database, so validation mAP measures what the query mAP
measures, on images the model did not train on. It stays cheap by capping both sides
(:data:`MAX_VALIDATION_QUERIES`, :data:`MAX_VALIDATION_DATABASE`; a seeded subsample).

:class:`ValidationMAP` is a Keras callback: after every ``config.validation_every`` epochs
it encodes the validation queries and database with the method's ``encode``, scores
``metrics.mean_average_precision`` and

* adds ``val_map`` to the epoch's logs (so the history, the checkpoints and the
  training-curve plot carry the validation curve), and ``val_distinct_codes``, the number
  of distinct codes of the validation database: 1 to the end of training means training
  collapsed every image to one code (a saturated hash layer that gradients no longer move),
  which :func:`fit` records as ``collapsed_at_epoch`` and the reports flag;
* keeps the best weights (in memory, and with a checkpoint directory also in
  ``best-<validation>.npz`` beside the epoch checkpoints);
* stops training once ``config.patience`` validations in a row did not improve on the best
  by more than ``config.min_delta``; for a method trained in phases (DSEH's alternating
  rounds) the patience counts within each ImgNet phase: a phase ends once ``patience``
  validations since its start, or since the best if later, brought no improvement, and the
  next round still runs (:class:`ValidationMAP`'s ``per_phase``);
* restores the best weights when training ends.

:func:`fit` also records the validation mAP of a model that learned nothing
(:func:`chance_map`), so that a run that trained without learning (neither collapsed nor
above that level) is named as such by the reports (``claims.near_chance``).

The early-stopping state (best score, its validation, validations without improvement)
is a function of the validation curve alone (:func:`state`), which the epoch checkpoints
carry in their history; the best weights survive in their own file, so a run killed and
resumed stops where an uninterrupted one stops and ends with the same best weights.
:func:`fit` wraps ``method.fit_dataset`` with all of this.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from deephash import codes, metrics, training
from deephash.data import Split
from deephash.io import atomic_write

log = logging.getLogger(__name__)

MAX_VALIDATION_QUERIES = 500  # validation queries scored per check (a seeded subsample beyond)
MAX_VALIDATION_DATABASE = 5000  # database items (from the training part) per check
CURVE_KEY = "val_map"
DISTINCT_KEY = "val_distinct_codes"  # distinct validation database codes at each validation
PER_VALIDATION = (CURVE_KEY, DISTINCT_KEY)  # history series with one value per validation
_BEST = re.compile(r"^best-(\d+)\.npz$")


@dataclasses.dataclass(frozen=True)
class Validation:
    """The validation queries, their database (training items) and the protocol's mAP depth."""

    queries: Any  # data.Split
    database: Any  # data.Split
    top_k: int | None
    fraction: float
    seed: int

    def checksum(self) -> str:
        """sha256 (hex) of the query and database index lists."""
        h = hashlib.sha256()
        for part in (self.queries.indices, self.database.indices):
            h.update(np.asarray(part, dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()

    def combined(self):
        """Queries then database as one split (encoded in one pass)."""
        if "_combined" not in self.__dict__:
            q, d = self.queries, self.database
            cat = lambda a, b: None if a is None else np.concatenate([a, b])  # noqa: E731
            object.__setattr__(
                self,
                "_combined",
                Split(
                    labels=cat(q.labels, d.labels),
                    indices=cat(q.indices, d.indices),
                    images=cat(q.images, d.images),
                    paths=cat(q.paths, d.paths),
                    class_ids=cat(q.class_ids, d.class_ids),
                ),
            )
        return self.__dict__["_combined"]

    def summary(self) -> dict:
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "queries": len(self.queries),
            "database": len(self.database),
            "checksum": self.checksum(),
            "database_is": "the training items left after the validation queries were carved out",
        }


def carve(dataset, fraction: float = 0.2, seed: int = 0) -> tuple[Any, Validation]:
    """``(dataset trained on, Validation)``: the training split minus a seeded, stratified
    ``fraction`` (``Dataset.validation_split``); queries and database of the validation
    are capped at :data:`MAX_VALIDATION_QUERIES` / :data:`MAX_VALIDATION_DATABASE` items."""
    fit, val = dataset.validation_split(fraction=fraction, seed=seed)
    rng = np.random.default_rng([int(seed), 0x7A1])
    queries = (
        val
        if len(val) <= MAX_VALIDATION_QUERIES
        else val.subset(np.sort(rng.permutation(len(val))[:MAX_VALIDATION_QUERIES]))
    )
    database = (
        fit
        if len(fit) <= MAX_VALIDATION_DATABASE
        else fit.subset(np.sort(rng.permutation(len(fit))[:MAX_VALIDATION_DATABASE]))
    )
    trained = dataclasses.replace(dataset, train=fit)
    return trained, Validation(
        queries, database, dataset.protocol.map_depth, float(fraction), int(seed)
    )


@dataclasses.dataclass(frozen=True)
class State:
    """Early-stopping state after the validations of ``curve`` (validation numbers from 1)."""

    best: float | None
    best_validation: int  # 0: none yet
    since_best: int  # validations without improvement since the best
    stopped: bool


def state(curve, patience: int | None, min_delta: float = 0.0) -> State:
    """The state after ``curve`` (validation mAP values in order): the best is the first value
    that beats every earlier best by more than ``min_delta``; stopped once ``patience``
    validations in a row did not (never with ``patience=None``)."""
    best, best_at, since = None, 0, 0
    for i, v in enumerate(curve, start=1):
        v = float(v)
        if best is None or v > best + min_delta:
            best, best_at, since = v, i, 0
        else:
            since += 1
    return State(best, best_at, since, patience is not None and since >= patience)


def checkpoint_history(directory: str | None) -> dict:
    """The history stored in the latest epoch checkpoint of ``directory`` ({} if none)."""
    path = training.latest_checkpoint(directory)
    if path is None:
        return {}
    with np.load(path, allow_pickle=False) as z:
        return json.loads(bytes(z["__meta__"]).decode()).get("history", {})


def _best_path(directory: str, validation: int) -> str:
    return os.path.join(directory, f"best-{int(validation)}.npz")


def save_best(model, directory: str, validation: int, keep: int) -> str:
    """Write the model's weights as ``best-<validation>.npz`` (atomically); remove the best
    files older than ``keep`` (the previous best, which a checkpoint may still point to)."""
    path = _best_path(directory, validation)
    with atomic_write(path, "wb") as f:
        np.savez(f, *[np.asarray(w) for w in model.get_weights()])
    for old in glob.glob(os.path.join(directory, "best-*.npz")):
        m = _BEST.match(os.path.basename(old))
        if m and int(m.group(1)) < keep:
            os.unlink(old)
    return path


def load_best(directory: str, validation: int) -> list[np.ndarray]:
    path = _best_path(directory, validation)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: the best weights of validation {validation} are missing from the "
            "checkpoint directory; remove the directory to train afresh"
        )
    with np.load(path, allow_pickle=False) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def validation_map(model, validation: Validation) -> float:
    """mAP of ``model``'s codes: validation queries against the validation database."""
    return validate(model, validation)[0]


def chance_map(validation: Validation) -> float:
    """Validation mAP of a model that learned nothing: every image on one code, so every item
    ties and the ranking is the database order (the tie order). The level a run's validation
    mAP is read against (``claims.near_chance``); close to the fraction of relevant pairs."""
    q = np.zeros((len(validation.queries), 1), bool)
    db = np.zeros((len(validation.database), 1), bool)
    return float(
        metrics.mean_average_precision(
            q, db, validation.queries.labels, validation.database.labels, top_k=validation.top_k
        )
    )


def validate(model, validation: Validation) -> tuple[float, int]:
    """``(validation mAP, distinct codes of the validation database)`` of ``model``."""
    both = fast_encode(model, validation.combined())
    q, db = both[: len(validation.queries)], both[len(validation.queries) :]
    value = metrics.mean_average_precision(
        q, db, validation.queries.labels, validation.database.labels, top_k=validation.top_k
    )
    return float(value), int(np.unique(np.asarray(db, bool), axis=0).shape[0])


_BLOCK = 1024


def fast_encode(model, split) -> np.ndarray:
    """``model.encode(split)`` for in-memory images without ``predict``'s per-call set-up
    (which costs more than a few epochs of training on the embedded sets): one traced
    function (preprocessing + the code logits), applied in blocks. Other inputs, and
    models without ``code_logits_model``, go through ``encode``."""
    if (
        getattr(split, "images", None) is None
        or not hasattr(model, "code_logits_model")
        or not hasattr(model, "_cached")
    ):
        return model.encode(split)
    fn = model.__dict__.get("_validation_codes")
    if fn is None:
        logits = model._cached("logits", model.code_logits_model)
        pre = model.preprocessor()

        @tf.function(reduce_retracing=True)
        def fn(x):
            if pre is not None:
                x = pre(x, training=False)
            return tf.cast(logits(x, training=False), tf.float32)

        object.__setattr__(model, "_validation_codes", fn)
    images = np.asarray(split.images, np.float32)
    out = [fn(tf.constant(images[i : i + _BLOCK])).numpy() for i in range(0, len(images), _BLOCK)]
    return np.concatenate(out) > model.code_threshold


class ValidationMAP(keras.callbacks.Callback):
    """Keras callback: validation mAP, early stopping and best weights (module docstring).

    ``prior``: the validation curve of the epochs already done (a resumed run);
    ``prior_distinct``: their distinct validation database codes (:data:`DISTINCT_KEY`);
    ``directory``: where best weights are kept across an interruption (None: memory only);
    ``write``: whether this process writes there (the chief of a cluster);
    ``epochs_done``: the validated kind of epochs already trained (a resumed run).
    ``skip``: a callable returning True when the model's codes do not change in the current
    phase (DSEH's LabNet phases); those epochs are not validated.
    ``per_phase``: every ``fit`` call whose epochs are validated is a phase (DSEH's ImgNet
    phases) with a patience of its own: it stops once ``patience`` validations since its
    start, or since the best if later, did not improve on the best; the best weights are
    the best over all phases.
    """

    def __init__(
        self,
        validation: Validation,
        *,
        patience: int | None,
        min_delta: float = 0.0,
        every: int = 1,
        prior=(),
        prior_distinct=(),
        epochs_done: int = 0,
        directory: str | None = None,
        write: bool = True,
        skip=None,
        per_phase: bool = False,
    ):
        super().__init__()
        self.validation = validation
        self.per_phase = bool(per_phase)
        # per_phase: validations before the current validated phase (None: none started yet)
        self._phase_start: int | None = None
        # per_phase: the best as of this phase's start, which the method's last checkpoint
        # (taken between phases) points to; its file is kept until the next phase
        self._checkpointed_best = 0
        self.patience = patience
        self.min_delta = float(min_delta)
        self.every = max(1, int(every))
        self.curve = [float(v) for v in prior]
        self.distinct = [int(v) for v in prior_distinct]
        self.epochs_seen = list(range(1, len(self.curve) + 1))
        self.directory = directory
        self.write = write
        self.skip = skip
        self._epochs = int(epochs_done)  # epochs counted towards `every` (a resumed run's too)
        self._best_weights = None
        st = state(self.curve, patience, self.min_delta)
        if st.best_validation and directory:
            self._best_weights = load_best(directory, st.best_validation)

    # -- state
    def current(self) -> State:
        return state(self.curve, self.patience, self.min_delta)

    def on_train_begin(self, logs=None):
        if not self.per_phase:
            return
        self._checkpointed_best = self.current().best_validation
        if not (self.skip is not None and self.skip()):
            self._phase_start = len(self.curve)

    def phase_stopped(self) -> bool:
        """Whether the current phase has had ``patience`` validations without improvement
        (counted from its start or from the best, whichever is later)."""
        if self.patience is None or self._phase_start is None:
            return False
        best_at = self.current().best_validation
        return len(self.curve) - max(best_at, self._phase_start) >= self.patience

    def on_epoch_end(self, epoch, logs=None):
        if self.skip is not None and self.skip():
            return
        self._epochs += 1
        if self._epochs % self.every:
            return
        before = self.current()
        value, distinct = validate(self.model, self.validation)
        self.curve.append(value)
        self.distinct.append(distinct)
        if logs is not None:
            logs[CURVE_KEY] = value
            logs[DISTINCT_KEY] = distinct
        now = self.current()
        if now.best_validation != before.best_validation:
            self._best_weights = [np.array(w) for w in self.model.get_weights()]
            if self.directory and self.write:
                # keep the best file the latest checkpoint points to: the previous best for
                # a method checkpointed every epoch, the phase's first for one checkpointed
                # between phases (several bests may come within one phase)
                keep = self._checkpointed_best if self.per_phase else before.best_validation
                save_best(self.model, self.directory, now.best_validation, keep=keep)
        if self.per_phase:
            if self.phase_stopped():
                log.info(
                    "early stopping: this phase's validation mAP has not improved for %d "
                    "validations (best %.4f at %d); the next phase still runs",
                    self.patience,
                    now.best,
                    now.best_validation,
                )
                self.model.stop_training = True
        elif now.stopped:
            log.info(
                "early stopping: validation mAP has not improved for %d validations "
                "(best %.4f at %d)",
                now.since_best,
                now.best,
                now.best_validation,
            )
            self.model.stop_training = True

    def restore_best(self, model=None) -> bool:
        """Load the best weights into ``model`` (default: the trained one); False if none."""
        model = model if model is not None else self.model
        if self._best_weights is None or model is None:
            return False
        model.set_weights(self._best_weights)
        return True


def fit(
    method, dataset, config: training.TrainConfig, validation: Validation, callbacks=()
) -> tuple[dict, dict]:
    """``method.fit_dataset(dataset, config)`` with validation mAP, early stopping (when
    ``config.patience`` is set) and the best weights restored. ``config.epochs`` caps the
    training. Returns ``(history, record)``; ``record`` is what metrics.json shows:
    ``epochs_run``, ``best_epoch``, ``stopped_early``, ``validation_curve``
    (``{"epoch": [...], "map": [...], "distinct_codes": [...]}``), ``collapsed_at_epoch``
    (the epoch from which the validation database kept one code to the end, else None:
    :func:`deephash.codes.collapse_start`),
    ``best_validation_map``, ``validation_chance_map`` (:func:`chance_map`: the score of a
    model that learned nothing) and the validation's summary (sizes, seed, checksum)."""
    every = int(config.validation_every)
    prior_history = checkpoint_history(config.checkpoint_dir)
    prior = prior_history.get(CURVE_KEY, [])
    skip = _labnet_phase(method)
    phased = skip is not None  # patience per ImgNet phase (DSEH)
    st = state(prior, config.patience, config.min_delta)
    cb = ValidationMAP(
        validation,
        patience=config.patience,
        min_delta=config.min_delta,
        every=every,
        prior=prior,
        prior_distinct=prior_history.get(DISTINCT_KEY, []),
        epochs_done=_validated_epochs(prior_history),
        directory=config.checkpoint_dir,
        write=training.is_chief(config.strategy),
        skip=skip,
        per_phase=phased,
    )
    run_config = config
    # a resumed run that had already stopped: restore, do not train further (a phased run
    # resumes after its last finished phase: the next phase has a patience of its own)
    if st.stopped and not phased:
        done = max(len(v) for v in prior_history.values()) if prior_history else 0
        run_config = config.replace(epochs=max(1, done))
    history = method.fit_dataset(dataset, run_config, callbacks=[cb, *callbacks]) or {}
    cb.restore_best(method)
    final = cb.current()
    curve = list(history.get(CURVE_KEY, cb.curve))
    distinct = [int(v) for v in history.get(DISTINCT_KEY, cb.distinct)]
    epochs_run = _epochs_run(history)
    record = {
        "epochs_run": epochs_run,
        "epoch_cap": int(config.epochs),
        "patience": config.patience,
        "min_delta": config.min_delta,
        "validate_every_epochs": every,
        "stopped_early": bool(final.stopped),
        "best_validation_map": final.best,
        "validation_chance_map": chance_map(validation),
        "best_epoch": final.best_validation * every if final.best_validation else None,
        "validation_curve": {"epoch": [(i + 1) * every for i in range(len(curve))], "map": curve},
        "collapsed_at_epoch": None,
        "restored_best_weights": final.best_validation > 0,
        "validation": validation.summary(),
    }
    if len(distinct) == len(curve):  # a run resumed from an older checkpoint may lack them
        record["validation_curve"]["distinct_codes"] = distinct
        start = codes.collapse_start(distinct)
        record["collapsed_at_epoch"] = (start + 1) * every if start is not None else None
    else:
        record["collapsed_at_epoch_unknown"] = "the checkpoint's history has no distinct codes"
    if phased:
        record["best_epoch_counts"] = "ImgNet epochs (the phases whose codes are validated)"
        record["patience_counts"] = "validations within each ImgNet phase"
        record["stopped_early"] = cb.phase_stopped()
    return history, record


def _labnet_phase(method):
    """DSEH trains LabNet and ImgNet in phases; only ImgNet epochs change the image codes."""
    if not hasattr(method, "phases"):
        return None
    return lambda: getattr(method, "_phase", "imgnet") == "labnet"


def _validated_epochs(history: dict) -> int:
    """Epochs in ``history`` whose codes are validated (DSEH: its ImgNet epochs)."""
    if any(k.startswith("imgnet_") for k in history):
        return len(history.get("imgnet_loss", []))
    return _epochs_run(history)


def _epochs_run(history: dict) -> int:
    """Training epochs in ``history``: the longest per-epoch series (DSEH: LabNet + ImgNet)."""
    lengths = [
        len(v) for k, v in history.items() if k not in PER_VALIDATION and k != "stage1_objective"
    ]
    if any(k.startswith("labnet_") for k in history):
        return sum(len(v) for k, v in history.items() if k in ("labnet_loss", "imgnet_loss"))
    return max(lengths) if lengths else 0


__all__ = [
    "Validation",
    "State",
    "ValidationMAP",
    "carve",
    "state",
    "fit",
    "validation_map",
    "validate",
    "checkpoint_history",
    "DISTINCT_KEY",
    "PER_VALIDATION",
    "MAX_VALIDATION_QUERIES",
    "MAX_VALIDATION_DATABASE",
]
