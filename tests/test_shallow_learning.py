"""Learning test on the embedded digits data (sklearn digits, raw 64-d pixels in [0, 255]):
every shallow method beats random codes, the supervised ones beat LSH clearly."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from deephash import methods


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices: on the shared 2-core machine multi-threaded BLAS only adds contention."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


BITS = 32


def reference_map(q_codes, db_codes, q_labels, db_labels):
    """Slow reference mAP@all: Hamming ranking, ties by database index (stable sort)."""
    aps = []
    for i in range(len(q_codes)):
        dist = np.sum(q_codes[i] != db_codes, axis=1)
        rel = (db_labels[np.argsort(dist, kind="stable")] == q_labels[i]).astype(float)
        hits = np.cumsum(rel)
        aps.append(np.sum(rel * hits / np.arange(1, len(rel) + 1)) / max(rel.sum(), 1))
    return float(np.mean(aps))


def test_reference_map_on_a_hand_computed_case():
    # query 0 ranks db [0 (d=0, rel), 1 (d=1, not), 2 (d=1, rel)] -> AP = (1 + 2/3) / 2
    q = np.array([[0, 0]], bool)
    db = np.array([[0, 0], [1, 0], [0, 1]], bool)
    assert reference_map(q, db, np.array([1]), np.array([1, 2, 1])) == pytest.approx(5 / 6)


@pytest.fixture(scope="module")
def split():
    x, y = load_digits(return_X_y=True)
    x = x * (255.0 / 16.0)
    perm = np.random.default_rng(0).permutation(len(x))
    q, db = perm[:200], perm[200:]
    return x[q], y[q], x[db], y[db]


@pytest.fixture(scope="module")
def scores(split):
    xq, yq, xdb, ydb = split
    out = {}
    hparams = {
        "ksh": {"n_anchors": 200, "n_labeled": 500, "max_iter": 50},
        "sdh": {"n_anchors": 300},
    }
    for name in methods.available("shallow"):
        m = methods.create(name, bits=BITS, **hparams.get(name, {}))
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # itq-cca: 32 bits > 9 canonical directions
            m.fit(xdb, ydb if m.supervised else None, seed=0)
        out[name] = reference_map(m.encode(xq), m.encode(xdb), yq, ydb)
    rng = np.random.default_rng(1)
    rand = rng.random((len(xq) + len(xdb), BITS)) > 0.5
    out["random"] = reference_map(rand[: len(xq)], rand[len(xq) :], yq, ydb)
    return out


def test_all_seven_shallow_methods_are_registered():
    assert methods.available("shallow") == sorted(
        ["lsh", "pcah", "sh", "itq", "itq-cca", "ksh", "sdh"]
    )
    for name in methods.available("shallow"):
        assert methods.family(name) == "shallow"


def test_every_shallow_method_beats_random_codes(scores):
    for name, value in scores.items():
        if name != "random":
            assert value > scores["random"] + 0.1, scores


def test_supervised_methods_beat_lsh_clearly(scores):
    for name in ("ksh", "sdh", "itq-cca"):
        assert scores[name] > scores["lsh"] + 0.2, scores
        assert scores[name] > 0.8, scores


def test_itq_beats_its_own_pca_start(scores):
    # the rotation is the point of ITQ (Gong & Lazebnik, Fig. 3)
    assert scores["itq"] > scores["pcah"] + 0.05, scores


def test_reference_map_agrees_with_deephash_metrics(split):
    from deephash import metrics

    xq, yq, xdb, ydb = split
    m = methods.create("itq", bits=16).fit(xdb, seed=0)
    q, db = m.encode(xq), m.encode(xdb)
    assert metrics.mean_average_precision(q, db, yq, ydb) == pytest.approx(
        reference_map(q, db, yq, ydb), abs=1e-9
    )


def test_supervised_methods_learn_multi_label_similarity(tmp_path_factory):
    """digits_multi: 16x16 canvases holding 1-3 digits; relevant = share a digit."""
    from deephash import data, metrics
    from deephash.features import extract_features

    ds = extract_features(
        "pixels", data.load("digits_multi", split_dir=str(tmp_path_factory.mktemp("dm")))
    )
    hparams = {
        "ksh": {"n_anchors": 150, "n_labeled": 400, "max_iter": 30},
        "sdh": {"n_anchors": 300},
    }
    result = {}
    for name in ("lsh", "itq-cca", "ksh", "sdh"):
        m = methods.create(name, bits=BITS, **hparams.get(name, {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            m.fit_dataset(ds)
        result[name] = metrics.mean_average_precision(
            m.encode(ds.query), m.encode(ds.database), ds.query.labels, ds.database.labels
        )
    rand = np.random.default_rng(0).random((len(ds.query) + len(ds.database), BITS)) > 0.5
    result["random"] = metrics.mean_average_precision(
        rand[: len(ds.query)], rand[len(ds.query) :], ds.query.labels, ds.database.labels
    )
    for name in ("itq-cca", "ksh", "sdh"):
        assert result[name] > result["lsh"] + 0.15, result
    assert result["lsh"] > result["random"], result
