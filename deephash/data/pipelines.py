"""tf.data pipelines: triplets (DSRH), labelled batches (pairwise methods such as DSEH) and
ordered image batches (encoding).

Training pipelines are stateless: batch number ``i`` is a function of ``(seed, i)`` only, so
a run resumed at step ``s`` rebuilds exactly the same later batches with ``start_step=s``,
and the global batches are the same under any ``tf.distribute`` strategy. Triplets:
``tf.data.Dataset.counter(start_step)`` mapped through ``tf.random.stateless_*`` draws on
precomputed label tables. Labelled batches: epoch ``e`` is a permutation drawn from
``(seed, e)`` (``epoch_permutation``) cut into batches (no ``Dataset.shuffle``, whose order
under ``strategy.experimental_distribute_dataset`` is not the one-device order). Positions
are drawn first; images are gathered (in-memory sets) or read and decoded (file sets)
afterwards, then preprocessed.

Anchors: uniform over the *valid* anchors, those with at least one positive (another item
sharing a label) and one negative (an item sharing none). Items that are not valid
anchors are never drawn as anchors (they still serve as positives/negatives); their count
is in ``triplet_statistics(split)`` (and logged). Positive and negative are uniform over
the anchor's valid positives / negatives, so no invalid triplet is ever emitted.

Image files that fail to decode raise an error naming the file (``on_corrupt="raise"``), or
with ``on_corrupt="skip"`` are reported once (logged, and listed by ``skipped_files()``):
in triplet batches a triplet holding such a file is replaced by another triplet of the
same batch (the batch keeps its size); labelled batches drop the item.

Decoding paths (``decode=``): ``"python"`` reads each file in a ``tf.py_function`` (the path
that names a bad file; Python per image, GIL-bound); ``"graph"`` reads and decodes in the
graph (``tf.io.read_file`` + ``tf.io.decode_image(channels=3, expand_animations=False)``,
the op ``verify_images`` and the Python path use, so images are bit-identical) — a corrupt
file that verification did not record then fails with TensorFlow's error, which does not
name it; ``"auto"`` (the default) decodes in the graph the files that
``deephash.data.images.verify_images`` recorded and that are unchanged since (size and
modification time), and the others in Python (logged once). Files verification found
corrupt are never decoded: ``on_corrupt="skip"`` treats them as unreadable (listed by
``skipped_files()`` when the pipeline is built), ``"raise"`` fails naming the file when one
is drawn.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from deephash.data.dataset import Split

log = logging.getLogger(__name__)

_SALT_TRIPLET = 0x7219
_SALT_AUGMENT = 0xA06
_SALT_SHUFFLE = 0x5F1E
_SKIPPED: set[str] = set()
_SKIPPED_LOCK = threading.Lock()
_LOGGED: set[str] = set()
DECODE_MODES = ("auto", "python", "graph")


def skipped_files() -> list[str]:
    """Image files skipped so far in this process by pipelines with ``on_corrupt="skip"``."""
    with _SKIPPED_LOCK:
        return sorted(_SKIPPED)


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


# --------------------------------------------------------------------------- sampling
class TripletSampler:
    """Stateless sampler of triplet positions within a split.

    ``sample(step)`` -> ``(anchor, positive, negative)`` int64 vectors of ``batch_size``
    positions, a pure function of ``(seed, step)``. Attributes: ``statistics`` (see
    ``triplet_statistics``).
    """

    def __init__(self, split: Split, batch_size: int, seed: int = 0):
        import tensorflow as tf

        self.batch_size = int(batch_size)
        self.seed = int(seed)
        has_pos, has_neg = _anchor_validity(split)
        valid = np.flatnonzero(has_pos & has_neg)
        self.statistics = triplet_statistics(split)
        if len(valid) == 0:
            raise ValueError(
                f"no item of this split of {len(split)} can anchor a triplet: each needs another item "
                "sharing a label and one sharing none"
            )
        if self.statistics["num_invalid_anchors"]:
            log.warning(
                "triplets: %d of %d items have no valid positive or negative and are never anchors",
                self.statistics["num_invalid_anchors"],
                len(split),
            )
        self.single_label = split.class_ids is not None
        self._valid = tf.constant(valid, tf.int64)
        n = len(split)
        if self.single_label:
            cls = split.class_ids
            order = np.argsort(cls, kind="stable")
            _, first, counts = np.unique(cls[order], return_index=True, return_counts=True)
            class_pos = np.searchsorted(np.unique(cls), cls)  # dense class number per item
            rank = np.empty(n, np.int64)
            rank[order] = np.arange(n) - np.repeat(first, counts)
            self._order = tf.constant(order, tf.int64)
            self._start = tf.constant(
                first[class_pos], tf.int64
            )  # per item: start of its class block
            self._count = tf.constant(counts[class_pos], tf.int64)
            self._rank = tf.constant(rank, tf.int64)
        else:
            self._labels = tf.constant(split.labels, tf.float32)
        self._n = n

    def sample(self, step):
        import tensorflow as tf

        b = self.batch_size
        key = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        key = tf.random.experimental.stateless_fold_in(key, _SALT_TRIPLET)
        k_a, k_p, k_n = tf.unstack(tf.random.experimental.stateless_split(key, 3))
        ia = tf.random.stateless_uniform(
            [b], k_a, minval=0, maxval=tf.size(self._valid, tf.int64), dtype=tf.int64
        )
        a = tf.gather(self._valid, ia)
        if self.single_label:
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
        else:
            ya = tf.gather(self._labels, a)
            shares = tf.matmul(ya, self._labels, transpose_b=True) > 0  # (b, n)
            not_self = tf.not_equal(tf.range(self._n, dtype=tf.int64)[None, :], a[:, None])
            p = _uniform_where(k_p, shares & not_self)
            q = _uniform_where(k_n, tf.logical_not(shares))
        return a, p, q


def _uniform_below(key, m):
    """Integers uniform in [0, m) (m >= 1 per entry), stateless."""
    import tensorflow as tf

    u = tf.random.stateless_uniform(tf.shape(m), key, dtype=tf.float64)
    r = tf.cast(tf.floor(u * tf.cast(m, tf.float64)), tf.int64)
    return tf.minimum(r, m - 1)


def _uniform_where(key, mask):
    """Per row, a column uniform among the True entries of ``mask`` (b, n)."""
    import tensorflow as tf

    u = tf.random.stateless_uniform(tf.shape(mask), key)
    return tf.argmax(tf.where(mask, u, -1.0), axis=1, output_type=tf.int64)


# --------------------------------------------------------------------------- images
def decode_plan(paths, decode: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Which files a pipeline decodes in the graph: ``(graph (n,) bool, corrupt (n,) bool)``.

    ``corrupt``: verification found the file corrupt and it is unchanged since (never
    decoded). ``graph``: decoded by ``tf.io.decode_image`` in the graph (``"auto"``: the
    files verified and unchanged since; ``"graph"``: all; ``"python"``: none); the other
    files are decoded in a ``tf.py_function``.
    """
    return _plan_from_status(_status(paths, _check_decode(decode)), decode)


