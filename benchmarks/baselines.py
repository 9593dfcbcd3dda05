"""Fit and encode time of the baselines against data size.

    python benchmarks/baselines.py                       # n = 1k, 4k, 16k; d = 64, 512; 32 bits
    python benchmarks/baselines.py --sizes=1000 --dims=64 --methods=itq,sdh --out=bench.json

Data: ``n`` Gaussian points in ``d`` dimensions around 10 class centres (labels for the
supervised methods). Each method is fit once per (n, d) (after one untimed warm-up fit
at the smallest size) and encodes the same ``n`` points. Times are reported in seconds
and as ratios against the LSH fit (and LSH encode) in the same run, on the same data, so
figures from different machines can be compared. The figures are a measurement, never
an assertion.

    python benchmarks/baselines.py --suite=deep          # NINH, CNNH, DPSH, DHN, HashNet vs DRH

The deep suite trains each method for 4 epochs (batch 64, small_cnn, 8x8x1 random images
with 10 classes, ``n`` = 500 and 2,000 unless ``--sizes`` says otherwise) and reports the
training wall and CPU time (CNNH's stage 1 included), the median epoch time after the
first, and the encode throughput, each also as a ratio to DRH trained in the same run on
the same data. Triplet methods (DRH, NINH) run 3 images per batch item.
"""

from __future__ import annotations

import functools
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
    flags.DEFINE_enum(
        "suite",
        "shallow",
        ["shallow", "deep"],
        "which baselines to time: shallow (numpy, on "
        "feature vectors) or deep (Keras, on images; ratios to DRH)",
    )
    flags.DEFINE_integer("seed", 0, "data and fit seed")
    flags.DEFINE_integer(
        "repeats", 3, "timed repetitions (the minimum is reported; fits over 2 s run once)"
    )
    flags.DEFINE_integer(
        "blas_threads",
        1,
        "BLAS threads (0: library default); 1 gives stable figures on a shared machine",
    )
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


def bench_shallow(
    names: list[str], sizes: list[int], dims: list[int], bits: int, seed: int, repeats: int = 3
) -> list[dict]:
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
                rows.append(
                    {
                        "method": name,
                        "n": n,
                        "d": d,
                        "bits": bits,
                        "fit_s": fit,
                        "encode_s": enc,
                        "fit_vs_lsh_fit": fit / lsh_fit,
                        "encode_vs_lsh_encode": enc / lsh_enc,
                    }
                )
    return rows


# ----------------------------------------------------------------------------- deep baselines
DEEP_REFERENCE = (
    "drh"  # the deep figures are ratios to DRH (triplet loss, fc8 + bags) in the same run
)
DEEP_DEFAULT = ["ninh", "cnnh", "dpsh", "dhn", "hashnet"]
DEEP_SIZES = [500, 2000]  # training images, when --sizes is not given with --suite=deep


def make_images(n: int, size: int, seed: int, classes: int = 10):
    """A ``data.Split`` of ``n`` random (size x size x 1) images in [0, 255] with class labels."""
    from deephash.data import Split

    rng = np.random.default_rng([seed, n, size])
    y = rng.integers(0, classes, size=n)
    images = (rng.random((n, size, size, 1)) * 255).astype(np.float32)
    return Split(
        labels=np.eye(classes, dtype=np.uint8)[y],
        indices=np.arange(n, dtype=np.int64),
        images=images,
        paths=None,
        class_ids=y.astype(np.int64),
    )


