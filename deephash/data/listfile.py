"""List-file data sets: NUS-WIDE-21, ImageNet-100 and MS-COCO.

A list file has one image a line: ``relative/path.jpg 0 1 0 ...`` (the path, then the
0/1 label vector), the format of the public deep-hashing repositories. Relative paths are
resolved against ``image_root`` (default: ``root``).

In ``root`` the loader looks for the given split lists ``train.txt`` (training),
``test.txt`` (queries) and ``database.txt``; when none of them is there, for one full
list ``all.txt`` (or ``list_file=``) that it splits with the seeded protocol. The split
used is written as index lists under ``root/deephash_splits/<name>/`` (``given`` or
``seed<seed>``); with given lists the item index is the position in the pooled table
(database entries, then query entries, then training entries not already listed).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from deephash.data.dataset import Dataset, Protocol, assemble
from deephash.data.images import check_files_exist
from deephash.data.images import verify_images as _verify_images
from deephash.data.splits import cache_dir, load_or_create, seeded_split, verify_split
from deephash.io import file_digest

log = logging.getLogger(__name__)

GIVEN_LISTS = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
FULL_LIST = "all.txt"


@dataclass(frozen=True)
class ListSpec:
    """Protocol of a list-based set (DESIGN.md section 3)."""

    name: str
    num_classes: int
    multilabel: bool
    map_depth: int | None
    query_per_class: int | None = None
    train_per_class: int | None = None
    num_query: int | None = None
    num_train: int | None = None
    description: str = ""
    accept_labels: tuple[int, ...] = ()  # label-vector lengths accepted besides num_classes


SPECS = {
    "nuswide21": ListSpec(
        "nuswide21",
        21,
        True,
        None,
        query_per_class=100,
        train_per_class=500,
        description="NUS-WIDE, 21 most frequent concepts (DSRH): 100 queries/class, "
        "500 train/class, database = the rest",
        accept_labels=(81,),
    ),
    "imagenet100": ListSpec(
        "imagenet100",
        100,
        False,
        1000,
        query_per_class=50,
        train_per_class=130,
        description="ImageNet-100 (DSEH, HashNet lists): 5,000 queries, 13,000 train (130 per "
        "class; the DSEH paper trains on 100 per class = 10,000: train_per_class=100, the "
        "default of DSEH's paper preset), ~128,000 database, mAP@1000",
    ),
    "coco": ListSpec(
        "coco",
        80,
        True,
        5000,
        num_query=5000,
        num_train=10000,
        description="MS-COCO (DSEH, HashNet lists): 5,000 queries, 10,000 train, "
        "~117,000 database, mAP@5000",
    ),
}


def read_list(
    path: str, num_labels: int | tuple[int, ...], image_root: str, where: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a list file: ``(relative paths, absolute paths, uint8 labels (n, c))``.

    ``num_labels``: the accepted label-vector length(s); the first line decides among
    several. ValueError naming the file and line for a wrong length or a non-0/1 value.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file {path!r} does not exist{where}")
    accepted = (num_labels,) if isinstance(num_labels, int) else tuple(num_labels)
    rel, labels = [], []
    width = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            width = _check_line(tokens, accepted, width, f"{path}, line {lineno}")
            rel.append(tokens[0])
            labels.append([v == "1" for v in tokens[1:]])
    if not rel:
        raise ValueError(f"list file {path!r} holds no images")
    rel_arr = np.asarray(rel, dtype=str)
    abs_arr = np.asarray(
        [p if os.path.isabs(p) else os.path.normpath(os.path.join(image_root, p)) for p in rel],
        dtype=str,
    )
    _check_no_duplicates(path, rel, abs_arr)
    return rel_arr, abs_arr, np.asarray(labels, dtype=np.uint8)


def _check_line(tokens: list[str], accepted: tuple[int, ...], width: int | None, where: str):
    """The label-vector width of a list line ``path 0 1 0 ...``, or ValueError naming the
    line (a path with whitespace, a wrong length, a label other than 0/1)."""
    vec = tokens[1:]
    middle = tokens[1 : len(tokens) - len(_trailing_labels(tokens))]
    words = 1 + len(middle)
    if middle and not all(t.lstrip("+-").replace(".", "", 1).isdigit() for t in middle):
        raise ValueError(
            f"{where}: the image path {' '.join(tokens[:words])!r} contains whitespace; a "
            "list line is 'path 0 1 0 ...' separated by whitespace, so rename the file (or "
            "its folders) without spaces"
        )
    if width is None:
        if len(vec) not in accepted:
            raise ValueError(
                f"{where}: label vector has {len(vec)} entries, expected "
                + " or ".join(str(a) for a in accepted)
            )
        width = len(vec)
    elif len(vec) != width:
        raise ValueError(f"{where}: label vector has {len(vec)} entries, expected {width}")
    if any(v not in ("0", "1") for v in vec):
        raise ValueError(f"{where}: labels must be 0 or 1, got {' '.join(vec)!r}")
    return width


def _check_no_duplicates(path: str, rel: list[str], abs_arr: np.ndarray) -> None:
    """The same file twice (also spelled differently) would leak across splits."""
    seen: dict[str, int] = {}
    for i, p in enumerate(abs_arr):
        j = seen.setdefault(os.path.realpath(p), i)
        if j != i:
            raise ValueError(
                f"{path}, line {i + 1}: {rel[i]!r} is the same file as {rel[j]!r} on line "
                f"{j + 1} (duplicate lines let one image be both a query and a database item)"
            )


def _trailing_labels(tokens: list[str]) -> list[str]:
    """The trailing 0/1 tokens of a split list line (the label vector)."""
    k = len(tokens)
    while k > 1 and tokens[k - 1] in ("0", "1"):
        k -= 1
    return tokens[k:]


def top_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` most frequent labels, in their original order (ties: lower index)."""
    freq = labels.sum(axis=0).astype(np.int64)
    order = np.lexsort((np.arange(labels.shape[1]), -freq))
    return np.sort(order[:k])


