"""Exact Hamming-ranking retrieval metrics (mAP, precision within a radius, PR curve, P@N).

Every function takes ``(query_codes, db_codes, query_labels, db_labels, ...)``:

* codes: bool / {0,1} / {-1,+1} arrays ``(n, k)``, or packed ``uint8 (n, ceil(k/8))`` with
  ``packed=True, n_bits=k`` (packing is never guessed from dtype or shape);
* labels: class ids ``(n,)`` or multi-hot ``(n, c)`` (any ``c``). A database item is
  *relevant* to a query when they share at least one label.

Ranking is by Hamming distance, ties broken by database index ascending (what a stable sort
gives). Results are exact; they are computed from per-query distance histograms plus one pass
over the database in index order, in streamed query blocks (no ``Q x N`` float matrix, no
per-query sort). See ``docs/metrics.md`` for every convention.

Tiny example: query code ``00``, label 0; database codes ``01, 00, 11`` with labels ``0, 1, 0``.
Distances are ``1, 0, 2``, so the ranking is items ``1, 0, 2`` with relevance ``0, 1, 1``:
AP@all = (1/2 + 2/3) / 2 = 7/12.

>>> q, db = np.array([[0, 0]]), np.array([[0, 1], [0, 0], [1, 1]])
>>> round(mean_average_precision(q, db, np.array([0]), np.array([0, 1, 0])), 6)
0.583333
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deephash import _grouped, _kernels
from deephash.codes import as_words
from deephash.validation import check_choice, check_int

__all__ = [
    "evaluate",
    "mean_average_precision",
    "precision_at_radius",
    "precision_recall_curve",
    "precision_at_n",
    "distinct_codes",
]

NORMALIZE = ("retrieved", "relevant")
EMPTY = ("zero", "skip")
TIE_ORDER = "database index ascending"
DEFAULT_NS = tuple(range(100, 1001, 100))


# ----------------------------------------------------------------------------- validation


def _prepare_codes(query_codes, db_codes, n_bits, packed=False):
    qw, kq = as_words(query_codes, n_bits, "query_codes", packed=packed)
    dw, kd = as_words(db_codes, n_bits, "db_codes", packed=packed)
    if kq != kd:
        raise ValueError(
            f"query_codes have {kq} bits but db_codes have {kd} (mismatched bit lengths)"
        )
    if kq >= 1 << 16:
        raise ValueError(f"codes of {kq} bits are too long (at most 65535)")
    return qw, dw, kq


def _labels_to_words(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError(f"{name} contain NaN")
    if labels.dtype != np.bool_ and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name} are 2-D but not multi-hot: values must be 0/1")
    packed = np.packbits(labels.astype(bool), axis=1)
    w = (packed.shape[1] + 7) // 8
    out = np.zeros((packed.shape[0], 8 * w), np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view(np.uint64)


def _ids(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64).view(np.uint64).reshape(-1, 1)
    if labels.dtype.kind == "f":
        # every float class id must map to its own int64: reject what astype would collapse
        if np.isnan(labels).any():
            raise ValueError(f"{name} contain NaN")
        bad = ~np.isfinite(labels) | (np.abs(labels) >= 2.0**63)
        if bad.any():
            raise ValueError(
                f"{name} hold class ids outside the int64 range: Received: {labels[bad].flat[0]!r} "
                "(class ids must be finite integers with |id| < 2**63)"
            )
        frac = labels != np.round(labels)
        if frac.any():
            raise ValueError(
                f"{name} are 1-D but not integer class ids: Received: {labels[frac].flat[0]!r}"
            )
        return labels.astype(np.int64).view(np.uint64).reshape(-1, 1)
    raise ValueError(
        f"{name} must be integer class ids (n,) or multi-hot (n, c), got dtype {labels.dtype}"
    )


def _prepare_labels(query_labels, db_labels, nq, ndb):
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    for arr, name, n in ((ql, "query_labels", nq), (dl, "db_labels", ndb)):
        if arr.ndim not in (1, 2):
            raise ValueError(
                f"{name} must be class ids (n,) or multi-hot (n, c), got shape {arr.shape}"
            )
        if arr.shape[0] != n:
            codes = "query_codes" if name.startswith("query") else "db_codes"
            raise ValueError(
                f"{name} has {arr.shape[0]} rows but {codes} has {n} (label count mismatch)"
            )
    if ql.ndim != dl.ndim:
        raise ValueError(
            f"query_labels {ql.shape} and db_labels {dl.shape} differ in form: "
            "both class ids (n,) or both multi-hot (n, c)"
        )
    if ql.ndim == 1:
        return _ids(ql, "query_labels"), _ids(dl, "db_labels"), True
    if ql.shape[1] != dl.shape[1] or ql.shape[1] == 0:
        raise ValueError(
            f"query_labels have {ql.shape[1]} classes but db_labels have {dl.shape[1]} "
            "(label shape mismatch)"
        )
    return _labels_to_words(ql, "query_labels"), _labels_to_words(dl, "db_labels"), False


def _check_ns(ns) -> np.ndarray:
    ns = list(np.atleast_1d(np.asarray(ns if ns is not None else (), dtype=object)))
    if not ns:
        raise ValueError("ns is empty: give at least one N")
    return np.array([check_int(n, "each n in ns") for n in ns], np.int64)


def _counts(
    query_codes, db_codes, query_labels, db_labels, n_bits, top_k, ns, need_ranks, kernels, packed
):
    qw, dw, k = _prepare_codes(query_codes, db_codes, n_bits, packed)
    ql, dl, eq = _prepare_labels(query_labels, db_labels, qw.shape[0], dw.shape[0])
    if top_k is not None:
        top_k = check_int(top_k, "top_k")
    kk = dw.shape[0] if top_k is None else min(top_k, dw.shape[0])
    # queries with the same code and the same labels have the same ranking and relevance:
    # count each distinct (code, labels) once (learned codes repeat a lot), then expand
    first, inverse = _distinct_rows(np.concatenate([qw, ql], axis=1))
    if first.size < qw.shape[0]:
        out = _count(qw[first], dw, ql[first], dl, eq, k, kk, ns, need_ranks, kernels)
        return k, dw.shape[0], tuple(a[inverse] for a in out)
    return k, dw.shape[0], _count(qw, dw, ql, dl, eq, k, kk, ns, need_ranks, kernels)


def _count(qw, dw, ql, dl, eq, k, kk, ns, need_ranks, kernels):
    """The per-query counts: by runs of equal (code, labels) database items when the database
    has few (learned codes stored by class or code: ``_grouped.metric_counts_by_runs``),
    else by the flat kernels. Both give identical results."""
    args = (qw, dw, ql, dl, eq, k, kk, ns, need_ranks, kernels)
    out = _grouped.metric_counts_by_runs(*args)
    return _kernels.metric_counts(*args) if out is None else out


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct row of ``uint64 (n, w)`` and, per row,
    which of them it equals."""
    void = (
        np.ascontiguousarray(rows)
        .view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
        .ravel()
    )
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
    """Mean of ``values[keep]``; 0.0 when nothing is kept."""
    return float(values[keep].mean()) if keep.any() else 0.0


