"""Training utilities shared by the deep methods: strategies, the paper's optimiser
settings, losses under ``tf.distribute``, seeding, mixed precision and checkpoints.

Conventions (see docs/training.md):

* **Distribution.** A method's ``train_step`` runs once per replica on that replica's
  share of the global batch, and the optimiser SUMS the replicas' gradients. Every loss
  term must therefore be "this replica's share of the global mean": a per-replica mean
  goes through :func:`scale_to_replicas`; a batch statistic (the orthogonality penalty,
  in-batch pairwise terms) is computed on :func:`gather_replicas` of the replica's rows
  (the global batch, identical on every replica) and then also scaled. Gradients flow
  back through ``all_gather``.
* **Weight decay** is Caffe-style: ``0.5 * weight_decay * sum ||W||^2`` over the kernels
  (weights with ndim >= 2; biases and normalisation parameters are not decayed) is added
  to the loss, so its gradient ``weight_decay * W`` goes through SGD momentum exactly as in
  Caffe, which the DSRH paper used. (Keras' ``weight_decay=`` argument is decoupled decay,
  which interacts differently with momentum.)
* **Learning rate**: ``lr * lr_decay_rate ** floor(step / lr_decay_steps)`` (a step
  schedule; ``lr_decay_steps=None`` keeps it constant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from deephash.io import atomic_write, dumps_strict
from deephash.validation import check_choice, check_fraction, check_int, check_number, fail

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")


# --------------------------------------------------------------------------- devices
def simulate_devices(n: int) -> None:
    """Split the (first) CPU into ``n`` logical devices, e.g. to try ``mirrored`` on a
    machine without GPUs. Must run before TensorFlow initialises its runtime; raises
    RuntimeError if it is too late and the device count differs."""
    check_int(n, "n", owner="simulate_devices")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n)
        )
    except RuntimeError as e:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise RuntimeError(
                f"cannot simulate {n} CPU devices: TensorFlow is already initialised with {have}; "
                "call simulate_devices before any TensorFlow operation"
            ) from e


def set_threads(threads: int) -> None:
    """Run TensorFlow's kernels on ``threads`` threads (intra-op; inter-op likewise). Float
    sums depend on how a kernel splits its work, so the thread count is part of what makes
    a run repeat bit for bit (:func:`thread_settings` is recorded in config.json). Must run
    before TensorFlow initialises its runtime; RuntimeError naming the problem otherwise."""
    n = check_int(threads, "threads", owner="set_threads")
    if (
        tf.config.threading.get_intra_op_parallelism_threads() == n
        and tf.config.threading.get_inter_op_parallelism_threads() == n
    ):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError as e:
        raise RuntimeError(
            f"set_threads: TensorFlow is already initialised; call it before any TensorFlow "
            f"operation. Received: threads={threads!r}"
        ) from e


def thread_settings() -> dict:
    """TensorFlow's thread counts (``"default"``: TensorFlow's choice for the machine) and
    the machine's CPU count, as config.json records them."""
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {
        "intra_op": intra or "default",
        "inter_op": inter or "default",
        "cpu_count": os.cpu_count(),
    }


_STRATEGIES: dict = {}


def get_strategy(name: str = "default"):
    """A ``tf.distribute`` strategy by name (one instance per name and process: separate
    instances would reuse collective-op keys, which TensorFlow rejects).

    ``default``: the current (no-op) strategy; ``mirrored``: synchronous data parallelism
    over all GPUs, or over the logical CPU devices when there is no GPU (see
    :func:`simulate_devices`); ``multiworker``: ``MultiWorkerMirroredStrategy`` configured
    from the ``TF_CONFIG`` environment variable.
    """
    key = str(name).lower()
    if key == "default":
        return tf.distribute.get_strategy()
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(key)
    return _STRATEGIES[key]


def _new_strategy(key: str):
    if key == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1 and not gpus:
            log.warning(
                "mirrored strategy over a single CPU device; use simulate_devices(n) for more"
            )
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _resolve(strategy):
    if strategy is None:
        return _STRATEGIES.get("multiworker") or tf.distribute.get_strategy()
    return get_strategy(strategy) if isinstance(strategy, str) else strategy


