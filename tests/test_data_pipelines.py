"""tf.data pipelines: triplet validity, stateless resumable sampling, distribution, and
preprocessing per backbone."""

import numpy as np
import pytest
import tensorflow as tf

from deephash import data
from deephash.data.dataset import Split


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return data.load("digits", root=str(tmp_path_factory.mktemp("digits")))


@pytest.fixture(scope="module")
def digits_multi(tmp_path_factory):
    return data.load("digits_multi", root=str(tmp_path_factory.mktemp("digits_multi")))


def _check_triplets(split, batches):
    n = 0
    for (a, p, q), (ya, yp, yn) in batches:
        ya, yp, yn = ya.numpy(), yp.numpy(), yn.numpy()
        assert ((ya * yp).sum(1) > 0).all(), "positive shares no label with the anchor"
        assert ((ya * yn).sum(1) == 0).all(), "negative shares a label with the anchor"
        n += len(ya)
    return n


def test_single_label_triplets_valid_over_many_batches_and_images_match_labels(digits):
    split = digits.train
    ds = data.triplet_dataset(split, 32, seed=0)
    batches = list(ds.take(40))
    assert _check_triplets(split, batches) == 1280
    # images and labels travel together: look every anchor image up in the split
    flat = split.images.reshape(len(split), -1)
    (a, p, q), (ya, yp, yn) = batches[0]
    for img, y in ((a, ya), (p, yp), (q, yn)):
        pos = [int(np.flatnonzero((flat == im.reshape(-1)).all(1))[0]) for im in img.numpy()]
        np.testing.assert_array_equal(split.labels[pos], y.numpy())
    # positives are not the anchor itself
    assert not np.array_equal(a.numpy(), p.numpy())
    assert a.shape == (32, 8, 8, 1) and a.dtype == tf.float32 and ya.shape == (32, 10)


def test_multilabel_triplets_valid_over_many_batches(digits_multi):
    batches = list(data.triplet_dataset(digits_multi.train, 64, seed=3).take(30))
    assert _check_triplets(digits_multi.train, batches) == 1920


def test_anchors_without_positive_or_negative_are_counted_and_never_drawn():
    def split_of(rows):
        labels = np.array(rows, np.uint8)
        return Split(
            labels=labels,
            indices=np.arange(len(rows)),
            images=np.arange(len(rows), dtype=np.float32).reshape(-1, 1, 1, 1),
        )

    # item 4 is alone with its label (no positive)
    lonely = split_of([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert data.triplet_statistics(lonely) == {
        "num_items": 5,
        "num_valid_anchors": 4,
        "num_without_positive": 1,
        "num_without_negative": 0,
        "num_invalid_anchors": 1,
    }
    # item 4 shares a label with everything (no negative)
    universal = split_of([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]])
    assert data.triplet_statistics(universal) == {
        "num_items": 5,
        "num_valid_anchors": 4,
        "num_without_positive": 0,
        "num_without_negative": 1,
        "num_invalid_anchors": 1,
    }
    for split in (lonely, universal):
        anchors = set()
        for (a, p, q), (ya, yp, yn) in data.triplet_dataset(split, 16, seed=1).take(20):
            anchors |= set(a.numpy().reshape(-1).astype(int).tolist())
            assert ((ya * yp).numpy().sum(1) > 0).all() and ((ya * yn).numpy().sum(1) == 0).all()
        assert anchors == {0, 1, 2, 3}
    single = Split(
        labels=np.eye(2, dtype=np.uint8)[[0, 0, 1]],
        indices=np.arange(3),
        images=np.zeros((3, 1, 1, 1)),
        class_ids=[0, 0, 1],
    )
    assert data.triplet_statistics(single)["num_without_positive"] == 1
    with pytest.raises(ValueError, match="can anchor a triplet"):
        data.triplet_dataset(
            Split(
                labels=np.ones((3, 1), np.uint8),
                indices=np.arange(3),
                images=np.zeros((3, 1, 1, 1)),
            ),
            4,
        )


def test_single_label_sampling_is_uniform_over_positives_and_negatives():
    class_ids = np.array([0, 0, 0, 1, 1, 2])
    split = Split(
        labels=np.eye(3, dtype=np.uint8)[class_ids],
        indices=np.arange(6),
        images=np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1),
        class_ids=class_ids,
    )
    sampler = data.TripletSampler(split, 4000, seed=0)
    a, p, q = (t.numpy() for t in sampler.sample(tf.constant(0, tf.int64)))
    mask = a == 0
    np.testing.assert_allclose(
        np.bincount(p[mask], minlength=6)[[1, 2]] / mask.sum(), [0.5, 0.5], atol=0.08
    )
    np.testing.assert_allclose(
        np.bincount(q[mask], minlength=6)[[3, 4, 5]] / mask.sum(), [1 / 3] * 3, atol=0.08
    )
    assert set(np.unique(a)) == {0, 1, 2, 3, 4}  # item 5 has no positive