def subsample_per_class(
    train: np.ndarray, labels: np.ndarray, per_class: int, seed: int, name: str = ""
) -> np.ndarray:
    """A seeded subset of the single-label ``train`` indices with ``per_class`` items of each
    class (sorted); ValueError when a class has fewer, or for multi-label data."""
    y = labels[train]
    if np.any(y.sum(axis=1) != 1):
        raise ValueError(
            f"{name}: train_per_class with given lists needs single-label training items"
        )
    rng = np.random.default_rng([int(seed), 0x100C])
    cls = y.argmax(axis=1)
    out = []
    for c in range(labels.shape[1]):
        members = train[cls == c]
        if 0 < len(members) < per_class:
            raise ValueError(
                f"{name}: class {c} has {len(members)} training items in the given list, "
                f"fewer than train_per_class={per_class}"
            )
        out.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(out)).astype(train.dtype)


def load_list_dataset(
    name: str,
    root: str | None,
    seed: int = 0,
    *,
    image_root: str | None = None,
    list_file: str | None = None,
    map_depth: int | None | str = "protocol",
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    num_query: int | None = None,
    num_train: int | None = None,
    check_files: bool = True,
    verify_images: bool = False,
    split_dir: str | None = None,
) -> Dataset:
    """Load ``nuswide21``, ``imagenet100`` or ``coco`` from list files (see module docstring).

    Protocol counts may be overridden (e.g. for small tests); ``map_depth`` overrides the
    protocol's mAP depth (e.g. 5000 for NUS-WIDE under DSEH). ``check_files`` checks every
    image exists (FileNotFoundError naming it and its list); ``verify_images`` decodes every
    image up front (ValueError naming the corrupt files).
    """
    spec = SPECS[name]
    if root is None:
        raise ValueError(f"{name}: pass root=<directory holding the list files> (see docs/data.md)")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{name}: data directory {root!r} does not exist")
    image_root = os.path.abspath(os.path.expanduser(image_root)) if image_root else root
    widths = (spec.num_classes,) + spec.accept_labels
    where = f" (the {name} list files belong in {root})"
    given = {k: os.path.join(root, v) for k, v in GIVEN_LISTS.items()}
    present = [k for k, p in given.items() if os.path.isfile(p)]
    full_path = (
        os.path.join(root, list_file or FULL_LIST)
        if list_file is None or not os.path.isabs(list_file)
        else list_file
    )

    if present and list_file is None:
        missing = [given[k] for k in GIVEN_LISTS if k not in present]
        if missing:
            raise FileNotFoundError(
                f"{name}: list file {missing[0]!r} does not exist{where}: with given splits "
                f"all of {', '.join(GIVEN_LISTS.values())} are needed"
            )
        loaded = _given_splits(
            name, spec, root, given, widths, image_root, where, seed, train_per_class, split_dir
        )
    else:
        if not os.path.isfile(full_path):
            raise FileNotFoundError(
                f"{name}: no list files found: expected {', '.join(given.values())} (given "
                f"splits) or the full list {full_path!r}{where}"
            )
        counts = _counts(spec, query_per_class, train_per_class, num_query, num_train)
        loaded = _seeded_splits(
            name, spec, root, full_path, widths, image_root, where, seed, counts, split_dir
        )
    rel, paths, labels, sources, (q, t, d), checksum, directory, kind = loaded
    real = _check_no_leaks(name, paths, q, t, d)
    if check_files:
        check_files_exist(paths, sources)
    if verify_images:
        _verify_images(np.unique(paths), on_corrupt="raise")
        _check_copies(real, q, np.union1d(t, d), sources)
    depth = spec.map_depth if map_depth == "protocol" else map_depth
    class_ids = None if spec.multilabel else _class_ids(name, labels, sources)
    protocol = Protocol(
        num_classes=int(labels.shape[1]),
        multilabel=spec.multilabel,
        map_depth=depth,
        class_names=tuple(f"label{i}" for i in range(labels.shape[1])),
        description=f"{spec.description}; here: {kind}; mAP depth {depth or 'all'}",
    )
    return assemble(
        name,
        protocol,
        labels,
        q,
        t,
        d,
        checksum,
        paths=paths,
        class_ids=class_ids,
        root=root,
        split_dir=directory,
    )