def bench_deep(
    names: list[str],
    sizes: list[int],
    dims: list[int],
    bits: int,
    seed: int,
    repeats: int = 3,
    image_size: int = 8,
    epochs: int = 4,
    batch_size: int = 64,
) -> list[dict]:
    """One row per (method, n): training wall and CPU time (CNNH's stage 1 included), the
    median wall time of the epochs after the first (the first includes tracing), encode
    throughput on the ``n`` training images (best of ``repeats``), and each as a ratio to
    DRH on the same data. ``dims`` is unused (images are ``image_size`` x ``image_size`` x 1,
    backbone small_cnn)."""
    import keras

    from deephash import methods, training

    del dims
    rows = []
    order = [DEEP_REFERENCE] + [m for m in names if m != DEEP_REFERENCE]
    for n in sizes:
        split = make_images(n, image_size, seed)
        results = {}
        for name in order:
            training.set_seed(seed)
            model = methods.create(
                name,
                bits=bits,
                backbone="small_cnn",
                image_shape=(image_size, image_size, 1),
                num_classes=10,
            )
            marks: list[float] = []
            clock = keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: marks.append(time.perf_counter())
            )
            start, cpu = time.perf_counter(), time.process_time()
            model.fit_dataset(
                split,
                training.TrainConfig(
                    epochs=epochs, batch_size=batch_size, lr=0.01, verbose=0, seed=seed
                ),
                callbacks=[clock],
            )
            fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
            epoch_s = float(np.median(np.diff(marks))) if len(marks) > 1 else fit_s
            model.encode(split.images[:batch_size])  # trace the encoder
            encode_s = _time(functools.partial(model.encode, split), repeats)
            results[name] = (fit_s, fit_cpu, epoch_s, n / encode_s)
            del model
        ref = results[DEEP_REFERENCE]
        for name in names:
            fit_s, fit_cpu, epoch_s, rate = results[name]
            rows.append(
                {
                    "method": name,
                    "n": n,
                    "image": f"{image_size}x{image_size}x1",
                    "bits": bits,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "fit_s": fit_s,
                    "fit_cpu_s": fit_cpu,
                    "epoch_s": epoch_s,
                    "encode_images_per_s": rate,
                    "fit_vs_drh": fit_s / ref[0],
                    "fit_cpu_vs_drh": fit_cpu / ref[1],
                    "epoch_vs_drh": epoch_s / ref[2],
                    "encode_rate_vs_drh": rate / ref[3],
                }
            )
    return rows


def format_deep_table(rows: list[dict]) -> str:
    head = (
        f"{'method':8s} {'n':>6s} {'fit s':>7s} {'fit cpu s':>9s} {'epoch s':>8s} "
        f"{'enc img/s':>10s} "
        f"{'fit/DRH':>8s} {'cpu/DRH':>8s} {'epoch/DRH':>10s} {'enc rate/DRH':>13s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['method']:8s} {r['n']:6d} {r['fit_s']:7.2f} {r['fit_cpu_s']:9.2f} "
            f"{r['epoch_s']:8.3f} "
            f"{r['encode_images_per_s']:10.0f} {r['fit_vs_drh']:8.2f} {r['fit_cpu_vs_drh']:8.2f} "
            f"{r['epoch_vs_drh']:10.2f} {r['encode_rate_vs_drh']:13.2f}"
        )
    return "\n".join(lines)


SUITES = {"shallow": bench_shallow, "deep": bench_deep}


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'method':8s} {'n':>6s} {'d':>4s} {'fit s':>9s} {'encode s':>9s} "
        f"{'fit/LSH fit':>12s} {'enc/LSH enc':>12s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['method']:8s} {r['n']:6d} {r['d']:4d} {r['fit_s']:9.4f} {r['encode_s']:9.4f} "
            f"{r['fit_vs_lsh_fit']:12.1f} {r['encode_vs_lsh_encode']:12.1f}"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    from deephash import methods
    from deephash.io import write_json

    deep = FLAGS.suite == "deep"
    names = [
        m.lower()
        for m in (FLAGS.methods or (DEEP_DEFAULT if deep else methods.available(FLAGS.suite)))
    ]
    for m in names:
        methods.family(m)  # unknown name -> ValueError
    sizes, dims = [int(s) for s in FLAGS.sizes], [int(s) for s in FLAGS.dims]
    if deep and not FLAGS["sizes"].present:
        sizes = DEEP_SIZES
    from threadpoolctl import threadpool_info, threadpool_limits

    limits = threadpool_limits(FLAGS.blas_threads, user_api="blas") if FLAGS.blas_threads else None
    rows = SUITES[FLAGS.suite](names, sizes, dims, FLAGS.bits, FLAGS.seed, FLAGS.repeats)
    print(format_deep_table(rows) if deep else format_table(rows))
    threads = max(
        (i.get("num_threads", 0) for i in threadpool_info() if i.get("user_api") == "blas"),
        default=None,
    )
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "blas_threads": threads,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if limits is not None:
        limits.restore_original_limits()
    print(f"\n{info}")
    if FLAGS.out:
        write_json(FLAGS.out, {"suite": FLAGS.suite, "info": info, "rows": rows})


if __name__ == "__main__":
    define_flags()
    app.run(main)
