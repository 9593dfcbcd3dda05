"""deephash.metrics against a slow reference (stable argsort per query) and hand-computed cases."""

import json

import numpy as np
import pytest

from deephash import codes, metrics

KERNELS = ["numba", "numpy"]


# ----------------------------------------------------------------------------- slow reference


def _ref_rank(qb, db, ql, dl):
    """Per query: distances, relevance, and the stable ranking (ties by database index)."""
    dist = (qb[:, None, :] != db[None, :, :]).sum(-1)
    if ql.ndim == 1:
        rel = ql[:, None] == dl[None, :]
    else:
        rel = (ql[:, None, :].astype(bool) & dl[None, :, :].astype(bool)).any(-1)
    order = np.argsort(dist, axis=1, kind="stable")
    return dist, rel, order


def ref_map(qb, db, ql, dl, top_k=None, normalize="retrieved", empty="zero"):
    dist, rel, order = _ref_rank(qb, db, ql, dl)
    k = db.shape[0] if top_k is None else min(top_k, db.shape[0])
    aps = []
    for i in range(len(qb)):
        r = rel[i, order[i]][:k]
        hits, s = 0, 0.0
        for pos, is_rel in enumerate(r, start=1):
            if is_rel:
                hits += 1
                s += hits / pos
        d = hits if normalize == "retrieved" else min(k, int(rel[i].sum()))
        if d == 0:
            if empty == "zero":
                aps.append(0.0)
            continue
        aps.append(s / d)
    return float(np.mean(aps)) if aps else 0.0


def ref_radius(qb, db, ql, dl, radius, empty="zero"):
    dist, rel, _ = _ref_rank(qb, db, ql, dl)
    out = []
    for i in range(len(qb)):
        hit = dist[i] <= radius
        if hit.sum() == 0:
            if empty == "zero":
                out.append(0.0)
            continue
        out.append(rel[i, hit].mean())
    return float(np.mean(out)) if out else 0.0


def ref_pr(qb, db, ql, dl, empty="zero"):
    dist, rel, _ = _ref_rank(qb, db, ql, dl)
    precision, recall = [], []
    for r in range(qb.shape[1] + 1):
        p, c = [], []
        for i in range(len(qb)):
            hit = dist[i] <= r
            if hit.any():
                p.append(rel[i, hit].mean())
            elif empty == "zero":
                p.append(0.0)
            if rel[i].any():
                c.append(rel[i, hit].sum() / rel[i].sum())
            elif empty == "zero":
                c.append(0.0)
        precision.append(np.mean(p) if p else 0.0)
        recall.append(np.mean(c) if c else 0.0)
    return np.array(precision), np.array(recall)


def ref_pan(qb, db, ql, dl, ns):
    _, rel, order = _ref_rank(qb, db, ql, dl)
    return np.array(
        [
            np.mean([rel[i, order[i][:n]].sum() / min(n, db.shape[0]) for i in range(len(qb))])
            for n in ns
        ]
    )


# ----------------------------------------------------------------------------- data


