"""Embedded data sets built from scikit-learn's handwritten digits (offline, no download).

* ``digits``: the 1,797 8x8 images, 10 classes, single label. Protocol: 20 queries and
  50 training images per class; the database is everything but the queries.
* ``digits_multi``: 16x16 canvases of 2x2 cells, each holding one to three real digit
  images of distinct classes (the other cells blank); the label is the set of digits
  present, so that about a third of random pairs share a label. The source digit images
  are first split (20% per class) into a query pool and a database pool, so no query
  shares a source image with a training (or database) image.

Images are float32 in [0, 255] (sklearn's 0..16 values times 255/16).
"""

from __future__ import annotations

import os

import numpy as np

from deephash.data.dataset import Dataset, Protocol, assemble
from deephash.data.splits import cache_dir, load_or_create, seeded_split, verify_split

DIGIT_NAMES = tuple(str(d) for d in range(10))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    return images, bunch.target.astype(np.int64)


def _split_dir(name: str, root: str | None, seed: int, split_dir: str | None) -> str:
    if split_dir is not None:
        return os.path.expanduser(split_dir)
    if root and not os.path.isdir(os.path.expanduser(root)):  # never create a mistyped root
        raise FileNotFoundError(
            f"{name}: root directory {root!r} does not exist ({name} is embedded and needs no "
            "root; a root only says where to keep its split files)"
        )
    base = os.path.join(os.path.expanduser(root), "deephash_splits") if root else cache_dir()
    return os.path.join(base, name, f"seed{int(seed)}")


def load_digits(
    root: str | None = None,
    seed: int = 0,
    *,
    query_per_class: int = 20,
    train_per_class: int = 50,
    split_dir: str | None = None,
) -> Dataset:
    """The sklearn digits under the protocol above (split files under ``root`` or the cache)."""
    images, class_ids = _digits()
    labels = np.eye(10, dtype=np.uint8)[class_ids]
    params = dict(
        dataset="digits",
        seed=int(seed),
        num_items=len(labels),
        query_per_class=int(query_per_class),
        train_per_class=int(train_per_class),
    )
    directory = _split_dir("digits", root, seed, split_dir)
    q, t, d, checksum, directory = seeded_split(
        directory,
        labels,
        seed,
        params,
        query_per_class=query_per_class,
        train_per_class=train_per_class,
    )
    protocol = Protocol(
        num_classes=10,
        multilabel=False,
        map_depth=None,
        class_names=DIGIT_NAMES,
        description=f"sklearn digits: {query_per_class} queries/class, "
        f"{train_per_class} train/class, database = all non-queries, mAP over the whole database",
    )
    return assemble(
        "digits",
        protocol,
        labels,
        q,
        t,
        d,
        checksum,
        images=images,
        class_ids=class_ids,
        root=root,
        split_dir=directory,
    )


def make_digits_multi(
    seed: int, num_images: int = 3000, num_query: int = 250, query_source_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``(images (n,16,16,1), labels (n,10), sources (n,4))`` deterministically.

    Canvases ``[0, num_query)`` use only the query pool of source digits, the others only
    the database pool. ``sources[i, cell]`` is the sklearn index placed in ``cell`` (row-major
    2x2) or -1 for a blank cell.
    """
    digits, classes = _digits()
    rng = np.random.default_rng([int(seed), 0xD161])
    query_pool, db_pool = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(classes == c))
        k = int(round(query_source_fraction * len(members)))
        query_pool.append(members[:k])
        db_pool.append(members[k:])
    images = np.zeros((num_images, 16, 16, 1), np.float32)
    labels = np.zeros((num_images, 10), np.uint8)
    sources = np.full((num_images, 4), -1, np.int64)
    for i in range(num_images):
        pools = query_pool if i < num_query else db_pool
        k = int(rng.integers(1, 4))
        for c, cell in zip(
            rng.choice(10, size=k, replace=False), rng.choice(4, size=k, replace=False)
        ):
            src = int(rng.choice(pools[c]))
            r, col = divmod(int(cell), 2)
            images[i, 8 * r : 8 * r + 8, 8 * col : 8 * col + 8] = digits[src]
            labels[i, c] = 1
            sources[i, cell] = src
    return images, labels, sources


def load_digits_multi(
    root: str | None = None,
    seed: int = 0,
    *,
    num_images: int = 3000,
    num_query: int = 250,
    num_train: int = 1000,
    split_dir: str | None = None,
) -> Dataset:
    """The multi-label digit canvases: ``num_query`` queries, ``num_train`` training images
    drawn from the database, database = all non-queries; mAP over the whole database."""
    if not 0 < num_query < num_images or not 0 < num_train <= num_images - num_query:
        raise ValueError(
            "digits_multi: need 0 < num_query < num_images and "
            "0 < num_train <= num_images - num_query"
        )
    images, labels, sources = make_digits_multi(seed, num_images, num_query)
    params = dict(
        dataset="digits_multi",
        seed=int(seed),
        num_items=int(num_images),
        num_query=int(num_query),
        num_train=int(num_train),
    )

    def make():
        rng = np.random.default_rng([int(seed), 0xD162])
        database = np.arange(num_query, num_images, dtype=np.int64)
        train = np.sort(rng.permutation(database)[:num_train])
        return np.arange(num_query, dtype=np.int64), train, database

    directory = _split_dir("digits_multi", root, seed, split_dir)
    q, t, d, checksum, directory = load_or_create(directory, make, params)
    verify_split(q, t, d, num_images, num_query=num_query, num_train=num_train, where=directory)
    shared = np.intersect1d(sources[q][sources[q] >= 0], sources[t][sources[t] >= 0])
    if shared.size:
        raise ValueError(
            f"{directory}: {shared.size} source digit images appear in both queries and training"
        )
    protocol = Protocol(
        num_classes=10,
        multilabel=True,
        map_depth=None,
        class_names=DIGIT_NAMES,
        description=f"digit canvases (2x2 cells, 1-3 digits): {num_query} queries, "
        f"{num_train} train, database = all non-queries; queries built from held-out source "
        "digits",
    )
    return assemble(
        "digits_multi",
        protocol,
        labels,
        q,
        t,
        d,
        checksum,
        images=images,
        root=root,
        split_dir=directory,
    )
