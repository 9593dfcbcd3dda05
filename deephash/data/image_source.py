"""Images of a split gathered by position: from memory, or read and decoded from files.

Image files that fail to decode raise an error naming the file (``on_corrupt="raise"``), or
with ``on_corrupt="skip"`` are reported once (logged, and listed by the pipelines'
``skipped_files()``) and come back with ``ok=False``.

Decoding paths (``decode=``): ``"python"`` reads each file in a ``tf.py_function`` (the path
that names a bad file; Python per image, GIL-bound); ``"graph"`` reads and decodes in the
graph (``tf.io.read_file`` + ``tf.io.decode_image(channels=3, expand_animations=False)``,
the op ``verify_images`` and the Python path use, so images are bit-identical) — a corrupt
file that verification did not record then fails with TensorFlow's error, which does not
name it; ``"auto"`` (the default) decodes in the graph the files that
``deephash.data.images.verify_images`` recorded and that are unchanged since (size and
modification time), and the others in Python (logged once). Files verification found
corrupt are never decoded: ``on_corrupt="skip"`` treats them as unreadable (listed by
``skipped_files()`` when the source is built), ``"raise"`` fails naming the file when one
is drawn.

What was skipped and which messages were logged is kept in a :class:`FileReport` that the
source is given (the pipelines pass the process's one, ``default_report()``, unless told
otherwise), not in module variables.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from deephash.data import images
from deephash.data.dataset import Split
from deephash.validation import check_choice

# the pipelines' logger: what users filter on did not change when this module was split off
log = logging.getLogger("deephash.data.pipelines")

DECODE_MODES = ("auto", "python", "graph")


class FileReport:
    """Image files skipped as unreadable, and the messages already logged, shared by the
    sources that report to it (thread-safe: ``py_function`` decoders run in parallel)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._skipped: set[str] = set()
        self._logged: set[str] = set()

    def skipped(self) -> list[str]:
        """The files skipped so far, sorted."""
        with self._lock:
            return sorted(self._skipped)

    def skip(self, paths) -> list[str]:
        """Record ``paths`` as skipped; returns those not recorded before (in order)."""
        with self._lock:
            new = [p for p in paths if p not in self._skipped]
            self._skipped.update(paths)
        return new

    def log_once(self, level: int, message: str, *args) -> None:
        """Log ``message % args`` unless the same text was logged through this report."""
        key = message % args
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.log(level, message, *args)


# The one process-wide report, behind ``deephash.data.skipped_files()`` (process-wide by
# its contract). Sources report to it unless given their own ``FileReport``.
_PROCESS_REPORT = FileReport()


def default_report() -> FileReport:
    """The process's report: what ``deephash.data.skipped_files()`` lists."""
    return _PROCESS_REPORT


