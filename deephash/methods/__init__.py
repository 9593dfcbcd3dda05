"""Hashing methods behind one interface; see ``deephash.methods.base``."""
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

# Each method module registers itself on import.
# (method modules are imported below as they are added)
from deephash.methods import shallow  # noqa: F401, E402  (registers lsh, pcah, ...)
from deephash.methods import dsrh  # noqa: F401, E402
from deephash.methods import dseh  # noqa: F401, E402
from deephash.methods import cnnh, dhn, dpsh, hashnet, ninh  # noqa: F401, E402  (deep baselines)

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
