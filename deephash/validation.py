"""Argument checks shared by the whole library (numpy only), with one message format.

Every check raises ``ValueError`` (or ``TypeError`` for a value of the wrong kind where the
caller asked for it) with the message::

    "{owner}: {name} must be {requirement}. Received: {name}={value!r}"

``owner`` (a method, layer or function name) is optional. Booleans are never integers here,
and numpy integers and floats are accepted wherever Python ones are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "is_int",
    "is_number",
    "check_int",
    "check_number",
    "check_fraction",
    "check_choice",
    "check_bool",
    "fail",
]


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for booleans and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for finite or infinite real numbers (ints and floats, numpy's too), not booleans."""
    return is_int(value) or (
        isinstance(value, (float, np.floating)) and not isinstance(value, (bool, np.bool_))
    )


def message(name: str, requirement: str, value: Any, owner: str | None = None) -> str:
    """The library's one error-message format."""
    prefix = f"{owner}: " if owner else ""
    return f"{prefix}{name} must be {requirement}. Received: {name}={value!r}"


def fail(name: str, requirement: str, value: Any, owner: str | None = None):
    """Raise ``ValueError`` in the library's format."""
    raise ValueError(message(name, requirement, value, owner))


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = 1,
    maximum: int | None = None,
    owner: str | None = None,
) -> int:
    """``value`` as a Python int, or ValueError unless it is an integer in [minimum, maximum].

    The default ``minimum=1`` asks for a positive integer; ``minimum=0`` a non-negative one;
    ``minimum=None`` any integer.
    """
    if minimum == 1 and maximum is None:
        requirement = "a positive integer"
    elif minimum == 0 and maximum is None:
        requirement = "a non-negative integer"
    elif minimum is None and maximum is None:
        requirement = "an integer"
    elif maximum is None:
        requirement = f"an integer >= {minimum}"
    elif minimum is None:
        requirement = f"an integer <= {maximum}"
    else:
        requirement = f"an integer in [{minimum}, {maximum}]"
    if not is_int(value):
        fail(name, requirement, value, owner)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(name, requirement, value, owner)
    return int(value)


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    finite: bool = True,
    owner: str | None = None,
) -> float:
    """``value`` as a Python float, or ValueError unless it is a real number within bounds.

    ``positive`` excludes zero and below; ``minimum``/``maximum`` are inclusive; ``finite``
    (default) rejects NaN and infinities.
    """
    parts = []
    if positive:
        parts.append("> 0")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    kind = "a finite number" if finite else "a number"
    requirement = kind + (" " + " and ".join(parts) if parts else "")
    if not is_number(value):
        fail(name, requirement, value, owner)
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        fail(name, requirement, value, owner)
    if (positive and v <= 0) or (minimum is not None and v < minimum):
        fail(name, requirement, value, owner)
    if maximum is not None and v > maximum:
        fail(name, requirement, value, owner)
    return v


def check_fraction(
    value: Any,
    name: str,
    *,
    allow_zero: bool = False,
    allow_one: bool = False,
    owner: str | None = None,
) -> float:
    """A number in (0, 1), with either end included on request."""
    low = "[0" if allow_zero else "(0"
    high = "1]" if allow_one else "1)"
    requirement = f"a number in {low}, {high}"
    if not is_number(value):
        fail(name, requirement, value, owner)
    v = float(value)
    ok_low = v >= 0 if allow_zero else v > 0
    ok_high = v <= 1 if allow_one else v < 1
    if math.isnan(v) or not (ok_low and ok_high):
        fail(name, requirement, value, owner)
    return v


def check_choice(value: Any, options: Iterable[Any], name: str, *, owner: str | None = None):
    """``value`` unchanged, or ValueError unless it is one of ``options``."""
    options = tuple(options)
    try:
        ok = value in options
    except TypeError:  # unhashable values in a set-like container
        ok = False
    if not ok:
        fail(name, f"one of {', '.join(repr(o) for o in options)}", value, owner)
    return value


def check_bool(value: Any, name: str, *, owner: str | None = None) -> bool:
    """``value`` as bool, or ValueError unless it is True or False (numpy's included)."""
    if not isinstance(value, (bool, np.bool_)):
        fail(name, "True or False", value, owner)
    return bool(value)