def _check_decode(decode: str) -> str:
    if decode not in DECODE_MODES:
        raise ValueError(
            f"decode must be one of {', '.join(map(repr, DECODE_MODES))}, got {decode!r}"
        )
    return decode


def _status(paths, decode: str) -> np.ndarray:
    from deephash.data import images

    if decode == "python":
        return np.full(len(paths), images.UNVERIFIED, np.int8)
    return images.verification_status(paths)


def _plan_from_status(status: np.ndarray, decode: str) -> tuple[np.ndarray, np.ndarray]:
    from deephash.data import images

    if decode == "python":
        return np.zeros(len(status), bool), np.zeros(len(status), bool)
    corrupt = status == images.CORRUPT
    graph = np.ones(len(status), bool) if decode == "graph" else status == images.VERIFIED
    return graph & ~corrupt, corrupt


def _log_once(level: int, message: str, *args) -> None:
    key = message % args
    with _SKIPPED_LOCK:
        if key in _LOGGED:
            return
        _LOGGED.add(key)
    log.log(level, message, *args)


class _ImageSource:
    """Gathers images of a split by position: from memory, or by reading files (decoded in
    the graph or in Python per file, see ``decode_plan``)."""

    def __init__(
        self,
        split_or_images: Any,
        preprocess=None,
        image_size=(224, 224),
        on_corrupt: str = "raise",
        decode: str = "auto",
    ):
        import tensorflow as tf

        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        _check_decode(decode)
        self.on_corrupt = on_corrupt
        self.preprocess = preprocess
        if isinstance(split_or_images, Split):
            images, paths = split_or_images.images, split_or_images.paths
        else:
            images, paths = np.asarray(split_or_images, dtype=np.float32), None
            if images.ndim != 4:
                raise ValueError(f"images must be a batch (n, h, w, ch), got shape {images.shape}")
        if images is not None:
            self._images = tf.constant(images, tf.float32)
            self._paths = None
            self.item_shape = tuple(images.shape[1:])
            self.n = len(images)
        else:
            self._images = None
            self._paths = tf.constant(paths)
            self.n = len(paths)
            size = getattr(preprocess, "prepare_size", None) or (
                None
                if getattr(preprocess, "input_shape", None) is None
                else preprocess.input_shape[:2]
            )
            self.size = tuple(int(s) for s in (size or image_size))
            self._has_prepare = size is not None and hasattr(preprocess, "prepare_image")
            self.item_shape = self.size + (3,)
            self._plan(paths, decode)

    def _plan(self, paths: np.ndarray, decode: str) -> None:
        import tensorflow as tf

        from deephash.data import images

        status = _status(paths, decode)
        graph, corrupt = _plan_from_status(status, decode)
        python = ~graph & ~corrupt
        self._mixed = bool(python.any()) and bool((graph | corrupt).any())
        self._all_python = bool(python.all())
        self._python = tf.constant(python) if self._mixed else None
        self._corrupt = tf.constant(corrupt) if corrupt.any() else None
        if decode == "auto" and python.any():
            changed = int(np.sum(status == images.CHANGED))
            first = paths[np.flatnonzero(python)[0]]
            if changed or self._mixed:
                _log_once(
                    logging.WARNING,
                    "decoding %d of %d image files in Python (slower): %d changed since "
                    "verification, %d never verified (e.g. %s); data.verify_images(paths) records them for "
                    "graph-only decoding",
                    int(python.sum()),
                    len(paths),
                    changed,
                    int(python.sum()) - changed,
                    first,
                )
            else:
                _log_once(
                    logging.INFO,
                    "decoding the %d image files in Python (slower): they are not verified "
                    "(e.g. %s); data.verify_images(paths) records them for graph-only decoding",
                    len(paths),
                    first,
                )
        if corrupt.any() and self.on_corrupt == "skip":
            bad = sorted(set(paths[corrupt].tolist()))
            with _SKIPPED_LOCK:
                new = [p for p in bad if p not in _SKIPPED]
                _SKIPPED.update(bad)
            if new:
                log.warning(
                    "skipping %d image file(s) that verification found corrupt: %s",
                    len(new),
                    ", ".join(repr(p) for p in new[:10])
                    + (f" and {len(new) - 10} more" if len(new) > 10 else ""),
                )

    @property
    def from_files(self) -> bool:
        return self._paths is not None

    def gather(self, positions):
        """In-memory sets: ``(images (k, h, w, ch) float32 in [0, 255], ok (k,) bool)``."""
        import tensorflow as tf

        return tf.gather(self._images, positions), tf.ones(tf.shape(positions), tf.bool)

    def read_one(self, position):
        """File sets: read and decode one file (in the graph, or eagerly in Python to name a
        bad file) and bring it to its fixed size (in the graph). ``(image (h, w, 3) float32, ok bool)``."""
        import tensorflow as tf

        path = tf.gather(self._paths, position)
        if self._all_python:
            image, ok = self._read_python(path)
        elif self._mixed:
            image, ok = tf.cond(
                tf.gather(self._python, position),
                lambda: self._read_python(path),
                lambda: self._read_graph(path, position),
            )
        else:
            image, ok = self._read_graph(path, position)
        image.set_shape((None, None, 3))
        if self._has_prepare:
            out = self.preprocess.prepare_image(image)
        else:
            out = tf.image.resize(tf.cast(image, tf.float32), self.size)
        return tf.ensure_shape(out, self.item_shape), ok

    def _read_python(self, path):
        import tensorflow as tf

        image, ok = tf.py_function(self._decode, [path], [tf.uint8, tf.bool])
        image.set_shape((None, None, 3))
        ok.set_shape(())
        return image, ok

    def _read_graph(self, path, position):
        import tensorflow as tf

        def decode():
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image.set_shape((None, None, 3))
            return image, tf.constant(True)

        if self._corrupt is None:
            return decode()
        bad = tf.gather(self._corrupt, position)
        if self.on_corrupt == "raise":
            check = tf.debugging.Assert(
                tf.logical_not(bad),
                ["corrupt or unreadable image file (found corrupt by verify_images):", path],
            )
            with tf.control_dependencies([check]):
                return decode()
        return tf.cond(bad, lambda: (tf.zeros((1, 1, 3), tf.uint8), tf.constant(False)), decode)

    def _decode(self, path):
        from deephash.data.images import CorruptImageError, decode_file

        path = path.numpy().decode()
        try:
            return decode_file(path, channels=3), True
        except (CorruptImageError, FileNotFoundError) as e:
            if self.on_corrupt == "raise":
                raise
            with _SKIPPED_LOCK:
                new = path not in _SKIPPED
                _SKIPPED.add(path)
            if new:
                log.warning("skipping unreadable image: %s", e)
            return np.zeros((1, 1, 3), np.uint8), False


