"""Seeded protocol splits, their index-list files, checksums and leak checks.

On disk a split is a directory holding ``query.txt``, ``train.txt`` and ``database.txt``
(one decimal item index per line, ``\\n``-terminated, in split order) and ``split.json``
(data set, seed, protocol parameters, sizes and checksum). The checksum is

    sha256(b"query\\n" + query.txt + b"train\\n" + train.txt + b"database\\n" + database.txt)

i.e. ``(echo query; cat query.txt; echo train; cat train.txt; echo database;
cat database.txt) | sha256sum`` in a shell.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np

from deephash.io import atomic_write, write_json

log = logging.getLogger(__name__)

SPLIT_NAMES = ("query", "train", "database")
FORMAT_VERSION = 1


def cache_root() -> str:
    """The library's data cache: ``$DEEPHASH_CACHE`` or ``~/.cache/deephash``."""
    return os.environ.get("DEEPHASH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "deephash"
    )


def cache_dir(kind: str = "splits") -> str:
    """A folder of the data cache: ``cache_root()/kind``. ``splits`` (the default) is where
    embedded sets keep their split files; ``verified`` holds the image verification
    manifests (``deephash.data.images``)."""
    return os.path.join(cache_root(), kind)


def _index_text(idx: np.ndarray) -> str:
    return "".join(f"{int(i)}\n" for i in idx)