def test_batches_depend_only_on_seed_and_step_so_resuming_rebuilds_them(digits_multi):
    split = digits_multi.train
    pre = data.for_backbone("small_cnn")
    full = list(data.triplet_dataset(split, 16, seed=7, preprocess=pre, augment=True).take(6))
    resumed = list(
        data.triplet_dataset(split, 16, seed=7, preprocess=pre, augment=True, start_step=4).take(2)
    )
    for x, y in zip(full[4:], resumed):
        for u, v in zip(tf.nest.flatten(x), tf.nest.flatten(y)):
            np.testing.assert_array_equal(u.numpy(), v.numpy())
    other = next(iter(data.triplet_dataset(split, 16, seed=8, preprocess=pre, augment=True)))
    assert not np.array_equal(other[1][0].numpy(), full[0][1][0].numpy())


def test_triplets_distribute_over_two_replicas(digits):
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py should provide two logical CPUs"
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    ds = data.triplet_dataset(digits.train, 8, seed=2)
    reference = next(iter(ds))
    dist = iter(strategy.experimental_distribute_dataset(ds))
    batch = next(dist)
    parts = strategy.experimental_local_results(batch[0][0])
    assert [p.shape[0] for p in parts] == [4, 4]
    np.testing.assert_array_equal(
        np.concatenate([p.numpy() for p in parts]), reference[0][0].numpy()
    )
    labels = strategy.experimental_local_results(batch[1][2])
    np.testing.assert_array_equal(
        np.concatenate([p.numpy() for p in labels]), reference[1][2].numpy()
    )


def _positions(split, batches):
    """Positions in ``split`` of the images of each batch (digits images are distinct)."""
    flat = split.images.reshape(len(split), -1)
    lookup = {row.tobytes(): i for i, row in enumerate(flat)}
    assert len(lookup) == len(split)
    return [np.array([lookup[im.reshape(-1).tobytes()] for im in x.numpy()]) for x, _ in batches]


def test_labeled_dataset_covers_each_item_once_per_epoch_with_a_fresh_permutation(digits):
    split = digits.train  # 500 items, batch 64: 7 full batches and one of 52 per epoch
    batches = list(data.labeled_dataset(split, 64, seed=1, repeat=True).take(3 * 8))
    assert [int(x.shape[0]) for x, _ in batches] == ([64] * 7 + [52]) * 3
    pos = _positions(split, batches)
    epochs = [np.concatenate(pos[8 * e : 8 * e + 8]) for e in range(3)]
    for e, order in enumerate(epochs):
        np.testing.assert_array_equal(np.sort(order), np.arange(500))
        # the documented definition: epoch e is epoch_permutation(n, seed, e) cut into batches
        np.testing.assert_array_equal(order, data.pipelines.epoch_permutation(500, 1, e).numpy())
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    for (_, y), p in zip(batches, pos):  # labels travel with their images
        np.testing.assert_array_equal(y.numpy(), split.labels[p])
    # seeded: the same seed gives the same stream, another seed another one; one epoch without
    # repeat
    again = list(data.labeled_dataset(split, 64, seed=1))
    assert len(again) == 8
    np.testing.assert_array_equal(np.concatenate(_positions(split, again)), epochs[0])
    other = np.concatenate(_positions(split, data.labeled_dataset(split, 64, seed=2)))
    assert not np.array_equal(other, epochs[0])


