"""Helpers shared by the test modules (imported as ``from _helpers import ...``; pytest puts
``tests/`` on ``sys.path`` since it has no ``__init__.py``)."""
import keras


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
