"""Multi-index hashing tables and their exact radius-search kernels (numba + numpy twins).

Multi-index hashing (Norouzi, Punjani, Fleet, "Fast search in Hamming space with
multi-index hashing", CVPR 2012 / TPAMI 2014): split ``n_bits``-bit codes into ``m``
disjoint substrings of ``floor(n_bits/m)`` or ``ceil(n_bits/m)`` bits (the longer ones
first) and index each substring in its own table ``key -> item ids``. Write the search
radius as ``r = s*m + a`` with ``0 <= a < m``. If ``||h - g|| <= r`` then one of the first
``a + 1`` substrings is within ``s`` of the query's, or one of the others is within
``s - 1`` (else the distance would be at least ``(a+1)(s+1) + (m-a-1)s = r + 1``).
So probing every key within ``s`` (resp. ``s - 1``) of the query's substring in each table,
then verifying the full distance of the deduplicated candidates, finds every item within
``r`` and nothing else. With ``m = 1`` this is a plain hash-table lookup of every code
within ``r`` of the query.

A table is CSR arrays built with a stable argsort: sorted distinct keys ``ukeys``, and for
bucket ``b`` the item ids ``ids[bstart[b]:bend[b]]`` in ascending order. A probe is a binary
search in ``ukeys``. Substring keys are uint64, so a substring holds at most 64 bits.

Probes that would cost more than a scan fall back to one: the caller scans the whole
database when a query needs more than ``max(N / 1024, 32)`` probes (``PROBE_FRACTION``), and a
query whose buckets hold more than ``scan_limit`` candidates (``N / 64`` by default; both from
``benchmarks/lookup.py --sweep``) goes to the exhaustive range kernel. Results are identical
either way: every item at distance ``<= r``, ordered by (distance, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deephash import _kernels
from deephash.codes import unpack
from deephash.validation import check_int, fail

MAX_SUBSTRING_BITS = 64


def choose_m(n_bits: int, n: int) -> int:
    """Number of substrings by the paper's rule ``m ~ n_bits / log2(n)``, at least enough
    substrings of <= 64 bits, at most ``n_bits``."""
    m = round(n_bits / math.log2(max(n, 2)))
    return int(min(n_bits, max(1, m, math.ceil(n_bits / MAX_SUBSTRING_BITS))))


def check_m(m, n_bits: int) -> None:
    """ValueError unless ``1 <= m <= n_bits`` and every substring fits in 64 bits."""
    m = check_int(m, "m", owner="MultiIndexHashing")
    if m > n_bits:
        fail(
            "m",
            f"<= n_bits ({n_bits}): m substrings cannot split {n_bits}-bit codes",
            m,
            "MultiIndexHashing",
        )
    if math.ceil(n_bits / m) > MAX_SUBSTRING_BITS:
        low = math.ceil(n_bits / MAX_SUBSTRING_BITS)
        fail(
            "m",
            f">= {low} (each of the m substrings holds at most {MAX_SUBSTRING_BITS} bits: "
            f"the {MAX_SUBSTRING_BITS}-bit substring limit: use m >= {low})",
            m,
            "MultiIndexHashing",
        )


def split_bits(n_bits: int, m: int) -> list[tuple[int, int]]:
    """Bit ranges ``[start, end)`` of the ``m`` substrings (longer ones first)."""
    q, rem = divmod(n_bits, m)
    bounds, start = [], 0
    for j in range(m):
        end = start + q + (1 if j < rem else 0)
        bounds.append((start, end))
        start = end
    return bounds


def substring_keys(packed: np.ndarray, n_bits: int, bounds, chunk: int = 1 << 18) -> np.ndarray:
    """uint64 ``(n, m)``: substring ``j`` of each code as an integer (its bits right-aligned)."""
    n = packed.shape[0]
    out = np.empty((n, len(bounds)), np.uint64)
    for s in range(0, n, chunk):
        bits = unpack(packed[s : s + chunk], n_bits)
        for j, (a, b) in enumerate(bounds):
            tmp = np.zeros((bits.shape[0], 64), bool)
            tmp[:, 64 - (b - a) :] = bits[:, a:b]
            out[s : s + chunk, j] = np.packbits(tmp, axis=1).view(">u8").ravel()
    return out


def flip_masks(length: int, radius: int) -> np.ndarray:
    """uint64 masks of every ``length``-bit pattern with at most ``radius`` bits set (by weight)."""
    masks = [np.zeros(1, np.uint64)]
    prev, tops = masks[0], np.full(1, -1)
    for _ in range(min(radius, length)):
        parts, ptops = [], []
        for bit in range(length):  # extend each mask by a bit above its highest one
            sel = prev[tops < bit]
            parts.append(sel | np.uint64(1 << bit))
            ptops.append(np.full(sel.size, bit))
        prev, tops = np.concatenate(parts), np.concatenate(ptops)
        masks.append(prev)
    return np.concatenate(masks)


def probe_radii(radius: int, m: int) -> list[int]:
    """Per-substring radius: ``s`` for the first ``a + 1``, ``s - 1`` (-1 = skip) for the rest."""
    s, a = divmod(radius, m)
    return [s if j <= a else s - 1 for j in range(m)]


def n_probes(radius: int, bounds) -> int:
    """Total number of keys probed per query over all tables."""
    return sum(
        sum(math.comb(b - a, i) for i in range(min(rj, b - a) + 1)) if rj >= 0 else 0
        for (a, b), rj in zip(bounds, probe_radii(radius, len(bounds)))
    )


@dataclass
class Tables:
    """``m`` CSR hash tables over substring keys (see module docstring)."""

    bounds: list
    ukeys: np.ndarray  # uint64 (sum U_j,): sorted distinct keys of table j at tkoff[j]:tkoff[j+1]
    tkoff: np.ndarray  # int64 (m + 1,)
    bstart: np.ndarray  # int64 (sum U_j,): bucket b's ids are ids[bstart[b]:bend[b]]
    bend: np.ndarray
    ids: np.ndarray  # int32 / int64 (m * N,): item ids, ascending within a bucket

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ukeys, self.tkoff, self.bstart, self.bend, self.ids))


def build_tables(packed: np.ndarray, n_bits: int, m: int) -> Tables:
    """Build the ``m`` tables over packed codes ``uint8 (N, ceil(n_bits/8))``."""
    bounds = split_bits(n_bits, m)
    keys = substring_keys(packed, n_bits, bounds)
    n = packed.shape[0]
    ids = np.empty(m * n, np.int32 if n < 2**31 else np.int64)
    ukeys, bstart, bend, tkoff = [], [], [], [0]
    for j in range(m):
        order = np.argsort(keys[:, j], kind="stable")  # stable: ids ascending within a bucket
        sk = keys[order, j]
        cut = np.flatnonzero(sk[1:] != sk[:-1]) + 1
        starts = np.concatenate([[0], cut]).astype(np.int64)
        ukeys.append(sk[starts])
        bstart.append(j * n + starts)
        bend.append(j * n + np.concatenate([cut, [n]]).astype(np.int64))
        ids[j * n : (j + 1) * n] = order
        tkoff.append(tkoff[-1] + starts.size)
    return Tables(
        bounds,
        np.concatenate(ukeys),
        np.asarray(tkoff, np.int64),
        np.concatenate(bstart),
        np.concatenate(bend),
        ids,
    )


def _plan(tables: Tables, radius: int):
    """Concatenated flip masks per table and their offsets ``moff (m + 1,)``."""
    parts, moff = [], [0]
    for (a, b), rj in zip(tables.bounds, probe_radii(radius, len(tables.bounds))):
        mk = flip_masks(b - a, rj) if rj >= 0 else np.zeros(0, np.uint64)
        parts.append(mk)
        moff.append(moff[-1] + mk.size)
    return np.concatenate(parts), np.asarray(moff, np.int64)


# ----------------------------------------------------------------------------- numpy path


def np_mih_range(qkeys, qc, dbc, tables: Tables, radius, n_bits, scan_limit):
    """Numpy twin of :func:`nb_mih_range` (one Python iteration per query)."""
    masks, moff = _plan(tables, radius)
    n = dbc.shape[0]
    m = qkeys.shape[1]
    idx_parts, d_parts, counts = [], [], np.zeros(len(qc), np.int64)
    for q in range(len(qc)):
        ranges = []
        for j in range(m):
            uk = tables.ukeys[tables.tkoff[j] : tables.tkoff[j + 1]]
            keys = qkeys[q, j] ^ masks[moff[j] : moff[j + 1]]
            pos = np.searchsorted(uk, keys)
            ok = pos < uk.size
            ok[ok] = uk[pos[ok]] == keys[ok]
            b = tables.tkoff[j] + pos[ok]
            ranges.extend(zip(tables.bstart[b], tables.bend[b]))
        if sum(e - s for s, e in ranges) > scan_limit:
            cand = np.arange(n)
        else:
            cand = np.unique(
                np.concatenate([tables.ids[s:e] for s, e in ranges] or [np.zeros(0, np.int64)])
            )
        dist = np.bitwise_count(dbc[cand] ^ qc[q]).sum(axis=1, dtype=np.int64)
        keep = dist <= radius
        cand, dist = cand[keep].astype(np.int64), dist[keep]
        order = np.lexsort((cand, dist))
        idx_parts.append(cand[order])
        d_parts.append(dist[order].astype(np.int32))
        counts[q] = cand.size
    offsets = np.zeros(len(qc) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return np.concatenate(idx_parts), np.concatenate(d_parts), offsets


# ----------------------------------------------------------------------------- numba path

if _kernels.HAVE_NUMBA:
    from numba import njit, prange

    _popcount = _kernels._popcount

    @njit(cache=True)
    def _reserve(buf, n, need):
        """``buf`` (holding ``n`` values) grown to at least ``need`` slots."""
        if need <= buf.shape[0]:
            return buf
        grown = np.empty(max(need, 2 * buf.shape[0]), buf.dtype)
        grown[:n] = buf[:n]
        return grown

    # one numba kernel loop (probe, verify, sort per query) over a prange of queries
    @njit(parallel=True, cache=True)
    def _nb_mih(  # noqa: C901
        qkeys,
        qc,
        dbc,
        ukeys,
        tkoff,
        bstart,
        bend,
        ids,
        masks,
        moff,
        radius,
        scan_limit,
        nthreads,
        fill,
        offsets,
        out_i,
        out_d,
        scan,
    ):
        """Per-query hit counts; with ``fill`` also writes hits at ``offsets`` by (distance, index).

        Per query: binary-search every probe key in its table, sum the bucket sizes; if they
        exceed ``scan_limit`` mark the query in ``scan`` (count 0: the caller answers it with
        the exhaustive kernel), else verify each candidate once (``seen[t] == stamp`` marks
        candidates already met in an earlier table). Hits are kept as ``distance * N +
        index`` so that one sort gives the (distance, index) order. With ``fill``, marked
        queries are skipped.
        """
        nq = qc.shape[0]
        ndb = dbc.shape[0]
        m = qkeys.shape[1]
        W = qc.shape[1]
        counts = np.zeros(nq, np.int64)
        nchunks = max(1, min(nq, nthreads))
        for c in prange(nchunks):
            seen = np.zeros(ndb if m > 1 else 1, np.int32)
            found = np.empty(max(1, masks.shape[0]), np.int64)
            hits = np.empty(1024, np.int64)
            for q in range(c, nq, nchunks):
                if fill and scan[q]:
                    continue
                nf = 0
                ncand = 0
                for j in range(m):
                    k0 = tkoff[j]
                    uk = ukeys[k0 : tkoff[j + 1]]
                    qk = qkeys[q, j]
                    for p in range(moff[j], moff[j + 1]):
                        key = qk ^ masks[p]
                        pos = np.searchsorted(uk, key)
                        if pos < uk.shape[0] and uk[pos] == key:
                            found[nf] = k0 + pos
                            nf += 1
                            ncand += bend[k0 + pos] - bstart[k0 + pos]
                if ncand > scan_limit:
                    scan[q] = True
                    continue
                nh = 0
                stamp = np.int32(q + 1)
                for f in range(nf):
                    b = found[f]
                    hits = _reserve(hits, nh, nh + bend[b] - bstart[b])
                    for e in range(bstart[b], bend[b]):
                        t = np.int64(ids[e])
                        if m > 1:
                            if seen[t] == stamp:
                                continue
                            seen[t] = stamp
                        d = 0
                        for w in range(W):
                            d += _popcount(qc[q, w] ^ dbc[t, w])
                        hits[nh] = np.int64(d) * ndb + t
                        nh += 1 if d <= radius else 0
                counts[q] = nh
                if fill:
                    o = offsets[q]
                    h = np.sort(hits[:nh])
                    for i in range(nh):
                        out_i[o + i] = h[i] % ndb
                        out_d[o + i] = h[i] // ndb
        return counts

    _nb_mih_serial = _kernels.serial_twin(_nb_mih, "_nb_mih_serial")

    def nb_mih_range(qkeys, qc, dbc, tables: Tables, radius, n_bits, scan_limit):
        """Items within ``radius`` per query via the tables: ``(indices, distances, offsets)``.

        Queries whose buckets hold more than ``scan_limit`` candidates are answered by the
        exhaustive range kernel (``_kernels.nb_range``), all of them in one call."""
        masks, moff = _plan(tables, radius)
        t = tables
        args = (
            qkeys,
            qc,
            dbc,
            t.ukeys,
            t.tkoff,
            t.bstart,
            t.bend,
            t.ids,
            masks,
            moff,
            int(radius),
            int(scan_limit),
            _kernels.numba.get_num_threads(),
        )
        nq = qc.shape[0]
        # one thread for few queries (the lookups are microseconds; waking the pool is not),
        # or when even scanning every query would be a small call
        mih = _nb_mih_serial if nq <= 8 or _kernels.small_call(nq, dbc.shape[0]) else _nb_mih
        scan = np.zeros(nq, np.bool_)
        none_i, none_d = np.zeros(0, np.int64), np.zeros(0, np.int32)
        counts = mih(*args, False, np.zeros(nq + 1, np.int64), none_i, none_d, scan)
        sq = np.flatnonzero(scan)
        if sq.size:
            s_i, s_d, s_off = _kernels.nb_range(qc[sq], dbc, int(radius), int(n_bits))
            counts[sq] = np.diff(s_off)
        offsets = np.zeros(nq + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        out_i = np.empty(offsets[-1], np.int64)
        out_d = np.empty(offsets[-1], np.int32)
        mih(*args, True, offsets, out_i, out_d, scan)
        if sq.size:  # the scanned queries' hits, each block moved to its query's offset
            n = np.diff(s_off)
            dest = np.repeat(offsets[sq] - s_off[:-1], n) + np.arange(s_off[-1])
            out_i[dest] = s_i
            out_d[dest] = s_d
        return out_i, out_d, offsets


def mih_range(qkeys, qc, dbc, tables: Tables, radius, n_bits, scan_limit, kernels=None):
    """Dispatch to the numba or numpy implementation (identical results)."""
    if _kernels.resolve(kernels) == "numba":
        with _kernels._LAUNCH_LOCK:
            return nb_mih_range(qkeys, qc, dbc, tables, radius, n_bits, scan_limit)
    return np_mih_range(qkeys, qc, dbc, tables, radius, n_bits, scan_limit)