def test_labeled_dataset_in_order_and_drop_remainder_leave_out_the_tail_of_each_epoch(digits):
    split = digits.train
    ordered = list(data.labeled_dataset(split, 100, shuffle=False, drop_remainder=True))
    assert len(ordered) == 5
    np.testing.assert_array_equal(ordered[0][0].numpy(), split.images[:100])
    np.testing.assert_array_equal(ordered[4][1].numpy(), split.labels[400:500])
    tail = list(data.labeled_dataset(split, 128, shuffle=False, repeat=True).take(5))
    assert [int(x.shape[0]) for x, _ in tail] == [128, 128, 128, 116, 128]
    np.testing.assert_array_equal(tail[4][0].numpy(), split.images[:128])  # epoch 1 starts afresh
    dropped = list(
        data.labeled_dataset(split, 128, seed=3, repeat=True, drop_remainder=True).take(6)
    )
    assert [int(x.shape[0]) for x, _ in dropped] == [128] * 6
    pos = _positions(split, dropped)
    for e in range(2):  # 3 steps per epoch: 384 distinct items, the permutation's last 116 left out
        order = np.concatenate(pos[3 * e : 3 * e + 3])
        np.testing.assert_array_equal(
            order, data.pipelines.epoch_permutation(500, 3, e).numpy()[:384]
        )
        assert len(np.unique(order)) == 384
    assert data.pipelines.labeled_steps_per_epoch(500, 128, drop_remainder=True) == 3
    assert data.pipelines.labeled_steps_per_epoch(500, 128) == 4
    small = split.subset(np.arange(10))
    with pytest.raises(ValueError, match="drop_remainder"):
        data.labeled_dataset(small, 16, repeat=True, drop_remainder=True)
    with pytest.raises(ValueError, match="start_step"):
        data.labeled_dataset(small, 4, start_step=-1)


def test_labeled_batches_depend_only_on_seed_and_step_so_resuming_rebuilds_them(digits_multi):
    split = digits_multi.train  # 1000 items, batch 96: 11 steps per epoch (the last of 40 items)
    pre = data.for_backbone("small_cnn")
    full = list(
        data.labeled_dataset(split, 96, seed=7, repeat=True, preprocess=pre, augment=True).take(26)
    )
    for start in (5, 11, 20):  # mid-epoch, an epoch boundary, in the third epoch
        resumed = list(
            data.labeled_dataset(
                split, 96, seed=7, repeat=True, preprocess=pre, augment=True, start_step=start
            ).take(26 - start)
        )
        assert len(resumed) == 26 - start
        for x, y in zip(full[start:], resumed):
            for u, v in zip(tf.nest.flatten(x), tf.nest.flatten(y)):
                np.testing.assert_array_equal(u.numpy(), v.numpy())
    # without repeat: the rest of epoch 0
    rest = list(data.labeled_dataset(split, 96, seed=7, preprocess=pre, augment=True, start_step=8))
    assert len(rest) == 3
    np.testing.assert_array_equal(rest[2][0].numpy(), full[10][0].numpy())
    assert list(data.labeled_dataset(split, 96, seed=7, start_step=11)) == []


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_labeled_global_batches_are_the_same_on_two_mirrored_devices(digits, drop_remainder):
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py should provide two logical CPUs"
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    pre = data.for_backbone("small_cnn")

    def make():
        return data.labeled_dataset(
            digits.train,
            64,
            seed=4,
            repeat=True,
            preprocess=pre,
            augment=True,
            drop_remainder=drop_remainder,
        )

    steps = 3 * data.pipelines.labeled_steps_per_epoch(500, 64, drop_remainder)  # three epochs
    reference = list(make().take(steps))
    dist = iter(strategy.experimental_distribute_dataset(make()))
    for i in range(steps):
        x, y = next(dist)
        for part, ref in ((x, reference[i][0]), (y, reference[i][1])):
            local = strategy.experimental_local_results(part)
            assert len(local) == 2
            np.testing.assert_array_equal(
                np.concatenate([p.numpy() for p in local]), ref.numpy(), err_msg=f"step {i}"
            )


def test_labeled_dataset_from_files_matches_memory_and_skips_unreadable_files(digits, tmp_path):
    from PIL import Image

    images = np.repeat(
        digits.train.images[:21].astype(np.uint8), 3, axis=-1
    )  # (21, 8, 8, 3), exact in uint8
    paths = []
    for i, im in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(im).save(paths[-1])
    labels = digits.train.labels[:21]
    files = Split(labels=labels, indices=np.arange(21), paths=np.array(paths))
    memory = Split(labels=labels, indices=np.arange(21), images=images.astype(np.float32))
    for drop in (False, True):
        kw = dict(seed=5, repeat=True, drop_remainder=drop, start_step=1)
        a = list(data.labeled_dataset(files, 8, image_size=(8, 8), **kw).take(5))
        b = list(data.labeled_dataset(memory, 8, **kw).take(5))
        assert [int(x.shape[0]) for x, _ in a] == ([8, 8, 8, 8, 8] if drop else [8, 5, 8, 8, 5])
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_allclose(xa.numpy(), xb.numpy(), atol=1e-4)
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
    with open(paths[3], "wb") as f:
        f.write(b"not an image")
    epoch = list(data.labeled_dataset(files, 8, seed=5, on_corrupt="skip", image_size=(8, 8)))
    assert sum(int(x.shape[0]) for x, _ in epoch) == 20 and paths[3] in data.skipped_files()
    with pytest.raises(tf.errors.OpError, match="3.png"):
        list(data.labeled_dataset(files, 8, seed=5, image_size=(8, 8)))


