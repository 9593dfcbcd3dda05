"""Cost of a DSRH training step relative to a plain VGG-19 classification step.

Both models train on the same VGG-19 (random weights, 224x224x3) in the same process,
on in-memory batches (no input pipeline), with SGD momentum 0.9:

* reference: ``keras.applications.VGG19(weights=None)`` + sparse softmax cross-entropy on
  ``batch`` images per step;
* DSRH: ``batch / 3`` triplets per step (``batch`` images), fc8 (bags*bits) -> BagHash,
  triplet + orthogonality + classification losses, Caffe weight decay.

Reports images/s of each and the ratio (goal: DSRH costs at most 1.15x the reference).

    python benchmarks/train_step.py --batch=6 --steps=5
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 6, "images per step (a multiple of 3: batch/3 triplets for DSRH)")
flags.DEFINE_integer("steps", 5, "timed steps per model (after 2 warm-up steps)")
flags.DEFINE_integer("bits", 32, "DSRH code length")
flags.DEFINE_integer("image_size", 224, "input height and width")
flags.DEFINE_integer(
    "rounds", 2, "alternate the two models this many times; the best round of each counts"
)
flags.DEFINE_float("weight_decay", 2e-4, "DSRH weight decay (the reference has none)")


class _StepTimer:
    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self.t0)

        self.cb = T()


def _time(model, ds, steps: int) -> float:
    """Median seconds per step over ``steps`` steps (the callback closes each step after
    its outputs are fetched, so asynchronous work is included)."""
    import numpy as np

    timer = _StepTimer()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer.cb])
    return float(np.median(timer.cb.times))


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    import deephash  # noqa: F401
    from deephash import training
    from deephash.methods.dsrh import DSRH

    if FLAGS.batch % 3:
        sys.exit("error: --batch must be a multiple of 3")
    b, m, s = FLAGS.batch, FLAGS.batch // 3, FLAGS.image_size
    rng = np.random.default_rng(0)
    training.set_seed(0)

    plain = keras.applications.VGG19(weights=None, input_shape=(s, s, 3))
    plain.compile(
        optimizer=keras.optimizers.SGD(0.001, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    x = tf.constant(rng.normal(size=(b, s, s, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 1000, b))
    plain_ds = tf.data.Dataset.from_tensors((x, y)).repeat()

    dsrh = DSRH(FLAGS.bits, "vgg19", num_classes=10, input_shape=(s, s, 3))
    dsrh._weight_decay = FLAGS.weight_decay
    dsrh.compile(optimizer=training.make_optimizer(training.TrainConfig(lr=0.001)))
    labels = tf.one_hot(rng.integers(0, 10, 3 * m), 10)
    trip = ((x[:m], x[m : 2 * m], x[2 * m :]), (labels[:m], labels[m : 2 * m], labels[2 * m :]))
    dsrh_ds = tf.data.Dataset.from_tensors(trip).repeat()

    for model, ds in ((plain, plain_ds), (dsrh, dsrh_ds)):
        model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace + warm up
    best = {"plain": float("inf"), "dsrh": float("inf")}
    for r in range(FLAGS.rounds):
        for name, model, ds in (("plain", plain, plain_ds), ("dsrh", dsrh, dsrh_ds)):
            t = _time(model, ds, FLAGS.steps)
            best[name] = min(best[name], t)
            print(f"round {r + 1} {name:5s}: {t:.3f} s/step, {b / t:.2f} images/s", flush=True)
    ratio = best["dsrh"] / best["plain"]
    print(
        f"\nVGG-19 {s}x{s}, {b} images/step ({m} triplets), {FLAGS.bits} bits, device: "
        f"{'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}"
    )
    print(f"plain VGG19 step: {b / best['plain']:.2f} images/s")
    print(f"DSRH step:        {b / best['dsrh']:.2f} images/s")
    print(f"DSRH / plain time per image: {ratio:.3f}x (goal <= 1.15x)")


if __name__ == "__main__":
    app.run(main)
