"""Data sets prepared through tensorflow-datasets: CIFAR-10, MS-COCO 2014 and ImageNet-100.

``ensure_prepared`` downloads and prepares a tfds data set into its standard cache
(``$TFDS_DATA_DIR``, default ``~/tensorflow_datasets``) when it is not there, unless
downloads are off (``$DEEPHASH_OFFLINE=1``, ``deephash.downloads.set_network_allowed(False)``,
``download=False``, ``--download=false``): then it raises
:class:`deephash.downloads.DownloadDisabledError` with the command to run on a machine with
internet.

MS-COCO and ImageNet-100 are file-based sets in this library (their images are too many
to hold in memory), so their tfds data is exported once into a folder of JPEG files (the
original bytes, not re-encoded) plus list files in the format of ``deephash.data.listfile``,
under ``<data_dir>/deephash_export/<name>/``; the list loader then applies the protocol.

* ``coco``: tfds ``coco/2014``, ``train`` (82,783 images) and ``validation`` (40,504)
  pooled; the labels are the 80 object categories (tfds' order: COCO's category-id order, which
  is also the order of the HashNet lists' columns as far as we can tell: the lists do not name
  them) as multi-hot vectors; images without any object are
  dropped (HashNet/DSEH keep 122,218 images); the seeded protocol split then draws 5,000
  queries and 10,000 training images (``listfile.SPECS["coco"]``). Download about 37 GB
  (tfds fetches all of COCO 2014 and its 2015 test images), prepared data about 38 GB,
  export about 19 GB.
* ``imagenet100``: tfds ``imagenet2012`` restricted to the 100 classes of HashNet's
  ImageNet lists (``imagenet100_classes.txt``, shipped with the package, in HashNet's
  label order). ImageNet cannot be downloaded automatically: place
  ``ILSVRC2012_img_train.tar`` (138 GB) and ``ILSVRC2012_img_val.tar`` (6.3 GB) from
  image-net.org in ``<data_dir>/downloads/manual/``. As in HashNet, the queries are the
  5,000 validation images of the 100 classes, the database their ~128,000 training
  images, and training 130 images per class drawn from the database (seeded with seed 0
  and fixed, like HashNet's given ``train.txt``; put HashNet's own three lists in a folder
  and pass it as ``root`` to use exactly theirs).
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources

import numpy as np

from deephash import downloads
from deephash.io import atomic_write, write_json

log = logging.getLogger(__name__)

TFDS_NAMES = {"cifar10": "cifar10", "coco": "coco/2014", "imagenet100": "imagenet2012"}
EXPORT_FORMAT = 1
COCO_SPLITS = (("train", "train2014"), ("validation", "val2014"))
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGENET100_TRAIN_PER_CLASS = 130
IMAGENET100_TRAIN_SEED = 0


def default_data_dir() -> str:
    """tfds' standard data directory: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets"
    )


def prepare_command(name: str, data_dir: str) -> str:
    """The shell command that prepares data set ``name`` (a key of TFDS_NAMES) into ``data_dir``."""
    return f"python -m deephash.data.tfds_sources {name} --data_dir={data_dir}"