def _cluster(strategy) -> dict:
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver.cluster_spec().as_dict() if resolver is not None else {}


def task(strategy=None) -> tuple[str | None, int]:
    """``(task type, task index)`` of this process in its cluster, from the cluster
    resolver of ``strategy`` (a strategy or a name for :func:`get_strategy`; None: the
    ``multiworker`` strategy if this process made one, else the current strategy), i.e.
    from ``TF_CONFIG``. ``(None, 0)`` for a single process (default, mirrored, or
    ``multiworker`` without ``TF_CONFIG``)."""
    strategy = _resolve(strategy)
    if not _cluster(strategy):
        return None, 0
    return strategy.cluster_resolver.task_type, int(strategy.cluster_resolver.task_id or 0)


def is_chief(strategy=None) -> bool:
    """Whether this process writes run directories, checkpoints, plots and progress: always
    in a single process; in a cluster the ``chief`` task, or worker 0 when the cluster
    names no chief (TensorFlow's multi-worker convention). ``strategy`` as in :func:`task`."""
    strategy = _resolve(strategy)
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in _cluster(strategy)


def in_cluster(strategy=None) -> bool:
    """Whether this process is one worker of several (``TF_CONFIG`` names a cluster)."""
    return task(strategy)[0] is not None


def same_on_all_workers(value: int, what: str, strategy=None) -> int:
    """Check that every worker of the cluster holds the same integer ``value`` (an
    all-reduce, so also a barrier: no worker returns before all have called it); ValueError
    naming ``what`` otherwise. Returns ``value``; nothing happens in a single process."""
    strategy = _resolve(strategy)
    if not in_cluster(strategy):
        return value
    local = tf.constant([int(value)], tf.int64)

    def replica_value():
        return tf.identity(local)

    def gather():
        return strategy.gather(strategy.run(replica_value), axis=0)

    seen = sorted(set(tf.function(gather, autograph=False)().numpy().tolist()))
    if len(seen) > 1:
        raise ValueError(f"the workers disagree on {what}: {seen}")
    return value


def num_replicas() -> int:
    """Replicas of the strategy in the current context (1 outside any strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def scale_to_replicas(value):
    """Divide a per-replica scalar loss by the number of replicas in sync.

    Gradients of the replicas are summed, so a replica must contribute mean/N for the
    sum to equal the global mean. Keras does this for losses given to ``compile``, but
    not for losses computed inside a custom ``train_step``."""
    n = num_replicas()
    return value if n == 1 else value * tf.cast(1.0 / n, value.dtype)


def gather_replicas(tensor):
    """Concatenate ``tensor`` (b, ...) over the replicas along axis 0 inside a replica
    context (differentiable); identity outside a strategy or with one replica."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)


def weight_decay_loss(variables: Iterable, weight_decay: float):
    """Caffe-style L2 term ``0.5 * weight_decay * sum ||W||^2`` over kernels (ndim >= 2)."""
    kernels = [v for v in variables if len(v.shape) >= 2]
    if not weight_decay or not kernels:
        return tf.constant(0.0)
    total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in kernels])
    return 0.5 * float(weight_decay) * total


