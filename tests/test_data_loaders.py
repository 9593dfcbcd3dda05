"""Loaders on small fake data in the exact on-disk formats: tfds mock data for CIFAR-10,
list files with real JPEG files for NUS-WIDE-21, ImageNet-100 and MS-COCO."""

import os

import numpy as np
import pytest
from PIL import Image

from deephash import data


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))


def write_jpeg(path, seed, size=(12, 10)):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path, quality=95)


def write_list(path, rows):
    with open(path, "w") as f:
        for rel, vec in rows:
            f.write(rel + " " + " ".join(str(int(v)) for v in vec) + "\n")


def fake_rows(n, c, seed, multilabel, prefix="images"):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if multilabel:
            vec = (rng.random(c) < 0.25).astype(int)
            vec[i % c] = 1
        else:
            vec = np.eye(c, dtype=int)[i % c]
        rows.append((f"{prefix}/img_{seed}_{i:04d}.jpg", vec))
    return rows


def materialise(root, rows):
    for i, (rel, _) in enumerate(rows):
        write_jpeg(os.path.join(root, rel), i)


# --------------------------------------------------------------------------- CIFAR-10 (tfds)
def test_cifar10_through_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    root = tmp_path / "tfds"
    root.mkdir()
    with tfds.testing.mock_data(num_examples=300):
        ds = data.load("cifar10", root=str(root), seed=0, query_per_class=2, train_per_class=3)
        again = data.load("cifar10", root=str(root), seed=0, query_per_class=2, train_per_class=3)
    assert ds.image_shape == (32, 32, 3) and ds.protocol.class_names[0] == "airplane"
    assert len(ds.query) == 20 and len(ds.train) == 30 and len(ds.query) + len(ds.database) == 300
    assert np.bincount(ds.query.class_ids, minlength=10).tolist() == [2] * 10
    assert not np.intersect1d(ds.query.indices, ds.train.indices).size
    assert ds.query.images.dtype == np.float32 and ds.query.images.max() <= 255
    assert os.path.exists(root / "deephash_splits" / "cifar10" / "seed0" / "split.json")
    assert again.checksum == ds.checksum


def test_cifar10_missing_or_unprepared_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load("cifar10", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="cifar10"):
        data.load("cifar10", root=str(tmp_path))


# --------------------------------------------------------------------------- list-file sets
def test_imagenet100_given_lists(tmp_path):
    root = str(tmp_path)
    db = fake_rows(300, 100, 1, False)
    query = fake_rows(100, 100, 2, False)
    train = db[:130]  # HashNet lists: training images are database images
    materialise(root, db + query)
    write_list(os.path.join(root, "database.txt"), db)
    write_list(os.path.join(root, "test.txt"), query)
    write_list(os.path.join(root, "train.txt"), train)
    ds = data.load("imagenet100", root=root)
    assert (len(ds.query), len(ds.train), len(ds.database)) == (100, 130, 300)
    assert ds.protocol.map_depth == 1000 and not ds.protocol.multilabel
    assert ds.query.paths[0] == os.path.join(root, query[0][0]) and ds.query.images is None
    assert ds.train.class_ids.tolist() == [i % 100 for i in range(130)]
    assert np.isin(ds.train.indices, ds.database.indices).all()
    assert os.path.exists(tmp_path / "deephash_splits" / "imagenet100" / "given" / "split.json")
    assert data.load("imagenet100", root=root).checksum == ds.checksum


def test_given_lists_with_a_query_in_training_are_rejected(tmp_path):
    root = str(tmp_path)
    db, query = fake_rows(20, 80, 1, True), fake_rows(5, 80, 2, True)
    write_list(os.path.join(root, "database.txt"), db)
    write_list(os.path.join(root, "test.txt"), query)
    write_list(os.path.join(root, "train.txt"), db[:5] + query[:1])
    with pytest.raises(ValueError, match="query items are also in training"):
        data.load("coco", root=root, check_files=False)


