"""DSEH as its authors ran it (lelan-li/DSEH: DSEH.py, net_vggf.py, main.py): the losses
against formulas written from the released code, the optimiser (Adam, clipping, the
per-epoch and per-round decay), Algorithm 1's joint step, Table 2's n_h over the training
labels and the authors' evaluation set, the architecture switches and the paper preset."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import deephash  # noqa: F401
from deephash import data, methods, metrics, presets, training

AUTHORS = dict(
    loss_scale="authors",
    code_logit_scale=10.0,
    code_target=0.999,
    semantic_activation="relu",
    hash_input="pre_activation",
    labnet_lrn=True,
    imgnet_similarity=0.999,
    beta=0.01,
)


@pytest.fixture(scope="module")
def digits_multi():
    return data.load("digits_multi")


def _small(ds, n):
    return dataclasses.replace(ds, train=ds.train.subset(np.arange(n)))


def _tiny(ds, **hparams):
    training.set_seed(0)
    kw = dict(labnet_hidden=32, semantic_dim=16, labnet_batch_size=16)
    kw.update(hparams)
    return methods.create("dseh", bits=8, dataset=ds, **kw)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid_ce(logits, labels):  # tf.nn.sigmoid_cross_entropy_with_logits
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def _authors_pairwise(table, batch, sim):
    """DSEH.py: -sum(S * Θ - log(1 + e^Θ)) / (n_train * batch), Θ = ½ table · batchᵀ, S (n, b)."""
    theta = 0.5 * table.astype(np.float64) @ batch.astype(np.float64).T
    return -np.sum(sim * theta - _softplus(theta)) / (table.shape[0] * batch.shape[0])


def test_losses_equal_the_released_code_on_fixed_inputs(digits_multi):
    ds = _small(digits_multi, 40)
    gamma, sem_w, s_lab = 0.1, 0.0, 5.0  # ImageNet's LabNet weights in main.py
    m = _tiny(ds, **AUTHORS, gamma=gamma, labnet_semantic_weight=sem_w, positive_similarity=s_lab)
    m.refresh_store(ds.train.labels)
    y_all = ds.train.labels.astype(np.float32)
    table = m._labnet_outputs(y_all)
    y = y_all[:16]
    out = m._labnet_outputs(y)
    b, c, k = y.shape[0], y.shape[1], m.bits
    sim = ((y_all @ y.T) > 0).astype(
        np.float64
    )  # (n_train, batch), as DSEH.py's similar_mat[:, idx]

    # label_loss() of DSEH.py with main.py's gamma dict
    expected_lab = (
        gamma * 0.5 * np.sum((y - out["labels"]) ** 2) / (b * c)  # l2_loss / (batch * n_class)
        + 1.0 * _authors_pairwise(table["codes"], out["codes"], sim * s_lab)  # label_pairwise_hash
        + 1.0 * 0.01 * np.mean(np.abs(1.0 - np.abs(out["codes"])))  # 0.01 * absolute_difference
        + sem_w * _authors_pairwise(table["semantic"], out["semantic"], sim * s_lab)
    )
    terms = m.labnet_losses(tf.constant(y), training_mode=False)
    got = float(tf.reduce_mean(m._labnet_total(terms)))
    assert got == pytest.approx(expected_lab, rel=1e-5)

    # image_loss() of DSEH.py: sigmoid CE of 10 z vs 0.999 t over (batch * bit), J1 with s = 0.999
    images = m.preprocessor()(tf.constant(ds.train.images[:16]), training=False)
    img = m.imgnet(images, training=False)
    z = img["hash"].numpy().astype(np.float64)
    t = 0.999 * (out["codes"] >= 0)
    expected_img = np.sum(_sigmoid_ce(10.0 * z, t)) / (b * k) + _authors_pairwise(
        table["semantic"], img["semantic"].numpy(), sim * 0.999
    )
    got = float(
        tf.reduce_mean(
            m._imgnet_total(m.imgnet_losses(images, tf.constant(y), training_mode=False))
        )
    )
    assert got == pytest.approx(expected_img, rel=1e-5)


def test_architecture_switches_follow_net_vggf(digits_multi):
    m = _tiny(digits_multi, **AUTHORS)
    assert m.get_layer("lab_semantic").activation.__name__ == "relu"
    # ImgNet's hash layer reads fc8 BEFORE its ReLU; the semantic output is the ReLU
    assert m.get_layer("img_hash").input is m.get_layer("img_semantic_fc").output
    assert m.get_layer("img_semantic").activation.__name__ == "relu"
    assert m.get_layer("lab_lrn").depth_radius == 2 and m.get_layer("lab_lrn").bias == 2.0
    x = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    ref = (
        x
        / (
            2.0
            + 1e-4 * np.stack([np.sum(x[:, max(0, i - 2) : i + 3] ** 2, 1) for i in range(32)], 1)
        )
        ** 0.75
    )
    np.testing.assert_allclose(
        m.get_layer("lab_lrn")(x[:, None, None, :]).numpy()[:, 0, 0], ref, rtol=1e-5
    )
    _, head = m.imgnet_weights()
    assert {w.path.split("/")[0] for w in head} == {"img_semantic_fc", "img_hash"}


def test_adam_with_clipping_and_the_authors_learning_rate_decay(digits_multi):
    decay = 10**-0.5
    m = _tiny(
        digits_multi,
        optimizer="adam",
        clip_value=1.0,
        lr_decay_epochs=10,
        lr_decay_rate=decay,
        round_lr_decay=decay,
    )
    cfg = training.TrainConfig(lr=1e-3, lr_decay_steps=None, verbose=0)
    opt = m.make_optimizer(cfg, steps=7, round_index=1, clip=1.0)
    assert isinstance(opt, keras.optimizers.Adam) and opt.clipvalue == 1.0
    # main.py: lr index int(epoch / 10 + round) in 0.1 ** (3.0, 3.5, ...); round_index 1 here
    for epoch in (0, 9, 10, 25):
        opt.iterations.assign(epoch * 7)  # 7 steps per epoch
        assert float(opt.learning_rate) == pytest.approx(
            10 ** -(3.0 + 0.5 * (epoch // 10 + 1)), rel=1e-5
        )
    opt.iterations.assign(0)
    # the clipping acts: a huge gradient moves a weight by Adam's lr, not more, and the clipped
    # gradient (1.0) is what Adam's first moment sees
    v = keras.Variable([0.0], name="w")
    opt.apply_gradients([(tf.constant([1e6]), v)])
    first_moment = [w for w in opt.variables if "momentum" in w.name]
    assert len(first_moment) == 1
    assert first_moment[0].numpy()[0] == pytest.approx(0.1)  # m = (1 - beta_1) * clip(g) = 0.1 * 1
    # a whole fit: each phase compiles Adam; ImgNet's new layers get their own Adam at
    # lr x multiplier
    ds = _small(digits_multi, 32)
    m = _tiny(
        ds,
        optimizer="adam",
        clip_value=1.0,
        imgnet_clip_value=0.5,
        lr_multiplier=10.0,
        rounds=1,
        labnet_epochs=1,
        imgnet_epochs=1,
    )
    m.fit_dataset(
        ds,
        training.TrainConfig(
            epochs=1, batch_size=16, lr=1e-4, weight_decay=0.0, lr_decay_steps=None, verbose=0
        ),
    )
    assert isinstance(m.optimizer, keras.optimizers.Adam) and m.optimizer.clipvalue == 0.5
    assert isinstance(m._head_optimizer, keras.optimizers.Adam)
    assert float(m._head_optimizer.learning_rate) == pytest.approx(1e-3)
    assert float(m.optimizer.learning_rate) == pytest.approx(1e-4)


def test_joint_step_sets_labnets_table_from_imgnet_from_round_two(digits_multi):
    ds = _small(digits_multi, 48)
    m = _tiny(ds, joint_table="imgnet", rounds=2, labnet_epochs=[1, 2], imgnet_epochs=1)
    seen = {}

    class Spy(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.phase = 0

        def on_train_begin(self, logs=None):
            # after _fit_phase's set-up, before the phase's first epoch
            seen[self.phase] = (
                m._store.codes.numpy().copy(),
                m._store.semantic.numpy().copy(),
                m._phase,
            )
            if m._phase == "labnet" and self.phase == 2:
                seen["imgnet_logits"] = m._predict(m.code_logits_model(), ds.train, 256)
                seen["imgnet_semantic"] = m.semantic_features(images=ds.train)
                seen["labnet_codes"] = m._labnet_outputs(ds.train.labels)["codes"]
            self.phase += 1

    m.fit_dataset(
        ds,
        training.TrainConfig(epochs=1, batch_size=16, lr=0.01, lr_decay_steps=None, verbose=0),
        callbacks=[Spy()],
    )
    codes, semantic, phase = seen[2]
    assert phase == "labnet"
    # h^l = sign(y^v): the ImgNet codes of the training images, not LabNet's own
    np.testing.assert_array_equal(codes, np.where(seen["imgnet_logits"] >= 0, 1.0, -1.0))
    np.testing.assert_allclose(semantic, seen["imgnet_semantic"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(codes, seen["labnet_codes"], atol=1e-3)
    # round 1's LabNet phase starts from LabNet's own table
    assert seen[0][2] == "labnet" and not np.all(np.abs(seen[0][0]) == 1.0)

    # the default: LabNet's table always comes from LabNet
    m = _tiny(ds, rounds=2, labnet_epochs=1, imgnet_epochs=1)
    seen.clear()
    m.fit_dataset(
        ds,
        training.TrainConfig(epochs=1, batch_size=16, lr=0.01, lr_decay_steps=None, verbose=0),
        callbacks=[Spy()],
    )
    assert not np.all(np.abs(seen[2][0]) == 1.0)


def test_n_h_counts_the_training_labels_and_authors_evaluation(digits_multi):
    ds = digits_multi
    m = _tiny(ds, evaluation="authors")
    train = ds.train.subset(np.arange(6))  # at most 6 distinct label sets
    small = dataclasses.replace(ds, train=train)
    q, db = m.encode(ds.query), m.encode(ds.database)
    out = m.extra_metrics(small, q, db)
    assert out["n_h_set"] == "training labels"
    assert out["n_h"] == metrics.distinct_codes(m.encode_labels(train.labels)) <= 6
    assert (
        out["n_h_database"]
        == metrics.distinct_codes(m.encode_labels(ds.database.labels))
        > out["n_h"]
    )
    # evaluate.py: the query images against the training AND retrieval images, whole ranking
    expected = metrics.mean_average_precision(
        q,
        np.concatenate([m.encode(train), db]),
        ds.query.labels,
        np.concatenate([train.labels, ds.database.labels]),
    )
    assert out["map_i"] == pytest.approx(expected)
    lab_q, lab_db = m.encode_labels(ds.query.labels), m.encode_labels(ds.database.labels)
    assert out["map_l"] == pytest.approx(
        metrics.mean_average_precision(lab_q, lab_db, ds.query.labels, ds.database.labels)
    )
    m.evaluation = "protocol"
    out = m.extra_metrics(small, q, db)
    assert out["map_i"] == pytest.approx(
        metrics.mean_average_precision(
            q, db, ds.query.labels, ds.database.labels, top_k=ds.protocol.map_depth
        )
    )


def test_paper_preset_is_the_released_configuration():
    spec = presets.spec("dseh", "nuswide21", 32, preset="paper", paper="dseh")
    hp, cfg = spec.hparams, spec.config
    assert (hp["optimizer"], hp["clip_value"], hp["imgnet_clip_value"]) == ("adam", 1.0, None)
    assert (hp["loss_scale"], hp["code_logit_scale"], hp["code_target"], hp["beta"]) == (
        "authors",
        10.0,
        0.999,
        0.01,
    )
    assert (hp["semantic_activation"], hp["hash_input"], hp["labnet_hidden"], hp["labnet_lrn"]) == (
        "relu",
        "pre_activation",
        2048,
        True,
    )
    assert hp["labnet_epochs"] == [30, 20, 10] and hp["imgnet_epochs"] == 40
    assert (hp["positive_similarity"], hp["imgnet_similarity"]) == (0.999, 0.999)
    assert (hp["joint_table"], hp["evaluation"]) == ("imgnet", "authors")
    assert cfg.weight_decay == 0.0 and cfg.lr * hp["lr_multiplier"] == pytest.approx(1e-4)
    assert hp["labnet_lr"] == 1e-3 and hp["lr_decay_epochs"] == 10
    imnet = presets.spec("dseh", "imagenet100", 32, preset="paper", paper="dseh")
    assert (
        imnet.hparams["gamma"],
        imnet.hparams["labnet_semantic_weight"],
        imnet.hparams["imgnet_clip_value"],
        imnet.hparams["lr_multiplier"],
        imnet.hparams["positive_similarity"],
    ) == (0.1, 0.0, 1.0, 1.0, 5.0)
    assert imnet.hparams["labnet_epochs"] == [4, 3, 2]
    assert imnet.dataset_options == {"train_per_class": 100}  # the paper's 100 images per class
    assert presets.spec(
        "hashnet", "imagenet100", 32, preset="paper", paper="dseh"
    ).dataset_options == {"train_per_class": 100}
    coco = presets.spec("dseh", "coco", 32, preset="paper", paper="dseh").hparams
    assert coco["positive_similarity"] == 0.8 and coco["labnet_epochs"] == [40, 30, 20]
    assert (
        presets.spec("dseh-a", "coco", 32, preset="paper", paper="dseh").hparams["labnet_epochs"]
        == 40
    )
    # the paper's text, by name
    text = presets.spec(
        "dseh",
        "nuswide21",
        32,
        preset="paper",
        paper="dseh",
        hparams={"dseh_setting": "paper_text"},
    )
    assert (
        "optimizer" not in text.hparams
        and text.hparams["beta"] == 0.005
        and text.config.weight_decay == 5e-4
    )
    # any method may carry it (a table script passes it to all); only the DSEH family reads it
    assert (
        "dseh_setting"
        not in presets.spec(
            "hashnet",
            "nuswide21",
            32,
            preset="paper",
            paper="dseh",
            hparams={"dseh_setting": "paper_text"},
        ).hparams
    )
    with pytest.raises(ValueError, match="DSEH setting"):
        presets.spec(
            "dseh", "nuswide21", 32, preset="paper", paper="dseh", hparams={"dseh_setting": "x"}
        )


def test_authors_configuration_builds_trains_and_round_trips(digits_multi, tmp_path):
    ds = _small(digits_multi, 32)
    _, hp = presets.dseh_paper("dseh", "coco")
    hp = {
        k: v for k, v in hp.items() if k not in ("backbone", "labnet_hidden", "labnet_batch_size")
    }
    hp.update(labnet_epochs=[1, 1, 1], imgnet_epochs=1, augment=False)
    m = _tiny(ds, **hp)
    m.fit_dataset(
        ds,
        training.TrainConfig(
            epochs=1, batch_size=16, lr=1e-4, weight_decay=0.0, lr_decay_steps=None, verbose=0
        ),
    )
    path = str(tmp_path / "m.keras")
    m.save(path)
    back = methods.load(path)
    assert (
        back.labnet_epochs == (1, 1, 1)
        and back.loss_scale == "authors"
        and back.hash_input == "pre_activation"
    )
    np.testing.assert_array_equal(back.encode(ds.query), m.encode(ds.query))


def test_bad_authors_settings_are_rejected(digits_multi):
    for kw, match in (
        (dict(loss_scale="sum"), "loss_scale"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(code_target=1.5), "code_target"),
        (dict(labnet_epochs=[1, 2]), "one count per round"),
        (dict(joint_table="x"), "joint_table"),
        (dict(clip_value=0.0), "clip_value"),
        (dict(semantic_activation="sigmoid"), "semantic_activation"),
    ):
        with pytest.raises(ValueError, match=match):
            _tiny(digits_multi, **kw)
