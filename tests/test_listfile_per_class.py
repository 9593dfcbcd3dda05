"""ImageNet-100 with the DSEH paper's 100 training images per class drawn from given
(HashNet) lists that hold more: ``train_per_class`` with given lists."""

import os

import numpy as np
import pytest
from test_data_loaders import fake_rows, materialise, write_list

from deephash import data
from deephash.data.listfile import subsample_per_class


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))


def test_given_lists_keep_a_seeded_train_per_class(tmp_path):
    root = str(tmp_path)
    db = fake_rows(300, 100, 1, False)
    query = fake_rows(100, 100, 2, False)
    train = db[:300]  # 3 per class, as HashNet's lists hold 130 of each class
    materialise(root, db + query)
    write_list(os.path.join(root, "database.txt"), db)
    write_list(os.path.join(root, "test.txt"), query)
    write_list(os.path.join(root, "train.txt"), train)
    full = data.load("imagenet100", root=root)
    two = data.load("imagenet100", root=root, train_per_class=2, seed=1)
    assert (len(full.train), len(two.train)) == (300, 200)
    assert np.bincount(two.train.class_ids, minlength=100).tolist() == [2] * 100
    assert np.isin(two.train.indices, full.train.indices).all()
    assert len(two.database) == len(full.database) and two.checksum != full.checksum
    assert os.path.exists(
        tmp_path / "deephash_splits" / "imagenet100" / "given-train2pc-seed1" / "split.json"
    )
    again = data.load("imagenet100", root=root, train_per_class=2, seed=1)
    np.testing.assert_array_equal(again.train.indices, two.train.indices)
    other = data.load("imagenet100", root=root, train_per_class=2, seed=2)
    assert not np.array_equal(other.train.indices, two.train.indices)
    with pytest.raises(ValueError, match="fewer than train_per_class=4"):
        data.load("imagenet100", root=root, train_per_class=4)


def test_subsample_per_class_refuses_multilabel_items():
    labels = np.array([[1, 1], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="single-label"):
        subsample_per_class(np.arange(3), labels, 1, 0, "x")
    out = subsample_per_class(np.arange(1, 3), labels, 1, 0, "x")
    assert out.tolist() == [1, 2]
