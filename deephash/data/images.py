"""Reading and validating image files (JPEG, and PNG/GIF/BMP through the same decoder).

Decoding uses TensorFlow's ``tf.io.decode_image`` so that up-front validation and the
tf.data pipelines accept and reject exactly the same files.

Verification is remembered: ``verify_images`` records, per image directory, a manifest
``cache_dir("verified")/<sha256 of the directory>.json`` holding for each file decoded
with 3 channels its size, modification time (ns) and result::

    {"format": 1, "decoder": "...", "directory": "/abs/dir",
     "files": {"name.jpg": [size, mtime_ns, ok], ...}}

``verification_status(paths)`` compares the manifest with an ``os.stat`` of each file; the
tf.data pipelines decode files whose status is ``VERIFIED`` or ``CORRUPT`` entirely in the
graph (see ``deephash.data.pipelines``). A file whose modification time is less than
``FRESH_SECONDS`` before it was checked is decoded but not recorded: a rewrite within the
same file-system clock tick would keep size and time, so such an entry could not be trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from deephash.validation import check_choice

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
DECODER = "tf.io.decode_image(channels=3, expand_animations=False)"
FRESH_SECONDS = 2.0
RECORD_EVERY_SECONDS = 60.0  # verify_images writes what it has checked at least this often
# verification_status codes
UNVERIFIED, CHANGED, VERIFIED, CORRUPT = 0, 1, 2, 3


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; ``path`` names it."""

    def __init__(self, path: str, reason: str = ""):
        self.path = path
        super().__init__(
            f"corrupt or unreadable image file {path!r}" + (f": {reason}" if reason else "")
        )


