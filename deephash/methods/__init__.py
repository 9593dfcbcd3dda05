"""Hashing methods behind one interface; see ``deephash.methods.base``.

``factory(name)`` is the class registered as ``name`` (its ``family`` and
``resolve_hparams`` work on the class); ``create(name, bits=, dataset=, **hparams)`` builds
one; ``load(path)`` restores a saved one.
"""

# Each method module registers itself on import.
from deephash.methods import (  # noqa: F401  (registers every method)
    cnnh,
    dhn,
    dpsh,
    dseh,
    dsrh,
    hashnet,
    ninh,
    shallow,  # lsh, pcah, sh, itq, itq-cca, ksh, sdh
)
from deephash.methods.base import (
    HashingMethod,
    ShallowMethod,
    available,
    check_bits,
    create,
    factory,
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
    "factory",
    "family",
    "load",
    "register",
    "register_loader",
]
