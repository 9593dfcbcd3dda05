"""Verified, cached, atomic downloads (deephash.downloads) and the published backbone
weights (deephash.backbones.pretrained), against files served from 127.0.0.1 or file://
(never the internet: conftest.py sets DEEPHASH_OFFLINE=1; these tests lift it for their
own local server only)."""

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from _fileserver import FileServer

from deephash import backbones, downloads
from deephash.backbones import pretrained

PAYLOAD = bytes(range(256)) * 4099  # ~1 MB: more than one read chunk


def _leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".part"))


# ----------------------------------------------------------------------------- fetch
def test_fetch_downloads_once_then_serves_the_cached_copy_without_network(tmp_path, online):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    with FileServer({"/w.bin": PAYLOAD}) as srv:
        path = downloads.fetch(
            srv.url("/w.bin"), tmp_path / "cache" / "w.bin", file_hash=sha, size=len(PAYLOAD)
        )
        assert Path(path).read_bytes() == PAYLOAD and srv.hits["/w.bin"] == 1
        again = downloads.fetch(srv.url("/w.bin"), tmp_path / "cache" / "w.bin", file_hash=sha)
        assert again == path and srv.hits["/w.bin"] == 1  # verified cache hit, no request
        with downloads.offline():  # a verified cached copy needs no network at all
            assert downloads.fetch(srv.url("/w.bin"), path, file_hash=sha) == path
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_accepts_md5_like_keras_and_file_urls(tmp_path, online):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = downloads.fetch(src.as_uri(), tmp_path / "dst" / "copy.bin", file_hash=md5)
    assert Path(path).read_bytes() == PAYLOAD


def test_hash_mismatch_is_a_clear_error_and_leaves_no_file(tmp_path, online):
    wrong = hashlib.sha256(b"something else").hexdigest()
    target = tmp_path / "c" / "w.bin"
    with (
        FileServer({"/w.bin": PAYLOAD}) as srv,
        pytest.raises(
            ValueError, match=r"not the expected one .*sha256 .* expected " + wrong + r".*removed"
        ),
    ):
        downloads.fetch(srv.url("/w.bin"), target, file_hash=wrong)
    assert not target.exists() and _leftovers(target.parent) == []


def test_size_mismatch_and_failed_content_check_leave_no_file(tmp_path, online):
    target = tmp_path / "w.bin"

    def reject(path):
        raise ValueError("not a model file")

    with FileServer({"/w.bin": PAYLOAD}) as srv:
        with pytest.raises(ValueError, match=f"expected {len(PAYLOAD) + 1}"):
            downloads.fetch(srv.url("/w.bin"), target, size=len(PAYLOAD) + 1)
        with pytest.raises(ValueError, match="not a model file"):
            downloads.fetch(srv.url("/w.bin"), target, check=reject)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing_that_looks_complete(tmp_path, online):
    target = tmp_path / "c" / "w.bin"
    with FileServer({"/w.bin": PAYLOAD}) as srv:
        srv.truncate.add("/w.bin")  # header says the full length, the connection drops halfway
        with pytest.raises(downloads.DownloadError, match="interrupted|stopped after"):
            downloads.fetch(srv.url("/w.bin"), target)  # no hash known: only the length can tell
        assert not target.exists() and _leftovers(target.parent) == []
        srv.truncate.clear()
        assert Path(downloads.fetch(srv.url("/w.bin"), target)).read_bytes() == PAYLOAD
        assert srv.hits["/w.bin"] == 2


def test_a_corrupted_cached_copy_is_replaced(tmp_path, online):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    target = tmp_path / "w.bin"
    target.write_bytes(PAYLOAD[:1000])  # e.g. left by another tool
    with FileServer({"/w.bin": PAYLOAD}) as srv:
        downloads.fetch(srv.url("/w.bin"), target, file_hash=sha)
        assert srv.hits["/w.bin"] == 1
    assert target.read_bytes() == PAYLOAD


def test_http_errors_are_download_errors(tmp_path, online):
    with (
        FileServer({}) as srv,
        pytest.raises(downloads.DownloadError, match="could not download .*404"),
    ):
        downloads.fetch(srv.url("/missing.bin"), tmp_path / "m.bin")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how", ["env", "switch", "context"])
