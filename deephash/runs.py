"""Run directories: one directory per trained model and its evaluation.

Layout (written by ``deephash.experiment.run``)::

    config.json        resolved training config, method hyper-parameters, versions
    split.json         dataset name, protocol, split checksum, split sizes
    model.keras|.npz   the trained method (deephash.methods.load)
    codes.npz          packed query / database codes and their labels
    history.json       training history {metric: [value per epoch]}
    metrics.json       every metric, its conventions, method, dataset, bits, checksum
    pr_curve.png, training_curve.png

A run directory is assembled in a temporary sibling directory and renamed into place at
the end, so an interrupted run never leaves a half-written directory behind.
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
from typing import Iterator

import numpy as np

from deephash import codes as codes_lib
from deephash.io import atomic_write


def check_out_dir(out_dir: str, overwrite: bool = False) -> str:
    """Validate a run directory target; ValueError if it exists and ``overwrite`` is off."""
    if not out_dir:
        raise ValueError("the run directory (out_dir) must be a non-empty path")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"run directory {out_dir!r} exists and is not a directory")
        if not overwrite and os.listdir(out_dir):
            raise ValueError(f"run directory {out_dir!r} already exists (pass overwrite to replace it)")
    return out_dir


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
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".old", dir=parent)
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
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "deephash"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
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
    with np.load(path, allow_pickle=False) as z:
        bits = int(z["bits"])
        return {
            "bits": bits,
            "query": codes_lib.unpack(z["query"], bits),
            "database": codes_lib.unpack(z["database"], bits),
            "query_labels": z["query_labels"],
            "database_labels": z["database_labels"],
        }


def load_run(run_dir: str) -> dict:
    """The JSON files of a run directory as dicts (``config``, ``split``, ``metrics``,
    ``history``) plus ``dir`` and ``model`` (the model file's path)."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no run directory at {run_dir!r}")
    out: dict = {"dir": os.path.abspath(run_dir)}
    for name in ("config", "split", "metrics", "history"):
        p = os.path.join(run_dir, f"{name}.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                out[name] = json.load(f)
    for ext in (".keras", ".npz"):
        p = os.path.join(run_dir, "model" + ext)
        if os.path.exists(p):
            out["model"] = p
    if "metrics" not in out:
        raise FileNotFoundError(f"{run_dir!r} has no metrics.json: not a finished run directory")
    return out
