"""Feature vectors for the shallow baselines: extract them from a backbone layer, save, load.

The shallow methods (LSH, ITQ, KSH, SDH, ...) are fit on feature vectors, as in the
papers (DSEH: 4,096-d CNN-F fc7; DSRH: 512-d GIST (``deephash.gist``) / AlexNet outputs;
raw pixels for the embedded sets). A *feature data set* is an ordinary
``deephash.data.Dataset`` whose splits hold float32 feature vectors in ``images`` with
shape ``(n, 1, 1, d)`` — a 1x1 "image" with ``d`` channels, so that every ``Split`` check
still holds — and
``image_shape == (1, 1, d)``. ``feature_matrix(split)`` returns the ``(n, d)`` view; the
shallow methods flatten ``images`` themselves. Labels, indices, class ids, the protocol
and the split ``checksum`` are those of the source data set.

*Computed features* (``RECIPES``: ``"gist"``) need no directory: give the name instead
(``experiment.run(..., features="gist")``, ``--features=gist``) and ``cached_features``
computes them for the run's split on first use and keeps them in the data cache
(``$DEEPHASH_CACHE/features/<dataset>-<split checksum>-<recipe>-<settings>``), so every
method, code length and seed of that split reuses one computation.

On disk (``save_features`` / ``load_features``) a feature directory holds, per split
``s`` in query / train / database: ``s_features.npy`` (float32 (n, d)), ``s_labels.npy``
(uint8 (n, c)), ``s_indices.npy`` (int64 (n,)) and, for single-label sets,
``s_class_ids.npy`` (int64 (n,)); plus ``features.json`` (data set name, split checksum,
protocol, dimension, sizes and where the features came from), written last. Every file
is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any

import numpy as np

from deephash import validation
from deephash.data.dataset import Dataset, Protocol, Split
from deephash.data.splits import cache_dir, split_checksum
from deephash.io import atomic_write, write_json

SPLITS = ("query", "train", "database")
RAW = ("pixels", "raw")
GIST = "gist"
RECIPES = (GIST,)  # feature names computed on demand and cached (``cached_features``)
GIST_FILE_CHUNK = 256  # file-based sets: images decoded per GIST call
META_FILE = "features.json"
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def feature_matrix(split: Split) -> np.ndarray:
    """The ``(n, d)`` float32 feature vectors of a feature split (or flattened images)."""
    if split.images is None:
        raise ValueError(
            "this split holds image paths, not feature vectors; run extract_features first"
        )
    return split.images.reshape(len(split), -1)


def _with_features(split: Split, feats: np.ndarray) -> Split:
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] != len(split):
        raise ValueError(f"features must have shape ({len(split)}, d), got {feats.shape}")
    if not np.all(np.isfinite(feats)):
        raise ValueError("features contain NaN or infinite values")
    return dataclasses.replace(split, images=feats.reshape(len(feats), 1, 1, -1), paths=None)


def _feature_dataset(dataset: Dataset, feats: dict[str, np.ndarray]) -> Dataset:
    splits = {name: _with_features(getattr(dataset, name), feats[name]) for name in SPLITS}
    dims = {int(s.images.shape[-1]) for s in splits.values()}
    if len(dims) != 1:
        raise ValueError(f"feature dimensions differ between splits: {sorted(dims)}")
    return dataclasses.replace(dataset, **splits, image_shape=(1, 1, dims.pop()))


def _feature_model(backbone: Any, layer: str | None, weights, input_shape):
    import keras

    from deephash import backbones

    model = backbone
    if isinstance(backbone, str):
        model = backbones.get(backbone, input_shape=input_shape, weights=weights)
    elif weights is not None:
        raise ValueError(
            "weights applies to a backbone given by name; load them into your model instead"
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"backbone must be a keras.Model or a name ({', '.join(backbones.available())}, "
            "pixels, gist)"
        )
    if layer is None:
        return model
    names = [lay.name for lay in model.layers]
    if layer not in names:
        raise ValueError(
            f"backbone {model.name!r} has no layer {layer!r}; layers: {', '.join(names)}"
        )
    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_{layer}")


def _per_split(dataset: Dataset, compute) -> dict[str, np.ndarray]:
    """``compute(split) -> (n, d)`` for query and database; training items that are also
    database items are taken from the database's features instead of computed again."""
    feats = {"query": compute(dataset.query), "database": compute(dataset.database)}
    position = {int(i): p for p, i in enumerate(dataset.database.indices)}
    train_pos = [position.get(int(i), -1) for i in dataset.train.indices]
    if len(train_pos) and min(train_pos) >= 0:
        feats["train"] = feats["database"][np.asarray(train_pos, dtype=np.int64)]
    else:
        feats["train"] = compute(dataset.train)
    return feats