def make_data(bits, multilabel, seed=0, nq=23, ndb=400):
    """Random codes with many exact ties; query 0 has no relevant item in the database."""
    rng = np.random.default_rng(seed)
    qb = rng.integers(0, 2, (nq, bits)).astype(bool)
    db = rng.integers(0, 2, (ndb, bits)).astype(bool)
    db[rng.integers(0, ndb, ndb // 4)] = qb[1]  # exact duplicates of a query code
    if multilabel:
        c = 81
        ql = (rng.random((nq, c)) < 0.05).astype(np.uint8)
        dl = (rng.random((ndb, c)) < 0.05).astype(np.uint8)
        ql[0] = 0
        ql[0, 80] = 1
        dl[:, 80] = 0
    else:
        ql = rng.integers(0, 6, nq)
        dl = rng.integers(0, 6, ndb)
        ql[0] = 99
    return qb, db, ql, dl


CASES = [(b, m) for b in (4, 8, 12, 16, 24, 48, 100) for m in (False, True)]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("bits, multilabel", CASES)
def test_map_matches_reference_for_every_convention(bits, multilabel, kernels):
    qb, db, ql, dl = make_data(bits, multilabel, seed=bits)
    for top_k in (None, 1, 37, 1000):
        for normalize in ("retrieved", "relevant"):
            for empty in ("zero", "skip"):
                got = metrics.mean_average_precision(
                    qb, db, ql, dl, top_k=top_k, normalize=normalize, empty=empty, kernels=kernels
                )
                want = ref_map(qb, db, ql, dl, top_k, normalize, empty)
                assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (top_k, normalize, empty)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("bits, multilabel", CASES)
def test_lookup_metrics_match_reference(bits, multilabel, kernels):
    qb, db, ql, dl = make_data(bits, multilabel, seed=bits + 1)
    for empty in ("zero", "skip"):
        for radius in (0, 2, bits // 2):
            assert metrics.precision_at_radius(
                qb, db, ql, dl, radius=radius, empty=empty, kernels=kernels
            ) == pytest.approx(ref_radius(qb, db, ql, dl, radius, empty), rel=1e-12)
        p, r = metrics.precision_recall_curve(qb, db, ql, dl, empty=empty, kernels=kernels)
        rp, rr = ref_pr(qb, db, ql, dl, empty)
        np.testing.assert_allclose(p, rp, rtol=1e-12)
        np.testing.assert_allclose(r, rr, rtol=1e-12)
    ns = [1, 5, 100, 399, 400, 1000]
    np.testing.assert_allclose(
        metrics.precision_at_n(qb, db, ql, dl, ns=ns, kernels=kernels),
        ref_pan(qb, db, ql, dl, ns),
        rtol=1e-12,
    )


@pytest.mark.parametrize("multilabel", [False, True])
def test_evaluate_matches_single_functions_and_both_kernels_agree(multilabel):
    qb, db, ql, dl = make_data(12, multilabel, seed=5, nq=40, ndb=3000)
    res = {
        k: metrics.evaluate(qb, db, ql, dl, top_k=500, radius=3, ns=(10, 100), kernels=k)
        for k in KERNELS
    }
    a, b = res["numba"], res["numpy"]
    assert a["map"] == pytest.approx(b["map"], rel=1e-12)
    assert a["map"] == pytest.approx(ref_map(qb, db, ql, dl, 500), rel=1e-12)
    assert (
        a["precision_radius_3"]
        == b["precision_radius_3"]
        == pytest.approx(ref_radius(qb, db, ql, dl, 3))
    )
    assert a["pr_curve"] == b["pr_curve"] and a["pr_curve"]["radius"] == list(range(13))
    assert a["precision_at_n"].keys() == {"10", "100"}
    np.testing.assert_allclose(
        list(a["precision_at_n"].values()), ref_pan(qb, db, ql, dl, [10, 100])
    )
    assert a["num_queries"] == 40 and a["queries_without_relevant"] >= 1
    assert a["queries_empty_radius"] == sum(
        ((qb[i] != db).sum(1) <= 3).sum() == 0 for i in range(40)
    )
    assert a["conventions"] == {**b["conventions"], "kernels": "numba"}
    assert a["conventions"]["tie_order"] == "database index ascending"
    assert json.loads(json.dumps(a)) == a  # plain Python types only


def test_hand_computed_example():
    # distances 1, 0, 2 -> ranking items 1, 0, 2 with relevance 0, 1, 1:
    # AP = (1/2 + 2/3) / 2 = 7/12; P@1 = 0; within radius 1: items 1, 0 -> precision 1/2
    q, db = np.array([[0, 0]]), np.array([[0, 1], [0, 0], [1, 1]])
    ql, dl = np.array([0]), np.array([0, 1, 0])
    for k in KERNELS:
        assert metrics.mean_average_precision(q, db, ql, dl, kernels=k) == pytest.approx(7 / 12)
        # top 2: only item 0 relevant at rank 2 -> retrieved: (1/2)/1; relevant: (1/2)/min(2, 2)
        assert metrics.mean_average_precision(q, db, ql, dl, top_k=2, kernels=k) == pytest.approx(
            0.5
        )
        assert metrics.mean_average_precision(
            q, db, ql, dl, top_k=2, normalize="relevant", kernels=k
        ) == pytest.approx(0.25)
        assert metrics.precision_at_radius(q, db, ql, dl, radius=1, kernels=k) == pytest.approx(0.5)
        np.testing.assert_allclose(
            metrics.precision_at_n(q, db, ql, dl, ns=[1, 3], kernels=k), [0.0, 2 / 3]
        )
        p, r = metrics.precision_recall_curve(q, db, ql, dl, kernels=k)
        np.testing.assert_allclose(p, [0.0, 0.5, 2 / 3])
        np.testing.assert_allclose(r, [0.0, 0.5, 1.0])


def test_tie_order_is_database_index_ascending():
    # all items tie at distance 0; relevant item last -> AP = 1/3; first -> AP = 1
    q, db = np.zeros((1, 4), bool), np.zeros((3, 4), bool)
    for k in KERNELS:
        assert metrics.mean_average_precision(q, db, [1], [0, 0, 1], kernels=k) == pytest.approx(
            1 / 3
        )
        assert metrics.mean_average_precision(q, db, [1], [1, 0, 0], kernels=k) == pytest.approx(
            1.0
        )


def test_empty_query_conventions():
    q, db = np.array([[0, 0], [1, 1]]), np.array([[0, 0], [0, 1]])
    ql, dl = (
        np.array([0, 5]),
        np.array([0, 1]),
    )  # query 1 has no relevant item, retrieves nothing within 0
    assert metrics.mean_average_precision(q, db, ql, dl) == pytest.approx(0.5)
    assert metrics.mean_average_precision(q, db, ql, dl, empty="skip") == pytest.approx(1.0)
    assert metrics.precision_at_radius(q, db, ql, dl, radius=0) == pytest.approx(0.5)
    assert metrics.precision_at_radius(q, db, ql, dl, radius=0, empty="skip") == pytest.approx(1.0)
    res = metrics.evaluate(q, db, ql, dl, radius=0, ns=[1])
    assert res["queries_empty_radius"] == 1 and res["queries_empty_map"] == 1
    # every query empty and skipped: the mean over no query is reported as 0.0
    assert metrics.mean_average_precision(q, db, [7, 8], dl, empty="skip") == 0.0


def test_packed_codes_and_label_forms_give_same_result():
    qb, db, ql, dl = make_data(12, False, seed=3)

    def onehot(y):
        return (y[:, None] == np.arange(100)).astype(np.uint8)  # 100 classes: two label words

    base = metrics.mean_average_precision(qb, db, ql, dl)
    assert (
        metrics.mean_average_precision(
            codes.pack(qb), codes.pack(db), ql, dl, n_bits=12, packed=True
        )
        == base
    )
    assert (
        metrics.mean_average_precision(np.where(qb, 1, -1), db.astype(np.float32), ql, dl) == base
    )
    assert metrics.mean_average_precision(qb, db, onehot(ql), onehot(dl)) == pytest.approx(
        base, rel=1e-12
    )


def test_uint8_zero_one_codes_are_never_guessed_to_be_packed():
    # 16-bit {0,1} codes; q[:, :2] as uint8 has ceil(16/8) columns: it used to be read as packed
    qb, db, ql, dl = make_data(16, False, seed=5)
    with pytest.raises(ValueError, match="2 bits, expected 16.*packed=True"):
        metrics.evaluate(qb[:, :2].astype(np.uint8), db, ql, dl, n_bits=16)
    # {0,1} uint8 codes of 2 bits against 2-bit codes are plain codes, not 16-bit packed ones
    two = metrics.mean_average_precision(
        qb[:, :2].astype(np.uint8), db[:, :2].astype(np.uint8), ql, dl
    )
    assert two == metrics.mean_average_precision(qb[:, :2], db[:, :2], ql, dl)
    # said explicitly, packed bytes are read as packed
    got = metrics.evaluate(codes.pack(qb), codes.pack(db), ql, dl, n_bits=16, packed=True)
    assert got == metrics.evaluate(qb, db, ql, dl)


def test_float_class_ids_map_one_to_one_or_raise():
    # large but representable ids stay distinct classes (no collapse into one)
    q, db = np.array([[0, 0]]), np.array([[0, 0], [0, 1], [1, 1]])
    ids = np.array([2.0**62, -(2.0**62), 2.0**62])
    assert metrics.mean_average_precision(q, db, ids[:1], ids) == pytest.approx((1 + 2 / 3) / 2)
    for bad in (np.inf, -np.inf, 2.0**63, 1e19):
        with pytest.raises(ValueError, match="int64 range"):
            metrics.mean_average_precision(q, db, np.array([bad]), np.array([bad, 0.0, bad]))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("multilabel", [False, True])
def test_repeated_queries_are_counted_once_and_give_every_metric_exactly(multilabel, kernels):
    # learned codes repeat: queries sharing code and labels are computed once and expanded;
    # rows that share the code but not the labels (or the reverse) must stay apart
    qb, db, ql, dl = make_data(12, multilabel, seed=9, nq=12)
    rep = np.random.default_rng(1).integers(0, 12, 60)
    q2, l2 = qb[rep], ql[rep]
    q2[5] = q2[0]  # same code as row 0, maybe other labels
    got = metrics.evaluate(q2, db, l2, dl, top_k=150, ns=(10, 400), kernels=kernels)
    assert got["map"] == pytest.approx(ref_map(q2, db, l2, dl, top_k=150), abs=1e-12)
    assert got["precision_radius_2"] == pytest.approx(ref_radius(q2, db, l2, dl, 2), abs=1e-12)
    np.testing.assert_allclose(got["pr_curve"]["precision"], ref_pr(q2, db, l2, dl)[0], atol=1e-12)
    np.testing.assert_allclose(
        list(got["precision_at_n"].values()), ref_pan(q2, db, l2, dl, (10, 400)), atol=1e-12
    )
    assert got["num_queries"] == 60


@pytest.mark.parametrize("multilabel", [False, True])
def test_a_database_of_few_runs_is_counted_by_runs_with_identical_results(multilabel):
    # learned codes stored by class: runs of equal (code, labels) items; counting per run gives
    # the very counts and sums of the flat kernel (same records, same order), ties included
    from deephash import _grouped, _kernels

    if not _kernels.HAVE_NUMBA:
        pytest.skip("the run kernels are numba kernels")
    rng = np.random.default_rng(4)
    n, u, bits = _grouped.RUN_MIN_ITEMS + 300, 30, 24
    centres = rng.integers(0, 2, (u, bits)).astype(bool)
    g = np.sort(rng.integers(0, u, n))
    db, qb = centres[g], centres[rng.integers(0, u, 25)]
    qb[:3, :2] ^= True  # queries off the centres too
    if multilabel:
        dl = (rng.random((u, 30)) < 0.15)[g]
        ql = rng.random((25, 30)) < 0.15
    else:
        dl = rng.integers(0, 6, u)[g]
        dl[rng.random(n) < 0.02] = 5  # runs split by label noise
        ql = rng.integers(0, 7, 25)  # class 6: no relevant item
    qw, _ = codes.as_words(qb, bits)
    dw, _ = codes.as_words(db, bits)
    lq, ld, eq = metrics._prepare_labels(ql, dl, 25, n)
    assert _grouped.runs_of(dw, ld).size < n * _grouped.RUN_FRACTION
    for top_k in (n, 777):
        for need_ranks in (True, False):
            args = (qw, dw, lq, ld, eq, bits, top_k, np.array([1, 50, 3000]), need_ranks)
            by_runs = _grouped.metric_counts_by_runs(*args)
            flat = _kernels.metric_counts(*args)
            for a, b in zip(by_runs, flat):
                np.testing.assert_array_equal(a, b)
    got = metrics.evaluate(qb, db, ql, dl, ns=(10, 5000))
    want = metrics.evaluate(qb, db, ql, dl, ns=(10, 5000), kernels="numpy")
    assert got["map"] == pytest.approx(want["map"], abs=1e-12)
    assert got["precision_at_n"] == pytest.approx(want["precision_at_n"], abs=1e-12)
    for key in ("precision", "recall"):
        assert got["pr_curve"][key] == pytest.approx(want["pr_curve"][key], abs=1e-12)


def test_distinct_codes():
    c = np.array([[0, 1, 1], [0, 1, 1], [1, 1, 1], [-0, 1, 1]])
    assert metrics.distinct_codes(c) == 2
    assert metrics.distinct_codes(codes.pack(c), n_bits=3, packed=True) == 2
    assert metrics.distinct_codes(np.random.default_rng(0).integers(0, 2, (50, 100))) == 50


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(db_codes=np.zeros((5, 9), bool)), "mismatched bit lengths"),
        (dict(query_codes=np.full((2, 8), np.nan)), "NaN"),
        (dict(query_codes=np.full((2, 8), 3)), "not binary"),
        (dict(db_codes=np.zeros((0, 8), bool), db_labels=np.zeros(0, int)), "empty"),
        (dict(db_labels=np.zeros(4, int)), "label count mismatch"),
        (dict(query_labels=np.zeros(3, int)), "label count mismatch"),
        (dict(query_labels=np.zeros((2, 3)), db_labels=np.zeros((5, 4))), "label shape mismatch"),
        (dict(query_labels=np.zeros((2, 3))), "differ in form"),
        (dict(query_labels=np.full((2, 3), 2), db_labels=np.zeros((5, 3))), "multi-hot"),
        (dict(query_labels=np.array([0.5, 1.0])), "integer class ids"),
        (dict(query_labels=np.array([np.inf, 1.0]), db_labels=np.zeros(5)), "int64 range"),
        (dict(query_labels=np.array([-np.inf, 1.0]), db_labels=np.zeros(5)), "int64 range"),
        (dict(query_labels=np.array([2.0**63, 1.0]), db_labels=np.zeros(5)), "int64 range"),
        (dict(db_labels=np.array([0, 1, 2, 3, 1e300])), "int64 range"),
        (
            dict(
                query_codes=np.zeros((2, 1), np.uint8),
                n_bits=8,
                packed=True,
                db_codes=np.zeros((5, 2), np.uint8),
            ),
            "mismatched bit lengths",
        ),
        (
            dict(
                query_codes=np.zeros((2, 1), np.uint8),
                db_codes=np.zeros((5, 1), np.uint8),
                packed=True,
            ),
            "packed=True needs n_bits",
        ),
        (dict(top_k=0), "top_k"),
        (dict(top_k=-3), "top_k"),
        (dict(normalize="all"), "normalize must be one of"),
        (dict(empty="nan"), "empty must be one of"),
        (dict(ns=[100, 0]), "each n in ns"),
        (dict(ns=[]), "ns is empty"),
        (dict(radius=-1), "radius"),
        (dict(kernels="cuda"), "kernels must be one of"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(kwargs, match):
    args = dict(
        query_codes=np.zeros((2, 8), bool),
        db_codes=np.zeros((5, 8), bool),
        query_labels=np.zeros(2, int),
        db_labels=np.zeros(5, int),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        metrics.evaluate(**args)