def _given_splits(
    name, spec, root, given, widths, image_root, where, seed, train_per_class, split_dir
):
    """Splits from the given lists (train.txt / test.txt / database.txt)."""
    parts = {
        k: read_list(given[k], widths, image_root, where) for k in ("database", "query", "train")
    }
    widths_seen = {v[2].shape[1] for v in parts.values()}
    if len(widths_seen) != 1:
        raise ValueError(
            f"{name}: the given lists have different label lengths {sorted(widths_seen)}"
        )
    rel, paths, labels, positions, sources = _pool(parts, given)
    labels, keep = _select_labels(name, spec, labels)
    query, train, database = (_remap(positions[k], keep) for k in ("query", "train", "database"))
    rel, paths, sources = rel[keep], paths[keep], sources[keep]
    fingerprint = {k: file_digest(given[k]) for k in GIVEN_LISTS}
    params = dict(dataset=name, mode="given", num_items=int(len(rel)), lists=fingerprint)
    subdir = "given"
    if train_per_class is not None:  # e.g. DSEH's 100 per class from HashNet's 130-per-class list
        train = subsample_per_class(train, labels, int(train_per_class), seed, name)
        params.update(train_per_class=int(train_per_class), seed=int(seed))
        subdir = f"given-train{int(train_per_class)}pc-seed{int(seed)}"
    directory = split_dir or os.path.join(root, "deephash_splits", name, subdir)
    q, t, d, checksum, directory = load_or_create(
        directory,
        lambda: (query, train, database),
        params,
        fallback_dir=os.path.join(cache_dir(), name, subdir),
    )
    verify_split(q, t, d, len(rel), database_rule="given", where=directory)
    for k, stored, expected in (
        ("query", q, query),
        ("train", t, train),
        ("database", d, database),
    ):
        if not np.array_equal(stored, expected):
            raise ValueError(
                f"{directory}: the stored {k} indices disagree with the given list {given[k]}"
                + (
                    f" (train_per_class={train_per_class})"
                    if k == "train" and train_per_class
                    else ""
                )
            )
    kind = "given lists (train.txt / test.txt / database.txt)"
    return rel, paths, labels, sources, (q, t, d), checksum, directory, kind


def _counts(spec, query_per_class, train_per_class, num_query, num_train) -> dict:
    """The split counts: those given, else the protocol's (a per-class count given replaces
    the protocol's total and the other way round)."""

    def pick(value, default, other):
        if value is not None:
            return value
        return None if other else default

    return dict(
        query_per_class=pick(query_per_class, spec.query_per_class, num_query),
        train_per_class=pick(train_per_class, spec.train_per_class, num_train),
        num_query=pick(num_query, spec.num_query, query_per_class),
        num_train=pick(num_train, spec.num_train, train_per_class),
    )


def _seeded_splits(name, spec, root, full_path, widths, image_root, where, seed, counts, split_dir):
    """A seeded protocol split of the full list."""
    rel, paths, labels = read_list(full_path, widths, image_root, where)
    sources = np.asarray([f"{full_path}, line {i + 1}" for i in range(len(rel))], dtype=object)
    labels, keep = _select_labels(name, spec, labels)
    rel, paths, sources = rel[keep], paths[keep], sources[keep]
    params = dict(
        dataset=name,
        mode="seeded",
        seed=int(seed),
        num_items=int(len(rel)),
        list=file_digest(full_path),
        **counts,
    )
    directory = split_dir or os.path.join(root, "deephash_splits", name, f"seed{int(seed)}")
    q, t, d, checksum, directory = seeded_split(
        directory,
        labels,
        seed,
        params,
        fallback_dir=os.path.join(cache_dir(), name, f"seed{int(seed)}"),
        **counts,
    )
    kind = f"seeded protocol split of {os.path.basename(full_path)} ({_describe(counts)})"
    return rel, paths, labels, sources, (q, t, d), checksum, directory, kind


