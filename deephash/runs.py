"""Run directories: one directory per trained model and its evaluation.

Layout (written by ``deephash.experiment.run``)::

    config.json        resolved training config, method hyper-parameters, versions
    split.json         dataset name, protocol, split checksum, split sizes
    model.keras|.npz   the trained method (deephash.methods.load)
    codes.npz          packed query / database codes and their labels
    history.json       training history {metric: [value per epoch]}
    metrics.json       every metric, its conventions, method, dataset, bits, checksum
    pr_curve.png, training_curve.png
    manifest.json      sha256 and size of every other file (written last; checked by
                       load_run, deephash.report and deephash.sweep's reuse)

A run directory is assembled in a temporary sibling directory and renamed into place at
the end, so an interrupted run never leaves a half-written directory behind (a killed
run's staging directory ``.NAME.XXXXXXXX.tmp`` is removed by the next run of the same
directory, :func:`remove_stale`). One process at a time writes a run directory and its
checkpoints (:class:`DirectoryLock`, an OS lock on ``.NAME.lock`` beside it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Iterable, Iterator

import numpy as np

from deephash import codes as codes_lib
from deephash.io import atomic_write, file_digest


def check_out_dir(out_dir: str, overwrite: bool = False) -> str:
    """Validate a run directory target; ValueError if it exists and ``overwrite`` is off."""
    if not out_dir:
        raise ValueError("the run directory (out_dir) must be a non-empty path")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"run directory {out_dir!r} exists and is not a directory")
        if not overwrite and os.listdir(out_dir):
            raise ValueError(
                f"run directory {out_dir!r} already exists (pass overwrite to replace it)"
            )
    check_writable(os.path.dirname(out_dir), f"run directory {out_dir!r}")
    return out_dir


def check_writable(directory: str, what: str) -> None:
    """ValueError unless ``directory`` (or, when it does not exist yet, its nearest existing
    ancestor) is a directory this process can create files in: found before any work
    rather than when the results are written."""
    probe = os.path.abspath(directory)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"cannot write {what}: {probe!r} is a file, not a directory")
    try:  # really create a file: os.access ignores permissions for root and some file systems
        fd, tmp = tempfile.mkstemp(prefix=".deephash-write-check-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(
            f"cannot write {what}: {probe!r} is not writable ({e.strerror or e})"
        ) from None


@contextlib.contextmanager
def staged_dir(out_dir: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary directory beside ``out_dir``; on success it replaces ``out_dir``
    (the old one is removed only after the new one is in place); on error it is deleted."""
    out_dir = check_out_dir(out_dir, overwrite)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a run directory is not
    try:
        yield tmp
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(
                prefix=f".{os.path.basename(out_dir)}.", suffix=".old", dir=parent
            )
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_SOURCE_DIGEST: str | None = None


def source_digest() -> str:
    """sha256 (hex) of the deephash package's Python sources (relative paths and contents).

    It changes exactly when the library code changes, installed or checked out, so a run
    directory records which code produced it (``config.json`` ``versions.deephash_source``)
    and ``deephash.sweep`` can tell runs of other code from runs of this code.
    """
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        root = os.path.dirname(os.path.abspath(__file__))
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
        h = hashlib.sha256()
        for path in sorted(files):
            h.update(os.path.relpath(path, root).replace(os.sep, "/").encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


def _git_commit() -> str | None:
    """The commit of the checkout holding the package (``+dirty`` with local changes), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "deephash"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def versions() -> dict:
    """Versions of deephash (release, source digest, git commit when checked out), Python
    and the main dependencies (for config.json)."""
    from deephash import __version__

    out = {"deephash": __version__, "deephash_source": source_digest()[:16]}
    commit = _git_commit()
    if commit:
        out["deephash_git"] = commit
    out.update({"python": platform.python_version(), "numpy": np.__version__})
    for mod in ("tensorflow", "keras"):
        with contextlib.suppress(Exception):
            out[mod] = __import__(mod).__version__
    return out


def save_codes(path: str, query_codes, db_codes, query_labels, db_labels) -> None:
    """Write packed codes (``codes.pack``) and multi-hot labels to ``path`` (.npz)."""
    q = codes_lib.as_bits(query_codes, name="query codes")
    d = codes_lib.as_bits(db_codes, name="database codes")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"query codes have {q.shape[1]} bits, database codes {d.shape[1]}")
    with atomic_write(path, "wb") as f:
        np.savez_compressed(
            f,
            bits=np.int64(q.shape[1]),
            query=codes_lib.pack(q),
            database=codes_lib.pack(d),
            query_labels=np.asarray(query_labels, dtype=np.uint8),
            database_labels=np.asarray(db_labels, dtype=np.uint8),
        )


def load_codes(path: str) -> dict:
    """Read a :func:`save_codes` file: ``query``/``database`` as bool (n, bits), labels."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no codes file at {path!r} (expected in a run directory)")
    try:
        with np.load(path, allow_pickle=False) as z:
            bits = int(z["bits"])
            return {
                "bits": bits,
                "query": codes_lib.unpack(z["query"], bits),
                "database": codes_lib.unpack(z["database"], bits),
                "query_labels": z["query_labels"],
                "database_labels": z["database_labels"],
            }
    except Exception as e:  # zipfile.BadZipFile, EOFError, KeyError, zlib.error, ValueError...
        raise CorruptRunError(f"{path}: damaged codes file ({type(e).__name__}: {e})") from e