def imagenet100_classes() -> tuple[str, ...]:
    """The 100 WordNet ids of HashNet's ImageNet-100, in the label order of its lists."""
    text = (
        resources.files("deephash.data")
        .joinpath("imagenet100_classes.txt")
        .read_text(encoding="utf-8")
    )
    wnids = tuple(
        line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if len(wnids) != 100 or len(set(wnids)) != 100:
        raise ValueError(
            f"imagenet100_classes.txt must list 100 distinct wnids, found {len(set(wnids))}"
        )
    return wnids


def ensure_prepared(name: str, data_dir: str | None = None, *, download: bool | None = None):
    """The tfds builder of ``name`` (``cifar10``, ``coco``, ``imagenet100``), prepared in
    ``data_dir`` (downloaded first when allowed; see module docstring)."""
    import tensorflow_datasets as tfds

    if name not in TFDS_NAMES:
        raise ValueError(
            f"no tensorflow-datasets source for {name!r}; available: {', '.join(TFDS_NAMES)}"
        )
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir)
    if builder.is_prepared():
        return builder
    config = None
    if name == "imagenet100":
        manual = os.path.join(data_dir, "downloads", "manual")
        missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual, f))]
        if missing:
            raise FileNotFoundError(
                "ImageNet-100 is prepared from the ILSVRC2012 archives, which cannot be "
                f"downloaded automatically: download {' and '.join(missing)} from "
                "https://image-net.org (after accepting its terms) and put them in "
                f"{manual}/, then run again (or run "
                f"{prepare_command(name, data_dir)})"
            )
        config = tfds.download.DownloadConfig(manual_dir=manual)
    elif download is False or not downloads.network_allowed():
        reason = "download=False was passed" if download is False else downloads.offline_reason()
        raise downloads.DownloadDisabledError(
            f"{name} (tensorflow-datasets {TFDS_NAMES[name]}) is not prepared in {data_dir} "
            f"and {reason}. On a machine with internet run:\n"
            f"    {prepare_command(name, data_dir)}\n"
            "(or, with only tensorflow-datasets installed: "
            f"tfds build {TFDS_NAMES[name]} --data_dir={data_dir})\n"
            f"then copy {os.path.join(data_dir, TFDS_NAMES[name].split('/')[0])}/ to the same "
            "place here"
        )
    os.makedirs(data_dir, exist_ok=True)
    log.info(
        "preparing tensorflow-datasets %s in %s (first use: downloads and converts the data)",
        TFDS_NAMES[name],
        data_dir,
    )
    builder.download_and_prepare(download_config=config)
    return builder


# ----------------------------------------------------------------------------- export
def export_dir(name: str, data_dir: str | None = None) -> str:
    """Where the JPEG files and list files of ``name`` are exported."""
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    return os.path.join(
        data_dir, "deephash_export", {"coco": "coco2014", "imagenet100": "imagenet100"}[name]
    )


def export(name: str, data_dir: str | None = None, *, download: bool | None = None) -> str:
    """Prepare ``coco`` or ``imagenet100`` through tfds and export images and list files
    (once: a finished export is recognised by its ``export.json``). Returns the folder."""
    out = export_dir(name, data_dir)
    marker = os.path.join(out, "export.json")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f).get("format") == EXPORT_FORMAT:
                return out
    builder = ensure_prepared(name, data_dir, download=download)
    if name == "coco":
        info = _export_coco(builder, out)
    elif name == "imagenet100":
        info = _export_imagenet100(builder, out)
    else:
        raise ValueError(f"only coco and imagenet100 are exported, got {name!r}")
    write_json(
        marker, {"format": EXPORT_FORMAT, "dataset": name, "tfds": builder.info.full_name, **info}
    )
    log.info("%s exported to %s: %s", name, out, info)
    return out