def _apply(preprocess, images, training: bool, seed):
    import tensorflow as tf

    if preprocess is not None:
        out = preprocess(images, training=training, seed=seed)
    elif training:
        from deephash.data.preprocessing import _random_flip

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
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


def _options(ds, deterministic: bool = True):
    import tensorflow as tf

    opts = tf.data.Options()
    opts.deterministic = deterministic
    return shard_global_batches(ds.with_options(opts))


def _aug_key(seed: int, step, salt: int):
    import tensorflow as tf

    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(step, tf.int64)])
    return tf.random.experimental.stateless_fold_in(key, salt)


def _check_batch(batch_size) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# --------------------------------------------------------------------------- pipelines
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
):
    """Infinite ``tf.data.Dataset`` of ``((anchor, positive, negative), (y_a, y_p, y_n))``.

    Images float32 after ``preprocess`` (``(b, h, w, ch)``; raw [0, 255] without one),
    labels float32 multi-hot ``(b, c)``. Batch ``i`` (counting from ``start_step``) depends
    only on ``(seed, i)``. One epoch is ``len(split) // batch_size`` steps by convention.
    ``image_size``: size file images are resized to when ``preprocess`` gives none.
    ``decode``: ``"auto"``, ``"python"`` or ``"graph"`` (module docstring); the batches do
    not depend on it. ``batch_size`` is the global batch (use with
    ``strategy.experimental_distribute_dataset``).
    """
    import tensorflow as tf

    b = _check_batch(batch_size)
    sampler = TripletSampler(split, b, seed)
    source = _ImageSource(split, preprocess, image_size, on_corrupt, decode)
    labels = tf.constant(split.labels, tf.float32)

    def sample(step):
        a, p, q = sampler.sample(step)
        return step, tf.concat([a, p, q], axis=0)

    def finish(step, positions, images, ok):
        if on_corrupt == "skip":
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
            images, positions = tf.gather(images, take), tf.gather(positions, take)
        images = _apply(
            preprocess, images, augment, _aug_key(seed, step, _SALT_AUGMENT) if augment else None
        )
        y = tf.gather(labels, positions)
        xa, xp, xn = tf.split(images, 3, axis=0)
        ya, yp, yn = tf.split(y, 3, axis=0)
        return (xa, xp, xn), (ya, yp, yn)

    ds = tf.data.Dataset.counter(int(start_step), dtype=tf.int64)
    ds = ds.map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    if source.from_files:  # decode item by item (in parallel), then re-batch
        ds = ds.map(lambda step, pos: (tf.fill(tf.shape(pos), step), pos)).unbatch()
        ds = ds.map(
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


def labeled_steps_per_epoch(num_items: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Steps in one epoch of :func:`labeled_dataset`: ``num_items // batch_size`` with
    ``drop_remainder`` (the last ``num_items % batch_size`` items of each epoch's
    permutation are left out of that epoch), else ``ceil(num_items / batch_size)`` (the last
    batch of each epoch holds the remaining ``num_items % batch_size`` items, if any)."""
    b = _check_batch(batch_size)
    n = int(num_items)
    return n // b if drop_remainder else -(-n // b)


def epoch_permutation(num_items: int, seed: int, epoch):
    """Order of the items in epoch ``epoch`` of a shuffled :func:`labeled_dataset`: an int64
    permutation ``(num_items,)`` of ``range(num_items)``, a pure function of ``(seed, epoch)`` (argsort of
    stateless uniform float64 draws, so every permutation is about equally likely)."""
    import tensorflow as tf

    key = tf.stack([tf.constant(int(seed), tf.int64), tf.cast(epoch, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, _SALT_SHUFFLE)
    u = tf.random.stateless_uniform([int(num_items)], key, dtype=tf.float64)
    return tf.cast(tf.argsort(u, stable=True), tf.int64)


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
    batch. ``decode``: how files are decoded (``"auto"``, ``"python"``, ``"graph"``; module
    docstring), which does not change the batches. ``batch_size`` is the global batch (use
    with ``strategy.experimental_distribute_dataset``): the order does not depend on the strategy.
    """
    import tensorflow as tf

    b = _check_batch(batch_size)
    if (
        isinstance(start_step, bool)
        or not isinstance(start_step, (int, np.integer))
        or start_step < 0
    ):
        raise ValueError(f"start_step must be a non-negative integer, got {start_step!r}")
    start_step = int(start_step)
    source = _ImageSource(split, preprocess, image_size, on_corrupt, decode)
    labels = tf.constant(split.labels, tf.float32)
    n = len(split)
    if n == 0:
        raise ValueError("labeled_dataset: the split is empty")
    spe = labeled_steps_per_epoch(n, b, drop_remainder)
    if spe == 0:
        raise ValueError(
            f"labeled_dataset: batch_size {b} is larger than the split ({n} items) and "
            "drop_remainder=True leaves no batch; use a smaller batch or drop_remainder=False"
        )
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

    def finish(step, positions, images, ok):
        images = _apply(
            preprocess, images, augment, _aug_key(seed, step, _SALT_AUGMENT) if augment else None
        )
        y = tf.gather(labels, positions)
        if source.from_files and on_corrupt == "skip":
            images, y = tf.boolean_mask(images, ok), tf.boolean_mask(y, ok)
        return images, y

    if source.from_files:  # decode item by item (in parallel), then re-batch; padding is not read

        def read(step, pos):
            valid = pos >= 0
            image, ok = tf.cond(
                valid,
                lambda: source.read_one(pos),
                lambda: (tf.zeros(source.item_shape, tf.float32), tf.constant(False)),
            )
            return step, pos, image, ok, valid

        def regroup(steps, pos, images, ok, valid):
            if padded > n:
                pos, images, ok = (tf.boolean_mask(t, valid) for t in (pos, images, ok))
            return finish(steps[0], pos, images, ok)

        ds = ds.map(lambda step, pos: (tf.fill(tf.shape(pos), step), pos)).unbatch()
        ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(b, drop_remainder=True)
        ds = ds.map(regroup, num_parallel_calls=tf.data.AUTOTUNE)
    else:

        def gather(step, pos):
            if padded > n:
                pos = tf.boolean_mask(pos, pos >= 0)
            return finish(step, pos, *source.gather(pos))

        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return _options(ds.prefetch(tf.data.AUTOTUNE))


def image_dataset(
    split_or_images: Any,
    batch_size: int,
    preprocess=None,
    image_size: tuple[int, int] = (224, 224),
    decode: str = "auto",
):
    """Image batches in order (for encoding): a ``Split`` or an array ``(n, h, w, ch)`` in
    [0, 255]; the last batch may be smaller. Unreadable files raise an error naming them
    (except unverified files with ``decode="graph"``; see the module docstring)."""
    import tensorflow as tf

    b = _check_batch(batch_size)
    source = _ImageSource(split_or_images, preprocess, image_size, "raise", decode)
    ds = tf.data.Dataset.range(source.n)
    if source.from_files:
        ds = ds.map(lambda pos: source.read_one(pos)[0], num_parallel_calls=tf.data.AUTOTUNE).batch(
            b
        )
    else:
        ds = ds.batch(b).map(lambda pos: source.gather(pos)[0])
    ds = ds.map(
        lambda images: _apply(preprocess, images, False, None), num_parallel_calls=tf.data.AUTOTUNE
    )
    return _options(ds.prefetch(tf.data.AUTOTUNE))
