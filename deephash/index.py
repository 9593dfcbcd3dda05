"""An exact Hamming index over binary codes (flat scan, or by distinct codes), with save/load.

``HammingIndex(n_bits, backend="auto")``:

* ``add(codes)``: append codes (bool / {0,1} / {-1,+1} ``(n, n_bits)``, or packed
  ``uint8 (n, ceil(n_bits/8))`` with ``packed=True``: never guessed from dtype or shape);
  items are numbered in insertion order from 0. ``search`` / ``range_search`` take
  ``packed=True`` for packed queries the same way.
* ``search(queries, k) -> (distances int32 (q, k'), indices int64 (q, k'))`` with
  ``k' = min(k, len(index))``, ordered by distance, ties by insertion index.
* ``range_search(queries, radius)``: one int64 index array per query with every item at
  distance ``<= radius`` (inclusive), in the same order.
* ``save(path)`` / ``HammingIndex.load(path)``: a versioned, checksummed file, written
  atomically; a corrupt or foreign file is a ValueError.

Backends (identical results): ``"numpy"`` scans every item with deephash's own kernels
(compiled with numba, or pure numpy with ``DEEPHASH_KERNELS=numpy``); ``"grouped"`` stores
each distinct code once with its items (in insertion order), computes distances to the
distinct codes only and expands them to items in (distance, index) order (``_grouped.py``):
for learned codes, which crowd into few distinct values, a query costs ``U`` popcounts
instead of ``N``; ``"faiss"`` runs ``faiss.IndexBinaryFlat`` (codes padded to whole bytes)
and then reorders ties and makes the radius inclusive. ``"auto"`` groups when there are at
most ``len(index) * GROUPED_FRACTION`` distinct codes (counted once after each ``add``), else
scans with ``"numpy"`` (exact by construction, no slower than faiss' flat index in
``benchmarks/retrieval.py``; see ``docs/metrics.md``).

>>> index = HammingIndex(4)
>>> index.add(np.array([[0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]))
>>> index.search(np.array([[0, 0, 0, 1]]), k=2)
(array([[1, 1]], dtype=int32), array([[0, 1]]))
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from deephash import _grouped, _kernels, _lookup
from deephash.codes import as_bits, as_words, bytes_to_words, n_bytes, pack, unpack
from deephash.io import atomic_write
from deephash.validation import check_choice, check_int, is_int

__all__ = ["HammingIndex", "MultiIndexHashing"]

BACKENDS = ("auto", "numpy", "grouped", "faiss")
_MAGIC = b"DEEPHASH-HAMMING-INDEX\n"
_FORMAT_VERSION = 2  # 2: the checksum covers the header fields too (1: the codes only)


def _digest(header: dict, payload: bytes) -> str:
    """SHA-256 of the magic, every header field but the checksum (canonical JSON) and the codes."""
    fields = {k: v for k, v in header.items() if k != "sha256"}
    h = hashlib.sha256(_MAGIC)
    h.update(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n")
    h.update(payload)
    return h.hexdigest()


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("backend='faiss' needs faiss: pip install deephash[faiss]") from e
    return faiss


class HammingIndex:
    """Exact Hamming-distance index (see module docstring)."""

    #: ``backend="auto"`` searches by distinct codes when there are at most this share of items
    GROUPED_FRACTION = 1 / 8

    def __init__(self, n_bits: int, backend: str = "auto"):
        self.n_bits = check_int(n_bits, "n_bits")
        check_choice(backend, BACKENDS, "backend")
        self.backend = backend
        self._packed = np.zeros((0, n_bytes(self.n_bits)), np.uint8)
        self._words = None
        self._groups = None  # (distinct code words, members, gstart), or False: too many
        self._faiss_index = None
        if self.backend == "faiss":
            self._faiss_index = _faiss().IndexBinaryFlat(8 * n_bytes(self.n_bits))

    def __len__(self) -> int:
        return int(self._packed.shape[0])

    def __repr__(self) -> str:
        return f"HammingIndex(n_bits={self.n_bits}, backend={self.backend!r}, size={len(self)})"

    # -------------------------------------------------------------------- building

    def _pack(self, codes, name: str, packed: bool = False) -> np.ndarray:
        arr = np.asarray(codes)
        if packed:
            as_words(arr, self.n_bits, name, packed=True)  # validates shape, dtype and padding bits
            return np.ascontiguousarray(arr)
        return pack(as_bits(arr, self.n_bits, name))

    def add(self, codes, *, packed: bool = False) -> None:
        """Append codes ``(n, n_bits)`` (with ``packed=True``: ``uint8 (n, ceil(n_bits/8))``)."""
        data = self._pack(codes, "codes", packed)
        self._packed = np.concatenate([self._packed, data]) if len(self) else data
        self._words = None
        self._groups = None
        if self._faiss_index is not None:
            self._faiss_index.add(data)

    def codes(self) -> np.ndarray:
        """The stored codes as ``bool (len, n_bits)``."""
        return unpack(self._packed, self.n_bits)

    def _db_words(self) -> np.ndarray:
        if self._words is None:
            self._words = bytes_to_words(self._packed)
        return self._words

    def _grouping(self, kernels=None):
        """The distinct codes and their items, when this index searches by groups, else None.

        ``"grouped"`` always groups; ``"auto"`` groups when there are at most
        ``len(index) * GROUPED_FRACTION`` distinct codes (counted once after each ``add``,
        stopping as soon as there are more)."""
        if self.backend not in ("auto", "grouped"):
            return None
        if self._groups is None:
            words = self._db_words()
            limit = None if self.backend == "grouped" else int(len(self) * self.GROUPED_FRACTION)
            found = _grouped.group(words, limit, kernels)
            if found is None:
                self._groups = False
            else:
                gid, first = found
                members, gstart = _grouped.members_of(gid, first.size, kernels)
                self._groups = (np.ascontiguousarray(words[first]), members, gstart)
        return self._groups or None

    @property
    def n_distinct(self) -> int | None:
        """Distinct codes held by a grouped index (None when this index scans every item)."""
        g = self._grouping()
        return None if g is None else int(g[0].shape[0])

    def _queries(self, queries, packed: bool = False) -> np.ndarray:
        if len(self) == 0:
            raise ValueError("the index is empty: add codes before searching")
        return self._pack(queries, "queries", packed)

    # -------------------------------------------------------------------- searching

    def search(
        self, queries, k: int, kernels: str | None = None, *, packed: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest: ``(distances int32, indices int64)``, each ``(q, min(k, len))``."""
        k = check_int(k, "k")
        qp = self._queries(queries, packed)
        k = min(k, len(self))
        if self.backend == "faiss":
            return self._faiss_search(qp, k)
        groups = self._grouping(kernels)
        if groups is not None:
            return _grouped.knn(bytes_to_words(qp), *groups, k, self.n_bits, kernels)
        return _kernels.knn(bytes_to_words(qp), self._db_words(), k, self.n_bits, kernels)

    def range_search(
        self,
        queries,
        radius: int,
        return_distances: bool = False,
        kernels: str | None = None,
        *,
        packed: bool = False,
    ):
        """Every item at distance ``<= radius`` per query (a list of int64 arrays), ordered by
        (distance, index); with ``return_distances`` also a list of int32 distance arrays."""
        radius = check_int(radius, "radius", minimum=0)
        qp = self._queries(queries, packed)
        groups = self._grouping(kernels)
        if self.backend == "faiss":
            idx, dist, lims = self._faiss_range(qp, int(radius))
        elif groups is not None:
            idx, dist, lims = _grouped.range_search(
                bytes_to_words(qp), *groups, int(radius), self.n_bits, kernels
            )
        else:
            idx, dist, lims = _kernels.range_search(
                bytes_to_words(qp), self._db_words(), int(radius), self.n_bits, kernels
            )
        idxs = [idx[lims[i] : lims[i + 1]] for i in range(len(qp))]
        if return_distances:
            return idxs, [dist[lims[i] : lims[i + 1]] for i in range(len(qp))]
        return idxs

    def _faiss_range(self, qp: np.ndarray, radius: int):
        # faiss keeps d < radius (strict); ask for radius + 1 to make it inclusive
        lims, dist, idx = self._faiss_index.range_search(qp, radius + 1)
        lims = lims.astype(np.int64)
        out_i = np.empty(len(idx), np.int64)
        out_d = np.empty(len(idx), np.int32)
        for q in range(len(qp)):
            s, e = lims[q], lims[q + 1]
            order = np.lexsort((idx[s:e], dist[s:e]))
            out_i[s:e] = idx[s:e][order]
            out_d[s:e] = dist[s:e][order]
        return out_i, out_d, lims

    def _faiss_search(self, qp: np.ndarray, k: int):
        # faiss returns an arbitrary subset of the items tied at the k-th distance: widen the
        # search until every item tied with the k-th is in, then order by (distance, index).
        n = len(self)
        out_d = np.empty((len(qp), k), np.int32)
        out_i = np.empty((len(qp), k), np.int64)
        todo = np.arange(len(qp))
        kk = min(n, k + 1)
        while todo.size:
            dist, idx = self._faiss_index.search(qp[todo], kk)
            done = (dist[:, k - 1] < dist[:, kk - 1]) | (kk == n)
            for row in np.flatnonzero(done):
                order = np.lexsort((idx[row], dist[row]))[:k]
                out_d[todo[row]] = dist[row, order]
                out_i[todo[row]] = idx[row, order]
            todo = todo[~done]
            kk = min(n, 2 * kk)
        return out_d, out_i

    # -------------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write the index atomically: magic line, JSON header (version, bits, size, sha256), codes.

        The SHA-256 covers the magic, every other header field and the codes, so a changed
        ``n_bits`` (or any field) fails to load like a flipped code bit."""
        payload = self._packed.tobytes()
        header = {
            "format_version": _FORMAT_VERSION,
            "n_bits": self.n_bits,
            "size": len(self),
            "bytes_per_code": n_bytes(self.n_bits),
            "backend": self.backend,
        }
        header["sha256"] = _digest(header, payload)
        with atomic_write(path, "wb") as f:
            f.write(_MAGIC)
            f.write(json.dumps(header).encode("utf-8") + b"\n")
            f.write(payload)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str | None = None) -> "HammingIndex":
        """Read an index written by :meth:`save` (``backend`` overrides the saved one).

        Format 1 files (checksum over the codes only) still load; re-save them to protect
        their header too."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no Hamming index file at {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(_MAGIC):
            raise ValueError(f"{path!r} is not a deephash Hamming index file (bad magic)")
        rest = data[len(_MAGIC) :]
        line_end = rest.find(b"\n")
        try:
            header = json.loads(rest[:line_end].decode("utf-8"))
            version, n_bits, size = header["format_version"], header["n_bits"], header["size"]
            checksum = header["sha256"]
            if not all(is_int(v) for v in (version, n_bits, size)):
                raise TypeError("format_version, n_bits and size must be integers")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r}: corrupt Hamming index header ({e})") from e
        if version not in (1, _FORMAT_VERSION):
            raise ValueError(
                f"{path!r}: unsupported Hamming index format version {version} "
                f"(this is {_FORMAT_VERSION})"
            )
        payload = rest[line_end + 1 :]
        want = hashlib.sha256(payload).hexdigest() if version == 1 else _digest(header, payload)
        if want != checksum:
            raise ValueError(
                f"{path!r}: corrupt Hamming index (its header or codes do not match the checksum)"
            )
        if n_bits < 1 or size < 0 or len(payload) != size * n_bytes(n_bits):
            raise ValueError(f"{path!r}: corrupt Hamming index (size mismatch)")
        index = cls(n_bits, backend=backend or header.get("backend", "auto"))
        if size:
            index.add(
                np.frombuffer(payload, np.uint8).reshape(size, n_bytes(n_bits)).copy(), packed=True
            )
        return index


