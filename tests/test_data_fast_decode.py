"""Graph-only decoding of verified image files: the verification manifest, the choice of
decoding path per file, and equality with the Python path."""

import json
import logging
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deephash import data
from deephash.data import images as dimages
from deephash.data.pipelines import decode_plan


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test records its verification manifests in a cache of its own."""
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))


def _age(paths, seconds=60.0):
    """Date files back: verification does not record files modified in the last FRESH_SECONDS."""
    t = time.time() - seconds
    for p in paths:
        os.utime(p, (t, t))


def _write_images(directory, n, seed=0):
    """``n`` random images of different sizes: JPEG (RGB and gray) and PNG (RGB and RGBA)."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 11 + 3 * (i % 5), 13 + 2 * (i % 7)
        kind = i % 4
        if kind == 0:
            im, ext = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "jpg"
        elif kind == 1:
            im, ext = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)), "jpg"
        elif kind == 2:
            im, ext = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "png"
        else:
            im, ext = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8)), "png"
        paths.append(os.path.join(directory, f"{i:03d}.{ext}"))
        im.save(paths[-1])
    _age(paths)
    return paths


def _split(paths):
    n = len(paths)
    labels = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    return data.Split(
        labels=labels, indices=np.arange(n), paths=np.array(paths), class_ids=np.arange(n) % 3
    )


def _images(split, decode, **kw):
    return np.concatenate([b.numpy() for b in data.image_dataset(split, 5, decode=decode, **kw)])


