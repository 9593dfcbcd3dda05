"""DSRH losses: triplet ranking (Eq. 2-3), orthogonality (Eq. 6-7), classification (Eq. 8, 11)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import deephash  # noqa: F401  (registers the losses)
from deephash import losses


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ---------------------------------------------------------------- triplet ranking loss (Eq. 2)


def test_triplet_loss_hand_computed_values():
    # triplet 0: ||h-h+||^2 = 0, ||h-h-||^2 = 2 -> max(0, 1 - 2 + 0) = 0
    # triplet 1: ||h-h+||^2 = 1, ||h-h-||^2 = 0.5 -> max(0, 1 - 0.5 + 1) = 1.5
    h = np.array([[1.0, 0.0], [0.0, 0.0]])
    h_pos = np.array([[1.0, 0.0], [1.0, 0.0]])
    h_neg = np.array([[0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(
        _np(losses.triplet_ranking_loss(h, h_pos, h_neg)), [0.0, 1.5], atol=1e-7
    )
    # margin 3: triplet 0 gives 3 - 2 + 0 = 1, triplet 1 gives 3 - 0.5 + 1 = 3.5
    np.testing.assert_allclose(
        _np(losses.triplet_ranking_loss(h, h_pos, h_neg, margin=3.0)), [1.0, 3.5], atol=1e-6
    )


def test_triplet_loss_matches_slow_reference_on_random_codes():
    rng = np.random.default_rng(0)
    h, hp, hn = (rng.uniform(size=(40, 12)) for _ in range(3))
    expected = [
        max(0.0, 1.0 - np.sum((a - n) ** 2) + np.sum((a - p) ** 2)) for a, p, n in zip(h, hp, hn)
    ]
    np.testing.assert_allclose(
        _np(losses.triplet_ranking_loss(h, hp, hn)), expected, rtol=1e-5, atol=1e-6
    )


def test_triplet_loss_autodiff_gradients_equal_eq3():
    rng = np.random.default_rng(1)
    m, k = 64, 8
    h, hp, hn = (rng.uniform(size=(m, k)).astype("float64") for _ in range(3))
    hinge = 1.0 - np.sum((h - hn) ** 2, 1) + np.sum((h - hp) ** 2, 1)
    keep = np.abs(hinge) > 1e-3  # stay away from the kink
    h, hp, hn, hinge = h[keep], hp[keep], hn[keep], hinge[keep]
    active = (hinge > 0)[:, None].astype("float64")
    assert 0 < active.sum() < len(active)  # both branches are exercised
    th, thp, thn = (tf.Variable(a) for a in (h, hp, hn))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.triplet_ranking_loss(th, thp, thn))
    g, gp, gn = tape.gradient(total, [th, thp, thn])
    np.testing.assert_allclose(g.numpy(), active * (2 * hn - 2 * hp), atol=1e-12)
    np.testing.assert_allclose(gp.numpy(), active * (2 * hp - 2 * h), atol=1e-12)
    np.testing.assert_allclose(gn.numpy(), active * (2 * h - 2 * hn), atol=1e-12)


def test_triplet_loss_shape_errors_and_bad_margin():
    a = np.zeros((4, 8))
    with pytest.raises(ValueError, match="h_neg"):
        losses.triplet_ranking_loss(a, a, np.zeros((4, 7)))
    with pytest.raises(ValueError, match="rank 2"):
        losses.triplet_ranking_loss(np.zeros(8), np.zeros(8), np.zeros(8))
    for bad in (-1.0, float("nan"), "one", None):
        with pytest.raises(ValueError, match="margin"):
            losses.triplet_ranking_loss(a, a, a, margin=bad)
        with pytest.raises(ValueError, match="margin"):
            losses.TripletRankingLoss(margin=bad)


def test_triplet_loss_class_reduces_mean_and_accepts_tuple_or_stacked():
    rng = np.random.default_rng(2)
    h, hp, hn = (rng.uniform(size=(10, 6)).astype("float32") for _ in range(3))
    per = _np(losses.triplet_ranking_loss(h, hp, hn, margin=2.0))
    loss = losses.TripletRankingLoss(margin=2.0)
    np.testing.assert_allclose(_np(loss(None, (h, hp, hn))), per.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        _np(loss(np.zeros(10), np.stack([h, hp, hn], axis=1))), per.mean(), rtol=1e-6
    )
    with pytest.raises(ValueError, match=r"\(m, 3, k\)"):
        loss(np.zeros(10), np.zeros((10, 4, 6), "float32"))


# ---------------------------------------------------------------- orthogonality (Eq. 6-7)


def test_centre_codes_maps_unit_interval_to_plus_minus_one():
    np.testing.assert_allclose(
        _np(losses.centre_codes(np.array([[0.0, 0.5, 1.0]]))), [[-1.0, 0.0, 1.0]]
    )


def test_orthogonality_hand_computed_values():
    # Hadamard columns: (1/m) H^T H = I exactly -> 0
    hadamard = np.array([[1, 1], [1, -1]], dtype="float64")
    assert float(_np(losses.orthogonality_loss(hadamard))) == pytest.approx(0.0, abs=1e-12)
    # all ones (m=2, k=2): (1/m) H^T H = [[1,1],[1,1]] -> ||[[0,1],[1,0]]||^2 = 2
    ones = np.ones((2, 2))
    assert float(_np(losses.orthogonality_loss(ones))) == pytest.approx(2.0)
    # zeros (k=2): ||-I_2||^2 = 2; the mean over {hadamard, ones, zeros} is (0 + 2 + 2) / 3
    mixed = losses.orthogonality_loss(hadamard, ones, np.zeros((2, 2)))
    assert float(_np(mixed)) == pytest.approx((0 + 2 + 2) / 3)
    # zeros (k=3): ||-I_3||^2 = 3, whatever m is
    assert float(_np(losses.orthogonality_loss(np.zeros((5, 3))))) == pytest.approx(3.0)


def test_orthogonality_matches_slow_reference():
    rng = np.random.default_rng(3)
    mats = [rng.uniform(-1, 1, size=(16, 5)) for _ in range(3)]

    def one(h):
        m, k = h.shape
        g = np.zeros((k, k))
        for i in range(k):
            for j in range(k):
                g[i, j] = sum(h[r, i] * h[r, j] for r in range(m)) / m
        return float(np.sum((g - np.eye(k)) ** 2))

    expected = sum(one(h) for h in mats) / 3
    assert float(_np(losses.orthogonality_loss(*mats))) == pytest.approx(expected, rel=1e-10)


def test_orthogonality_autodiff_gradient_equals_corrected_eq7():
    rng = np.random.default_rng(4)
    m, k = 24, 6
    mats = [tf.Variable(rng.uniform(-1, 1, size=(m, k))) for _ in range(3)]
    with tf.GradientTape() as tape:
        value = losses.orthogonality_loss(*mats)
    grads = tape.gradient(value, mats)
    for h, g in zip(mats, grads):
        h = h.numpy()
        closed_form = 4.0 / (3.0 * m) * h @ (h.T @ h / m - np.eye(k))  # Eq. 7 with the missing 1/m
        np.testing.assert_allclose(g.numpy(), closed_form, rtol=1e-10, atol=1e-12)
        printed = 4.0 / (3.0 * m) * h @ (h.T @ h - np.eye(k))  # Eq. 7 as printed
        assert not np.allclose(g.numpy(), printed)


def test_orthogonality_class_centres_sigmoid_outputs_by_default():
    rng = np.random.default_rng(5)
    hs = [rng.uniform(size=(8, 4)).astype("float32") for _ in range(3)]
    expected = float(_np(losses.orthogonality_loss(*[2 * h - 1 for h in hs])))
    loss = losses.OrthogonalityLoss()
    assert float(_np(loss(None, tuple(hs)))) == pytest.approx(expected, rel=1e-6)
    assert float(_np(loss(None, np.stack(hs, axis=1)))) == pytest.approx(expected, rel=1e-6)
    raw = losses.OrthogonalityLoss(centre=False)
    assert float(_np(raw(None, tuple(2 * h - 1 for h in hs)))) == pytest.approx(expected, rel=1e-6)


def test_orthogonality_shape_errors():
    with pytest.raises(ValueError, match="at least one"):
        losses.orthogonality_loss()
    with pytest.raises(ValueError, match="rank 2"):
        losses.orthogonality_loss(np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="same number of bits"):
        losses.orthogonality_loss(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="centre"):
        losses.OrthogonalityLoss(centre="yes")


# ---------------------------------------------------------------- classification (Eq. 8, 11)


def test_softmax_cross_entropy_hand_computed_with_ids_and_one_hot():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])  # p = [.5,.5], [.75,.25]
    ids = np.array([1, 0])
    expected = [np.log(2.0), -np.log(0.75)]
    np.testing.assert_allclose(_np(losses.softmax_cross_entropy(ids, logits)), expected, rtol=1e-6)
    np.testing.assert_allclose(
        _np(losses.softmax_cross_entropy(ids[:, None], logits)), expected, rtol=1e-6
    )
    one_hot = np.eye(2)[ids]
    np.testing.assert_allclose(
        _np(losses.softmax_cross_entropy(one_hot, logits)), expected, rtol=1e-6
    )


def test_softmax_cross_entropy_gradient_is_eq9():
    rng = np.random.default_rng(6)
    logits = tf.Variable(rng.normal(size=(5, 4)))
    ids = np.array([0, 3, 1, 1, 2])
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(losses.softmax_cross_entropy(ids, logits))
    p = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(
        tape.gradient(value, logits).numpy(), (p - np.eye(4)[ids]) / 5, atol=1e-6
    )


def test_sigmoid_cross_entropy_sums_over_classes_as_eq11():
    logits = np.array([[0.0, 2.0, -1.0], [30.0, -30.0, 0.5]])
    labels = np.array([[1, 0, 1], [1, 0, 0]], dtype="uint8")
    p = 1 / (1 + np.exp(-logits))
    expected = -np.sum(labels * np.log(p) + (1 - labels) * np.log(1 - p), axis=1)
    got = _np(losses.sigmoid_cross_entropy(labels, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # keras' BinaryCrossentropy averages over the 3 classes instead
    keras_mean = _np(
        keras.losses.binary_crossentropy(
            labels.astype("float32"), logits.astype("float32"), from_logits=True
        )
    )
    np.testing.assert_allclose(got, 3 * keras_mean, rtol=1e-4)


def test_sigmoid_cross_entropy_is_finite_for_huge_logits():
    got = _np(
        losses.sigmoid_cross_entropy(
            np.array([[0.0, 1.0]]), np.array([[1e4, -1e4]], dtype="float32")
        )
    )
    assert np.all(np.isfinite(got)) and got[0] == pytest.approx(2e4)


def test_classification_shape_errors():
    with pytest.raises(ValueError, match="one-hot"):
        losses.softmax_cross_entropy(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy(np.zeros(4, "int32"), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="multi-hot"):
        losses.sigmoid_cross_entropy(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="rank 2"):
        losses.sigmoid_cross_entropy(np.zeros(4), np.zeros(4))


def test_classification_loss_classes_take_the_batch_mean():
    logits = np.random.default_rng(7).normal(size=(6, 3)).astype("float32")
    ids = np.array([0, 1, 2, 2, 1, 0])
    multi = np.array([[1, 0, 1]] * 6, dtype="float32")
    np.testing.assert_allclose(
        _np(losses.SoftmaxCrossEntropy()(ids, logits)),
        _np(losses.softmax_cross_entropy(ids, logits)).mean(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _np(losses.SigmoidCrossEntropy()(multi, logits)),
        _np(losses.sigmoid_cross_entropy(multi, logits)).mean(),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "loss",
    [
        losses.TripletRankingLoss(margin=0.5, reduction="sum"),
        losses.OrthogonalityLoss(centre=False),
        losses.SoftmaxCrossEntropy(name="cls"),
        losses.SigmoidCrossEntropy(),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_loss_get_config_json_round_trip(loss):
    config = json.loads(json.dumps(keras.losses.serialize(loss)))
    clone = keras.losses.deserialize(config)
    assert type(clone) is type(loss)
    assert clone.get_config() == loss.get_config()
    assert keras.saving.get_registered_name(type(loss)) == f"deephash>{type(loss).__name__}"


def test_losses_are_computed_in_float32_for_half_precision_inputs():
    h = tf.constant(np.random.default_rng(8).uniform(size=(6, 4)), dtype=tf.bfloat16)
    assert losses.triplet_ranking_loss(h, h, h).dtype == tf.float32
    assert losses.orthogonality_loss(losses.centre_codes(h)).dtype == tf.float32
    assert (
        losses.softmax_cross_entropy(np.zeros(6, "int32"), tf.cast(h, tf.float16)).dtype
        == tf.float32
    )
    assert losses.sigmoid_cross_entropy(np.zeros((6, 4)), h).dtype == tf.float32
