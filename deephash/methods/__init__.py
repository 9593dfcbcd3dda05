"""Hashing methods behind one interface; see ``deephash.methods.base``."""

# Each method module registers itself on import.
# (method modules are imported below as they are added)
from deephash.methods import (  # noqa: F401, E402  (deep baselines)
    cnnh,
    dhn,
    dpsh,
    dseh,  # noqa: F401, E402
    dsrh,  # noqa: F401, E402
    hashnet,
    ninh,
    shallow,  # noqa: F401, E402  (registers lsh, pcah, ...)
)
from deephash.methods.base import (
    HashingMethod,
    ShallowMethod,
    available,
    check_bits,
    create,
    family,
    load,
    register,
    register_loader,
)

__all__ = [
    "HashingMethod",
    "ShallowMethod",
    "available",
    "check_bits",
    "create",
    "family",
    "load",
    "register",
    "register_loader",
]
