"""Losses of the deep baselines (DPSH, DHN, HashNet) against hand-computed values."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import deephash  # noqa: F401
from deephash.losses.baselines import (
    LogCoshQuantizationLoss,
    PairwiseCrossEntropyLoss,
    SignQuantizationLoss,
    balanced_pair_weights,
    hashnet_beta,
    log_cosh_quantization_loss,
    off_diagonal_mask,
    pairwise_cross_entropy,
    sign_quantization_loss,
)


def _sp(x):
    return math.log1p(math.exp(x))


# ------------------------------------------------------------ pairwise cross-entropy
def test_pairwise_cross_entropy_hand_computed():
    # u1 = (1, 0), u2 = (0, 2), v1 = (1, 1): <u, v> = [1, 2]; s = [1, 0]
    # alpha = 1:   l = [log(1+e) - 1, log(1+e^2)]            = [0.31326169, 2.12692801]
    # alpha = 0.5: θ = [0.5, 1]: l = [log(1+e^.5) - .5, log(1+e)] = [0.47407698, 1.31326169]
    u = np.array([[1.0, 0.0], [0.0, 2.0]])
    v = np.array([[1.0, 1.0]])
    s = np.array([[1.0], [0.0]])
    np.testing.assert_allclose(
        pairwise_cross_entropy(u, v, s, reduction="none").numpy(),
        [[_sp(1) - 1], [_sp(2)]],
        rtol=1e-7,
    )
    half = pairwise_cross_entropy(u, v, s, alpha=0.5, reduction="none").numpy()
    np.testing.assert_allclose(half, [[_sp(0.5) - 0.5], [_sp(1)]], rtol=1e-7)
    # weights multiply each pair; sum and mean reductions
    w = np.array([[2.0], [0.5]])
    expected = 2 * (_sp(0.5) - 0.5) + 0.5 * _sp(1)
    assert float(pairwise_cross_entropy(u, v, s, 0.5, weights=w, reduction="sum")) == pytest.approx(
        expected
    )
    assert float(pairwise_cross_entropy(u, v, s, 0.5, weights=w)) == pytest.approx(expected / 2)


def test_pairwise_cross_entropy_stays_finite_for_large_theta():
    # θ = ±400 in float32: softplus(400) - 400 = 0 for a similar pair, 400 for a dissimilar one
    u = tf.constant([[20.0], [-20.0]])
    v = tf.constant([[20.0]])
    for s, expected in (([[1.0], [1.0]], [[0.0], [400.0]]), ([[0.0], [0.0]], [[400.0], [0.0]])):
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = pairwise_cross_entropy(u, v, tf.constant(s), reduction="none")
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, u).numpy()
        np.testing.assert_allclose(loss.numpy(), expected, atol=1e-3)
        # dl/du_i = alpha (σ(θ) - s) v_j with σ(400) = 1, σ(-400) = 0
        np.testing.assert_allclose(grad, (np.array([[1.0], [0.0]]) - np.array(s)) * 20.0, atol=1e-5)


def test_pairwise_cross_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        pairwise_cross_entropy(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)), alpha=0.0)
    with pytest.raises(ValueError, match="width"):
        pairwise_cross_entropy(np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="s must be"):
        pairwise_cross_entropy(np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="reduction"):
        pairwise_cross_entropy(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)), reduction="max")


def test_balanced_pair_weights_count_similar_and_dissimilar_pairs():
    # items a, a, b: off the diagonal 2 similar pairs ((0,1),(1,0)) and 4 dissimilar: |S| = 6
    # w = 6/2 = 3 on similar pairs, 6/4 = 1.5 on dissimilar ones, 0 on the diagonal
    s = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], np.float32)
    w = balanced_pair_weights(s, off_diagonal_mask(3)).numpy()
    np.testing.assert_allclose(w, [[0, 3, 1.5], [3, 0, 1.5], [1.5, 1.5, 0]])
    # so sum(w * l) / |S| = mean over similar pairs + mean over dissimilar pairs
    rng = np.random.default_rng(0)
    loss = rng.random((3, 3))
    sim = [loss[0, 1], loss[1, 0]]
    dis = [loss[0, 2], loss[1, 2], loss[2, 0], loss[2, 1]]
    assert np.sum(w * loss) / 6 == pytest.approx(np.mean(sim) + np.mean(dis))
    # all pairs counted when no mask; a class of pairs that is absent gets weight 0
    np.testing.assert_allclose(balanced_pair_weights(np.ones((2, 2))).numpy(), np.ones((2, 2)))
    np.testing.assert_allclose(balanced_pair_weights(np.zeros((2, 2))).numpy(), np.ones((2, 2)))


# ----------------------------------------------------------------------------- quantization terms
def test_log_cosh_quantization_hand_computed_and_finite():
    # z = (0, 1, 2, -3): log cosh(1) + log cosh(0) + log cosh(1) + log cosh(2)
    lc1, lc2 = math.log(math.cosh(1.0)), math.log(math.cosh(2.0))
    z = np.array([[0.0, 1.0, 2.0, -3.0], [1.0, -1.0, 1.0, -1.0]])
    np.testing.assert_allclose(
        log_cosh_quantization_loss(z).numpy(), [2 * lc1 + lc2, 0.0], rtol=1e-7
    )
    assert float(log_cosh_quantization_loss(z, "sum")) == pytest.approx(2 * lc1 + lc2)
    # |z| = 1000 (cosh overflows float64): log cosh(999) = 999 - log 2
    big = tf.constant([[1000.0, -1000.0]])
    np.testing.assert_allclose(
        log_cosh_quantization_loss(big).numpy(), [2 * (999 - math.log(2))], rtol=1e-6
    )
    # gradient d/dz log cosh(|z| - 1) = tanh(|z| - 1) sign(z)
    x = tf.constant([[0.5, -0.5, 1000.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(log_cosh_quantization_loss(x))
    np.testing.assert_allclose(
        tape.gradient(value, x).numpy(), [[math.tanh(-0.5), -math.tanh(-0.5), 1.0]], rtol=1e-6
    )


def test_sign_quantization_hand_computed_with_the_papers_gradient():
    # u = (0.5, -2, 0): b = (1, -1, -1) (bit = u > 0): (0.5)^2 + 1^2 + 1^2 = 2.25; gradient 2(u - b)
    u = tf.constant([[0.5, -2.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(u)
        value = sign_quantization_loss(u)
    np.testing.assert_allclose(value.numpy(), [2.25])
    np.testing.assert_allclose(tape.gradient(value, u).numpy(), [[-1.0, -2.0, 2.0]])
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        sign_quantization_loss(np.ones(3))


# ----------------------------------------------------------------------------- continuation
def test_hashnet_beta_schedule_steps_every_step_size():
    # beta0 (1 + 0.005 t)^0.5 with t = 200 floor(step / 200)
    assert hashnet_beta(0) == 1.0 and hashnet_beta(199) == 1.0
    assert hashnet_beta(200) == pytest.approx(math.sqrt(2.0))
    assert hashnet_beta(450) == pytest.approx(math.sqrt(3.0))
    assert float(hashnet_beta(tf.constant(450, tf.int64))) == pytest.approx(
        math.sqrt(3.0), rel=1e-6
    )
    assert hashnet_beta(10, beta0=2.0, gamma=0.1, power=1.0, step_size=5) == pytest.approx(
        2.0 * 2.0
    )
    for kwargs in ({"beta0": 0}, {"gamma": -1}, {"step_size": 0}):
        with pytest.raises(ValueError):
            hashnet_beta(1, **kwargs)


# ----------------------------------------------------------------------------- Loss classes
def test_pairwise_cross_entropy_loss_class_matches_a_pair_by_pair_reference():
    rng = np.random.default_rng(1)
    y = np.eye(3, dtype=np.float32)[[0, 0, 1, 2, 1]]
    z = rng.standard_normal((5, 4)).astype(np.float32)
    for weighted in (False, True):
        loss = PairwiseCrossEntropyLoss(alpha=0.7, weighted=weighted)
        per_sample = loss.call(tf.constant(y), tf.constant(z)).numpy()
        sim = [(i, j) for i in range(5) for j in range(5) if i != j and y[i] @ y[j] > 0]
        pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
        ref = np.zeros(5)
        for i, j in pairs:
            theta = 0.7 * float(z[i] @ z[j])
            s = 1.0 if (i, j) in sim else 0.0
            w = (
                (len(pairs) / len(sim) if s else len(pairs) / (len(pairs) - len(sim)))
                if weighted
                else 1.0
            )
            ref[i] += w * (_sp(theta) - s * theta) / 4
        np.testing.assert_allclose(per_sample, ref, rtol=1e-5)
        assert float(loss(y, z)) == pytest.approx(ref.mean(), rel=1e-5)


def test_loss_classes_round_trip_their_config_and_validate():
    loss = PairwiseCrossEntropyLoss(alpha=0.25, weighted=True)
    config = json.loads(json.dumps(keras.losses.serialize(loss)))
    clone = keras.losses.deserialize(config)
    assert isinstance(clone, PairwiseCrossEntropyLoss) and (clone.alpha, clone.weighted) == (
        0.25,
        True,
    )
    for cls in (LogCoshQuantizationLoss, SignQuantizationLoss):
        assert isinstance(keras.losses.deserialize(keras.losses.serialize(cls())), cls)
    z = np.array([[0.5, -2.0]], np.float32)
    assert float(SignQuantizationLoss()(None, z)) == pytest.approx(0.25 + 1.0)
    assert float(LogCoshQuantizationLoss()(None, z)) == pytest.approx(
        math.log(math.cosh(0.5)) + math.log(math.cosh(1.0))
    )
    with pytest.raises(ValueError, match="alpha"):
        PairwiseCrossEntropyLoss(alpha=-1.0)
