"""Data sets prepared through tensorflow-datasets, never touching the internet.

CIFAR-10 runs tfds' real builder end to end against a tiny archive in the CIFAR binary
format served from 127.0.0.1 (the builder's URL is redirected there). MS-COCO 2014 and
ImageNet-100 use tfds' mock_data with examples written here (real JPEG bytes, known labels)
and check the export (bytes, lists, labels) and the loaded protocol splits.
"""

import io
import os
import tarfile

import numpy as np
import pytest
from _fileserver import FileServer

from deephash import data, downloads
from deephash.data import tfds_sources
from deephash.data.cifar10 import CLASS_NAMES

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")


# ----------------------------------------------------------------------------- CIFAR-10
def _cifar_archive():
    """A CIFAR-10 binary archive with 4 images per class (30 train in 5 batches, 10 test)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 4)
    rng.shuffle(labels)
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)  # CIFAR stores planes R, G, B

    def records(idx):
        return b"".join(bytes([labels[i]]) + images[i].tobytes() for i in idx)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name, payload):
            info = tarfile.TarInfo("cifar-10-batches-bin/" + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        for b in range(5):
            add(f"data_batch_{b + 1}.bin", records(range(6 * b, 6 * b + 6)))
        add("test_batch.bin", records(range(30, 40)))
        add("batches.meta.txt", "\n".join(CLASS_NAMES).encode() + b"\n")
    return buf.getvalue(), images.transpose(0, 2, 3, 1), labels


@pytest.fixture
def cifar_server(monkeypatch):
    from tensorflow_datasets.core.utils import gcs_utils
    from tensorflow_datasets.image_classification import cifar

    monkeypatch.setattr(
        gcs_utils, "_is_gcs_disabled", True
    )  # never tfds' GCS mirror, whatever the version
    body, images, labels = _cifar_archive()
    original = cifar.Cifar10._cifar_info
    with FileServer({"/cifar-10-binary.tar.gz": body}) as srv:
        url = srv.url("/cifar-10-binary.tar.gz")
        monkeypatch.setattr(
            cifar.Cifar10,
            "_cifar_info",
            property(lambda self: original.fget(self)._replace(url=url)),
        )
        yield srv, images, labels


def test_cifar10_is_downloaded_and_prepared_through_tfds_once(tmp_path, online, cifar_server):
    srv, images, labels = cifar_server
    root = tmp_path / "tfds"
    root.mkdir()
    ds = data.load("cifar10", root=str(root), query_per_class=1, train_per_class=2)
    assert srv.hits["/cifar-10-binary.tar.gz"] == 1
    assert (root / "cifar10").is_dir() and len(ds.query) == 10 and len(ds.train) == 20
    # every loaded image is one of the archive's, with its label (tfds reorders examples)
    served = {images[i].tobytes(): int(labels[i]) for i in range(len(labels))}
    loaded = np.concatenate([ds.query.images, ds.database.images]).astype(np.uint8)
    ids = np.concatenate([ds.query.class_ids, ds.database.class_ids])
    assert len(loaded) == 40 and sorted(served[im.tobytes()] for im in loaded) == sorted(
        ids.tolist()
    )
    assert all(served[im.tobytes()] == c for im, c in zip(loaded, ids))
    again = data.load("cifar10", root=str(root), query_per_class=1, train_per_class=2)
    assert again.checksum == ds.checksum and srv.hits["/cifar-10-binary.tar.gz"] == 1


def test_cifar10_without_root_prepares_into_the_tfds_standard_cache(
    tmp_path, monkeypatch, online, cifar_server
):
    srv, _, _ = cifar_server
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "standard"))
    ds = data.load("cifar10", query_per_class=1, train_per_class=2)
    assert srv.hits["/cifar-10-binary.tar.gz"] == 1
    assert ds.root == str(tmp_path / "standard") and (tmp_path / "standard" / "cifar10").is_dir()


@pytest.mark.parametrize("how", ["env", "download_false"])
def test_cifar10_offline_fails_with_the_command_to_run_elsewhere(
    tmp_path, monkeypatch, online, cifar_server, how
):
    srv, _, _ = cifar_server
    if how == "env":
        monkeypatch.setenv("DEEPHASH_OFFLINE", "1")
        kwargs = {}
    else:
        kwargs = {"download": False}
    with pytest.raises(downloads.DownloadDisabledError) as info:
        data.load("cifar10", root=str(tmp_path), **kwargs)
    message = str(info.value)
    assert f"python -m deephash.data.tfds_sources cifar10 --data_dir={tmp_path}" in message
    assert f"tfds build cifar10 --data_dir={tmp_path}" in message
    assert ("DEEPHASH_OFFLINE=1" in message) if how == "env" else ("download=False" in message)
    assert srv.hits["/cifar-10-binary.tar.gz"] == 0 and not (tmp_path / "cifar10").exists()


# ----------------------------------------------------------------------------- mock tfds sources
def _jpeg(seed):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _as_dataset_fn(examples, calls):
    """A tfds mock ``_as_dataset`` yielding ``examples[split]`` (dicts of numpy values)."""

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs):
        calls.append((self.name, str(split)))
        rows = examples[str(split)]
        first = rows[0]

        def spec(value):
            if isinstance(value, dict):
                return {k: spec(v) for k, v in value.items()}
            value = np.asarray(value)
            dtype = tf.string if value.dtype.kind in "SUO" else tf.as_dtype(value.dtype)
            return tf.TensorSpec((None,) * value.ndim, dtype)

        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=spec(first))

    return as_dataset


COCO_ROWS = {  # file, object category ids (with repeats, as several boxes of one class)
    "train": [
        ("COCO_train2014_000000000009.jpg", [1, 55, 55]),
        ("COCO_train2014_000000000025.jpg", [24]),
        ("COCO_train2014_000000000030.jpg", []),
        ("COCO_train2014_000000000034.jpg", [0, 79]),
    ],
    "validation": [
        ("COCO_val2014_000000000042.jpg", [0]),
        ("COCO_val2014_000000000073.jpg", [2, 3]),
    ],
}


def _coco_examples():
    jpegs, examples = {}, {}
    for s, (split, rows) in enumerate(COCO_ROWS.items()):
        examples[split] = []
        for i, (name, labels) in enumerate(rows):
            jpegs[name] = _jpeg(10 * s + i)
            examples[split].append(
                {
                    "image": jpegs[name],
                    "image/filename": name,
                    "objects": {"label": np.asarray(labels, np.int64)},
                }
            )
    return examples, jpegs


def test_coco_from_tfds_exports_original_jpegs_and_80_label_lists(tmp_path, online):
    examples, jpegs = _coco_examples()
    calls = []
    with tfds.testing.mock_data(as_dataset_fn=_as_dataset_fn(examples, calls)):
        ds = data.load("coco", source="tfds", root=str(tmp_path), num_query=2, num_train=2)
        again = data.load("coco", source="tfds", root=str(tmp_path), num_query=2, num_train=2)
    out = tmp_path / "deephash_export" / "coco2014"
    assert sorted(c[1] for c in calls) == ["train", "validation"]  # exported once, then reused
    lines = (out / "all.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == sorted(
        f"{'train2014' if 'train' in n else 'val2014'}/{n}"
        for rows in COCO_ROWS.values()
        for n, lab in rows
        if lab
    )
    for line in lines:
        rel, *bits = line.split()
        assert (out / rel).read_bytes() == jpegs[
            os.path.basename(rel)
        ]  # original bytes, not re-encoded
        expected = dict(r for rows in COCO_ROWS.values() for r in rows)[os.path.basename(rel)]
        assert len(bits) == 80 and [i for i, b in enumerate(bits) if b == "1"] == sorted(
            set(expected)
        )
    assert not (out / "train2014" / "COCO_train2014_000000000030.jpg").exists()  # no label: dropped
    assert len(ds.query) == 2 and len(ds.train) == 2 and len(ds.query) + len(ds.database) == 5
    assert (
        ds.query.labels.shape[1] == 80 and ds.protocol.multilabel and again.checksum == ds.checksum
    )
    assert (
        len((out / "classes.txt").read_text().splitlines()) == 80
    )  # tfds' names (mocked here: "0".."79")
    assert not [n for n in os.listdir(out) if n.endswith((".part", ".tmp"))]


def test_coco_without_root_uses_tfds_and_offline_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # DEEPHASH_OFFLINE=1 from conftest
    with (
        tfds.testing.mock_data(as_dataset_fn=_as_dataset_fn(_coco_examples()[0], [])),
        pytest.raises(
            downloads.DownloadDisabledError, match=f"tfds_sources coco --data_dir={tmp_path}"
        ),
    ):
        data.load("coco")
    with pytest.raises(ValueError, match="pass root="):
        data.load("nuswide21")  # list-file only: its images are not distributed
    with pytest.raises(ValueError, match="Received: source='web'"):
        data.load("coco", root=str(tmp_path), source="web")


def test_imagenet100_class_list_is_hashnets_label_order():
    wnids = tfds_sources.imagenet100_classes()
    assert len(wnids) == 100 == len(set(wnids)) and list(wnids) == sorted(wnids)
    # spot checks against HashNet's lists (image names with their one-hot columns)
    assert wnids[0] == "n01514668" and wnids[76] == "n03944341" and wnids[99] == "n13044778"
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


def test_imagenet100_needs_the_manual_archives_and_says_where(tmp_path, online):
    with (
        tfds.testing.mock_data(as_dataset_fn=_as_dataset_fn({}, [])),
        pytest.raises(FileNotFoundError) as info,
    ):
        data.load("imagenet100", source="tfds", root=str(tmp_path))
    message = str(info.value)
    assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in message
    assert str(tmp_path / "downloads" / "manual") in message and "image-net.org" in message


def test_imagenet100_from_tfds_keeps_the_100_classes_val_as_queries(tmp_path, monkeypatch, online):
    names = tfds.builder("imagenet2012").info.features["label"].names
    wnids = tfds_sources.imagenet100_classes()
    outside = next(i for i, n in enumerate(names) if n not in wnids)
    train, val = [], []
    for c, w in enumerate(wnids):
        for k in range(3):
            train.append(
                {
                    "image": b"\xff\xd8train%d_%d" % (c, k),
                    "label": np.int64(names.index(w)),
                    "file_name": f"{w}_{k}.JPEG",
                }
            )
        val.append(
            {
                "image": b"\xff\xd8val%d" % c,
                "label": np.int64(names.index(w)),
                "file_name": f"ILSVRC2012_val_{c:08d}.JPEG",
            }
        )
    train.append(
        {"image": b"\xff\xd8x", "label": np.int64(outside), "file_name": f"{names[outside]}_0.JPEG"}
    )
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for f in tfds_sources.IMAGENET_MANUAL_FILES:
        (manual / f).write_bytes(b"")  # tfds' preparation itself is mocked
    monkeypatch.setattr(tfds_sources, "IMAGENET100_TRAIN_PER_CLASS", 2)
    with tfds.testing.mock_data(
        as_dataset_fn=_as_dataset_fn({"train": train, "validation": val}, [])
    ):
        ds = data.load("imagenet100", source="tfds", root=str(tmp_path), check_files=True)
    out = tmp_path / "deephash_export" / "imagenet100"
    test_lines = (out / "test.txt").read_text().splitlines()
    assert len(test_lines) == 100 and len((out / "database.txt").read_text().splitlines()) == 300
    assert len((out / "train.txt").read_text().splitlines()) == 200
    rel, *bits = test_lines[5].split()
    assert rel == "val/ILSVRC2012_val_00000005.JPEG" and bits.index("1") == 5
    assert (out / "train" / wnids[7] / f"{wnids[7]}_2.JPEG").read_bytes() == b"\xff\xd8train7_2"
    assert not (out / "train" / names[outside]).exists()
    assert len(ds.query) == 100 and len(ds.train) == 200 and len(ds.database) == 300
    assert sorted(ds.query.class_ids.tolist()) == list(range(100))
    assert np.bincount(ds.train.class_ids, minlength=100).tolist() == [2] * 100
    assert all("/val/" in p for p in ds.query.paths) and all(
        "/train/" in p for p in ds.database.paths
    )


# ----------------------------------------------------------------------------- scripts
def test_train_script_download_false_stops_with_the_commands_to_run_elsewhere(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        k: v for k, v in os.environ.items() if k != "DEEPHASH_OFFLINE"
    }  # only the flag forbids downloads
    env.update(
        PYTHONPATH=repo,
        TF_CPP_MIN_LOG_LEVEL="3",
        KERAS_HOME=str(tmp_path / "keras"),
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )
    cases = [
        (
            ["--dataset=cifar10"],
            f"python -m deephash.data.tfds_sources cifar10 --data_dir={tmp_path / 'tfds'}",
        ),
        (
            ["--dataset=digits", "--backbone=vgg19", "--weights=imagenet"],
            "python -m deephash.backbones.pretrained vgg19",
        ),
    ]
    for args, command in cases:
        out = subprocess.run(
            [
                sys.executable,
                os.path.join(repo, "experiments", "train.py"),
                "--method=dsrh",
                "--bits=8",
                "--epochs=1",
                "--download=false",
                f"--out={tmp_path / 'run'}",
                *args,
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert (
            "error: " in out.stderr and command in out.stderr and "--download=false" in out.stderr
        )
        assert not (tmp_path / "run").exists() and not (tmp_path / "keras" / "models").exists()
