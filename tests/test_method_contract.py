"""The contract every registered method keeps (``methods.available()``, deep and shallow):
created by name for a data set, fit for one epoch on tiny embedded data, encoded to bool
codes, saved, and reloaded in a FRESH PROCESS (``import deephash``; ``methods.load``) with
identical codes and identical config. One subprocess reloads every method (TensorFlow's
import costs seconds per process). Also: the protocol's members with their defaults,
``factory`` and ``family`` on the class."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import deephash  # noqa: F401
from deephash import data, methods, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = methods.available()
BITS = 8
# tiny networks and short schedules; non-default values where a method has them, so the
# saved config is checked beyond the defaults
_DSEH = {"labnet_hidden": 16, "semantic_dim": 8, "labnet_batch_size": 16, "rounds": 1}
HPARAMS = {
    "dsrh": {"bags": 3, "ortho_weight": 0.1},
    "drh": {"bags": 3, "margin": 0.5},
    "drh+": {"bags": 3, "triplet_on": "relaxed"},
    "ninh": {"margin": 0.5, "threshold_epsilon": 0.05},
    "cnnh": {"with_labels": True, "sweeps": 3},
    "dpsh": {"eta": 0.2},
    "dhn": {"hash_activation": "tanh"},
    "hashnet": {"alpha": 0.3, "beta_step": 7},
    "dseh": {**_DSEH, "alpha": 0.5},
    "dseh-s": _DSEH,
    "dseh-ss": _DSEH,
    "dseh-l": _DSEH,
    "dseh-a": {k: v for k, v in _DSEH.items() if k != "rounds"},
    "ksh": {"n_anchors": 30, "n_labeled": 80, "max_iter": 10},
    "sdh": {"n_anchors": 40, "nu": 2e-5},
    "itq": {"n_iter": 20},
    "lsh": {"centre": False},
}
CONFIG = training.TrainConfig(epochs=1, batch_size=16, lr=0.01, verbose=0)

_RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import deephash
    from deephash import methods

    jobs = json.load(open(sys.argv[1]))
    images = np.load(jobs.pop("__images__"))
    out = {}
    for name, path in jobs.items():
        model = methods.load(path)
        np.save(path + ".codes.npy", model.encode(images))
        out[name] = {"type": type(model).__name__, "config": model.get_config()}
    json.dump(out, open(sys.argv[2], "w"))
""")


def _jsonable(value):
    return json.loads(json.dumps(value))


def _fit_and_save(name, ds, images, directory):
    """Create, fit one epoch, encode and save ``name``: what the reload is compared with."""
    training.set_seed(0)
    model = methods.create(name, bits=BITS, dataset=ds, **HPARAMS.get(name, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ITQ-CCA: more bits than directions
        history = model.fit_dataset(ds, CONFIG)
    path = os.path.join(directory, name + (".keras" if model.family == "deep" else ".npz"))
    model.save(path)
    return {
        "model": model,
        "history": history,
        "path": path,
        "codes": model.encode(images),
        "config": _jsonable(model.get_config()),
    }


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """Every method fit, saved and reloaded in ONE fresh process: ``{name: record}``, a
    record holding the exception instead where a method failed before the reload."""
    directory = str(tmp_path_factory.mktemp("contract"))
    digits = data.load("digits")
    ds = dataclasses.replace(digits, train=digits.train.subset(np.arange(64)))
    images = digits.query.images[:40]
    np.save(os.path.join(directory, "images.npy"), images)
    records = {}
    for name in NAMES:
        try:
            records[name] = _fit_and_save(name, ds, images, directory)
        except Exception as e:  # reported by that method's test
            records[name] = {"error": e}
    jobs = {n: r["path"] for n, r in records.items() if "path" in r}
    jobs["__images__"] = os.path.join(directory, "images.npy")
    with open(os.path.join(directory, "jobs.json"), "w") as f:
        json.dump(jobs, f)
    result = os.path.join(directory, "reloaded.json")
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD, os.path.join(directory, "jobs.json"), result],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(result) as f:
        reloaded = json.load(f)
    for name, record in records.items():
        if name in reloaded:
            record["reloaded"] = reloaded[name]
            record["reloaded_codes"] = np.load(record["path"] + ".codes.npy")
    return {"records": records, "directory": directory, "n_images": len(images)}


@pytest.mark.parametrize("name", NAMES)
def test_method_fits_encodes_and_reloads_in_a_fresh_process(contract, name):
    record = contract["records"][name]
    if "error" in record:
        raise record["error"]
    model = record["model"]
    assert isinstance(model, methods.HashingMethod)
    assert model.family == methods.family(name) == methods.factory(name).family
    assert isinstance(record["history"], dict)
    codes = record["codes"]
    assert codes.dtype == bool and codes.shape == (contract["n_images"], BITS)
    assert record["reloaded"]["type"] == type(model).__name__
    np.testing.assert_array_equal(record["reloaded_codes"], codes)
    assert record["reloaded"]["config"] == record["config"]
    for key, value in HPARAMS.get(name, {}).items():
        assert record["config"][key] == value, key
    hparams = model.hparams()
    assert _jsonable(hparams) == hparams
    if model.family == "deep":
        assert hparams["bits"] == BITS and hparams["backbone"] == "small_cnn"


def test_saves_are_atomic(contract):
    assert not [f for f in os.listdir(contract["directory"]) if ".tmp" in f]


@pytest.mark.parametrize("name", NAMES)
def test_protocol_members_have_defaults_on_the_class(name):
    cls = methods.factory(name)
    assert cls is methods.factory(name.upper())
    assert cls.family in ("deep", "shallow")
    assert methods.family(name) == cls.family
    for member in ("fit_dataset", "encode", "save", "hparams", "extra_metrics"):
        assert callable(getattr(cls, member)), member
    hparams = {"anything": 1}
    resolved, selection = cls.resolve_hparams(name, None, BITS, CONFIG, hparams)
    assert resolved == hparams and resolved is not hparams and selection == {}


def test_factory_names_the_available_methods_for_an_unknown_one():
    with pytest.raises(ValueError, match="available: .*dsrh.*lsh"):
        methods.factory("nope")
    with pytest.raises(ValueError, match="nope"):
        methods.family("nope")


def test_extra_metrics_default_to_none(contract):
    model = contract["records"]["lsh"]["model"]
    codes = np.zeros((2, BITS), bool)
    assert model.extra_metrics(None, codes, codes) == {}
    assert contract["records"]["dpsh"]["model"].extra_metrics(None, codes, codes) == {}