def test_coco_seeded_split_from_a_full_list(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(60, 80, 3, True)
    rows.append(("images/unlabelled.jpg", np.zeros(80, int)))  # dropped: no label
    materialise(root, rows)
    write_list(os.path.join(root, "all.txt"), rows)
    ds = data.load("coco", root=root, seed=5, num_query=10, num_train=20)
    assert (len(ds.query), len(ds.train), len(ds.database)) == (10, 20, 50)
    assert ds.protocol.multilabel and ds.protocol.map_depth == 5000 and ds.train.class_ids is None
    assert not np.intersect1d(ds.query.indices, ds.train.indices).size
    assert os.path.join(root, "images/unlabelled.jpg") not in set(ds.database.paths)
    assert os.path.exists(tmp_path / "deephash_splits" / "coco" / "seed5" / "query.txt")
    assert data.load("coco", root=root, seed=6, num_query=10, num_train=20).checksum != ds.checksum


def test_nuswide_from_81_labels_keeps_the_21_most_frequent(tmp_path):
    root = str(tmp_path)
    rng = np.random.default_rng(0)
    frequent = rng.permutation(81)[:21]
    rows = []
    for i in range(120):
        vec = np.zeros(81, int)
        vec[frequent[i % 21]] = 1
        vec[frequent[(i * 7) % 21]] = 1
        if i % 10 == 0:
            vec[[c for c in range(81) if c not in frequent][i % 60]] = 1  # a rare label
        rows.append((f"img/{i}.jpg", vec))
    rows.append(
        ("img/rare_only.jpg", np.eye(81, dtype=int)[[c for c in range(81) if c not in frequent][0]])
    )
    write_list(os.path.join(root, "all.txt"), rows)
    ds = data.load("nuswide21", root=root, query_per_class=1, train_per_class=2, check_files=False)
    assert ds.protocol.num_classes == 21 and ds.database.labels.shape[1] == 21
    total = len(ds.query) + len(ds.database)
    assert total == 120  # the image with only a rare label is gone
    assert len(ds.query) == 21 and len(ds.train) == 42
    full = np.array([r[1] for r in rows[:120]])
    assert np.array_equal(
        ds.database.labels.sum(0) + ds.query.labels.sum(0), full[:, np.sort(frequent)].sum(0)
    )


def test_missing_root_and_missing_list_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load("nuswide21", root=str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="pass root"):
        data.load(
            "nuswide21"
        )  # coco/imagenet100 without root come from tfds (tests/test_tfds_sources.py)
    with pytest.raises(FileNotFoundError, match="all.txt"):
        data.load("nuswide21", root=str(tmp_path))
    write_list(str(tmp_path / "test.txt"), fake_rows(3, 21, 0, True))
    write_list(str(tmp_path / "database.txt"), fake_rows(3, 21, 1, True))
    with pytest.raises(FileNotFoundError, match="train.txt"):
        data.load("nuswide21", root=str(tmp_path))


def test_missing_image_names_the_file_and_its_list(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(30, 80, 1, True)
    materialise(root, rows)
    os.remove(os.path.join(root, rows[7][0]))
    write_list(os.path.join(root, "all.txt"), rows)
    with pytest.raises(FileNotFoundError, match=r"img_1_0007\.jpg.*all\.txt, line 8"):
        data.load("coco", root=root, num_query=5, num_train=10)


def test_label_vector_of_wrong_length_names_file_and_line(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(10, 100, 1, False)
    rows[4] = (rows[4][0], np.zeros(99, int))
    write_list(os.path.join(root, "all.txt"), rows)
    with pytest.raises(
        ValueError, match=r"all\.txt, line 5: label vector has 99 entries, expected 100"
    ):
        data.load("imagenet100", root=root)
    write_list(os.path.join(root, "all.txt"), [("a.jpg", np.zeros(20, int))])
    with pytest.raises(ValueError, match=r"line 1: label vector has 20 entries, expected 21 or 81"):
        data.load("nuswide21", root=root)


def corrupt_set(root):
    rows = fake_rows(40, 80, 1, True)
    materialise(root, rows)
    bad = os.path.join(root, rows[3][0])
    with open(bad, "rb") as f:
        head = f.read(40)
    with open(bad, "wb") as f:
        f.write(head)  # truncated JPEG
    write_list(os.path.join(root, "all.txt"), rows)
    return bad


def test_corrupt_jpeg_is_reported_up_front_when_verifying(tmp_path):
    bad = corrupt_set(str(tmp_path))
    with pytest.raises(ValueError, match=os.path.basename(bad)):
        data.load("coco", root=str(tmp_path), num_query=5, num_train=10, verify_images=True)
    data.load(
        "coco", root=str(tmp_path), num_query=5, num_train=10
    )  # not decoded without verify_images


def test_corrupt_jpeg_in_the_pipeline_raises_naming_the_file_or_is_skipped(tmp_path):
    import tensorflow as tf

    bad = corrupt_set(str(tmp_path))
    ds = data.load("coco", root=str(tmp_path), num_query=5, num_train=10)
    split = data.Split(  # every image of the set, the corrupt one included
        labels=np.concatenate([ds.query.labels, ds.database.labels]),
        indices=np.concatenate([ds.query.indices, ds.database.indices]),
        paths=np.concatenate([ds.query.paths, ds.database.paths]),
    )
    with pytest.raises(tf.errors.OpError, match=os.path.basename(bad)):
        for _ in data.image_dataset(split, 8, image_size=(8, 8)):
            pass
    batches = list(
        data.labeled_dataset(split, 8, shuffle=False, on_corrupt="skip", image_size=(8, 8))
    )
    assert sum(int(x.shape[0]) for x, _ in batches) == len(split) - 1
    assert bad in data.skipped_files()
    (a, p, n), (ya, yp, yn) = next(
        iter(data.triplet_dataset(split, 64, on_corrupt="skip", image_size=(8, 8)))
    )
    assert a.shape == (64, 8, 8, 3)
    assert ((ya.numpy() * yp.numpy()).sum(1) > 0).all() and (
        (ya.numpy() * yn.numpy()).sum(1) == 0
    ).all()


def test_jpeg_decoding_round_trip(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(12, 100, 1, False)
    for i, (rel, _) in enumerate(rows):
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        Image.fromarray(np.full((6, 9, 3), 20 * i, np.uint8)).save(
            os.path.join(root, rel), quality=100
        )
    write_list(os.path.join(root, "all.txt"), rows)
    ds = data.load(
        "imagenet100",
        root=root,
        query_per_class=None,
        num_query=2,
        train_per_class=None,
        num_train=4,
        verify_images=True,
    )
    images = np.concatenate(
        [b.numpy() for b in data.image_dataset(ds.database, 4, image_size=(6, 9))]
    )
    expected = np.array(
        [20.0 * int(os.path.basename(p).split("_")[-1][:4]) for p in ds.database.paths]
    )
    assert images.shape == (10, 6, 9, 3)
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), expected, atol=2.0)


def test_file_triplets_are_resumable_and_distribute(tmp_path):
    import tensorflow as tf

    root = str(tmp_path)
    rows = fake_rows(40, 80, 4, True)
    materialise(root, rows)
    write_list(os.path.join(root, "all.txt"), rows)
    ds = data.load("coco", root=root, num_query=4, num_train=30)
    pre = data.for_backbone("cnn_f", input_shape=(16, 16, 3))
    full = list(data.triplet_dataset(ds.train, 8, seed=2, preprocess=pre, augment=True).take(3))
    resumed = next(
        iter(data.triplet_dataset(ds.train, 8, seed=2, preprocess=pre, augment=True, start_step=2))
    )
    for u, v in zip(tf.nest.flatten(full[2]), tf.nest.flatten(resumed)):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    (a, _, _), (ya, yp, yn) = full[0]
    assert a.shape == (8, 16, 16, 3)
    assert ((ya.numpy() * yp.numpy()).sum(1) > 0).all() and (
        (ya.numpy() * yn.numpy()).sum(1) == 0
    ).all()
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    )
    dist = next(
        iter(
            strategy.experimental_distribute_dataset(
                data.triplet_dataset(ds.train, 8, seed=2, preprocess=pre, augment=True)
            )
        )
    )
    parts = strategy.experimental_local_results(dist[1][0])
    assert [p.shape[0] for p in parts] == [4, 4]
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]), ya.numpy())


