"""The experiment runner: train one method on one data set at one code length, evaluate
it under the data set's protocol, and write a run directory (see ``deephash.runs``).

``run`` validates everything it can before any work (unknown method or data set, a bad
code length, an existing run directory without ``overwrite``) and raises ValueError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Any

from deephash import checkpoints, early_stopping, io, plots, runs, training

log = logging.getLogger(__name__)


def _dataset_summary(ds) -> dict:
    p = ds.protocol
    return {
        "dataset": ds.name,
        "checksum": ds.checksum,
        "protocol": {
            "num_classes": p.num_classes,
            "multilabel": p.multilabel,
            "map_depth": p.map_depth,
            "description": p.description,
            "class_names": list(p.class_names),
        },
        "sizes": {"query": len(ds.query), "train": len(ds.train), "database": len(ds.database)},
        "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
        "root": ds.root,
    }


def default_checkpoint_dir(out_dir: str) -> str:
    """Where ``run`` keeps per-epoch checkpoints when the config names none: a hidden
    sibling of the run directory, removed when the run finishes; a re-run after an
    interruption resumes from it."""
    out_dir = os.path.abspath(out_dir)
    return os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.ckpt")


def _prepare_checkpoints(directory: str, fingerprint: dict, overwrite: bool = False) -> None:
    """Use ``directory`` for this run's checkpoints (see :func:`deephash.checkpoints.prepare`)."""
    checkpoints.prepare(directory, fingerprint, overwrite=overwrite)


# ---- the request ------------------------------------------------------------------------
RESERVED = ("config.json", "split.json", "codes.npz", "history.json", "metrics.json")


@dataclasses.dataclass(frozen=True)
class _Request:
    """One run's checked arguments (what every step reads)."""

    name: str
    cls: type
    bits: int
    config: training.TrainConfig
    out_dir: str | None
    overwrite: bool
    features: str | None
    extra_json: dict

    @property
    def deep(self) -> bool:
        return _is_deep(self.cls)

    @property
    def chief(self) -> bool:
        """Whether this process writes the run directory and checkpoints (a shallow run
        always; a deep one unless it is a non-chief worker of a cluster)."""
        return not self.deep or training.is_chief(self.config.strategy)


def _is_deep(cls) -> bool:
    return cls.family == "deep"


def _check_request(method, dataset, bits, config, out_dir, overwrite, features, extra_json):
    """Validate everything before any work; returns the :class:`_Request`."""
    from deephash import methods

    config = config if config is not None else training.TrainConfig()
    if not isinstance(config, training.TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    name = str(method).lower()
    cls = methods.factory(name)  # ValueError for unknown methods
    _check_dataset(dataset)
    methods.check_bits(bits, method=name)
    if out_dir is not None:
        out_dir = runs.check_out_dir(out_dir, overwrite)
    _check_features(features, name, cls)
    _check_extra_json(extra_json)
    return _Request(name, cls, bits, config, out_dir, overwrite, features, dict(extra_json or {}))


def _check_dataset(dataset) -> None:
    from deephash import data

    if isinstance(dataset, str):
        if dataset not in data.available():
            raise ValueError(
                f"unknown dataset {dataset!r}; available: {', '.join(data.available())}"
            )
    elif not hasattr(dataset, "protocol"):  # a data.Dataset or one built like it
        raise ValueError(
            f"dataset must be a name or a deephash.data.Dataset, got {type(dataset).__name__}"
        )


def _check_features(features, name: str, cls) -> None:
    from deephash import features as features_lib

    if features is None:
        return
    if _is_deep(cls):
        raise ValueError(f"--features applies to shallow methods; {name!r} is a deep method")
    if not features_lib.is_recipe(features) and not os.path.isdir(features):
        raise FileNotFoundError(
            f"no feature directory at {features!r} (computed features: "
            f"{', '.join(features_lib.RECIPES)})"
        )


def _check_extra_json(extra_json) -> None:
    reserved = {*RESERVED, runs.MANIFEST}
    for filename in extra_json or {}:
        if (
            not isinstance(filename, str)
            or not filename.endswith(".json")
            or os.path.basename(filename) != filename
            or filename in reserved
        ):
            raise ValueError(
                f"extra_json: {filename!r} must be a plain *.json file name other than "
                f"{', '.join(sorted(reserved))}"
            )


def _lock_out_dir(locks: contextlib.ExitStack, request: _Request) -> _Request:
    """Hold the run directory's lock (the chief only) and clear a killed run's leftovers."""
    if request.out_dir is None or not request.chief:
        return request
    locks.enter_context(runs.DirectoryLock(request.out_dir, "run directory"))
    runs.remove_stale(request.out_dir)  # staging directories of a killed earlier run
    out_dir = runs.check_out_dir(request.out_dir, request.overwrite)  # again, now that it is ours
    return dataclasses.replace(request, out_dir=out_dir)


# ---- data -------------------------------------------------------------------------------
def _prepare_data(request: _Request, dataset, root):
    """``(ds, fit_ds)``: the data set, and what the method trains and encodes (the feature
    vectors of a shallow method given ``features``, else the data set)."""
    from deephash import data
    from deephash import features as features_lib

    config, features = request.config, request.features
    ds = data.load(dataset, root=root, seed=config.seed) if isinstance(dataset, str) else dataset
    fit_ds = ds
    if features is not None and features_lib.is_recipe(features):
        fit_ds = features_lib.cached_features(features, ds)
    elif features is not None:
        fit_ds = features_lib.load_features(features)
        if getattr(fit_ds, "checksum", ds.checksum) != ds.checksum:
            raise ValueError(
                f"features in {features!r} were computed on split {fit_ds.checksum[:12]}, "
                f"the dataset's split is {ds.checksum[:12]}"
            )
    if request.deep and len(fit_ds.train) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set of {ds.name} "
            f"({len(fit_ds.train)} items): an epoch would have no steps"
        )
    return ds, fit_ds