def test_no_network_switch_forbids_downloads_and_names_the_command(
    tmp_path, monkeypatch, online, how
):
    target = tmp_path / "w.bin"
    if how == "env":
        monkeypatch.setenv("DEEPHASH_OFFLINE", "1")
    elif how == "switch":
        downloads.set_network_allowed(False)
    with FileServer({"/w.bin": PAYLOAD}) as srv:
        url = srv.url("/w.bin")
        with pytest.raises(downloads.DownloadDisabledError) as info:
            if how == "context":
                with downloads.offline():
                    downloads.fetch(url, target, what="the test file")
            else:
                downloads.fetch(url, target, what="the test file")
        assert srv.hits["/w.bin"] == 0
    message = str(info.value)
    assert "the test file is not at" in message and str(target) in message
    assert f"curl -L --create-dirs -o {target} {url}" in message
    assert ("DEEPHASH_OFFLINE=1" in message) if how == "env" else ("--download=false" in message)
    assert isinstance(info.value, FileNotFoundError) and not target.exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="64 .* or 32 .*Received: file_hash='abc'"):
        downloads.fetch("http://127.0.0.1:9/x", tmp_path / "x", file_hash="abc")
    with pytest.raises(ValueError, match="Received: size=-1"):
        downloads.fetch("http://127.0.0.1:9/x", tmp_path / "x", size=-1)
    with pytest.raises(ValueError, match="Received: allowed='no'"):
        downloads.set_network_allowed("no")


