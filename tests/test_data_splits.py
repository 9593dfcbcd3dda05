"""Protocol splits: counts, leak checks, reproducible index-list files and checksums."""

import hashlib
import json
import os

import numpy as np
import pytest

from deephash import data
from deephash.data import embedded, splits


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_available_names_and_unknown_name():
    assert data.available() == [
        "digits",
        "digits_multi",
        "cifar10",
        "nuswide21",
        "imagenet100",
        "coco",
    ]
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        data.load("mnist")


def test_digits_protocol_counts_and_leak_free(cache):
    ds = data.load("digits", seed=3)
    assert ds.image_shape == (8, 8, 1)
    assert (len(ds.query), len(ds.train), len(ds.database)) == (200, 500, 1597)
    assert np.bincount(ds.query.class_ids, minlength=10).tolist() == [20] * 10
    assert np.bincount(ds.train.class_ids, minlength=10).tolist() == [50] * 10
    assert not np.intersect1d(ds.query.indices, ds.train.indices).size
    assert np.array_equal(
        np.sort(np.concatenate([ds.query.indices, ds.database.indices])), np.arange(1797)
    )
    assert np.isin(ds.train.indices, ds.database.indices).all()
    assert (
        ds.train.images.dtype == np.float32
        and ds.train.images.max() == 255.0
        and ds.train.images.min() == 0.0
    )
    assert ds.train.labels.dtype == np.uint8 and (ds.train.labels.sum(1) == 1).all()
    assert np.array_equal(ds.train.labels.argmax(1), ds.train.class_ids)
    assert not ds.protocol.multilabel and ds.protocol.map_depth is None


def test_split_files_reload_identically_and_checksum_is_over_the_files(cache):
    a = data.load("digits", seed=1)
    directory = cache / "splits" / "digits" / "seed1"
    assert a.split_dir == str(directory)
    raw = b"".join(
        name.encode() + b"\n" + (directory / f"{name}.txt").read_bytes()
        for name in ("query", "train", "database")
    )
    assert a.checksum == hashlib.sha256(raw).hexdigest()
    assert json.loads((directory / "split.json").read_text())["checksum"] == a.checksum
    stamp = os.stat(directory / "train.txt").st_mtime_ns
    b = data.load("digits", seed=1)
    assert os.stat(directory / "train.txt").st_mtime_ns == stamp  # reloaded, not rewritten
    assert b.checksum == a.checksum and np.array_equal(b.train.indices, a.train.indices)
    assert data.load("digits", seed=2).checksum != a.checksum


def test_root_option_puts_split_files_beside_the_data(tmp_path):
    ds = data.load("digits", root=str(tmp_path))
    assert os.path.exists(tmp_path / "deephash_splits" / "digits" / "seed0" / "query.txt")
    assert ds.root == str(tmp_path)


def test_edited_split_file_is_rejected(cache):
    data.load("digits", seed=0)
    path = cache / "splits" / "digits" / "seed0" / "train.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match="checksum"):
        data.load("digits", seed=0)


def test_split_file_that_leaks_queries_into_training_is_rejected(cache):
    ds = data.load("digits", seed=0)
    directory = str(cache / "splits" / "digits" / "seed0")
    with open(os.path.join(directory, "split.json")) as f:
        params = json.load(f)["params"]
    train = ds.train.indices.copy()
    train[0] = ds.query.indices[
        0
    ]  # same class counts would still need checking; the leak must be caught
    splits.write_split(directory, ds.query.indices, train, ds.database.indices, {"params": params})
    with pytest.raises(ValueError, match="query items are also in training"):
        data.load("digits", seed=0)


def test_split_file_for_other_protocol_parameters_is_rejected(cache):
    data.load("digits", seed=0)
    with pytest.raises(ValueError, match="query_per_class"):
        data.load("digits", seed=0, query_per_class=10)