def test_image_dataset_keeps_order(digits):
    pre = data.for_backbone("small_cnn")
    out = np.concatenate([b.numpy() for b in data.image_dataset(digits.query, 64, preprocess=pre)])
    np.testing.assert_allclose(out, digits.query.images / 255.0, rtol=1e-6)
    raw = np.concatenate([b.numpy() for b in data.image_dataset(digits.query.images[:70], 32)])
    np.testing.assert_array_equal(raw, digits.query.images[:70])


# --------------------------------------------------------------------------- preprocessing
def test_vgg19_preprocessing_resize_crop_bgr_and_caffe_mean():
    pre = data.for_backbone("vgg19")
    assert pre.input_shape == (224, 224, 3)
    img = np.zeros((2, 32, 32, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 10.0, 20.0, 30.0  # constant R, G, B
    out = pre(img).numpy()
    assert out.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(
        out[0, 100, 100], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-5
    )
    gray = pre(np.full((1, 40, 20, 1), 50.0, np.float32)).numpy()  # gray -> RGB, non-square
    np.testing.assert_allclose(gray[0, 0, 0], [50 - 103.939, 50 - 116.779, 50 - 123.68], rtol=1e-5)


def test_vgg19_centre_crop_at_test_and_random_crop_when_training():
    pre = data.for_backbone("vgg19")
    ramp = np.broadcast_to(
        np.arange(256, dtype=np.float32)[None, None, :, None], (1, 256, 256, 3)
    ).copy()
    test = pre(ramp).numpy()
    np.testing.assert_allclose(test[0, 0, :, 2] + 123.68, np.arange(16, 240), atol=1e-3)
    batch = np.repeat(ramp, 8, axis=0)
    train = pre(batch, training=True, seed=[1, 2]).numpy()[..., 2] + 123.68
    starts = train[:, 0, :].min(axis=1)
    assert (starts >= 0).all() and (starts <= 32).all() and len(set(starts.tolist())) > 1
    # each row is a window of consecutive columns (possibly mirrored)
    diffs = np.abs(np.diff(train[:, 0, :], axis=1))
    np.testing.assert_allclose(diffs, 1.0, atol=1e-3)
    again = pre(batch, training=True, seed=[1, 2]).numpy()[..., 2] + 123.68
    np.testing.assert_array_equal(train, again)


def test_cnn_f_training_flip_mirrors_whole_images_seeded():
    pre = data.for_backbone("cnn_f", mean=np.zeros((224, 224, 3), np.float32))
    rng = np.random.default_rng(3)
    batch = rng.uniform(0, 255, (16, 224, 224, 3)).astype(np.float32)
    out = pre(batch, training=True, seed=[4, 5]).numpy()
    same = [np.array_equal(o, b) for o, b in zip(out, batch)]
    mirrored = [np.array_equal(o, b[:, ::-1, :]) for o, b in zip(out, batch)]
    assert all(s != m for s, m in zip(same, mirrored))  # each image: exactly one of the two
    assert any(same) and any(mirrored)
    np.testing.assert_array_equal(out, pre(batch, training=True, seed=[4, 5]).numpy())
    np.testing.assert_array_equal(pre(batch).numpy(), batch)  # no flip at test time


def test_cnn_f_and_small_cnn_preprocessing():
    avg = np.full((224, 224, 3), 5.0, np.float32)
    pre = data.for_backbone("cnn_f", mean=avg)
    out = pre(np.full((2, 32, 32, 3), 7.0, np.float32)).numpy()
    assert out.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(out, 2.0, atol=1e-4)
    rgb = data.for_backbone("cnn_f")(np.array([[[[10.0, 20.0, 30.0]]]], np.float32)).numpy()
    np.testing.assert_allclose(rgb[0, 0, 0], [10 - 123.68, 20 - 116.779, 30 - 103.939], rtol=1e-5)
    small = data.for_backbone("small_cnn")
    x = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(small(x).numpy(), x / 255.0, rtol=1e-6)
    assert small(x, training=True, seed=[0, 1]).shape == (4, 8, 8, 1)
    with pytest.raises(ValueError, match="unknown backbone"):
        data.for_backbone("resnet")
    with pytest.raises(ValueError, match="mean"):
        data.for_backbone("cnn_f", mean=[1.0, 2.0])
