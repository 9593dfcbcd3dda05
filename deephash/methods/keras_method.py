"""Base class of the hashing methods that are Keras models (DSRH, DSEH, deep baselines).

The keras-hub "task" pattern: a subclass builds a functional model in ``__init__`` around
a backbone, keeps every constructor argument as an attribute, returns them from
``get_config`` (the backbone through ``keras.layers.serialize``) and rebuilds itself in
``from_config``. Saved ``.keras`` files then reload with
``keras.models.load_model(path)`` (after ``import deephash``) or
``deephash.methods.load(path)``.

This class adds the common method interface of ``deephash.methods.base``:

* ``fit_dataset(dataset, config)``: builds the method's tf.data pipeline
  (:meth:`train_dataset`, overridable), compiles with ``training.make_optimizer``, runs
  ``keras.Model.fit`` (progress per ``config.verbose``: Keras' bar, or one tqdm bar over
  epochs), checkpoints every epoch into ``config.checkpoint_dir`` and resumes from the
  latest checkpoint there;
* ``encode(images_or_split) -> bool (n, bits)``, batched through
  ``data.image_dataset`` with the backbone's preprocessing;
* ``hash_model()``: a model from (preprocessed) images to relaxed codes, exportable alone;
* ``hparams()``, ``extra_metrics(dataset, query_codes, db_codes) -> dict`` (default: none),
  the class attribute ``family = "deep"`` and the classmethod ``resolve_hparams``;
* ``from_registry(name, bits, dataset, **hparams)`` used by ``methods.create``.

Subclasses list every constructor argument in the table ``HPARAMS``
(``deephash.methods.hparams``: default + check), which is validated once
(:meth:`check_hparams`), saved by ``get_config`` and reported by :meth:`hparams`; the data
set's arguments (``num_classes``, ``multilabel``, ``image_shape``, the small-image backbone)
come from :meth:`registry_kwargs`. They implement ``train_step`` and :meth:`hash_model` /
:meth:`code_logits_model`, and keep their loss trackers in ``self._trackers`` (the
``metrics`` property). Inside ``train_step`` losses must be per-replica shares of the
global mean (see ``deephash.training``); :meth:`regularization_loss` gives the
weight-decay term already scaled that way. docs/CONTRIBUTING_METHODS.md walks through one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from deephash import training
from deephash.methods import hparams as hp
from deephash.methods.base import register_loader

_IMAGE_BATCH = 256
_SMALL_IMAGES = 32  # data sets with smaller images default to the small_cnn backbone


def default_backbone(dataset, fallback: str) -> str:
    """small_cnn on data sets with images under 32 pixels (the embedded ones), else ``fallback``."""
    shape = getattr(dataset, "image_shape", None)
    if shape is not None and max(shape[:2]) < _SMALL_IMAGES:
        return "small_cnn"
    return fallback


def resolve_backbone(method: str, backbone: Any, image_shape, weights, input_shape, preprocessing):
    """``(backbone model, preprocessing name)`` from a backbone name or a ``keras.Model``."""
    if isinstance(backbone, str):
        model, pre_name = KerasHashingMethod.build_backbone(
            backbone, image_shape, weights, input_shape
        )
        preprocessing = preprocessing or pre_name
    elif isinstance(backbone, keras.Model):
        model, preprocessing = backbone, preprocessing or "none"
    else:
        raise ValueError(
            f"{method}: backbone must be a keras.Model or a backbone name. "
            f"Received: backbone={backbone!r}"
        )
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(f"{method}: the backbone must output one feature matrix (b, d)")
    return model, preprocessing


class KerasHashingMethod(keras.Model):
    """Common behaviour of Keras hashing methods; see the module docstring.

    A subclass sets ``method`` (its registry name, the owner of its error messages) and
    ``HPARAMS``, and its ``__init__`` has three sections, as keras-hub's models::

        def __init__(self, bits, backbone=None, **kwargs):
            hp = self.check_hparams(bits=bits, backbone=backbone, **self.pop_hparams(kwargs))
            # === Layers ===
            backbone_model, hp["preprocessing"] = self.make_backbone(hp)
            ...
            # === Functional model ===
            super().__init__(inputs=..., outputs=..., **kwargs)
            # === Config ===
            self.backbone = backbone_model
            self.set_hparams(hp)

    ``self.image_shape`` (raw image shape ``(h, w, ch)``, or None for file-based data) and
    ``self.preprocessing`` (the backbone name given to ``data.preprocessing.for_backbone``)
    must be table entries.
    """

    family = "deep"
    method = "deep"
    # bit = 1 where the output of code_logits_model() is above this
    code_threshold: float = 0.0
    # every constructor argument (besides Keras' name/trainable/dtype), in get_config order
    HPARAMS: dict[str, hp.HParam] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_registry(
        cls, name: str, bits: int, dataset: Any = None, **hparams
    ) -> "KerasHashingMethod":
        """Build the method registered as ``name`` for ``dataset`` (see :meth:`registry_kwargs`)."""
        return cls(**cls.registry_kwargs(name, bits, dataset, **hparams))

    @classmethod
    def registry_kwargs(cls, name: str, bits: int, dataset: Any = None, **hparams) -> dict:
        """``hparams`` plus ``bits``, ``variant=name`` (for a table with a ``variant``) and,
        unless given, what ``dataset`` tells: ``num_classes``, ``multilabel`` and
        ``image_shape`` (the entries the table has) and the ``small_cnn`` backbone on images
        under 32 pixels. ValueError naming unknown hyper-parameters."""
        kw = {**hparams, "bits": bits}
        if "variant" in cls.HPARAMS:
            kw["variant"] = name
        if dataset is not None:
            derived = {
                "num_classes": dataset.protocol.num_classes,
                "multilabel": dataset.protocol.multilabel,
                "image_shape": dataset.image_shape,
            }
            for key, value in derived.items():
                if key in cls.HPARAMS:
                    kw.setdefault(key, value)
            if "backbone" in cls.HPARAMS and kw.get("backbone") is None:
                kw["backbone"] = default_backbone(dataset, cls.HPARAMS["backbone"].default)
        unknown = set(kw) - set(cls.HPARAMS)
        if unknown:
            raise ValueError(
                f"{name}: unknown hyper-parameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(cls.HPARAMS)}"
            )
        return kw

    @classmethod
    def resolve_hparams(
        cls, name: str, dataset: Any, bits: int, config: Any, hparams: dict
    ) -> tuple[dict, dict]:
        """Hyper-parameters chosen before creation (e.g. on a validation split):
        ``(hparams, selection record)``; default ``hparams`` unchanged, no selection."""
        return dict(hparams), {}

    @classmethod
    def pop_hparams(cls, kwargs: dict) -> dict:
        """Remove the table's entries from ``kwargs`` (the rest goes to ``keras.Model``)."""
        return {k: kwargs.pop(k) for k in list(kwargs) if k in cls.HPARAMS}

    @classmethod
    def check_hparams(cls, **values) -> dict:
        """Every table entry, validated once: its value in ``values`` (a None backbone or a
        missing one: the default) after its check, then :meth:`check_related`. A table with
        a ``variant`` names the variant in its messages."""
        if values.get("backbone", 0) is None:
            del values["backbone"]
        owner = cls.method
        if "variant" in cls.HPARAMS:
            entry = cls.HPARAMS["variant"]
            owner = entry.check(values.get("variant", entry.default), "variant", cls.__name__)
        return cls.check_related(hp.check_table(cls.HPARAMS, values, owner), owner)

    @classmethod
    def check_related(cls, hparams: dict, owner: str) -> dict:
        """Checks and derived values that involve several entries (default: none)."""
        return hparams

    @classmethod
    def make_backbone(cls, hparams: dict, owner: str):
        """``(backbone model, preprocessing name)`` for the validated ``hparams``."""
        return resolve_backbone(
            owner,
            hparams["backbone"],
            hparams["image_shape"],
            hparams.get("weights"),
            hparams.get("input_shape"),
            hparams["preprocessing"],
        )

    def set_hparams(self, hparams: dict) -> None:
        """Keep every saved entry but the backbone as an attribute (``entry.attr``)."""
        for key, entry in self.HPARAMS.items():
            if entry.saved and key != "backbone":
                setattr(self, entry.attr or key, hparams[key])

    def get_config(self) -> dict:
        """``name``, ``trainable`` and every saved table entry, in table order; the backbone
        through ``keras.layers.serialize``, tuples (``image_shape``) as lists."""
        config = {"name": self.name, "trainable": self.trainable}
        for key, entry in self.HPARAMS.items():
            if not entry.saved:
                continue
            value = getattr(self, entry.attr or key)
            if key == "backbone":
                value = keras.layers.serialize(value)
            elif isinstance(value, tuple):
                value = list(value)
            config[key] = value
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if "backbone" in config:
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)

    def hparams(self) -> dict:
        """The method's hyper-parameters (for config.json): the backbone's name and every
        other saved entry of :meth:`get_config`."""
        config = self.get_config()
        rest = {k: v for k, v in config.items() if k not in ("name", "trainable", "backbone")}
        return {"backbone": self.backbone.name, **rest}

    @staticmethod
    def build_backbone(
        backbone: Any, image_shape=None, weights: str | None = None, input_shape=None
    ):
        """``(backbone model, preprocessing name)`` for a backbone name: the backbone's input
        is ``input_shape`` if given, else its default (224x224x3 for the ImageNet
        backbones), else the raw ``image_shape`` (small_cnn)."""
        from deephash import backbones
        from deephash.data import preprocessing

        pre = preprocessing.for_backbone(str(backbone), input_shape=input_shape)
        shape = pre.input_shape if pre.input_shape is not None else image_shape
        if shape is None:
            raise ValueError(
                f"backbone {backbone!r} needs an input shape: give image_shape or input_shape"
            )
        model = backbones.get(str(backbone), input_shape=tuple(shape), weights=weights)
        return model, str(backbone).lower()

    # ------------------------------------------------------------------ training
    @property
    def metrics(self):
        return list(self._trackers.values())

    def record_losses(self, loss, terms: dict | None = None) -> dict:
        """Update the ``loss`` tracker with ``loss`` and each term's tracker with its value;
        returns the trackers' results ``{"loss": ..., **terms}`` (a step's logs)."""
        terms = terms or {}
        self._trackers["loss"].update_state(loss)
        for k, v in terms.items():
            self._trackers[k].update_state(v)
        return {k: self._trackers[k].result() for k in ("loss", *terms)}

    def train_dataset(self, split, config: training.TrainConfig, start_step: int = 0):
        """The infinite training pipeline, starting at batch ``start_step``. Default:
        shuffled ``(images, labels)`` batches of ``config.batch_size`` (global, remainder
        dropped: one epoch is ``len(split) // batch_size`` steps), batch ``i`` a function of
        ``(config.seed, i)`` only, so a resumed run sees the batches of an uninterrupted one.
        Triplet methods override it."""
        from deephash import data

        return data.labeled_dataset(
            split,
            config.batch_size,
            seed=config.seed,
            shuffle=True,
            repeat=True,
            preprocess=self.preprocessor(),
            augment=getattr(self, "augment", False),
            drop_remainder=True,
            start_step=start_step,
        )

    def steps_per_epoch(self, split, config: training.TrainConfig) -> int:
        """Optimiser steps per epoch: ``len(split) // batch_size`` (at least 1)."""
        return max(1, len(split) // int(config.batch_size))

    def regularization_loss(self):
        """Caffe-style weight decay of the current ``fit_dataset`` config, scaled for the
        replicas (add it to the loss in ``train_step``)."""
        wd = float(getattr(self, "_weight_decay", 0.0) or 0.0)
        return training.scale_to_replicas(training.weight_decay_loss(self.trainable_weights, wd))

    def minimize(self, tape, scaled_loss) -> None:
        """Apply one optimiser step for ``scaled_loss``, which must be computed INSIDE the
        tape's context as ``self.optimizer.scale_loss(loss)`` (the loss scale matters
        under mixed precision; the optimiser unscales the gradients)."""
        weights = self.trainable_weights
        grads = tape.gradient(scaled_loss, weights)
        self.optimizer.apply_gradients(zip(grads, weights))

    # Keras 3's fit does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585);
    # the two overrides below work around its two failures there and leave every other
    # strategy to Keras (they use Keras' private _symbolic_build / _make_function).
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras builds the model and optimiser from the first batch before training; with a
        distributed batch it first all-reduces the batch (for its shapes), which fails under
        ``MultiWorkerMirroredStrategy`` ("Attempt to convert a value (PerReplica...)").
        There the shapes are taken from this worker's first replica instead (the batch
        dimension plays no part in building)."""
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is None or not _multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0], next(it)
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def make_train_function(self, force=False):
        """Keras' train function; under ``MultiWorkerMirroredStrategy`` the step's scalar logs
        are returned as shape ``(1,)``, since Keras averages them over the workers with
        ``strategy.reduce("MEAN", v, axis=0)``, which rejects scalars ("Invalid reduction
        dimension 0 for input with 0 dimensions"); the reduced logs are scalars again."""
        if not _multi_worker(getattr(self, "_distribute_strategy", None)):
            return super().make_train_function(force=force)
        if self.train_function is not None and not force:
            return self.train_function

        def step(data):
            logs = self.train_step(data)
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs
            )

        self.train_function = self._make_function(step)
        return self.train_function

    def fit_dataset(
        self, dataset, config: training.TrainConfig | None = None, callbacks=None
    ) -> dict:
        """Train on ``dataset.train``; returns the history ``{metric: [value per epoch]}``.

        A fresh optimiser (``training.make_optimizer(config)``) is compiled each call. With
        ``config.checkpoint_dir`` the weights and optimiser state are saved after every
        epoch and, if checkpoints exist there, training resumes after the latest one (the
        data stream restarts at batch ``epoch * steps_per_epoch``), so an interrupted run
        ends with the weights of an uninterrupted one.
        """
        config = config if config is not None else training.TrainConfig()
        split = dataset.train if hasattr(dataset, "train") else dataset
        steps = self.steps_per_epoch(split, config)
        self._weight_decay = float(config.weight_decay)
        with self.distribute_strategy.scope():
            self.compile(optimizer=training.make_optimizer(config))
        initial_epoch, history = training.resume(
            self, config.checkpoint_dir, self.distribute_strategy
        )
        if initial_epoch >= config.epochs:
            return history
        ds = self.train_dataset(split, config, start_step=initial_epoch * steps)
        verbose, cbs = training.progress(config, int(config.epochs), initial_epoch, desc=self.name)
        cbs = [
            training.finite_loss_guard(),
            *cbs,
            *(callbacks or []),
        ]  # stop a diverged fit before its checkpoint
        with training.worker_dir(config.checkpoint_dir, self.distribute_strategy) as ckpt_dir:
            if ckpt_dir:
                cbs.append(training.checkpoint_callback(ckpt_dir, history))
            result = self.fit(
                ds,
                epochs=int(config.epochs),
                steps_per_epoch=steps,
                initial_epoch=initial_epoch,
                callbacks=cbs,
                verbose=verbose,
                shuffle=False,
            )
        for k, v in result.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)
        return history

    # ------------------------------------------------------------------ encoding
    def preprocessor(self):
        """The backbone's ``data.preprocessing.Preprocessor`` (raw [0, 255] images -> the
        model's input), or None for preprocessing "none"."""
        if self.preprocessing in (None, "none"):
            return None
        from deephash.data import preprocessing

        return preprocessing.for_backbone(
            self.preprocessing, input_shape=tuple(self.inputs[0].shape[1:])
        )

    def hash_model(self) -> keras.Model:
        """Model from preprocessed images to relaxed codes ``(b, bits)``; exportable alone."""
        raise NotImplementedError

    def code_logits_model(self) -> keras.Model:
        """Model whose outputs are thresholded at ``code_threshold`` to give the codes
        (default: :meth:`hash_model`)."""
        return self.hash_model()

    def layer_model(self, layer: str, suffix: str) -> keras.Model:
        """Model from this model's inputs to the output of ``layer``, named ``{name}_{suffix}``."""
        return keras.Model(self.inputs, self.get_layer(layer).output, name=f"{self.name}_{suffix}")

    def _check_images(self, inputs) -> None:
        images = getattr(inputs, "images", inputs)
        if images is None and getattr(inputs, "paths", None) is not None:
            return
        shape = getattr(images, "shape", None)
        if shape is None or len(shape) != 4 or shape[0] == 0:
            raise ValueError(
                f"{self.name}: encode needs images (n, h, w, ch) or a Split, got shape {shape}"
            )
        if self.image_shape is not None and tuple(shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"{self.name}: images have shape {tuple(shape[1:])}, the model expects "
                f"{tuple(self.image_shape)}"
            )

    def relaxed_codes(self, inputs, batch_size: int = _IMAGE_BATCH) -> np.ndarray:
        """Outputs of :meth:`hash_model` for raw images / a Split, float32 ``(n, bits)``."""
        return self._predict(self._cached("hash", self.hash_model), inputs, batch_size)

    def encode(self, inputs, batch_size: int = _IMAGE_BATCH) -> np.ndarray:
        """Binary codes, bool ``(n, bits)``, of raw images ``(n, h, w, ch)`` in [0, 255] or
        of a ``data.Split``."""
        return (
            self._predict(self._cached("logits", self.code_logits_model), inputs, batch_size)
            > self.code_threshold
        )

    def _cached(self, key: str, build):
        """Sub-models for encoding, built once (their predict functions are traced once);
        kept outside Keras' attribute tracking so they are not saved twice."""
        cache = self.__dict__.get("_encode_models")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_encode_models", cache)
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def _predict(self, model: keras.Model, inputs, batch_size: int) -> np.ndarray:
        from deephash import data

        self._check_images(inputs)
        ds = data.image_dataset(inputs, batch_size, preprocess=self.preprocessor())
        fn = _encode_function(model, ds.element_spec)
        return np.concatenate([np.asarray(fn(x), dtype=np.float32) for x in ds], axis=0)

    def extra_metrics(self, dataset, query_codes: np.ndarray, db_codes: np.ndarray) -> dict:
        """Method-specific metrics merged into metrics.json by the experiment runner."""
        return {}

    # ------------------------------------------------------------------ saving
    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """``keras.Model.save`` written atomically (temporary file, then rename)."""
        filepath = os.fspath(filepath)
        if not filepath.endswith(".keras"):
            raise ValueError(f"{self.name}: save to a '.keras' file, got {filepath!r}")
        if os.path.exists(filepath) and not overwrite:
            raise ValueError(f"{filepath!r} exists (pass overwrite=True)")
        directory = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=directory)
        os.close(fd)
        try:
            super().save(tmp, overwrite=True, **kwargs)
            os.chmod(
                tmp, 0o666 & ~_umask()
            )  # mkstemp makes it 0600; honour the umask like every other file
            os.replace(tmp, filepath)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class _OncePerModelTracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about
    :func:`_encode_function`: TensorFlow counts traces by the Python code object, so one
    trace per model (each model needs its own graph) reads as retracing once several models
    encode (hyper-parameter selection, a sweep). Any other function's warning passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("retracing" in message and "_encode_function" in message)


logging.getLogger("tensorflow").addFilter(_OncePerModelTracing())


def _encode_function(model: keras.Model, spec):
    """``model(images, training=False)`` as one ``tf.function`` per model, traced once for
    every batch size (input signature with a free batch dimension), so encoding never
    retraces: no "triggered tf.function retracing" warnings when many models encode
    (hyper-parameter selection) or the last batch is smaller. Kept on the model, outside
    Keras' attribute tracking."""
    fn = model.__dict__.get("_deephash_encode_fn")
    if fn is None or fn[0] != spec:
        traced = tf.function(
            lambda images: model(images, training=False),
            input_signature=[spec],
            autograph=False,
            reduce_retracing=True,
        )
        fn = (spec, traced)
        object.__setattr__(model, "_deephash_encode_fn", fn)
    return fn[1]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _multi_worker(strategy) -> bool:
    """Whether ``strategy`` is a MultiWorkerMirroredStrategy (with or without a cluster)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _load_keras(path: str):
    import deephash  # noqa: F401  (registers every custom object)

    model = keras.models.load_model(path, compile=False)
    if not isinstance(model, KerasHashingMethod):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a deephash hashing method")
    return model


register_loader(".keras", _load_keras)