def decode_plan(paths, decode: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Which files a pipeline decodes in the graph: ``(graph (n,) bool, corrupt (n,) bool)``.

    ``corrupt``: verification found the file corrupt and it is unchanged since (never
    decoded). ``graph``: decoded by ``tf.io.decode_image`` in the graph (``"auto"``: the
    files verified and unchanged since; ``"graph"``: all; ``"python"``: none); the other
    files are decoded in a ``tf.py_function``.
    """
    return _plan_from_status(_status(paths, _check_decode(decode)), decode)


def _check_decode(decode: str) -> str:
    return check_choice(decode, DECODE_MODES, "decode")


def _status(paths, decode: str) -> np.ndarray:
    if decode == "python":
        return np.full(len(paths), images.UNVERIFIED, np.int8)
    return images.verification_status(paths)


def _plan_from_status(status: np.ndarray, decode: str) -> tuple[np.ndarray, np.ndarray]:
    if decode == "python":
        return np.zeros(len(status), bool), np.zeros(len(status), bool)
    corrupt = status == images.CORRUPT
    graph = np.ones(len(status), bool) if decode == "graph" else status == images.VERIFIED
    return graph & ~corrupt, corrupt


def _file_size(preprocess, image_size) -> tuple[tuple[int, int], bool]:
    """The fixed size file images are brought to, and whether ``preprocess.prepare_image``
    does it (else a plain resize)."""
    size = getattr(preprocess, "prepare_size", None) or (
        None if getattr(preprocess, "input_shape", None) is None else preprocess.input_shape[:2]
    )
    has_prepare = size is not None and hasattr(preprocess, "prepare_image")
    return tuple(int(s) for s in (size or image_size)), has_prepare


class ImageSource:
    """Gathers images of a split by position: from memory, or by reading files (decoded in
    the graph or in Python per file, see ``decode_plan``). Skipped files and messages logged
    once go to ``report`` (``default_report()`` when None)."""

    def __init__(
        self,
        split_or_images: Any,
        preprocess=None,
        image_size=(224, 224),
        on_corrupt: str = "raise",
        decode: str = "auto",
        report: FileReport | None = None,
    ):
        self.on_corrupt = check_choice(on_corrupt, ("raise", "skip"), "on_corrupt")
        _check_decode(decode)
        self.preprocess = preprocess
        self.report = default_report() if report is None else report
        if isinstance(split_or_images, Split):
            data, paths = split_or_images.images, split_or_images.paths
        else:
            data, paths = np.asarray(split_or_images, dtype=np.float32), None
            if data.ndim != 4:
                raise ValueError(f"images must be a batch (n, h, w, ch), got shape {data.shape}")
        if data is not None:
            self._images = tf.constant(data, tf.float32)
            self._paths = None
            self.item_shape = tuple(data.shape[1:])
            self.n = len(data)
        else:
            self._images = None
            self._paths = tf.constant(paths)
            self.n = len(paths)
            self.size, self._has_prepare = _file_size(preprocess, image_size)
            self.item_shape = self.size + (3,)
            self._plan(paths, decode)

    def _plan(self, paths: np.ndarray, decode: str) -> None:
        status = _status(paths, decode)
        graph, corrupt = _plan_from_status(status, decode)
        python = ~graph & ~corrupt
        self._mixed = bool(python.any()) and bool((graph | corrupt).any())
        self._all_python = bool(python.all())
        self._python = tf.constant(python) if self._mixed else None
        self._corrupt = tf.constant(corrupt) if corrupt.any() else None
        if decode == "auto" and python.any():
            self._log_python_decoding(paths, status, python)
        if corrupt.any() and self.on_corrupt == "skip":
            self._skip_known_corrupt(paths[corrupt])

    def _log_python_decoding(self, paths, status, python) -> None:
        changed = int(np.sum(status == images.CHANGED))
        first = paths[np.flatnonzero(python)[0]]
        if changed or self._mixed:
            self.report.log_once(
                logging.WARNING,
                "decoding %d of %d image files in Python (slower): %d changed since "
                "verification, %d never verified (e.g. %s); data.verify_images(paths) "
                "records them for graph-only decoding",
                int(python.sum()),
                len(paths),
                changed,
                int(python.sum()) - changed,
                first,
            )
        else:
            self.report.log_once(
                logging.INFO,
                "decoding the %d image files in Python (slower): they are not verified "
                "(e.g. %s); data.verify_images(paths) records them for graph-only decoding",
                len(paths),
                first,
            )

    def _skip_known_corrupt(self, corrupt_paths: np.ndarray) -> None:
        new = self.report.skip(sorted(set(corrupt_paths.tolist())))
        if new:
            log.warning(
                "skipping %d image file(s) that verification found corrupt: %s",
                len(new),
                ", ".join(repr(p) for p in new[:10])
                + (f" and {len(new) - 10} more" if len(new) > 10 else ""),
            )

    @property
    def from_files(self) -> bool:
        return self._paths is not None

    def gather(self, positions):
        """In-memory sets: ``(images (k, h, w, ch) float32 in [0, 255], ok (k,) bool)``."""
        return tf.gather(self._images, positions), tf.ones(tf.shape(positions), tf.bool)

    def read_one(self, position):
        """File sets: read and decode one file (in the graph, or eagerly in Python to name a
        bad file) and bring it to its fixed size (in the graph).
        ``(image (h, w, 3) float32, ok bool)``."""
        path = tf.gather(self._paths, position)
        if self._all_python:
            image, ok = self._read_python(path)
        elif self._mixed:
            image, ok = tf.cond(
                tf.gather(self._python, position),
                lambda: self._read_python(path),
                lambda: self._read_graph(path, position),
            )
        else:
            image, ok = self._read_graph(path, position)
        image.set_shape((None, None, 3))
        if self._has_prepare:
            out = self.preprocess.prepare_image(image)
        else:
            out = tf.image.resize(tf.cast(image, tf.float32), self.size)
        return tf.ensure_shape(out, self.item_shape), ok

    def _read_python(self, path):
        image, ok = tf.py_function(self._decode, [path], [tf.uint8, tf.bool])
        image.set_shape((None, None, 3))
        ok.set_shape(())
        return image, ok

    def _read_graph(self, path, position):
        def decode():
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image.set_shape((None, None, 3))
            return image, tf.constant(True)

        if self._corrupt is None:
            return decode()
        bad = tf.gather(self._corrupt, position)
        if self.on_corrupt == "raise":
            check = tf.debugging.Assert(
                tf.logical_not(bad),
                ["corrupt or unreadable image file (found corrupt by verify_images):", path],
            )
            with tf.control_dependencies([check]):
                return decode()
        return tf.cond(bad, lambda: (tf.zeros((1, 1, 3), tf.uint8), tf.constant(False)), decode)

    def _decode(self, path):
        path = path.numpy().decode()
        try:
            return images.decode_file(path, channels=3), True
        except (images.CorruptImageError, FileNotFoundError) as e:
            if self.on_corrupt == "raise":
                raise
            if self.report.skip([path]):
                log.warning("skipping unreadable image: %s", e)
            return np.zeros((1, 1, 3), np.uint8), False
