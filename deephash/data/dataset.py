"""The data-set containers: ``Protocol``, ``Split`` and ``Dataset``.

A ``Dataset`` holds three splits of one labelled image collection — ``query``,
``train`` and ``database`` — plus the retrieval ``protocol`` they follow and a
``checksum`` of their index lists (see ``deephash.data.splits.split_checksum``), so that
a result can prove which split it was computed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deephash.validation import check_fraction


@dataclass(frozen=True)
class Protocol:
    """What a paper's protocol says about a data set."""

    num_classes: int
    multilabel: bool
    map_depth: int | None  # None = mAP over the whole database
    class_names: tuple[str, ...]
    description: str


@dataclass(frozen=True, eq=False)
class Split:
    """One split: multi-hot ``labels`` (n, c) uint8, ``indices`` (n,) int64 ids into the
    full data set, and either in-memory ``images`` (n, h, w, ch) float32 in [0, 255] or
    absolute image ``paths`` (n,). ``class_ids`` (n,) int64 for single-label sets."""

    labels: np.ndarray
    indices: np.ndarray
    images: np.ndarray | None = None
    paths: np.ndarray | None = None
    class_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 2:
            raise ValueError(f"Split labels must be multi-hot (n, c), got shape {labels.shape}")
        n = labels.shape[0]
        object.__setattr__(self, "labels", labels.astype(np.uint8, copy=False))
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int64).reshape(-1))
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds exactly one of `images` (in memory) or `paths` (files)")
        if self.images is not None:
            images = np.asarray(self.images, dtype=np.float32)
            if images.ndim != 4:
                raise ValueError(f"Split images must be (n, h, w, ch), got shape {images.shape}")
            object.__setattr__(self, "images", images)
        if self.paths is not None:
            object.__setattr__(self, "paths", np.asarray(self.paths, dtype=str).reshape(-1))
        if self.class_ids is not None:
            object.__setattr__(
                self, "class_ids", np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
            )
        for name in ("indices", "images", "paths", "class_ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Split {name} has {len(value)} entries but labels have {n}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    @property
    def multilabel(self) -> bool:
        return self.class_ids is None

    def subset(self, idx) -> "Split":
        """The items at positions ``idx`` (ints or a boolean mask) of this split."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"boolean mask of shape {idx.shape} for a split of {len(self)} items"
                )
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"subset positions out of range for a split of {len(self)} items")
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return Split(
            labels=self.labels[idx],
            indices=self.indices[idx],
            images=take(self.images),
            paths=take(self.paths),
            class_ids=take(self.class_ids),
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set under its protocol: query / train / database splits and their checksum."""

    name: str
    query: Split
    train: Split
    database: Split
    protocol: Protocol
    checksum: str
    image_shape: tuple[int, int, int] | None = None
    root: str | None = None
    split_dir: str | None = field(default=None, compare=False)

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> tuple[Split, Split]:
        """Carve ``(fit, val)`` from ``train`` (never from the queries), deterministically.

        ``val`` holds ``round(fraction * len(train))`` items (at least 1), stratified by
        class for single-label sets; ``fit`` the rest. The same ``seed`` gives the same split.
        """
        check_fraction(fraction, "fraction", owner="validation_split")
        n = len(self.train)
        n_val = max(1, int(round(fraction * n)))
        if n_val >= n:
            raise ValueError(
                f"a training split of {n} items is too small to hold out {fraction:.0%}"
            )
        rng = np.random.default_rng([int(seed), 0x5A1])
        if self.train.class_ids is not None:
            # stratified: take a proportional share of each class, then top up at random
            val: list[int] = []
            for c in np.unique(self.train.class_ids):
                members = np.flatnonzero(self.train.class_ids == c)
                k = int(np.floor(fraction * len(members)))
                val.extend(rng.permutation(members)[:k].tolist())
            rest = np.setdiff1d(np.arange(n), np.asarray(val, dtype=np.int64))
            val.extend(rng.permutation(rest)[: max(0, n_val - len(val))].tolist())
            val_pos = np.sort(np.asarray(val, dtype=np.int64))
        else:
            val_pos = np.sort(rng.permutation(n)[:n_val])
        mask = np.zeros(n, dtype=bool)
        mask[val_pos] = True
        return self.train.subset(~mask), self.train.subset(mask)

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.query)} queries, {len(self.train)} training, "
            f"{len(self.database)} database items, {self.protocol.num_classes} classes "
            f"({'multi' if self.protocol.multilabel else 'single'}-label), "
            f"checksum {self.checksum[:12]}"
        )


def assemble(
    name: str,
    protocol: Protocol,
    labels: np.ndarray,
    query: np.ndarray,
    train: np.ndarray,
    database: np.ndarray,
    checksum: str,
    *,
    images: np.ndarray | None = None,
    paths: np.ndarray | None = None,
    class_ids: np.ndarray | None = None,
    root: str | None = None,
    split_dir: str | None = None,
) -> Dataset:
    """Build a ``Dataset`` from full-collection arrays and the three index lists."""

    def split(idx: np.ndarray) -> Split:
        return Split(
            labels=labels[idx],
            indices=idx,
            images=None if images is None else images[idx],
            paths=None if paths is None else paths[idx],
            class_ids=None if class_ids is None else class_ids[idx],
        )

    return Dataset(
        name=name,
        query=split(query),
        train=split(train),
        database=split(database),
        protocol=protocol,
        checksum=checksum,
        image_shape=None if images is None else tuple(int(s) for s in images.shape[1:]),
        root=root,
        split_dir=split_dir,
    )
