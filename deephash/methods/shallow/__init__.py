"""Shallow (non-deep) hashing baselines fit on feature vectors, in numpy/scipy.

Importing this package registers ``lsh``, ``pcah``, ``sh``, ``itq``, ``itq-cca``, ``ksh``
and ``sdh`` with ``deephash.methods.create``. Every method follows
``deephash.methods.base.ShallowMethod``: ``fit(features, labels=None, seed=0)``,
``encode(features) -> bool (n, bits)``, ``save(path.npz)`` / ``deephash.methods.load``.
"""

from deephash.methods.shallow.itq import ITQ
from deephash.methods.shallow.itq_cca import ITQCCA
from deephash.methods.shallow.ksh import KSH
from deephash.methods.shallow.lsh import LSH
from deephash.methods.shallow.pcah import PCAH
from deephash.methods.shallow.sdh import SDH
from deephash.methods.shallow.sh import SH

__all__ = ["ITQ", "ITQCCA", "KSH", "LSH", "PCAH", "SDH", "SH"]