def _gist_split(split: Split, params, batch_size: int | None) -> np.ndarray:
    """GIST of an in-memory split, or of a file-based one decoded ``GIST_FILE_CHUNK`` files
    at a time (``deephash.data.images.decode_file``, RGB; each image made gray and
    resized on its own, since file sizes differ)."""
    from deephash import gist

    kwargs = {**params.to_dict(), **({"batch_size": batch_size} if batch_size is not None else {})}
    if split.images is not None:
        return gist.gist(split.images, **kwargs)
    if len(split) == 0:
        raise ValueError("cannot extract features of an empty split")
    from tqdm.auto import tqdm

    from deephash.data.images import decode_file

    out = []
    starts = range(0, len(split), GIST_FILE_CHUNK)
    for i in tqdm(starts, desc="GIST (files)", unit="chunk", leave=False, disable=len(starts) < 4):
        chunk = np.concatenate(
            [
                gist.prepare(decode_file(str(p), channels=3)[None], params.image_size)
                for p in split.paths[i : i + GIST_FILE_CHUNK]
            ]
        )
        out.append(gist.gist(chunk, **kwargs, progress=False))
    return np.concatenate(out)


def _run(model, split: Split, batch_size: int, preprocess) -> np.ndarray:
    from deephash.data.pipelines import image_dataset

    out = [
        np.asarray(model(batch, training=False)).reshape(batch.shape[0], -1)
        for batch in image_dataset(split, batch_size, preprocess=preprocess)
    ]
    if not out:
        raise ValueError("cannot extract features of an empty split")
    return np.concatenate(out).astype(np.float32)


