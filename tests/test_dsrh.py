"""DSRH / DRH / DRH+: architecture, losses against an independent reference, one SGD step
against reference gradients, encoding, the hash model saved alone, lambda selection and a
learning test on digits (save/reload: tests/test_method_contract.py)."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import deephash  # noqa: F401
from deephash import data, methods, metrics, training
from deephash.layers import BagHash
from deephash.methods.dsrh import DSRH, select_ortho_weight

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _create(name, ds, bits=8, seed=0, **hparams):
    training.set_seed(seed)
    hparams.setdefault("backbone", "small_cnn")
    return methods.create(name, bits=bits, dataset=ds, **hparams)


def _batch(ds, batch_size=6, seed=0, model=None):
    pre = model.preprocessor() if model is not None else None
    it = iter(data.triplet_dataset(ds.train, batch_size, seed=seed, preprocess=pre))
    return next(it)


# ----------------------------------------------------------------------------- architecture
def test_variants_are_registered_and_built_from_the_dataset(digits):
    assert {"dsrh", "drh", "drh+"} <= set(methods.available("deep"))
    m = _create("dsrh", digits, bits=12, bags=5)
    assert isinstance(m, DSRH) and m.variant == "dsrh" and m.bits == 12
    assert m.num_classes == 10 and m.multilabel is False and m.image_shape == (8, 8, 1)
    fc8 = m.get_layer("fc8")
    assert fc8.units == 5 * 12  # the paper's s*k-unit last fc layer
    bag = m.get_layer("bag_hash")
    assert isinstance(bag, BagHash) and (bag.bits, bag.bags) == (12, 5)
    # both streams read fc8 (paper §3.3/§4.2)
    assert m.get_layer("classifier").input is fc8.output
    assert bag.input is fc8.output
    for name in ("drh", "drh+"):
        v = _create(name, digits, bits=12)
        assert v.variant == name
        assert "classifier" not in [layer.name for layer in v.layers]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "dsrh2"}, "variant"),
        ({"bits": 0}, "bits"),
        ({"bags": 0}, "bags"),
        ({"ortho_weight": -1.0}, "ortho_weight"),
        ({"triplet_on": "hamming"}, "triplet_on"),
        ({"num_classes": 0}, "num_classes"),
        ({"backbone": 3}, "backbone"),
    ],
)
def test_bad_hyper_parameters_raise_value_error(kwargs, match):
    args = {"bits": 8, "backbone": "small_cnn", "image_shape": (8, 8, 1), **kwargs}
    with pytest.raises(ValueError, match=match):
        DSRH(**args)


def test_create_rejects_unknown_hyper_parameters(digits):
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        methods.create("dsrh", bits=8, dataset=digits, backbone="small_cnn", lamda=0.1)


# ----------------------------------------------------------------------------- losses
def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference_terms(h, logits, y, variant, multilabel, m):
    """Slow numpy DSRH loss terms; ``h`` (3m, k) sigmoid codes, rows anchors|pos|neg."""
    ha, hp, hn = h[:m], h[m : 2 * m], h[2 * m :]
    c = lambda t: 2 * t - 1  # noqa: E731
    trip = [
        max(0.0, 1 - np.sum((c(ha[i]) - c(hn[i])) ** 2) + np.sum((c(ha[i]) - c(hp[i])) ** 2))
        for i in range(m)
    ]
    terms = {"triplet": np.mean(trip)}
    if variant != "drh":
        k = h.shape[1]
        orth = 0.0
        for part in (ha, hp, hn):
            g = c(part).T @ c(part) / m
            orth += sum((g[i, j] - (i == j)) ** 2 for i in range(k) for j in range(k))
        terms["orthogonality"] = orth / 3
    if variant == "dsrh":
        if multilabel:
            p = _np_sigmoid(logits)
            ce = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1)
        else:
            z = logits - logits.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            ce = -np.sum(y * logp, axis=1)
        terms["classification"] = np.mean(ce)
    return terms


@pytest.mark.parametrize(
    "variant, multilabel", [("dsrh", False), ("dsrh", True), ("drh+", False), ("drh", False)]
)
def test_loss_terms_match_a_numpy_reference(digits, variant, multilabel):
    m = _create(variant, digits, multilabel=multilabel)
    batch = _batch(digits, 6, model=m)
    terms = {k: float(v) for k, v in m.compute_losses(batch).items()}
    (a, p, n), (ya, yp, yn) = batch
    out = m(tf.concat([a, p, n], 0), training=False)
    logits = out["class_logits"].numpy().astype(np.float64) if "class_logits" in out else None
    y = np.concatenate([ya, yp, yn]).astype(np.float64)
    ref = _reference_terms(
        out["codes"].numpy().astype(np.float64), logits, y, variant, multilabel, 6
    )
    assert terms.keys() == ref.keys()
    for k in ref:
        assert terms[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-6), k


def test_one_training_step_follows_the_reference_gradient(digits):
    """SGD (no momentum, lr 0.5) moves each weight by -lr * d/dW of
    triplet + lambda*orth + w_c*CE + 0.5*wd*sum||kernel||^2, written here independently."""
    m = _create("dsrh", digits, ortho_weight=0.3, classification_weight=0.7)
    batch = _batch(digits, 8, seed=3, model=m)
    start = [tf.identity(w) for w in m.trainable_weights]
    (a, p, n), (ya, yp, yn) = batch
    wd, lr = 0.01, 0.5
    with tf.GradientTape() as tape:
        out = m(tf.concat([a, p, n], 0), training=True)
        h = 2 * out["codes"] - 1
        ha, hp, hn = h[:8], h[8:16], h[16:]
        trip = tf.reduce_mean(
            tf.nn.relu(1 - tf.reduce_sum((ha - hn) ** 2, 1) + tf.reduce_sum((ha - hp) ** 2, 1))
        )
        orth = (
            tf.add_n(
                [tf.reduce_sum((tf.transpose(t) @ t / 8 - tf.eye(8)) ** 2) for t in (ha, hp, hn)]
            )
            / 3
        )
        ce = tf.reduce_mean(
            tf.nn.softmax_cross_entropy_with_logits(tf.concat([ya, yp, yn], 0), out["class_logits"])
        )
        decay = (
            0.5
            * wd
            * tf.add_n([tf.reduce_sum(w**2) for w in m.trainable_weights if len(w.shape) >= 2])
        )
        total = trip + 0.3 * orth + 0.7 * ce + decay
    grads = tape.gradient(total, m.trainable_weights)
    m._weight_decay = wd
    m.compile(optimizer=keras.optimizers.SGD(lr))
    m.train_on_batch(*batch)
    for w, w0, g in zip(m.trainable_weights, start, grads):
        np.testing.assert_allclose(
            w.numpy(), (w0 - lr * g).numpy(), rtol=1e-4, atol=1e-6, err_msg=w.path
        )


# ----------------------------------------------------------------------------- encoding and saving
def test_encode_is_the_sign_of_the_bag_pre_activations(digits):
    m = _create("drh+", digits, bits=16)
    codes = m.encode(digits.query)
    assert codes.dtype == bool and codes.shape == (len(digits.query), 16)
    relaxed = m.relaxed_codes(digits.query)
    assert relaxed.shape == codes.shape and np.all((relaxed >= 0) & (relaxed <= 1))
    logits = m.code_logits_model().predict(m.preprocessor()(digits.query.images), verbose=0)
    np.testing.assert_array_equal(codes, logits > 0)
    decided = np.abs(relaxed - 0.5) > 1e-6
    np.testing.assert_array_equal(codes[decided], relaxed[decided] > 0.5)
    # arrays of raw images work too, in any batch size
    np.testing.assert_array_equal(m.encode(digits.query.images[:7], batch_size=3), codes[:7])
    with pytest.raises(ValueError, match="shape"):
        m.encode(np.zeros((2, 16, 16, 1), np.float32))


def test_hash_model_is_saved_alone_and_gives_the_relaxed_codes(digits, tmp_path):
    # save/reload of the whole method in a fresh process: tests/test_method_contract.py
    m = _create("dsrh", digits, bits=16)
    path = str(tmp_path / "hash.keras")
    m.hash_model().save(path)
    alone = keras.models.load_model(path)
    relaxed = alone.predict(m.preprocessor()(digits.query.images), verbose=0)
    np.testing.assert_allclose(relaxed, m.relaxed_codes(digits.query), rtol=1e-6, atol=1e-7)


def test_save_refuses_other_extensions(digits, tmp_path):
    m = _create("drh", digits)
    with pytest.raises(ValueError, match=".keras"):
        m.save(str(tmp_path / "m.h5"))


# ----------------------------------------------------------------------------- lambda selection
def test_select_ortho_weight_uses_a_validation_split_never_the_queries(digits):
    # without queries or database: selection must work on the training split alone
    blind = dataclasses.replace(
        digits, query=None, database=None, train=digits.train.subset(np.arange(120))
    )
    config = training.TrainConfig(epochs=1, batch_size=16, verbose=0)
    best, scores = select_ortho_weight(blind, 8, config, grid=(0.25, 0.0), variant="drh+", bags=4)
    assert best in (0.25, 0.0)
    assert set(scores) == {"0.25", "0.0"}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert scores[repr(best)] == max(scores.values())
    with pytest.raises(ValueError, match="orthogonality"):
        select_ortho_weight(blind, 8, config, variant="drh")


# ----------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_every_variant_learns_codes_far_better_than_random(digits):
    """digits at 32 bits: 20 epochs of 7 steps. Random codes score ~0.1 mAP (10 classes)."""
    rng = np.random.default_rng(0)
    random_map = metrics.evaluate(
        rng.random((len(digits.query), 32)) > 0.5,
        rng.random((len(digits.database), 32)) > 0.5,
        digits.query.labels,
        digits.database.labels,
    )["map"]
    assert random_map < 0.15
    config = training.TrainConfig(epochs=20, lr=0.05, lr_decay_steps=None, verbose=0)
    for variant in ("dsrh", "drh", "drh+"):
        m = _create(variant, digits, bits=32, ortho_weight=0.05)
        history = m.fit_dataset(digits, config)
        assert history["triplet"][-1] < history["triplet"][0]
        result = metrics.evaluate(
            m.encode(digits.query),
            m.encode(digits.database),
            digits.query.labels,
            digits.database.labels,
        )
        assert result["map"] > 0.4, (variant, result["map"])


@pytest.mark.slow
def test_dsrh_on_the_vgg19_backbone_trains_and_encodes(digits):
    """The paper's backbone (random weights, 32x32 input to stay small): gray 8x8 digits go
    through the VGG preprocessing (resize, crop, gray -> BGR, mean) into VGG-19 + dropout."""
    ds = dataclasses.replace(digits, train=digits.train.subset(np.arange(8)))
    m = _create("dsrh", ds, bits=8, backbone="vgg19", input_shape=(32, 32, 3))
    assert m.preprocessing == "vgg19" and tuple(m.inputs[0].shape[1:]) == (32, 32, 3)
    assert m.get_layer("fc8").input.shape[-1] == 4096  # fc7
    history = m.fit_dataset(ds, training.TrainConfig(epochs=1, batch_size=4, verbose=0))
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert m.encode(digits.query.images[:5]).shape == (5, 8)
