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

from deephash.validation import check_choice

try:  # numba is an install requirement, but keep the library usable without it
    import numba
    from llvmlite import ir
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
# result slots of a range search's single pass, shared out over the threads (12 bytes each,
# plus 16 per slot, at most one per item, for a query's hits: 56 MiB in all); calls with
# more hits take two passes
RANGE_SLOTS = 1 << 21
# numba's fallback "workqueue" threading layer aborts the process when two Python threads
# launch parallel kernels at once; serialise our launches (each one uses every core anyway).
_LAUNCH_LOCK = threading.Lock()


def resolve(kernels: str | None = None) -> str:
    """The kernel implementation to use: argument, else ``$DEEPHASH_KERNELS``, else numba."""
    name = kernels if kernels is not None else os.environ.get("DEEPHASH_KERNELS", "numba")
    check_choice(name, KERNELS, "kernels")
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

    def cat(p, t):
        return np.concatenate(p) if p else np.zeros(0, t)

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

    def _vector_at(context, builder, aryty, ary, start, n):
        """``n`` consecutive elements of a 1-D C-contiguous array from ``start``, as one LLVM
        vector (an unaligned vector load; the caller keeps ``start + n`` within the array)."""
        a = context.make_array(aryty)(context, builder, ary)
        vty = ir.VectorType(context.get_data_type(aryty.dtype), n)
        ptr = builder.bitcast(builder.gep(a.data, [start]), vty.as_pointer())
        return builder.load(ptr, align=1), vty

    def _small_1d(arr) -> bool:
        return (
            isinstance(arr, types.Array)
            and arr.ndim == 1
            and arr.layout == "C"
            and arr.dtype in (types.uint8, types.uint16)
        )

    def _cmpmask32(op: str, doc: str):
        """An intrinsic ``(arr, start, value) -> uint64``: bit ``i`` set iff
        ``arr[start + i] <op> value`` (unsigned), ``i < 32``; ``vpcmpeqb`` / ``vpminub`` +
        ``vpmovmskb`` on AVX2 for uint8 (two of each for uint16). ``value`` is cast to the
        array's dtype: the caller keeps it in range."""

        def impl(typingctx, arr, start, value):
            if not _small_1d(arr):
                return None

            def codegen(context, builder, signature, args):
                aty, sty, xty = signature.args
                s = context.cast(builder, args[1], sty, types.intp)
                v, vty = _vector_at(context, builder, aty, args[0], s, 32)
                x = context.cast(builder, args[2], xty, aty.dtype)
                zero = ir.Constant(ir.IntType(32), 0)
                splat = builder.insert_element(ir.Constant(vty, ir.Undefined), x, zero)
                splat = builder.shuffle_vector(
                    splat,
                    ir.Constant(vty, ir.Undefined),
                    ir.Constant(ir.VectorType(ir.IntType(32), 32), None),
                )
                m = builder.bitcast(builder.icmp_unsigned(op, v, splat), ir.IntType(32))
                return builder.zext(m, ir.IntType(64))

            return types.uint64(arr, start, value), codegen

        impl.__doc__ = doc
        return intrinsic(impl)

    _eqmask32 = _cmpmask32("==", "Bit ``i`` set iff ``arr[start + i] == value``, ``i < 32``.")
    _lemask32 = _cmpmask32("<=", "Bit ``i`` set iff ``arr[start + i] <= value``, ``i < 32``.")

    @intrinsic
    def _nzmask32(typingctx, arr, start):
        """Bit ``i`` set iff ``arr[start + i] != 0``, ``i < 32``."""
        if not _small_1d(arr):
            return None

        def codegen(context, builder, signature, args):
            aty, sty = signature.args
            s = context.cast(builder, args[1], sty, types.intp)
            v, vty = _vector_at(context, builder, aty, args[0], s, 32)
            m = builder.bitcast(
                builder.icmp_unsigned("!=", v, ir.Constant(vty, None)), ir.IntType(32)
            )
            return builder.zext(m, ir.IntType(64))

        return types.uint64(arr, start), codegen

    @intrinsic
    def _cttz(typingctx, x):
        """Trailing zero bits of a non-zero uint64 (``tzcnt``)."""
        if not isinstance(x, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], signature.args[0], types.uint64)
            return builder.cttz(v, ir.Constant(ir.IntType(1), 1))

        return types.uint64(x), codegen

    @intrinsic
    def _popcount_w(typingctx, x):
        """LLVM ``ctpop`` at the width of ``x`` (uint32 codes: eight per AVX2 vector)."""
        if not isinstance(x, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return x(x), codegen

    @njit(cache=True, inline="always")
    def _le_mask(dt, n, c0, r):
        """Bit ``i`` set iff ``dt[c0 + i] <= r`` and ``c0 + i < n`` (``i < 32``; ``dt`` holds
        at least ``c0 + 32`` entries, those from ``n`` on stale or padding)."""
        one = np.uint64(1)
        m = _lemask32(dt, c0, r)
        if n - c0 < 32:
            m &= (one << (n - c0)) - one
        return m

    @njit(cache=True, inline="always")
    def _tile_dist(qc, q, dT, t0, t1, dt):
        """``dt[t] = distance(query q, item t0 + t)``; codes word-major ``dT (W, N)`` (uint32
        for codes of at most 32 bits, else uint64): one vectorised pass per word."""
        c = dT[0, t0:t1]  # views indexed from 0: plain vector loads, no gathers
        qw = qc[q, 0]
        for t in range(c.shape[0]):
            dt[t] = _popcount_w(qw ^ c[t])
        for w in range(1, dT.shape[0]):
            c = dT[w, t0:t1]
            qw = qc[q, w]
            for t in range(c.shape[0]):
                dt[t] += _popcount_w(qw ^ c[t])

    @njit(cache=True, inline="always")
    def _tile_rel(ql, q, lT, eq, t0, t1, rt, acc):
        """``rt[t] = 1`` when item ``t0 + t`` is relevant to query ``q``: equal class id
        (``eq``, ids in ``lT[0]``) or a shared label (multi-hot words ``lT (L, N)``)."""
        la = lT[0, t0:t1]
        lq = ql[q, 0]
        n = t1 - t0
        if eq:
            for t in range(n):
                rt[t] = la[t] == lq
        elif lT.shape[0] == 1:
            for t in range(n):
                rt[t] = (la[t] & lq) != 0
        else:
            for t in range(n):
                acc[t] = la[t] & lq
            for w in range(1, lT.shape[0]):
                la = lT[w, t0:t1]
                lq = ql[q, w]
                for t in range(n):
                    acc[t] |= la[t] & lq
            for t in range(n):
                rt[t] = acc[t] != 0

    @njit(cache=True, inline="always")
    def _tile_counts(dt, rt, nt, cb, cr, rb, n, S, need_ranks):
        """Count one tile of ``nt`` items, in index order, in 32-item chunks; return ``n``.

        ``cb[d]`` / ``cr[d]``: items / relevant items at distance ``d`` so far. For every
        relevant item (set bits of the chunk's relevance mask, in order) the record
        ``(#items before it at its distance) << S | distance`` is appended to ``rb`` at ``n``:
        ``cb[d]`` (items in earlier chunks) plus the items of the chunk before it at ``d``
        (a vector compare of the chunk with ``d``: one mask, one popcount). Only then is the
        chunk added to ``cb``, one scalar increment per item (no per-item record store).
        Indices are unsigned: numba adds no negative-index wraparound code to the loops.
        """
        one = np.uint64(1)
        unt = np.uint64(nt)
        for k in range(0, nt, 32):
            c0 = np.uint64(k)
            m = _nzmask32(rt, c0)
            if unt - c0 < 32:  # past the tile: stale bytes (the arrays hold _TILE items)
                m &= (one << (unt - c0)) - one
            while m:
                i = _cttz(m)
                m &= m - one
                d = dt[c0 + i]
                cr[d] += 1
                if need_ranks:
                    below = _eqmask32(dt, c0, d) & ((one << i) - one)
                    rb[n] = ((cb[d] + np.int64(_popcount(below))) << S) | np.int64(d)
                    n += one
            if unt - c0 >= 32:
                for i in range(32):
                    cb[dt[c0 + np.uint64(i)]] += 1
            else:
                for i in range(unt - c0):
                    cb[dt[c0 + np.uint64(i)]] += 1
        return n

    @njit(cache=True, error_model="numpy")
    def _rank_sums(cb, cr, rb, nrec, K, ns, nmax, rel_n, S):
        """``(ap_sum, ap_cnt)`` of one query from its histogram ``cb``, relevant histogram
        ``cr`` and records ``rb[:nrec]`` (relevant items in index order); adds P@N counts
        to ``rel_n``. Rank of a record = items at smaller distances + items before it at its
        distance + 1; relevant items up to it = relevant at smaller distances + its number
        among the relevant items at its distance. The precisions are summed in record order,
        one at a time (``error_model="numpy"``: no zero-division test, ranks are >= 1)."""
        nb1 = cb.shape[0]
        umask = np.uint64((1 << S) - 1)
        uS = np.uint64(S)
        before = np.empty(nb1 + 1, np.int64)
        relbefore = np.empty(nb1 + 1, np.int64)
        rs = np.zeros(nb1, np.int64)
        before[0] = 0
        relbefore[0] = 0
        for d in range(nb1):
            before[d + 1] = before[d] + cb[d]
            relbefore[d + 1] = relbefore[d] + cr[d]
        total = 0.0
        na = 0
        n_ns = ns.shape[0]
        for i in range(np.uint64(nrec)):
            v = np.uint64(rb[i])  # unsigned indices: no wraparound checks
            d = v & umask
            rs[d] += 1
            rank = before[d] + np.int64(v >> uS) + 1
            if rank <= K:  # P@rank = (relevant at smaller distances + rs[d]) / rank
                total += (np.float64(relbefore[d]) + np.float64(rs[d])) / np.float64(rank)
                na += 1
            if rank <= nmax:
                for j in range(n_ns):
                    if rank <= ns[j]:
                        rel_n[j] += 1
        return total, na

    @njit(cache=True, inline="always")
    def count_outputs(nq, nb1, ns):
        """The zeroed outputs of the metric-count kernels (``nb_metric_counts`` here,
        ``_grouped.nb_run_counts``): ``hist_all, hist_rel`` (Q, k+1), ``ap_sum``, ``ap_cnt``
        (Q,), ``rel_n`` (Q, len(ns)), and ``max(ns)``."""
        hist_all = np.zeros((nq, nb1), np.int64)
        hist_rel = np.zeros((nq, nb1), np.int64)
        ap_sum = np.zeros(nq)
        ap_cnt = np.zeros(nq, np.int64)
        rel_n = np.zeros((nq, ns.shape[0]), np.int64)
        nmax = 0
        for i in range(ns.shape[0]):
            nmax = max(nmax, ns[i])
        return hist_all, hist_rel, ap_sum, ap_cnt, rel_n, nmax

    @njit(parallel=True, cache=True)
    def nb_metric_counts(
        qc, dT, ql, lT, eq, n_bits, top_k, ns, need_ranks, nthreads, dproto, rproto, S
    ):
        """Per-query counts from which every metric follows exactly.

        Returns ``hist_all, hist_rel`` (Q, k+1): items / relevant items at each distance;
        ``ap_sum`` (Q,): sum over relevant items ranked within ``top_k`` of P@rank;
        ``ap_cnt`` (Q,): relevant items within ``top_k``; ``rel_n`` (Q, len(ns)): relevant
        items among the first ``n`` of the ranking. Ranking = (distance, index) ascending.

        One pass over the database in index order per query (``_tile_counts``): histograms
        of the distances of all and of the relevant items and, for every relevant item, a
        record ``(#items before it at its distance) << S | distance``; ranks follow from
        them (``_rank_sums``). Blocks of queries stream database tiles that stay in cache.

        ``qc``/``dT``: query codes ``(Q, W)`` and database codes word-major ``(W, N)``
        (uint32 or uint64); ``ql``/``lT``: query labels ``(Q, L)`` and database labels
        ``(L, N)`` (class ids of one small unsigned dtype when ``eq``, else multi-hot
        uint64 words). ``dproto``: empty array of the distance dtype (uint8 up to 255 bits,
        else uint16); ``rproto``: of the record dtype (int32 with ``S = 8`` when
        ``n_bits < 256`` and ``N <= 2**23``, else int64 with ``S = 16``).
        """
        nq = qc.shape[0]
        ndb = dT.shape[1]
        nb1 = n_bits + 1
        hist_all, hist_rel, ap_sum, ap_cnt, rel_n, nmax = count_outputs(nq, nb1, ns)
        K = min(top_k, ndb)
        B = max(1, min(16, (1 << 24) // ndb)) if need_ranks else 16
        nblocks = (nq + B - 1) // B
        nchunks = min(nblocks, nthreads)
        nr = ndb if need_ranks else 1
        for c in prange(nchunks):
            dt = np.zeros(_TILE, dproto.dtype)
            rt = np.zeros(_TILE, np.uint8)
            acc = np.empty(_TILE if lT.shape[0] > 1 else 1, lT.dtype)
            cnt = np.zeros((B, nb1), np.int64)
            crel = np.zeros((B, nb1), np.int64)
            rec = np.empty((B, nr), rproto.dtype)
            nrec = np.zeros(B, np.uint64)
            for blk in range(c, nblocks, nchunks):
                q0 = blk * B
                nb = min(B, nq - q0)
                cnt[:] = 0
                crel[:] = 0
                nrec[:] = 0
                for t0 in range(0, ndb, _TILE):
                    t1 = min(ndb, t0 + _TILE)
                    for b in range(nb):
                        _tile_dist(qc, q0 + b, dT, t0, t1, dt)
                        _tile_rel(ql, q0 + b, lT, eq, t0, t1, rt, acc)
                        nrec[b] = _tile_counts(
                            dt, rt, t1 - t0, cnt[b], crel[b], rec[b], nrec[b], S, need_ranks
                        )
                for b in range(nb):
                    q = q0 + b
                    hist_all[q] = cnt[b]
                    hist_rel[q] = crel[b]
                    if need_ranks:
                        ap_sum[q], ap_cnt[q] = _rank_sums(
                            cnt[b], crel[b], rec[b], nrec[b], K, ns, nmax, rel_n[q], S
                        )
        return hist_all, hist_rel, ap_sum, ap_cnt, rel_n

    @njit(parallel=True, cache=True)
    # one numba kernel loop (top-k with a falling threshold): splitting it costs inlining control
    def nb_knn(qc, dT, k, n_bits, nthreads, dproto):  # noqa: C901
        """The ``k`` nearest items per query, ordered by (distance, index); one pass.

        A per-query threshold ``acc`` (largest distance that can still enter the top k) falls
        as candidates arrive; a tile's distances (``_tile_dist``: codes word-major ``dT (W,
        N)``, as in :func:`nb_metric_counts`) are compared with it 32 at a time (one vector
        compare and mask), so chunks with no candidate cost no scalar work. Ties lose
        against earlier items, so once ``k`` candidates lie at distance <= t, only items at
        distance < t are accepted; once they lie at distance 0 the query reads no further
        tile. Survivors are placed by counting sort on distance.
        """
        nq = qc.shape[0]
        ndb = dT.shape[1]
        k = min(k, ndb)
        nb1 = n_bits + 2
        out_d = np.empty((nq, k), np.int32)
        out_i = np.empty((nq, k), np.int64)
        B = 16
        cap = max(4 * k, 1024)
        nblocks = (nq + B - 1) // B
        nchunks = min(nblocks, nthreads)
        one = np.uint64(1)
        for c in prange(nchunks):
            dt = np.zeros(_TILE, dproto.dtype)
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
                    unt = np.uint64(t1 - t0)
                    for b in range(nb):
                        acc = accs[b]
                        if acc < 0:  # k items at distance 0 already: nothing can enter
                            continue
                        _tile_dist(qc, q0 + b, dT, t0, t1, dt)
                        for k0 in range(0, unt, 32):
                            c0 = np.uint64(k0)
                            m = _le_mask(dt, unt, c0, acc)
                            while m:
                                i = _cttz(m)
                                m &= m - one
                                d = np.int64(dt[c0 + i])
                                if d > acc:  # the threshold fell after the mask was taken
                                    continue
                                n = nc[b]
                                if n == cap:  # compact: keep what can still be in the top k
                                    quota = k - ss[b]
                                    mm = 0
                                    for j in range(n):
                                        dj = cd[b, j]
                                        if dj <= acc or (dj == acc + 1 and quota > 0):
                                            if dj == acc + 1:
                                                quota -= 1
                                            ci[b, mm] = ci[b, j]
                                            cd[b, mm] = dj
                                            mm += 1
                                    n = mm
                                ci[b, n] = t0 + np.int64(c0 + i)
                                cd[b, n] = d
                                nc[b] = n + 1
                                cnt[b, d] += 1
                                s = ss[b] + 1
                                while s >= k and acc >= 0:
                                    s -= cnt[b, acc]
                                    acc -= 1
                                ss[b] = s
                                if acc < 0:
                                    break
                            if acc < 0:
                                break
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

    @njit(cache=True, inline="always")
    def _query_hits(qc, q, dT, r, dt, hi, hd, pos):
        """Items of query ``q`` within distance ``r``, in index order: the first
        ``len(hi)`` of them into ``hi`` (index) / ``hd`` (distance), all of them counted
        per distance in ``pos[d + 1]``; returns their number. A tile's byte distances
        (``_tile_dist``) are compared with ``r`` 32 at a time (one mask, its set bits)."""
        ndb = dT.shape[1]
        one = np.uint64(1)
        pos[:] = 0
        n = 0
        for t0 in range(0, ndb, _TILE):
            t1 = min(ndb, t0 + _TILE)
            unt = np.uint64(t1 - t0)
            _tile_dist(qc, q, dT, t0, t1, dt)
            for k0 in range(0, unt, 32):
                c0 = np.uint64(k0)
                m = _le_mask(dt, unt, c0, r)
                while m:
                    i = c0 + _cttz(m)
                    m &= m - one
                    d = np.int64(dt[i])
                    if n < hi.shape[0]:
                        hi[n] = t0 + np.int64(i)
                        hd[n] = d
                    pos[d + 1] += 1
                    n += 1
        return n

    @njit(cache=True, inline="always")
    def _sort_hits(hi, hd, n, pos, r, base, out_i, out_d):
        """``n`` hits (index order, per-distance counts in ``pos[1:]``) into ``out_i`` /
        ``out_d`` from ``base``, by (distance, index): a counting sort on distance."""
        pos[0] = base
        for d in range(1, r + 2):
            pos[d] += pos[d - 1]
        for j in range(n):
            d = hd[j]
            out_i[pos[d]] = hi[j]
            out_d[pos[d]] = d
            pos[d] += 1

    @njit(parallel=True, cache=True)
    def _nb_range_once(qc, dT, radius, n_bits, nthreads, dproto, cap):
        """Items within ``radius`` per query, by (distance, index), in one pass: a tile's byte
        distances (``_tile_dist``) compared with the radius 32 at a time; the hits of a query
        (set bits of those masks, in index order) counting-sorted by distance into its chunk's
        region of ``cap`` slots of ``buf_i`` / ``buf_d`` (query ``q`` runs in chunk ``q %
        nchunks``). Returns ``buf_i, buf_d, start, counts, kept``: a kept query's hits are
        ``buf[start[q]:start[q] + counts[q]]``; a chunk whose region runs out stops there
        and leaves that query and its later ones unkept (count 0) for the two-pass kernels."""
        nq = qc.shape[0]
        ndb = dT.shape[1]
        r = min(radius, n_bits)
        nchunks = max(1, min(nq, nthreads))
        buf_i = np.empty(nchunks * cap, np.int64)
        buf_d = np.empty(nchunks * cap, np.int32)
        start = np.zeros(nq, np.int64)
        counts = np.zeros(nq, np.int64)
        kept = np.zeros(nq, np.bool_)
        for c in prange(nchunks):
            dt = np.zeros(_TILE, dproto.dtype)
            pos = np.zeros(r + 2, np.int64)
            hi = np.empty(min(cap, ndb), np.int64)  # a query's hits in index order (fixed
            hd = np.empty(min(cap, ndb), np.int64)  # size: a growing one slows the loop 2x)
            used = 0
            for q in range(c, nq, nchunks):
                n = _query_hits(qc, q, dT, r, dt, hi, hd, pos)
                if used + n > cap:  # the caller takes this query and the rest in two passes
                    break
                counts[q] = n
                kept[q] = True
                start[q] = c * cap + used
                _sort_hits(hi, hd, n, pos, r, c * cap + used, buf_i, buf_d)
                used += n
        return buf_i, buf_d, start, counts, kept

    @njit(parallel=True, cache=True)
    def _nb_range_count(qc, dT, radius, n_bits, dproto):
        """Items within ``radius`` per query: a tile's byte distances (``_tile_dist``)
        compared with the radius 32 at a time, one mask popcount per 32 items."""
        nq = qc.shape[0]
        ndb = dT.shape[1]
        r = min(radius, n_bits)
        counts = np.zeros(nq, np.int64)
        for q in prange(nq):
            dt = np.zeros(_TILE, dproto.dtype)
            n = 0
            for t0 in range(0, ndb, _TILE):
                t1 = min(ndb, t0 + _TILE)
                unt = np.uint64(t1 - t0)
                _tile_dist(qc, q, dT, t0, t1, dt)
                for k0 in range(0, unt, 32):
                    c0 = np.uint64(k0)
                    n += np.int64(_popcount(_le_mask(dt, unt, c0, r)))
            counts[q] = n
        return counts

    @njit(parallel=True, cache=True)
    def _nb_range_fill(qc, dT, radius, n_bits, base, counts, out_i, out_d, dproto):
        """The ``counts[q]`` hits of query ``q`` (:func:`_nb_range_count`), by (distance,
        index), into ``out_i`` / ``out_d`` from ``base[q]``: gathered in index order in one
        pass (set bits of the 32-item masks), then counting-sorted by distance."""
        nq = qc.shape[0]
        r = min(radius, n_bits)
        for q in prange(nq):
            dt = np.zeros(_TILE, dproto.dtype)
            pos = np.zeros(r + 2, np.int64)
            hi = np.empty(counts[q], np.int64)
            hd = np.empty(counts[q], np.int64)
            n = _query_hits(qc, q, dT, r, dt, hi, hd, pos)
            _sort_hits(hi, hd, n, pos, r, base[q], out_i, out_d)

    nb_knn_serial = serial_twin(nb_knn, "nb_knn_serial")
    _nb_range_once_serial = serial_twin(_nb_range_once, "_nb_range_once_serial")
    _nb_range_count_serial = serial_twin(_nb_range_count, "_nb_range_count_serial")
    _nb_range_fill_serial = serial_twin(_nb_range_fill, "_nb_range_fill_serial")

    def nb_range(qc, dbc, radius, n_bits):
        """Items within ``radius`` (inclusive) per query, ordered by (distance, index): one
        pass (:func:`_nb_range_once`) for the queries whose hits fit each thread's share of
        ``RANGE_SLOTS``, a count pass and a fill pass straight into the output for the rest
        (large results: copying them from per-thread buffers costs more than a second pass).
        One query, or few pairs (:func:`small_call`), run on one thread."""
        nq, ndb = qc.shape[0], dbc.shape[0]
        if radius < 0:
            return no_hits(nq)
        qw, dT = _code_layout(qc, dbc, n_bits)
        dproto = distance_proto(n_bits)
        serial = nq == 1 or small_call(nq, ndb)
        once = _nb_range_once_serial if serial else _nb_range_once
        nt = 1 if serial else numba.get_num_threads()
        cap = RANGE_SLOTS // min(nt, max(nq, 1))  # slots per thread
        buf_i, buf_d, start, counts, kept = once(qw, dT, radius, n_bits, nt, dproto, cap)
        rest = np.flatnonzero(~kept)
        if rest.size:
            count, fill = (
                (_nb_range_count_serial, _nb_range_fill_serial)
                if rest.size == 1 or small_call(rest.size, ndb)
                else (_nb_range_count, _nb_range_fill)
            )
            qr = np.ascontiguousarray(qw[rest])
            counts[rest] = count(qr, dT, radius, n_bits, dproto)
        offsets = np.zeros(nq + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        out_i = np.empty(offsets[-1], np.int64)
        out_d = np.empty(offsets[-1], np.int32)
        k = np.flatnonzero(kept)  # the kept queries' blocks, moved from buf to the output
        nk = counts[k]
        within = np.arange(nk.sum()) - np.repeat(np.cumsum(nk) - nk, nk)
        to, src = np.repeat(offsets[k], nk) + within, np.repeat(start[k], nk) + within
        out_i[to] = buf_i[src]
        out_d[to] = buf_d[src]
        if rest.size:
            fill(qr, dT, radius, n_bits, offsets[rest], counts[rest], out_i, out_d, dproto)
        return out_i, out_d, offsets


# ----------------------------------------------------------------------------- dispatch


def _dense_ids(ql: np.ndarray, dbl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (uint64 words holding int64, ``(n, 1)``) as the smallest unsigned dtype that
    keeps every equality: ``(query ids (Q, 1), database ids (1, N))``. Database ids become
    ``0..span`` (shifted, or their rank among the distinct ids when the span is large); a
    query id that no database item has becomes ``span + 1``, which matches nothing."""
    q = ql[:, 0].view(np.int64)
    d = dbl[:, 0].view(np.int64)
    lo, hi = int(d.min()), int(d.max())
    if hi - lo < 2**32 - 1:
        span = hi - lo
        dd, inside = d - lo, (q >= lo) & (q <= hi)
        qq = np.full(q.shape, span + 1, np.int64)
        qq[inside] = q[inside] - lo
    else:
        uniq = np.unique(d)
        span = uniq.size - 1
        dd = np.searchsorted(uniq, d)
        pos = np.minimum(np.searchsorted(uniq, q), span)
        qq = np.where(uniq[pos] == q, pos, span + 1)
    dtype = np.uint8 if span < 255 else np.uint16 if span < 65535 else np.uint32
    return qq.astype(dtype).reshape(-1, 1), dd.astype(dtype).reshape(1, -1)


def _code_layout(qc, dbc, n_bits):
    """Codes as :func:`nb_metric_counts` and :func:`nb_knn` read them: queries ``(Q, W)`` and
    the database word-major ``(W, N)``, uint32 words for codes of at most 32 bits (twice the
    codes per vector)."""
    if n_bits <= 32:
        qc, dT = qc.astype(np.uint32), dbc[:, 0].astype(np.uint32).reshape(1, -1)
    else:
        dT = np.ascontiguousarray(dbc.T)
    return np.ascontiguousarray(qc), dT


def no_hits(n_queries: int):
    """The ``(indices, distances, offsets)`` of a range search that finds nothing (a negative
    radius: the numba kernels compare unsigned bytes, so they are not asked)."""
    return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(n_queries + 1, np.int64)


def distance_proto(n_bits: int) -> np.ndarray:
    """An empty array of the dtype that holds the kernels' distances: uint8 up to 255 bits."""
    return np.empty(0, np.uint8 if n_bits <= 255 else np.uint16)


def _numba_layout(qc, dbc, ql, dbl, eq, n_bits):
    """Arguments of :func:`nb_metric_counts`: codes by :func:`_code_layout`, class ids as
    small dense integers."""
    qc, dT = _code_layout(qc, dbc, n_bits)
    if eq:
        ql, lT = _dense_ids(ql, dbl)
    else:
        lT = np.ascontiguousarray(dbl.T)
    return qc, dT, np.ascontiguousarray(ql), lT


def metric_counts(qc, dbc, ql, dbl, eq, n_bits, top_k, ns, need_ranks, kernels=None):
    """Dispatch to the numba or numpy implementation (identical results)."""
    ns = np.asarray(ns, np.int64).reshape(-1)
    top_k = int(min(top_k, dbc.shape[0]))
    if resolve(kernels) == "numba":
        qc, dT, ql, lT = _numba_layout(qc, dbc, ql, dbl, bool(eq), int(n_bits))
        # a record is (#items before it at its distance) << S | distance: int32 when it fits
        # (halves the memory traffic of the records), else int64
        small = n_bits < 256 and dbc.shape[0] <= 1 << 23
        dproto = distance_proto(int(n_bits))
        rproto = np.empty(0, np.int32 if small else np.int64)
        with _LAUNCH_LOCK:
            return nb_metric_counts(
                qc,
                dT,
                ql,
                lT,
                bool(eq),
                int(n_bits),
                top_k,
                ns,
                bool(need_ranks),
                numba.get_num_threads(),
                dproto,
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
        qw, dT = _code_layout(qc, dbc, int(n_bits))
        dproto = distance_proto(int(n_bits))
        with _LAUNCH_LOCK:
            if qc.shape[0] <= 16 or small_call(
                qc.shape[0], dbc.shape[0]
            ):  # 16: nb_knn's query block
                return nb_knn_serial(qw, dT, int(k), int(n_bits), 1, dproto)
            return nb_knn(qw, dT, int(k), int(n_bits), numba.get_num_threads(), dproto)
    return np_knn(qc, dbc, int(k), int(n_bits))


def range_search(qc, dbc, radius, n_bits, kernels=None):
    """Flat ``(indices, distances, offsets)`` of items within ``radius``, by (distance, index)."""
    if resolve(kernels) == "numba":
        with _LAUNCH_LOCK:
            return nb_range(qc, dbc, int(radius), int(n_bits))
    return np_range(qc, dbc, int(radius), int(n_bits))
