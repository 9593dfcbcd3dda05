"""Exact search over distinct codes: the kernels of ``HammingIndex(backend="grouped")``.

numba kernels with numpy twins.

Learned codes crowd into few distinct values (10-200 for thousands of items on the embedded
sets). Each distinct code is a *group*: its items, in insertion (index) order, are
``members[gstart[g]:gstart[g + 1]]``; groups are numbered by their first item. A query
computes distances to the ``U`` distinct codes only (``U`` popcounts instead of ``N``) and
expands them to items in the order of the flat scan, (distance, index) ascending:

* kNN: walk the distances ``0, 1, ...``; at each distance the groups there hold sorted item
  lists. While they all fit in the ``need`` slots left, all their items are merged (sorted);
  at the distance where they overflow, the ``need`` smallest indices of the union are among
  the first ``need`` of each group, so only those are merged.
* range: every item of every group at distance ``<= r``, merged per distance.

Results are identical to the flat kernels (``_kernels.knn`` / ``_kernels.range_search``).
"""

from __future__ import annotations

import numpy as np

from deephash import _kernels

if _kernels.HAVE_NUMBA:
    import numba
    from numba import njit, prange

    _popcount = _kernels._popcount


# ----------------------------------------------------------------------------- grouping


def np_group(words: np.ndarray, limit: int):
    """Numpy twin of :func:`nb_group`."""
    n, w = words.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    void = np.ascontiguousarray(words).view(np.dtype((np.void, 8 * w))).ravel()
    _, first, inv = np.unique(void, return_index=True, return_inverse=True)
    if first.size > limit:
        return None
    rank = np.empty(first.size, np.int64)  # renumber groups by first occurrence
    order = np.argsort(first, kind="stable")
    rank[order] = np.arange(first.size)
    return rank[inv.ravel()], first[order].astype(np.int64)


if _kernels.HAVE_NUMBA:

    @njit(cache=True)
    def _nb_group(words, limit):
        """``gid (N,)`` (groups numbered by first occurrence) and ``first (U,)``; ``U = -1``
        when more than ``limit`` distinct codes were met (stops early)."""
        n, w = words.shape
        cap = 16
        while cap < 2 * min(n, limit + 1):
            cap *= 2
        mask = cap - 1
        slot = np.full(cap, -1, np.int64)  # group id in each hash slot
        first = np.empty(min(n, limit + 1), np.int64)
        gid = np.empty(n, np.int64)
        u = 0
        for t in range(n):
            h = np.uint64(0x9E3779B97F4A7C15)
            for j in range(w):
                h = (h ^ words[t, j]) * np.uint64(0xFF51AFD7ED558CCD)
                h ^= h >> np.uint64(29)
            s = np.int64(h & np.uint64(mask))
            while True:
                g = slot[s]
                if g < 0:
                    if u == limit:
                        return gid, first, -1
                    slot[s] = u
                    first[u] = t
                    gid[t] = u
                    u += 1
                    break
                f = first[g]
                same = True
                for j in range(w):
                    if words[f, j] != words[t, j]:
                        same = False
                        break
                if same:
                    gid[t] = g
                    break
                s = (s + 1) & mask
        return gid, first, u


def group(words: np.ndarray, limit: int | None = None, kernels=None):
    """Group equal rows of ``uint64 (N, W)`` words: ``(gid (N,), first (U,))`` with groups
    numbered by first occurrence, or ``None`` when there are more than ``limit`` groups."""
    n = words.shape[0]
    limit = n if limit is None else int(min(limit, n))
    if _kernels.resolve(kernels) == "numba" and n:
        gid, first, u = _nb_group(np.ascontiguousarray(words), limit)
        return None if u < 0 else (gid, first[:u].copy())
    return np_group(words, limit)


