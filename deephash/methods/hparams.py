"""The hyper-parameter table of the deep methods.

Every Keras method lists its constructor arguments in one table, ``HPARAMS``: a dict from
the argument's name to an :class:`HParam` (default + a check from ``deephash.validation``).
The table is validated once (:meth:`KerasHashingMethod.check_hparams`), saved by
``get_config`` (entries with ``saved=True``, in table order) and reported by ``hparams()``::

    HPARAMS = {
        **hp.protocol("bits", "backbone", "num_classes", "multilabel", backbone="cnn_f"),
        "eta": hp.HParam(0.002, hp.number(minimum=0)),
        "pairs": hp.HParam("table", hp.choice("table", "batch")),
        **hp.protocol("image_shape", "preprocessing", "augment", "weights", "input_shape"),
    }

A check is a function ``check(value, name, owner) -> value`` that returns the normalised
value (``float`` for numbers, ``int`` for integers, ...) or raises ``ValueError`` in the
library's format (``"{owner}: {name} must be .... Received: {name}=..."``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from deephash import validation

Check = Callable[[Any, str, str], Any]


class _Required:
    """Default of an argument that has none (``bits``; ``num_classes`` of DSEH)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


def as_is(value, name, owner):
    """No check: the value as given."""
    return value


@dataclasses.dataclass(frozen=True)
class HParam:
    """One constructor argument: its ``default`` (``REQUIRED`` for none), its ``check``,
    whether ``get_config`` saves it (``saved=False``: construction only, e.g. a weights
    file) and the attribute holding it (``attr``, default: its name)."""

    default: Any = None
    check: Check = as_is
    saved: bool = True
    attr: str | None = None


# ----------------------------------------------------------------------------- checks
def integer(minimum: int | None = 1) -> Check:
    """An integer ``>= minimum`` (default: positive), as ``int``."""
    return lambda v, name, owner: validation.check_int(v, name, minimum=minimum, owner=owner)


def number(
    minimum: float | None = None, *, positive: bool = False, maximum: float | None = None
) -> Check:
    """A finite number within bounds (``positive``: > 0), as ``float``."""
    return lambda v, name, owner: validation.check_number(
        v, name, minimum=minimum, maximum=maximum, positive=positive, owner=owner
    )


def choice(*options: str, lower: bool = False) -> Check:
    """One of ``options`` (compared after ``str(value).lower()`` with ``lower``)."""

    def check(v, name, owner):
        return validation.check_choice(str(v).lower() if lower else v, options, name, owner=owner)

    return check


def boolean(v, name, owner) -> bool:
    """True or False (numpy's included)."""
    return validation.check_bool(v, name, owner=owner)


def flag(v, name, owner) -> bool:
    """``bool(value)``: any value, read as a switch."""
    return bool(v)


def optional(check: Check) -> Check:
    """None, or a value passing ``check``."""
    return lambda v, name, owner: None if v is None else check(v, name, owner)


def shape(v, name, owner):
    """An image shape ``(h, w, ch)`` as a tuple of ints, or None."""
    return None if v is None else tuple(int(d) for d in v)


def code_length(v, name, owner) -> int:
    """A code length (``methods.base.check_bits``)."""
    from deephash.methods.base import check_bits

    return check_bits(v, method=owner)


# ----------------------------------------------------------------------------- shared entries
_PROTOCOL = {
    "bits": HParam(REQUIRED, code_length),
    # ImgNet's / the method's backbone: a name for deephash.backbones.get or a keras.Model
    "backbone": HParam(None),
    "num_classes": HParam(10, integer()),
    "multilabel": HParam(False, flag),
    "image_shape": HParam(None, shape),
    "preprocessing": HParam(None),
    "augment": HParam(False, flag),
    # construction only: a named backbone's weights file and input shape
    "weights": HParam(None, saved=False),
    "input_shape": HParam(None, saved=False),
}


def protocol(*names: str, **defaults) -> dict[str, HParam]:
    """The shared entries ``names`` (bits, backbone, num_classes, multilabel, image_shape,
    preprocessing, augment, weights, input_shape), with ``defaults`` replacing theirs."""
    out = {}
    for name in names:
        entry = _PROTOCOL[name]
        if name in defaults:
            entry = dataclasses.replace(entry, default=defaults[name])
        out[name] = entry
    return out


def check_table(table: dict[str, HParam], values: dict, owner: str) -> dict:
    """Every entry of ``table``: its value in ``values`` (else its default) after its check.
    ValueError for a missing required value."""
    out = {}
    for name, entry in table.items():
        value = values.get(name, entry.default)
        if value is REQUIRED:
            validation.fail(name, "given (it has no default)", None, owner)
        out[name] = entry.check(value, name, owner)
    return out


__all__ = [
    "HParam",
    "REQUIRED",
    "as_is",
    "boolean",
    "check_table",
    "choice",
    "code_length",
    "flag",
    "integer",
    "number",
    "optional",
    "protocol",
    "shape",
]