def decode_file(path: str, channels: int = 3) -> np.ndarray:
    """Decode one image file to uint8 ``(h, w, channels)``.

    FileNotFoundError for a missing file, ``CorruptImageError`` (a ValueError naming the
    file) for one that does not decode.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path!r} does not exist") from None
    if not data:
        raise CorruptImageError(path, "empty file")
    try:
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise CorruptImageError(path, e.message.splitlines()[0] if e.message else "") from None
    return image.numpy()


def check_files_exist(paths: Sequence[str], sources: Sequence[str] | None = None) -> None:
    """FileNotFoundError naming the first missing file (and, if given, where it is listed)."""
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            where = f" (listed in {sources[i]})" if sources is not None else ""
            raise FileNotFoundError(f"image file {p!r}{where} does not exist")


def verify_images(
    paths: Iterable[str],
    on_corrupt: str = "raise",
    channels: int = 3,
    *,
    recheck: bool = False,
    record: bool = True,
    progress: bool = True,
) -> list[str]:
    """Decode every file; returns the corrupt ones.

    ``on_corrupt="raise"``: ValueError listing the corrupt files (after checking them all);
    ``"skip"``: log a warning naming them and return the list. With ``channels=3`` the
    results are recorded in the verification manifests (``record``), and files recorded
    before and unchanged since (same size and modification time) are not decoded again
    unless ``recheck``. A tqdm bar shows progress (``progress``; shown on a terminal).
    """
    check_choice(on_corrupt, ("raise", "skip"), "on_corrupt")
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    known = (
        verification_status(paths)
        if channels == 3 and not recheck
        else np.zeros(len(paths), np.int8)
    )
    results: dict[str, list] = {}
    record = record and channels == 3
    bad = []
    fresh = 0
    flushed = time.monotonic()
    try:
        for p, state in zip(
            tqdm(paths, desc="verifying images", unit="file", disable=None if progress else True),
            known,
        ):
            if state in (VERIFIED, CORRUPT):
                ok = state == VERIFIED
            else:
                ok, entry, too_fresh = _check_file(p, channels)
                if entry is not None:
                    results[p] = entry
                fresh += too_fresh
            if not ok:
                bad.append(p)
            if record and results and time.monotonic() - flushed > RECORD_EVERY_SECONDS:
                _record(results)  # an interrupted verification keeps what it has checked
                results, flushed = {}, time.monotonic()
    finally:
        if record and results:
            _record(results)
    if fresh:
        log.info(
            "%d image file(s) were modified less than %.0f s before verification and are not "
            "recorded as verified; verify again later for the pipelines' graph-only decoding",
            fresh,
            FRESH_SECONDS,
        )
    if bad:
        _report_corrupt(bad, on_corrupt)
    return bad


def _check_file(path: str, channels: int) -> tuple[bool, list | None, bool]:
    """Decode one file: ``(ok, manifest entry [size, mtime_ns, ok] or None, too fresh)``.
    No entry when the file changed while it was read, or was modified less than
    ``FRESH_SECONDS`` before (``too fresh``: not recorded)."""
    before = _stat(path)
    checked_ns = time.time_ns()
    try:
        decode_file(path, channels=channels)
        ok = True
    except CorruptImageError:
        ok = False
    after = _stat(path)
    if before is None or before != after:
        return ok, None, False
    if checked_ns - after[1] >= FRESH_SECONDS * 1e9:
        return ok, [after[0], after[1], ok], False
    return ok, None, True


def _report_corrupt(bad: list[str], on_corrupt: str) -> None:
    shown = ", ".join(repr(b) for b in bad[:10]) + (
        f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    )
    if on_corrupt == "raise":
        raise CorruptImageError(bad[0], f"{len(bad)} corrupt image file(s): {shown}")
    log.warning("skipping %d corrupt image file(s): %s", len(bad), shown)


# --------------------------------------------------------------------------- manifests
def manifest_path(directory: str) -> str:
    """The verification manifest of the images in ``directory``."""
    from deephash.data.splits import cache_dir

    key = hashlib.sha256(os.path.abspath(directory).encode("utf-8", "surrogateescape")).hexdigest()[
        :32
    ]
    return os.path.join(cache_dir("verified"), key + ".json")


def read_manifest(directory: str) -> dict[str, list]:
    """``{file name: [size, mtime_ns, ok]}`` recorded for ``directory``; ``{}`` when there is
    none. A manifest that cannot be read or is garbled is ignored with a warning."""
    path = manifest_path(directory)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring the unreadable verification manifest %s (%s)", path, e)
        return {}
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(files, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("decoder") != DECODER
        or manifest.get("directory") != os.path.abspath(directory)
    ):
        log.warning(
            "ignoring the verification manifest %s: not a format-%d manifest of %s",
            path,
            MANIFEST_FORMAT,
            directory,
        )
        return {}
    good = {k: v for k, v in files.items() if _valid_entry(v)}
    if len(good) < len(files):
        log.warning(
            "ignoring %d garbled entries of the verification manifest %s",
            len(files) - len(good),
            path,
        )
    return good


def _valid_entry(v) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 3
        and all(type(x) is int for x in v[:2])
        and isinstance(v[2], bool)
    )


def _record(results: dict[str, list]) -> None:
    """Merge ``{path: [size, mtime_ns, ok]}`` into the manifests of their directories
    (atomically; an unwritable cache is logged, not raised)."""
    from deephash.io import write_json

    by_dir: dict[str, dict[str, list]] = {}
    for p, entry in results.items():
        d, name = os.path.split(os.path.abspath(p))
        by_dir.setdefault(d, {})[name] = entry
    for d, entries in by_dir.items():
        files = read_manifest(d)
        files.update(entries)
        try:
            write_json(
                manifest_path(d),
                {"format": MANIFEST_FORMAT, "decoder": DECODER, "directory": d, "files": files},
            )
        except OSError as e:
            log.warning("cannot write the verification manifest of %s (%s)", d, e)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def verification_status(paths: Sequence[str]) -> np.ndarray:
    """Per file, int8 ``(n,)``: ``VERIFIED`` / ``CORRUPT`` (recorded by ``verify_images`` and
    unchanged since: same size and modification time), ``CHANGED`` (recorded, but changed or
    gone since) or ``UNVERIFIED`` (not recorded). One manifest read per directory and one
    ``os.stat`` per recorded file."""
    status = np.full(len(paths), UNVERIFIED, np.int8)
    by_dir: dict[str, list[tuple[int, str, str]]] = {}
    for i, p in enumerate(paths):
        p = os.path.abspath(str(p))
        d, name = os.path.split(p)
        by_dir.setdefault(d, []).append((i, name, p))
    for d, items in by_dir.items():
        files = read_manifest(d)
        if not files:
            continue
        for i, name, p in items:
            entry = files.get(name)
            if entry is None:
                continue
            st = _stat(p)
            if st is None or st[0] != entry[0] or st[1] != entry[1]:
                status[i] = CHANGED
            else:
                status[i] = VERIFIED if entry[2] else CORRUPT
    return status