def members_of(gid: np.ndarray, n_groups: int, kernels=None) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(members int64 (N,), gstart int64 (U + 1,))``: items of each group, ascending."""
    gstart = np.zeros(n_groups + 1, np.int64)
    np.cumsum(np.bincount(gid, minlength=n_groups), out=gstart[1:])
    if _kernels.resolve(kernels) == "numba":
        return _nb_members(gid, gstart), gstart
    return np.argsort(gid, kind="stable").astype(np.int64), gstart


if _kernels.HAVE_NUMBA:

    @njit(cache=True)
    def _nb_members(gid, gstart):
        """Counting sort of the items by group (stable: ascending within a group)."""
        pos = gstart[:-1].copy()
        members = np.empty(gid.shape[0], np.int64)
        for t in range(gid.shape[0]):
            g = gid[t]
            members[pos[g]] = t
            pos[g] += 1
        return members


# ----------------------------------------------------------------------------- numpy path


def _np_levels(dist_row, n_bits):
    """Groups sorted by distance (stable: by group id within a distance), and level offsets."""
    order = np.argsort(dist_row, kind="stable")
    lev = np.zeros(n_bits + 2, np.int64)
    np.cumsum(np.bincount(dist_row, minlength=n_bits + 1), out=lev[1:])
    return order, lev


def np_grouped_knn(qc, uc, members, gstart, k, n_bits):
    """Numpy twin of :func:`nb_grouped_knn`."""
    nq = qc.shape[0]
    k = min(k, members.shape[0])
    out_d = np.empty((nq, k), np.int32)
    out_i = np.empty((nq, k), np.int64)
    block = _kernels._np_block(uc.shape[0])
    for s in range(0, nq, block):
        dist = _kernels._np_distances(qc[s : s + block], uc, n_bits).astype(np.int64)
        for r in range(dist.shape[0]):
            order, lev = _np_levels(dist[r], n_bits)
            p = 0
            for d in range(n_bits + 1):
                if p == k:
                    break
                gs = order[lev[d] : lev[d + 1]]
                if gs.size == 0:
                    continue
                need = k - p
                cand = np.sort(
                    np.concatenate(
                        [members[gstart[g] : min(gstart[g + 1], gstart[g] + need)] for g in gs]
                    )
                )
                take = cand[:need]
                out_i[s + r, p : p + take.size] = take
                out_d[s + r, p : p + take.size] = d
                p += take.size
    return out_d, out_i


def np_grouped_range(qc, uc, members, gstart, radius, n_bits):
    """Numpy twin of :func:`nb_grouped_range`."""
    nq = qc.shape[0]
    idx_parts, d_parts, counts = [], [], np.zeros(nq, np.int64)
    block = _kernels._np_block(uc.shape[0])
    r_max = min(radius, n_bits)
    for s in range(0, nq, block):
        dist = _kernels._np_distances(qc[s : s + block], uc, n_bits).astype(np.int64)
        for r in range(dist.shape[0]):
            order, lev = _np_levels(dist[r], n_bits)
            for d in range(r_max + 1):
                gs = order[lev[d] : lev[d + 1]]
                if gs.size:
                    hit = np.sort(np.concatenate([members[gstart[g] : gstart[g + 1]] for g in gs]))
                    idx_parts.append(hit)
                    d_parts.append(np.full(hit.size, d, np.int32))
                    counts[s + r] += hit.size
    offsets = np.zeros(nq + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])

    def cat(p, t):
        return np.concatenate(p) if p else np.zeros(0, t)

    return cat(idx_parts, np.int64), cat(d_parts, np.int32), offsets


# ----------------------------------------------------------------------------- numba path

if _kernels.HAVE_NUMBA:
    _le_mask = _kernels._le_mask
    _cttz = _kernels._cttz
    _tile_dist = _kernels._tile_dist

    @njit(cache=True)
    def _threshold(gd, U, gstart, k, n_bits, cnt):
        """The distance of the ``k``-th nearest item: the smallest ``D`` with at least ``k``
        items at distance ``<= D`` (``1 <= k <= N``). One pass over the groups with a falling
        threshold: 32 distances are compared with it at a time, and only groups at or below it
        are counted (``cnt``: items per distance; ``below``: items closer than ``acc``)."""
        one = np.uint64(1)
        uU = np.uint64(U)
        cnt[:] = 0
        acc = n_bits
        below = 0
        for k0 in range(0, U, 32):
            c0 = np.uint64(k0)
            m = _le_mask(gd, uU, c0, acc)
            while m:
                g = c0 + _cttz(m)
                m &= m - one
                d = np.int64(gd[g])
                if d > acc:  # the threshold fell after the mask was taken: skip it
                    continue
                w = gstart[g + one] - gstart[g]
                cnt[d] += w
                if d < acc:
                    below += w
                    while below >= k:
                        acc -= 1
                        below -= cnt[acc]
        return acc

    @njit(cache=True)
    def _at_most(gd, U, r, sel):
        """The groups at distance ``<= r``, ascending, into ``sel``; returns their number."""
        one = np.uint64(1)
        uU = np.uint64(U)
        n = 0
        for k0 in range(0, U, 32):
            c0 = np.uint64(k0)
            m = _le_mask(gd, uU, c0, r)
            while m:
                sel[n] = np.int64(c0 + _cttz(m))
                m &= m - one
                n += 1
        return n

    @njit(cache=True)
    def _select(gd, U, r, cnt, cur, gorder, sel):
        """The groups at distance ``<= r`` ordered by distance, group id ascending within
        a distance (counting sort): those at ``d`` are ``gorder[cnt[d]:cnt[d + 1]]``."""
        n = _at_most(gd, U, r, sel)
        cnt[: r + 2] = 0
        for j in range(n):
            cnt[np.int64(gd[sel[j]]) + 1] += 1
        for d in range(r + 1):
            cnt[d + 1] += cnt[d]
        for d in range(r + 1):
            cur[d] = cnt[d]
        for j in range(n):
            g = sel[j]
            d = np.int64(gd[g])
            gorder[cur[d]] = g
            cur[d] += 1

    @njit(cache=True)
    def _gather(members, gstart, gorder, a, b, cap, buf):
        """The first ``cap`` members of each group ``gorder[a:b]`` into ``buf``, sorted; count."""
        n = 0
        for j in range(a, b):
            g = gorder[j]
            s = gstart[g]
            e = min(gstart[g + 1], s + cap)
            for i in range(s, e):
                buf[n] = members[i]
                n += 1
        if b - a > 1:
            buf[:n].sort()
        return n

    @njit(parallel=True, cache=True)
    def nb_grouped_knn(qc, uT, members, gstart, k, n_bits, nthreads, dproto):
        """The ``k`` nearest items per query by (distance, index), from the distinct codes
        (word-major ``uT (W, U)``, :func:`_kernels._code_layout`): their distances in one
        vectorised pass, the distance ``D`` of the ``k``-th item (:func:`_threshold`), the
        groups at ``<= D`` (:func:`_select`), then merged distance by distance: while all
        groups at a distance fit in the ``need`` slots left all their items, else the first
        ``need`` of each (the ``need`` smallest indices of the union are among them)."""
        nq = qc.shape[0]
        U = uT.shape[1]
        k = min(k, members.shape[0])
        out_d = np.empty((nq, k), np.int32)
        out_i = np.empty((nq, k), np.int64)
        nchunks = max(1, min(nq, nthreads))
        for c in prange(nchunks):
            gd = np.zeros(U + 32, dproto.dtype)  # + 32: the last 32-wide compare reads past U
            cnt = np.empty(n_bits + 2, np.int64)
            cur = np.empty(n_bits + 2, np.int64)
            gorder = np.empty(U, np.int64)
            sel = np.empty(U, np.int64)
            buf = np.empty(1024, np.int64)
            for q in range(c, nq, nchunks):
                if k == 0:
                    continue
                _tile_dist(qc, q, uT, 0, U, gd)
                r = _threshold(gd, U, gstart, k, n_bits, cnt)
                _select(gd, U, r, cnt, cur, gorder, sel)
                p = 0
                for d in range(r + 1):
                    if p == k:
                        break
                    a, b = cnt[d], cnt[d + 1]
                    if a == b:
                        continue
                    need = k - p
                    size = 0
                    for j in range(a, b):
                        g = gorder[j]
                        size += min(gstart[g + 1] - gstart[g], need)
                    if size > buf.shape[0]:
                        buf = np.empty(max(size, 2 * buf.shape[0]), np.int64)
                    n = _gather(members, gstart, gorder, a, b, need, buf)
                    take = min(n, need)
                    for i in range(take):
                        out_i[q, p + i] = buf[i]
                        out_d[q, p + i] = d
                    p += take
        return out_d, out_i

    @njit(parallel=True, cache=True)
    def _nb_grouped_range_count(qc, uT, gstart, radius, n_bits, dproto):
        nq = qc.shape[0]
        U = uT.shape[1]
        r = min(radius, n_bits)
        counts = np.zeros(nq, np.int64)
        for q in prange(nq):
            gd = np.zeros(U + 32, dproto.dtype)
            sel = np.empty(U, np.int64)
            _tile_dist(qc, q, uT, 0, U, gd)
            n = 0
            for j in range(_at_most(gd, U, r, sel)):
                n += gstart[sel[j] + 1] - gstart[sel[j]]
            counts[q] = n
        return counts

    @njit(parallel=True, cache=True)
    def _nb_grouped_range_fill(qc, uT, members, gstart, radius, n_bits, offsets, dproto):
        nq = qc.shape[0]
        U = uT.shape[1]
        out_i = np.empty(offsets[nq], np.int64)
        out_d = np.empty(offsets[nq], np.int32)
        r = min(radius, n_bits)
        for q in prange(nq):
            gd = np.zeros(U + 32, dproto.dtype)
            cnt = np.empty(n_bits + 2, np.int64)
            cur = np.empty(n_bits + 2, np.int64)
            gorder = np.empty(U, np.int64)
            sel = np.empty(U, np.int64)
            _tile_dist(qc, q, uT, 0, U, gd)
            _select(gd, U, r, cnt, cur, gorder, sel)
            o = offsets[q]
            for d in range(r + 1):
                a, b = cnt[d], cnt[d + 1]
                s = o
                for j in range(a, b):
                    g = gorder[j]
                    for i in range(gstart[g], gstart[g + 1]):
                        out_i[o] = members[i]
                        out_d[o] = d
                        o += 1
                if b - a > 1:
                    out_i[s:o].sort()
        return out_i, out_d

    nb_grouped_knn_serial = _kernels.serial_twin(nb_grouped_knn, "nb_grouped_knn_serial")
    _nb_grouped_range_count_serial = _kernels.serial_twin(
        _nb_grouped_range_count, "_nb_grouped_range_count_serial"
    )
    _nb_grouped_range_fill_serial = _kernels.serial_twin(
        _nb_grouped_range_fill, "_nb_grouped_range_fill_serial"
    )


# ----------------------------------------------------------------------------- dispatch


def knn(qc, uc, members, gstart, k, n_bits, kernels=None):
    """``(distances int32, indices int64)`` of the ``min(k, N)`` nearest, by (distance, index)."""
    if _kernels.resolve(kernels) == "numba":
        qw, uT = _kernels._code_layout(qc, uc, int(n_bits))
        dproto = _kernels.distance_proto(int(n_bits))
        with _kernels._LAUNCH_LOCK:
            if _kernels.small_call(qc.shape[0], uc.shape[0]) or qc.shape[0] <= 4:
                return nb_grouped_knn_serial(
                    qw, uT, members, gstart, int(k), int(n_bits), 1, dproto
                )
            return nb_grouped_knn(
                qw, uT, members, gstart, int(k), int(n_bits), numba.get_num_threads(), dproto
            )
    return np_grouped_knn(qc, uc, members, gstart, int(k), int(n_bits))


def range_search(qc, uc, members, gstart, radius, n_bits, kernels=None):
    """Flat ``(indices, distances, offsets)`` of items within ``radius``, by (distance, index)."""
    if _kernels.resolve(kernels) == "numba":
        if radius < 0:
            return _kernels.no_hits(qc.shape[0])
        qw, uT = _kernels._code_layout(qc, uc, int(n_bits))
        dproto = _kernels.distance_proto(int(n_bits))
        with _kernels._LAUNCH_LOCK:
            serial = qc.shape[0] <= 4 or _kernels.small_call(qc.shape[0], uc.shape[0])
            count = _nb_grouped_range_count_serial if serial else _nb_grouped_range_count
            fill = _nb_grouped_range_fill_serial if serial else _nb_grouped_range_fill
            counts = count(qw, uT, gstart, int(radius), int(n_bits), dproto)
            offsets = np.zeros(qc.shape[0] + 1, np.int64)
            np.cumsum(counts, out=offsets[1:])
            idx, dist = fill(qw, uT, members, gstart, int(radius), int(n_bits), offsets, dproto)
            return idx, dist, offsets
    return np_grouped_range(qc, uc, members, gstart, int(radius), int(n_bits))


# ----------------------------------------------------------------------------- metrics by runs

#: the metrics count by runs when the database has at most this share of runs (and enough items)
RUN_FRACTION = 1 / 8
RUN_MIN_ITEMS = 1 << 14


def runs_of(dw: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """Start index of every run of consecutive database items with the same code words and the
    same label words (``uint64 (N, W)`` and ``(N, L)``)."""
    change = np.ones(dw.shape[0], bool)
    change[1:] = (dw[1:] != dw[:-1]).any(axis=1) | (dl[1:] != dl[:-1]).any(axis=1)
    return np.flatnonzero(change)


def metric_counts_by_runs(qw, dw, ql, dl, eq, n_bits, top_k, ns, need_ranks, kernels=None):
    """``_kernels.metric_counts`` computed per run of equal (code, labels) items, or None when
    the database has too many runs (``RUN_FRACTION``), too few items or numpy kernels.

    Items of a run share their distance and their relevance, and a run's items are
    consecutive in index order, so the run adds ``len`` to the histogram at once and its
    relevant items take the next ``len`` positions at their distance: the same records, in
    the same order, as the flat kernel (identical counts and sums). A query costs ``U``
    popcounts (distinct codes), one step per run and one per relevant item (its precision)."""
    n = dw.shape[0]
    if _kernels.resolve(kernels) != "numba" or n < RUN_MIN_ITEMS:
        return None
    starts = runs_of(dw, dl)
    if starts.size > n * RUN_FRACTION:
        return None
    gid, first = group(dw[starts], None, kernels)
    uc = np.ascontiguousarray(dw[starts][first])
    rlen = np.diff(np.append(starts, n)).astype(np.int64)
    rl = np.ascontiguousarray(dl[starts])
    with _kernels._LAUNCH_LOCK:
        return nb_run_counts(
            np.ascontiguousarray(qw),
            uc,
            gid,
            rlen,
            np.ascontiguousarray(ql),
            rl,
            bool(eq),
            int(n_bits),
            int(min(top_k, n)),
            np.asarray(ns, np.int64).reshape(-1),
            bool(need_ranks),
            numba.get_num_threads(),
        )


if _kernels.HAVE_NUMBA:

    @njit(cache=True, inline="always")
    def _run_relevant(ql, q, rl, r, eq):
        if eq:
            return ql[q, 0] == rl[r, 0]
        hit = np.uint64(0)
        for w in range(rl.shape[1]):
            hit |= ql[q, w] & rl[r, w]
        return hit != 0

    @njit(cache=True)
    def _run_hist(qc, q, uc, rgid, rlen, ql, rl, eq, gd, cb, cr, rd, rp, rn):
        """Histograms ``cb`` / ``cr`` of query ``q`` over the runs (in index order) and, per
        relevant run, ``(distance, #items before it at that distance, length)``; returns how
        many relevant runs."""
        for g in range(uc.shape[0]):
            s = np.uint64(0)
            for w in range(uc.shape[1]):
                s += _popcount(qc[q, w] ^ uc[g, w])
            gd[g] = s
        cb[:] = 0
        cr[:] = 0
        nr = 0
        for r in range(rgid.shape[0]):
            d = gd[rgid[r]]
            n = rlen[r]
            if _run_relevant(ql, q, rl, r, eq):
                rd[nr] = d
                rp[nr] = cb[d]
                rn[nr] = n
                nr += 1
                cr[d] += n
            cb[d] += n
        return nr

    @njit(cache=True, error_model="numpy")
    def _run_rank_sums(cb, cr, rd, rp, rn, nr, K, ns, nmax, rel_n):
        """``_kernels._rank_sums`` over relevant runs: item ``i`` of a run at distance ``d``
        found ``p`` items before the run is the record ``(p + i, d)``; same terms, same order."""
        nb1 = cb.shape[0]
        before = np.zeros(nb1 + 1, np.int64)
        relbefore = np.zeros(nb1 + 1, np.int64)
        rs = np.zeros(nb1, np.int64)
        for d in range(nb1):
            before[d + 1] = before[d] + cb[d]
            relbefore[d + 1] = relbefore[d] + cr[d]
        total = 0.0
        na = 0
        for j in range(nr):
            d = rd[j]
            for i in range(rn[j]):
                rs[d] += 1
                rank = before[d] + rp[j] + i + 1
                if rank <= K:
                    total += (np.float64(relbefore[d]) + np.float64(rs[d])) / np.float64(rank)
                    na += 1
                if rank <= nmax:
                    for k in range(ns.shape[0]):
                        if rank <= ns[k]:
                            rel_n[k] += 1
        return total, na

    @njit(parallel=True, cache=True)
    def nb_run_counts(qc, uc, rgid, rlen, ql, rl, eq, n_bits, top_k, ns, need_ranks, nthreads):
        """Outputs of ``_kernels.nb_metric_counts`` from runs of equal (code, labels) items:
        ``uc`` distinct codes, ``rgid`` / ``rlen`` / ``rl`` each run's code, length, labels."""
        nq = qc.shape[0]
        R = rgid.shape[0]
        nb1 = n_bits + 1
        hist_all, hist_rel, ap_sum, ap_cnt, rel_n, nmax = _kernels.count_outputs(nq, nb1, ns)
        nchunks = max(1, min(nq, nthreads))
        for c in prange(nchunks):
            gd = np.empty(uc.shape[0], np.int64)
            cb = np.zeros(nb1, np.int64)
            cr = np.zeros(nb1, np.int64)
            rd = np.empty(R, np.int64)
            rp = np.empty(R, np.int64)
            rn = np.empty(R, np.int64)
            for q in range(c, nq, nchunks):
                nr = _run_hist(qc, q, uc, rgid, rlen, ql, rl, eq, gd, cb, cr, rd, rp, rn)
                hist_all[q] = cb
                hist_rel[q] = cr
                if need_ranks:
                    ap_sum[q], ap_cnt[q] = _run_rank_sums(
                        cb, cr, rd, rp, rn, nr, top_k, ns, nmax, rel_n[q]
                    )
        return hist_all, hist_rel, ap_sum, ap_cnt, rel_n