def extract_features(
    backbone_model_or_name: Any,
    dataset: Dataset,
    layer: str | None = None,
    batch_size: int | None = None,
    weights: str | os.PathLike | None = None,
    preprocess: Any = None,
) -> Dataset:
    """Feature vectors of every split of ``dataset`` (see the module docstring).

    Args:
        backbone_model_or_name: ``"pixels"`` (or ``"raw"``, ``None``): flattened in-memory
            images in [0, 255]; ``"gist"`` (or a ``deephash.gist.GistParams`` for other
            parameters): the 512-d GIST descriptor of ``deephash.gist`` with LMgist's
            parameters at 32x32 (DSRH's CIFAR-10 features); a backbone name of
            ``deephash.backbones.available()``; or a ``keras.Model`` mapping preprocessed
            image batches to features.
        dataset: the source ``Dataset`` (in-memory or file-based; pixels need in-memory).
        layer: name of the layer whose output to take (e.g. ``"fc7"`` for cnn_f, ``"fc2"``
            — VGG's fc7 — for vgg19); default the backbone output. Outputs with spatial
            axes are flattened.
        batch_size: images per forward pass (default 64), or per batched GIST FFT
            (default ``deephash.gist.gist``'s).
        weights: local pretrained weights file for a backbone given by name.
        preprocess: a ``Preprocessor`` (or callable); default
            ``deephash.data.for_backbone(name)`` for a named backbone, none for a model.

    Returns a ``Dataset`` with features ``(n, 1, 1, d)`` in each split's ``images``.
    Items shared by the training and database splits are computed once.
    """
    if batch_size is not None:
        validation.check_int(batch_size, "batch_size")
    from deephash.gist import GistParams

    if isinstance(backbone_model_or_name, GistParams) or (
        isinstance(backbone_model_or_name, str) and backbone_model_or_name.lower() == GIST
    ):
        if layer is not None or weights is not None or preprocess is not None:
            raise ValueError(
                "GIST features take no layer, weights or preprocess (pass a "
                "deephash.gist.GistParams to change its parameters)"
            )
        params = (
            backbone_model_or_name
            if isinstance(backbone_model_or_name, GistParams)
            else GistParams()
        )
        return _feature_dataset(
            dataset, _per_split(dataset, lambda s: _gist_split(s, params, batch_size))
        )
    if backbone_model_or_name is None or (
        isinstance(backbone_model_or_name, str) and backbone_model_or_name.lower() in RAW
    ):
        if layer is not None or weights is not None:
            raise ValueError("raw pixel features take no layer or weights")
        for name in SPLITS:
            if getattr(dataset, name).images is None:
                raise ValueError(
                    f"raw pixel features need an in-memory data set; {dataset.name!r} holds image "
                    "files: choose a backbone"
                )
        return _feature_dataset(dataset, {n: feature_matrix(getattr(dataset, n)) for n in SPLITS})

    if preprocess is None and isinstance(backbone_model_or_name, str):
        from deephash.data.preprocessing import for_backbone

        shape = dataset.image_shape if backbone_model_or_name.lower() == "small_cnn" else None
        mean = None
        if backbone_model_or_name.lower() == "cnn_f" and weights is not None:
            # MatConvNet subtracts the file's full average image (per-channel mean in old files)
            from deephash.backbones.cnn_f import matconvnet_metadata

            meta = matconvnet_metadata(weights)
            mean = meta["average_image"] if np.ndim(meta["average_image"]) == 3 else meta["mean"]
        preprocess = for_backbone(backbone_model_or_name, input_shape=shape, mean=mean)
    input_shape = (
        getattr(preprocess, "input_shape", None)
        if isinstance(backbone_model_or_name, str)
        else None
    )
    model = _feature_model(backbone_model_or_name, layer, weights, input_shape)
    batch_size = 64 if batch_size is None else batch_size
    return _feature_dataset(
        dataset, _per_split(dataset, lambda s: _run(model, s, batch_size, preprocess))
    )


