"""tf.data pipelines: triplets (DSRH), labelled batches (pairwise methods such as DSEH) and
ordered image batches (encoding).

Training pipelines are stateless: batch number ``i`` is a function of ``(seed, i)`` only, so
a run resumed at step ``s`` rebuilds exactly the same later batches with ``start_step=s``,
and the global batches are the same under any ``tf.distribute`` strategy. Triplets:
``tf.data.Dataset.counter(start_step)`` mapped through ``tf.random.stateless_*`` draws on
precomputed label tables. Labelled batches: epoch ``e`` is a permutation drawn from
``(seed, e)`` (``epoch_permutation``) cut into batches (no ``Dataset.shuffle``, whose order
under ``strategy.experimental_distribute_dataset`` is not the one-device order). Positions
are drawn first (``deephash.data.sampling``: which items, and the anchor rules of
triplets); images are gathered (in-memory sets) or read and decoded (file sets;
``deephash.data.image_source``: decoding paths ``decode=``, corrupt files) afterwards, then
preprocessed.

Image files that fail to decode raise an error naming the file (``on_corrupt="raise"``), or
with ``on_corrupt="skip"`` are reported once (logged, and listed by ``skipped_files()``):
in triplet batches a triplet holding such a file is replaced by another triplet of the
same batch (the batch keeps its size); labelled batches drop the item.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from deephash.data.dataset import Split
from deephash.data.image_source import (  # noqa: F401  (re-exported)
    DECODE_MODES,
    FileReport,
    ImageSource,
    decode_plan,
    default_report,
)
from deephash.data.preprocessing import _random_flip
from deephash.data.sampling import (  # noqa: F401  (re-exported)
    TripletSampler,
    epoch_permutation,
    labeled_positions,
    labeled_steps_per_epoch,
    triplet_statistics,
)
from deephash.validation import check_int

_SALT_AUGMENT = 0xA06


def skipped_files() -> list[str]:
    """Image files skipped so far in this process by pipelines with ``on_corrupt="skip"``."""
    return default_report().skipped()


# --------------------------------------------------------------------------- shared steps
def _apply(preprocess, images, training: bool, seed):
    if preprocess is not None:
        out = preprocess(images, training=training, seed=seed)
    elif training:
        out = _random_flip(images, seed)
    else:
        out = images
    shape = getattr(preprocess, "input_shape", None)
    if shape is not None and None not in shape:
        out = tf.ensure_shape(out, (images.shape[0],) + tuple(shape))
    return out


def shard_global_batches(ds):
    """``ds`` (a stream of GLOBAL batches, the same in every process) with the auto-shard
    policy ``DATA``: under ``MultiWorkerMirroredStrategy``, ``experimental_distribute_dataset``
    cuts every global batch into per-replica slices and each worker keeps its replicas'
    slices, so the replicas together see exactly one device's global batch. Stated rather
    than left to the default ``AUTO``, which tries FILE sharding first (workers reading
    different files would see different batches) and only falls back to DATA because these
    pipelines have no file-reader source. No effect on one machine (the default and
    mirrored strategies do not auto-shard)."""
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


def _options(ds, deterministic: bool = True):
    opts = tf.data.Options()
    opts.deterministic = deterministic
    return shard_global_batches(ds.with_options(opts))


def _aug_key(seed: int, step, salt: int):
    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step, tf.int64)])
    return tf.random.experimental.stateless_fold_in(key, salt)


def _augment_key(seed: int, step, augment: bool):
    return _aug_key(seed, step, _SALT_AUGMENT) if augment else None


def _per_item(ds):
    """``(step, positions (k,))`` batches -> one ``(step, position)`` element per item (to
    decode files item by item, in parallel, before re-batching)."""
    return ds.map(lambda step, pos: (tf.fill(tf.shape(pos), step), pos)).unbatch()


# --------------------------------------------------------------------------- triplets
def _keep_readable_triplets(images, positions, ok, b: int):
    """Triplets holding an unreadable image replaced by the first readable triplet of the
    batch (``3b`` rows: anchors, positives, negatives); fails if there is none."""
    valid = tf.reduce_all(tf.reshape(ok, (3, b)), axis=0)
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    check = tf.debugging.assert_equal(
        tf.reduce_any(valid),
        True,
        message="every triplet of a batch holds an unreadable image",
    )
    with tf.control_dependencies([check]):
        rows = tf.where(valid, tf.range(b), first)
    take = tf.concat([rows, rows + b, rows + 2 * b], axis=0)
    return tf.gather(images, take), tf.gather(positions, take)


def triplet_dataset(
    split: Split,
    batch_size: int,
    seed: int = 0,
    preprocess=None,
    augment: bool = False,
    start_step: int = 0,
    on_corrupt: str = "raise",
    image_size: tuple[int, int] = (224, 224),
    decode: str = "auto",
    *,
    report: FileReport | None = None,
):
    """Infinite ``tf.data.Dataset`` of ``((anchor, positive, negative), (y_a, y_p, y_n))``.

    Images float32 after ``preprocess`` (``(b, h, w, ch)``; raw [0, 255] without one),
    labels float32 multi-hot ``(b, c)``. Batch ``i`` (counting from ``start_step``) depends
    only on ``(seed, i)``. One epoch is ``len(split) // batch_size`` steps by convention.
    ``image_size``: size file images are resized to when ``preprocess`` gives none.
    ``decode``: ``"auto"``, ``"python"`` or ``"graph"`` (``deephash.data.image_source``);
    the batches do not depend on it. ``batch_size`` is the global batch (use with
    ``strategy.experimental_distribute_dataset``). ``report``: where skipped files and
    messages logged once go (the process's, listed by ``skipped_files()``, by default).
    """
    b = check_int(batch_size, "batch_size")
    sampler = TripletSampler(split, b, seed)
    source = ImageSource(split, preprocess, image_size, on_corrupt, decode, report)
    labels = tf.constant(split.labels, tf.float32)

    def sample(step):
        a, p, q = sampler.sample(step)
        return step, tf.concat([a, p, q], axis=0)

    def finish(step, positions, images, ok):
        if on_corrupt == "skip":
            images, positions = _keep_readable_triplets(images, positions, ok, b)
        images = _apply(preprocess, images, augment, _augment_key(seed, step, augment))
        y = tf.gather(labels, positions)
        xa, xp, xn = tf.split(images, 3, axis=0)
        ya, yp, yn = tf.split(y, 3, axis=0)
        return (xa, xp, xn), (ya, yp, yn)

    ds = tf.data.Dataset.counter(int(start_step), dtype=tf.int64)
    ds = ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    if source.from_files:  # decode item by item (in parallel), then re-batch
        ds = _per_item(ds).map(
            lambda step, pos: (step, pos) + source.read_one(pos),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        ds = ds.batch(3 * b, drop_remainder=True)
        ds = ds.map(
            lambda steps, pos, images, ok: finish(steps[0], pos, images, ok),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda step, pos: finish(step, pos, *source.gather(pos)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _options(ds.prefetch(tf.data.AUTOTUNE))


# --------------------------------------------------------------------------- labelled batches
def _check_labeled(n: int, b: int, drop_remainder: bool) -> int:
    """Steps per epoch, or ValueError for an empty split or no batch at all."""
    if n == 0:
        raise ValueError("labeled_dataset: the split is empty")
    spe = labeled_steps_per_epoch(n, b, drop_remainder)
    if spe == 0:
        raise ValueError(
            f"labeled_dataset: batch_size {b} is larger than the split ({n} items) and "
            "drop_remainder=True leaves no batch; use a smaller batch or drop_remainder=False"
        )
    return spe


def _read_labeled_files(ds, source: ImageSource, b: int, padded: bool, finish):
    """File sets: decode item by item (in parallel), then re-batch; padding is not read."""

    def read(step, pos):
        valid = pos >= 0
        image, ok = tf.cond(
            valid,
            lambda: source.read_one(pos),
            lambda: (tf.zeros(source.item_shape, tf.float32), tf.constant(False)),
        )
        return step, pos, image, ok, valid

    def regroup(steps, pos, images, ok, valid):
        if padded:
            pos, images, ok = (tf.boolean_mask(t, valid) for t in (pos, images, ok))
        return finish(steps[0], pos, images, ok)

    ds = _per_item(ds).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(b, drop_remainder=True)
    return ds.map(regroup, num_parallel_calls=tf.data.AUTOTUNE)


def _gather_labeled(ds, source: ImageSource, padded: bool, finish):
    """In-memory sets: gather each batch's images; padding positions are dropped."""

    def gather(step, pos):
        if padded:
            pos = tf.boolean_mask(pos, pos >= 0)
        return finish(step, pos, *source.gather(pos))

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def labeled_dataset(
    split: Split,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    repeat: bool = False,
    preprocess=None,
    augment: bool = False,
    drop_remainder: bool = False,
    on_corrupt: str = "raise",
    image_size: tuple[int, int] = (224, 224),
    start_step: int = 0,
    decode: str = "auto",
    *,
    report: FileReport | None = None,
):
    """Batches ``(images, labels)`` (labels float32 multi-hot ``(b, c)``) for pairwise methods.

    Stateless, like :func:`triplet_dataset`: the stream is a sequence of steps ``0, 1, ...``;
    with ``spe = labeled_steps_per_epoch(len(split), batch_size, drop_remainder)`` step ``i``
    belongs to epoch ``e = i // spe`` and is batch ``j = i % spe`` of it, i.e. items
    ``perm_e[j*b : (j+1)*b]`` where ``perm_e = epoch_permutation(len(split), seed, e)``
    (``shuffle=True``) or ``range(len(split))`` (``shuffle=False``). A batch never spans two
    epochs: without ``drop_remainder`` the last batch of every epoch is partial
    (``len(split) % b`` items) and every item is seen exactly once per epoch; with it every
    batch is full and each epoch leaves out the last ``len(split) % b`` items of its
    permutation (different ones each epoch when shuffled).

    The dataset starts at step ``start_step`` (to resume: the same later batches as skipping
    ``start_step`` batches) and is infinite with ``repeat``; without, it ends at the end of
    epoch 0 (iterating it again gives the same order). Augmentation of step ``i`` is keyed
    by ``(seed, i)``. With ``on_corrupt="skip"`` unreadable files are dropped from their
    batch. ``decode``: how files are decoded (``"auto"``, ``"python"``, ``"graph"``;
    ``deephash.data.image_source``), which does not change the batches. ``batch_size`` is
    the global batch (use with ``strategy.experimental_distribute_dataset``): the order does
    not depend on the strategy. ``report`` as in :func:`triplet_dataset`.
    """
    b = check_int(batch_size, "batch_size")
    start_step = check_int(start_step, "start_step", minimum=0)
    source = ImageSource(split, preprocess, image_size, on_corrupt, decode, report)
    labels = tf.constant(split.labels, tf.float32)
    n = len(split)
    spe = _check_labeled(n, b, drop_remainder)
    padded = spe * b > n  # the partial last batch of each epoch is padded with -1
    ds = labeled_positions(n, b, spe, seed, shuffle, repeat, start_step)

    def finish(step, positions, images, ok):
        images = _apply(preprocess, images, augment, _augment_key(seed, step, augment))
        y = tf.gather(labels, positions)
        if source.from_files and on_corrupt == "skip":
            images, y = tf.boolean_mask(images, ok), tf.boolean_mask(y, ok)
        return images, y

    if source.from_files:
        ds = _read_labeled_files(ds, source, b, padded, finish)
    else:
        ds = _gather_labeled(ds, source, padded, finish)
    return _options(ds.prefetch(tf.data.AUTOTUNE))


# --------------------------------------------------------------------------- encoding
def image_dataset(
    split_or_images: Any,
    batch_size: int,
    preprocess=None,
    image_size: tuple[int, int] = (224, 224),
    decode: str = "auto",
    *,
    report: FileReport | None = None,
):
    """Image batches in order (for encoding): a ``Split`` or an array ``(n, h, w, ch)`` in
    [0, 255]; the last batch may be smaller. Unreadable files raise an error naming them
    (except unverified files with ``decode="graph"``; see ``deephash.data.image_source``)."""
    b = check_int(batch_size, "batch_size")
    source = ImageSource(split_or_images, preprocess, image_size, "raise", decode, report)
    ds = tf.data.Dataset.range(source.n)
    if source.from_files:
        ds = ds.map(lambda pos: source.read_one(pos)[0], num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(b)
    else:
        ds = ds.batch(b).map(lambda pos: source.gather(pos)[0])
    ds = ds.map(
        lambda images: _apply(preprocess, images, False, None), num_parallel_calls=tf.data.AUTOTUNE
    )
    return _options(ds.prefetch(tf.data.AUTOTUNE))
