"""Atomic file writing: results are written to a temporary file and renamed, so a
crash never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; honour the umask like open()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib`` algorithm name), read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented, strict JSON (numpy scalars/arrays converted).
    NaN or infinite numbers are not JSON: ValueError naming ``path`` and where the value
    is, and nothing is written."""
    text = dumps_strict(obj, indent=2, what=os.fspath(path))
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def dumps_strict(obj: Any, what: str = "JSON", **kwargs) -> str:
    """``json.dumps`` with ``allow_nan=False`` (numpy values converted); a NaN or infinity
    raises ValueError naming ``what`` and the first key path holding one."""
    try:
        return json.dumps(obj, allow_nan=False, default=_to_builtin, **kwargs)
    except ValueError as e:
        where = _first_non_finite(json.loads(json.dumps(obj, default=_to_builtin)), "")
        raise ValueError(
            f"{what}: refusing to write a non-finite number{f' at {where}' if where else ''} "
            f"(NaN/Infinity are not valid JSON): {e}"
        ) from None


def _first_non_finite(obj: Any, where: str) -> str | None:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "the top level"
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        found = _first_non_finite(v, f"{where}[{k!r}]")
        if found:
            return found
    return None


def _to_builtin(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return os.fspath(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")
