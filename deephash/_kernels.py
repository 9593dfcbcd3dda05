"""Hamming-distance kernels behind ``deephash.metrics`` and ``deephash.index``.

Two implementations give the same numbers:

* ``"numba"`` (default): compiled loops over codes packed in uint64 words, popcount through
  the LLVM ``ctpop`` intrinsic, parallel over query blocks, database streamed in tiles that
  stay in cache. Nothing is sorted: metrics come from per-query distance histograms plus
  one pass over the database in index order.
* ``"numpy"``: ``np.bitwise_count`` on the same words, query blocks of bounded size; ranks
  come from a stable counting (radix) sort of the small-integer distances.

Select with the ``kernels`` argument of the public functions or the environment variable
``DEEPHASH_KERNELS=numpy``. Ties are always broken by database index ascending.

Inputs: ``qc``/``dbc`` uint64 ``(n, W)`` code words; ``ql``/``dbl`` uint64 ``(n, L)`` label
words, where ``eq=True`` means column 0 holds class ids (relevant iff equal) and
``eq=False`` means multi-hot bit words (relevant iff ``q & x != 0``).
"""

from __future__ import annotations

import os
import threading
import types as _pytypes

import numpy as np

try:  # numba is an install requirement, but keep the library usable without it
    import numba
    from numba import njit, prange, types
    from numba.extending import intrinsic

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_NUMBA = False

KERNELS = ("numba", "numpy")
# Calls with at most this many (query, item) pairs run on one thread: waking numba's thread
# pool costs milliseconds on a busy machine (7 ms against 0.5 ms of work for one query
# against a million 64-bit codes, measured on 2 shared cores); more work runs in parallel.
SERIAL_PAIRS = 1 << 22
# numba's fallback "workqueue" threading layer aborts the process when two Python threads
# launch parallel kernels at once; serialise our launches (each one uses every core anyway).
_LAUNCH_LOCK = threading.Lock()


def resolve(kernels: str | None = None) -> str:
    """The kernel implementation to use: argument, else ``$DEEPHASH_KERNELS``, else numba."""
    name = kernels if kernels is not None else os.environ.get("DEEPHASH_KERNELS", "numba")
    if name not in KERNELS:
        raise ValueError(f"unknown kernels {name!r}: expected one of {KERNELS}")
    if name == "numba" and not HAVE_NUMBA:  # pragma: no cover
        return "numpy"
    return name


def _dtype_for(n_bits: int):
    return np.uint8 if n_bits < 256 else np.uint16 if n_bits < 65536 else np.uint32


# ----------------------------------------------------------------------------- numpy path


def _np_distances(qc: np.ndarray, dbc: np.ndarray, n_bits: int) -> np.ndarray:
    """Hamming distances ``(len(qc), len(dbc))`` (small unsigned dtype)."""
    out = np.zeros((qc.shape[0], dbc.shape[0]), _dtype_for(n_bits))
    for w in range(qc.shape[1]):
        out += np.bitwise_count(qc[:, w, None] ^ dbc[None, :, w]).astype(out.dtype)
    return out


def _np_relevance(ql: np.ndarray, dbl: np.ndarray, eq: bool) -> np.ndarray:
    if eq:
        return ql[:, 0, None] == dbl[None, :, 0]
    rel = np.zeros((ql.shape[0], dbl.shape[0]), bool)
    for w in range(ql.shape[1]):
        rel |= (ql[:, w, None] & dbl[None, :, w]) != 0
    return rel