def test_verify_split_checks_database_rule_and_counts():
    labels = np.eye(2, dtype=np.uint8)[[0, 0, 0, 1, 1, 1]]
    splits.verify_split(
        np.array([0, 3]),
        np.array([1, 4]),
        np.array([1, 2, 4, 5]),
        6,
        labels=labels,
        query_per_class=1,
        train_per_class=1,
    )
    with pytest.raises(ValueError, match="every non-query item"):
        splits.verify_split(np.array([0, 3]), np.array([1, 4]), np.array([1, 4]), 6)
    with pytest.raises(ValueError, match="also in the database"):
        splits.verify_split(
            np.array([0, 3]), np.array([1]), np.array([0, 1, 2, 4, 5]), 6, database_rule="given"
        )
    with pytest.raises(ValueError, match="class 0 has 0 query"):
        splits.verify_split(
            np.array([3, 4]),
            np.array([0]),
            np.array([0, 1, 2, 5]),
            6,
            labels=labels,
            query_per_class=1,
        )
    with pytest.raises(ValueError, match="duplicate"):
        splits.verify_split(
            np.array([0, 0]), np.array([1]), np.array([1, 2, 3, 4, 5]), 6, database_rule="given"
        )


def test_protocol_split_multilabel_per_class_draw():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 5)) < 0.3).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    q, t, d = splits.protocol_split(labels, 7, query_per_class=4, train_per_class=10)
    assert len(q) == 20 and len(t) == 50 and len(d) == 380
    assert not np.intersect1d(q, t).size and not np.intersect1d(q, d).size
    assert (labels[q].sum(0) >= 4).all() and (labels[t].sum(0) >= 10).all()
    q2, t2, _ = splits.protocol_split(labels, 7, query_per_class=4, train_per_class=10)
    assert np.array_equal(q, q2) and np.array_equal(t, t2)
    with pytest.raises(ValueError, match="cannot draw 500"):
        splits.protocol_split(labels, 0, query_per_class=500, train_per_class=1)


def test_digits_multi_labels_pairs_and_source_separation(cache):
    ds = data.load("digits_multi", seed=0)
    assert ds.image_shape == (16, 16, 1) and ds.protocol.multilabel
    assert (len(ds.query), len(ds.train), len(ds.database)) == (250, 1000, 2750)
    assert ds.train.class_ids is None
    k = ds.database.labels.sum(1)
    assert k.min() == 1 and k.max() == 3
    y = ds.database.labels.astype(np.float64)
    share = ((y @ y.T) > 0).mean()
    assert 0.25 < share < 0.45  # about a third of random pairs share a label
    images, labels, sources = embedded.make_digits_multi(0)
    assert np.array_equal(images[ds.train.indices], ds.train.images)
    q_src = sources[ds.query.indices]
    t_src = sources[ds.train.indices]
    assert not np.intersect1d(q_src[q_src >= 0], t_src[t_src >= 0]).size
    # every non-blank cell shows a digit of a class in the label set
    cells = (sources >= 0).sum(1)
    assert np.array_equal(cells, labels.sum(1))
    again = data.load("digits_multi", seed=0)
    assert again.checksum == ds.checksum and np.array_equal(again.train.images, ds.train.images)
    assert data.load("digits_multi", seed=1).checksum != ds.checksum


def test_validation_split_is_deterministic_disjoint_and_from_train(cache):
    ds = data.load("digits")
    fit, val = ds.validation_split(0.1, seed=4)
    assert len(val) == 50 and len(fit) == 450
    assert not np.intersect1d(fit.indices, val.indices).size
    assert (
        np.isin(val.indices, ds.train.indices).all()
        and not np.isin(val.indices, ds.query.indices).any()
    )
    assert np.bincount(val.class_ids, minlength=10).tolist() == [5] * 10
    fit2, val2 = ds.validation_split(0.1, seed=4)
    assert np.array_equal(val.indices, val2.indices)
    assert not np.array_equal(ds.validation_split(0.1, seed=5)[1].indices, val.indices)
    with pytest.raises(ValueError):
        ds.validation_split(1.5)


def test_split_subset_and_validation():
    s = data.Split(
        labels=np.eye(3, dtype=np.uint8),
        indices=[5, 6, 7],
        images=np.zeros((3, 2, 2, 1)),
        class_ids=[0, 1, 2],
    )
    sub = s.subset([2, 0])
    assert sub.indices.tolist() == [7, 5] and sub.class_ids.tolist() == [2, 0] and len(sub) == 2
    assert s.subset(np.array([True, False, True])).indices.tolist() == [5, 7]
    with pytest.raises(ValueError, match="exactly one"):
        data.Split(labels=np.eye(3), indices=[0, 1, 2])
    with pytest.raises(ValueError, match="indices has 2"):
        data.Split(labels=np.eye(3), indices=[0, 1], images=np.zeros((3, 2, 2, 1)))
