"""CNNH and CNNH+ (Xia, Pan, Lai, Liu & Yan, AAAI 2014): supervised hashing via image
representation learning, in two stages.

**Stage 1** (§"Stage 1: learning approximate hash codes"): from the training labels build
``S`` (n x n), ``s_ij = 1`` when items i and j share a label and -1 otherwise, and solve

    min_H || S - (1/q) H Hᵀ ||²_F    subject to H ∈ [-1, 1]^{n x q}           (Eq. 1-2)

by random coordinate descent: each step changes one entry ``H_ij`` by the ``d`` that
minimises the objective with everything else fixed. With the residual ``R = qS - HHᵀ``,
``h = H[:, j]``, ``A = Σ_{l≠i} h_l R_il`` and ``B = Σ_{l≠i} h_l²`` the change of
``||R||²`` is the quartic ``g(d) = -4dA + 2d²B + (R_ii - 2d h_i - d²)² - R_ii²``, whose
stationary points are the real roots of the cubic
``d³ + 3h_i d² + (B + 2h_i² - R_ii) d - (A + R_ii h_i) = 0``; the best of those roots
inside ``[-1 - h_i, 1 - h_i]``, the interval's ends and 0 is taken, so the objective never
rises. The entries are visited in a fresh random order every sweep, for ``sweeps`` sweeps
or until a sweep lowers the objective by less than ``tol`` (relative); the approximate
codes are ``sgn(H)``. ``H`` starts uniform in [-1, 1] (seeded).

**Stage 2**: a network (backbone -> ``Dense(bits)`` hash layer, name "hash") is fitted to
the approximate codes with the per-bit logistic loss (``losses.code_cross_entropy``
divided by the code length, i.e. the mean over bits, so the step size does not depend on
it); CNNH+ (``with_labels=True``) adds a classification layer on the same
features trained jointly (softmax cross-entropy, or sigmoid for multi-label data), as the
paper's ``q + c`` output units. Codes: bit = hash-layer output > 0.

Both stages run inside ``fit_dataset``; its history holds ``stage1_objective`` (the
objective after each sweep, first entry before any) besides the stage-2 loss terms. With
``config.checkpoint_dir`` the stage-1 codes are kept there and reused on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from deephash import losses
from deephash.methods.base import register
from deephash.methods.hparams import HParam, boolean, integer, number
from deephash.methods.pairwise_method import PairwiseHashingMethod, common_hparams
from deephash.validation import check_int, check_number

log = logging.getLogger(__name__)

_STAGE1_FILE = "cnnh_stage1.npz"


# ----------------------------------------------------------------------------- stage 1 (numpy)
def similarity_signs(labels: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``S`` (n, n): +1 where two items share a label, -1 otherwise (multi-hot labels (n, c))."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"labels must be multi-hot (n, c) with n >= 1, got shape {y.shape}")
    y = (y > 0).astype(np.float32)
    return np.where(y @ y.T > 0, 1.0, -1.0).astype(dtype)


def objective(s: np.ndarray, h: np.ndarray) -> float:
    """``|| S - (1/q) H Hᵀ ||²_F`` (Eq. 1) for codes or relaxed codes ``H`` (n, q)."""
    h = np.asarray(h, dtype=np.float64)
    return float(np.sum((np.asarray(s, np.float64) - h @ h.T / h.shape[1]) ** 2))


def _cubic_real_roots(a: float, b: float, c: float, out: np.ndarray) -> int:
    """Real roots of ``d³ + a d² + b d + c`` (Cardano / trigonometric form) into ``out``;
    returns how many (1 or 3)."""
    shift = a / 3.0
    p = b - a * a / 3.0
    q = 2.0 * a * a * a / 27.0 - a * b / 3.0 + c
    disc = (q / 2.0) ** 2 + (p / 3.0) ** 3
    if disc > 0.0 or p >= 0.0:
        r = math.sqrt(max(disc, 0.0))
        u, v = -q / 2.0 + r, -q / 2.0 - r
        t = math.copysign(abs(u) ** (1.0 / 3.0), u) + math.copysign(abs(v) ** (1.0 / 3.0), v)
        out[0] = t - shift
        return 1
    m = 2.0 * math.sqrt(-p / 3.0)
    arg = 3.0 * q / (p * m)  # = (3q / 2p) sqrt(-3/p)
    arg = min(1.0, max(-1.0, arg))
    phi = math.acos(arg) / 3.0
    for k in range(3):
        out[k] = m * math.cos(phi - 2.0 * math.pi * k / 3.0) - shift
    return 3


def _make_sweep(cubic_roots):
    """The coordinate-descent sweep, calling ``cubic_roots`` (plain or numba-compiled)."""

    def sweep(r, h, order):
        """One pass over the entries ``order`` (flat indices into ``h``), updating ``h``
        and the residual ``r = qS - h hᵀ`` in place."""
        n, q = h.shape
        roots = np.empty(3)
        cand = np.empty(6)
        for flat in order:
            i = flat // q
            j = flat % q
            hi = h[i, j]
            a_sum = 0.0
            b_sum = 0.0
            for row in range(n):
                hl = h[row, j]
                a_sum += hl * r[i, row]
                b_sum += hl * hl
            rii = r[i, i]
            a_sum -= hi * rii
            b_sum -= hi * hi
            k = cubic_roots(3.0 * hi, b_sum + 2.0 * hi * hi - rii, -(a_sum + rii * hi), roots)
            cand[0] = -1.0 - hi
            cand[1] = 1.0 - hi
            m = 2
            for t in range(k):
                d = roots[t]
                if -1.0 - hi <= d <= 1.0 - hi:
                    cand[m] = d
                    m += 1
            best_d = 0.0  # d = 0 (no change) is always a candidate: g(0) = 0
            best_g = 0.0
            for t in range(m):
                d = cand[t]
                e = rii - 2.0 * d * hi - d * d
                g = -4.0 * d * a_sum + 2.0 * d * d * b_sum + e * e - rii * rii
                if g < best_g:
                    best_g = g
                    best_d = d
            if best_d != 0.0:
                d = best_d
                for row in range(n):
                    delta = d * h[row, j]
                    r[i, row] -= delta
                    r[row, i] -= delta
                r[i, i] -= d * d
                h[i, j] = hi + d

    return sweep


_sweep = _make_sweep(_cubic_real_roots)
try:  # numba is an install requirement; the plain-Python loop is the fallback
    from numba import njit

    _sweep_nb = njit(_make_sweep(njit(_cubic_real_roots)))
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _sweep_nb = _sweep
    HAVE_NUMBA = False


def approximate_codes(
    labels: np.ndarray,
    bits: int,
    seed: int = 0,
    sweeps: int = 20,
    tol: float = 1e-4,
    use_numba: bool = True,
) -> tuple[np.ndarray, list[float]]:
    """CNNH stage 1: approximate codes ``sgn(H)`` in {-1, +1} (int8, (n, bits)) and the
    objective ``||S - HHᵀ/q||²_F`` before and after every sweep (relaxed H)."""
    bits = check_int(bits, "bits", owner="cnnh")
    sweeps = check_int(sweeps, "sweeps", owner="cnnh")
    tol = check_number(tol, "tol", minimum=0, owner="cnnh")
    y = np.asarray(labels)
    similarity_signs(y[:1])  # validates the labels' shape
    n = y.shape[0]
    dtype = np.float64 if n <= 8000 else np.float32  # R is n x n
    yf = (y > 0).astype(np.float32)
    shared = (yf @ yf.T) > 0  # bool (n, n): where s_ij = +1

    def residual(h):
        """``R = qS - HHᵀ`` built in one n x n array (S is kept as booleans)."""
        r = np.matmul(h, h.T).astype(dtype, copy=False)
        np.negative(r, out=r)
        np.add(r, bits, out=r, where=shared)
        np.subtract(r, bits, out=r, where=~shared)
        return r

    def value(r):
        flat = r.ravel()
        return float(np.dot(flat, flat)) / float(bits) ** 2

    rng = np.random.default_rng([int(seed), 0xC22])
    h = rng.uniform(-1.0, 1.0, size=(n, bits))
    r = residual(h)
    sweep = _sweep_nb if (use_numba and HAVE_NUMBA) else _sweep
    trace = [value(r)]
    for _ in range(sweeps):
        sweep(r, h, rng.permutation(n * bits))
        del r
        r = residual(h)  # refresh: no drift of the incremental updates
        trace.append(value(r))
        if trace[-2] - trace[-1] <= tol * trace[-2]:
            break
    codes = np.where(h > 0, 1, -1).astype(np.int8)
    return codes, trace


# ----------------------------------------------------------------------------- the method
@register("cnnh")
@keras.saving.register_keras_serializable(package="deephash")
class CNNH(PairwiseHashingMethod):
    """CNNH / CNNH+ as a Keras model (module docstring). Hyper-parameters: ``with_labels``
    (CNNH+, False), ``classification_weight`` (1.0), ``sweeps`` (20) and ``tol`` (1e-4) of
    stage 1, plus the common ones of ``PairwiseHashingMethod``."""

    method = "cnnh"
    HPARAMS = common_hparams(
        with_labels=HParam(False, boolean),
        classification_weight=HParam(1.0, number(minimum=0)),
        sweeps=HParam(20, integer()),
        tol=HParam(1e-4, number(minimum=0)),
    )

    @classmethod
    def uses_classifier(cls, hp: dict) -> bool:
        return bool(hp["with_labels"])

    def term_names(self):
        return ("codes", "classification") if self.with_labels else ("codes",)

    def loss_weights(self):
        return {"codes": 1.0, "classification": self.classification_weight}

    def loss_terms(self, outputs, labels, training_mode):
        # stage-2 batches carry [labels | target bits] (see fit_dataset)
        y, target = labels[:, : self.num_classes], labels[:, self.num_classes :]
        # per-bit mean of the logistic loss (the sum over bits / bits)
        terms = {
            "codes": tf.reduce_mean(losses.code_cross_entropy(outputs["hash"], target))
            / float(self.bits)
        }
        if self.with_labels:
            ce = losses.sigmoid_cross_entropy if self.multilabel else losses.softmax_cross_entropy
            terms["classification"] = tf.reduce_mean(ce(y, outputs["class_logits"]))
        return terms

    # ------------------------------------------------------------------ two stages
    def stage1(
        self, labels: np.ndarray, seed: int = 0, cache_dir: str | None = None
    ) -> tuple[np.ndarray, list]:
        """Approximate codes of the training items (cached in ``cache_dir`` when given)."""
        labels = np.asarray(labels)
        key = hashlib.sha256(
            np.ascontiguousarray(labels).tobytes()
            + repr((labels.shape, self.bits, seed, self.sweeps, self.tol)).encode()
        ).hexdigest()
        path = os.path.join(cache_dir, _STAGE1_FILE) if cache_dir else None
        if path and os.path.exists(path):
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    log.info("cnnh: reusing stage-1 codes from %s", path)
                    return z["codes"], [float(v) for v in z["trace"]]
        codes, trace = approximate_codes(
            labels, self.bits, seed=seed, sweeps=self.sweeps, tol=self.tol
        )
        from deephash import training

        if (
            path and training.is_chief()
        ):  # every worker computes the same codes; the chief keeps them
            from deephash.io import atomic_write

            with atomic_write(path, "wb") as f:
                np.savez(f, key=np.array(key), codes=codes, trace=np.array(trace))
        return codes, trace

    def fit_dataset(self, dataset, config=None, callbacks=None) -> dict:
        """Stage 1 on the training labels, then stage 2 (the network) on the images."""
        from deephash import training

        config = config if config is not None else training.TrainConfig()
        split = dataset.train if hasattr(dataset, "train") else dataset
        if split.labels.shape[1] != self.num_classes:
            raise ValueError(
                f"cnnh: the data has {split.labels.shape[1]} classes, the model {self.num_classes}"
            )
        codes, trace = self.stage1(
            split.labels, seed=int(config.seed), cache_dir=config.checkpoint_dir
        )
        object.__setattr__(self, "approximate_codes", codes)
        log.info("cnnh: stage 1 objective %.4g -> %.4g", trace[0], trace[-1])
        targets = np.concatenate([split.labels, (codes > 0).astype(np.uint8)], axis=1)
        history = super().fit_dataset(dataclasses.replace(split, labels=targets), config, callbacks)
        return {"stage1_objective": trace, **history}


__all__ = ["CNNH", "approximate_codes", "objective", "similarity_signs"]