def _np_block(n_db: int) -> int:
    return max(1, min(1024, (1 << 22) // max(n_db, 1)))


def np_metric_counts(qc, dbc, ql, dbl, eq, n_bits, top_k, ns, need_ranks):
    """Numpy twin of :func:`nb_metric_counts` (see there)."""
    nq, ndb = qc.shape[0], dbc.shape[0]
    nb1 = n_bits + 1
    hist_all = np.zeros((nq, nb1), np.int64)
    hist_rel = np.zeros((nq, nb1), np.int64)
    ap_sum = np.zeros(nq)
    ap_cnt = np.zeros(nq, np.int64)
    rel_n = np.zeros((nq, len(ns)), np.int64)
    block = _np_block(ndb)
    ranks = np.arange(1, ndb + 1, dtype=np.float64)
    for s in range(0, nq, block):
        e = min(nq, s + block)
        dist = _np_distances(qc[s:e], dbc, n_bits)
        rel = _np_relevance(ql[s:e], dbl, eq)
        rows = np.arange(e - s)[:, None] * nb1
        flat = (rows + dist).ravel()
        hist_all[s:e] = np.bincount(flat, minlength=(e - s) * nb1).reshape(e - s, nb1)
        hist_rel[s:e] = np.bincount(flat, weights=rel.ravel(), minlength=(e - s) * nb1).reshape(
            e - s, nb1
        )
        if not need_ranks:
            continue
        order = np.argsort(dist, axis=1, kind="stable")  # counting sort of small ints: O(N)
        rel_sorted = np.take_along_axis(rel, order, axis=1)
        cum = np.cumsum(rel_sorted, axis=1)
        k = min(top_k, ndb)
        prec = np.where(rel_sorted[:, :k], cum[:, :k] / ranks[:k], 0.0)
        ap_sum[s:e] = prec.sum(axis=1)
        ap_cnt[s:e] = cum[:, k - 1]
        for i, n in enumerate(ns):
            rel_n[s:e, i] = cum[:, min(n, ndb) - 1]
    return hist_all, hist_rel, ap_sum, ap_cnt, rel_n


def np_knn(qc, dbc, k, n_bits):
    """Numpy twin of :func:`nb_knn`."""
    nq, ndb = qc.shape[0], dbc.shape[0]
    k = min(k, ndb)
    out_d = np.empty((nq, k), np.int32)
    out_i = np.empty((nq, k), np.int64)
    block = _np_block(ndb)
    for s in range(0, nq, block):
        e = min(nq, s + block)
        dist = _np_distances(qc[s:e], dbc, n_bits)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        out_i[s:e] = order
        out_d[s:e] = np.take_along_axis(dist, order, axis=1)
    return out_d, out_i


def np_range(qc, dbc, radius, n_bits):
    """Numpy twin of :func:`nb_range`: flat indices, distances and per-query offsets."""
    nq, ndb = qc.shape[0], dbc.shape[0]
    idx_parts, d_parts, counts = [], [], np.zeros(nq, np.int64)
    block = _np_block(ndb)
    for s in range(0, nq, block):
        e = min(nq, s + block)
        dist = _np_distances(qc[s:e], dbc, n_bits)
        for r in range(e - s):
            hit = np.flatnonzero(dist[r] <= radius)
            dh = dist[r, hit]
            o = np.argsort(dh, kind="stable")
            idx_parts.append(hit[o].astype(np.int64))
            d_parts.append(dh[o].astype(np.int32))
            counts[s + r] = hit.size
    offsets = np.zeros(nq + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    cat = lambda p, t: np.concatenate(p) if p else np.zeros(0, t)
    return cat(idx_parts, np.int64), cat(d_parts, np.int32), offsets


# ----------------------------------------------------------------------------- numba path

if HAVE_NUMBA:

    @intrinsic
    def _popcount(typingctx, x):
        """LLVM ``ctpop`` on a uint64 (one POPCNT / VPOPCNTQ instruction)."""
        if not isinstance(x, types.Integer):
            return None
        sig = types.uint64(types.uint64)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return sig, codegen

    def serial_twin(dispatcher, name: str):
        """The same kernel compiled without ``parallel`` (``prange`` runs as ``range``), under
        its own name so that numba's on-disk cache keeps the two apart."""
        f = dispatcher.py_func
        g = _pytypes.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
        g.__qualname__, g.__doc__ = name, f.__doc__
        return njit(cache=True)(g)

    _TILE = 2048  # database items per tile: codes + labels of a tile stay in L1/L2

    @njit(cache=True, inline="always")
    def _tile_distances(qc, q, dbc, t0, t1, dt):
        """``dt[t - t0] = popcount(qc[q] ^ dbc[t])`` (vectorised by LLVM)."""
        W = qc.shape[1]
        ct = dbc[t0:t1]  # a view indexed from 0: LLVM sees non-negative indices (no gathers)
        if W == 1:
            qw = qc[q, 0]
            for t in range(ct.shape[0]):
                dt[t] = _popcount(qw ^ ct[t, 0])
        else:
            for t in range(ct.shape[0]):
                s = np.uint64(0)
                for w in range(W):
                    s += _popcount(qc[q, w] ^ ct[t, w])
                dt[t] = s

    @njit(cache=True, inline="always")
    def _tile_keys(qc, q, ql, eq, t0, t1, kt, dbc1, dbl1, dT, lT, acc):
        """``kt[t - t0] = 2 * distance + relevant`` for database items ``t0..t1``.

        ``dbc1`` / ``dbl1`` are the database codes / labels raveled (contiguous 1-D), used when
        codes and labels fit in one word; otherwise ``dT`` / ``lT`` hold them word-major
        (``(W, N)``, ``(L, N)``) and ``acc`` is uint64 scratch: one pass per word over
        contiguous rows, so that LLVM vectorises every loop (VPOPCNTQ on AVX-512).
        """
        W = qc.shape[1]
        L = ql.shape[1]
        # views indexed from 0: with a non-negative index LLVM emits plain vector loads
        # (indexing with t0 + t made it use gathers, several times slower)
        if W == 1 and L == 1:
            qw = qc[q, 0]
            lq = ql[q, 0]
            c1 = dbc1[t0:t1]
            l1 = dbl1[t0:t1]
            if eq:
                for t in range(c1.shape[0]):
                    kt[t] = 2 * _popcount(qw ^ c1[t]) + (l1[t] == lq)
            else:
                for t in range(c1.shape[0]):
                    kt[t] = 2 * _popcount(qw ^ c1[t]) + ((l1[t] & lq) != 0)
        else:
            n = t1 - t0
            c = dT[0, t0:t1]
            qw = qc[q, 0]
            for t in range(n):
                kt[t] = _popcount(qw ^ c[t])
            for w in range(1, W):
                c = dT[w, t0:t1]
                qw = qc[q, w]
                for t in range(n):
                    kt[t] += _popcount(qw ^ c[t])
            la = lT[0, t0:t1]
            lq = ql[q, 0]
            if eq:
                for t in range(n):
                    kt[t] = 2 * kt[t] + (la[t] == lq)
            else:
                for t in range(n):
                    acc[t] = la[t] & lq
                for w in range(1, L):
                    la = lT[w, t0:t1]
                    lq = ql[q, w]
                    for t in range(n):
                        acc[t] |= la[t] & lq
                for t in range(n):
                    kt[t] = 2 * kt[t] + (acc[t] != 0)

    @njit(cache=True, fastmath={"reassoc", "nsz", "arcp", "contract"})
    def _sum_precisions(num, den, dd, relbefore, n):
        """``sum((relbefore[dd] + num) / den)`` over the first ``n`` entries, vectorised."""
        s = 0.0
        for i in range(n):
            s += (relbefore[dd[i]] + num[i]) / den[i]
        return s

    @njit(parallel=True, cache=True)
    def nb_metric_counts(qc, dbc, ql, dbl, eq, n_bits, top_k, ns, need_ranks, nthreads, rproto, S):
        """Per-query counts from which every metric follows exactly.

        Returns ``hist_all, hist_rel`` (Q, k+1): items / relevant items at each distance;
        ``ap_sum`` (Q,): sum over relevant items ranked within ``top_k`` of P@rank;
        ``ap_cnt`` (Q,): relevant items within ``top_k``; ``rel_n`` (Q, len(ns)): relevant
        items among the first ``n`` of the ranking. Ranking = (distance, index) ascending.

        One pass over the database in index order per query: a histogram of distances and,
        for every relevant item, a record ``(distance, #items before it at that distance)``.
        Its rank is then ``#items at smaller distances + #items before it at its distance + 1``
        and the relevant items ranked up to it are ``#relevant at smaller distances +
        #relevant records up to it at its distance``.

        Each histogram counter holds ``count << S | distance``, so the counter value *is* the
        record of the next item at that distance (no shift/or per item); records are stored
        branch-free (every item writes, only relevant ones advance). ``rproto`` is an empty
        array whose dtype (int32 or int64) is the record type and ``S`` the shift: the caller
        picks int32 / 8 when ``n_bits < 256`` and ``len(dbc) <= 2**23``, else int64 / 16.
        """
        nq = qc.shape[0]
        ndb = dbc.shape[0]
        nb1 = n_bits + 1
        hist_all = np.zeros((nq, nb1), np.int64)
        hist_rel = np.zeros((nq, nb1), np.int64)
        ap_sum = np.zeros(nq)
        ap_cnt = np.zeros(nq, np.int64)
        n_ns = ns.shape[0]
        rel_n = np.zeros((nq, n_ns), np.int64)
        nmax = 0
        for i in range(n_ns):
            nmax = max(nmax, ns[i])
        K = min(top_k, ndb)
        one = 1 << S
        mask = one - 1
        umask = np.uint64(mask)
        uS = np.uint64(S)
        dbc1 = dbc.reshape(dbc.size)
        dbl1 = dbl.reshape(dbl.size)
        if dbc.shape[1] == 1 and dbl.shape[1] == 1:
            dT = np.empty((1, 1), np.uint64)
            lT = np.empty((1, 1), np.uint64)
        else:  # word-major copies (several words per code or label)
            dT = np.ascontiguousarray(dbc.T)
            lT = np.ascontiguousarray(dbl.T)
        B = max(1, min(16, (1 << 24) // ndb)) if need_ranks else 16
        nblocks = (nq + B - 1) // B
        nchunks = min(nblocks, nthreads)
        for c in prange(nchunks):
            kt = np.empty(_TILE, np.uint32)
            acc = np.empty(_TILE, np.uint64)
            cnt = np.zeros((B, 2 * nb1), np.int64)
            rec = np.empty((B, ndb if need_ranks else 1), rproto.dtype)
            nrec = np.zeros(B, np.uint64)
            before = np.empty(nb1 + 1, np.int64)
            relbefore = np.empty(nb1 + 1, np.int64)
            rs = np.empty(nb1, np.int64)
            num = np.empty(ndb if need_ranks else 1)
            den = np.empty(ndb if need_ranks else 1)
            dd = np.empty(ndb if need_ranks else 1, np.uint64)
            for blk in range(c, nblocks, nchunks):
                q0 = blk * B
                nb = min(B, nq - q0)
                cnt[:] = 0
                nrec[:] = 0
                if need_ranks:  # cnt[b, d] = (#items so far at distance d) << S | d
                    for b in range(nb):
                        for d in range(nb1):
                            cnt[b, d] = d
                for t0 in range(0, ndb, _TILE):
                    t1 = min(ndb, t0 + _TILE)
                    nt = t1 - t0
                    for b in range(nb):
                        _tile_keys(qc, q0 + b, ql, eq, t0, t1, kt, dbc1, dbl1, dT, lT, acc)
                        cb = cnt[b]
                        if need_ranks:
                            rb = rec[b]
                            n = nrec[b]
                            for t in range(nt):
                                key = kt[t]
                                d = key >> np.uint32(1)
                                # the counter already holds the record of a relevant item:
                                # (#items before it at its distance) << S | distance
                                v = cb[d]
                                rb[n] = v
                                cb[d] = v + one
                                n += key & np.uint32(1)
                            nrec[b] = n
                        else:
                            for t in range(nt):
                                cb[kt[t]] += 1
                for b in range(nb):
                    q = q0 + b
                    cb = cnt[b]
                    if not need_ranks:  # cb[2d + r]: items at distance d with relevance r
                        for d in range(nb1):
                            hist_all[q, d] = cb[2 * d] + cb[2 * d + 1]
                            hist_rel[q, d] = cb[2 * d + 1]
                        continue
                    # cb[d]: items at distance d; records: relevant items in index order
                    before[0] = 0
                    for d in range(nb1):
                        hist_all[q, d] = cb[d] >> S
                        before[d + 1] = before[d] + (cb[d] >> S)
                        rs[d] = 0
                    na = 0
                    rb = rec[b]
                    for i in range(np.int64(nrec[b])):
                        v = np.uint64(rb[i])  # unsigned indices: no wraparound checks
                        d = v & umask
                        rs[d] += 1
                        rank = before[d] + np.int64(v >> uS) + 1
                        if rank <= K:  # P@rank = (relevant at smaller distances + rs[d]) / rank
                            num[na] = rs[d]
                            den[na] = rank
                            dd[na] = d
                            na += 1
                        if rank <= nmax:
                            for j in range(n_ns):
                                if rank <= ns[j]:
                                    rel_n[q, j] += 1
                    relbefore[0] = 0
                    for d in range(nb1):
                        hist_rel[q, d] = rs[d]
                        relbefore[d + 1] = relbefore[d] + rs[d]
                    ap_sum[q] = _sum_precisions(num, den, dd, relbefore, na)
                    ap_cnt[q] = na
        return hist_all, hist_rel, ap_sum, ap_cnt, rel_n

    @njit(parallel=True, cache=True)
    def nb_knn(qc, dbc, k, n_bits, nthreads):
        """The ``k`` nearest items per query, ordered by (distance, index); one pass.

        A per-query threshold ``acc`` (largest distance that can still enter the top k) falls
        as candidates arrive; items above it are skipped with one comparison. Ties lose
        against earlier items, so once ``k`` candidates lie at distance <= t, only items at
        distance < t are accepted. Survivors are placed by counting sort on distance.
        """
        nq = qc.shape[0]
        ndb = dbc.shape[0]
        k = min(k, ndb)
        nb1 = n_bits + 2
        out_d = np.empty((nq, k), np.int32)
        out_i = np.empty((nq, k), np.int64)
        B = 16
        cap = max(4 * k, 1024)
        nblocks = (nq + B - 1) // B
        nchunks = min(nblocks, nthreads)
        for c in prange(nchunks):
            dt = np.empty(_TILE, np.int32)
            cnt = np.zeros((B, nb1), np.int64)
            ci = np.empty((B, cap), np.int64)
            cd = np.empty((B, cap), np.int64)
            nc = np.zeros(B, np.int64)
            accs = np.zeros(B, np.int64)
            ss = np.zeros(B, np.int64)
            pos = np.empty(nb1, np.int64)
            for blk in range(c, nblocks, nchunks):
                q0 = blk * B
                nb = min(B, nq - q0)
                cnt[:] = 0
                nc[:] = 0
                ss[:] = 0
                accs[:] = n_bits
                for t0 in range(0, ndb, _TILE):
                    t1 = min(ndb, t0 + _TILE)
                    for b in range(nb):
                        _tile_distances(qc, q0 + b, dbc, t0, t1, dt)
                        acc = accs[b]
                        for t in range(t1 - t0):
                            d = dt[t]
                            if d <= acc:
                                n = nc[b]
                                if n == cap:  # compact: keep what can still be in the top k
                                    quota = k - ss[b]
                                    m = 0
                                    for i in range(n):
                                        di = cd[b, i]
                                        if di <= acc or (di == acc + 1 and quota > 0):
                                            if di == acc + 1:
                                                quota -= 1
                                            ci[b, m] = ci[b, i]
                                            cd[b, m] = di
                                            m += 1
                                    n = m
                                ci[b, n] = t0 + t
                                cd[b, n] = d
                                nc[b] = n + 1
                                cnt[b, d] += 1
                                s = ss[b] + 1
                                while s >= k and acc >= 0:
                                    s -= cnt[b, acc]
                                    acc -= 1
                                ss[b] = s
                        accs[b] = acc
                for b in range(nb):
                    q = q0 + b
                    acc = accs[b]
                    quota = k - ss[b]
                    # counting-sort offsets for distances 0..acc+1
                    p = 0
                    for d in range(acc + 2):
                        pos[d] = p
                        p += cnt[b, d] if d <= acc else quota
                    for i in range(nc[b]):
                        di = cd[b, i]
                        if di <= acc or (di == acc + 1 and quota > 0):
                            if di == acc + 1:
                                quota -= 1
                            out_i[q, pos[di]] = ci[b, i]
                            out_d[q, pos[di]] = di
                            pos[di] += 1
        return out_d, out_i

    @njit(parallel=True, cache=True)
    def _nb_range_count(qc, dbc, radius, n_bits):
        nq = qc.shape[0]
        ndb = dbc.shape[0]
        counts = np.zeros(nq, np.int64)
        for q in prange(nq):
            dt = np.empty(_TILE, np.int32)
            n = 0
            for t0 in range(0, ndb, _TILE):
                t1 = min(ndb, t0 + _TILE)
                _tile_distances(qc, q, dbc, t0, t1, dt)
                for t in range(t1 - t0):
                    n += 1 if dt[t] <= radius else 0
            counts[q] = n
        return counts

    @njit(parallel=True, cache=True)
    def _nb_range_fill(qc, dbc, radius, n_bits, offsets):
        nq = qc.shape[0]
        ndb = dbc.shape[0]
        out_i = np.empty(offsets[nq], np.int64)
        out_d = np.empty(offsets[nq], np.int32)
        r = min(radius, n_bits)
        for q in prange(nq):
            dt = np.empty(_TILE, np.int32)
            pos = np.zeros(r + 2, np.int64)
            # first pass: histogram of hits by distance -> offsets (counting sort)
            for t0 in range(0, ndb, _TILE):
                t1 = min(ndb, t0 + _TILE)
                _tile_distances(qc, q, dbc, t0, t1, dt)
                for t in range(t1 - t0):
                    if dt[t] <= r:
                        pos[dt[t] + 1] += 1
            pos[0] = offsets[q]
            for d in range(1, r + 2):
                pos[d] += pos[d - 1]
            for t0 in range(0, ndb, _TILE):
                t1 = min(ndb, t0 + _TILE)
                _tile_distances(qc, q, dbc, t0, t1, dt)
                for t in range(t1 - t0):
                    d = dt[t]
                    if d <= r:
                        out_i[pos[d]] = t0 + t
                        out_d[pos[d]] = d
                        pos[d] += 1
        return out_i, out_d

    nb_knn_serial = serial_twin(nb_knn, "nb_knn_serial")
    _nb_range_count_serial = serial_twin(_nb_range_count, "_nb_range_count_serial")
    _nb_range_fill_serial = serial_twin(_nb_range_fill, "_nb_range_fill_serial")

    def nb_range(qc, dbc, radius, n_bits, serial=False):
        """Items within ``radius`` (inclusive) per query, ordered by (distance, index)."""
        count, fill = (
            (_nb_range_count_serial, _nb_range_fill_serial)
            if serial
            else (_nb_range_count, _nb_range_fill)
        )
        counts = count(qc, dbc, radius, n_bits)
        offsets = np.zeros(qc.shape[0] + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        idx, dist = fill(qc, dbc, radius, n_bits, offsets)
        return idx, dist, offsets


# ----------------------------------------------------------------------------- dispatch


def metric_counts(qc, dbc, ql, dbl, eq, n_bits, top_k, ns, need_ranks, kernels=None):
    """Dispatch to the numba or numpy implementation (identical results)."""
    ns = np.asarray(ns, np.int64).reshape(-1)
    top_k = int(min(top_k, dbc.shape[0]))
    if resolve(kernels) == "numba":
        with _LAUNCH_LOCK:
            # a record is (#items before it at its distance) << S | distance: int32 when it fits
            # (halves the memory traffic of the records), else int64
            small = n_bits < 256 and dbc.shape[0] <= 1 << 23
            rproto = np.empty(0, np.int32 if small else np.int64)
            return nb_metric_counts(
                qc,
                dbc,
                ql,
                dbl,
                bool(eq),
                int(n_bits),
                top_k,
                ns,
                bool(need_ranks),
                numba.get_num_threads(),
                rproto,
                8 if small else 16,
            )
    return np_metric_counts(qc, dbc, ql, dbl, bool(eq), int(n_bits), top_k, ns, bool(need_ranks))


def small_call(n_queries: int, n_items: int) -> bool:
    """Whether a numba call is small enough to run on one thread (``SERIAL_PAIRS``)."""
    return int(n_queries) * int(n_items) <= SERIAL_PAIRS


def knn(qc, dbc, k, n_bits, kernels=None):
    """``(distances int32, indices int64)`` of the ``min(k, N)`` nearest, by (distance, index)."""
    if resolve(kernels) == "numba":
        with _LAUNCH_LOCK:
            if qc.shape[0] <= 16 or small_call(
                qc.shape[0], dbc.shape[0]
            ):  # 16: nb_knn's query block
                return nb_knn_serial(qc, dbc, int(k), int(n_bits), 1)
            return nb_knn(qc, dbc, int(k), int(n_bits), numba.get_num_threads())
    return np_knn(qc, dbc, int(k), int(n_bits))


def range_search(qc, dbc, radius, n_bits, kernels=None):
    """Flat ``(indices, distances, offsets)`` of items at distance <= radius, by (distance, index)."""
    if resolve(kernels) == "numba":
        with _LAUNCH_LOCK:
            serial = qc.shape[0] == 1 or small_call(qc.shape[0], dbc.shape[0])
            return nb_range(qc, dbc, int(radius), int(n_bits), serial)
    return np_range(qc, dbc, int(radius), int(n_bits))
