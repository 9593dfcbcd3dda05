"""DSEH losses against hand-computed values (worked out in the comments)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import deephash  # noqa: F401
from deephash.losses.pairwise import (
    CodeCrossEntropy,
    LabelRegressionLoss,
    PairwiseLikelihoodLoss,
    QuantizationLoss,
    code_cross_entropy,
    label_regression_loss,
    pairwise_likelihood_loss,
    quantization_loss,
    similarity_matrix,
)


def test_pairwise_likelihood_hand_computed():
    # u1 = (2, 0), u2 = (0, 1); v1 = (1, 1), v2 = (-2, 0)
    # Θ = ½ u vᵀ = [[1, -2], [0.5, 0]]; s = [[1, 0], [0, 1]]
    # l = log(1 + e^Θ) - sΘ:
    #   l11 = log(1+e)   - 1 = 0.31326169, l12 = log(1+e^-2) = 0.12692801
    #   l21 = log(1+e^.5)    = 0.97407698, l22 = log 2 - 0 = 0.69314718
    u = np.array([[2.0, 0.0], [0.0, 1.0]])
    v = np.array([[1.0, 1.0], [-2.0, 0.0]])
    s = np.array([[1.0, 0.0], [0.0, 1.0]])
    expected = np.array(
        [
            [math.log(1 + math.e) - 1, math.log(1 + math.exp(-2))],
            [math.log(1 + math.exp(0.5)), math.log(2)],
        ]
    )
    np.testing.assert_allclose(
        pairwise_likelihood_loss(u, v, s, "none").numpy(), expected, rtol=1e-6
    )
    np.testing.assert_allclose(
        pairwise_likelihood_loss(u, v, s, "sum").numpy(), expected.sum(), rtol=1e-6
    )
    np.testing.assert_allclose(
        pairwise_likelihood_loss(u, v, s).numpy(), expected.mean(), rtol=1e-6
    )


def test_pairwise_likelihood_is_finite_for_theta_in_the_hundreds():
    # Θ = ½ * 20 * 20 = 200 (similar, s=1: l = 200 - 200 = 0; dissimilar: l = 200)
    # and Θ = -200 (similar: l = log(1+e^-200) + 200 = 200; dissimilar: l ≈ e^-200 = 0)
    u = tf.constant([[20.0], [-20.0]])
    v = tf.constant([[20.0]])
    for s, expected in (([[1.0], [1.0]], [[0.0], [200.0]]), ([[0.0], [0.0]], [[200.0], [0.0]])):
        with tf.GradientTape() as tape:
            tape.watch(u)
            loss = pairwise_likelihood_loss(u, v, tf.constant(s), "none")
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, u).numpy()
        np.testing.assert_allclose(loss.numpy(), expected, atol=1e-4)
        assert np.all(np.isfinite(grad))
        # dl/du_i = ½ (σ(Θ) - s) v: σ(200) = 1, σ(-200) = 0
        sig = np.array([[1.0], [0.0]])
        np.testing.assert_allclose(grad, 0.5 * (sig - np.array(s)) * 20.0, atol=1e-5)
    # |Θ| = 500 in float32, summed over a 64 x 64 matrix of such pairs
    big = tf.fill((64, 4), 500.0**0.5)
    value = pairwise_likelihood_loss(big, -big, tf.zeros((64, 64)), "sum")
    assert np.isfinite(value.numpy()) and value.numpy() == pytest.approx(0.0, abs=1e-3)


def test_pairwise_likelihood_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        pairwise_likelihood_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)), "avg")
    with pytest.raises(ValueError, match="width"):
        pairwise_likelihood_loss(np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="s must be"):
        pairwise_likelihood_loss(np.ones((2, 3)), np.ones((4, 3)), np.ones((2, 2)))


def test_similarity_matrix_shares_a_label():
    ya = np.array([[1, 0, 1], [0, 1, 0]], np.uint8)
    yb = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0]], np.uint8)
    np.testing.assert_array_equal(similarity_matrix(ya, yb, 5.0).numpy(), [[5, 5, 5], [0, 5, 0]])


def test_quantization_label_regression_and_code_cross_entropy_hand_computed():
    h = np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -0.25]])
    # | |h| - 1 |: row 1: 0.5 + 0 + 1 = 1.5; row 2: 1 + 0 + 0.75 = 1.75
    np.testing.assert_allclose(quantization_loss(h).numpy(), [1.5, 1.75])
    np.testing.assert_allclose(quantization_loss(h, "sum").numpy(), 3.25)
    np.testing.assert_allclose(quantization_loss(h, "mean").numpy(), 1.625)
    y = np.array([[1, 0], [0, 1]])
    y_hat = np.array([[0.5, 0.5], [2.0, 1.0]])
    # row 1: .25 + .25 = .5 ; row 2: 4 + 0 = 4
    np.testing.assert_allclose(label_regression_loss(y, y_hat).numpy(), [0.5, 4.0])
    logits = np.array([[0.0, 2.0], [-1.0, 3.0]])
    codes = np.array([[1.0, -1.0], [-0.3, 0.9]])  # targets sign -> {0,1}: [[1, 0], [0, 1]]
    # CE(z, t) = softplus(z) - t z: row 1: log2 - 0 + softplus(2) = 0.693147 + 2.126928
    # row 2: softplus(-1) + softplus(3) - 3 = 0.313262 + 0.048587
    expected = [
        math.log(2) + math.log(1 + math.exp(2)),
        math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3)) - 3,
    ]
    np.testing.assert_allclose(code_cross_entropy(logits, codes).numpy(), expected, rtol=1e-6)
    # {0, 1} / bool targets mean the same bits
    np.testing.assert_allclose(code_cross_entropy(logits, codes > 0).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        label_regression_loss(np.ones((2, 3)), np.ones((2, 2)))


def test_loss_classes_match_functions_and_round_trip_config():
    rng = np.random.default_rng(0)
    y = (rng.random((6, 4)) < 0.4).astype(np.float32)
    f = rng.normal(size=(6, 5)).astype(np.float32)
    loss = PairwiseLikelihoodLoss(positive_similarity=2.0)
    expected = pairwise_likelihood_loss(f, f, similarity_matrix(y, y, 2.0), "mean").numpy()
    np.testing.assert_allclose(loss(y, f).numpy(), expected, rtol=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, PairwiseLikelihoodLoss) and clone.positive_similarity == 2.0
    h = np.tanh(f)
    np.testing.assert_allclose(
        QuantizationLoss()(np.zeros_like(h), h).numpy(),
        quantization_loss(h, "mean").numpy(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        LabelRegressionLoss()(y, h[:, :4]).numpy(),
        label_regression_loss(y, h[:, :4]).numpy().mean(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        CodeCrossEntropy()(h, f).numpy(), code_cross_entropy(f, h).numpy().mean(), rtol=1e-6
    )
    for cls in (QuantizationLoss, LabelRegressionLoss, CodeCrossEntropy):
        assert isinstance(keras.losses.deserialize(keras.losses.serialize(cls())), cls)
    with pytest.raises(ValueError, match="positive_similarity"):
        PairwiseLikelihoodLoss(positive_similarity=0)