# ---- model ------------------------------------------------------------------------------
def _build(request: _Request, fit_ds, hparams: dict):
    """``(model, selection, mixed)``: the method created with its resolved hyper-parameters
    (a deep one under its strategy's scope), how presets chose values, whether mixed
    precision is on."""
    from deephash import methods

    config = request.config
    training.set_seed(config.seed)
    hparams, selection = request.cls.resolve_hparams(
        request.name, fit_ds, request.bits, config, dict(hparams or {})
    )
    if not request.deep:
        return (
            methods.create(request.name, bits=request.bits, dataset=fit_ds, **hparams),
            (selection),
            False,
        )
    mixed = training.configure_mixed_precision(config.mixed_precision)
    strategy = training.get_strategy(config.strategy)
    training.set_seed(config.seed)
    with strategy.scope():
        model = methods.create(request.name, bits=request.bits, dataset=fit_ds, **hparams)
    return model, selection, mixed


# ---- train ------------------------------------------------------------------------------
def _checkpoint_config(request: _Request) -> tuple[_Request, bool]:
    """The request with its checkpoint directory (a deep run writing a run directory
    without one gets :func:`default_checkpoint_dir`), and whether it is that default."""
    config = request.config
    if request.deep and request.out_dir is not None and config.checkpoint_dir is None:
        config = config.replace(checkpoint_dir=default_checkpoint_dir(request.out_dir))
        return dataclasses.replace(request, config=config), True
    return request, False


def _checkpoint_step(locks, request: _Request, ds, model_hparams, overwrite) -> None:
    """Lock and prepare a deep run's checkpoint directory (see
    :func:`deephash.checkpoints.prepare`); the other workers of a cluster wait for it."""
    if not request.deep:
        return
    config = request.config
    if config.checkpoint_dir and request.chief:
        locks.enter_context(runs.DirectoryLock(config.checkpoint_dir, "checkpoint directory"))
        settings = {
            k: v for k, v in config.to_dict().items() if k not in ("verbose", "checkpoint_dir")
        }
        fingerprint = {
            "method": request.name,
            "bits": request.bits,
            "dataset": ds.name,
            "checksum": ds.checksum,
            "config": settings,
            "hparams": model_hparams,
        }
        _prepare_checkpoints(config.checkpoint_dir, fingerprint, overwrite=overwrite)
    # the other workers resume only after the chief has sorted the checkpoints
    training.same_on_all_workers(1, "reaching training", config.strategy)


def _train(request: _Request, model, fit_ds) -> tuple[dict, dict, float]:
    """``(history, early-stopping record, seconds)``; a deep run with ``config.patience``
    trains to its validation plateau (:mod:`deephash.early_stopping`)."""
    config = request.config
    t0 = time.perf_counter()
    stopping: dict = {}
    if request.deep and config.patience is not None:
        trained_ds, validation = early_stopping.carve(
            fit_ds, config.validation_fraction, config.seed
        )
        history, stopping = early_stopping.fit(model, trained_ds, config, validation)
    else:
        history = model.fit_dataset(fit_ds, config) or {}
    train_s = time.perf_counter() - t0
    training.check_finite(history, "in the training history")  # a diverged run is not a result
    return history, stopping, train_s