# --------------------------------------------------------------------------- config
@dataclasses.dataclass
class TrainConfig:
    """Training settings; defaults are the DSRH paper's (Caffe, CIFAR-10).

    ``batch_size`` is the GLOBAL batch (triplets for triplet methods, split over the
    replicas). ``epochs`` counts passes of ``len(train) // batch_size`` steps.
    ``lr_decay_steps`` is in optimiser steps (the paper: 5,000 on CIFAR-10, 20,000 on
    NUS-WIDE); None = constant learning rate. ``checkpoint_dir`` enables per-epoch
    checkpoints and automatic resume from the latest one.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    lr_decay_steps: int | None = 5000
    lr_decay_rate: float = 0.1
    strategy: str = "default"
    seed: int = 0
    mixed_precision: bool = False
    checkpoint_dir: str | None = None
    verbose: int | str = (
        1  # 0 silent, 1 Keras step bar, 2 a line per epoch, "epochs" one tqdm bar per fit
    )
    # early stopping on validation mAP (deephash.early_stopping; experiment.run carves the split):
    # None = train exactly `epochs`; else stop after `patience` validations without improvement
    # by more than `min_delta`, restore the best weights; `epochs` is then the cap
    patience: int | None = None
    min_delta: float = 0.0
    validation_fraction: float = 0.2  # of the training split, held out as validation queries
    validation_every: int = 1  # epochs between validations

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TrainConfig":
        owner = "TrainConfig"
        for name in ("epochs", "batch_size", "validation_every"):
            check_int(getattr(self, name), name, owner=owner)
        for name in ("lr_decay_steps", "patience"):  # None: constant lr / no early stopping
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, owner=owner)
        for name in ("lr", "lr_decay_rate"):
            check_number(getattr(self, name), name, positive=True, owner=owner)
        for name in ("momentum", "weight_decay", "min_delta"):
            check_number(getattr(self, name), name, minimum=0, owner=owner)
        if str(self.strategy).lower() not in STRATEGIES:
            fail("strategy", f"one of {', '.join(STRATEGIES)}", self.strategy, owner)
        check_int(self.seed, "seed", minimum=0, owner=owner)
        check_fraction(self.validation_fraction, "validation_fraction", owner=owner)
        check_choice(self.verbose, (0, 1, 2, "epochs"), "verbose", owner=owner)
        return self

    def replace(self, **overrides) -> "TrainConfig":
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {', '.join(sorted(unknown))}")
        return cls(**d)


def progress(
    config: TrainConfig, epochs: int, initial_epoch: int = 0, desc: str = "training"
) -> tuple[int, list]:
    """``(verbose, callbacks)`` for ``keras.Model.fit`` from ``config.verbose``: Keras' own
    output for 0/1/2; for ``"epochs"`` Keras stays silent and one tqdm bar counts the
    epochs of the fit, the latest losses beside it (compact for scripts running many fits).
    Other workers than the chief (:func:`is_chief`) of a cluster stay silent."""
    if not is_chief():
        return 0, []  # one process of a cluster reports: the chief
    if config.verbose != "epochs":
        return int(config.verbose), []
    from tqdm.auto import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(
                total=epochs, initial=initial_epoch, desc=desc, unit="epoch", leave=False
            )

        def on_epoch_end(self, epoch, logs=None):
            self.bar.set_postfix(
                {k: f"{float(v):.4g}" for k, v in (logs or {}).items()}, refresh=False
            )
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return 0, [EpochBar()]


def make_optimizer(config: TrainConfig):
    """SGD with momentum and the step learning-rate schedule of ``config``."""
    lr: Any = float(config.lr)
    if config.lr_decay_steps:
        lr = keras.optimizers.schedules.ExponentialDecay(
            float(config.lr),
            int(config.lr_decay_steps),
            float(config.lr_decay_rate),
            staircase=True,
        )
    return keras.optimizers.SGD(learning_rate=lr, momentum=float(config.momentum))


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and TensorFlow; ``deterministic`` also asks TF for deterministic
    kernels (slower; used by the equality tests)."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def configure_mixed_precision(enabled: bool) -> bool:
    """Use the ``mixed_float16`` policy when asked AND a GPU is present; on CPU the request
    is logged and ignored (float16 is slower there). Returns whether it is on. Call before
    building the model."""
    if not enabled:
        keras.mixed_precision.set_global_policy("float32")
        return False
    if not tf.config.list_physical_devices("GPU"):
        log.warning("mixed precision requested but no GPU is present: training in float32")
        keras.mixed_precision.set_global_policy("float32")
        return False
    keras.mixed_precision.set_global_policy("mixed_float16")
    return True


# --------------------------------------------------------------------------- checkpoints
_CKPT = re.compile(r"^ckpt-(\d+)\.npz$")


def save_checkpoint(model, directory: str, epoch: int, history: dict | None = None) -> str:
    """Write the model's variables (weights and random-seed states, e.g. of dropout),
    the optimiser state, the finished ``epoch`` count and the history so far to
    ``directory/ckpt-<epoch>.npz`` (atomically), read it back to verify it, then remove
    older checkpoints except the newest of them (the fallback :func:`resume` uses when the
    latest is damaged). A history holding NaN/inf raises :class:`NonFiniteLossError`
    (a diverged model is never checkpointed)."""
    check_finite(history, f"in the history at epoch {epoch}")
    variables = list(model.variables)
    arrays = {f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    opt = getattr(model, "optimizer", None)
    opt_vars = list(opt.variables) if opt is not None else []
    arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(opt_vars)})
    meta = {
        "epoch": int(epoch),
        "num_weights": len(variables),
        "num_opt": len(opt_vars),
        "history": history or {},
    }
    arrays["__meta__"] = np.frombuffer(
        dumps_strict(meta, what=f"checkpoint metadata (epoch {epoch})").encode(), dtype=np.uint8
    )
    path = os.path.join(directory, f"ckpt-{int(epoch)}.npz")
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    read_checkpoint(path)  # verify what was written before anything older is removed
    # keep the newest older checkpoint as a fallback (resume uses it if this one is damaged later)
    older = sorted(
        (int(m.group(1)), p)
        for p in glob.glob(os.path.join(directory, "ckpt-*.npz"))
        if (m := _CKPT.match(os.path.basename(p))) and int(m.group(1)) < epoch
    )
    for _, old in older[:-1]:
        os.unlink(old)
    return path


class CorruptCheckpointError(ValueError):
    """A checkpoint file cannot be read (truncated, bit-flipped, empty); the message names it."""


def read_checkpoint(path: str) -> tuple[dict, list, list]:
    """Read and check a :func:`save_checkpoint` file: ``(meta, weights, optimiser state)``.
    Every array is read, so the zip CRCs are checked; :class:`CorruptCheckpointError`
    naming ``path`` and what is wrong otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            weights = [z[f"w{i}"] for i in range(meta["num_weights"])]
            opt_state = [z[f"o{i}"] for i in range(meta["num_opt"])]
        int(meta["epoch"])
    except Exception as e:  # BadZipFile, EOFError, KeyError, zlib.error, ValueError, OSError...
        size = os.path.getsize(path) if os.path.exists(path) else None
        raise CorruptCheckpointError(
            f"{path}: damaged checkpoint ({type(e).__name__}: {e}; {size} bytes)"
        ) from e
    return meta, weights, opt_state


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss (diverged): the run stops, nothing is saved."""


def check_finite(logs: dict | None, where: str) -> None:
    """:class:`NonFiniteLossError` when a value of ``logs`` (``{name: number or list}``,
    e.g. an epoch's logs or a whole history) is NaN or infinite."""
    for k, v in (logs or {}).items():
        values = np.asarray(v, dtype=np.float64).ravel()
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise NonFiniteLossError(
                f"training diverged: {k} is {values[bad[0]]} {where}"
                f"{f' (entry {int(bad[0]) + 1})' if values.size > 1 else ''}; "
                "nothing was saved for it. "
                "Lower the learning rate (--lr) or check the data"
            )


def finite_loss_guard():
    """A Keras callback that stops training with :class:`NonFiniteLossError` at the end of
    an epoch whose logs hold a NaN or infinite value, before any later callback (the
    checkpoint) sees that epoch."""

    class _FiniteLossGuard(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            check_finite({k: float(v) for k, v in (logs or {}).items()}, f"after epoch {epoch + 1}")

    return _FiniteLossGuard()


def latest_checkpoint(directory: str | None) -> str | None:
    """Path of the checkpoint with the most epochs in ``directory`` (None if none)."""
    found = checkpoints(directory)
    return found[0] if found else None


def checkpoints(directory: str | None) -> list[str]:
    """Paths of the checkpoints in ``directory``, newest (most epochs) first."""
    if not directory or not os.path.isdir(directory):
        return []
    found = []
    for p in os.listdir(directory):
        m = _CKPT.match(p)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, p)))
    return [p for _, p in sorted(found, reverse=True)]


