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

``--sweep`` chooses MultiIndexHashing's two scan thresholds. ``SCAN_FRACTION`` (scan a query
whose buckets hold more than ``N * f`` candidates): ``range_search`` timed with each candidate
value over code distributions (random; clustered with 1.5 and 4 flipped bits around 10
centres; 2,000 distinct codes repeated), radii 1-3 and 32/64 bits, each time over the best
value for that configuration. ``PROBE_FRACTION`` (scan the whole call when a radius needs more
than ``N * f`` probes per query): the tables path and the scan timed at radii whose probe
counts span N/16384 ... N/8, each candidate's time derived from them. Times are medians of
``--repeat`` runs, each looping for at least ``--min-time`` seconds; results are checked equal.

(run from the repository root with ``PYTHONPATH=.``). Ratios are measured, never asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from deephash import _kernels, _lookup, codes
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
PROBE_VALUES = tuple(2.0**-k for k in range(13, 2, -1))  # 1/8192 ... 1/8


def _fraction(v: float) -> str:
    return f"{'1/' + str(round(1 / v)) if v < 1 else '1':>7}"


def _sweep_index(kind: str, n: int, queries: int, bits: int, rng):
    """``(built MultiIndexHashing over n codes of kind, packed query codes)`` for a sweep."""
    dp, qp = make_codes(kind, n, queries, bits, rng)
    mih = MultiIndexHashing(bits)
    mih.add(dp, packed=True)
    mih.build()
    return mih, qp


def _timer(args):
    """``time(fn, *a)``: median over ``args.repeat`` runs of the mean of enough calls to last
    ``args.min_time`` seconds (short calls are otherwise dominated by thread-pool wake-ups)."""

    def time_it(fn, *a, **kw):
        out, t = timed(fn, *a, **kw)
        loops = max(1, int(np.ceil(args.min_time / max(t, 1e-9))))
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(loops):
                fn(*a, **kw)
            times.append((time.perf_counter() - t0) / loops)
        return out, float(np.median(times))

    return time_it


def sweep(args) -> None:
    """Time range_search per threshold value; print each relative to the best per configuration."""
    rng = np.random.default_rng(0)
    time_it = _timer(args)
    regret = {v: [] for v in SCAN_VALUES}
    n = max(args.database)
    print(
        f"SCAN_FRACTION: N = {n}, {args.queries} queries, median of {args.repeat} "
        f"(each >= {args.min_time} s), PROBE_FRACTION = 1e9 (tables always probed); "
        "time / best time per configuration; 'scanned' = share of queries scanned at the "
        "current default"
    )
    head = " ".join(_fraction(v) for v in SCAN_VALUES)
    print(f"{'codes':>9} {'bits':>4} {'r':>2} {'hits/q':>8} {'scanned':>7} | {head} | best us/q")
    for kind in args.sweep_kinds:
        for bits in args.bits:
            mih, qp = _sweep_index(kind, n, args.queries, bits, rng)
            mih.PROBE_FRACTION = 1e9
            for radius in (1, 2, 3):
                want = None
                ts = []
                for v in SCAN_VALUES:
                    mih.SCAN_FRACTION = v
                    got, t = time_it(mih.range_search, qp, radius, packed=True)
                    if want is None:
                        want = got
                    assert all(np.array_equal(a, b) for a, b in zip(got, want)), (
                        "results depend on the threshold"
                    )
                    ts.append(t)
                best = min(ts)
                for v, t in zip(SCAN_VALUES, ts):
                    regret[v].append(t / best)
                scanned = _scanned_share(mih, qp, radius, MultiIndexHashing.SCAN_FRACTION)
                hits = np.mean([len(a) for a in want])
                print(
                    f"{kind:>9} {bits:>4} {radius:>2} {hits:8.0f} {scanned:7.0%} | "
                    + " ".join(f"{t / best:7.2f}" for t in ts)
                    + f" | {best * 1e6 / len(qp):8.1f}",
                    flush=True,
                )
    _summary("SCAN_FRACTION", regret)
    if args.probe_queries:
        sweep_probe(args, time_it)