def save_features(
    dataset: Dataset, directory: str | os.PathLike, source: dict | None = None
) -> str:
    """Write a feature data set to ``directory`` (layout in the module docstring); returns it.

    ``source`` (e.g. ``{"backbone": "cnn_f", "layer": "fc7", "weights": path}``) is
    recorded in ``features.json``.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    sizes, dims = {}, set()
    for name in SPLITS:
        split = getattr(dataset, name)
        feats = feature_matrix(split)
        dims.add(int(feats.shape[1]))
        sizes[name] = len(split)
        arrays = {
            "features": feats.astype(np.float32),
            "labels": split.labels,
            "indices": split.indices,
        }
        if split.class_ids is not None:
            arrays["class_ids"] = split.class_ids
        for key, arr in arrays.items():
            with atomic_write(os.path.join(directory, f"{name}_{key}.npy"), "wb") as f:
                np.save(f, arr, allow_pickle=False)
    if len(dims) != 1:
        raise ValueError(f"feature dimensions differ between splits: {sorted(dims)}")
    write_json(
        os.path.join(directory, META_FILE),
        {
            "format_version": FORMAT_VERSION,
            "dataset": dataset.name,
            "checksum": dataset.checksum,
            "dim": dims.pop(),
            "sizes": sizes,
            "single_label": dataset.query.class_ids is not None,
            "protocol": dataclasses.asdict(dataset.protocol),
            "root": dataset.root,
            "source": dict(source or {}),
        },
    )
    return directory


def _load_array(directory: str, filename: str) -> np.ndarray:
    path = os.path.join(directory, filename)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"feature file {path!r} is missing (written by deephash.features.save_features "
            "or experiments/extract_features.py)"
        )
    return np.load(path, allow_pickle=False)


def load_features(directory: str | os.PathLike) -> Dataset:
    """Read a directory written by ``save_features`` into a feature ``Dataset``, validated:
    shapes agree, features are finite, and the index lists reproduce the recorded split
    checksum. Missing files raise FileNotFoundError naming them; inconsistent ones ValueError."""
    directory = os.fspath(directory)
    meta_path = os.path.join(directory, META_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(
            f"{meta_path!r} is missing: {directory!r} is not a complete feature directory "
            "(written by deephash.features.save_features)"
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as e:
        raise ValueError(f"{meta_path!r}: damaged JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(
            f"{meta_path!r}: not a feature-directory manifest (a JSON object expected)"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path!r}: unknown format_version {meta.get('format_version')!r}")
    splits = {}
    for name in SPLITS:
        feats = _load_array(directory, f"{name}_features.npy")
        labels = _load_array(directory, f"{name}_labels.npy")
        indices = _load_array(directory, f"{name}_indices.npy")
        class_ids = (
            _load_array(directory, f"{name}_class_ids.npy") if meta["single_label"] else None
        )
        n = meta["sizes"][name]
        if feats.shape != (n, meta["dim"]) or labels.shape[0] != n or indices.shape != (n,):
            raise ValueError(
                f"{directory!r}: {name} arrays have shapes {feats.shape}, {labels.shape}, "
                f"{indices.shape}; {META_FILE} says {n} items of dimension {meta['dim']}"
            )
        if not np.all(np.isfinite(feats)):
            raise ValueError(f"{directory!r}: {name}_features.npy contains NaN or infinite values")
        split = Split(
            labels=labels,
            indices=indices,
            images=np.ones((n, 1, 1, 1), np.float32),
            class_ids=class_ids,
        )
        splits[name] = _with_features(split, feats)
    checksum = split_checksum(
        splits["query"].indices, splits["train"].indices, splits["database"].indices
    )
    if checksum != meta["checksum"]:
        raise ValueError(
            f"{directory!r}: the index lists give split checksum {checksum[:12]}..., "
            f"{META_FILE} records {meta['checksum'][:12]}..."
        )
    proto = meta["protocol"]
    protocol = Protocol(**{**proto, "class_names": tuple(proto["class_names"])})
    return Dataset(
        name=meta["dataset"],
        protocol=protocol,
        checksum=meta["checksum"],
        image_shape=(1, 1, int(meta["dim"])),
        root=meta.get("root"),
        **splits,
    )


def is_recipe(features: Any) -> bool:
    """Whether ``features`` names computed features (``RECIPES``) rather than a directory."""
    return isinstance(features, str) and features.lower() in RECIPES


def _recipe_settings(recipe: str) -> dict:
    """What determines a recipe's features: its parameters and the computing module's source."""
    from deephash import gist

    with open(gist.__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    return {"recipe": recipe, "params": gist.GistParams().to_dict(), "source": source}


def cached_features(recipe: str, dataset: Dataset) -> Dataset:
    """The ``recipe`` features (``RECIPES``) of ``dataset``'s split, from the data cache.

    Computed with ``extract_features`` and saved (``save_features``) on first use; the
    cache directory is keyed by the data set name, the split checksum and a digest of the
    recipe's settings (parameters and the source of the module computing them), so a
    different split or changed code computes afresh. A cache entry that no longer loads
    (e.g. a truncated file) is recomputed, with a warning.
    """
    if not is_recipe(recipe):
        raise ValueError(
            f"unknown feature recipe {recipe!r}; computed features: {', '.join(RECIPES)} "
            "(or give a feature directory)"
        )
    recipe = recipe.lower()
    settings = _recipe_settings(recipe)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    where = os.path.join(
        cache_dir("features"), f"{dataset.name}-{dataset.checksum[:16]}-{recipe}-{digest}"
    )
    if os.path.exists(os.path.join(where, META_FILE)):
        try:
            cached = load_features(where)
            if cached.checksum == dataset.checksum:
                return cached
            log.warning(
                "cached %s features in %s belong to another split; recomputing", recipe, where
            )
        except (OSError, ValueError, KeyError) as e:
            log.warning("cached %s features in %s do not load (%s); recomputing", recipe, where, e)
    feats = extract_features(recipe, dataset)
    save_features(feats, where, source=settings)
    return feats