def resume(
    model, checkpoint_dir: str | None, strategy=None, unit: str = "epoch"
) -> tuple[int, dict[str, list[float]]]:
    """Restore the latest checkpoint in ``checkpoint_dir`` into ``model``, if there is one.
    Returns ``(epochs already done, history so far)`` — ``(0, {})`` for a fresh start.

    In a cluster every worker must resume from the same ``unit`` (epoch, or DSEH's phase):
    checked with :func:`same_on_all_workers` on ``strategy``, so a checkpoint directory that
    the workers do not all see stops training with a ValueError."""
    done, history = 0, {}
    candidates = checkpoints(checkpoint_dir)
    damaged = []
    for path in candidates:
        try:
            meta = restore_checkpoint(model, path)
        except CorruptCheckpointError as e:
            log.warning("%s; falling back to an older checkpoint", e)
            damaged.append(str(e))
            continue
        if damaged:
            log.warning("resuming from %s (the newer checkpoint is damaged)", path)
        done, history = int(meta["epoch"]), {k: list(v) for k, v in meta.get("history", {}).items()}
        break
    else:
        if damaged:
            raise CorruptCheckpointError(
                f"no readable checkpoint in {checkpoint_dir!r}: "
                + "; ".join(damaged)
                + ". Remove the damaged files (or pass --overwrite_checkpoints) to start over"
            )
    same_on_all_workers(
        done,
        f"the {unit} to resume from in {checkpoint_dir!r} (it must be a directory every "
        "worker sees)",
        strategy,
    )
    return done, history


