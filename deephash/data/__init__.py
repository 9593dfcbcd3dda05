"""deephash.data: data sets under the papers' protocols, splits, preprocessing and
tf.data pipelines (knows no method).

``load(name, root=None, seed=0, **options) -> Dataset`` with names ``digits``,
``digits_multi`` (embedded, offline), ``cifar10`` (tensorflow-datasets, prepared on first
use), ``nuswide21``, ``imagenet100``, ``coco`` (list files; the last two also from
tensorflow-datasets when no ``root`` is given); ``available()`` lists them. See docs/data.md.
"""

from deephash.data import preprocessing
from deephash.data.dataset import Dataset, Protocol, Split
from deephash.data.images import verify_images
from deephash.data.pipelines import (
    TripletSampler,
    image_dataset,
    labeled_dataset,
    skipped_files,
    triplet_dataset,
    triplet_statistics,
)
from deephash.data.preprocessing import Preprocessor, for_backbone
from deephash.data.registry import available, load, multilabel
from deephash.data.splits import split_checksum, verify_split

__all__ = [
    "Dataset",
    "Preprocessor",
    "Protocol",
    "Split",
    "TripletSampler",
    "available",
    "multilabel",
    "for_backbone",
    "image_dataset",
    "labeled_dataset",
    "load",
    "preprocessing",
    "skipped_files",
    "split_checksum",
    "triplet_dataset",
    "triplet_statistics",
    "verify_images",
    "verify_split",
]
