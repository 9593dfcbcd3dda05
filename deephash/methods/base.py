"""The interface every hashing method follows, and the registry of methods by name.

A method is created by name with ``create(name, bits=..., dataset=..., **hparams)``;
``dataset`` tells it the protocol (classes, single/multi-label, image shape). Every
method then offers

* ``fit_dataset(dataset, config) -> dict``: train on ``dataset.train`` (a validation
  split, when a method needs one, is carved from ``dataset.train``, never from the
  queries); returns the training history ``{metric_name: [value per epoch]}``;
* ``encode(inputs) -> np.ndarray``: bool codes of shape ``(n, bits)``; ``inputs`` are
  images (deep methods) or feature vectors (shallow methods), or a ``data.Split``;
* ``save(path)``; ``deephash.methods.load(path)`` restores it (``.keras`` for Keras
  models, ``.npz`` for numpy methods).

Deep methods are Keras models and additionally keep Keras' own ``fit``/``save``.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from deephash import validation

_REGISTRY: dict[str, Callable[..., "HashingMethod"]] = {}
_LOADERS: dict[str, Callable[[str], "HashingMethod"]] = {}


@runtime_checkable
class HashingMethod(Protocol):
    """Structural type of a hashing method (see the module docstring). ``ShallowMethod``
    and ``keras_method.KerasHashingMethod`` give every member a default, so callers never
    need ``hasattr``; ``family`` and ``resolve_hparams`` work on the class as well."""

    name: str
    family: str  # "deep" (trains on images) or "shallow" (trains on feature vectors)
    bits: int

    def fit_dataset(self, dataset: Any, config: Any = None) -> dict: ...

    def encode(self, inputs: Any) -> np.ndarray: ...

    def save(self, path: str) -> None: ...

    def hparams(self) -> dict: ...

    def extra_metrics(
        self, dataset: Any, query_codes: np.ndarray, db_codes: np.ndarray
    ) -> dict: ...

    @classmethod
    def resolve_hparams(
        cls, name: str, dataset: Any, bits: int, config: Any, hparams: dict
    ) -> tuple[dict, dict]: ...


def register(name: str, *, family: str = "deep") -> Callable:
    """Class decorator: make a method creatable as ``create(name, ...)``.

    ``family`` is "deep" (trains on images) or "shallow" (trains on feature vectors).
    """
    key = name.lower()

    def wrap(factory):
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[key] = factory
        factory.family = family
        return factory

    return wrap


def register_loader(extension: str, loader: Callable[[str], "HashingMethod"]) -> None:
    """Register how files ending in ``extension`` (e.g. ".npz") are loaded."""
    _LOADERS[extension] = loader


def available(family: str | None = None) -> list[str]:
    """Names of the registered methods, optionally only one family ("deep"/"shallow")."""
    return sorted(k for k, f in _REGISTRY.items() if family is None or f.family == family)


def family(name: str) -> str:
    """The family ("deep" or "shallow") of the method registered as ``name``."""
    return factory(name).family


def factory(name: str) -> type:
    """The class registered as ``name`` (any case); ValueError naming the available methods
    for an unknown one. Its ``family`` and ``resolve_hparams`` work on the class."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _REGISTRY[key]


def create(name: str, **kwargs) -> "HashingMethod":
    """Instantiate the method registered as ``name`` with ``kwargs``; an argument the
    method does not take raises ValueError naming it and the accepted ones."""
    cls = factory(name)
    try:
        return cls.from_registry(name.lower(), **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e) and "got multiple values" not in str(e):
            raise
        raise ValueError(
            f"{name}: {_bad_argument(e)} (hyper-parameters it takes: {', '.join(_accepted(cls))})"
        ) from None


def _bad_argument(e: TypeError) -> str:
    import re

    m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
    return f"unknown hyper-parameter {m.group(1)!r}" if m else str(e)


def _accepted(cls) -> list[str]:
    import inspect

    names: list[str] = [n for n in getattr(cls, "HPARAMS", {}) if n not in ("bits",)]
    for fn in (cls.from_registry, cls.__init__, cls):
        if fn is None:
            continue
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in ("self", "cls", "name", "dataset", "bits", "kwargs")
            and p.name not in names
        ]
    return names or ["(none)"]


def load(path: str) -> "HashingMethod":
    """Load a saved method; the file extension selects the loader."""
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"no saved method at {path!r}")
    for ext, loader in _LOADERS.items():
        if str(path).endswith(ext):
            try:
                return loader(path)
            except Exception as e:  # a truncated or foreign file: say which and what is wrong
                size = os.path.getsize(
                    path
                )  # (Keras says "File not found" for a truncated file that exists)
                raise ValueError(
                    f"{path!r}: cannot load the saved method, the file is damaged or not a "
                    "deephash "
                    f"model ({size} bytes; {type(e).__name__}: {e})"
                ) from e
    raise ValueError(f"{path!r}: unknown saved-method format (known: {', '.join(_LOADERS)})")


MAX_BITS = 4096  # longest code accepted: beyond it models and metrics outgrow memory before telling


def check_bits(bits: Any, *, method: str, multiple_of: int = 1, maximum: int | None = None) -> int:
    """Validate a code length for ``method``; returns it as int or raises ValueError."""
    bits = validation.check_int(bits, "bits", owner=method)
    if bits % multiple_of:
        validation.fail("bits", f"a multiple of {multiple_of}", bits, method)
    if maximum is not None and bits > maximum:
        validation.fail("bits", f"at most {maximum} here", bits, method)
    if bits > MAX_BITS:
        validation.fail("bits", f"at most {MAX_BITS} bits (the papers use 12 to 128)", bits, method)
    return bits


