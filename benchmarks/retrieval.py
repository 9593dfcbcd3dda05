"""Retrieval speed: deephash metrics and HammingIndex against references and floors, in one process.

At each bit length (default 32 and 64) on random codes and 10-class labels it measures, as
the median of ``--repeat`` runs, in one process:

(a) the floors: a vectorised popcount loop (numba, every query-item distance summed, tiled
    like the metric kernels; nothing else) and numpy's single-thread ``bitwise_count`` over
    the same pairs (timed on a subset of queries, scaled);
(b) ``metrics.mean_average_precision`` (mAP@all), ``metrics.evaluate`` and
    ``metrics.precision_recall_curve``: time, Gpairs/s and the ratio to each floor, and
    ``evaluate`` / mAP; a per-query argsort reference (subset, scaled) checks the value;
(c) ``HammingIndex.search(k=100)`` and ``range_search(2)`` against faiss ``IndexBinaryFlat``
    on the same codes (faiss returns ties at the k-th distance and range hits unordered).

Then, on clustered codes (``--distinct`` distinct 64-bit codes, 1M items, queries drawn from
the same codes, labels tied to the codes with 10% noise): k=100 search with the flat scan
(``backend="numpy"``), by distinct codes (``backend="grouped"``) and with faiss, for those
queries and for the same queries two bits off (no early stop of the flat scan); and mAP@all
with and without counting repeated (code, label) queries once; and the same items stored by
(code, label): mAP@all counted per run of equal items against the flat kernel.

    python benchmarks/retrieval.py            # 10,000 queries x 1,000,000 codes (minutes)
    python benchmarks/retrieval.py --quick    # smoke run (seconds)
    python benchmarks/retrieval.py --queries 1000 --bits 64   # a tenth, one bit length

(run from the repository root with the package installed, or with ``PYTHONPATH=.``).
Speed is reported as ratios measured in the same process, never asserted; the load average
is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numba
import numpy as np
from numba import njit, prange

from deephash import _grouped, _kernels, codes, metrics
from deephash.index import HammingIndex

# queries of a search warm-up: calls of at most 16 queries (or few pairs) run a serial twin
# of the kernel, so a smaller warm-up would leave the parallel one to compile in the timing
WARM = 17
_popcount_w = _kernels._popcount_w  # popcount at the word's width (uint32 or uint64)


@njit(parallel=True, cache=True)
def popcount_floor(qc, dT):
    """Sum over every (query, item) of ``popcount(q ^ x)``: the vectorised popcount floor.

    ``dT`` is the database word-major ``(W, N)`` (uint32 words for codes of at most 32 bits,
    like the metric kernels); blocks of 16 queries stream 2048-item tiles
    (what the metric kernels do), the inner loop is a plain vectorisable popcount-sum.
    """
    nq, W = qc.shape
    ndb = dT.shape[1]
    out = np.zeros(nq, np.uint64)
    B = 16
    nblocks = (nq + B - 1) // B
    for blk in prange(nblocks):
        for t0 in range(0, ndb, 2048):
            t1 = min(ndb, t0 + 2048)
            for q in range(blk * B, min(nq, blk * B + B)):
                s = np.uint64(0)
                for w in range(W):
                    c = dT[w, t0:t1]
                    qw = qc[q, w]
                    for t in range(c.shape[0]):
                        s += _popcount_w(qw ^ c[t])
                out[q] += s
    return out


def numpy_floor(qw: np.ndarray, dw: np.ndarray, n: int) -> float:
    """Seconds for numpy's one-thread ``bitwise_count`` distances of ``n`` queries (row by row)."""
    t = time.perf_counter()
    for i in range(n):
        d = np.bitwise_count(dw[:, 0] ^ qw[i, 0])
        for w in range(1, dw.shape[1]):
            d += np.bitwise_count(dw[:, w] ^ qw[i, w])
    return time.perf_counter() - t


def reference_map(qb: np.ndarray, db_packed: np.ndarray, ql: np.ndarray, dl: np.ndarray) -> float:
    """The slow way: per query, all distances, a stable argsort, cumulative precision."""
    aps = []
    for i in range(len(qb)):
        qp = np.packbits(qb[i])
        dist = np.bitwise_count(db_packed ^ qp).sum(axis=1)
        order = np.argsort(dist, kind="stable")
        rel = dl[order] == ql[i]
        hits = np.cumsum(rel)
        n = hits[-1]
        aps.append(float((hits[rel] / (np.flatnonzero(rel) + 1)).sum() / n) if n else 0.0)
    return float(np.mean(aps))


