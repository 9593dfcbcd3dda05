"""Fetch a file once into a cache, verified, and never leave a half-downloaded file behind.

``fetch(url, path, ...)`` returns ``path`` when a verified copy is already there (no
network access at all); otherwise it downloads ``url`` into a temporary file beside
``path``, checks the byte count against the server's ``Content-Length``, the expected
``size`` and ``file_hash`` (sha256, or md5 as ``keras.applications`` publishes) and an
optional content ``check``, and only then renames it onto ``path``. A download that is
interrupted (connection closed mid-body, Ctrl-C, a crash) or fails a check leaves nothing
at ``path``, so no later call can take it for complete.

Network access can be switched off for air-gapped machines and clusters, in which case
``fetch`` (and the tfds preparation in ``deephash.data``) raise
:class:`DownloadDisabledError` naming the command to run on a machine with internet:

* the environment variable ``DEEPHASH_OFFLINE=1`` (``true``/``yes`` also accepted),
* ``set_network_allowed(False)`` or ``with offline(): ...`` in code,
* ``--download=false`` in the experiment scripts.

Numpy-free and TensorFlow-free: the bottom layer of the library, like ``deephash.io``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from deephash.io import file_digest

log = logging.getLogger(__name__)

OFFLINE_ENV = "DEEPHASH_OFFLINE"
_CHUNK = 1 << 20
_allowed_override: bool | None = None


class DownloadDisabledError(FileNotFoundError):
    """A file (or prepared data set) is missing and network access is switched off.

    A ``FileNotFoundError``, so that code treating "not there" uniformly keeps working; its
    message names what is missing, where it belongs and the command that fetches it."""


class DownloadError(OSError):
    """A download failed or was interrupted (nothing was saved)."""


def network_allowed() -> bool:
    """Whether downloads are allowed: ``set_network_allowed`` if called, else not when
    ``$DEEPHASH_OFFLINE`` is set to 1/true/yes."""
    if _allowed_override is not None:
        return _allowed_override
    return not _env_offline()


def offline_reason() -> str:
    """Why :func:`network_allowed` is False, for error messages ('' when it is True)."""
    if _allowed_override is False:
        return (
            "downloads are switched off (--download=false or "
            "deephash.downloads.set_network_allowed(False))"
        )
    if _allowed_override is None and _env_offline():
        return f"downloads are switched off by ${OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}"
    return ""


def set_network_allowed(allowed: bool | None) -> None:
    """Allow (True) or forbid (False) downloads for this process; None returns to the
    environment variable ``$DEEPHASH_OFFLINE``."""
    global _allowed_override
    if allowed is not None and not isinstance(allowed, bool):
        raise ValueError(
            f"set_network_allowed expects True, False or None. Received: allowed={allowed!r}"
        )
    _allowed_override = allowed


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``with offline(): ...`` forbids downloads inside the block."""
    global _allowed_override
    previous = _allowed_override
    _allowed_override = False
    try:
        yield
    finally:
        _allowed_override = previous


def _env_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def hash_algorithm(file_hash: str) -> str:
    """``sha256`` for a 64-digit hex hash, ``md5`` for a 32-digit one (keras' convention);
    ValueError otherwise."""
    text = str(file_hash).strip().lower()
    if len(text) in (32, 64) and all(c in "0123456789abcdef" for c in text):
        return "sha256" if len(text) == 64 else "md5"
    raise ValueError(
        f"a file hash must be 64 (sha256) or 32 (md5) hex digits. Received: file_hash={file_hash!r}"
    )


def verify(
    path: str,
    *,
    size: int | None = None,
    file_hash: str | None = None,
    check: Callable[[str], None] | None = None,
) -> None:
    """Raise ValueError unless ``path`` has ``size`` bytes, hash ``file_hash`` and passes
    ``check``."""
    if size is not None and os.path.getsize(path) != size:
        raise ValueError(f"{path}: {os.path.getsize(path)} bytes, expected {size}")
    if file_hash is not None:
        algorithm = hash_algorithm(file_hash)
        actual = file_digest(path, algorithm)
        if actual != file_hash.strip().lower():
            raise ValueError(f"{path}: {algorithm} {actual}, expected {file_hash.strip().lower()}")
    if check is not None:
        check(path)


