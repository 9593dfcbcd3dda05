"""Throughput of the deephash.data pipelines on 2 CPU cores.

Measures triplets/s (triplet_dataset) and decoded images/s (image_dataset) for the
embedded digits set and for a fake list set of 224x224 JPEG files generated in a temporary
directory. Each file pipeline is reported beside reference runs in the same process: a
plain Python loop of eager ``tf.io.decode_jpeg`` calls and a pure-graph tf.data decode map
(which cannot name a corrupt file in its error); the ratios are what to compare across
machines.

    python benchmarks/pipeline.py [--num_images=512] [--batch_size=64] [--output=pipeline.json]
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
flags.DEFINE_float("seconds", 4.0, "minimum timed seconds per measurement")
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
            lambda: iter(data.triplet_dataset(digits.train, b, preprocess=small, augment=True)), b, secs)
        results["digits_images_per_s"] = _rate(
            lambda: iter(data.image_dataset(digits.database, b, preprocess=small)), b, secs)

        root = _fake_jpegs(os.path.join(tmp, "jpegs"), FLAGS.num_images)
        n = FLAGS.num_images
        ds = data.load("imagenet100", root=root, query_per_class=None, train_per_class=None,
                       num_query=n // 8, num_train=n // 2)
        paths = list(ds.database.paths)

        def eager_loop():
            while True:
                for p in paths:
                    yield tf.io.decode_jpeg(tf.io.read_file(p), channels=3)

        results["reference_eager_decode_images_per_s"] = _rate(eager_loop, 1, secs)

        def graph_decode():
            def load(p):
                return tf.image.resize(tf.cast(tf.io.decode_jpeg(tf.io.read_file(p), channels=3), tf.float32), (224, 224))
            return iter(tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
                        .batch(b).prefetch(tf.data.AUTOTUNE))

        results["reference_graph_decode_images_per_s"] = _rate(graph_decode, b, secs)
        cnn_f = data.for_backbone("cnn_f")
        results["jpeg_images_per_s"] = _rate(lambda: iter(data.image_dataset(ds.database, b, preprocess=cnn_f)), b, secs)
        results["jpeg_triplets_per_s"] = _rate(
            lambda: iter(data.triplet_dataset(ds.train, b, preprocess=cnn_f, augment=True)), b, secs)
        vgg = data.for_backbone("vgg19")
        results["jpeg_vgg19_triplets_per_s"] = _rate(
            lambda: iter(data.triplet_dataset(ds.train, b, preprocess=vgg, augment=True)), b, secs)
    results["jpeg_images_vs_graph_decode"] = results["jpeg_images_per_s"] / results["reference_graph_decode_images_per_s"]
    results["jpeg_images_vs_eager_loop"] = results["jpeg_images_per_s"] / results["reference_eager_decode_images_per_s"]
    for k, v in results.items():
        print(f"{k:40s} {v:12.2f}")
    if FLAGS.output:
        write_json(FLAGS.output, {"threads": FLAGS.threads, "batch_size": b, **results})


if __name__ == "__main__":
    app.run(main)
