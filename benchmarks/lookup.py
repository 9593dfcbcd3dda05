"""Radius lookup speed: MultiIndexHashing against the exhaustive HammingIndex.range_search, in one process.

For each database size, bit length and code distribution it builds a ``MultiIndexHashing``
(``m`` by the paper's rule unless ``--m``), checks that its radius-``r`` results equal the
exhaustive ``range_search`` for every query, and prints build time, query time per query
for both, their ratio, the mean number of hits and the memory of the tables.

Distributions: ``random`` (uniform bits: tiny buckets, the best case) and ``clustered``
(10 centres, each bit flipped with probability 1.5/bits: large buckets, like learned codes).

    python benchmarks/lookup.py                 # N = 100k and 1M, 32 and 64 bits, radius 2
    python benchmarks/lookup.py --quick         # smoke run (seconds)
    python benchmarks/lookup.py --database 1000000 --bits 64 --radius 3 --m 4

(run from the repository root with ``PYTHONPATH=.``). Ratios are measured, never asserted.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from deephash import _kernels, codes
from deephash.index import HammingIndex, MultiIndexHashing


def make_codes(kind: str, n: int, nq: int, bits: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Packed ``(database, queries)`` of the given distribution."""
    if kind == "random":
        db = rng.integers(0, 2, (n, bits)).astype(bool)
        qb = rng.integers(0, 2, (nq, bits)).astype(bool)
    else:
        centres = rng.integers(0, 2, (10, bits)).astype(bool)
        db = centres[rng.integers(0, 10, n)] ^ (rng.random((n, bits)) < 1.5 / bits)
        qb = centres[rng.integers(0, 10, nq)] ^ (rng.random((nq, bits)) < 1.5 / bits)
    return codes.pack(db), codes.pack(qb)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--kinds", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--m", type=int, default=None, help="substrings (default: the paper's rule)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 codes, 100 queries")
    args = parser.parse_args()
    if args.quick:
        args.database, args.queries = [20_000], 100
    print(f"radius {args.radius}, {args.queries} queries, kernels={_kernels.resolve()}")
    print(f"{'codes':>9} {'N':>9} {'bits':>4} {'m':>2} {'build s':>8} {'table MiB':>9} {'codes MiB':>9} "
          f"{'lookup us/q':>11} {'scan us/q':>10} {'speed-up':>9} {'hits/q':>9}")
    rng = np.random.default_rng(0)
    runs = [(k, n, b) for k in args.kinds for n in args.database for b in args.bits]
    for kind, n, bits in tqdm(runs, desc="configurations", leave=False):
        dp, qp = make_codes(kind, n, args.queries, bits, rng)
        flat = HammingIndex(bits)
        flat.add(dp, packed=True)
        mih = MultiIndexHashing(bits, m=args.m)
        mih.add(dp, packed=True)
        _, t_build = timed(mih.build)
        flat.range_search(qp[:2], args.radius, packed=True)  # warm-up: load the compiled kernels
        mih.range_search(qp[:2], args.radius, packed=True)
        want, t_scan = timed(flat.range_search, qp, args.radius, packed=True)
        got, t_mih = timed(mih.range_search, qp, args.radius, packed=True)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), "lookup differs from range_search"
        hits = np.mean([len(a) for a in want])
        us = 1e6 / len(qp)
        tqdm.write(f"{kind:>9} {n:>9} {bits:>4} {mih.m:>2} {t_build:8.3f} {mih.tables_nbytes / 2**20:9.1f} "
              f"{dp.nbytes / 2**20:9.1f} {t_mih * us:11.1f} {t_scan * us:10.1f} {t_scan / t_mih:8.1f}x {hits:9.1f}")


if __name__ == "__main__":
    main()