def median_time(fn, *args, repeat=3, **kwargs):
    """``(result of the last call, median wall s, median CPU s)`` over ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, float(np.median(walls)), float(np.median(cpus))


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def random_codes(args, rng, ql, dl) -> None:
    nq, ndb = args.queries, args.database
    pairs = nq * ndb
    rep = args.repeat
    try:
        import faiss
    except ImportError:
        faiss = None
    for bits in args.bits:
        qb = rng.integers(0, 2, (nq, bits)).astype(bool)
        db = rng.integers(0, 2, (ndb, bits)).astype(bool)
        qp, dp = codes.pack(qb), codes.pack(db)
        del db
        qw, _ = codes.as_words(qp, bits, packed=True)
        dw, _ = codes.as_words(dp, bits, packed=True)
        if bits <= 32:  # the metric kernels use uint32 words here: so do both floors
            qw, dw = qw.astype(np.uint32), dw.astype(np.uint32)
        dT = np.ascontiguousarray(dw.T)
        # warm-up (numba compilation is cached on disk, but the first call still loads it)
        metrics.evaluate(qp[:2], dp[:100], ql[:2], dl[:100], n_bits=bits, packed=True)
        popcount_floor(qw[:2], dT[:, :100])
        print(f"\n--- {bits} bits, random codes ({load()}) ---")
        _, t_floor, c_floor = median_time(popcount_floor, qw, dT, repeat=rep)
        nn = max(1, min(nq, args.numpy_queries))
        t_np = float(np.median([numpy_floor(qw, dw, nn) for _ in range(rep)])) * nq / nn

        def g(t):
            return pairs / t / 1e9

        print(
            f"vectorised popcount floor {t_floor:7.2f} s wall {c_floor:7.2f} s cpu "
            f"{g(t_floor):6.2f} Gpairs/s"
        )
        print(
            f"numpy bitwise_count, 1 thread {t_np:7.2f} s wall (scaled from {nn} queries) "
            f"{g(t_np):6.2f} Gpairs/s"
        )
        kw = dict(n_bits=bits, packed=True)
        m, t_map, c_map = median_time(
            metrics.mean_average_precision, qp, dp, ql, dl, repeat=rep, **kw
        )
        ev, t_eval, c_eval = median_time(metrics.evaluate, qp, dp, ql, dl, repeat=rep, **kw)
        _, t_pr, c_pr = median_time(
            metrics.precision_recall_curve, qp, dp, ql, dl, repeat=rep, **kw
        )
        for name, t, c in (
            ("mAP@all", t_map, c_map),
            ("evaluate()", t_eval, c_eval),
            ("PR curve", t_pr, c_pr),
        ):
            print(
                f"{name:<12} {t:7.2f} s wall {c:7.2f} s cpu {g(t):6.2f} Gpairs/s | "
                f"time / popcount floor {t / t_floor:5.2f}x | "
                f"throughput / numpy 1-thread {t_np / t:5.2f}x"
            )
        print(
            f"evaluate() / mAP@all {t_eval / t_map:.2f}x   "
            f"(mAP {m:.4f}, P@r2 {ev['precision_radius_2']:.4f})"
        )
        nr = min(args.reference_queries, nq)
        t = time.perf_counter()
        ref = reference_map(qb[:nr], dp, ql[:nr], dl)
        t_ref = (time.perf_counter() - t) * nq / nr
        check = metrics.mean_average_precision(qp[:nr], dp, ql[:nr], dl, **kw)
        assert abs(check - ref) < 1e-9, (check, ref)
        print(
            f"argsort reference {t_ref:8.1f} s wall (scaled from {nr} queries, value checked): "
            f"mAP@all is {t_ref / t_map:.0f}x faster"
        )
        index = HammingIndex(bits, backend="numpy")
        index.add(dp, packed=True)
        index.search(qp[:WARM], 100, packed=True)
        (d, _), t_ours, _ = median_time(index.search, qp, 100, packed=True, repeat=rep)
        line = f"search k=100 {t_ours:7.2f} s wall {g(t_ours):6.2f} Gpairs/s"
        if faiss is not None:
            flat = faiss.IndexBinaryFlat(8 * codes.n_bytes(bits))
            flat.add(dp)
            flat.search(qp[:WARM], 100)
            (fd, _), t_faiss, _ = median_time(flat.search, qp, 100, repeat=rep)
            assert np.array_equal(fd, d), "distances differ from faiss"
            line += (
                f" | faiss IndexBinaryFlat {t_faiss:.2f} s -> "
                f"deephash / faiss time {t_ours / t_faiss:.2f}"
            )
        print(line)
        # radius 2 ("precision within Hamming radius 2"); faiss' range is strict: ask for 3
        index.range_search(qp[:WARM], 2, packed=True)
        hits, t_rng, _ = median_time(index.range_search, qp, 2, packed=True, repeat=rep)
        line = f"range r=2    {t_rng:7.2f} s wall {g(t_rng):6.2f} Gpairs/s"
        if faiss is not None:
            flat.range_search(qp[:WARM], 3)
            (lims, _, _), t_frng, _ = median_time(flat.range_search, qp, 3, repeat=rep)
            assert np.array_equal(np.diff(lims), [h.size for h in hits]), "faiss finds others"
            line += (
                f" | faiss range_search {t_frng:.2f} s (unordered) -> "
                f"deephash / faiss time {t_rng / t_frng:.2f}"
            )
        print(line)
    # peak memory of mAP@all on the last bit length: tracemalloc sees numpy allocations
    # (numba's are not traced by tracemalloc); ru_maxrss is the process high-water mark.
    tracemalloc.start()
    metrics.mean_average_precision(qp, dp, ql, dl, n_bits=bits, packed=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"peak traced numpy memory during mAP@all: {peak / 1024**2:.0f} MiB; "
        f"process max RSS so far: {rss:.2f} GiB"
    )


def clustered_codes(args, rng) -> None:
    """Few distinct codes, like a trained model's: grouped search and repeated queries."""
    nq, ndb, u, bits = args.queries, args.database, args.distinct, 64
    rep = args.repeat
    centres = codes.pack(rng.integers(0, 2, (u, bits)).astype(bool))
    code_class = rng.integers(0, args.classes, u)
    gd, gq = rng.integers(0, u, ndb), rng.integers(0, u, nq)

    def noisy(g):
        return np.where(
            rng.random(g.size) < 0.1, rng.integers(0, args.classes, g.size), code_class[g]
        )

    dp, qp, dl, ql = centres[gd], centres[gq], noisy(gd), noisy(gq)
    print(
        f"\n--- {bits} bits, clustered: {ndb} items with {u} distinct codes, {nq} queries "
        f"drawn from them ({load()}) ---"
    )
    flat = HammingIndex(bits, backend="numpy")
    flat.add(dp, packed=True)
    grouped = HammingIndex(bits, backend="grouped")
    grouped.add(dp, packed=True)
    warm = HammingIndex(bits, backend="grouped")  # load the compiled grouping kernels
    warm.add(dp[:1000], packed=True)
    warm.search(qp[:20], 10, packed=True)
    auto = HammingIndex(bits)
    auto.add(dp, packed=True)
    t = time.perf_counter()
    assert auto.n_distinct == u  # "auto" groups these codes
    print(
        f"grouping {ndb} codes into {u} (first search after add): {time.perf_counter() - t:.3f} s"
    )
    for index in (flat, grouped):
        index.search(qp[:WARM], 100, packed=True)
    # queries equal to database codes (the flat scan stops once k items lie at distance 0),
    # and the same queries with two bits flipped (it scans everything)
    off = qp ^ codes.pack(np.eye(bits, dtype=bool)[rng.integers(0, bits, (nq, 2))].any(1))
    for what, qs in (("queries equal to codes", qp), ("queries 1-2 bits off", off)):
        (fd, fi), t_flat, _ = median_time(flat.search, qs, 100, packed=True, repeat=rep)
        (gd_, gi), t_grp, _ = median_time(grouped.search, qs, 100, packed=True, repeat=rep)
        assert np.array_equal(fd, gd_) and np.array_equal(fi, gi), (
            "grouped search differs from the flat scan"
        )
        one = [
            median_time(ix.search, qs[:1], 100, packed=True, repeat=5)[1] for ix in (flat, grouped)
        ]
        line = (
            f"search k=100, {what}: flat scan {t_flat:.3f} s, grouped {t_grp:.4f} s -> "
            f"grouped is {t_flat / t_grp:.0f}x faster (one query: {one[0] * 1e3:.2f} ms vs "
            f"{one[1] * 1e3:.3f} ms, {one[0] / one[1]:.0f}x)"
        )
        try:
            import faiss

            fx = faiss.IndexBinaryFlat(bits)
            fx.add(dp)
            fx.search(qs[:2], 100)
            _, t_faiss, _ = median_time(fx.search, qs, 100, repeat=rep)
            line += (
                f"; faiss IndexBinaryFlat {t_faiss:.3f} s ({t_faiss / t_grp:.0f}x the grouped time)"
            )
        except ImportError:
            pass
        print(line)
    kw = dict(n_bits=bits, packed=True)
    metrics.mean_average_precision(qp[:2], dp[:100], ql[:2], dl[:100], **kw)
    m, t_map, _ = median_time(metrics.mean_average_precision, qp, dp, ql, dl, repeat=rep, **kw)
    qw, _ = codes.as_words(qp, bits, packed=True)
    dw, _ = codes.as_words(dp, bits, packed=True)

    def lw(y):
        return y.astype(np.int64).view(np.uint64).reshape(-1, 1)

    def every():
        return _kernels.metric_counts(qw, dw, lw(ql), lw(dl), True, bits, ndb, [1], True)

    _, t_every, _ = median_time(every, repeat=rep)
    n_pairs = len(np.unique(np.stack([gq, ql]), axis=1).T)
    print(
        f"mAP@all {m:.4f}: {t_map:.2f} s counting each of the {n_pairs} distinct "
        "(code, label) queries once, "
        f"{t_every:.2f} s counting every query -> {t_every / t_map:.1f}x"
    )
    by_runs(qp, dp, ql, dl, gd, bits, rep)