class MultiIndexHashing(HammingIndex):
    """Exact sublinear radius (and kNN) search by multi-index hashing; a drop-in ``HammingIndex``.

    ``MultiIndexHashing(n_bits, m=None, backend="auto")`` keeps the codes like
    :class:`HammingIndex` and adds ``m`` hash tables over disjoint substrings (Norouzi,
    Punjani, Fleet, CVPR 2012; see ``deephash/_lookup.py``). ``m=None`` picks the paper's
    ``m ~ n_bits / log2(len(index))`` (at least ``ceil(n_bits / 64)``: a substring holds
    at most 64 bits); ``m=1`` is one hash table probed at every code within the radius.

    * ``range_search(queries, radius)`` probes the tables and verifies full distances;
      results are identical to ``HammingIndex.range_search`` (same items, (distance, index)
      order, radius inclusive). A query whose probes would cost more than a scan is scanned.
    * ``search(queries, k)`` runs range searches at radius 0, 1, 2, ... until a query has
      ``k`` hits, then keeps the first ``k``: identical to the exhaustive kNN, ties by index.
    * The tables are built on the first search after ``add`` (or by :meth:`build`); adding
      codes later rebuilds them on the next search. ``save`` writes the same file as
      ``HammingIndex`` (codes only; the tables are rebuilt after ``load``).
    """

    # Both thresholds come from ``python benchmarks/lookup.py --sweep`` (2026-12-03, idle 2-core
    # AMD EPYC VM, AVX2; docs/metrics.md has the tables): the value whose worst slowdown over
    # the best value per configuration (random / clustered / spread / repeated codes, 32 and
    # 64 bits) is smallest, within the runs' noise.
    #: a radius needing more probes per query than ``len(index) * PROBE_FRACTION`` is answered
    #: by a scan (1/1024: worst 3.2x over 84 radius/distribution cases at N = 1M, lowest mean;
    #: 1/256's 3.0x is within the noise between runs; 1/8 was 8.6x)
    PROBE_FRACTION = 1 / 1024
    #: ... but up to ``PROBE_MIN`` probes always use the tables (small indexes: at N = 20k,
    #: 20-34 probes cost 0.9-1.2x a scan in a smoke run; not part of the sweep)
    PROBE_MIN = 32
    #: per query, more than ``len(index) * SCAN_FRACTION`` candidates in its buckets -> the
    #: exhaustive range kernel (1/64: worst 1.33x over 48 cases at N = 200k and 1M, radius
    #: 1-3, 2026-12-03; 1/16, chosen before the exhaustive kernels got faster, was 3.4x)
    SCAN_FRACTION = 1 / 64

    def __init__(self, n_bits: int, m: int | None = None, backend: str = "auto"):
        super().__init__(n_bits, backend)
        if m is not None:
            _lookup.check_m(m, self.n_bits)
        self._m = None if m is None else int(m)
        self._tables = None

    def __repr__(self) -> str:
        return (
            f"MultiIndexHashing(n_bits={self.n_bits}, m={self.m}, backend={self.backend!r}, "
            f"size={len(self)})"
        )

    @property
    def m(self) -> int:
        """Number of substrings (tables): the override, else the paper's rule for this size."""
        return self._m if self._m is not None else _lookup.choose_m(self.n_bits, len(self))

    def add(self, codes, *, packed: bool = False) -> None:
        """Append codes; the tables are rebuilt on the next search."""
        super().add(codes, packed=packed)
        self._tables = None

    def build(self) -> "MultiIndexHashing":
        """Build the hash tables now (otherwise the first search does)."""
        if len(self) == 0:
            raise ValueError("the index is empty: add codes before building")
        if self._tables is None:
            self._tables = _lookup.build_tables(self._packed, self.n_bits, self.m)
        return self

    @property
    def tables_nbytes(self) -> int:
        """Memory held by the hash tables (0 before they are built)."""
        return 0 if self._tables is None else self._tables.nbytes

    def _uses_tables(self, radius: int) -> bool:
        return _lookup.n_probes(radius, _lookup.split_bits(self.n_bits, self.m)) <= max(
            len(self) * self.PROBE_FRACTION, self.PROBE_MIN
        )

    def _range_flat(self, qp: np.ndarray, radius: int, kernels):
        if not self._uses_tables(radius):
            return _kernels.range_search(
                bytes_to_words(qp), self._db_words(), radius, self.n_bits, kernels
            )
        self.build()
        qkeys = _lookup.substring_keys(qp, self.n_bits, self._tables.bounds)
        scan_limit = int(min(len(self) * self.SCAN_FRACTION, 2**62))
        return _lookup.mih_range(
            qkeys,
            bytes_to_words(qp),
            self._db_words(),
            self._tables,
            radius,
            self.n_bits,
            scan_limit,
            kernels,
        )

    def range_search(
        self,
        queries,
        radius: int,
        return_distances: bool = False,
        kernels: str | None = None,
        *,
        packed: bool = False,
    ):
        """Every item at distance ``<= radius`` per query, by (distance, index) (see the class)."""
        radius = check_int(radius, "radius", minimum=0)
        qp = self._queries(queries, packed)
        radius = min(int(radius), self.n_bits)
        if self.backend == "faiss" and not self._uses_tables(radius):
            return super().range_search(qp, radius, return_distances, packed=True)
        idx, dist, lims = self._range_flat(qp, radius, kernels)
        idxs = [idx[lims[i] : lims[i + 1]] for i in range(len(qp))]
        if return_distances:
            return idxs, [dist[lims[i] : lims[i + 1]] for i in range(len(qp))]
        return idxs

    def search(
        self, queries, k: int, kernels: str | None = None, *, packed: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items by increasing-radius lookups (exhaustive once probes cost more
        than a scan): ``(distances int32, indices int64)``, each ``(q, min(k, len))``."""
        k = check_int(k, "k")
        qp = self._queries(queries, packed)
        k = min(k, len(self))
        out_d = np.empty((len(qp), k), np.int32)
        out_i = np.empty((len(qp), k), np.int64)
        todo = np.arange(len(qp))
        for radius in range(self.n_bits + 1):
            if not todo.size:
                break
            if not self._uses_tables(radius):  # the rest by the exhaustive kernels
                out_d[todo], out_i[todo] = super().search(qp[todo], k, kernels, packed=True)
                break
            idx, dist, lims = self._range_flat(qp[todo], radius, kernels)
            done = np.diff(lims) >= k
            for row in np.flatnonzero(done):
                out_i[todo[row]] = idx[lims[row] : lims[row] + k]
                out_d[todo[row]] = dist[lims[row] : lims[row] + k]
            todo = todo[~done]
        return out_d, out_i

    @classmethod
    def load(
        cls, path: str | os.PathLike, backend: str | None = None, m: int | None = None
    ) -> "MultiIndexHashing":
        """Read a file written by ``save`` (of either class) and index it with ``m`` substrings."""
        index = super().load(path, backend=backend)
        if m is not None:
            _lookup.check_m(m, index.n_bits)
            index._m = int(m)
        return index
