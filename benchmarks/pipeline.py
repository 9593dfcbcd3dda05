"""Throughput of the deephash.data pipelines on 2 CPU cores.

Measures triplets/s (triplet_dataset) and decoded images/s (image_dataset) for the
embedded digits set and for a fake list set of 224x224 JPEG files generated in a temporary
directory. Each file pipeline runs twice, on the Python decoding path (``decode="python"``,
names a corrupt file) and on the graph-only path that verified files take
(``decode="auto"`` after ``data.verify_images``), beside reference runs in the same process:
a plain Python loop of eager ``tf.io.decode_jpeg`` calls and a pure-graph tf.data decode map
(which cannot name a corrupt file in its error); the ratios are what to compare across
machines. ``--stat_files=N`` also times the check the pipelines make before taking the fast
path (one manifest read per directory, one ``os.stat`` per file) on N empty files in 100
directories.

    python benchmarks/pipeline.py [--num_images=512] [--batch_size=64] [--stat_files=130000] \
        [--output=pipeline.json]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("num_images", 512, "fake JPEG files to generate")
flags.DEFINE_integer("batch_size", 64, "batch size (triplets or images)")
flags.DEFINE_integer("threads", 2, "CPU threads TensorFlow may use")
flags.DEFINE_float("seconds", 3.0, "minimum timed seconds per measurement")
flags.DEFINE_integer(
    "rounds", 3, "alternating rounds per Python/fast-path comparison (medians are reported)"
)
flags.DEFINE_integer("stat_files", 0, "empty files for timing the verification check (0: skip)")
flags.DEFINE_string("output", None, "optional JSON file for the figures")
FLAGS = flags.FLAGS


def _rate(make_iter, items_per_step: int, seconds: float) -> float:
    """Items per second over at least ``seconds`` after one warm-up step."""
    it = make_iter()
    next(it)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            next(it)
        except StopIteration:
            it = make_iter()
            next(it)
        steps += 1
    return steps * items_per_step / (time.perf_counter() - start)


def _compare(makers: dict, items_per_step: int, seconds: float, rounds: int) -> tuple[dict, dict]:
    """Rates of several pipelines measured in alternation, the order rotating each round, so
    that pipelines compared are measured close in time (the ratios stay meaningful on a
    machine whose load changes). Returns the median rate of each and ``ratio[(a, b)]``, the
    median per-round ratio of the rates of ``a`` and ``b``."""
    import statistics

    names = list(makers)
    rounds_rates = []
    for r in range(rounds):
        rates = {}
        for k in names[r % len(names) :] + names[: r % len(names)]:
            rates[k] = _rate(makers[k], items_per_step, seconds)
        rounds_rates.append(rates)
    median = {k: statistics.median(rr[k] for rr in rounds_rates) for k in names}
    ratio = {
        (a, b): statistics.median(rr[a] / rr[b] for rr in rounds_rates)
        for a in names
        for b in names
        if a != b
    }
    return median, ratio


def _fake_jpegs(directory: str, n: int, size: int = 224) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    lines = []
    for i in range(n):
        img = np.kron(np.roll(base, i, axis=0), np.ones((8, 8, 1), np.uint8))  # photo-like blocks
        img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        rel = f"images/{i:05d}.jpg"
        os.makedirs(os.path.join(directory, "images"), exist_ok=True)
        Image.fromarray(img).save(os.path.join(directory, rel), quality=90)
        vec = np.zeros(100, int)
        vec[i % 100] = 1
        lines.append(rel + " " + " ".join(map(str, vec)))
    with open(os.path.join(directory, "all.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return directory


def _age(paths, seconds: float = 60.0) -> None:
    """Date files back (as if copied earlier): verification does not record files modified
    in the last ``images.FRESH_SECONDS``."""
    t = time.time() - seconds
    for p in paths:
        os.utime(p, (t, t))


def _stat_check(directory: str, n: int) -> dict[str, float]:
    """Seconds for ``verification_status`` over ``n`` recorded empty files in 100 folders."""
    from deephash.data import images

    paths = []
    for i in range(n):
        d = os.path.join(directory, f"class{i % 100:03d}")
        if i < 100:
            os.makedirs(d, exist_ok=True)
        paths.append(os.path.join(d, f"{i:07d}.jpg"))
        open(paths[-1], "wb").close()
    _age(paths)
    images._record(
        {p: [st.st_size, st.st_mtime_ns, True] for p, st in ((p, os.stat(p)) for p in paths)}
    )
    start = time.perf_counter()
    status = images.verification_status(paths)
    first = time.perf_counter() - start
    assert (status == images.VERIFIED).all()
    start = time.perf_counter()
    images.verification_status(paths)
    again = time.perf_counter() - start
    return {
        "stat_check_files": n,
        "stat_check_s": first,
        "stat_check_again_s": again,
        "stat_check_us_per_file": 1e6 * again / n,
    }


def _jpeg_rates(ds, b, secs, graph_decode) -> dict[str, float]:
    """Decode + resize (+ batch) rates of the library's python and fast JPEG paths, against the
    plain graph map and each other, for raw images and for every training stream."""
    from deephash import data

    results: dict[str, float] = {}
    cnn_f, vgg = data.for_backbone("cnn_f"), data.for_backbone("vgg19")
    # decode + resize to 224x224 + batch, no preprocessing: the library's two paths against
    # the plain graph map
    rates, ratios = _compare(
        {
            "reference_graph_decode": graph_decode,
            "python": lambda: iter(
                data.image_dataset(ds.database, b, image_size=(224, 224), decode="python")
            ),
            "fast": lambda: iter(
                data.image_dataset(ds.database, b, image_size=(224, 224), decode="auto")
            ),
        },
        b,
        secs,
        FLAGS.rounds,
    )
    results["reference_graph_decode_images_per_s"] = rates["reference_graph_decode"]
    for tag in ("python", "fast"):
        results[f"jpeg_raw_images_per_s_{tag}"] = rates[tag]
        results[f"jpeg_raw_images_{tag}_vs_graph_decode"] = ratios[(tag, "reference_graph_decode")]
    results["jpeg_raw_images_fast_vs_python"] = ratios[("fast", "python")]
    streams = {
        "images": lambda mode: data.image_dataset(ds.database, b, preprocess=cnn_f, decode=mode),
        "triplets_noaug": lambda mode: data.triplet_dataset(
            ds.train, b, preprocess=cnn_f, decode=mode
        ),
        "triplets": lambda mode: data.triplet_dataset(
            ds.train, b, preprocess=cnn_f, augment=True, decode=mode
        ),
        "vgg19_triplets": lambda mode: data.triplet_dataset(
            ds.train, b, preprocess=vgg, augment=True, decode=mode
        ),
    }
    for what, make in streams.items():
        rates, ratios = _compare(
            {"python": lambda: iter(make("python")), "fast": lambda: iter(make("auto"))},
            b,
            secs,
            FLAGS.rounds,
        )
        results[f"jpeg_{what}_per_s_python"] = rates["python"]
        results[f"jpeg_{what}_per_s_fast"] = rates["fast"]
        results[f"jpeg_{what}_fast_vs_python"] = ratios[("fast", "python")]
    return results


def main(argv) -> None:
    del argv
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    from deephash import data
    from deephash.io import write_json

    b, secs = FLAGS.batch_size, FLAGS.seconds
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DEEPHASH_CACHE"] = os.path.join(tmp, "cache")
        digits = data.load("digits")
        small = data.for_backbone("small_cnn")
        results["digits_triplets_per_s"] = _rate(
            lambda: iter(data.triplet_dataset(digits.train, b, preprocess=small, augment=True)),
            b,
            secs,
        )
        results["digits_images_per_s"] = _rate(
            lambda: iter(data.image_dataset(digits.database, b, preprocess=small)), b, secs
        )

        root = _fake_jpegs(os.path.join(tmp, "jpegs"), FLAGS.num_images)
        n = FLAGS.num_images
        ds = data.load(
            "imagenet100",
            root=root,
            query_per_class=None,
            train_per_class=None,
            num_query=n // 8,
            num_train=n // 2,
        )
        paths = list(ds.database.paths)

        def eager_loop():
            while True:
                for p in paths:
                    yield tf.io.decode_jpeg(tf.io.read_file(p), channels=3)

        results["reference_eager_decode_images_per_s"] = _rate(eager_loop, 1, secs)

        def graph_decode():
            def load(p):
                return tf.image.resize(
                    tf.cast(tf.io.decode_jpeg(tf.io.read_file(p), channels=3), tf.float32),
                    (224, 224),
                )

            return iter(
                tf.data.Dataset.from_tensor_slices(paths)
                .map(load, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(b)
                .prefetch(tf.data.AUTOTUNE)
            )

        _age(paths)
        start = time.perf_counter()
        data.verify_images(paths, progress=False)
        results["verify_images_per_s"] = len(paths) / (time.perf_counter() - start)
        for split in (ds.database, ds.train):
            graph, _ = data.pipelines.decode_plan(split.paths)
            assert graph.all(), "verified files should take the graph-only path"
        results.update(_jpeg_rates(ds, b, secs, graph_decode))
        if FLAGS.stat_files:
            results.update(_stat_check(os.path.join(tmp, "stat"), FLAGS.stat_files))
    for k, v in results.items():
        print(f"{k:42s} {v:12.2f}")
    if FLAGS.output:
        write_json(FLAGS.output, {"threads": FLAGS.threads, "batch_size": b, **results})


if __name__ == "__main__":
    app.run(main)
