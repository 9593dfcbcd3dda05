"""Helpers shared by the test modules (imported as ``from _helpers import ...``; pytest puts
``tests/`` on ``sys.path`` since it has no ``__init__.py``)."""

import contextlib
import importlib.util

import keras


def approx_history(history, **tolerance):
    """``history`` (``{metric: [value per epoch]}``) for an approximate ``==``: one
    ``pytest.approx`` per list (pytest >= 9 rejects ``approx`` of a dict of lists), and the
    metric names must match exactly."""
    import pytest

    return {k: pytest.approx(list(v), **tolerance) for k, v in history.items()}


class Interrupt(Exception):
    """Raised by :class:`StopAt` to simulate a training run that dies."""


class StopAt(keras.callbacks.Callback):
    """Raise :class:`Interrupt` once the optimiser has taken ``step`` steps."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Interrupt


@contextlib.contextmanager
def script_module(path, name):
    """Import the experiment script at ``path`` as module ``name`` for the duration of the
    block, then unregister the absl flags it defined (scripts define flags at import time,
    and several scripts share flag names such as ``--dataset``)."""
    from absl import flags

    before = set(flags.FLAGS)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        for flag in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, flag)
