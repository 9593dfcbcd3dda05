"""BagHash: the bag-wise hash layer (DSRH §3.2 / NINH divide-and-encode)."""

import json

import keras
import numpy as np
import pytest

import deephash  # noqa: F401  (registers the layers)
from deephash.layers import BagHash


def _reference(x, kernel, bias):
    """Slow reference: bit j is a dot product of input slice [j*bags, (j+1)*bags) with row j."""
    bits, bags = kernel.shape
    out = np.empty((x.shape[0], bits))
    for n in range(x.shape[0]):
        for j in range(bits):
            out[n, j] = np.dot(x[n, j * bags : (j + 1) * bags], kernel[j]) + bias[j]
    return out


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _built_layer(bits, bags, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    layer = BagHash(bits, bags=bags, **kwargs)
    layer.build((None, bits * bags))
    kernel = rng.normal(size=(bits, bags)).astype("float32")
    bias = rng.normal(size=(bits,)).astype("float32")
    layer.set_weights([kernel, bias])
    return layer, kernel, bias


def test_has_one_kernel_of_shape_bits_by_bags_and_one_bias():
    layer = BagHash(12, bags=5)
    layer.build((None, 60))
    shapes = sorted(tuple(w.shape) for w in layer.weights)
    assert shapes == [(12,), (12, 5)]
    assert layer.count_params() == 12 * 5 + 12


def test_matches_numpy_reference_with_sigmoid():
    layer, kernel, bias = _built_layer(7, 4)
    x = np.random.default_rng(1).normal(size=(9, 28)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == (9, 7)
    np.testing.assert_allclose(got, _sigmoid(_reference(x, kernel, bias)), rtol=1e-5, atol=1e-6)


def test_bag_j_reads_only_its_own_input_slice():
    bits, bags = 4, 3
    layer = BagHash(bits, bags=bags, activation=None)
    layer.build((None, bits * bags))
    layer.set_weights([np.ones((bits, bags), "float32"), np.zeros(bits, "float32")])
    for i in range(bits * bags):
        x = np.zeros((1, bits * bags), "float32")
        x[0, i] = 1.0
        out = keras.ops.convert_to_numpy(layer(x))[0]
        expected = np.zeros(bits)
        expected[i // bags] = 1.0
        np.testing.assert_array_equal(out, expected)


def test_activation_none_gives_logits_whose_sign_matches_sigmoid_threshold():
    layer, kernel, bias = _built_layer(16, 3, activation=None)
    x = np.random.default_rng(2).normal(size=(50, 48)).astype("float32")
    logits = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(logits, _reference(x, kernel, bias), rtol=1e-5, atol=1e-5)
    sig_layer = BagHash(16, bags=3)
    sig_layer.build((None, 48))
    sig_layer.set_weights([kernel, bias])
    probs = keras.ops.convert_to_numpy(sig_layer(x))
    np.testing.assert_array_equal(logits > 0, probs > 0.5)


def test_default_bags_is_30():
    layer = BagHash(8)
    assert layer.bags == 30
    assert layer(np.zeros((2, 240), "float32")).shape == (2, 8)


def test_extra_leading_axes_are_kept():
    layer, kernel, bias = _built_layer(3, 2)
    x = np.random.default_rng(3).normal(size=(2, 5, 6)).astype("float32")
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == (2, 5, 3)
    np.testing.assert_allclose(
        got[1], _sigmoid(_reference(x[1], kernel, bias)), rtol=1e-5, atol=1e-6
    )


def test_wrong_input_width_raises_value_error_naming_both_widths():
    layer = BagHash(8, bags=30)
    with pytest.raises(ValueError, match=r"240.*241|241.*240"):
        layer(np.zeros((2, 241), "float32"))


@pytest.mark.parametrize(
    "kwargs", [{"bits": 0}, {"bits": -3}, {"bits": 2.5}, {"bits": 4, "bags": 0}, {"bits": True}]
)
def test_bad_bits_or_bags_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="positive integer"):
        BagHash(**kwargs)


def test_get_config_json_round_trip_gives_the_same_outputs():
    layer, kernel, bias = _built_layer(5, 6, activation=None, kernel_regularizer="l2")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, BagHash)
    assert (clone.bits, clone.bags, clone.use_bias) == (5, 6, True)
    assert clone.built  # the serialized form carries the build shape
    clone.set_weights([kernel, bias])
    x = np.random.default_rng(4).normal(size=(3, 30)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(layer(x))
    )
    assert clone.get_config() == layer.get_config()


def test_registered_name_is_stable():
    assert keras.saving.get_registered_name(BagHash) == "deephash>BagHash"


def test_gradients_reach_every_kernel_entry():
    import tensorflow as tf

    layer, _, _ = _built_layer(4, 5)
    x = tf.constant(np.random.default_rng(5).normal(size=(8, 20)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    g_kernel, g_bias = tape.gradient(loss, [layer.kernel, layer.bias])
    assert g_kernel.shape == (4, 5) and np.all(np.abs(g_kernel.numpy()) > 0)
    assert g_bias.shape == (4,) and np.all(np.abs(g_bias.numpy()) > 0)