class ShallowMethod(abc.ABC):
    """Base class of numpy methods fit on feature vectors (LSH, ITQ, KSH, ...).

    Subclasses implement ``fit(features, labels=None, seed=0)`` and ``_project``
    (features -> real-valued (n, bits) whose sign gives the code), keep their validated
    hyper-parameters in ``self.hp`` (``super().__init__(bits, **hp)``) and list their
    learned arrays in ``_state``; saving, loading, ``fit_dataset``, ``hparams``,
    ``extra_metrics`` and ``resolve_hparams`` come from here.
    """

    name: str = "shallow"
    family: str = "shallow"
    supervised: bool = False
    _state: tuple[str, ...] = ()

    def __init__(self, bits: int, **hparams):
        self.bits = check_bits(bits, method=self.name)
        self.hp = dict(hparams)
        self.fitted = False
        self._given = dict(hparams)

    @classmethod
    def from_registry(cls, name: str, bits: int, dataset: Any = None, **hparams):
        obj = cls(bits=bits, **hparams)
        obj._given = dict(hparams)
        return obj

    @classmethod
    def resolve_hparams(
        cls, name: str, dataset: Any, bits: int, config: Any, hparams: dict
    ) -> tuple[dict, dict]:
        """Hyper-parameters chosen before creation: ``(hparams, selection record)``
        (default: ``hparams`` unchanged, no selection)."""
        return dict(hparams), {}

    def hparams(self) -> dict:
        """The hyper-parameters the method was created with, as given to
        ``methods.create`` (what config.json records; all of them for a loaded method)."""
        return dict(self._given)

    def extra_metrics(self, dataset: Any, query_codes: np.ndarray, db_codes: np.ndarray) -> dict:
        """Method-specific metrics merged into metrics.json (default: none)."""
        return {}

    @abc.abstractmethod
    def fit(
        self, features: np.ndarray, labels: np.ndarray | None = None, seed: int = 0
    ) -> "ShallowMethod":
        """Learn the hash functions from ``features`` (n, d) and, if supervised, multi-hot
        labels."""

    @abc.abstractmethod
    def _project(self, features: np.ndarray) -> np.ndarray:
        """Real-valued projections (n, bits); code bit = projection > 0."""

    @staticmethod
    def features_of(inputs: Any) -> np.ndarray:
        """Flatten a Split's images / an array to float64 (n, d) feature vectors."""
        arr = getattr(inputs, "features", None)
        if arr is None:
            arr = getattr(inputs, "images", inputs)
        arr = np.asarray(arr)
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError(f"features must have shape (n, d) with n >= 1, got {arr.shape}")
        arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("features contain NaN or infinite values")
        return arr

    def _fit_inputs(self, features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate ``fit`` inputs: float64 features (n, d) and, for supervised methods,
        float64 multi-hot labels (n, c) (class ids (n,) are one-hot encoded)."""
        x = self.features_of(features)
        if not self.supervised:
            return x, None
        from deephash.methods.shallow._linalg import as_labels

        return x, as_labels(labels, x.shape[0], method=self.name)

    def fit_dataset(self, dataset: Any, config: Any = None) -> dict:
        """Fit on ``dataset.train`` (features in ``images``); returns ``self.history``."""
        seed = getattr(config, "seed", 0) if config is not None else 0
        labels = dataset.train.labels if self.supervised else None
        self.fit(self.features_of(dataset.train), labels, seed=seed)
        return dict(getattr(self, "history", {}))

    def encode(self, inputs: Any, batch_size: int = 8192) -> np.ndarray:
        """bool codes ``(n, bits)`` of feature vectors / a Split, computed ``batch_size`` rows
        at a time (memory stays bounded for large databases)."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() before encode()")
        arr = getattr(inputs, "features", None)
        arr = np.asarray(getattr(inputs, "images", inputs) if arr is None else arr)
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError(f"features must have shape (n, d) with n >= 1, got {arr.shape}")
        arr = arr.reshape(arr.shape[0], -1)
        if arr.shape[1] != self.input_dim:
            raise ValueError(
                f"{self.name}: features have {arr.shape[1]} dims, the model was fit on "
                f"{self.input_dim}"
            )
        out = np.empty((arr.shape[0], self.bits), dtype=bool)
        for start in range(0, arr.shape[0], int(batch_size)):
            chunk = self.features_of(arr[start : start + int(batch_size)])
            out[start : start + len(chunk)] = self._project(chunk) > 0
        return out

    def get_config(self) -> dict:
        return {"name": self.name, "bits": self.bits, **self.hp}

    def save(self, path: str) -> None:
        from deephash.io import atomic_write, dumps_strict

        if not self.fitted:
            raise RuntimeError(f"{self.name}: nothing to save before fit()")
        arrays = {k: np.asarray(getattr(self, k)) for k in self._state}
        arrays["__config__"] = np.frombuffer(
            dumps_strict(self.get_config(), what=f"{path}: config").encode(), dtype=np.uint8
        )
        with atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def _load(cls, path: str) -> "ShallowMethod":
        import json

        try:
            with np.load(path, allow_pickle=False) as z:
                config = json.loads(bytes(z["__config__"]).decode())
                arrays = {k: z[k] for k in z.files if k != "__config__"}
        except Exception as e:  # corrupt or foreign file
            raise ValueError(f"{path!r} is not a saved deephash shallow method: {e}") from e
        name = config.pop("name")
        obj = factory(name)(**config)
        for k, v in arrays.items():
            setattr(obj, k, v)
        obj.fitted = True
        return obj

    @property
    def input_dim(self) -> int:
        raise NotImplementedError  # subclasses derive it from a learned array


register_loader(".npz", ShallowMethod._load)