def fetch(
    url: str,
    path: str | os.PathLike,
    *,
    file_hash: str | None = None,
    size: int | None = None,
    check: Callable[[str], None] | None = None,
    what: str | None = None,
    command: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Return the local ``path`` of ``url``, downloading it first if no verified copy is there.

    Args:
        url: ``http(s)://`` or ``file://`` address.
        path: where the file is cached (its folder is created).
        file_hash: expected sha256 (64 hex digits) or md5 (32); None: not checked.
        size: expected size in bytes; None: not checked (the server's Content-Length
            still is).
        check: called with the downloaded file's path; raising rejects the file (e.g. a
            parser that checks the file's structure when no hash is published).
        what: name used in messages (default: the file name).
        command: what to run on a machine with internet when downloads are off
            (default: a ``curl`` line).

    A cached file that fails the checks is removed and downloaded again (or, when
    downloads are off, reported). Raises :class:`DownloadDisabledError` when the file is
    missing and downloads are off, :class:`DownloadError` when the transfer fails or is
    cut short, ValueError when the downloaded file fails a check (it is removed).
    """
    path = os.fspath(path)
    what = what or os.path.basename(path)
    if file_hash is not None:
        hash_algorithm(file_hash)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"size must be a non-negative integer. Received: size={size!r}")
    if os.path.isfile(path):
        try:
            verify(path, size=size, file_hash=file_hash, check=check)
            return path
        except ValueError as e:
            log.warning("%s: the cached copy is invalid (%s); removing it", what, e)
            os.unlink(path)
    if not network_allowed():
        raise DownloadDisabledError(
            f"{what} is not at {path} and {offline_reason()}. On a machine with internet run:\n"
            f"    {command or f'curl -L --create-dirs -o {path} {url}'}\n"
            f"then copy {path} to this machine (or pass the file's local path instead)"
        )
    _download(url, path, file_hash=file_hash, size=size, check=check, what=what, timeout=timeout)
    return path


def _download(url, path, *, file_hash, size, check, what, timeout) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".part", dir=directory)
    _say(f"Downloading {what} from {url}")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(
                    url, timeout=timeout
                )  # http(s):// and file:// by design
            except (urllib.error.URLError, OSError) as e:
                raise DownloadError(f"could not download {what} from {url}: {e}") from e
            with response:
                expected = (
                    response.headers.get("Content-Length") if hasattr(response, "headers") else None
                )
                expected = int(expected) if expected and expected.isdigit() else None
                received, next_report = 0, 0.1
                try:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        received += len(chunk)
                        if (
                            expected
                            and expected > 10 * _CHUNK
                            and received / expected >= next_report
                        ):
                            _say(f"  {int(100 * received / expected)}% of {expected / 1e6:.1f} MB")
                            next_report += 0.1
                except (
                    Exception
                ) as e:  # OSError, http.client.IncompleteRead (an HTTPException), ...
                    raise DownloadError(
                        f"the download of {what} from {url} was interrupted after {received} "
                        f"bytes ({type(e).__name__}: {e}); nothing was saved"
                    ) from e
            if expected is not None and received != expected:
                raise DownloadError(
                    f"the download of {what} from {url} stopped after {received} of {expected} "
                    "bytes; nothing was saved"
                )
            out.flush()
            os.fsync(out.fileno())
        try:
            verify(tmp, size=size, file_hash=file_hash, check=check)
        except ValueError as e:
            raise ValueError(
                f"the file downloaded from {url} for {what} is not the expected one ({e}); "
                "it was removed"
            ) from None
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _say(f"Saved {path}")


def _say(message: str) -> None:
    """Progress of a download on stderr (as keras.utils.get_file prints its own)."""
    print(message, file=sys.stderr, flush=True)
