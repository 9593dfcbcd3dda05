"""Retrieval speed: deephash metrics and HammingIndex against references, in one process.

At each bit length (16/32/48/64) on random codes and 10-class labels it measures
(a) ``metrics.evaluate`` and ``metrics.mean_average_precision`` (mAP@all) against a
    per-query argsort reference (timed on a subset of queries and scaled to all of them),
(b) ``HammingIndex.search(k=100)`` against faiss ``IndexBinaryFlat`` on the same codes,
and prints times, ratios and pairs/s; plus the peak memory of the mAP run.

    python benchmarks/retrieval.py            # 10,000 queries x 1,000,000 codes (minutes)
    python benchmarks/retrieval.py --quick    # smoke run (seconds)
    python benchmarks/retrieval.py --queries 1000 --bits 64   # a tenth, one bit length

(run from the repository root with the package installed, or with ``PYTHONPATH=.``).

Speed is reported as ratios measured in the same process, never asserted.
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from deephash import _kernels, codes, metrics
from deephash.index import HammingIndex


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


CPU = {}  # label -> process CPU seconds of the last timed call (all threads)


def timed(fn, *args, label=None, **kwargs):
    """Wall-clock seconds of one call; its process CPU time goes to ``CPU[label]``.

    On a shared machine wall time depends on what else runs; CPU time (summed over threads)
    shows the work done and is the fairer figure for comparisons.
    """
    c, t = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    wall = time.perf_counter() - t
    CPU[label] = time.process_time() - c
    return out, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 48, 64])
    parser.add_argument("--reference-queries", type=int, default=20, help="queries timed for the argsort reference")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 queries x 20,000 codes")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.database, args.reference_queries = 200, 20_000, 10
    try:
        import faiss
    except ImportError:
        faiss = None
    nq, ndb = args.queries, args.database
    pairs = nq * ndb
    print(f"{nq} queries x {ndb} database codes, {args.classes} classes, kernels={_kernels.resolve()}")
    rng = np.random.default_rng(0)
    ql = rng.integers(0, args.classes, nq)
    dl = rng.integers(0, args.classes, ndb)
    for bits in args.bits:
        qb = rng.integers(0, 2, (nq, bits)).astype(bool)
        db = rng.integers(0, 2, (ndb, bits)).astype(bool)
        qp, dp = codes.pack(qb), codes.pack(db)
        # warm-up (numba compilation is cached on disk, but the first call still loads it)
        metrics.evaluate(qp[:2], dp[:100], ql[:2], dl[:100], n_bits=bits, packed=True)
        print(f"\n--- {bits} bits ---")
        m, t_map = timed(metrics.mean_average_precision, qp, dp, ql, dl, n_bits=bits, packed=True, label="map")
        ev, t_eval = timed(metrics.evaluate, qp, dp, ql, dl, n_bits=bits, packed=True, label="eval")
        nr = min(args.reference_queries, nq)
        ref, t_ref = timed(reference_map, qb[:nr], dp, ql[:nr], dl, label="ref")
        check = metrics.mean_average_precision(qp[:nr], dp, ql[:nr], dl, n_bits=bits, packed=True)
        assert abs(check - ref) < 1e-9, (check, ref)
        t_ref_all = t_ref * nq / nr
        c_ref_all = CPU["ref"] * nq / nr
        print(f"mAP@all           {t_map:8.2f} s wall {CPU['map']:8.2f} s cpu  {pairs / t_map / 1e9:6.2f} Gpairs/s  (mAP {m:.4f})")
        print(
            f"evaluate()        {t_eval:8.2f} s wall {CPU['eval']:8.2f} s cpu  {pairs / t_eval / 1e9:6.2f} Gpairs/s"
            f"  (P@r2 {ev['precision_radius_2']:.4f})"
        )
        print(
            f"argsort reference {t_ref_all:8.2f} s wall {c_ref_all:8.2f} s cpu  (scaled from {nr} queries)  "
            f"speed-up wall: mAP {t_ref_all / t_map:6.1f}x, evaluate {t_ref_all / t_eval:6.1f}x; "
            f"cpu: mAP {c_ref_all / CPU['map']:6.1f}x, evaluate {c_ref_all / CPU['eval']:6.1f}x"
        )
        index = HammingIndex(bits)
        index.add(dp, packed=True)
        index.search(qp[:2], 100, packed=True)
        (d, i), t_ours = timed(index.search, qp, 100, packed=True, label="search")
        line = f"search k=100      {t_ours:8.2f} s wall {CPU['search']:8.2f} s cpu  {pairs / t_ours / 1e9:6.2f} Gpairs/s"
        if faiss is not None:
            flat = faiss.IndexBinaryFlat(8 * codes.n_bytes(bits))
            flat.add(dp)
            flat.search(qp[:2], 100)
            (fd, _), t_faiss = timed(flat.search, qp, 100, label="faiss")
            assert np.array_equal(fd, d), "distances differ from faiss"
            line += (
                f" | faiss IndexBinaryFlat {t_faiss:.2f} s wall {CPU['faiss']:.2f} s cpu"
                f" -> deephash/faiss ratio wall {t_ours / t_faiss:.2f}, cpu {CPU['search'] / CPU['faiss']:.2f}"
            )
        print(line)
    # peak memory of mAP@all on the last bit length: tracemalloc sees numpy allocations
    # (numba's are not traced by tracemalloc); ru_maxrss is the process high-water mark.
    tracemalloc.start()
    metrics.mean_average_precision(qp, dp, ql, dl, n_bits=bits, packed=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\npeak traced numpy memory during mAP@all: {peak / 1024**2:.0f} MiB; process max RSS so far: {rss:.2f} GiB")


if __name__ == "__main__":
    main()
