"""Shared plumbing of the triplet-trained methods (DSRH/DRH/DRH+, NINH).

Both end in a sigmoid layer named ``codes`` (relaxed codes in [0, 1]) over a layer of
pre-activations named by ``LOGITS_LAYER`` (bit = pre-activation > 0, i.e. sigmoid > 0.5),
and train on triplets ``((a, p, n), (y_a, y_p, y_n))`` from ``data.triplet_dataset``.
"""

from __future__ import annotations

import keras

from deephash import training
from deephash.methods.keras_method import KerasHashingMethod


class TripletHashingMethod(KerasHashingMethod):
    """Base class; subclasses set ``LOGITS_LAYER`` and implement ``train_step``."""

    LOGITS_LAYER = ""
    code_threshold = 0.0  # on the pre-activations of LOGITS_LAYER

    def hash_model(self) -> keras.Model:
        """Preprocessed images -> relaxed codes (sigmoid outputs) in [0, 1], ``(b, bits)``."""
        return self.layer_model("codes", "hash")

    def code_logits_model(self) -> keras.Model:
        """Preprocessed images -> the pre-activations of the codes; bit = output > 0."""
        return self.layer_model(self.LOGITS_LAYER, "hash_logits")

    def train_dataset(self, split, config: training.TrainConfig, start_step: int = 0):
        """Triplets ``((a, p, n), (y_a, y_p, y_n))`` of ``config.batch_size`` (global)."""
        from deephash import data

        return data.triplet_dataset(
            split,
            config.batch_size,
            seed=config.seed,
            preprocess=self.preprocessor(),
            augment=self.augment,
            start_step=start_step,
        )


__all__ = ["TripletHashingMethod"]