def by_runs(qp, dp, ql, dl, gd, bits, rep) -> None:
    """The same items stored by (code, label), as a database kept by class often is: mAP@all
    counted per run of equal (code, label) items against the flat kernel (identical values)."""
    order = np.lexsort((dl, gd))
    dp, dl = dp[order], dl[order]
    qw, _ = codes.as_words(qp, bits, packed=True)
    dw, _ = codes.as_words(dp, bits, packed=True)
    lq, ld, eq = metrics._prepare_labels(ql, dl, len(ql), len(dl))
    args = (qw, dw, lq, ld, eq, bits, len(dl), [1], True)
    _grouped.metric_counts_by_runs(*args)
    runs = _grouped.runs_of(dw, ld).size
    out_r, t_runs, _ = median_time(_grouped.metric_counts_by_runs, *args, repeat=rep)
    out_f, t_flat, _ = median_time(_kernels.metric_counts, *args, repeat=rep)
    assert all(np.array_equal(a, b) for a, b in zip(out_r, out_f)), "runs differ from flat"
    kw = dict(n_bits=bits, packed=True)
    m, t_map, _ = median_time(metrics.mean_average_precision, qp, dp, ql, dl, repeat=rep, **kw)
    print(
        f"database stored by (code, label): {runs} runs; per-query counts for every query "
        f"by runs {t_runs:.3f} s, flat {t_flat:.2f} s -> {t_flat / t_runs:.0f}x (identical); "
        f"mean_average_precision {m:.4f} in {t_map:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement (median reported)"
    )
    parser.add_argument(
        "--reference-queries", type=int, default=20, help="queries timed for the argsort reference"
    )
    parser.add_argument(
        "--numpy-queries", type=int, default=50, help="queries timed for the numpy floor"
    )
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--distinct", type=int, default=2000, help="distinct codes of the clustered database"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["random", "clustered"])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 queries x 20,000 codes"
    )
    args = parser.parse_args()
    if args.quick:
        args.queries, args.database, args.reference_queries, args.distinct, args.repeat = (
            200,
            20_000,
            10,
            200,
            1,
        )
    print(
        f"{args.queries} queries x {args.database} database codes, {args.classes} classes, "
        f"kernels={_kernels.resolve()}, {numba.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {load()}"
    )
    rng = np.random.default_rng(0)
    ql = rng.integers(0, args.classes, args.queries)
    dl = rng.integers(0, args.classes, args.database)
    if "random" not in args.skip:
        random_codes(args, rng, ql, dl)
    if "clustered" not in args.skip:
        clustered_codes(args, rng)


if __name__ == "__main__":
    main()