# ----------------------------------------------------------------------------- from counts


def _map(hist_rel, ap_sum, ap_cnt, top_k, n_db, normalize, empty):
    if normalize == "retrieved":
        denom = ap_cnt
    else:
        kk = n_db if top_k is None else min(top_k, n_db)
        denom = np.minimum(kk, hist_rel.sum(axis=1))
    ap = np.where(denom > 0, ap_sum / np.maximum(denom, 1), 0.0)
    keep = denom > 0 if empty == "skip" else np.ones(len(ap), bool)
    return _mean(ap, keep), int((denom == 0).sum())


def _radius(hist_all, hist_rel, radius, empty):
    r = min(radius, hist_all.shape[1] - 1)
    n = hist_all[:, : r + 1].sum(axis=1)
    rel = hist_rel[:, : r + 1].sum(axis=1)
    prec = np.where(n > 0, rel / np.maximum(n, 1), 0.0)
    keep = n > 0 if empty == "skip" else np.ones(len(prec), bool)
    return _mean(prec, keep), int((n == 0).sum())


def _pr(hist_all, hist_rel, empty):
    n = np.cumsum(hist_all, axis=1)
    rel = np.cumsum(hist_rel, axis=1)
    total = rel[:, -1:]
    prec = np.where(n > 0, rel / np.maximum(n, 1), 0.0)
    rec = np.where(total > 0, rel / np.maximum(total, 1), 0.0)
    if empty == "skip":
        p = [_mean(prec[:, r], n[:, r] > 0) for r in range(n.shape[1])]
        c = [_mean(rec[:, r], total[:, 0] > 0) for r in range(n.shape[1])]
    else:
        p, c = prec.mean(axis=0).tolist(), rec.mean(axis=0).tolist()
    return [float(x) for x in p], [float(x) for x in c]


def _pan(rel_n, ns, n_db):
    return [float(rel_n[:, i].mean() / min(int(n), n_db)) for i, n in enumerate(ns)]


# ----------------------------------------------------------------------------- public API


def mean_average_precision(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    top_k: int | None = None,
    normalize: str = "retrieved",
    empty: str = "zero",
    n_bits: int | None = None,
    packed: bool = False,
    kernels: str | None = None,
) -> float:
    """mAP@K over the Hamming ranking (K = whole database when ``top_k`` is None).

    ``AP@K = (1/D) * sum_{i <= K} P@i * rel_i`` with ``D`` = relevant items in the top K
    (``normalize="retrieved"``, DeepHash-style) or ``min(K, total relevant)`` (``"relevant"``).
    Queries with ``D = 0`` count as AP 0 (``empty="zero"``) or are left out (``"skip"``).
    """
    check_choice(normalize, NORMALIZE, "normalize")
    check_choice(empty, EMPTY, "empty")
    _, n_db, (ha, hr, s, c, _) = _counts(
        query_codes, db_codes, query_labels, db_labels, n_bits, top_k, [1], True, kernels, packed
    )
    return _map(hr, s, c, top_k, n_db, normalize, empty)[0]


