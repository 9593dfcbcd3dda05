"""Backbones: functional ``keras.Model``s mapping an image batch to a feature matrix ``(b, d)``.

Select one by name with :func:`get`; :func:`available` lists the names. ``vgg19`` and
``small_cnn`` below are the builder functions (their modules stay importable as
``deephash.backbones.vgg19`` / ``.small_cnn`` through ``from ... import``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Sequence

import keras

from deephash.backbones.small_cnn import small_cnn
from deephash.backbones.vgg19 import load_vgg19_weights, save_vgg19_weights, vgg19

# name -> (module, builder function); modules are imported when the backbone is requested.
_BUILDERS = {
    "small_cnn": ("deephash.backbones.small_cnn", "small_cnn"),
    "vgg19": ("deephash.backbones.vgg19", "vgg19"),
    "cnn_f": ("deephash.backbones.cnn_f", "cnn_f"),
}
_PRETRAINED = {"vgg19", "cnn_f"}


def available() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_BUILDERS)


def get(
    name: str,
    input_shape: Sequence[int] | None = None,
    weights: str | os.PathLike | None = None,
    **kwargs: Any,
) -> keras.Model:
    """Build the backbone called ``name``.

    Args:
        name: one of :func:`available` (case-insensitive).
        input_shape: ``(h, w, channels)``; ``None`` uses the backbone's default (224x224x3
            for ``vgg19`` and ``cnn_f``); ``small_cnn`` has no default and needs it.
        weights: ``"imagenet"`` for the published ImageNet weights (downloaded once,
            verified and cached: see :mod:`deephash.backbones.pretrained`), the local path
            of a pretrained weights file (``vgg19``: the Keras applications ``.h5``;
            ``cnn_f``: MatConvNet ``imagenet-vgg-f.mat``), or ``None`` for random
            initialisation (logged as a warning by the pretrained backbones).
            ``small_cnn`` has no pretrained weights.
        **kwargs: passed to the builder (e.g. ``fc_units``, ``dropout``, ``features``).
    """
    key = str(name).lower()
    if key not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(available())}")
    module_name, function_name = _BUILDERS[key]
    try:
        builder = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"backbone {key!r} is unavailable: could not import {module_name}.{function_name} ({e})"
        ) from e
    if key in _PRETRAINED:
        from deephash.backbones.pretrained import resolve

        if input_shape is not None:
            kwargs["input_shape"] = input_shape
        return builder(weights=resolve(key, weights), **kwargs)
    if weights is not None:
        raise ValueError(f"backbone {key!r} has no pretrained weights; pass weights=None")
    if input_shape is None:
        raise ValueError(f"backbone {key!r} needs input_shape=(height, width, channels)")
    return builder(input_shape, **kwargs)


__all__ = ["available", "get", "load_vgg19_weights", "save_vgg19_weights", "small_cnn", "vgg19"]
