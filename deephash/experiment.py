"""The experiment runner: train one method on one data set at one code length, evaluate
it under the data set's protocol, and write a run directory (see ``deephash.runs``).

``run`` validates everything it can before any work (unknown method or data set, a bad
code length, an existing run directory without ``overwrite``) and raises ValueError.
"""

from __future__ import annotations

import contextlib
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
    with contextlib.ExitStack() as locks:
        return _run(
            locks,
            method,
            dataset,
            bits,
            config,
            out_dir,
            hparams,
            overwrite,
            features,
            root,
            extra_json,
            overwrite_checkpoints,
            hparam_selection,
            sources,
        )


def _run(
    locks,
    method,
    dataset,
    bits,
    config,
    out_dir,
    hparams,
    overwrite,
    features,
    root,
    extra_json,
    overwrite_checkpoints,
    hparam_selection,
    sources,
):
    from deephash import data, methods, metrics

    # ---- validate before any work
    config = config if config is not None else training.TrainConfig()
    if not isinstance(config, training.TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    name = str(method).lower()
    family = methods.family(name)  # ValueError for unknown methods
    if isinstance(dataset, str):
        if dataset not in data.available():
            raise ValueError(
                f"unknown dataset {dataset!r}; available: {', '.join(data.available())}"
            )
    elif not hasattr(dataset, "protocol"):
        raise ValueError(
            f"dataset must be a name or a deephash.data.Dataset, got {type(dataset).__name__}"
        )
    methods.check_bits(bits, method=name)
    if out_dir is not None:
        out_dir = runs.check_out_dir(out_dir, overwrite)
    if features is not None and family != "shallow":
        raise ValueError(f"--features applies to shallow methods; {name!r} is a deep method")
    from deephash import features as features_lib

    if (
        features is not None
        and not features_lib.is_recipe(features)
        and not os.path.isdir(features)
    ):
        raise FileNotFoundError(
            f"no feature directory at {features!r} (computed features: "
            f"{', '.join(features_lib.RECIPES)})"
        )
    reserved = {
        "config.json",
        "split.json",
        "codes.npz",
        "history.json",
        "metrics.json",
        runs.MANIFEST,
    }
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
    hparams = dict(hparams or {})
    if out_dir is not None and (family != "deep" or training.is_chief(config.strategy)):
        locks.enter_context(runs.DirectoryLock(out_dir, "run directory"))
        runs.remove_stale(out_dir)  # staging directories of a killed earlier run of this directory
        out_dir = runs.check_out_dir(out_dir, overwrite)  # again, now that it is ours

    # ---- data
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

    if family == "deep" and len(fit_ds.train) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the training set of {ds.name} "
            f"({len(fit_ds.train)} items): an epoch would have no steps"
        )

    # ---- model
    selection: dict = {}
    training.set_seed(config.seed)
    factory = methods.base._lookup(name)
    resolve = getattr(factory, "resolve_hparams", None)
    if resolve is not None:
        hparams, selection = resolve(name, fit_ds, bits, config, hparams)
    mixed = False
    if family == "deep":
        mixed = training.configure_mixed_precision(config.mixed_precision)
        strategy = training.get_strategy(config.strategy)
        training.set_seed(config.seed)
        with strategy.scope():
            model = methods.create(name, bits=bits, dataset=fit_ds, **hparams)
    else:
        model = methods.create(name, bits=bits, dataset=fit_ds, **hparams)
    model_hparams = (
        model.hparams() if hasattr(model, "hparams") and callable(model.hparams) else dict(hparams)
    )

    # ---- train
    ckpt_default = False
    if family == "deep" and out_dir is not None and config.checkpoint_dir is None:
        config = config.replace(checkpoint_dir=default_checkpoint_dir(out_dir))
        ckpt_default = True
    chief = family != "deep" or training.is_chief(config.strategy)
    if family == "deep" and config.checkpoint_dir and chief:
        locks.enter_context(runs.DirectoryLock(config.checkpoint_dir, "checkpoint directory"))
        _prepare_checkpoints(
            config.checkpoint_dir,
            {
                "method": name,
                "bits": bits,
                "dataset": ds.name,
                "checksum": ds.checksum,
                "config": {
                    k: v
                    for k, v in config.to_dict().items()
                    if k not in ("verbose", "checkpoint_dir")
                },
                "hparams": model_hparams,
            },
            overwrite=overwrite_checkpoints,
        )
    if family == "deep":  # the other workers resume only after the chief has sorted the checkpoints
        training.same_on_all_workers(1, "reaching training", config.strategy)
    t0 = time.perf_counter()
    stopping: dict = {}
    if (
        family == "deep" and config.patience is not None
    ):  # to the validation plateau (deephash.early_stopping)
        trained_ds, validation = early_stopping.carve(
            fit_ds, config.validation_fraction, config.seed
        )
        history, stopping = early_stopping.fit(model, trained_ds, config, validation)
    else:
        history = model.fit_dataset(fit_ds, config) or {}
    train_s = time.perf_counter() - t0
    training.check_finite(history, "in the training history")  # a diverged run is not a result

    # ---- evaluate
    t0 = time.perf_counter()
    q_codes = model.encode(fit_ds.query)
    db_codes = model.encode(fit_ds.database)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = metrics.evaluate(
        q_codes, db_codes, ds.query.labels, ds.database.labels, top_k=ds.protocol.map_depth
    )
    eval_s = time.perf_counter() - t0
    extra = (
        model.extra_metrics(fit_ds, q_codes, db_codes) if hasattr(model, "extra_metrics") else {}
    )
    summary = {
        "method": name,
        "dataset": ds.name,
        "bits": int(bits),
        "checksum": ds.checksum,
        **result,
        **(extra or {}),
        "mixed_precision": mixed,
        "timing_s": {
            "train": round(train_s, 3),
            "encode": round(encode_s, 3),
            "evaluate": round(eval_s, 3),
        },
    }
    selection = {**(hparam_selection or {}), **selection}
    if selection:
        summary["hparam_selection"] = selection
    if stopping:
        summary["early_stopping"] = stopping

    # ---- run directory (only the chief of a cluster writes; the other workers return the results)
    if out_dir is not None and not chief:
        out_dir = None
    if out_dir is not None:
        resolved = {k: v for k, v in config.to_dict().items()}
        if ckpt_default:
            resolved["checkpoint_dir"] = None
        with runs.staged_dir(out_dir, overwrite) as tmp:
            io.write_json(
                os.path.join(tmp, "config.json"),
                {
                    "method": name,
                    "family": family,
                    "dataset": ds.name,
                    "bits": int(bits),
                    "train": resolved,
                    "hparams": model_hparams,
                    "features": features,
                    "versions": runs.versions(),
                    **({"sources": sources} if sources else {}),
                },
            )
            io.write_json(os.path.join(tmp, "split.json"), _dataset_summary(ds))
            model.save(os.path.join(tmp, "model.keras" if family == "deep" else "model.npz"))
            runs.save_codes(
                os.path.join(tmp, "codes.npz"),
                q_codes,
                db_codes,
                ds.query.labels,
                ds.database.labels,
            )
            io.write_json(os.path.join(tmp, "history.json"), history)
            io.write_json(os.path.join(tmp, "metrics.json"), summary)
            for filename, content in (extra_json or {}).items():
                io.write_json(os.path.join(tmp, filename), content)
            title = f"{name} · {ds.name} · {bits} bits"
            if "pr_curve" in result:
                plots.pr_curve(
                    result["pr_curve"],
                    os.path.join(tmp, "pr_curve.png"),
                    title=f"PR curve: {title}",
                )
            if history:
                curve = stopping.get("validation_curve", {})
                plots.training_curves(
                    history,
                    os.path.join(tmp, "training_curve.png"),
                    title=f"Training: {title}",
                    epochs={early_stopping.CURVE_KEY: curve["epoch"]} if curve else None,
                    best_epoch=stopping.get("best_epoch"),
                )
            runs.write_manifest(tmp)  # last: hashes of everything above
        if ckpt_default:
            checkpoints.remove(config.checkpoint_dir)
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
