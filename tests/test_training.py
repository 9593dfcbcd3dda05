"""deephash.training: config, optimiser, strategies, replica-aware losses, checkpoints,
and the two equality tests (MirroredStrategy == one device; resumed == uninterrupted)."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import Interrupt, StopAt, approx_history

import deephash  # noqa: F401
from deephash import data, methods, training


# ----------------------------------------------------------------------------- config
def test_train_config_defaults_are_the_dsrh_papers():
    c = training.TrainConfig()
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay) == (64, 0.01, 0.9, 2e-4)
    assert (c.lr_decay_steps, c.lr_decay_rate) == (5000, 0.1)
    assert c.strategy == "default" and c.mixed_precision is False


def test_train_config_replace_and_dict_round_trip():
    c = training.TrainConfig().replace(epochs=3, lr=0.5, checkpoint_dir="/x")
    assert (c.epochs, c.lr, c.checkpoint_dir) == (3, 0.5, "/x")
    assert training.TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="no field"):
        c.replace(learning_rate=1.0)
    with pytest.raises(ValueError, match="no field"):
        training.TrainConfig.from_dict({**c.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("batch_size", 2.5),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("momentum", -0.1),
        ("weight_decay", -1e-4),
        ("strategy", "tpu"),
        ("seed", -1),
        ("lr_decay_steps", 0),
    ],
)
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        training.TrainConfig(**{field: value})


def test_make_optimizer_steps_the_learning_rate_down():
    opt = training.make_optimizer(
        training.TrainConfig(lr=0.01, lr_decay_steps=5, lr_decay_rate=0.1)
    )
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == pytest.approx(0.9)
    sched = opt._learning_rate
    lrs = [float(sched(step)) for step in (0, 4, 5, 9, 10)]
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.001, 0.001, 0.0001], rtol=1e-6)
    constant = training.make_optimizer(training.TrainConfig(lr=0.2, lr_decay_steps=None))
    assert float(constant.learning_rate) == pytest.approx(0.2)


# ----------------------------------------------------------------------------- strategies
def test_get_strategy_by_name():
    assert training.get_strategy("default").num_replicas_in_sync == 1
    mirrored = training.get_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert (
        mirrored.num_replicas_in_sync == len(tf.config.list_logical_devices("CPU")) == 2
    )  # conftest
    with pytest.raises(ValueError, match="unknown strategy"):
        training.get_strategy("tpu")


def test_simulate_devices_after_start_only_accepts_the_current_count():
    training.simulate_devices(2)  # what conftest configured: fine
    with pytest.raises(RuntimeError, match="already initialised"):
        training.simulate_devices(3)
    with pytest.raises(ValueError):
        training.simulate_devices(0)


def test_scale_and_gather_outside_a_strategy_are_identities():
    x = tf.constant([[1.0, 2.0]])
    assert training.scale_to_replicas(tf.constant(3.0)).numpy() == 3.0
    assert training.gather_replicas(x) is x


def test_scale_and_gather_under_mirrored_see_the_global_batch():
    strategy = training.get_strategy("mirrored")
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.fill((2, 3), float(ctx.replica_id_in_sync_group + 1))
    )

    def step(x):
        return training.gather_replicas(x), training.scale_to_replicas(tf.reduce_sum(x))

    gathered, scaled = strategy.run(step, args=(values,))
    expected = np.concatenate([np.full((2, 3), 1.0), np.full((2, 3), 2.0)])
    for g in strategy.experimental_local_results(gathered):
        np.testing.assert_array_equal(g.numpy(), expected)
    # replica r sums 6 * (r + 1) and divides by the 2 replicas
    assert [float(s) for s in strategy.experimental_local_results(scaled)] == [3.0, 6.0]


def test_weight_decay_loss_is_caffe_l2_on_kernels_only():
    kernel = tf.Variable(np.array([[1.0, -2.0], [3.0, 0.5]], np.float32))
    bias = tf.Variable(np.array([10.0, 10.0], np.float32))
    with tf.GradientTape() as tape:
        loss = training.weight_decay_loss([kernel, bias], 0.1)
    # 0.5 * 0.1 * (1 + 4 + 9 + 0.25) = 0.7125; the bias is not decayed
    assert float(loss) == pytest.approx(0.7125)
    g_kernel, g_bias = tape.gradient(loss, [kernel, bias])
    np.testing.assert_allclose(g_kernel.numpy(), 0.1 * kernel.numpy(), rtol=1e-6)
    assert g_bias is None
    assert float(training.weight_decay_loss([kernel], 0.0)) == 0.0


def test_mixed_precision_is_ignored_on_cpu():
    assert not tf.config.list_physical_devices("GPU")
    assert training.configure_mixed_precision(True) is False
    assert keras.mixed_precision.global_policy().name == "float32"


# ----------------------------------------------------------------------------- checkpoints
def _tiny_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def test_checkpoint_round_trip_keeps_the_latest_and_its_fallback(tmp_path):
    training.set_seed(0)
    model = _tiny_model()
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    training.save_checkpoint(model, str(tmp_path), 1, {"loss": [1.0]})
    model.fit(x, y, epochs=1, verbose=0)
    path = training.save_checkpoint(model, str(tmp_path), 2, {"loss": [1.0, 0.5]})
    assert training.latest_checkpoint(str(tmp_path)) == path
    assert sorted(os.listdir(tmp_path)) == [
        "ckpt-1.npz",
        "ckpt-2.npz",
    ]  # the previous one is the fallback

    fresh = _tiny_model()
    meta = training.restore_checkpoint(fresh, path)
    assert meta["epoch"] == 2 and meta["history"] == {"loss": [1.0, 0.5]}
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    training.save_checkpoint(model, str(tmp_path), 3, {"loss": [1.0, 0.5, 0.4]})
    assert sorted(os.listdir(tmp_path)) == ["ckpt-2.npz", "ckpt-3.npz"]
    assert int(fresh.optimizer.iterations.numpy()) == 2

    inputs = keras.Input((5,))
    wrong = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="shape"):
        training.restore_checkpoint(wrong, path)
    assert training.latest_checkpoint(str(tmp_path / "missing")) is None


# ----------------------------------------------------------------------------- equality tests
@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _small(ds, n):
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(n)))


def _create(strategy, ds, dropout=False, **hparams):
    training.set_seed(0)
    with strategy.scope():
        backbone = "small_cnn"
        if dropout:  # a backbone with random state (dropout), fed raw pixels scaled in-model
            inputs = keras.Input(ds.image_shape)
            x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
            x = keras.layers.Dropout(0.5, seed=1)(keras.layers.Dense(32, activation="relu")(x))
            backbone = keras.Model(inputs, x)
        return methods.create("dsrh", bits=8, dataset=ds, backbone=backbone, bags=4, **hparams)


def _max_diff(a, b):
    return max(float(np.max(np.abs(x.numpy() - y.numpy()))) for x, y in zip(a.weights, b.weights))


def test_mirrored_training_over_two_devices_matches_one_device(digits):
    """3 DSRH steps with the triplet, orthogonality (global batch), classification and
    weight-decay terms: MirroredStrategy over 2 CPU devices == one device, same global batch."""
    ds = _small(digits, 48)
    config = training.TrainConfig(epochs=1, batch_size=16, lr=0.1, weight_decay=1e-2, verbose=0)
    one = _create(training.get_strategy("default"), ds, ortho_weight=1.0)
    two = _create(training.get_strategy("mirrored"), ds, ortho_weight=1.0)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    start = [w.numpy() for w in one.weights]
    h1 = one.fit_dataset(ds, config)
    h2 = two.fit_dataset(ds, config)
    moved = max(float(np.max(np.abs(w.numpy() - s))) for w, s in zip(one.weights, start))
    assert moved > 1e-3  # training did change the weights
    assert _max_diff(one, two) < 1e-5
    assert set(h1) == {"loss", "triplet", "orthogonality", "classification"}
    for k in h1:
        assert h1[k] == pytest.approx(h2[k], rel=1e-5)


@pytest.mark.parametrize("dropout", [False, True])
def test_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_run(digits, tmp_path, dropout):
    ds = _small(digits, 64)  # 4 steps per epoch at batch 16
    config = training.TrainConfig(epochs=3, batch_size=16, lr=0.05, lr_decay_steps=5, verbose=0)
    full = _create(training.get_strategy("default"), ds, dropout)
    h_full = full.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "a")))

    stopped = _create(training.get_strategy("default"), ds, dropout)
    with pytest.raises(Interrupt):  # dies in the middle of epoch 2
        stopped.fit_dataset(
            ds, config.replace(checkpoint_dir=str(tmp_path / "b")), callbacks=[StopAt(6)]
        )
    assert os.listdir(tmp_path / "b") == ["ckpt-1.npz"]

    resumed = _create(
        training.get_strategy("default"), ds, dropout
    )  # a fresh process would start here
    h_resumed = resumed.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert _max_diff(full, resumed) < 1e-6
    assert int(resumed.optimizer.iterations.numpy()) == 12
    assert h_resumed == approx_history(h_full)
    assert len(h_resumed["loss"]) == 3
    # and a finished run is not trained again
    again = _create(training.get_strategy("default"), ds, dropout)
    again.fit_dataset(ds, config.replace(checkpoint_dir=str(tmp_path / "b")))
    assert _max_diff(full, again) == 0.0


def test_dsrh_trains_under_the_mixed_float16_policy(digits):
    """The GPU mixed-precision path (forced here on CPU): loss scaling inside the tape,
    float32 heads and losses."""
    ds = _small(digits, 32)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = _create(training.get_strategy("default"), ds)
        start = [w.numpy() for w in model.trainable_weights]
        history = model.fit_dataset(
            ds, training.TrainConfig(epochs=1, batch_size=16, lr=0.1, verbose=0)
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    assert (
        model.get_layer("fc8").compute_dtype == "float16"
        and model.get_layer("codes").compute_dtype == "float32"
    )
    assert all(np.isfinite(v[-1]) for v in history.values())
    assert (
        max(float(np.max(np.abs(w.numpy() - s))) for w, s in zip(model.trainable_weights, start))
        > 1e-4
    )
    assert model.encode(ds.query.images[:4]).dtype == bool


def test_epochs_progress_bar_counts_epochs_and_silences_keras(capsys):
    config = training.TrainConfig(epochs=3, verbose="epochs")
    verbose, callbacks = training.progress(config, epochs=3, initial_epoch=1, desc="dsrh")
    assert verbose == 0 and len(callbacks) == 1
    bar = callbacks[0]
    bar.on_train_begin()
    bar.on_epoch_end(1, {"loss": 0.5})
    bar.on_epoch_end(2, {"loss": 0.25})
    assert bar.bar.n == 3  # resumed at epoch 1, two more epochs done
    bar.on_train_end()
    assert "dsrh" in capsys.readouterr().err


def test_keras_verbosity_passes_through_and_bad_values_are_rejected():
    assert training.progress(training.TrainConfig(verbose=2), epochs=1) == (2, [])
    with pytest.raises(ValueError, match="verbose"):
        training.TrainConfig(verbose="loud")