def load_run(run_dir: str) -> dict:
    """The JSON files of a run directory as dicts (``config``, ``split``, ``metrics``,
    ``history``) plus ``dir`` and ``model`` (the model file's path) and ``verified``
    (whether a ``manifest.json`` vouched for the JSON files; False for run directories
    written before manifests). :class:`CorruptRunError` (a ValueError) naming the file when
    one is damaged or differs from the manifest."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no run directory at {run_dir!r}")
    out: dict = {"dir": os.path.abspath(run_dir)}
    names = [
        n
        for n in ("config", "split", "metrics", "history")
        if os.path.exists(os.path.join(run_dir, f"{n}.json"))
    ]
    out["verified"] = verify_run(run_dir, [f"{n}.json" for n in names])
    for name in names:
        out[name] = read_json(os.path.join(run_dir, f"{name}.json"), f"{name}.json")
    for ext in (".keras", ".npz"):
        p = os.path.join(run_dir, "model" + ext)
        if os.path.exists(p):
            out["model"] = p
    if "metrics" not in out:
        raise FileNotFoundError(f"{run_dir!r} has no metrics.json: not a finished run directory")
    return out


# --------------------------------------------------------------------------- integrity
class CorruptRunError(ValueError):
    """A run directory (or one of its files) is damaged: unreadable, or its content does not
    match the hashes in its ``manifest.json``. The message names the directory and file."""


MANIFEST = "manifest.json"


def write_manifest(run_dir: str) -> dict:
    """Write ``run_dir/manifest.json``: the sha256 and size of every other file in the run
    directory (relative paths, ``/``-separated), atomically. Called last, on the staged
    directory, so a run directory appears together with its manifest."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, run_dir).replace(os.sep, "/")
            if rel == MANIFEST:
                continue
            files[rel] = {"sha256": file_digest(path), "size": os.path.getsize(path)}
    manifest = {"format": 1, "algorithm": "sha256", "files": files}
    from deephash.io import write_json

    write_json(os.path.join(run_dir, MANIFEST), manifest)
    return manifest


def verify_run(run_dir: str, files: Iterable[str] | None = None) -> bool:
    """Check files of ``run_dir`` against its ``manifest.json``: ``files`` (relative names;
    default every file the manifest lists). Returns True when verified, False when the run
    directory has no manifest (written before manifests existed: nothing to check against).
    Raises :class:`CorruptRunError` naming the file when one is missing, unreadable or
    differs from its recorded hash, or when the manifest itself is damaged."""
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            listed = json.load(f)["files"]
        if not isinstance(listed, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptRunError(f"{path}: damaged manifest ({type(e).__name__}: {e})") from e
    for name in listed if files is None else files:
        entry = listed.get(name)
        target = os.path.join(run_dir, *name.split("/"))
        if entry is None:
            if os.path.exists(target):
                raise CorruptRunError(
                    f"{target}: not listed in {path} (added after the run finished)"
                )
            continue
        try:
            digest = file_digest(target)
        except OSError as e:
            raise CorruptRunError(
                f"{target}: listed in {MANIFEST} but unreadable ({e.strerror or e})"
            ) from e
        if digest != entry.get("sha256"):
            raise CorruptRunError(
                f"{target}: content differs from the sha256 recorded in {MANIFEST} "
                "(the file was edited or damaged after the run finished)"
            )
    return True


def read_json(path: str, what: str = "JSON file") -> dict:
    """Load a JSON file; a damaged one raises :class:`CorruptRunError` naming ``path`` and
    what is wrong (instead of a bare ``JSONDecodeError``)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise CorruptRunError(
            f"{path}: damaged {what} (not UTF-8 text: {e.reason} at byte {e.start})"
        ) from e
    except ValueError as e:
        raise CorruptRunError(f"{path}: damaged {what} ({e})") from e


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name} (NaN/Infinity are not JSON)")


# --------------------------------------------------------------------------- one writer
class DirectoryLockedError(RuntimeError):
    """Another process holds the lock of a run or checkpoint directory."""


def lock_path(directory: str) -> str:
    """The lock file of ``directory``: a hidden sibling ``.<name>.lock``."""
    directory = os.path.abspath(os.fspath(directory))
    return os.path.join(os.path.dirname(directory), f".{os.path.basename(directory)}.lock")


class DirectoryLock:
    """An exclusive, non-blocking OS lock (``fcntl.flock``) on ``directory``'s lock file
    (:func:`lock_path`), so one process at a time writes a run directory or a checkpoint
    directory. The kernel releases it when the holder exits, however it dies (``kill -9``
    leaves no stale lock). A second writer gets :class:`DirectoryLockedError` at once.
    Reentrant within one process (a nested acquire of a held path is a no-op)."""

    _held: dict = {}

    def __init__(self, directory: str, what: str = "directory"):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = lock_path(self.directory)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "DirectoryLock":
        import fcntl

        if self.path in DirectoryLock._held:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = f" (process {int(os.pread(fd, 32, 0).decode().strip())})"
                os.close(fd)
                raise DirectoryLockedError(
                    f"{self.what} {self.directory!r} is in use by another run{holder}: one writer "
                    f"at a time (lock file {self.path})"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the holder before us may have removed the file after we opened it: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        DirectoryLock._held[self.path] = self
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        DirectoryLock._held.pop(self.path, None)
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: a waiting opener re-checks the inode
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


_STALE = r"^\.{name}\.[A-Za-z0-9_]{{8}}\.(tmp|old)$"


def remove_stale(directory: str) -> list[str]:
    """Remove what a killed writer of ``directory`` left beside it: the staging directories
    ``.NAME.XXXXXXXX.tmp`` / ``.old`` of :func:`staged_dir`. Call only while holding the
    directory's :class:`DirectoryLock` (then no other writer can be using them). Returns
    the removed paths."""
    import re

    directory = os.path.abspath(os.fspath(directory))
    parent, name = os.path.split(directory)
    pattern = re.compile(_STALE.format(name=re.escape(name)))
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(parent):
            path = os.path.join(parent, entry)
            if pattern.match(entry) and os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
