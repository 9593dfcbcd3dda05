"""Radius lookup speed: MultiIndexHashing against the exhaustive range_search, in one process.

For each database size, bit length and code distribution it builds a ``MultiIndexHashing``
(``m`` by the paper's rule unless ``--m``), checks that its radius-``r`` results equal the
exhaustive ``range_search`` for every query, and prints build time, query time per query
for both, their ratio, the mean number of hits and the memory of the tables.

Distributions: ``random`` (uniform bits: tiny buckets, the best case) and ``clustered``
(10 centres, each bit flipped with probability 1.5/bits: large buckets, like learned codes).

    python benchmarks/lookup.py                 # N = 100k and 1M, 32 and 64 bits, radius 2
    python benchmarks/lookup.py --quick         # smoke run (seconds)
    python benchmarks/lookup.py --database 1000000 --bits 64 --radius 3 --m 4
    python benchmarks/lookup.py --sweep   # the measurements behind MultiIndexHashing's thresholds

``--sweep`` times ``MultiIndexHashing.range_search`` with each candidate value of its two scan
thresholds (``SCAN_FRACTION``: scan a query whose buckets hold more than ``N * f`` candidates;
``PROBE_FRACTION``: scan the whole call when a query needs more than ``N * f`` probes) over
code distributions (random; clustered with 1.5 and 4 flipped bits around 10 centres;
2,000 distinct codes repeated), radii 1-3 and 32/64 bits, and prints each time relative
to the best value for that configuration (median of ``--repeat`` runs).

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
    elif kind == "repeated":  # 2,000 distinct codes, queries among them with one flipped bit
        centres = rng.integers(0, 2, (2000, bits)).astype(bool)
        db = centres[rng.integers(0, 2000, n)]
        qb = centres[rng.integers(0, 2000, nq)] ^ (rng.random((nq, bits)) < 1 / bits)
    else:  # "clustered" (1.5 flipped bits) or "spread" (4 flipped bits) around 10 centres
        flips = 1.5 if kind == "clustered" else 4.0
        centres = rng.integers(0, 2, (10, bits)).astype(bool)
        db = centres[rng.integers(0, 10, n)] ^ (rng.random((n, bits)) < flips / bits)
        qb = centres[rng.integers(0, 10, nq)] ^ (rng.random((nq, bits)) < flips / bits)
    return codes.pack(db), codes.pack(qb)


SCAN_VALUES = (1 / 1024, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1.0)
PROBE_VALUES = (1 / 512, 1 / 64, 1 / 8, 1.0)


def sweep(args) -> None:
    """Time range_search per threshold value; print each relative to the best per configuration."""
    rng = np.random.default_rng(0)
    worst = {("scan", v): [] for v in SCAN_VALUES} | {("probe", v): [] for v in PROBE_VALUES}
    n = max(args.database)
    print(
        f"N = {n}, {args.queries} queries, median of {args.repeat}; "
        "time / best time per configuration"
    )
    head = " ".join(f"{'1/' + str(round(1 / v)) if v < 1 else '1':>7}" for v in SCAN_VALUES)
    head2 = " ".join(f"{'1/' + str(round(1 / v)) if v < 1 else '1':>7}" for v in PROBE_VALUES)
    print(
        f"{'codes':>9} {'bits':>4} {'r':>2} {'hits/q':>8} | SCAN_FRACTION {head} | "
        f"PROBE_FRACTION {head2} | best us/q"
    )
    for kind in ("random", "clustered", "spread", "repeated"):
        for bits in args.bits:
            dp, qp = make_codes(kind, n, args.queries, bits, rng)
            mih = MultiIndexHashing(bits)
            mih.add(dp, packed=True)
            mih.build()
            for radius in (1, 2, 3):
                want = None

                def run(scan, probe):
                    nonlocal want
                    mih.SCAN_FRACTION, mih.PROBE_FRACTION = scan, probe
                    mih.range_search(qp[:2], radius, packed=True)
                    times = []
                    for _ in range(args.repeat):
                        got, t = timed(mih.range_search, qp, radius, packed=True)
                        times.append(t)
                    if want is None:
                        want = got
                    assert all(np.array_equal(a, b) for a, b in zip(got, want)), (
                        "results depend on the threshold"
                    )
                    return float(np.median(times))

                # the scan threshold with table lookups allowed; the probe threshold with the
                # default scan one
                ts = [run(v, 1e9) for v in SCAN_VALUES]
                tp = [run(MultiIndexHashing.SCAN_FRACTION, v) for v in PROBE_VALUES]
                best_s, best_p = min(ts), min(tp)
                for v, t in zip(SCAN_VALUES, ts):
                    worst["scan", v].append(t / best_s)
                for v, t in zip(PROBE_VALUES, tp):
                    worst["probe", v].append(t / best_p)
                hits = np.mean([len(a) for a in want])
                print(
                    f"{kind:>9} {bits:>4} {radius:>2} {hits:8.0f} | {'':13} "
                    + " ".join(f"{t / best_s:7.2f}" for t in ts)
                    + f" | {'':14} "
                    + " ".join(f"{t / best_p:7.2f}" for t in tp)
                    + f" | {min(best_s, best_p) * 1e6 / len(qp):8.1f}",
                    flush=True,
                )
    print("worst ratio to the best over all configurations (lower is better):")
    for (which, v), r in worst.items():
        print(f"  {which:>5} {v:.6f}: worst {max(r):.2f}x, median {np.median(r):.2f}x")


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--kinds", nargs="+", default=["random", "clustered"], choices=["random", "clustered"]
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument(
        "--m", type=int, default=None, help="substrings (default: the paper's rule)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 codes, 100 queries")
    parser.add_argument(
        "--sweep", action="store_true", help="time MultiIndexHashing's scan thresholds (see above)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement in --sweep (median)"
    )
    args = parser.parse_args()
    if args.quick:
        args.database, args.queries, args.repeat = [20_000], 100, 1
    if args.sweep:
        sweep(args)
        return
    print(f"radius {args.radius}, {args.queries} queries, kernels={_kernels.resolve()}")
    print(
        f"{'codes':>9} {'N':>9} {'bits':>4} {'m':>2} {'build s':>8} {'table MiB':>9} "
        f"{'codes MiB':>9} "
        f"{'lookup us/q':>11} {'scan us/q':>10} {'speed-up':>9} {'hits/q':>9}"
    )
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
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), (
            "lookup differs from range_search"
        )
        hits = np.mean([len(a) for a in want])
        us = 1e6 / len(qp)
        tqdm.write(
            f"{kind:>9} {n:>9} {bits:>4} {mih.m:>2} {t_build:8.3f} "
            f"{mih.tables_nbytes / 2**20:9.1f} "
            f"{dp.nbytes / 2**20:9.1f} {t_mih * us:11.1f} {t_scan * us:10.1f} "
            f"{t_scan / t_mih:8.1f}x {hits:9.1f}"
        )


if __name__ == "__main__":
    main()