# ------------------------------------------------------------------ aliases, duplicates, spaces
def _given_set(root, query_spelling):
    """ImageNet-100 given lists whose query list names database image 3 as ``query_spelling``."""
    db, query = fake_rows(200, 100, 1, False), fake_rows(100, 100, 2, False)
    materialise(root, db + query)
    query[0] = (query_spelling, db[3][1])
    write_list(os.path.join(root, "database.txt"), db)
    write_list(os.path.join(root, "test.txt"), query)
    write_list(os.path.join(root, "train.txt"), db[:130])
    return db


@pytest.mark.parametrize(
    "alias", ["./images/img_1_0003.jpg", "images/../images/img_1_0003.jpg", "ABS"]
)
def test_a_query_aliasing_a_database_image_is_rejected(tmp_path, alias):
    root = str(tmp_path)
    if alias == "ABS":
        alias = os.path.join(root, "images", "img_1_0003.jpg")
    _given_set(root, alias)
    with pytest.raises(ValueError, match="query items are also in (training|the database)"):
        data.load("imagenet100", root=root)


def test_a_query_linked_to_a_database_image_is_rejected(tmp_path):
    root = str(tmp_path)
    db = _given_set(root, "links/q.jpg")
    os.makedirs(os.path.join(root, "links"))
    os.symlink(os.path.join(root, db[3][0]), os.path.join(root, "links", "q.jpg"))
    with pytest.raises(ValueError, match="query items are also in"):
        data.load("imagenet100", root=root)


