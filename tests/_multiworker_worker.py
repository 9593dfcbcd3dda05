"""One worker of the multi-worker test (tests/test_multiworker.py): run from the command
line with ``TF_CONFIG`` set, it trains DSRH (small_cnn) on a small subset of the embedded
digits through ``experiment.run`` under the ``multiworker`` strategy and writes the final
weights to ``<result_dir>/weights-<tag>.npz`` and what it returned to ``summary-<tag>.json``
(the test's own output, not the run's).

Usage: python tests/_multiworker_worker.py RUN_DIR CHECKPOINT_DIR RESULT_DIR STRATEGY TAG
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bitwise-reproducible CPU kernels

import numpy as np  # noqa: E402

TRAIN_ITEMS = 128
EPOCHS = 2
BATCH = 32
BITS = 8


def small_digits():
    """The embedded digits with the first TRAIN_ITEMS training items (4 steps per epoch)."""
    import dataclasses

    from deephash import data

    ds = data.load("digits")
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(TRAIN_ITEMS)))


def config(strategy: str, checkpoint_dir: str):
    from deephash import training

    return training.TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH,
        strategy=strategy,
        seed=0,
        checkpoint_dir=checkpoint_dir,
        verbose=0,
    )


def main(run_dir: str, checkpoint_dir: str, result_dir: str, strategy: str, tag: str) -> None:
    from deephash import experiment, io, training

    result = experiment.run(
        "dsrh",
        small_digits(),
        BITS,
        config(strategy, checkpoint_dir),
        out_dir=run_dir,
        hparams={"backbone": "small_cnn"},
    )
    weights = {f"w{i}": w for i, w in enumerate(result["model"].get_weights())}
    with io.atomic_write(os.path.join(result_dir, f"weights-{tag}.npz"), "wb") as f:
        np.savez(f, **weights)
    io.write_json(
        os.path.join(result_dir, f"summary-{tag}.json"),
        {"map": result["map"], "is_chief": training.is_chief(), "run_dir": result["run_dir"]},
    )


if __name__ == "__main__":
    main(*sys.argv[1:6])