def split_checksum(query: np.ndarray, train: np.ndarray, database: np.ndarray) -> str:
    """sha256 over the three index lists as written to disk (see module docstring)."""
    h = hashlib.sha256()
    for name, idx in zip(SPLIT_NAMES, (query, train, database)):
        h.update(f"{name}\n".encode())
        h.update(_index_text(np.asarray(idx, dtype=np.int64)).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- making splits
def protocol_split(
    labels: np.ndarray,
    seed: int,
    *,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    num_query: int | None = None,
    num_train: int | None = None,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(query, train, database)`` index arrays for multi-hot ``labels`` (n, c).

    Queries: ``query_per_class`` items per class (for multi-label sets: items carrying that
    label, classes visited in order, an item used once) or ``num_query`` items at random.
    Training: likewise from the non-query items. Database: every non-query item (so the
    training items are in the database, as in the papers). ``eligible`` (bool (n,))
    restricts queries and training to some items (the database stays all non-queries).
    Query and train lists are sorted; all arrays are int64.
    """
    labels = np.asarray(labels)
    n, c = labels.shape
    rng = np.random.default_rng([int(seed), 0xD5])
    allowed = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool).copy()
    query = _draw(labels, rng, allowed, query_per_class, num_query, "queries")
    allowed[query] = False
    train = _draw(labels, rng, allowed, train_per_class, num_train, "training items")
    is_query = np.zeros(n, bool)
    is_query[query] = True
    database = np.flatnonzero(~is_query).astype(np.int64)
    return np.sort(query), np.sort(train), database


def _draw(labels, rng, allowed, per_class, total, what) -> np.ndarray:
    if (per_class is None) == (total is None):
        raise ValueError(f"give exactly one of a per-class count or a total for the {what}")
    allowed = allowed.copy()
    if total is not None:
        pool = np.flatnonzero(allowed)
        if total > len(pool):
            raise ValueError(f"cannot draw {total} {what}: only {len(pool)} items are available")
        return np.sort(rng.permutation(pool)[:total]).astype(np.int64)
    chosen = []
    for k in range(labels.shape[1]):
        pool = np.flatnonzero(allowed & (labels[:, k] > 0))
        if len(pool) < per_class:
            raise ValueError(
                f"cannot draw {per_class} {what} for class {k}: only {len(pool)} eligible "
                "items carry it"
            )
        pick = rng.permutation(pool)[:per_class]
        allowed[pick] = False
        chosen.append(pick)
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- checking splits
def verify_split(
    query: np.ndarray,
    train: np.ndarray,
    database: np.ndarray,
    num_items: int,
    *,
    labels: np.ndarray | None = None,
    database_rule: str = "rest",
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    num_query: int | None = None,
    num_train: int | None = None,
    where: str = "split",
) -> None:
    """Raise ValueError unless the split obeys the protocol.

    Always: indices in ``[0, num_items)``, no duplicates, no query in training, no query
    in the database. ``database_rule="rest"``: the database is exactly the non-query items;
    ``"given"``: any query-free list. Counts are checked when given (per class needs
    ``labels``; for multi-label sets "per class" means the drawing procedure of
    ``protocol_split``, so only the total ``per_class * classes`` is checked).
    """
    _check_indices({"query": query, "train": train, "database": database}, num_items, where)
    _check_database(query, train, database, num_items, database_rule, where)
    for name, idx, per_class, total in (
        ("query", query, query_per_class, num_query),
        ("train", train, train_per_class, num_train),
    ):
        if total is not None and len(idx) != total:
            raise ValueError(
                f"{where}: the protocol asks for {total} {name} items, the split has {len(idx)}"
            )
        if per_class is not None and labels is not None:
            _check_per_class(name, idx, labels, per_class, where)


def _check_indices(parts: dict, num_items: int, where: str) -> None:
    for name, idx in parts.items():
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= num_items):
            raise ValueError(f"{where}: {name} index out of range [0, {num_items})")
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{where}: {name} list contains duplicate indices")


def _check_database(query, train, database, num_items: int, database_rule: str, where: str):
    """No query in training or in the database; the database rule."""
    leak = np.intersect1d(query, train)
    if leak.size:
        raise ValueError(
            f"{where}: {leak.size} query items are also in training (e.g. index {int(leak[0])})"
        )
    leak = np.intersect1d(query, database)
    if leak.size:
        raise ValueError(
            f"{where}: {leak.size} query items are also in the database (e.g. index {int(leak[0])})"
        )
    if database_rule == "rest":
        if len(query) + len(database) != num_items:
            raise ValueError(
                f"{where}: the database must hold every non-query item "
                f"({num_items - len(query)}), it holds {len(database)}"
            )
    elif database_rule != "given":
        raise ValueError(f"unknown database rule {database_rule!r}")


def _check_per_class(name: str, idx, labels: np.ndarray, per_class: int, where: str) -> None:
    c = labels.shape[1]
    if len(idx) != per_class * c:
        raise ValueError(
            f"{where}: the protocol asks for {per_class} {name} items per class "
            f"({per_class * c}), the split has {len(idx)}"
        )
    single = labels.sum(axis=1).max() <= 1
    if single:
        counts = labels[np.asarray(idx)].sum(axis=0)
        bad = np.flatnonzero(counts != per_class)
        if bad.size:
            raise ValueError(
                f"{where}: class {int(bad[0])} has {int(counts[bad[0]])} {name} items, "
                f"the protocol asks for {per_class}"
            )


# --------------------------------------------------------------------------- files
def write_split(directory: str, query, train, database, manifest: dict[str, Any]) -> str:
    """Write the index lists and ``split.json`` atomically; returns the checksum."""
    os.makedirs(directory, exist_ok=True)
    for name, idx in zip(SPLIT_NAMES, (query, train, database)):
        with atomic_write(os.path.join(directory, f"{name}.txt"), "w", encoding="ascii") as f:
            f.write(_index_text(np.asarray(idx, dtype=np.int64)))
    checksum = split_checksum(query, train, database)
    info = dict(manifest)
    info.update(
        format=FORMAT_VERSION,
        sizes={k: int(len(v)) for k, v in zip(SPLIT_NAMES, (query, train, database))},
        checksum=checksum,
    )
    write_json(os.path.join(directory, "split.json"), info)
    return checksum


def read_split(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Read the three index lists and the manifest; checks the checksum (ValueError)."""
    arrays = []
    for name in SPLIT_NAMES:
        path = os.path.join(directory, f"{name}.txt")
        values = []
        with open(path, encoding="ascii") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if not line.isdigit():
                    raise ValueError(
                        f"{path}, line {lineno}: expected a non-negative integer index, "
                        f"got {line!r}"
                    )
                values.append(int(line))
        arrays.append(np.asarray(values, dtype=np.int64))
    manifest_path = os.path.join(directory, "split.json")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except ValueError as e:
        raise ValueError(
            f"{manifest_path}: damaged JSON ({e}); remove the split directory to recreate it"
        ) from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path}: not a split manifest (a JSON object expected)")
    checksum = split_checksum(*arrays)
    if manifest.get("checksum") != checksum:
        raise ValueError(
            f"split files in {directory} do not match the checksum in split.json "
            f"({checksum[:12]} vs {str(manifest.get('checksum'))[:12]}): they were edited or "
            "damaged"
        )
    return arrays[0], arrays[1], arrays[2], manifest


def has_split(directory: str) -> bool:
    return all(
        os.path.exists(os.path.join(directory, f))
        for f in ("query.txt", "train.txt", "database.txt", "split.json")
    )


def load_or_create(directory: str, make, params: dict[str, Any], fallback_dir: str | None = None):
    """Reload the split stored in ``directory`` or create it with ``make()``.

    ``params`` (JSON-able: data set, seed, protocol parameters, item count, source
    fingerprint) must equal the stored ones, else ValueError (the files belong to another
    protocol or another version of the data). Returns ``(query, train, database,
    checksum, directory)``.
    """
    if has_split(directory):
        query, train, database, manifest = read_split(directory)
        stored = manifest.get("params", {})
        if stored != json.loads(json.dumps(params)):
            diff = sorted(k for k in set(stored) | set(params) if stored.get(k) != params.get(k))
            raise ValueError(
                f"the split in {directory} was made for other protocol parameters or data "
                f"(differs in: {', '.join(diff)}); remove it or pass another split_dir"
            )
        return query, train, database, manifest["checksum"], directory
    query, train, database = make()
    try:
        checksum = write_split(directory, query, train, database, {"params": params})
    except OSError as e:
        if fallback_dir is None:
            raise
        log.warning("cannot write split files to %s (%s); using %s", directory, e, fallback_dir)
        return load_or_create(fallback_dir, lambda: (query, train, database), params)
    return query, train, database, checksum, directory


def seeded_split(
    directory: str,
    labels: np.ndarray,
    seed: int,
    params: dict[str, Any],
    *,
    fallback_dir: str | None = None,
    **counts: int,
):
    """The seeded protocol split of multi-hot ``labels`` (n, c) stored in ``directory``:
    reloaded if there (``params`` must match, see :func:`load_or_create`), else drawn by
    :func:`protocol_split` with ``counts`` (``query_per_class`` / ``num_query``,
    ``train_per_class`` / ``num_train``) and written; either way checked against those
    counts by :func:`verify_split`. Returns ``(query, train, database, checksum,
    directory)``."""
    query, train, database, checksum, directory = load_or_create(
        directory,
        lambda: protocol_split(labels, seed, **counts),
        params,
        fallback_dir=fallback_dir,
    )
    verify_split(query, train, database, len(labels), labels=labels, where=directory, **counts)
    return query, train, database, checksum, directory