def restore_checkpoint(model, path: str) -> dict:
    """Load a :func:`save_checkpoint` file into ``model`` (and its compiled optimiser,
    which is built first). Returns the metadata: ``epoch`` and ``history``. A damaged file
    raises :class:`CorruptCheckpointError` before any variable is changed."""
    meta, weights, opt_state = read_checkpoint(path)
    variables = list(model.variables)
    if len(weights) != len(variables):
        raise ValueError(
            f"{path}: checkpoint has {len(weights)} variables, the model {len(variables)}"
        )
    for v, w in zip(variables, weights):
        if tuple(v.shape) != w.shape:
            raise ValueError(
                f"{path}: weight {v.path} has shape {tuple(v.shape)}, checkpoint {w.shape}"
            )
        v.assign(w)
    opt = getattr(model, "optimizer", None)
    if opt_state:
        if opt is None:
            raise ValueError(f"{path}: has optimiser state but the model is not compiled")
        if not opt.built:
            with model.distribute_strategy.scope():
                opt.build(model.trainable_variables)
        if len(opt.variables) != len(opt_state):
            raise ValueError(
                f"{path}: optimiser state has {len(opt_state)} variables, "
                f"the optimiser {len(opt.variables)}"
            )
        for v, w in zip(opt.variables, opt_state):
            v.assign(w)
    return meta


@contextlib.contextmanager
def worker_dir(directory: str | None, strategy=None) -> Iterator[str | None]:
    """The directory this process writes checkpoints to: ``directory`` itself on the chief
    (:func:`is_chief`), a private temporary directory on the other workers of a cluster,
    removed when the block ends (TensorFlow's multi-worker rule: every worker runs the same
    saving code, only the chief writes to the real path). None stays None."""
    if directory is None or is_chief(strategy):
        yield directory
        return
    task_type, task_id = task(strategy)
    tmp = tempfile.mkdtemp(prefix=f"deephash-{task_type}{task_id}-ckpt-")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_callback(directory: str, initial_history: dict | None = None):
    """A Keras callback saving a checkpoint at the end of every epoch (history included)."""

    class _EpochCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = {k: list(v) for k, v in (initial_history or {}).items()}

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            check_finite(logs, f"after epoch {epoch + 1}")  # never checkpoint a diverged model
            for k, v in logs.items():
                self.history.setdefault(k, []).append(v)
            save_checkpoint(self.model, directory, epoch + 1, self.history)

    return _EpochCheckpoint()