def _flat(batches):
    return [t.numpy() for batch in batches for t in tf.nest.flatten(batch)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.fixture
def verified(tmp_path):
    paths = _write_images(str(tmp_path / "images"), 12)
    assert data.verify_images(paths, progress=False) == []
    return _split(paths)


def test_verified_files_take_the_graph_path_and_give_the_python_path_images_bit_for_bit(verified):
    graph, corrupt = decode_plan(verified.paths)
    assert graph.all() and not corrupt.any()
    assert not decode_plan(verified.paths, "python")[0].any()
    for kw in (
        dict(image_size=(9, 16)),
        dict(preprocess=data.for_backbone("vgg19", input_shape=(14, 14, 3))),
    ):
        python = _images(verified, "python", **kw)
        np.testing.assert_array_equal(_images(verified, "auto", **kw), python)
        np.testing.assert_array_equal(_images(verified, "graph", **kw), python)
    # training streams: the same batches on both paths, and resuming still rebuilds them
    pre = data.for_backbone("cnn_f", input_shape=(12, 12, 3))
    kw = dict(seed=3, preprocess=pre, augment=True)
    python = list(data.triplet_dataset(verified, 4, decode="python", **kw).take(3))
    _assert_same(_flat(data.triplet_dataset(verified, 4, **kw).take(3)), _flat(python))
    _assert_same(
        _flat(data.triplet_dataset(verified, 4, start_step=2, **kw).take(1)), _flat(python[2:])
    )
    kw = dict(seed=1, repeat=True, preprocess=pre, augment=True)
    python = list(data.labeled_dataset(verified, 5, decode="python", **kw).take(4))
    _assert_same(_flat(data.labeled_dataset(verified, 5, **kw).take(4)), _flat(python))
    with pytest.raises(ValueError, match="decode must be one of"):
        data.image_dataset(verified, 4, decode="fast")


def test_auto_decodes_changed_and_new_files_in_python_and_says_why(
    verified, tmp_path, caplog, monkeypatch
):
    paths = list(verified.paths)
    python = _images(verified, "python", image_size=(8, 8))
    os.utime(paths[1])  # touched: same bytes, new time
    with open(paths[2], "rb") as f:
        content = f.read()
    with open(paths[2], "wb") as f:  # rewritten: same bytes, new time
        f.write(content)
    new = _write_images(str(tmp_path / "new"), 1, seed=5)[0]
    split = _split(paths + [new])
    status = dimages.verification_status(split.paths)
    assert status.tolist() == [dimages.VERIFIED, dimages.CHANGED, dimages.CHANGED] + [
        dimages.VERIFIED
    ] * 9 + [dimages.UNVERIFIED]
    graph, _ = decode_plan(split.paths)
    assert np.flatnonzero(~graph).tolist() == [1, 2, 12]
    with caplog.at_level(logging.WARNING, logger="deephash.data.pipelines"):
        mixed = _images(
            split, "auto", image_size=(8, 8)
        )  # graph and Python decoding in one pipeline
    np.testing.assert_array_equal(mixed[:12], python)
    assert (
        "3 of 13 image files in Python" in caplog.text
        and "2 changed since verification" in caplog.text
    )
    # verifying again decodes only what changed or is new, and restores the graph path
    calls = []
    real = dimages.decode_file
    monkeypatch.setattr(
        dimages, "decode_file", lambda p, channels=3: calls.append(p) or real(p, channels)
    )
    _age([paths[1], paths[2], new])
    assert data.verify_images(split.paths, progress=False) == []
    assert sorted(calls) == sorted([paths[1], paths[2], new])
    assert decode_plan(split.paths)[0].all()


def test_the_graph_path_is_really_taken_and_trusts_size_and_time(verified):
    path = verified.paths[0]
    size, mtime = os.path.getsize(path), os.stat(path).st_mtime_ns
    with open(path, "wb") as f:
        f.write(
            b"\0" * size
        )  # garbage of the same size, time restored: the manifest still vouches for it
    os.utime(path, ns=(mtime, mtime))
    with pytest.raises(tf.errors.OpError) as graph_error:
        _images(verified, "auto", image_size=(8, 8))
    assert os.path.basename(path) not in str(graph_error.value)  # TensorFlow's unnamed decode error
    with pytest.raises(tf.errors.OpError, match=os.path.basename(path)):
        _images(verified, "python", image_size=(8, 8))


def test_skip_gives_the_same_batches_on_both_paths_when_verification_found_a_corrupt_file(tmp_path):
    paths = _write_images(str(tmp_path), 12)
    with open(paths[4], "wb") as f:
        f.write(b"not an image")
    _age(paths)
    assert data.verify_images(paths, on_corrupt="skip", progress=False) == [paths[4]]
    split = _split(paths)
    graph, corrupt = decode_plan(split.paths)
    assert np.flatnonzero(corrupt).tolist() == [4] and graph.sum() == 11
    kw = dict(seed=2, on_corrupt="skip", image_size=(8, 8))
    python = list(data.labeled_dataset(split, 5, decode="python", **kw))
    fast = list(data.labeled_dataset(split, 5, **kw))
    assert sum(len(y) for _, y in fast) == 11
    _assert_same(_flat(fast), _flat(python))
    python = list(data.triplet_dataset(split, 6, decode="python", **kw).take(4))
    fast = list(data.triplet_dataset(split, 6, **kw).take(4))
    _assert_same(_flat(fast), _flat(python))
    assert paths[4] in data.skipped_files()
    # "raise": the known-corrupt file is never decoded, yet the error names it
    with pytest.raises(tf.errors.OpError, match=os.path.basename(paths[4])):
        _images(split, "auto", image_size=(8, 8))


def test_a_pipeline_given_its_own_report_keeps_what_it_skipped_there(tmp_path, caplog):
    from deephash.data.pipelines import FileReport

    paths = _write_images(str(tmp_path), 6)
    with open(paths[2], "wb") as f:
        f.write(b"not an image")
    split, report = _split(paths), FileReport()
    kw = dict(shuffle=False, on_corrupt="skip", image_size=(8, 8), decode="python")
    with caplog.at_level(logging.WARNING, logger="deephash.data.pipelines"):
        for _ in range(2):  # the second epoch skips it again, silently
            batches = list(data.labeled_dataset(split, 4, report=report, **kw))
            assert sum(len(y) for _, y in batches) == 5
    assert report.skipped() == [paths[2]] and paths[2] not in data.skipped_files()
    assert caplog.text.count("skipping unreadable image") == 1


def test_graph_decoding_of_an_unverified_corrupt_file_fails_without_the_python_path(tmp_path):
    paths = _write_images(str(tmp_path), 3)
    with open(paths[1], "wb") as f:
        f.write(b"not an image")
    split = _split(paths)
    with pytest.raises(tf.errors.OpError, match=os.path.basename(paths[1])):
        _images(split, "auto", image_size=(8, 8))  # unverified: the Python path names it
    with pytest.raises(tf.errors.OpError):
        _images(split, "graph", image_size=(8, 8))


def test_files_modified_just_before_verification_are_not_recorded(tmp_path):
    paths = _write_images(str(tmp_path), 2)
    os.utime(paths[1])  # modified now: a rewrite in the same clock tick would keep size and time
    assert data.verify_images(paths, progress=False) == []
    assert dimages.verification_status(paths).tolist() == [dimages.VERIFIED, dimages.UNVERIFIED]


def test_an_interrupted_verification_keeps_what_it_checked(tmp_path, monkeypatch):
    paths = _write_images(str(tmp_path), 4)
    real = dimages.decode_file

    def interrupt_at_third(p, channels=3):
        if p == paths[2]:
            raise KeyboardInterrupt
        return real(p, channels)

    monkeypatch.setattr(dimages, "decode_file", interrupt_at_third)
    with pytest.raises(KeyboardInterrupt):
        data.verify_images(paths, progress=False)
    assert (
        dimages.verification_status(paths).tolist()
        == [dimages.VERIFIED] * 2 + [dimages.UNVERIFIED] * 2
    )


def test_manifest_records_size_and_time_and_is_written_atomically(verified, monkeypatch):
    directory = os.path.dirname(verified.paths[0])
    manifest = dimages.manifest_path(directory)
    with open(manifest, encoding="utf-8") as f:
        stored = json.load(f)
    st = os.stat(verified.paths[3])
    assert stored["directory"] == directory and stored["format"] == dimages.MANIFEST_FORMAT
    assert stored["files"][os.path.basename(verified.paths[3])] == [
        st.st_size,
        st.st_mtime_ns,
        True,
    ]
    with open(manifest, "rb") as f:
        before = f.read()

    def crash(*args, **kwargs):
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(
        "deephash.io.os.fsync", crash
    )  # after the new text is written, before the rename
    with pytest.raises(RuntimeError, match="crash"):
        data.verify_images(verified.paths, recheck=True, progress=False)
    with open(manifest, "rb") as f:
        assert f.read() == before  # the old manifest is intact
    assert os.listdir(os.path.dirname(manifest)) == [
        os.path.basename(manifest)
    ]  # no temporary file left


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"format": 1, "files": "x"}', None])
def test_a_garbled_manifest_is_ignored_with_a_warning(verified, caplog, garbage):
    manifest = dimages.manifest_path(os.path.dirname(verified.paths[0]))
    if garbage is None:  # a well-formed manifest with one garbled entry
        with open(manifest, encoding="utf-8") as f:
            stored = json.load(f)
        stored["files"][os.path.basename(verified.paths[0])] = ["12", None]
        garbage = json.dumps(stored)
    with open(manifest, "w", encoding="utf-8") as f:
        f.write(garbage)
    with caplog.at_level(logging.WARNING, logger="deephash.data.images"):
        graph, _ = decode_plan(verified.paths)
    assert "verification manifest" in caplog.text
    assert not graph[0] and (
        graph[1:].all() if "garbled entries" in caplog.text else not graph.any()
    )
    np.testing.assert_array_equal(
        _images(verified, "auto", image_size=(8, 8)), _images(verified, "python", image_size=(8, 8))
    )
    data.verify_images(verified.paths, progress=False)  # verification repairs it
    assert decode_plan(verified.paths)[0].all()
