"""Imports: the numpy-only core works without TensorFlow; the parts that need it say so.

Each check runs in a fresh interpreter where ``tensorflow``, ``keras`` and
``tensorflow_datasets`` are hidden (``sys.modules[name] = None`` before anything is imported,
which makes ``import tensorflow`` fail as if it were not installed).
"""

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HIDE_TENSORFLOW = """
import sys
for _name in ("tensorflow", "keras", "tensorflow_datasets"):
    sys.modules[_name] = None
"""


def _run_without_tensorflow(code: str) -> subprocess.CompletedProcess:
    script = HIDE_TENSORFLOW + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_numpy_core_scores_codes_without_tensorflow():
    out = _run_without_tensorflow(
        """
        import numpy as np
        import deephash.codes, deephash.index, deephash.metrics
        import deephash.validation, deephash.io
        from deephash import HammingIndex, metrics

        rng = np.random.default_rng(0)
        labels = rng.integers(0, 3, 40)
        centres = rng.random((3, 16)) > 0.5
        db = centres[labels] ^ (rng.random((40, 16)) < 0.1)
        q = centres[[0, 1, 2]]
        score = metrics.mean_average_precision(q, db, np.arange(3), labels)
        assert 0.5 < score <= 1.0, score
        packed = deephash.codes.pack(db)
        assert (deephash.codes.unpack(packed, 16) == db).all()
        index = HammingIndex(16)
        index.add(db)
        assert index.search(q, 5)[1].shape == (3, 5)
        assert "HammingIndex" in dir(deephash) and "methods" in deephash.__all__
        loaded = [m for m in ("tensorflow", "keras") if sys.modules.get(m) is not None]
        assert not loaded, loaded
        print("ok", round(float(score), 4))
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "ok"


@pytest.mark.parametrize(
    "statement",
    ["import deephash.methods", "from deephash import data", "deephash.training"],
)
def test_parts_needing_tensorflow_name_the_extras_without_it(statement):
    out = _run_without_tensorflow(
        f"""
        import deephash
        try:
            {statement}
        except ImportError as e:
            print(e)
        else:
            raise SystemExit("no ImportError")
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "deephash[cpu]" in out.stdout and "deephash[gpu]" in out.stdout, out.stdout


def test_every_module_either_imports_without_tensorflow_or_names_the_extras():
    """A new module that imports TensorFlow must be listed in _compat.NEEDS_TENSORFLOW (or
    reach TensorFlow through a listed part), so that its error is the clear one."""
    out = _run_without_tensorflow(
        """
        import importlib, pkgutil
        import deephash

        for info in pkgutil.iter_modules(deephash.__path__):
            try:
                importlib.import_module("deephash." + info.name)
            except ImportError as e:
                assert "deephash[cpu]" in str(e), (info.name, str(e))
                print("needs-tensorflow", info.name)
            else:
                print("numpy-only", info.name)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    numpy_only = {line.split()[1] for line in out.stdout.splitlines() if line[:5] == "numpy"}
    assert {"codes", "index", "metrics", "validation", "io", "_kernels"} <= numpy_only


def test_import_deephash_registers_keras_objects_where_tensorflow_is_installed():
    script = textwrap.dedent(
        """
        import keras
        import deephash
        names = keras.saving.get_custom_objects()
        assert "deephash>BagHash" in names, sorted(names)[:20]
        assert "deephash.methods" in __import__("sys").modules
        """
    )
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
