"""deephash.index.MultiIndexHashing: multi-index lookups give exactly the exhaustive results."""

import itertools
import math

import numpy as np
import pytest

from deephash import _lookup
from deephash.index import HammingIndex, MultiIndexHashing

KERNELS = ["numba", "numpy"]
# path: "tables" sends probes through the tables even where up to 20 N probes per query cost
# more than a scan, "scan" makes every query with a candidate fall back to a scan, "auto" uses
# the class's cost thresholds
PATHS = {"tables": (20.0, math.inf), "scan": (20.0, 0.0), "auto": (None, None)}


def _ref_range(qb, db, radius):
    """Slow reference: all distances, hits ordered by (distance, index)."""
    dist = (qb[:, None, :] != db[None, :, :]).sum(-1)
    out = []
    for q in range(len(qb)):
        hit = np.flatnonzero(dist[q] <= radius)
        out.append(hit[np.lexsort((hit, dist[q, hit]))])
    return out, dist


def _data(bits, seed=0, nq=12, ndb=1500, clustered=False):
    rng = np.random.default_rng(seed)
    if clustered:  # 10 centres + a few flipped bits, like learned codes: large buckets
        centres = rng.integers(0, 2, (10, bits)).astype(bool)
        db = centres[rng.integers(0, 10, ndb)] ^ (rng.random((ndb, bits)) < 1.5 / bits)
        qb = centres[rng.integers(0, 10, nq)] ^ (rng.random((nq, bits)) < 1.5 / bits)
    else:
        qb = rng.integers(0, 2, (nq, bits)).astype(bool)
        db = rng.integers(0, 2, (ndb, bits)).astype(bool)
        db[rng.integers(0, ndb, 200)] = qb[0]  # many exact duplicates of a query: ties at 0
        near = qb[1] ^ (rng.random((200, bits)) < 2 / bits)  # many ties at small distances
        db[rng.integers(0, ndb, 200)] = near
    qb[2] = db[7]  # a query equal to a database item
    return qb, db