def precision_at_radius(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    radius: int = 2,
    empty: str = "zero",
    n_bits: int | None = None,
    packed: bool = False,
    kernels: str | None = None,
) -> float:
    """Hash-lookup precision: mean over queries of (relevant / all) items at distance <= radius.

    A query that retrieves nothing counts 0 (``empty="zero"``) or is skipped (``"skip"``).
    """
    check_choice(empty, EMPTY, "empty")
    radius = check_int(radius, "radius", minimum=0)
    _, _, (ha, hr, *_rest) = _counts(
        query_codes, db_codes, query_labels, db_labels, n_bits, None, [1], False, kernels, packed
    )
    return _radius(ha, hr, radius, empty)[0]


def precision_recall_curve(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    empty: str = "zero",
    n_bits: int | None = None,
    packed: bool = False,
    kernels: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall of hash lookup at every radius ``0..k``: two arrays ``(k+1,)``.

    Precision at radius r: relevant / retrieved within r (empty lookups: 0 or skipped);
    recall: relevant within r / all relevant (queries with no relevant item: 0 or skipped).
    """
    check_choice(empty, EMPTY, "empty")
    _, _, (ha, hr, *_rest) = _counts(
        query_codes, db_codes, query_labels, db_labels, n_bits, None, [1], False, kernels, packed
    )
    p, r = _pr(ha, hr, empty)
    return np.array(p), np.array(r)


def precision_at_n(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    ns: Sequence[int] = DEFAULT_NS,
    n_bits: int | None = None,
    packed: bool = False,
    kernels: str | None = None,
) -> np.ndarray:
    """Mean precision of the first ``n`` ranked items, one value per ``n`` in ``ns``.

    When ``n`` exceeds the database size the whole database is the top ``n`` (divided by its size).
    """
    ns = _check_ns(ns)
    _, n_db, (*_rest, rel_n) = _counts(
        query_codes, db_codes, query_labels, db_labels, n_bits, 1, ns, True, kernels, packed
    )
    return np.array(_pan(rel_n, ns, n_db))


def distinct_codes(codes, n_bits: int | None = None, *, packed: bool = False) -> int:
    """Number of distinct rows (``n_h`` of DSEH Table 2); ``packed`` as in ``evaluate``."""
    words, _ = as_words(codes, n_bits, "codes", packed=packed)
    return int(np.unique(words, axis=0).shape[0])


def evaluate(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    *,
    top_k: int | None = None,
    radius: int = 2,
    ns: Sequence[int] = DEFAULT_NS,
    normalize: str = "retrieved",
    empty: str = "zero",
    n_bits: int | None = None,
    packed: bool = False,
    kernels: str | None = None,
) -> dict:
    """All metrics from one pass over the distances; a JSON-able dict.

    Keys: ``map``, ``precision_radius_{radius}``, ``pr_curve`` (``radius``, ``precision``,
    ``recall`` lists), ``precision_at_n`` (``{"100": p, ...}``), ``num_queries``,
    ``num_database``, ``n_bits``, ``queries_empty_radius`` (nothing within the radius),
    ``queries_empty_map`` (D = 0), ``queries_without_relevant`` (no relevant item in the
    database) and ``conventions``.
    """
    check_choice(normalize, NORMALIZE, "normalize")
    check_choice(empty, EMPTY, "empty")
    radius = check_int(radius, "radius", minimum=0)
    ns = _check_ns(ns)
    kernels_used = _kernels.resolve(kernels)
    k, n_db, (ha, hr, s, c, rel_n) = _counts(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        n_bits,
        top_k,
        ns,
        True,
        kernels_used,
        packed,
    )
    m, empty_map = _map(hr, s, c, top_k, n_db, normalize, empty)
    pr, empty_radius = _radius(ha, hr, radius, empty)
    prec, rec = _pr(ha, hr, empty)
    return {
        "map": m,
        f"precision_radius_{radius}": pr,
        "pr_curve": {"radius": list(range(k + 1)), "precision": prec, "recall": rec},
        "precision_at_n": {str(int(n)): p for n, p in zip(ns, _pan(rel_n, ns, n_db))},
        "num_queries": int(ha.shape[0]),
        "num_database": int(n_db),
        "n_bits": int(k),
        "queries_empty_radius": empty_radius,
        "queries_empty_map": empty_map,
        "queries_without_relevant": int((hr.sum(axis=1) == 0).sum()),
        "conventions": {
            "top_k": None if top_k is None else int(top_k),
            "normalize": normalize,
            "empty": empty,
            "radius": radius,
            "tie_order": TIE_ORDER,
            "relevance": "shares at least one label",
            "precision_at_n_beyond_database": "divided by the database size",
            "kernels": kernels_used,
        },
    }
