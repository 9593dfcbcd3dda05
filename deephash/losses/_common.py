"""Small helpers shared by the loss modules."""

from __future__ import annotations

from typing import Any

from keras import ops

from deephash.validation import check_number


def as_float(x: Any):
    """Convert to float32, or keep float64 (half precision is upcast: losses are computed
    in float32 under mixed precision)."""
    x = ops.convert_to_tensor(x)
    if "float64" not in str(x.dtype):
        x = ops.cast(x, "float32")
    return x


def check_rank(x, rank: int, what: str) -> None:
    if len(x.shape) != rank:
        raise ValueError(f"{what} must have rank {rank}, got shape {tuple(x.shape)}")


def check_same_shape(tensors: dict, what: str) -> None:
    """ValueError unless all tensors have compatible static shapes (None matches anything)."""
    names = list(tensors)
    ref_name = names[0]
    ref = tuple(tensors[ref_name].shape)
    for name in names[1:]:
        shape = tuple(tensors[name].shape)
        if len(shape) != len(ref) or any(
            a is not None and b is not None and a != b for a, b in zip(ref, shape)
        ):
            raise ValueError(f"{what}: {ref_name} has shape {ref} but {name} has shape {shape}")


def check_margin(margin: Any) -> float:
    """The triplet hinge's margin: a finite number >= 0, as float."""
    return check_number(margin, "margin", minimum=0)


def split_triple(y_pred, what: str) -> tuple:
    """``y_pred`` as a sequence of 3 tensors or a stacked ``(m, 3, k)`` tensor -> 3 tensors."""
    if isinstance(y_pred, (list, tuple)):
        if len(y_pred) != 3:
            raise ValueError(
                f"{what}: expected (anchor, positive, negative), got {len(y_pred)} tensors"
            )
        return tuple(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 3 or y_pred.shape[1] != 3:
        raise ValueError(
            f"{what}: y_pred must be a tuple (h, h_pos, h_neg) or a stacked tensor of shape "
            f"(m, 3, k), got shape {tuple(y_pred.shape)}"
        )
    return y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]
