"""Checkpoint directories of runs: which checkpoints belong to which settings, and what the
library may delete.

A checkpoint directory holds ``run.json`` (a key hashing the run's settings, and the
settings themselves), the per-epoch ``ckpt-<epoch>.npz`` files of
``deephash.training.save_checkpoint``, the best weights of early stopping
(``best-<validation>.npz``, ``deephash.early_stopping``) and, for CNNH, ``cnnh_stage1.npz``.
The rules:

* the library never deletes a directory it did not create, nor a file it did not write:
  a non-empty directory without ``run.json`` is refused (ValueError naming it);
* checkpoints of other settings, or an unreadable ``run.json``, stop the run with a
  ValueError naming the directory and the settings that differ; ``overwrite=True`` (the
  ``--overwrite_checkpoints`` flag) discards them, i.e. removes only the library's files;
* the same settings resume from the latest readable checkpoint.

Call these while holding the directory's ``runs.DirectoryLock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re

from deephash.io import write_json

log = logging.getLogger(__name__)

MARKER = "run.json"
# files the library writes into a checkpoint directory (and atomic_write's temporary files of them)
_OURS = re.compile(
    r"^(run\.json|ckpt-\d+\.npz|best-\d+\.npz|cnnh_stage1\.npz)(\.[A-Za-z0-9_]{8}\.tmp)?$"
)


def settings_key(fingerprint: dict) -> str:
    """sha256 (hex) of the canonical JSON of a run's settings."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix or "(settings)": d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(stored: dict, current: dict, limit: int = 6) -> str:
    """``"config.lr: 0.02 -> 0.05, bits: 16 -> 32"``: the settings that differ (dotted keys)."""
    a, b = (
        _flatten(json.loads(json.dumps(stored, default=str))),
        _flatten(json.loads(json.dumps(current, default=str))),
    )
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    text = ", ".join(
        f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys[:limit]
    )
    return (
        text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
        if keys
        else "(unknown)"
    )


def library_files(directory: str) -> list[str]:
    """Names of the files in ``directory`` that the library wrote there."""
    return sorted(
        e
        for e in os.listdir(directory)
        if _OURS.match(e) and os.path.isfile(os.path.join(directory, e))
    )


def prepare(directory: str, fingerprint: dict, overwrite: bool = False) -> str:
    """Make ``directory`` the checkpoint directory of the run with settings ``fingerprint``
    (see the module docstring). Returns ``"new"``, ``"resume"`` or ``"discarded"``."""
    directory = os.path.abspath(os.fspath(directory))
    marker = os.path.join(directory, MARKER)
    key = settings_key(fingerprint)
    state = "new"
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint directory {directory!r} is a file, not a directory")
    if os.path.isdir(directory) and os.listdir(directory):
        if not os.path.isfile(marker):
            raise ValueError(
                f"checkpoint directory {directory!r} is not empty and holds no {MARKER}: it is "
                "not a deephash checkpoint directory, and the library never deletes what it did "
                "not write; pass an empty or new directory (--checkpoint_dir)"
            )
        try:
            with open(marker, encoding="utf-8") as f:
                stored = json.load(f)
            if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
                raise ValueError("no 'settings' object")
            problem = (
                None
                if stored.get("key") == key
                else "its checkpoints belong to other settings "
                f"({differences(stored['settings'], fingerprint)})"
            )
        except (OSError, ValueError) as e:
            problem = (
                f"its {MARKER} is damaged ({type(e).__name__}: {e}), so the checkpoints cannot "
                "be matched"
            )
        if problem is None:
            state = "resume"
            log.info("resuming from checkpoints in %s", directory)
            for name in library_files(directory):
                if name.endswith(".tmp"):  # an interrupted atomic write of a killed run
                    os.unlink(os.path.join(directory, name))
        elif not overwrite:
            raise ValueError(
                f"checkpoint directory {directory!r}: {problem}. Nothing was deleted: pass "
                "overwrite_checkpoints=True (--overwrite_checkpoints) to discard them, or use "
                "another checkpoint directory / --out"
            )
        else:
            discard(directory)
            state = "discarded"
            log.warning(
                "checkpoint directory %s: %s; discarded them (overwrite_checkpoints)",
                directory,
                problem,
            )
    os.makedirs(directory, exist_ok=True)
    write_json(marker, {"key": key, "settings": fingerprint})
    return state


def discard(directory: str) -> list[str]:
    """Remove the library's files from ``directory`` (nothing else). Returns their names."""
    names = library_files(directory)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    return names


def remove(directory: str) -> None:
    """Remove a checkpoint directory the library created once its run is finished: the
    library's files, then the directory if that left it empty (anything else stays)."""
    if not os.path.isdir(directory):
        return
    discard(directory)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


__all__ = ["prepare", "discard", "remove", "differences", "library_files", "settings_key"]
