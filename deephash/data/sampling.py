"""Which positions of a split go into which training batch (stateless draws).

Triplets (``TripletSampler``): anchors are uniform over the *valid* anchors, those with at
least one positive (another item sharing a label) and one negative (an item sharing none).
Items that are not valid anchors are never drawn as anchors (they still serve as
positives/negatives); their count is in ``triplet_statistics(split)`` (and logged). Positive
and negative are uniform over the anchor's valid positives / negatives, so no invalid
triplet is ever emitted. Batch ``i`` is a function of ``(seed, i)`` only
(``tf.random.stateless_*`` draws on precomputed label tables).

Labelled batches: epoch ``e`` is the permutation ``epoch_permutation(n, seed, e)`` cut into
``labeled_steps_per_epoch(n, batch_size, drop_remainder)`` batches.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from deephash.data.dataset import Split
from deephash.validation import check_int

# the pipelines' logger: what users filter on did not change when this module was split off
log = logging.getLogger("deephash.data.pipelines")

_SALT_TRIPLET = 0x7219
_SALT_SHUFFLE = 0x5F1E


# --------------------------------------------------------------------------- statistics
def triplet_statistics(split: Split) -> dict[str, int]:
    """Counts of items usable as triplet anchors.

    ``num_items``, ``num_valid_anchors``, ``num_without_positive`` (no other item shares a
    label), ``num_without_negative`` (every other item shares a label) and
    ``num_invalid_anchors`` (either of the two).
    """
    has_pos, has_neg = _anchor_validity(split)
    return {
        "num_items": len(split),
        "num_valid_anchors": int(np.sum(has_pos & has_neg)),
        "num_without_positive": int(np.sum(~has_pos)),
        "num_without_negative": int(np.sum(~has_neg)),
        "num_invalid_anchors": int(np.sum(~(has_pos & has_neg))),
    }


def _anchor_validity(split: Split) -> tuple[np.ndarray, np.ndarray]:
    n = len(split)
    if split.class_ids is not None:
        _, inv, counts = np.unique(split.class_ids, return_inverse=True, return_counts=True)
        c = counts[inv]
        return c > 1, c < n
    groups, inv, weight = np.unique(split.labels, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    g = groups.astype(np.float32)
    shared = np.zeros(len(groups), np.int64)  # items sharing a label with a member of the group
    for s in range(0, len(groups), 2048):
        ov = (g[s : s + 2048] @ g.T) > 0
        shared[s : s + 2048] = ov.astype(np.int64) @ weight
    nonempty = groups.sum(axis=1) > 0
    positives = shared - nonempty  # minus the item itself
    return positives[inv] > 0, (n - shared)[inv] > 0


# --------------------------------------------------------------------------- triplets
class TripletSampler:
    """Stateless sampler of triplet positions within a split.

    ``sample(step)`` -> ``(anchor, positive, negative)`` int64 vectors of ``batch_size``
    positions, a pure function of ``(seed, step)``. Attributes: ``statistics`` (see
    ``triplet_statistics``).
    """

    def __init__(self, split: Split, batch_size: int, seed: int = 0):
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        has_pos, has_neg = _anchor_validity(split)
        valid = np.flatnonzero(has_pos & has_neg)
        self.statistics = triplet_statistics(split)
        if len(valid) == 0:
            raise ValueError(
                f"no item of this split of {len(split)} can anchor a triplet: each needs "
                "another item sharing a label and one sharing none"
            )
        if self.statistics["num_invalid_anchors"]:
            log.warning(
                "triplets: %d of %d items have no valid positive or negative and are never anchors",
                self.statistics["num_invalid_anchors"],
                len(split),
            )
        self.single_label = split.class_ids is not None
        self._valid = tf.constant(valid, tf.int64)
        self._n = len(split)
        if self.single_label:
            self._class_tables(split.class_ids)
        else:
            self._labels = tf.constant(split.labels, tf.float32)

    def _class_tables(self, cls: np.ndarray) -> None:
        """Items sorted by class, and per item its class block (start, count) and its rank
        in it: positives and negatives are then drawn by position arithmetic."""
        n = self._n
        order = np.argsort(cls, kind="stable")
        _, first, counts = np.unique(cls[order], return_index=True, return_counts=True)
        class_pos = np.searchsorted(np.unique(cls), cls)  # dense class number per item
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - np.repeat(first, counts)
        self._order = tf.constant(order, tf.int64)
        self._start = tf.constant(first[class_pos], tf.int64)  # per item: its class block
        self._count = tf.constant(counts[class_pos], tf.int64)
        self._rank = tf.constant(rank, tf.int64)

    def sample(self, step):
        b = self.batch_size
        key = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        key = tf.random.experimental.stateless_fold_in(key, _SALT_TRIPLET)
        k_a, k_p, k_n = tf.unstack(tf.random.experimental.stateless_split(key, 3))
        ia = tf.random.stateless_uniform(
            [b], k_a, minval=0, maxval=tf.size(self._valid, tf.int64), dtype=tf.int64
        )
        a = tf.gather(self._valid, ia)
        if self.single_label:
            p, q = self._single_label_pair(a, k_p, k_n)
        else:
            ya = tf.gather(self._labels, a)
            shares = tf.matmul(ya, self._labels, transpose_b=True) > 0  # (b, n)
            not_self = tf.not_equal(tf.range(self._n, dtype=tf.int64)[None, :], a[:, None])
            p = _uniform_where(k_p, shares & not_self)
            q = _uniform_where(k_n, tf.logical_not(shares))
        return a, p, q

    def _single_label_pair(self, a, k_p, k_n):
        start, count, rank = (
            tf.gather(self._start, a),
            tf.gather(self._count, a),
            tf.gather(self._rank, a),
        )
        r = _uniform_below(k_p, count - 1)
        r = r + tf.cast(r >= rank, tf.int64)
        p = tf.gather(self._order, start + r)
        r = _uniform_below(k_n, self._n - count)
        r = r + count * tf.cast(r >= start, tf.int64)
        q = tf.gather(self._order, r)
        return p, q


def _uniform_below(key, m):
    """Integers uniform in [0, m) (m >= 1 per entry), stateless."""
    u = tf.random.stateless_uniform(tf.shape(m), key, dtype=tf.float64)
    r = tf.cast(tf.floor(u * tf.cast(m, tf.float64)), tf.int64)
    return tf.minimum(r, m - 1)


def _uniform_where(key, mask):
    """Per row, a column uniform among the True entries of ``mask`` (b, n)."""
    u = tf.random.stateless_uniform(tf.shape(mask), key)
    return tf.argmax(tf.where(mask, u, -1.0), axis=1, output_type=tf.int64)


# --------------------------------------------------------------------------- labelled batches
def labeled_steps_per_epoch(num_items: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Steps in one epoch of :func:`labeled_dataset`: ``num_items // batch_size`` with
    ``drop_remainder`` (the last ``num_items % batch_size`` items of each epoch's
    permutation are left out of that epoch), else ``ceil(num_items / batch_size)`` (the last
    batch of each epoch holds the remaining ``num_items % batch_size`` items, if any)."""
    b = check_int(batch_size, "batch_size")
    n = int(num_items)
    return n // b if drop_remainder else -(-n // b)


