"""A measured alternative to the metric kernel: bit-sliced distances (issue 16, item 1).

``_kernels.nb_metric_counts`` computes each (query, item) distance with a vectorised popcount
and then pays one scalar histogram increment per item (docs/metrics.md, "What bounds it on
AVX2"). This probe does the same counts without per-item work for the histogram:

* the database is stored as bit planes, 64 items per word (``P[b, blk]``: bit ``i`` is bit
  ``b`` of item ``64 * blk + i``); a query's distances to 64 items are a 7-plane vertical
  counter, summed from its ``n_bits`` planes (each XOR the query bit) by a Harley-Seal
  carry-save adder tree, four blocks per AVX2 vector;
* the histogram of a 2,048-item tile is the popcount of one equality mask per distance,
  found by a depth-first walk over the counter planes (most significant first) that skips
  every empty prefix;
* relevance is one bitmap per label (``R[l, blk]``; a query's mask is the OR of its labels'
  bitmaps: class ids and multi-hot labels alike), and each relevant item's record
  ``(#items before it at its distance) << S | distance`` comes from the distance mask and a
  running count, in index order, so ``_kernels._rank_sums`` gives the same sums; its
  distance is read back from the counter planes (no second pass over the codes).

It checks that every output equals the flat kernel's (histograms, AP sums bit for bit, P@N
counts) and prints, per stage of this kernel and of the flat one, ns of one core per (query,
item) pair beside numpy's single-thread ``bitwise_count`` (on uint32 words up to 32 bits, as
``retrieval.py`` times it) and the share of a core that 3x numpy's throughput on two cores
leaves. Stages are cumulative: the adder tree alone; with relevance and histograms; with the
walk over the relevant bits (storing only each bit's index); with the records (the histogram
walk then also keeps each distance's mask and count for them); with the rank sums (the whole
kernel). The flat kernel's (``flat_stages``): distances; relevance; the histogram; the walk
and records (``_tile_counts``); the rank sums.

    python benchmarks/bitsliced.py                 # 64 queries x 1,000,000 items, 1 thread
    python benchmarks/bitsliced.py --threads 2 --queries 256

(run from the repository root with the package installed, or with ``PYTHONPATH=.``).
The library does not use this kernel: docs/metrics.md gives the figures and why.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from numba import njit, prange
from retrieval import load, median_time, numpy_floor  # benchmarks/ is on sys.path when run

from deephash import _kernels, codes

_pc = _kernels._popcount
_cttz = _kernels._cttz
TILE = 32  # 64-item blocks per tile (2,048 items, like the flat kernel's tile)
ONES = np.uint64(2**64 - 1)


@njit(inline="always")
def _csa(a, b, c):
    """Carry-save adder: ``(carry, sum)`` of three bit vectors."""
    u = a ^ b
    return (a & b) | (u & c), u ^ c


@njit(inline="always")
def _add16(P, qm, q, k, blk0, nbt, ST):
    """Add planes ``k .. k+15`` (each XOR the query's bit) of blocks ``blk0 ..`` into the
    counter planes ``ST (7, TILE)``: weights 1, 2, 4, 8 by carry-save, 16, 32, 64 rippled."""
    x0, x1, x2, x3 = qm[q, k], qm[q, k + 1], qm[q, k + 2], qm[q, k + 3]
    x4, x5, x6, x7 = qm[q, k + 4], qm[q, k + 5], qm[q, k + 6], qm[q, k + 7]
    x8, x9, x10, x11 = qm[q, k + 8], qm[q, k + 9], qm[q, k + 10], qm[q, k + 11]
    x12, x13, x14, x15 = qm[q, k + 12], qm[q, k + 13], qm[q, k + 14], qm[q, k + 15]
    for j in range(nbt):
        b = blk0 + j
        o, tw, fo, ei = ST[0, j], ST[1, j], ST[2, j], ST[3, j]
        tA, o = _csa(o, P[k, b] ^ x0, P[k + 1, b] ^ x1)
        tB, o = _csa(o, P[k + 2, b] ^ x2, P[k + 3, b] ^ x3)
        fA, tw = _csa(tw, tA, tB)
        tA, o = _csa(o, P[k + 4, b] ^ x4, P[k + 5, b] ^ x5)
        tB, o = _csa(o, P[k + 6, b] ^ x6, P[k + 7, b] ^ x7)
        fB, tw = _csa(tw, tA, tB)
        eA, fo = _csa(fo, fA, fB)
        tA, o = _csa(o, P[k + 8, b] ^ x8, P[k + 9, b] ^ x9)
        tB, o = _csa(o, P[k + 10, b] ^ x10, P[k + 11, b] ^ x11)
        fA, tw = _csa(tw, tA, tB)
        tA, o = _csa(o, P[k + 12, b] ^ x12, P[k + 13, b] ^ x13)
        tB, o = _csa(o, P[k + 14, b] ^ x14, P[k + 15, b] ^ x15)
        fB, tw = _csa(tw, tA, tB)
        eB, fo = _csa(fo, fA, fB)
        s16, ei = _csa(ei, eA, eB)
        a16, a32 = ST[4, j], ST[5, j]
        c = s16 & a16
        ST[0, j], ST[1, j], ST[2, j], ST[3, j] = o, tw, fo, ei
        ST[4, j], ST[5, j], ST[6, j] = a16 ^ s16, a32 ^ c, ST[6, j] | (c & a32)


@njit(inline="always")
def _split(src, plane, s, dst, nbt):
    """``dst = src & (plane if s else ~plane)``; whether any word is non-zero."""
    x = np.uint64(s) - np.uint64(1)
    acc = np.uint64(0)
    for j in range(nbt):
        v = src[j] & (plane[j] ^ x)
        dst[j] = v
        acc |= v
    return acc != 0


@njit(inline="always")
def _leaves(M1, ones, relm, nbt, d, h, hr, Lm, pre, need_ranks):
    """Distances ``d`` (bit 0 clear) and ``d + 1`` under the level-1 mask ``M1``: counts, and
    for the records each block's mask and the count before it."""
    h0, h1 = h[d], h[d + 1]
    r0, r1 = np.int64(0), np.int64(0)
    for j in range(nbt):
        m = M1[j]
        b = m & ones[j]
        a = m ^ b
        if need_ranks:
            pre[d, j], pre[d + 1, j] = np.int32(h0), np.int32(h1)
            Lm[d, j], Lm[d + 1, j] = a, b
        h0 += np.int64(_pc(a))
        h1 += np.int64(_pc(b))
        r0 += np.int64(_pc(a & relm[j]))
        r1 += np.int64(_pc(b & relm[j]))
    h[d], h[d + 1] = h0, h1
    hr[d] += r0
    hr[d + 1] += r1


@njit(inline="always")
# nested loops, one per counter plane: numba needs them written out (no recursion)
def _histograms(ST, vt, M, relm, nbt, h, hr, Lm, pre, need_ranks):  # noqa: C901
    """Walk the counter planes from weight 64 down, skipping empty prefixes."""
    for s6 in range(2):
        if not _split(vt, ST[6], s6, M[5], nbt):
            continue
        for s5 in range(2):
            if not _split(M[5], ST[5], s5, M[4], nbt):
                continue
            for s4 in range(2):
                if not _split(M[4], ST[4], s4, M[3], nbt):
                    continue
                for s3 in range(2):
                    if not _split(M[3], ST[3], s3, M[2], nbt):
                        continue
                    for s2 in range(2):
                        if not _split(M[2], ST[2], s2, M[1], nbt):
                            continue
                        for s1 in range(2):
                            if not _split(M[1], ST[1], s1, M[0], nbt):
                                continue
                            d = 64 * s6 + 32 * s5 + 16 * s4 + 8 * s3 + 4 * s2 + 2 * s1
                            _leaves(M[0], ST[0], relm, nbt, d, h, hr, Lm, pre, need_ranks)


@njit(inline="always")
def _records(ST, j, i, Lm, pre, S):
    """The record of item ``i`` of block ``j``: its distance read from the counter planes,
    its count of earlier items at that distance from the distance mask and running count."""
    one = np.uint64(1)
    d = np.uint64(0)
    for p in range(7):
        d |= ((ST[p, j] >> i) & one) << np.uint64(p)
    below = np.int64(_pc(Lm[d, j] & ((one << i) - one)))
    return ((np.int64(pre[d, j]) + below) << S) | np.int64(d)


@njit(inline="always")
def _walk(ST, relm, nbt, Lm, pre, rb, n, S, with_records):
    """One entry per relevant item of the tile, in index order (the record, or with
    ``with_records`` False just the bit index: the walk's own cost); returns the count."""
    one = np.uint64(1)
    for j in range(nbt):
        m = relm[j]
        while m:
            i = np.uint64(_cttz(m))
            m &= m - one
            rb[n] = _records(ST, j, i, Lm, pre, S) if with_records else np.int32(i)
            n += one
    return n


@njit(parallel=True, cache=True)
# one numba kernel loop, like _kernels.nb_metric_counts (splitting it costs inlining control)
def bs_counts(P, valid, qm, qlab, qnl, R, ndb, n_bits, top_k, ns, nthreads, S, stage):  # noqa: C901
    """``_kernels.nb_metric_counts``' outputs (with ranks), bit-sliced; ``stage`` 0: the
    adder tree only, 1: with relevance and histograms, 2: with the walk over the relevant
    bits, 3: with the records (and the masks and counts they read, kept by the histogram
    walk), 4: everything (the rank sums)."""
    nq = qm.shape[0]
    ng, nblk = P.shape[0] // 16, P.shape[1]
    nb1 = n_bits + 1
    hist_all, hist_rel, ap_sum, ap_cnt, rel_n, nmax = _kernels.count_outputs(nq, nb1, ns)
    K = min(top_k, ndb)
    B = max(1, min(16, (1 << 24) // ndb))
    nblocks = (nq + B - 1) // B
    nchunks = min(nblocks, nthreads)
    for c in prange(nchunks):
        ST = np.empty((7, TILE), np.uint64)
        M = np.empty((6, TILE), np.uint64)
        relm = np.empty(TILE, np.uint64)
        Lm = np.empty((nb1 + 1, TILE), np.uint64)  # rows d <= n_bits (+ the odd sibling)
        pre = np.empty((nb1 + 1, TILE), np.int32)
        cnt = np.zeros((B, 128), np.int64)
        crel = np.zeros((B, 128), np.int64)
        rec = np.empty((B, ndb), np.int32)
        nrec = np.zeros(B, np.uint64)
        for blk in range(c, nblocks, nchunks):
            q0 = blk * B
            nb = min(B, nq - q0)
            cnt[:] = 0
            crel[:] = 0
            nrec[:] = 0
            for b0 in range(0, nblk, TILE):
                nbt = min(TILE, nblk - b0)
                for b in range(nb):
                    q = q0 + b
                    ST[:] = 0
                    for g in range(ng):
                        _add16(P, qm, q, 16 * g, b0, nbt, ST)
                    if stage == 0:  # keep the sums alive
                        cnt[b, 0] += np.int64(ST[0, 0] ^ ST[1, nbt - 1] ^ ST[4, 0])
                        continue
                    relm[:nbt] = 0
                    for li in range(qnl[q]):
                        for j in range(nbt):
                            relm[j] |= R[qlab[q, li], b0 + j]
                    _histograms(
                        ST, valid[b0 : b0 + nbt], M, relm, nbt, cnt[b], crel[b], Lm, pre, stage >= 3
                    )
                    if stage >= 2:
                        nrec[b] = _walk(ST, relm, nbt, Lm, pre, rec[b], nrec[b], S, stage >= 3)
            for b in range(nb):
                q = q0 + b
                hist_all[q] = cnt[b, :nb1]
                hist_rel[q] = crel[b, :nb1]
                if stage == 4:
                    ap_sum[q], ap_cnt[q] = _kernels._rank_sums(
                        cnt[b, :nb1], crel[b, :nb1], rec[b], nrec[b], K, ns, nmax, rel_n[q], S
                    )
    return hist_all, hist_rel, ap_sum, ap_cnt, rel_n


@njit(parallel=True, cache=True)
# the kernel's loop nest with a branch per stage: splitting it would time calls, not stages
def flat_stages(qc, dT, ql, lT, n_bits, nthreads, S, stage):  # noqa: C901
    """The flat kernel (``_kernels.nb_metric_counts``, class ids) cut after a stage, for its
    per-stage times: 0 distances of a tile, 1 + relevance, 2 + histogram (one scalar increment
    per item), 3 + walk over the relevant items with their records (``_tile_counts``), 4 + rank
    sums. Returns one number per query that keeps every stage's work alive."""
    nq, ndb, nb1 = qc.shape[0], dT.shape[1], n_bits + 1
    B = max(1, min(16, (1 << 24) // ndb))
    nblocks = (nq + B - 1) // B
    nchunks = min(nblocks, nthreads)
    out = np.zeros(nq)
    ns = np.array([ndb], np.int64)
    for c in prange(nchunks):
        dt = np.zeros(_kernels._TILE, np.uint8)
        rt = np.zeros(_kernels._TILE, np.uint8)
        acc = np.empty(1, lT.dtype)
        cnt = np.zeros((B, nb1), np.int64)
        crel = np.zeros((B, nb1), np.int64)
        rec = np.empty((B, ndb), np.int32)
        nrec = np.zeros(B, np.uint64)
        rel_n = np.zeros(1, np.int64)
        for blk in range(c, nblocks, nchunks):
            q0 = blk * B
            nb = min(B, nq - q0)
            cnt[:] = 0
            crel[:] = 0
            nrec[:] = 0
            for t0 in range(0, ndb, _kernels._TILE):
                t1 = min(ndb, t0 + _kernels._TILE)
                for b in range(nb):
                    _kernels._tile_dist(qc, q0 + b, dT, t0, t1, dt)
                    if stage >= 1:
                        _kernels._tile_rel(ql, q0 + b, lT, True, t0, t1, rt, acc)
                    if stage == 2:
                        for t in range(t1 - t0):
                            cnt[b, dt[t]] += 1
                    elif stage >= 3:
                        nrec[b] = _kernels._tile_counts(
                            dt, rt, t1 - t0, cnt[b], crel[b], rec[b], nrec[b], S, True
                        )
                    else:  # keep the tile's distances (and relevance) alive
                        cnt[b, dt[t1 - t0 - 1]] += 1 + rt[0]
            for b in range(nb):
                out[q0 + b] = cnt[b].sum() + nrec[b]
                if stage == 4:
                    out[q0 + b], _ = _kernels._rank_sums(
                        cnt[b], crel[b], rec[b], nrec[b], ndb, ns, ndb, rel_n, S
                    )
    return out


def bit_planes(bits: np.ndarray, n_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """``(P (n_pad, ceil(N / 64)) uint64, valid (ceil(N / 64),) uint64)`` from ``(N, b)``
    bools (planes past ``b`` are zero); ``valid`` masks the last block's missing items."""
    n, b = bits.shape
    nblk = (n + 63) // 64
    pad = np.zeros((nblk * 64, n_pad), bool)
    pad[:n, :b] = bits
    planes = np.packbits(pad.T.reshape(n_pad, nblk, 64), axis=2, bitorder="little")
    valid = np.full(nblk, ONES, np.uint64)
    if n % 64:
        valid[-1] = np.uint64((1 << (n % 64)) - 1)
    return np.ascontiguousarray(planes.view(np.uint64).reshape(n_pad, nblk)), valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--database", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    nq, ndb = args.queries, args.database
    if not 1 <= ndb <= 1 << 23:  # int32 records: (rank << 8) | distance, like the kernel's
        raise ValueError(f"database must be in 1..2**23. Received: database={ndb}")
    print(f"{load()}; {args.threads} thread(s)")
    for bits in args.bits:
        if not 1 <= bits <= 64:
            raise ValueError(f"bits must be in 1..64 (7 counter planes). Received: bits={bits}")
        qb = rng.integers(0, 2, (nq, bits)).astype(bool)
        db = rng.integers(0, 2, (ndb, bits)).astype(bool)
        ql, dl = rng.integers(0, args.classes, nq), rng.integers(0, args.classes, ndb)
        n_pad = -(-bits // 16) * 16
        P, valid = bit_planes(db, n_pad)
        qm = np.zeros((nq, n_pad), np.uint64)
        qm[:, :bits] = np.where(qb, ONES, np.uint64(0))
        R, _ = bit_planes(np.eye(args.classes, dtype=bool)[dl], args.classes)
        qlab, qnl = ql.reshape(-1, 1).astype(np.int64), np.ones(nq, np.int64)
        qw, _ = codes.as_words(codes.pack(qb), bits, packed=True)
        dw, _ = codes.as_words(codes.pack(db), bits, packed=True)
        qlw = ql.astype(np.int64).reshape(-1, 1).view(np.uint64)
        dlw = dl.astype(np.int64).reshape(-1, 1).view(np.uint64)
        ns = np.array([100, 1000], np.int64)

        def flat():
            return _kernels.metric_counts(qw, dw, qlw, dlw, True, bits, ndb, ns, True)

        def sliced(stage):
            return bs_counts(P, valid, qm, qlab, qnl, R, ndb, bits, ndb, ns, args.threads, 8, stage)

        def per_pair(fn, *a):
            fn(*a)  # warm-up: compilation, page faults
            out, wall, _ = median_time(fn, *a, repeat=args.repeat)
            return out, wall * args.threads / (nq * ndb) * 1e9

        ref, t_flat = per_pair(flat)
        fl = _kernels._numba_layout(qw, dw, qlw, dlw, True, bits)
        t_fs = [
            per_pair(flat_stages, fl[0], fl[1], fl[2], fl[3], bits, args.threads, 8, s)[1]
            for s in range(5)
        ]
        times = [per_pair(sliced, s)[1] for s in (0, 1, 2, 3)]
        out, t_all = per_pair(sliced, 4)
        same = all(np.array_equal(a, b) for a, b in zip(out, ref))
        assert same, "bit-sliced counts differ from the flat kernel's"
        n_np = min(nq, 16)
        # numpy's floor over the words retrieval.py times it on (uint32 up to 32 bits: about
        # 1.7x faster than over uint64 words here), the best of --repeat runs
        nw = (qw.astype(np.uint32), dw.astype(np.uint32)) if bits <= 32 else (qw, dw)
        t_np = min(numpy_floor(*nw, n_np) for _ in range(args.repeat)) / (n_np * ndb) * 1e9
        print(
            f"{bits} bits, ns of one core per pair: adder tree {times[0]:.3f}, + relevance and "
            f"histograms {times[1]:.3f}, + walk over the relevant bits {times[2]:.3f}, + records "
            f"{times[3]:.3f}, + rank sums {t_all:.3f} (all outputs identical to the flat "
            f"kernel) | flat kernel {t_flat:.3f} | numpy bitwise_count, 1 thread "
            f"{t_np:.3f} | bit-sliced / flat time {t_all / t_flat:.2f}x | 3x numpy on two cores "
            f"leaves a core {2 * t_np / 3:.3f}"
        )
        print(
            f"{bits} bits, flat kernel by stage: distances {t_fs[0]:.3f}, + relevance "
            f"{t_fs[1]:.3f}, + histogram {t_fs[2]:.3f}, + walk and records {t_fs[3]:.3f}, + rank "
            f"sums {t_fs[4]:.3f}"
        )


if __name__ == "__main__":
    main()