def test_a_query_copied_from_a_database_image_is_rejected_when_verifying(tmp_path):
    import shutil

    root = str(tmp_path)
    db = _given_set(root, "copies/q.jpg")
    os.makedirs(os.path.join(root, "copies"))
    shutil.copy(os.path.join(root, db[3][0]), os.path.join(root, "copies", "q.jpg"))
    with pytest.raises(ValueError, match="same content as .*img_1_0003.jpg"):
        data.load("imagenet100", root=root, verify_images=True)


def test_duplicate_lines_in_a_full_list_are_rejected(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(60, 80, 0, True)
    rows.append(("./" + rows[7][0], rows[7][1]))  # the same file again, spelled differently
    write_list(os.path.join(root, "all.txt"), rows)
    with pytest.raises(ValueError, match=r"all.txt, line 61: .* is the same file as .* on line 8"):
        data.load("coco", root=root, num_query=5, num_train=10, check_files=False)


def test_a_path_with_a_space_is_named_in_the_error(tmp_path):
    root = str(tmp_path)
    rows = fake_rows(10, 80, 0, True)
    rows[2] = ("images/my holiday.jpg", rows[2][1])
    write_list(os.path.join(root, "all.txt"), rows)
    with pytest.raises(
        ValueError, match=r"line 3: the image path 'images/my holiday.jpg' contains whitespace"
    ):
        data.load("coco", root=root, num_query=5, num_train=3, check_files=False)
    rows[2] = ("images/x.jpg", np.r_[rows[2][1][:-1], 2])  # a bad label value keeps its own message
    write_list(os.path.join(root, "all.txt"), rows)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        data.load("coco", root=root, num_query=5, num_train=3, check_files=False)


def test_root_of_an_embedded_set_is_never_created(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match="typo"):
        data.load("digits", root=str(missing))
    assert not missing.exists()