def _scanned_share(mih, qp, radius, fraction) -> float:
    """Share of queries whose buckets hold more than ``len(mih) * fraction`` candidates."""
    t = mih._tables
    qkeys = _lookup.substring_keys(qp, mih.n_bits, t.bounds)
    ncand = np.zeros(len(qp), np.int64)
    for j, rj in enumerate(_lookup.probe_radii(radius, mih.m)):
        if rj < 0:
            continue
        a, b = t.bounds[j]
        uk = t.ukeys[t.tkoff[j] : t.tkoff[j + 1]]
        sizes = (t.bend - t.bstart)[t.tkoff[j] : t.tkoff[j + 1]]
        keys = qkeys[:, j : j + 1] ^ _lookup.flip_masks(b - a, rj)[None, :]
        pos = np.minimum(np.searchsorted(uk, keys), len(uk) - 1)
        ncand += np.where(uk[pos] == keys, sizes[pos], 0).sum(axis=1)
    return float(np.mean(ncand > int(len(mih) * fraction)))


def sweep_probe(args, time_it) -> None:
    """PROBE_FRACTION decides per call: tables if ``n_probes(radius) <= N * f``, else a scan.
    Time both paths at radii whose probe counts span N/16384 ... N/8 (one radius per
    doubling) and derive each candidate's time from them."""
    rng = np.random.default_rng(1)
    n = max(args.database)
    regret = {v: [] for v in PROBE_VALUES}
    print(
        f"\nPROBE_FRACTION: N = {n}, {args.probe_queries} queries, median of {args.repeat}, "
        f"SCAN_FRACTION = {MultiIndexHashing.SCAN_FRACTION:.6g}; tables/scan = time probing "
        "the tables over time of the exhaustive scan; then each candidate's time / the best"
    )
    head = " ".join(_fraction(v) for v in PROBE_VALUES)
    print(
        f"{'codes':>9} {'bits':>4} {'r':>2} {'probes/N':>9} {'hits/q':>8} "
        f"{'tab/scan':>8} | {head} | scan us/q"
    )
    for kind in args.sweep_kinds:
        for bits in args.bits:
            mih, qp = _sweep_index(kind, n, args.probe_queries, bits, rng)
            bounds = _lookup.split_bits(bits, mih.m)
            radii, seen = [], set()
            for k in range(14, 2, -1):  # first radius with n_probes >= N * 2**-k
                r = next(
                    (r for r in range(bits + 1) if _lookup.n_probes(r, bounds) >= n * 2.0**-k),
                    None,
                )
                if r is not None and r not in seen:
                    seen.add(r)
                    radii.append(r)
            for radius in radii:
                p = _lookup.n_probes(radius, bounds)
                mih.PROBE_FRACTION = 1e9
                got, t_tab = time_it(mih.range_search, qp, radius, packed=True)
                mih.PROBE_FRACTION, mih.PROBE_MIN = 0.0, 0
                want, t_scan = time_it(mih.range_search, qp, radius, packed=True)
                assert all(np.array_equal(a, b) for a, b in zip(got, want)), (
                    "results depend on the path"
                )
                best = min(t_tab, t_scan)
                ratios = [(t_tab if p <= n * v else t_scan) / best for v in PROBE_VALUES]
                for v, r in zip(PROBE_VALUES, ratios):
                    regret[v].append(r)
                hits = np.mean([len(a) for a in want])
                print(
                    f"{kind:>9} {bits:>4} {radius:>2} {p / n:9.4f} {hits:8.0f} "
                    f"{t_tab / t_scan:8.2f} | "
                    + " ".join(f"{r:7.2f}" for r in ratios)
                    + f" | {t_scan * 1e6 / len(qp):8.1f}",
                    flush=True,
                )
                del got, want
    _summary("PROBE_FRACTION", regret)


def _summary(name: str, regret: dict) -> None:
    print(f"{name}: time / best time over all configurations (lower is better):")
    for v, r in regret.items():
        print(
            f"  {_fraction(v)} ({v:.6f}): worst {max(r):.2f}x, median {np.median(r):.2f}x, "
            f"mean {np.mean(r):.2f}x"
        )


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
    parser.add_argument(
        "--min-time", type=float, default=0.05, help="--sweep: seconds per timed run (loops)"
    )
    parser.add_argument(
        "--probe-queries", type=int, default=50, help="--sweep: queries per PROBE_FRACTION run"
    )
    parser.add_argument(
        "--sweep-kinds",
        nargs="+",
        default=["random", "clustered", "spread", "repeated"],
        choices=["random", "clustered", "spread", "repeated"],
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
        # warm-up with the whole call: small calls run serial twins, so a few queries would
        # leave the parallel kernels to load (or compile) inside the timing
        flat.range_search(qp, args.radius, packed=True)
        mih.range_search(qp, args.radius, packed=True)
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
