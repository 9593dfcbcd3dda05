"""Binary codes: validation, packing into bytes and into 64-bit words.

Codes handed between modules are ``bool`` arrays of shape ``(n, k)``. Accepted inputs are
``bool``, ``{0, 1}`` and ``{-1, +1}`` arrays of any length ``k >= 1``, or codes already packed
by :func:`pack` (``uint8 (n, ceil(k/8))``) when the caller says so with ``packed=True`` and
``n_bits``. Packing is never guessed from dtype and shape: a ``uint8`` array of 0/1 with
``ceil(k/8)`` columns is a ``ceil(k/8)``-bit code unless ``packed=True``.

Packing follows ``np.packbits``: bit ``j`` of an item is bit ``7 - j % 8`` of byte ``j // 8``;
the unused low bits of the last byte are zero.

>>> pack(np.array([[1, 0, 1, 1]]))
array([[176]], dtype=uint8)
>>> unpack(pack(np.array([[-1, 1, 1]])), 3)
array([[False,  True,  True]])
"""

from __future__ import annotations

import numpy as np

from deephash.validation import check_int

__all__ = ["as_bits", "pack", "unpack", "as_words", "n_bytes", "collapse_start"]


def n_bytes(n_bits: int) -> int:
    """Bytes per packed code: ``ceil(n_bits / 8)``."""
    return (int(n_bits) + 7) // 8


def _check_packed(arr: np.ndarray, n_bits, name: str) -> np.ndarray:
    """Validate codes said to be packed: ``uint8 (n, ceil(n_bits/8))``, zero padding bits."""
    if n_bits is None:
        raise ValueError(
            f"{name}: packed=True needs n_bits (the code length cannot be read from packed bytes)"
        )
    check_int(n_bits, "n_bits")
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(
            f"{name}: packed codes must be a uint8 array (n, bytes), got {arr.dtype} {arr.shape}"
        )
    if arr.shape[1] != n_bytes(n_bits):
        raise ValueError(
            f"{name}: packed codes have {arr.shape[1]} bytes, but {n_bits} bits need "
            f"{n_bytes(n_bits)} (mismatched bit lengths)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got shape {arr.shape}")
    pad = 8 * arr.shape[1] - n_bits
    if pad and np.any(arr[:, -1] & np.uint8((1 << pad) - 1)):
        raise ValueError(
            f"{name}: packed {n_bits}-bit codes have non-zero padding bits in their last byte"
        )
    return np.ascontiguousarray(arr)


def as_bits(
    codes, n_bits: int | None = None, name: str = "codes", *, packed: bool = False
) -> np.ndarray:
    """Validate codes and return them as ``bool (n, k)``.

    Args:
        codes: bool, {0, 1} or {-1, +1} array ``(n, k)``; with ``packed=True`` packed
            ``uint8 (n, ceil(k/8))`` from :func:`pack`.
        n_bits: expected code length ``k`` (checked when given; required with ``packed``).
        name: used in error messages.
        packed: the codes are packed bytes (never guessed from dtype or shape).

    Raises:
        ValueError: wrong ndim, empty, NaN, values outside {0,1} / {-1,+1}, a mix of -1 and 0,
            or a length different from ``n_bits``.
    """
    arr = np.asarray(codes)
    if packed:
        return unpack(_check_packed(arr, n_bits, name), n_bits)
    return _validate_bits(arr, n_bits, name)


def _validate_bits(arr: np.ndarray, n_bits: int | None, name: str) -> np.ndarray:
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n, bits), got shape {arr.shape} "
            "(use codes.reshape(1, -1) for a single code)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: got shape {arr.shape}")
    if n_bits is not None and arr.shape[1] != n_bits:
        hint = " (packed codes? say so with packed=True)" if arr.shape[1] == n_bytes(n_bits) else ""
        raise ValueError(
            f"{name} have {arr.shape[1]} bits, expected {n_bits} (mismatched bit lengths){hint}"
        )
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric or bool, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contain NaN")
    pos = arr == 1
    zero = arr == 0
    neg = arr == -1 if arr.dtype.kind in "if" else np.zeros((), bool)
    bad = ~(pos | zero | neg)
    if bad.any():
        value = arr[bad].flat[0]
        raise ValueError(
            f"{name} are not binary: found value {value!r} (expected bool, {{0,1}} or {{-1,+1}})"
        )
    if np.any(neg) and np.any(zero):
        raise ValueError(f"{name} mix -1 and 0: use either {{0,1}} or {{-1,+1}}")
    return np.ascontiguousarray(pos)


def pack(bits) -> np.ndarray:
    """Pack codes ``(n, k)`` (bool, {0,1} or {-1,+1}) into ``uint8 (n, ceil(k/8))``."""
    return np.packbits(_validate_bits(np.asarray(bits), None, "bits"), axis=1)


def unpack(packed, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``uint8 (n, ceil(k/8)) -> bool (n, k)``."""
    arr = np.asarray(packed)
    check_int(n_bits, "n_bits")
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(
            f"packed codes must be a uint8 array (n, bytes), got {arr.dtype} {arr.shape}"
        )
    if arr.shape[1] != n_bytes(n_bits):
        raise ValueError(
            f"packed codes have {arr.shape[1]} bytes, but {n_bits} bits need {n_bytes(n_bits)} "
            "(mismatched bit lengths)"
        )
    return np.unpackbits(arr, axis=1, count=int(n_bits)).astype(bool)


def as_words(
    codes, n_bits: int | None = None, name: str = "codes", *, packed: bool = False
) -> tuple[np.ndarray, int]:
    """Codes as ``uint64 (n, ceil(k/64))`` words for the distance kernels, and ``k``.

    ``codes`` as in :func:`as_bits` (``packed=True``: packed bytes, ``n_bits`` required).
    The bytes of :func:`pack` are zero-padded to a multiple of 8 and viewed as uint64; the
    byte order inside a word is irrelevant for Hamming distances (popcount of XOR).
    """
    arr = np.asarray(codes)
    if packed:
        data = _check_packed(arr, n_bits, name)
        k = int(n_bits)
    else:
        bits = _validate_bits(arr, n_bits, name)
        k = bits.shape[1]
        data = np.packbits(bits, axis=1)
    return bytes_to_words(data), k


def bytes_to_words(packed: np.ndarray) -> np.ndarray:
    """Zero-pad packed bytes ``(n, b)`` to a multiple of 8 bytes and view them as uint64."""
    n, b = packed.shape
    w = (b + 7) // 8
    out = np.zeros((n, 8 * w), np.uint8)
    out[:, :b] = packed
    return out.view(np.uint64)


def collapse_start(distinct_counts) -> int | None:
    """Index of the first validation of the final stretch in which the codes were one code
    (``distinct_counts``: distinct codes at each validation), or None when the last
    validation had more than one. Training that passes through one code and recovers (an
    early saturation it escapes) is not a collapse: only one that lasts to the end is.

    >>> collapse_start([240, 100, 1, 1]), collapse_start([1, 1, 40, 300]), collapse_start([])
    (2, None, None)
    """
    counts = [int(c) for c in distinct_counts]
    if not counts or counts[-1] > 1:
        return None
    i = len(counts)
    while i > 0 and counts[i - 1] <= 1:
        i -= 1
    return i
