"""Each shallow method's own invariants, from its paper (see the method docstrings)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from deephash import methods
from deephash.methods.shallow.ksh import gradient_descent, smoothed_objective
from deephash.methods.shallow.sdh import dcc_sweep
from deephash.methods.shallow.sh import candidate_modes


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices: on the shared 2-core machine multi-threaded BLAS only adds contention."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x * (255.0 / 16.0), y


def test_lsh_collision_probability_is_one_minus_angle_over_pi():
    # Charikar 2002: P[h(u) = h(v)] = 1 - theta / pi for sign random projections.
    rng = np.random.default_rng(0)
    d, bits = 16, 4096
    base = rng.standard_normal((200, d))
    lsh = methods.create("lsh", bits=bits).fit(np.vstack([base, -base]), seed=1)  # mean exactly 0
    assert np.allclose(lsh.mean, 0.0)
    for theta in (np.pi / 8, np.pi / 3, np.pi / 2, 2 * np.pi / 3, 0.9 * np.pi):
        u = rng.standard_normal(d)
        u /= np.linalg.norm(u)
        w = rng.standard_normal(d)
        w -= (w @ u) * u
        w /= np.linalg.norm(w)
        v = np.cos(theta) * u + np.sin(theta) * w
        codes = lsh.encode(np.stack([u, 3.0 * v]))  # scale does not matter
        agree = np.mean(codes[0] == codes[1])
        # binomial std with 4096 bits is <= 0.008; 0.04 is 5 std
        assert abs(agree - (1 - theta / np.pi)) < 0.04, (theta, agree)


def test_lsh_is_data_independent_but_seeded():
    x = np.random.default_rng(0).standard_normal((50, 8))
    a = methods.create("lsh", bits=16).fit(x, seed=3)
    b = methods.create("lsh", bits=16).fit(x + 5.0, seed=3)
    c = methods.create("lsh", bits=16).fit(x, seed=4)
    np.testing.assert_array_equal(a.projection, b.projection)
    assert not np.array_equal(a.projection, c.projection)
    np.testing.assert_array_equal(a.encode(x), b.encode(x + 5.0))  # centring


def test_pcah_projections_are_orthonormal_top_principal_directions(digits):
    x, _ = digits
    m = methods.create("pcah", bits=12).fit(x)
    np.testing.assert_allclose(m.projection.T @ m.projection, np.eye(12), atol=1e-10)
    assert np.all(np.diff(m.variances) <= 1e-9)
    # reference: sklearn-free SVD of the centred data
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(vt[:12] @ m.projection), np.eye(12), atol=1e-6)
    np.testing.assert_allclose(m.variances, s[:12] ** 2 / (len(x) - 1), rtol=1e-8)


def test_itq_quantization_loss_never_rises(digits):
    x, _ = digits
    m = methods.create("itq", bits=24).fit(x, seed=0)
    loss = np.asarray(m.history["quantization_loss"])
    assert len(loss) == 1 + 2 * 50
    assert np.all(np.diff(loss) <= 1e-9 * loss[0])
    assert loss[-1] < loss[0]
    np.testing.assert_allclose(m.rotation.T @ m.rotation, np.eye(24), atol=1e-10)
    # final codes are sgn(V R): their loss equals the last recorded value
    v = (x - m.mean) @ m.projection
    b = np.where(m.encode(x), 1.0, -1.0)
    assert np.sum((b - v @ m.rotation) ** 2) == pytest.approx(loss[-1], rel=1e-9)


def test_itq_cca_quantization_loss_never_rises_and_correlations_sorted(digits):
    x, y = digits
    m = methods.create("itq-cca", bits=8).fit(x, y, seed=0)
    loss = np.asarray(m.history["quantization_loss"])
    assert np.all(np.diff(loss) <= 1e-9 * loss[0])
    assert np.all(np.diff(m.correlations) <= 1e-12)
    assert np.all((m.correlations > 0) & (m.correlations <= 1))


def test_itq_cca_directions_are_canonical(digits):
    # A slow CCA reference: whiten both sides, SVD of the whitened cross-covariance.
    x, y = digits
    onehot = np.eye(10)[y]
    m = methods.create("itq-cca", bits=5, reg=1e-4).fit(x, onehot, seed=0)
    xc, yc = x - x.mean(0), onehot - onehot.mean(0)
    n = len(x)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w**-0.5) @ v.T

    cxx = xc.T @ xc / n + 1e-4 * np.eye(64)
    cyy = yc.T @ yc / n + 1e-4 * np.eye(10)
    s = np.linalg.svd(inv_sqrt(cxx) @ (xc.T @ yc / n) @ inv_sqrt(cyy), compute_uv=False)
    np.testing.assert_allclose(m.correlations, s[:5], rtol=1e-6)
    # each (unscaled) direction is unit-variance and the embedding's columns are uncorrelated
    emb = xc @ (m.projection / m.correlations)
    cov = emb.T @ emb / n + 1e-4 * (m.projection / m.correlations).T @ (
        m.projection / m.correlations
    )
    np.testing.assert_allclose(cov, np.eye(5), atol=1e-6)


def test_itq_cca_warns_beyond_the_canonical_correlation_limit(digits):
    x, y = digits
    with pytest.warns(UserWarning, match="only 9 non-zero canonical correlations"):
        methods.create("itq-cca", bits=12).fit(x, y)


def test_sh_picks_the_smallest_eigenvalues_in_ascending_order(digits):
    x, _ = digits
    for bits in (8, 24, 80):  # 80 > d: several modes per direction
        m = methods.create("sh", bits=bits).fit(x)
        assert np.all(np.diff(m.eigenvalues) >= 0)
        ranges = m.high - m.low
        np.testing.assert_allclose(m.eigenvalues, (m.modes * np.pi / ranges[m.directions]) ** 2)
        # brute force over every (direction, mode) pair with mode 1..bits+5
        all_omega2 = sorted((k * np.pi / r) ** 2 for r in ranges for k in range(1, bits + 6))
        np.testing.assert_allclose(m.eigenvalues, all_omega2[:bits], rtol=1e-12)
        assert len(set(zip(m.directions.tolist(), m.modes.tolist()))) == bits
        assert np.all(m.modes >= 1)  # the constant mode k=0 is never used


def test_sh_bits_are_signs_of_the_analytical_eigenfunctions():
    x = np.random.default_rng(0).uniform(0, 1, size=(400, 1))
    m = methods.create("sh", bits=3).fit(x)
    # one direction: modes 1, 2, 3 -> sin(pi/2 + k pi t), t = (x - a) / (b - a) in [0, 1]
    np.testing.assert_array_equal(m.modes, [1, 2, 3])
    t = np.linspace(0.01, 0.99, 50)[:, None]
    proj = (t * (m.high - m.low) + m.low) / m.components[0, 0]
    codes = m.encode(proj)
    expected = np.stack([np.sin(np.pi / 2 + k * np.pi * t[:, 0]) > 0 for k in (1, 2, 3)], axis=1)
    np.testing.assert_array_equal(codes, expected)


def test_candidate_modes_are_sorted_with_stable_ties():
    d, k, w = candidate_modes(np.array([2.0, 1.0, 2.0]), 2)
    assert np.all(np.diff(w) >= 0)
    assert list(zip(d[:2].tolist(), k[:2].tolist())) == [(0, 1), (2, 1)]


def test_ksh_objective_falls_per_bit(digits):
    x, y = digits
    m = methods.create("ksh", bits=8, n_anchors=100, n_labeled=300, max_iter=50).fit(x, y, seed=0)
    h = m.history
    residue = np.asarray(h["residue"])
    assert np.all(np.diff(residue) < 0), residue  # ||H H^T - r S||^2 after each bit
    assert np.all(np.asarray(h["smoothed_end"]) < np.asarray(h["smoothed_start"]))
    assert np.all(np.asarray(h["discrete_chosen"]) <= np.asarray(h["discrete_spectral"]))
    # the recorded residue is the real one, recomputed from the codes of the labeled subset
    assert residue[0] == pytest.approx(8**2 * 300**2)


def test_ksh_gradient_matches_finite_differences_and_descent_is_monotone():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((30, 6))
    r = rng.standard_normal((30, 30))
    r = r + r.T
    a = rng.standard_normal(6) * 0.3
    value, grad = smoothed_objective(a, k, r)
    eps = 1e-6
    num = np.array(
        [
            (smoothed_objective(a + eps * e, k, r)[0] - smoothed_objective(a - eps * e, k, r)[0])
            / (2 * eps)
            for e in np.eye(6)
        ]
    )
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6)
    b = np.tanh(0.5 * k @ a)
    assert value == pytest.approx(-b @ r @ b)
    _, values = gradient_descent(a, k, r, max_iter=40)
    assert np.all(np.diff(values) < 0)


def test_sdh_objective_falls_over_dcc_iterations(digits):
    x, y = digits
    m = methods.create("sdh", bits=16, n_anchors=200).fit(x, y, seed=0)
    obj = np.asarray(m.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * obj[0]), obj
    assert obj[-1] < 0.1 * obj[0]
    assert len(m.history["outer"]) == 1 + 5


def test_dcc_sweep_minimises_each_bit_exactly():
    # brute force on a tiny problem: after a sweep, flipping any single bit cannot help
    rng = np.random.default_rng(1)
    b = np.where(rng.standard_normal((12, 4)) > 0, 1.0, -1.0)
    q, w = rng.standard_normal((12, 4)), rng.standard_normal((4, 3))

    def f(bb):
        return np.sum((bb @ w) ** 2) - 2 * np.sum(bb * q)

    before = f(b)
    for _ in range(20):
        b, changed = dcc_sweep(b, q, w)
        if not changed:
            break
    assert f(b) <= before
    for i in range(12):
        for j in range(4):
            flipped = b.copy()
            flipped[i, j] *= -1
            assert f(flipped) >= f(b) - 1e-9