# ---- evaluate ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Evaluation:
    q_codes: Any
    db_codes: Any
    result: dict
    summary: dict


def _evaluate(request: _Request, model, ds, fit_ds, timing: dict) -> _Evaluation:
    """Encode the query and database splits and evaluate under the protocol; ``summary``
    is metrics.json's content but for the selection and early-stopping records."""
    from deephash import metrics

    t0 = time.perf_counter()
    q_codes = model.encode(fit_ds.query)
    db_codes = model.encode(fit_ds.database)
    timing["encode"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    result = metrics.evaluate(
        q_codes, db_codes, ds.query.labels, ds.database.labels, top_k=ds.protocol.map_depth
    )
    timing["evaluate"] = round(time.perf_counter() - t0, 3)
    summary = {
        "method": request.name,
        "dataset": ds.name,
        "bits": int(request.bits),
        "checksum": ds.checksum,
        **result,
        **(model.extra_metrics(fit_ds, q_codes, db_codes) or {}),
    }
    return _Evaluation(q_codes, db_codes, result, summary)


# ---- run directory ----------------------------------------------------------------------
def _write_run_dir(request: _Request, ds, model, files: dict, ev: _Evaluation, stopping) -> None:
    """Write the run directory atomically (staged, manifest last). ``files``: the JSON
    files other than split.json, in the order they are written."""
    with runs.staged_dir(request.out_dir, request.overwrite) as tmp:
        io.write_json(os.path.join(tmp, "config.json"), files.pop("config.json"))
        io.write_json(os.path.join(tmp, "split.json"), _dataset_summary(ds))
        model.save(os.path.join(tmp, "model.keras" if request.deep else "model.npz"))
        runs.save_codes(
            os.path.join(tmp, "codes.npz"),
            ev.q_codes,
            ev.db_codes,
            ds.query.labels,
            ds.database.labels,
        )
        for filename, content in files.items():
            io.write_json(os.path.join(tmp, filename), content)
        _plots(tmp, f"{request.name} · {ds.name} · {request.bits} bits", ev, files, stopping)
        runs.write_manifest(tmp)  # last: hashes of everything above


def _plots(tmp: str, title: str, ev: _Evaluation, files: dict, stopping: dict) -> None:
    if "pr_curve" in ev.result:
        plots.pr_curve(
            ev.result["pr_curve"], os.path.join(tmp, "pr_curve.png"), title=f"PR curve: {title}"
        )
    history = files["history.json"]
    if history:
        curve = stopping.get("validation_curve", {})
        epochs = {k: curve["epoch"] for k in early_stopping.PER_VALIDATION} if curve else None
        # a series not recorded at every validation (a run resumed from an older checkpoint)
        # has no epochs to be drawn at
        history = {
            k: v
            for k, v in history.items()
            if k not in early_stopping.PER_VALIDATION or not epochs or len(v) == len(epochs[k])
        }
        plots.training_curves(
            history,
            os.path.join(tmp, "training_curve.png"),
            title=f"Training: {title}",
            epochs=epochs,
            best_epoch=stopping.get("best_epoch"),
            levels=(
                {early_stopping.CURVE_KEY: (chance, f"learned nothing {chance:.3f}")}
                if (chance := stopping.get("validation_chance_map")) is not None
                else None
            ),
        )


def _config_json(request: _Request, ds, model_hparams, ckpt_default, sources) -> dict:
    resolved = dict(request.config.to_dict())
    if ckpt_default:
        resolved["checkpoint_dir"] = None
    return {
        "method": request.name,
        "family": request.cls.family,
        "dataset": ds.name,
        "bits": int(request.bits),
        "train": resolved,
        "hparams": model_hparams,
        "features": request.features,
        "versions": runs.versions(),
        "threads": training.thread_settings(),  # float sums depend on them
        **({"sources": sources} if sources else {}),
    }


def run(
    method: str,
    dataset: Any,
    bits: int,
    config: training.TrainConfig | None = None,
    out_dir: str | None = None,
    hparams: dict | None = None,
    overwrite: bool = False,
    features: str | None = None,
    root: str | None = None,
    extra_json: dict[str, Any] | None = None,
    overwrite_checkpoints: bool = False,
    hparam_selection: dict | None = None,
    sources: dict | None = None,
) -> dict:
    """Train ``method`` on ``dataset`` (a name for ``data.load`` or a ``data.Dataset``)
    with ``bits``-bit codes, evaluate with ``metrics.evaluate(top_k=protocol.map_depth)``
    and write the run directory ``out_dir`` (skipped when None).

    ``hparams`` are the method's hyper-parameters (e.g. ``backbone``, ``ortho_weight``;
    ``ortho_weight="auto"`` selects it on a validation split, see
    ``methods.dsrh.select_ortho_weight``). ``features``: for shallow methods, a directory of
    precomputed feature vectors or the name of computed features (``"gist"``, computed
    once per split and cached; see ``deephash.features``). ``extra_json``: more JSON files
    (``{file name: content}``) written into the run directory with the others, so that
    they appear atomically with it (the sweep's ``request.json``). ``hparam_selection``: how
    preset values were chosen (``deephash.tuning``), recorded in metrics.json;
    ``sources``: where each setting came from (e.g. ``{"lr": "flag", "epochs": "preset
    quick"}``), recorded in config.json. With ``config.patience`` a deep method trains to
    its validation plateau (``deephash.early_stopping``: validation split carved from the
    training split, best weights restored; metrics.json's ``early_stopping`` records the
    epochs run, the best epoch and the validation curve). Returns metrics.json's
    content plus ``run_dir`` and the ``model`` object.

    Under the ``multiworker`` strategy every worker runs this with the same arguments; only
    the chief (``training.is_chief``) writes the run directory and the checkpoints (the
    others checkpoint to a private temporary directory, removed after training) and
    returns ``run_dir``; the other workers return the same results with ``run_dir=None``.

    One process at a time writes ``out_dir`` and the checkpoint directory (an OS lock;
    a second one gets ``runs.DirectoryLockedError`` at once). Checkpoints of other settings
    in the checkpoint directory stop the run with a ValueError naming the differences;
    ``overwrite_checkpoints=True`` discards them (only the files the library wrote there).
    A NaN or infinite loss stops training with ``training.NonFiniteLossError``.
    """
    request = _check_request(
        method, dataset, bits, config, out_dir, overwrite, features, extra_json
    )
    with contextlib.ExitStack() as locks:
        request = _lock_out_dir(locks, request)
        ds, fit_ds = _prepare_data(request, dataset, root)
        model, selection, mixed = _build(request, fit_ds, hparams)
        model_hparams = model.hparams()
        request, ckpt_default = _checkpoint_config(request)
        _checkpoint_step(locks, request, ds, model_hparams, overwrite_checkpoints)
        history, stopping, train_s = _train(request, model, fit_ds)
        timing = {"train": round(train_s, 3)}
        ev = _evaluate(request, model, ds, fit_ds, timing)
        summary = {**ev.summary, "mixed_precision": mixed, "timing_s": timing}
        selection = {**(hparam_selection or {}), **selection}
        if selection:
            summary["hparam_selection"] = selection
        if stopping:
            summary["early_stopping"] = stopping
        out_dir = request.out_dir if request.chief else None  # the other workers write nothing
        if out_dir is not None:
            files = {
                "config.json": _config_json(request, ds, model_hparams, ckpt_default, sources),
                "history.json": history,
                "metrics.json": summary,
                **request.extra_json,
            }
            _write_run_dir(request, ds, model, files, ev, stopping)
            if ckpt_default:
                checkpoints.remove(request.config.checkpoint_dir)
        if mixed:
            training.configure_mixed_precision(False)
        return {**summary, "run_dir": out_dir, "model": model}


def format_table(results: list[dict], metrics_keys=("map", "precision_radius_2")) -> str:
    """A plain-text table of run results (method, bits, metrics, conventions, checksum)."""
    header = ["method", "dataset", "bits", *metrics_keys, "mAP depth", "split checksum"]
    rows = []
    for r in results:
        conv = r.get("conventions", {})
        depth = conv.get("top_k", "all")
        rows.append(
            [
                r["method"],
                r["dataset"],
                str(r["bits"]),
                *[f"{float(r[k]):.4f}" if k in r else "-" for k in metrics_keys],
                "all" if depth is None else str(depth),
                r["checksum"][:12],
            ]
        )
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def conventions_line(result: dict) -> str:
    """The metric conventions of a result as one line."""
    conv = result.get("conventions", {})
    return ", ".join(f"{k}={v}" for k, v in conv.items())


__all__ = ["run", "format_table", "conventions_line", "default_checkpoint_dir"]
