"""The registry, the saved file and bad-input errors of the shallow methods (save/reload:
tests/test_method_contract.py)."""

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from deephash import methods


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices: on the shared 2-core machine multi-threaded BLAS only adds contention."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


NAMES = ["lsh", "pcah", "sh", "itq", "itq-cca", "ksh", "sdh"]
SMALL = {"ksh": {"n_anchors": 30, "n_labeled": 80, "max_iter": 10}, "sdh": {"n_anchors": 40}}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=120)
    x = rng.standard_normal((120, 10)) + 2.0 * np.eye(4, 10)[y]
    return x, np.eye(4, dtype=np.uint8)[y]


def fitted(name, data, bits=8, **kw):
    x, y = data
    m = methods.create(name, bits=bits, **{**SMALL.get(name, {}), **kw})
    with pytest.warns(UserWarning) if name == "itq-cca" and bits > 3 else _null():
        return m.fit(x, y if m.supervised else None, seed=0)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_reproducible_for_a_seed(name, data):
    x, _ = data
    np.testing.assert_array_equal(fitted(name, data).encode(x), fitted(name, data).encode(x))


@pytest.mark.parametrize("name", ["itq-cca", "ksh", "sdh"])
def test_supervised_methods_need_labels(name, data):
    x, _ = data
    with pytest.raises(ValueError, match="supervised"):
        methods.create(name, bits=4).fit(x)


@pytest.mark.parametrize("name", ["ksh", "sdh", "itq-cca"])
def test_class_ids_and_multi_hot_labels_agree(name, data):
    x, y = data
    a = methods.create(name, bits=3, **SMALL.get(name, {})).fit(x, y, seed=0)
    b = methods.create(name, bits=3, **SMALL.get(name, {})).fit(x, y.argmax(1), seed=0)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))


@pytest.mark.parametrize("name", ["pcah", "itq", "itq-cca"])
def test_bits_above_feature_dim_is_an_error_naming_the_limit(name, data):
    x, y = data
    with pytest.raises(ValueError, match=r"bits \(11\) must be <= the feature dimension \(10\)"):
        methods.create(name, bits=11).fit(x, y)


def test_sh_and_lsh_and_kernel_methods_allow_bits_above_dim(data):
    x, y = data
    for name in ("lsh", "sh", "ksh", "sdh"):
        assert fitted(name, data, bits=16).encode(x).shape == (120, 16)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 10)), "n >= 1"),
        (np.zeros(10), r"shape \(n, d\)"),
        (np.full((5, 10), np.nan), "NaN"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_features_raise_value_error(name, bad, match):
    with pytest.raises(ValueError, match=match):
        methods.create(name, bits=2).fit(bad, np.zeros((len(bad), 2)) if bad.ndim == 2 else None)


@pytest.mark.parametrize("name", NAMES)
def test_encode_checks_fit_and_dimension(name, data):
    x, _ = data
    with pytest.raises(RuntimeError, match="fit"):
        methods.create(name, bits=4).encode(x)
    with pytest.raises(ValueError, match="10"):
        fitted(name, data, bits=3).encode(x[:, :9])


def test_bad_labels_raise_value_error(data):
    x, y = data
    m = methods.create("sdh", bits=4)
    with pytest.raises(ValueError, match="labels for 120"):
        m.fit(x, y[:50])
    with pytest.raises(ValueError, match="only 0 and 1"):
        m.fit(x, y * 2)
    with pytest.raises(ValueError, match="class ids"):
        m.fit(x, np.linspace(0, 1, 120))


@pytest.mark.parametrize("bits", [0, -3, 2.5, True, "8"])
def test_bad_bits_raise_value_error(bits):
    with pytest.raises(ValueError, match="bits"):
        methods.create("itq", bits=bits)


def test_bad_hyperparameters_raise_value_error():
    with pytest.raises(ValueError, match="n_iter"):
        methods.create("itq", bits=4, n_iter=-1)
    with pytest.raises(ValueError, match="n_anchors"):
        methods.create("ksh", bits=4, n_anchors=0)
    with pytest.raises(ValueError, match="nu"):
        methods.create("sdh", bits=4, nu=-1.0)
    with pytest.raises(ValueError, match="reg"):
        methods.create("itq-cca", bits=4, reg=0.0)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        methods.load(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a saved deephash shallow method"):
        methods.load(str(bad))
    with pytest.raises(RuntimeError, match="nothing to save"):
        methods.create("lsh", bits=4).save(str(tmp_path / "x.npz"))


def test_saved_file_records_config(data, tmp_path):
    m = fitted("sdh", data, bits=6, nu=2e-5)
    m.save(str(tmp_path / "m.npz"))
    with np.load(tmp_path / "m.npz") as z:
        config = json.loads(bytes(z["__config__"]).decode())
    assert config["name"] == "sdh" and config["bits"] == 6 and config["nu"] == 2e-5


def test_baselines_benchmark_reports_ratios_to_lsh():
    import importlib.util
    import os

    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "baselines.py"
    )
    spec = importlib.util.spec_from_file_location("bench_baselines", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.bench_shallow(["lsh", "itq", "sdh"], [150], [12], 8, 0, repeats=1)
    assert [r["method"] for r in rows] == ["lsh", "itq", "sdh"]
    assert rows[0]["fit_vs_lsh_fit"] == 1.0 and all(
        r["fit_s"] > 0 and r["encode_s"] > 0 for r in rows
    )
    assert "fit/LSH fit" in bench.format_table(rows)


@pytest.mark.parametrize("name", NAMES)
def test_encoding_in_blocks_gives_the_same_codes(name, data):
    x, _ = data
    m = fitted(name, data)
    np.testing.assert_array_equal(m.encode(x, batch_size=7), m.encode(x))
