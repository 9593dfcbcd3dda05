"""Throughput of deephash.gist on 32x32 RGB images (CIFAR-10's size, the 512-d defaults).

The batched implementation (one FFT per image, all filters at once, cropped inverse FFTs)
is timed for several batch sizes beside a per-image reference in the same process that
follows LMgist.m's loop literally (per image: prefilter, then per filter a full-size
``numpy.fft.ifft2`` in float64, crop, block means). The ratio batched / reference is the
figure to compare across machines; the largest absolute difference between the two is
printed as a check. Nothing is asserted.

    python benchmarks/gist.py [--num_images=512] [--batch_sizes=4,8,16,64] [--output=gist.json]
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_integer(
    "num_images", 512, "random 32x32x3 images to describe (the reference sees a quarter)"
)
flags.DEFINE_list(
    "batch_sizes", ["4", "8", "16", "64"], "batch sizes of the batched implementation"
)
flags.DEFINE_integer("repeats", 3, "timed repetitions (the best is reported)")
flags.DEFINE_string("output", None, "optional JSON file for the figures")
FLAGS = flags.FLAGS


def reference_gist(images: np.ndarray, params) -> np.ndarray:
    """LMgist's loop: one image at a time, one full inverse FFT per filter (float64)."""
    from deephash import gist as g

    bank = g.gabor_filters(params)
    be, s, blocks = params.boundary, params.image_size, params.blocks
    edges = g.block_edges(s, blocks)
    out = np.empty((len(images), params.dim), np.float32)
    for n, image in enumerate(images):
        pre = g.prefilter(g.prepare(image[None], s), params.fc_prefilt)[0]
        spectrum = np.fft.fft2(np.pad(pre, be, mode="symmetric"))
        feats = []
        for filt in bank:
            resp = np.abs(np.fft.ifft2(spectrum * filt))[be : be + s, be : be + s]
            feats += [
                resp[edges[r] : edges[r + 1], edges[c] : edges[c + 1]].mean()
                for c in range(blocks)
                for r in range(blocks)
            ]
        out[n] = feats
    return out


def _best_rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv) -> None:
    del argv
    from deephash.gist import GistParams, gist
    from deephash.io import write_json

    params = GistParams()
    images = (
        np.random.default_rng(0).uniform(0, 255, (FLAGS.num_images, 32, 32, 3)).astype(np.float32)
    )
    ref_images = images[: max(1, FLAGS.num_images // 4)]
    gist(images[:8])  # filter bank, FFT plans
    results: dict = {
        "num_images": FLAGS.num_images,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    results["reference_images_per_s"] = _best_rate(
        lambda: reference_gist(ref_images, params), len(ref_images), FLAGS.repeats
    )
    results["max_abs_difference"] = float(
        np.abs(gist(ref_images) - reference_gist(ref_images, params)).max()
    )
    for b in (int(v) for v in FLAGS.batch_sizes):
        rate = _best_rate(
            lambda: gist(images, batch_size=b, progress=False), len(images), FLAGS.repeats
        )
        results[f"batch{b}_images_per_s"] = rate
        results[f"batch{b}_vs_reference"] = rate / results["reference_images_per_s"]
    for k, v in results.items():
        print(f"{k:32s} {v:12.4g}" if isinstance(v, float) else f"{k:32s} {v!s:>12}")
    best = max(
        v for k, v in results.items() if k.endswith("_images_per_s") and k.startswith("batch")
    )
    print(f"CIFAR-10 (60,000 images) at the best batch size: about {60000 / best / 60:.1f} min")
    if FLAGS.output:
        write_json(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
