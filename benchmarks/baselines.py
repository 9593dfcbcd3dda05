"""Fit and encode time of the baselines against data size.

    python benchmarks/baselines.py                       # n = 1k, 4k, 16k; d = 64, 512; 32 bits
    python benchmarks/baselines.py --sizes=1000 --dims=64 --methods=itq,sdh --out=bench.json

Data: ``n`` Gaussian points in ``d`` dimensions around 10 class centres (labels for the
supervised methods). Each method is fit once per (n, d) (after one untimed warm-up fit
at the smallest size) and encodes the same ``n`` points. Times are reported in seconds
and as ratios against the LSH fit (and LSH encode) in the same run, on the same data, so
figures from different machines can be compared. The figures are a measurement, never
an assertion.
"""
from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags (defined only when run as a script, so tests can import this file)."""
    flags.DEFINE_list("sizes", ["1000", "4000", "16000"], "numbers of training points n")
    flags.DEFINE_list("dims", ["64", "512"], "feature dimensions d")
    flags.DEFINE_integer("bits", 32, "code length")
    flags.DEFINE_list("methods", None, "methods to time (default: every shallow method)")
    flags.DEFINE_enum("suite", "shallow", ["shallow"], "which baselines to time (deep ones: issue 7, item 3)")
    flags.DEFINE_integer("seed", 0, "data and fit seed")
    flags.DEFINE_integer("repeats", 3, "timed repetitions (the minimum is reported; fits over 2 s run once)")
    flags.DEFINE_integer("blas_threads", 1, "BLAS threads (0: library default); 1 gives stable figures on a shared machine")
    flags.DEFINE_string("out", None, "also write the figures to this JSON file")


def make_data(n: int, d: int, seed: int, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, n, d])
    y = rng.integers(0, classes, size=n)
    centres = rng.standard_normal((classes, d)) * 2.0
    return centres[y] + rng.standard_normal((n, d)), np.eye(classes, dtype=np.uint8)[y]


def _time(fn, repeats: int) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` runs (one run when it takes over 2 s)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if best > 2.0:
            break
    return best


def bench_shallow(names: list[str], sizes: list[int], dims: list[int], bits: int, seed: int,
                  repeats: int = 3) -> list[dict]:
    """One row per (method, n, d): fit and encode seconds and ratios to LSH."""
    import warnings

    from deephash import methods

    rows = []
    x0, y0 = make_data(min(sizes), min(dims), seed)
    for name in ["lsh"] + [m for m in names if m != "lsh"]:  # warm-up (imports, BLAS start-up)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            methods.create(name, bits=min(bits, min(dims))).fit(x0, y0, seed=seed)
    for d in dims:
        for n in sizes:
            x, y = make_data(n, d, seed)
            results = {}
            for name in ["lsh"] + [m for m in names if m != "lsh"]:
                m = methods.create(name, bits=bits)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # itq-cca: bits > classes - 1
                    fit = _time(lambda: m.fit(x, y if m.supervised else None, seed=seed), repeats)
                enc = _time(lambda: m.encode(x), repeats)
                results[name] = (fit, enc)
            lsh_fit, lsh_enc = results["lsh"]
            for name in names:
                fit, enc = results[name]
                rows.append({"method": name, "n": n, "d": d, "bits": bits, "fit_s": fit, "encode_s": enc,
                             "fit_vs_lsh_fit": fit / lsh_fit, "encode_vs_lsh_encode": enc / lsh_enc})
    return rows


# Deep baselines (issue 7, item 3) will add a ``bench_deep(names, sizes, ...)`` here that times
# ``fit_dataset`` for a few epochs and ``encode`` on images, and register it in SUITES.
SUITES = {"shallow": bench_shallow}


def format_table(rows: list[dict]) -> str:
    head = f"{'method':8s} {'n':>6s} {'d':>4s} {'fit s':>9s} {'encode s':>9s} {'fit/LSH fit':>12s} {'enc/LSH enc':>12s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:8s} {r['n']:6d} {r['d']:4d} {r['fit_s']:9.4f} {r['encode_s']:9.4f} "
                     f"{r['fit_vs_lsh_fit']:12.1f} {r['encode_vs_lsh_encode']:12.1f}")
    return "\n".join(lines)


def main(argv):
    del argv
    from deephash import methods
    from deephash.io import write_json

    names = [m.lower() for m in (FLAGS.methods or methods.available(FLAGS.suite))]
    for m in names:
        methods.family(m)  # unknown name -> ValueError
    sizes, dims = [int(s) for s in FLAGS.sizes], [int(s) for s in FLAGS.dims]
    from threadpoolctl import threadpool_info, threadpool_limits

    limits = threadpool_limits(FLAGS.blas_threads, user_api="blas") if FLAGS.blas_threads else None
    rows = SUITES[FLAGS.suite](names, sizes, dims, FLAGS.bits, FLAGS.seed, FLAGS.repeats)
    print(format_table(rows))
    threads = max((i.get("num_threads", 0) for i in threadpool_info() if i.get("user_api") == "blas"), default=None)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "blas_threads": threads,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if limits is not None:
        limits.restore_original_limits()
    print(f"\n{info}")
    if FLAGS.out:
        write_json(FLAGS.out, {"suite": FLAGS.suite, "info": info, "rows": rows})


if __name__ == "__main__":
    define_flags()
    app.run(main)