def _mih(bits, db, m=None, path="auto"):
    index = MultiIndexHashing(bits, m=m)
    index.add(db[: len(db) // 3])
    index.add(db[len(db) // 3 :])  # two adds: numbering continues
    probe, scan = PATHS[path]
    if probe is not None:
        index.PROBE_FRACTION, index.SCAN_FRACTION = probe, scan
    return index


def _assert_same(got, want, dist):
    (gi, gd) = got
    assert len(gi) == len(want)
    for q, w in enumerate(want):
        assert gi[q].dtype == np.int64 and gd[q].dtype == np.int32
        np.testing.assert_array_equal(gi[q], w)
        np.testing.assert_array_equal(gd[q], dist[q, w])


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize(
    "bits,m",
    [
        (8, None),
        (12, None),
        (12, 2),
        (16, 1),
        (16, 3),
        (32, None),
        (32, 1),
        (48, 4),
        (64, None),
        (64, 2),
        (100, None),
    ],
)
def test_range_search_equals_exhaustive_with_ties_and_duplicates(bits, m, kernels):
    qb, db = _data(bits, seed=bits)
    flat = HammingIndex(bits)
    flat.add(db)
    for path in PATHS:
        index = _mih(bits, db, m, path)
        for radius in (0, 1, 2, 3, bits // 4, bits + 3):
            want, dist = _ref_range(qb, db, radius)
            _assert_same(
                index.range_search(qb, radius, return_distances=True, kernels=kernels), want, dist
            )
            assert all(
                np.array_equal(a, b)
                for a, b in zip(
                    index.range_search(qb, radius, kernels=kernels), flat.range_search(qb, radius)
                )
            )


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("bits", [16, 64])
def test_clustered_codes_with_large_buckets(bits, kernels):
    qb, db = _data(bits, seed=3, clustered=True)
    for path in PATHS:
        index = _mih(bits, db, None, path)
        for radius in (0, 2, 5):
            want, dist = _ref_range(qb, db, radius)
            _assert_same(
                index.range_search(qb, radius, return_distances=True, kernels=kernels), want, dist
            )


def test_queries_equal_to_items_find_themselves_first_and_empty_results_are_empty():
    db = np.zeros((50, 32), bool)
    db[10:] = np.random.default_rng(0).integers(0, 2, (40, 32))
    index = _mih(32, db, 2, "tables")
    idx = index.range_search(db[[12]], 0)[0]
    assert idx[0] == 12 and np.all((db[idx] == db[12]).all(1))
    np.testing.assert_array_equal(
        index.range_search(db[[3]], 0)[0], np.arange(10)
    )  # duplicates: by index
    far = np.ones((2, 32), bool)
    idx, dist = index.range_search(far, 1, return_distances=True)
    assert (
        [a.size for a in idx] == [0, 0] and idx[0].dtype == np.int64 and dist[0].dtype == np.int32
    )


@pytest.mark.parametrize("bits", [12, 48])
def test_knn_by_increasing_radius_equals_exhaustive_including_ties(bits):
    qb, db = _data(bits, seed=5)
    flat = HammingIndex(bits)
    flat.add(db)
    index = _mih(bits, db, None, "tables")
    for k in (1, 5, 150, 250, 5000):
        d, i = index.search(qb, k)
        fd, fi = flat.search(qb, k)
        assert d.dtype == np.int32 and i.dtype == np.int64
        np.testing.assert_array_equal(d, fd)
        np.testing.assert_array_equal(i, fi)


def test_adding_after_a_search_rebuilds_the_tables():
    qb, db = _data(32, seed=6)
    index = MultiIndexHashing(32, m=2)
    index.add(db[:700])
    index.range_search(qb, 2)
    assert index.tables_nbytes > 0
    index.add(db[700:])
    assert index.tables_nbytes == 0  # dropped, rebuilt on the next search
    want, dist = _ref_range(qb, db, 3)
    _assert_same(index.range_search(qb, 3, return_distances=True), want, dist)


def test_save_writes_the_hamming_index_format_and_load_keeps_m(tmp_path):
    qb, db = _data(48, seed=7)
    index = _mih(48, db, 3)
    path = tmp_path / "mih.dhidx"
    index.save(path)
    flat = HammingIndex(48)
    flat.add(db)
    flat.save(tmp_path / "flat.dhidx")
    assert (
        path.read_bytes() == (tmp_path / "flat.dhidx").read_bytes()
    )  # same versioned, checksummed file
    loaded = MultiIndexHashing.load(tmp_path / "flat.dhidx", m=4)
    assert isinstance(loaded, MultiIndexHashing) and loaded.m == 4 and len(loaded) == len(db)
    assert isinstance(HammingIndex.load(path), HammingIndex)
    for a, b in zip(loaded.range_search(qb, 4), index.range_search(qb, 4)):
        np.testing.assert_array_equal(a, b)


def test_bad_input_raises_value_error():
    index = MultiIndexHashing(16)
    with pytest.raises(ValueError, match="empty"):
        index.range_search(np.zeros((1, 16), bool), 1)
    with pytest.raises(ValueError, match="empty"):
        index.build()
    index.add(np.zeros((3, 16), bool))
    with pytest.raises(ValueError, match="radius"):
        index.range_search(np.zeros((1, 16), bool), -1)
    with pytest.raises(ValueError, match="radius"):
        index.range_search(np.zeros((1, 16), bool), 1.5)
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        index.range_search(np.zeros((1, 12), bool), 1)
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        index.add(np.zeros((1, 17), bool))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros((1, 16), bool), 0)
    for m, match in ((0, "positive"), (17, "must be <= n_bits"), (True, "positive")):
        with pytest.raises(ValueError, match=match):
            MultiIndexHashing(16, m=m)
    with pytest.raises(ValueError, match="64-bit substring limit: use m >= 3"):
        MultiIndexHashing(130, m=2)


def test_substring_rules_by_hand():
    assert _lookup.split_bits(10, 3) == [(0, 4), (4, 7), (7, 10)]
    # r = s*m + a: the first a+1 substrings at s, the rest at s-1
    assert _lookup.probe_radii(2, 3) == [0, 0, 0]
    assert _lookup.probe_radii(4, 3) == [1, 1, 0]
    assert _lookup.probe_radii(1, 3) == [0, 0, -1]
    assert _lookup.probe_radii(7, 1) == [7]
    assert _lookup.choose_m(64, 1_000_000) == 3  # round(64 / 19.93)
    assert _lookup.choose_m(32, 100_000) == 2  # round(32 / 16.61)
    assert _lookup.choose_m(12, 3000) == 1
    assert _lookup.choose_m(200, 2) == 200
    assert _lookup.n_probes(2, [(0, 4), (4, 7), (7, 10)]) == 3
    assert _lookup.n_probes(3, [(0, 16), (16, 32)]) == (1 + 16) * 2
    packed = np.packbits(np.array([[1, 0, 1, 1, 0]], bool), axis=1)
    np.testing.assert_array_equal(
        _lookup.substring_keys(packed, 5, [(0, 3), (3, 5)]), [[0b101, 0b10]]
    )


@pytest.mark.parametrize("length,radius", [(1, 1), (5, 2), (7, 7), (64, 2)])
def test_flip_masks_are_every_pattern_within_the_radius_once(length, radius):
    masks = _lookup.flip_masks(length, radius)
    want = {
        sum(1 << b for b in c)
        for w in range(radius + 1)
        for c in itertools.combinations(range(length), w)
    }
    assert masks.dtype == np.uint64 and masks.size == len(want) and set(masks.tolist()) == want