def epoch_permutation(num_items: int, seed: int, epoch):
    """Order of the items in epoch ``epoch`` of a shuffled :func:`labeled_dataset`: an int64
    permutation ``(num_items,)`` of ``range(num_items)``, a pure function of
    ``(seed, epoch)`` (argsort of stateless uniform float64 draws, so every permutation is
    about equally likely)."""
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, _SALT_SHUFFLE)
    u = tf.random.stateless_uniform([int(num_items)], key, dtype=tf.float64)
    return tf.cast(tf.argsort(u, stable=True), tf.int64)


def labeled_positions(
    n: int, batch_size: int, spe: int, seed: int, shuffle: bool, repeat: bool, start_step: int
):
    """``tf.data.Dataset`` of ``(step, positions (batch_size,))`` from ``start_step``: epoch
    ``e`` holds steps ``e*spe ...`` cut from its permutation; a partial last batch is padded
    with position -1. Infinite with ``repeat``, else ends after epoch 0."""
    b = batch_size
    padded = spe * b  # positions per epoch after padding the partial last batch with -1

    def epoch_batches(epoch):
        order = epoch_permutation(n, seed, epoch) if shuffle else tf.range(n, dtype=tf.int64)
        if padded > n:
            order = tf.concat([order, tf.fill([padded - n], tf.constant(-1, tf.int64))], axis=0)
        else:
            order = order[:padded]
        steps = epoch * spe + tf.range(spe, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((steps, tf.reshape(order, (spe, b))))

    first_epoch = start_step // spe
    if repeat:
        epochs = tf.data.Dataset.counter(first_epoch, dtype=tf.int64)
    else:
        epochs = tf.data.Dataset.range(first_epoch, 1)  # epoch 0, if start_step is in it
    ds = epochs.flat_map(epoch_batches)
    if start_step > first_epoch * spe:
        ds = ds.filter(lambda step, pos: step >= start_step)
    return ds
