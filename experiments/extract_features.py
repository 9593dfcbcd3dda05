"""Extract feature vectors of a data set's query / train / database splits to .npy files,
for the shallow baselines (``experiments/train.py --method=itq --features=DIR``).

    python experiments/extract_features.py --dataset=digits --backbone=pixels \\
        --out=features/digits_pixels
    python experiments/extract_features.py --dataset=cifar10 --root=/data/tfds --backbone=gist \\
        --out=features/cifar10_gist_seed0
    python experiments/extract_features.py --dataset=nuswide21 --root=/data/nuswide \\
        --backbone=cnn_f --weights=/models/imagenet-vgg-f.mat --layer=fc7 \\
        --out=features/nus_cnnf_fc7

``--backbone=pixels`` flattens the images of the embedded sets; ``--backbone=gist`` computes
the 512-d GIST descriptor (``deephash.gist``: LMgist's parameters, images at 32x32; DSRH's
CIFAR-10 features for the shallow baselines); a backbone name uses its
preprocessing and, with ``--layer``, that layer's output (cnn_f ``fc7`` = DSEH's 4,096-d
features; vgg19 ``fc2`` = VGG's fc7). The directory layout is described in
``deephash.features`` and docs/baselines.md.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "data set name (see deephash.data.available())")
flags.DEFINE_string("root", None, "directory holding the data set's files (file-based sets)")
flags.DEFINE_string(
    "backbone",
    "pixels",
    "'pixels' (raw images, in-memory sets), 'gist' (512-d GIST) or a backbone name",
)
flags.DEFINE_string(
    "weights",
    None,
    "pretrained weights for the backbone: 'imagenet' (published, downloaded once) or a local file",
)
flags.DEFINE_bool(
    "download",
    True,
    "allow downloads (tfds data sets, published weights); --download=false (or "
    "DEEPHASH_OFFLINE=1) fails instead, naming the command to run on a machine with internet",
)
flags.DEFINE_string("layer", None, "layer whose output to take (default: the backbone output)")
flags.DEFINE_integer(
    "batch_size", None, "images per forward pass (default 64; GIST: deephash.gist's default)"
)
flags.DEFINE_integer("seed", 0, "data split seed (and initialisation of an unweighted backbone)")
flags.DEFINE_string("out", None, "output directory (required)")


def main(argv):
    del argv
    if not FLAGS.out:
        sys.exit("error: --out (the feature directory) is required")
    from deephash.backbones.pretrained import check_weights_arg

    try:
        check_weights_arg(FLAGS.weights)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    import keras

    from deephash import data, downloads

    if not FLAGS.download:
        downloads.set_network_allowed(False)
    from deephash.features import extract_features, feature_matrix, save_features

    keras.utils.set_random_seed(FLAGS.seed)
    start = time.perf_counter()
    try:
        dataset = data.load(FLAGS.dataset, root=FLAGS.root, seed=FLAGS.seed)
        feats = extract_features(
            FLAGS.backbone,
            dataset,
            layer=FLAGS.layer,
            batch_size=FLAGS.batch_size,
            weights=FLAGS.weights,
        )
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    source = {
        "backbone": FLAGS.backbone,
        "layer": FLAGS.layer,
        "weights": FLAGS.weights,
        "seed": FLAGS.seed,
    }
    if FLAGS.backbone.lower() == "gist":
        from deephash.gist import GistParams

        source["gist"] = GistParams().to_dict()
    save_features(feats, FLAGS.out, source=source)
    dim = feature_matrix(feats.query).shape[1]
    print(
        f"{dataset.summary()}\n{dim}-d features from "
        f"{FLAGS.backbone}{'/' + FLAGS.layer if FLAGS.layer else ''} -> {FLAGS.out} "
        f"({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    app.run(main)