def _examples(builder, split: str):
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    return tfds.as_numpy(ds)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _write_image(out: str, rel: str, data: bytes) -> None:
    """Write the image bytes (the original JPEG) unless an identical-size copy is there;
    a temporary name plus rename, so an interrupted export leaves no partial image."""
    path = os.path.join(out, rel)
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_list(path: str, lines: list[str]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _export_coco(builder, out: str) -> dict:
    label_feature = builder.info.features["objects"]["label"]
    num_classes = int(label_feature.num_classes)
    if num_classes != 80:
        raise ValueError(f"tfds coco/2014 should have 80 object categories, found {num_classes}")
    lines, dropped, per_split = [], 0, {}
    for split, folder in COCO_SPLITS:
        count = 0
        for ex in _examples(builder, split):
            labels = np.unique(np.asarray(ex["objects"]["label"], np.int64))
            if labels.size == 0:
                dropped += 1  # no object category: dropped, as in the HashNet/DSEH lists
                continue
            rel = f"{folder}/{os.path.basename(_text(ex['image/filename']))}"
            _write_image(out, rel, bytes(ex["image"]))
            vector = np.zeros(num_classes, np.uint8)
            vector[labels] = 1
            lines.append(rel + " " + " ".join(str(int(v)) for v in vector))
            count += 1
        per_split[split] = count
    if not lines:
        raise ValueError("tfds coco/2014 holds no image with an object label")
    lines.sort()  # item order = file name order: independent of tfds' shard order
    _write_list(os.path.join(out, "all.txt"), lines)
    with atomic_write(os.path.join(out, "classes.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{n}\n" for n in label_feature.names)
    return {"images": len(lines), "dropped_without_labels": dropped, "per_split": per_split}


def _export_imagenet100(builder, out: str) -> dict:
    wnids = imagenet100_classes()
    names = list(builder.info.features["label"].names)
    missing = [w for w in wnids if w not in names]
    if missing:
        raise ValueError(f"tfds imagenet2012 lacks the ImageNet-100 classes {missing[:5]}")
    column = {names.index(w): i for i, w in enumerate(wnids)}
    lists: dict[str, list[str]] = {"database": [], "query": []}
    classes: dict[str, list[int]] = {"database": [], "query": []}
    for split, key, folder in (("train", "database", "train"), ("validation", "query", "val")):
        for ex in _examples(builder, split):
            c = column.get(int(ex["label"]))
            if c is None:
                continue
            file_name = os.path.basename(_text(ex["file_name"]))
            rel = (
                f"{folder}/{wnids[c]}/{file_name}" if folder == "train" else f"{folder}/{file_name}"
            )
            _write_image(out, rel, bytes(ex["image"]))
            vector = ["0"] * 100
            vector[c] = "1"
            lists[key].append(rel + " " + " ".join(vector))
            classes[key].append(c)
    for key, rows in lists.items():
        order = np.argsort(np.asarray(rows, dtype=str), kind="stable")
        lists[key] = [rows[i] for i in order]
        classes[key] = [classes[key][i] for i in order]
    db_classes = np.asarray(classes["database"], np.int64)
    rng = np.random.default_rng(IMAGENET100_TRAIN_SEED)
    train = []
    for c in range(100):
        members = np.flatnonzero(db_classes == c)
        if len(members) < IMAGENET100_TRAIN_PER_CLASS:
            raise ValueError(
                f"ImageNet-100 class {wnids[c]} has {len(members)} training images, fewer than "
                f"{IMAGENET100_TRAIN_PER_CLASS}"
            )
        train.extend(rng.choice(members, IMAGENET100_TRAIN_PER_CLASS, replace=False).tolist())
    _write_list(os.path.join(out, "database.txt"), lists["database"])
    _write_list(os.path.join(out, "test.txt"), lists["query"])
    _write_list(os.path.join(out, "train.txt"), [lists["database"][i] for i in sorted(train)])
    return {
        "database": len(lists["database"]),
        "query": len(lists["query"]),
        "train": len(train),
        "train_per_class": IMAGENET100_TRAIN_PER_CLASS,
        "train_seed": IMAGENET100_TRAIN_SEED,
    }


def load_from_tfds(
    name: str,
    seed: int = 0,
    *,
    data_dir: str | None = None,
    download: bool | None = None,
    **options,
):
    """``coco`` / ``imagenet100`` from tfds: export once, then the list loader (``options``
    as for ``deephash.data.listfile.load_list_dataset``)."""
    from deephash.data.listfile import load_list_dataset

    if name not in ("coco", "imagenet100"):
        raise ValueError(f"{name}: source='tfds' is available for coco and imagenet100 only")
    return load_list_dataset(name, export(name, data_dir, download=download), seed, **options)


def main(argv: list[str] | None = None) -> int:
    """``python -m deephash.data.tfds_sources NAME [--data_dir=DIR]``: prepare (and export)."""
    import argparse
    import logging as _logging

    parser = argparse.ArgumentParser(description="Prepare a data set through tensorflow-datasets.")
    parser.add_argument("name", choices=sorted(TFDS_NAMES))
    parser.add_argument(
        "--data_dir",
        default=None,
        help="tfds data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    args = parser.parse_args(argv)
    _logging.basicConfig(level=_logging.INFO, format="%(message)s")
    if args.name == "cifar10":
        builder = ensure_prepared("cifar10", args.data_dir)
        print(f"cifar10 prepared in {builder.data_dir}")
    else:
        print(f"{args.name} exported to {export(args.name, args.data_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