# ----------------------------------------------------------------------------- published weights
SMALL_VGG = {"input_shape": (32, 32, 3), "fc_units": 16}


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A VGG-19 weights file in the Keras applications layout (all 16 conv layers at full
    width, small fc layers), as the published file would be read."""
    donor = backbones.vgg19(**SMALL_VGG)
    rng = np.random.default_rng(5)
    for layer in donor.layers:
        if layer.weights:
            layer.set_weights(
                [rng.normal(0, 0.05, w.shape).astype("float32") for w in layer.get_weights()]
            )
    path = tmp_path_factory.mktemp("vgg") / "vgg19.h5"
    backbones.save_vgg19_weights(donor, path)
    return path.read_bytes(), donor


def test_vgg19_imagenet_is_fetched_like_keras_applications_and_cached(
    tmp_path, monkeypatch, online, vgg_file
):
    body, donor = vgg_file
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with FileServer({"/vgg19.h5": body}) as srv:
        published = dataclasses.replace(
            pretrained.VGG19_IMAGENET,
            url=srv.url("/vgg19.h5"),
            file_hash=hashlib.md5(body).hexdigest(),
        )
        monkeypatch.setitem(pretrained.PUBLISHED, "vgg19", published)
        model = backbones.get("vgg19", weights="imagenet", **SMALL_VGG)
        for a, b in zip(model.get_weights(), donor.get_weights()):
            np.testing.assert_array_equal(a, b)
        cached = tmp_path / "keras" / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
        assert cached.read_bytes() == body  # where keras.utils.get_file would have put it
        backbones.vgg19(
            weights="imagenet", **SMALL_VGG
        )  # the builder itself accepts "imagenet" too
        assert srv.hits["/vgg19.h5"] == 1


def test_vgg19_imagenet_with_a_wrong_published_hash_fails_and_keeps_nothing(
    tmp_path, monkeypatch, online, vgg_file
):
    body, _ = vgg_file
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with FileServer({"/vgg19.h5": body}) as srv:
        monkeypatch.setitem(
            pretrained.PUBLISHED,
            "vgg19",
            dataclasses.replace(pretrained.VGG19_IMAGENET, url=srv.url("/vgg19.h5")),
        )
        with pytest.raises(ValueError, match="md5 .* expected cbe5617147190e668d6c5d5026f83318"):
            backbones.get("vgg19", weights="imagenet", **SMALL_VGG)
    assert os.listdir(tmp_path / "keras" / "models") == []


def test_published_vgg19_entry_is_the_one_keras_applications_uses():
    src = pytest.importorskip("keras.src.applications.vgg19")
    import inspect

    text = inspect.getsource(src)
    assert src.WEIGHTS_PATH == pretrained.VGG19_IMAGENET.url
    assert f'file_hash="{pretrained.VGG19_IMAGENET.file_hash}"' in text
    assert pretrained.VGG19_IMAGENET.file_name in text


@pytest.fixture(scope="module")
def cnn_f_files(tmp_path_factory):
    from test_cnn_f import INPUT, small_net, write_mat

    root = tmp_path_factory.mktemp("cnnf")
    average = np.random.default_rng(1).uniform(0, 255, INPUT).astype(np.float32)
    good, other = root / "good.mat", root / "cnn_m_like.mat"
    write_mat(str(good), small_net(0), "tidy", average)
    net = small_net(1)
    net[0] = dict(net[0], f=net[0]["f"][2:9, 2:9], stride=(2, 2))  # CNN-M/S start 7x7 at stride 2
    write_mat(str(other), net, "tidy", average)
    return good.read_bytes(), other.read_bytes()


def test_cnn_f_imagenet_is_content_checked_hash_recorded_and_cached(
    tmp_path, monkeypatch, online, cnn_f_files
):
    good, _ = cnn_f_files
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(pretrained.CNN_F_SHA256_ENV, raising=False)
    with FileServer({"/imagenet-vgg-f.mat": good}) as srv:
        monkeypatch.setitem(
            pretrained.PUBLISHED,
            "cnn_f",
            dataclasses.replace(pretrained.CNN_F_IMAGENET, url=srv.url("/imagenet-vgg-f.mat")),
        )
        model = backbones.get("cnn_f", weights="imagenet", input_shape=(127, 95, 3))
        path = tmp_path / "cache" / "weights" / "imagenet-vgg-f.mat"
        assert path.read_bytes() == good and model.get_layer("conv1").get_weights()[0].shape == (
            11,
            11,
            3,
            4,
        )
        record = (
            (tmp_path / "cache" / "weights" / "imagenet-vgg-f.mat.sha256").read_text().split()[0]
        )
        assert record == hashlib.sha256(good).hexdigest()
        backbones.get("cnn_f", weights="imagenet", input_shape=(127, 95, 3))
        assert srv.hits["/imagenet-vgg-f.mat"] == 1
        path.write_bytes(
            good[:-10] + b"0123456789"
        )  # later corruption: caught by the recorded hash
        pretrained.fetch("cnn_f")
        assert srv.hits["/imagenet-vgg-f.mat"] == 2 and path.read_bytes() == good


def test_cnn_f_download_that_is_not_cnn_f_is_rejected(tmp_path, monkeypatch, online, cnn_f_files):
    _, other = cnn_f_files
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))
    files = {"/other.mat": other, "/page.html": b"<html>moved</html>"}
    with FileServer(files) as srv:
        for name, match in (
            ("/other.mat", "conv1 has .*CNN-F has 11x11x3 filters at stride 4"),
            ("/page.html", "not a MatConvNet model"),
        ):
            monkeypatch.setitem(
                pretrained.PUBLISHED,
                "cnn_f",
                dataclasses.replace(pretrained.CNN_F_IMAGENET, url=srv.url(name)),
            )
            with pytest.raises(ValueError, match=match):
                pretrained.fetch("cnn_f")
    assert os.listdir(tmp_path / "cache" / "weights") == []


def test_cnn_f_pinned_hash_is_enforced(tmp_path, monkeypatch, online, cnn_f_files):
    good, _ = cnn_f_files
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(pretrained.CNN_F_SHA256_ENV, hashlib.sha256(b"another release").hexdigest())
    with FileServer({"/f.mat": good}) as srv:
        monkeypatch.setitem(
            pretrained.PUBLISHED,
            "cnn_f",
            dataclasses.replace(pretrained.CNN_F_IMAGENET, url=srv.url("/f.mat")),
        )
        with pytest.raises(ValueError, match="DEEPHASH_CNN_F_SHA256"):
            pretrained.fetch("cnn_f")
        good_sha = hashlib.sha256(good).hexdigest()
        assert pretrained.fetch("cnn_f", file_hash=good_sha).endswith("imagenet-vgg-f.mat")
        monkeypatch.delenv(
            pretrained.CNN_F_SHA256_ENV
        )  # the pinned hash was recorded: later uses check it
        record = tmp_path / "cache" / "weights" / "imagenet-vgg-f.mat.sha256"
        assert record.read_text().split()[0] == good_sha
        pretrained.fetch("cnn_f")
        assert srv.hits["/f.mat"] == 2  # one rejected download, one accepted; then the cache


def test_imagenet_weights_offline_message_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # DEEPHASH_OFFLINE=1 from conftest
    with pytest.raises(
        FileNotFoundError, match=r"python -m deephash.backbones.pretrained vgg19"
    ) as info:
        backbones.get("vgg19", weights="imagenet", **SMALL_VGG)
    assert pretrained.VGG19_IMAGENET.url in str(info.value) and "DEEPHASH_OFFLINE" in str(
        info.value
    )


def test_resolve_and_flag_check():
    assert pretrained.resolve("vgg19", None) is None
    assert pretrained.resolve("vgg19", "local.h5") == "local.h5"  # checked by the backbone's loader
    with pytest.raises(ValueError, match="no published ImageNet weights"):
        pretrained.resolve("small_cnn", "imagenet")
    pretrained.check_weights_arg(None)
    pretrained.check_weights_arg("imagenet")
    with pytest.raises(FileNotFoundError, match="--weights: no file at 'x.mat'"):
        pretrained.check_weights_arg("x.mat")
