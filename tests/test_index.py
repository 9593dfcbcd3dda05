"""deephash.index.HammingIndex: exact kNN / range search, backends agree, save/load."""

import numpy as np
import pytest

from deephash import codes
from deephash.index import HammingIndex

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None

BACKENDS = ["numba", "numpy", "grouped-numba", "grouped-numpy"] + (
    ["faiss"] if faiss is not None else []
)


def _index(bits, db, backend):
    """Backend 'numba'/'numpy' = deephash kernels (selected per call); 'grouped-*' = search by
    distinct codes with those kernels; 'faiss' = faiss backend."""
    name = (
        "faiss" if backend == "faiss" else "grouped" if backend.startswith("grouped") else "numpy"
    )
    index = HammingIndex(bits, backend=name)
    index.add(db[: len(db) // 2])
    index.add(db[len(db) // 2 :])  # two adds: numbering continues
    return index


def _kw(backend):
    return {} if backend == "faiss" else {"kernels": backend.split("-")[-1]}


def _ref_knn(qb, db, k):
    dist = (qb[:, None, :] != db[None, :, :]).sum(-1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), order


def _data(bits, seed=0, nq=17, ndb=3000):
    rng = np.random.default_rng(seed)
    qb = rng.integers(0, 2, (nq, bits)).astype(bool)
    db = rng.integers(0, 2, (ndb, bits)).astype(bool)
    db[rng.integers(0, ndb, 300)] = qb[0]  # many exact ties at distance 0
    return qb, db


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", [4, 12, 16, 24, 48, 64, 100])
def test_search_is_exact_with_ties_by_insertion_index(bits, backend):
    qb, db = _data(bits, seed=bits)
    index = _index(bits, db, backend)
    assert len(index) == len(db)
    for k in (1, 10, 100, 1500):
        d, i = index.search(qb, k, **_kw(backend))
        rd, ri = _ref_knn(qb, db, k)
        assert d.dtype == np.int32 and i.dtype == np.int64
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", [4, 12, 48, 100])
def test_range_search_is_inclusive_and_ordered(bits, backend):
    qb, db = _data(bits, seed=bits + 7)
    index = _index(bits, db, backend)
    dist = (qb[:, None, :] != db[None, :, :]).sum(-1)
    for radius in (0, 2, bits // 3, bits + 5):
        idx, dd = index.range_search(qb, radius, return_distances=True, **_kw(backend))
        for q in range(len(qb)):
            hit = np.flatnonzero(dist[q] <= radius)
            want = hit[np.argsort(dist[q, hit], kind="stable")]
            np.testing.assert_array_equal(idx[q], want)
            np.testing.assert_array_equal(dd[q], dist[q, want])


def _clustered(bits, n_distinct, seed, nq=23, ndb=4000):
    """Few distinct codes, interleaved in insertion order: many duplicates and ties."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_distinct, bits)).astype(bool)
    db = centres[rng.integers(0, n_distinct, ndb)]
    qb = np.concatenate(
        [
            centres[rng.integers(0, n_distinct, nq // 2)],  # queries equal to codes
            rng.integers(0, 2, (nq - nq // 2, bits)).astype(bool),
        ]
    )
    return qb, db


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize(
    "bits, n_distinct", [(4, 3), (16, 1), (16, 7), (32, 60), (64, 400), (100, 50)]
)
def test_grouped_search_equals_flat_scan_on_clustered_codes(bits, n_distinct, kernels):
    qb, db = _clustered(bits, n_distinct, seed=bits + n_distinct)
    flat, grouped = HammingIndex(bits, backend="numpy"), HammingIndex(bits, backend="grouped")
    for index in (flat, grouped):
        index.add(db[:1000])
        index.add(db[1000:])
    assert grouped.n_distinct == len(np.unique(db, axis=0)) and flat.n_distinct is None
    for k in (1, 7, 100, 1001, 5000):
        d, i = grouped.search(qb, k, kernels=kernels)
        rd, ri = _ref_knn(qb, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
    for radius in (0, 1, bits // 4, bits):
        got = grouped.range_search(qb, radius, return_distances=True, kernels=kernels)
        want = flat.range_search(qb, radius, return_distances=True, kernels=kernels)
        for a, b in zip(got[0] + got[1], want[0] + want[1]):
            np.testing.assert_array_equal(a, b)


def test_auto_groups_only_when_distinct_codes_are_few(tmp_path):
    qb, db = _clustered(32, 100, seed=1, ndb=2000)  # 100 distinct <= 2000 / 8
    few = HammingIndex(32)
    few.add(db)
    assert few.n_distinct == 100
    many = HammingIndex(32)
    many.add(np.random.default_rng(2).integers(0, 2, (2000, 32)))
    assert many.n_distinct is None  # scanned
    few.add(np.random.default_rng(3).integers(0, 2, (2000, 32)))  # now mostly distinct: scan again
    assert few.n_distinct is None
    # grouped or not, a saved index loads with identical results
    grouped = HammingIndex(32, backend="grouped")
    grouped.add(db)
    grouped.save(tmp_path / "g.dhidx")
    loaded = HammingIndex.load(tmp_path / "g.dhidx")
    assert loaded.backend == "grouped" and loaded.n_distinct == 100
    flat = HammingIndex.load(tmp_path / "g.dhidx", backend="numpy")
    for a, b in zip(loaded.search(qb, 50), flat.search(qb, 50)):
        np.testing.assert_array_equal(a, b)


def test_k_larger_than_index_returns_everything():
    qb, db = _data(8, ndb=5)
    index = HammingIndex(8)
    index.add(db)
    d, i = index.search(qb, 50)
    assert d.shape == i.shape == (len(qb), 5)
    np.testing.assert_array_equal(np.sort(i, axis=1), np.tile(np.arange(5), (len(qb), 1)))


@pytest.mark.skipif(faiss is None, reason="faiss not installed")
@pytest.mark.parametrize("bits", [12, 48])
def test_faiss_backend_pads_codes_to_whole_bytes(bits):
    qb, db = _data(bits, seed=1)
    index = HammingIndex(bits, backend="faiss")
    index.add(codes.pack(db), packed=True)  # packed input works too
    assert index._faiss_index.d == 8 * ((bits + 7) // 8)
    d, i = index.search(qb, 20)
    rd, ri = _ref_knn(qb, db, 20)
    np.testing.assert_array_equal(d, rd)
    np.testing.assert_array_equal(i, ri)


@pytest.mark.parametrize("bits", [12, 48])
def test_save_load_round_trip(tmp_path, bits):
    qb, db = _data(bits, seed=2)
    index = HammingIndex(bits)
    index.add(db)
    path = tmp_path / "sub" / "codes.dhidx"
    index.save(path)
    loaded = HammingIndex.load(path)
    assert len(loaded) == len(index) and loaded.n_bits == bits
    np.testing.assert_array_equal(loaded.codes(), db)
    for a, b in zip(index.search(qb, 30), loaded.search(qb, 30)):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in path.parent.iterdir()] == ["codes.dhidx"]  # no temporary left behind


def test_corrupt_or_foreign_files_raise(tmp_path):
    index = HammingIndex(16)
    index.add(np.random.default_rng(0).integers(0, 2, (50, 16)))
    path = tmp_path / "i.dhidx"
    index.save(path)
    raw = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped"
    raw[-1] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(path.read_bytes()[:-3])
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"PK\x03\x04 not an index")
    header = tmp_path / "header"
    header.write_bytes(path.read_bytes().replace(b'"format_version": 2', b'"format_version": 9'))
    for bad, match in (
        (flipped, "checksum"),
        (truncated, "checksum"),
        (foreign, "not a deephash"),
        (header, "version"),
    ):
        with pytest.raises(ValueError, match=match):
            HammingIndex.load(bad)
    with pytest.raises(FileNotFoundError, match="no Hamming index"):
        HammingIndex.load(tmp_path / "missing")


def test_a_tampered_header_field_fails_the_checksum_naming_the_file(tmp_path):
    index = HammingIndex(32)
    index.add(np.zeros((20, 32), bool))  # all-zero codes: a 31-bit reading has valid padding
    path = tmp_path / "i.dhidx"
    index.save(path)
    raw = path.read_bytes()
    for old, new in (
        (b'"n_bits": 32', b'"n_bits": 31'),
        (b'"n_bits": 32', b'"n_bits": 25'),
        (b'"backend": "auto"', b'"backend": "faiss"'),
        (b'"bytes_per_code": 4', b'"bytes_per_code": 5'),
    ):
        assert old in raw
        bad = tmp_path / "tampered.dhidx"
        bad.write_bytes(raw.replace(old, new))
        with pytest.raises(ValueError, match="tampered.dhidx.*checksum"):
            HammingIndex.load(bad)
    assert HammingIndex.load(path).n_bits == 32


def test_format_1_files_still_load(tmp_path):
    import hashlib
    import json

    db = np.random.default_rng(3).integers(0, 2, (40, 12)).astype(bool)
    payload = codes.pack(db).tobytes()
    header = {
        "format_version": 1,
        "n_bits": 12,
        "size": 40,
        "bytes_per_code": 2,
        "backend": "numpy",
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = tmp_path / "v1.dhidx"
    path.write_bytes(b"DEEPHASH-HAMMING-INDEX\n" + json.dumps(header).encode() + b"\n" + payload)
    np.testing.assert_array_equal(HammingIndex.load(path).codes(), db)


def test_uint8_zero_one_codes_are_not_taken_for_packed_ones():
    bits01 = (
        np.random.default_rng(4).integers(0, 2, (10, 8)).astype(np.uint8)
    )  # (n, 8): 64/8 columns
    index = HammingIndex(64)
    with pytest.raises(ValueError, match="8 bits, expected 64.*packed=True"):
        index.add(bits01)
    index.add(bits01, packed=True)  # said explicitly: ten packed 64-bit codes
    assert len(index) == 10
    with pytest.raises(ValueError, match="8 bits, expected 64"):
        index.search(bits01, 3)
    np.testing.assert_array_equal(index.search(bits01, 1, packed=True)[0], 0)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="n_bits"):
        HammingIndex(0)
    with pytest.raises(ValueError, match="backend must be one of"):
        HammingIndex(8, backend="gpu")
    index = HammingIndex(8)
    with pytest.raises(ValueError, match="empty"):
        index.search(np.zeros((1, 8), bool), 1)
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        index.add(np.zeros((3, 9), bool))
    index.add(np.zeros((3, 8), bool))
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        index.search(np.zeros((1, 16), bool), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros((1, 8), bool), 0)
    with pytest.raises(ValueError, match="radius"):
        index.range_search(np.zeros((1, 8), bool), -1)
    with pytest.raises(ValueError, match="not binary"):
        index.add(np.full((1, 8), 2))


def test_single_threaded_small_calls_match_the_parallel_kernels(monkeypatch):
    """Small numba calls run single-threaded (``_kernels.SERIAL_PAIRS``); forcing every call
    onto the parallel kernels must not change a single result."""
    from deephash import _kernels
    from deephash.index import MultiIndexHashing

    if not _kernels.HAVE_NUMBA:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(11)
    centres = rng.integers(0, 2, (6, 48)).astype(bool)
    db = centres[rng.integers(0, 6, 3000)] ^ (
        rng.random((3000, 48)) < 0.08
    )  # many ties and duplicates
    q = centres[rng.integers(0, 6, 40)] ^ (rng.random((40, 48)) < 0.08)

    def results():
        out = []
        for index in (HammingIndex(48), MultiIndexHashing(48), HammingIndex(48, backend="grouped")):
            index.add(db)
            d, i = index.search(q, 25)
            r_i, r_d = index.range_search(q, 6, return_distances=True)
            one = index.range_search(q[:1], 6)
            out.append((d, i, np.concatenate(r_i), np.concatenate(r_d), one[0]))
        return out

    assert _kernels.small_call(len(q), len(db))
    small = results()
    monkeypatch.setattr(_kernels, "SERIAL_PAIRS", -1)
    assert not _kernels.small_call(len(q), len(db))
    large = results()
    for a, b in zip(small, large):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bits", [8, 32, 33, 64, 260])
@pytest.mark.parametrize("parallel", [False, True])
def test_search_keeps_exact_order_when_candidates_overflow_and_the_threshold_hits_zero(
    monkeypatch, bits, parallel
):
    """The numba scan keeps at most ``max(4k, 1024)`` candidates and compacts when full; a
    database whose distances to query 0 fall level by level (300 items per level, more than k)
    keeps every level a candidate, so it compacts many times, across 2,048-item tiles and a
    partial last chunk; query 1 has more than k exact duplicates (the threshold drops below 0).
    Results equal the numpy kernels' and a brute-force argsort, serial and parallel."""
    from deephash import _kernels

    if not _kernels.HAVE_NUMBA:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 2, (20, bits)).astype(bool)
    levels = range(min(bits, 12), -1, -1)
    parts = []
    for level in levels:  # 300 items at distance `level` from q[0], flipped bits at random
        flips = np.argsort(rng.random((300, bits)), axis=1)[:, :level]
        part = np.tile(q[0], (300, 1))
        np.put_along_axis(part, flips, ~np.take_along_axis(part, flips, 1), axis=1)
        parts.append(part)
    parts.append(np.tile(q[1], (700, 1)))  # 700 copies of query 1
    parts.append(rng.integers(0, 2, (1001, bits)).astype(bool))
    db = np.concatenate(parts)
    if parallel:
        monkeypatch.setattr(_kernels, "SERIAL_PAIRS", -1)
    index = HammingIndex(bits)
    index.add(db)
    for k in (1, 256, 600):
        d, i = index.search(q, k, kernels="numba")
        nd, ni = index.search(q, k, kernels="numpy")
        rd, ri = _ref_knn(q, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(d, nd)
        np.testing.assert_array_equal(i, ni)
    if bits >= 32:  # no earlier item equals query 1: its 600 nearest are the first copies
        start = 300 * len(levels)
        np.testing.assert_array_equal(d[1], 0)
        np.testing.assert_array_equal(i[1], np.arange(start, start + 600))


@pytest.mark.parametrize("bits", [8, 33, 260])
@pytest.mark.parametrize("parallel", [False, True])
def test_grouped_search_cuts_at_the_kth_distance_with_uneven_groups(monkeypatch, bits, parallel):
    """The grouped numba search counts items per distance over 32 distinct codes at a time
    with a falling threshold, then keeps only the groups up to the k-th item's distance: with
    thousands of groups of very different sizes (one group of 900 items, most of 1-3) whose
    items interleave, its results equal a brute-force argsort and the flat scan's ranges,
    serial and parallel, at 8 bits (byte distances, many groups per distance), 33 (two words)
    and 260 (16-bit distances)."""
    from deephash import _kernels

    if not _kernels.HAVE_NUMBA:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(bits)
    n_distinct = 200 if bits == 8 else 3000
    centres = np.unique(rng.integers(0, 2, (n_distinct, bits)).astype(bool), axis=0)
    sizes = np.minimum(rng.zipf(2.0, len(centres)), 60)
    sizes[len(centres) // 2] = 900
    g = np.repeat(np.arange(len(centres)), sizes)
    db = centres[rng.permutation(g)]  # every group's items spread over the whole index range
    q = np.concatenate([centres[rng.integers(0, len(centres), 10)], ~centres[:10]])
    if parallel:
        monkeypatch.setattr(_kernels, "SERIAL_PAIRS", -1)
    grouped, flat = HammingIndex(bits, backend="grouped"), HammingIndex(bits, backend="numpy")
    grouped.add(db)
    flat.add(db)
    assert grouped.n_distinct == len(centres)
    for k in (1, 50, 700, len(db)):
        d, i = grouped.search(q, k, kernels="numba")
        rd, ri = _ref_knn(q, db, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
    for radius in (0, 2, bits // 3):
        got = grouped.range_search(q, radius, return_distances=True, kernels="numba")
        want = flat.range_search(q, radius, return_distances=True, kernels="numpy")
        for a, b in zip(got[0] + got[1], want[0] + want[1]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("slots", [0, 3000, None])
@pytest.mark.parametrize("parallel", [False, True])
def test_range_search_is_exact_whether_hits_fit_the_one_pass_buffers_or_not(
    monkeypatch, slots, parallel
):
    """The numba range search answers in one pass the queries whose hits fit each thread's
    share of ``_kernels.RANGE_SLOTS`` and the rest (from the first that does not fit) in a
    count pass and a fill pass: none, some or all of them (3,000 slots hold a few queries'
    hits at radius 20 of 48 bits), serial and parallel, equal to a brute-force reference."""
    from deephash import _kernels

    if not _kernels.HAVE_NUMBA:
        pytest.skip("numba is not installed")
    if slots is not None:
        monkeypatch.setattr(_kernels, "RANGE_SLOTS", slots)
    if parallel:
        monkeypatch.setattr(_kernels, "SERIAL_PAIRS", -1)
    qb, db = _data(48, seed=5, nq=30)
    index = HammingIndex(48)
    index.add(db)
    dist = (qb[:, None, :] != db[None, :, :]).sum(-1)
    for radius in (0, 2, 20, 48):
        idx, dd = index.range_search(qb, radius, return_distances=True, kernels="numba")
        for q in range(len(qb)):
            want = np.flatnonzero(dist[q] <= radius)
            want = want[np.lexsort((want, dist[q, want]))]
            np.testing.assert_array_equal(idx[q], want)
            np.testing.assert_array_equal(dd[q], dist[q, want])