def _check_no_leaks(name, paths, q, t, d) -> np.ndarray:
    """ValueError when a query image is also a training or database image; returns the
    resolved paths (aliases ./x, absolute, links resolved)."""
    real = np.asarray([os.path.realpath(p) for p in paths], dtype=str)
    for other, what in ((t, "in training"), (d, "in the database")):
        leak = np.intersect1d(real[q], real[other])
        if len(leak):
            raise ValueError(
                f"{name}: the image {leak[0]!r} is both a query and {what} (paths compared after "
                f"resolving ./, absolute paths and links; {len(leak)} such images)"
            )
    return real


def _class_ids(name, labels, sources) -> np.ndarray:
    """Class ids of a single-label set; ValueError naming a line with another label count."""
    if np.any(labels.sum(axis=1) != 1):
        bad = int(np.flatnonzero(labels.sum(axis=1) != 1)[0])
        raise ValueError(
            f"{name} is single-label, but {sources[bad]} has {int(labels[bad].sum())} labels"
        )
    return labels.argmax(axis=1).astype(np.int64)


def _check_copies(
    real: np.ndarray, query: np.ndarray, others: np.ndarray, sources: np.ndarray
) -> None:
    """ValueError when a query image is a byte-identical copy of a training or database
    image (another file, same size and sha256). Only files whose sizes collide are hashed;
    run with ``verify_images``, which reads every file anyway."""
    import hashlib

    def size(i):
        return os.path.getsize(real[i])

    by_size: dict[int, list[int]] = {}
    for i in others:
        by_size.setdefault(size(i), []).append(int(i))
    digests: dict[int, str] = {}

    def digest(i):
        if i not in digests:
            with open(real[i], "rb") as f:
                digests[i] = hashlib.sha256(f.read()).hexdigest()
        return digests[i]

    for qi in query:
        for oi in by_size.get(size(qi), ()):
            if digest(int(qi)) == digest(oi):
                raise ValueError(
                    f"the query image {real[qi]!r} ({sources[qi]}) has the same content as "
                    f"{real[oi]!r} ({sources[oi]}): a copy of a training/database image"
                )


def _describe(counts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items() if v is not None)


def _pool(parts: dict, given: dict):
    """Pool the given lists into one item table keyed by relative path."""
    table: dict[str, int] = {}
    rel, paths, labels, sources = [], [], [], []
    positions = {}
    for k in ("database", "query", "train"):
        r, p, y = parts[k]
        pos = np.empty(len(r), np.int64)
        for i, key in enumerate(r):
            j = table.get(
                key := os.path.realpath(p[i])
            )  # one item per file, however the lists spell its path
            if j is None:
                j = table[key] = len(rel)
                (
                    rel.append(r[i]),
                    paths.append(p[i]),
                    labels.append(y[i]),
                    sources.append(f"{given[k]}, line {i + 1}"),
                )
            elif not np.array_equal(labels[j], y[i]):
                raise ValueError(
                    f"{given[k]}, line {i + 1}: {r[i]!r} has other labels than in {sources[j]}"
                )
            pos[i] = j
        positions[k] = pos
    return (
        np.asarray(rel, dtype=str),
        np.asarray(paths, dtype=str),
        np.asarray(labels, np.uint8),
        positions,
        np.asarray(sources, dtype=object),
    )


def _select_labels(name: str, spec: ListSpec, labels: np.ndarray):
    """81-label NUS-WIDE lists: keep the 21 most frequent labels. Multi-label sets drop
    items without any label (logged). Returns ``(labels, kept positions)``."""
    if labels.shape[1] != spec.num_classes:
        cols = top_labels(labels, spec.num_classes)
        log.info(
            "%s: keeping the %d most frequent of %d labels: columns %s",
            name,
            spec.num_classes,
            labels.shape[1],
            cols.tolist(),
        )
        labels = labels[:, cols]
    keep = np.arange(len(labels))
    if spec.multilabel:
        keep = np.flatnonzero(labels.sum(axis=1) > 0)
        if len(keep) < len(labels):
            log.info(
                "%s: dropping %d images without any of the %d labels",
                name,
                len(labels) - len(keep),
                spec.num_classes,
            )
    return labels[keep], keep


def _remap(pos: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Positions in the full table -> positions among ``keep`` (dropped items removed)."""
    new = np.full(int(keep.max(initial=-1)) + 1 if len(keep) else 0, -1, np.int64)
    new[keep] = np.arange(len(keep))
    pos = pos[pos < len(new)]
    out = new[pos]
    return out[out >= 0]
