"""deephash.io: files appear whole or not at all."""

import json
import os

import numpy as np
import pytest

from deephash.io import atomic_write, write_json


def test_atomic_write_replaces_file_only_on_success(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half-")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]  # no temporary left behind


def test_atomic_write_honours_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "a.txt").st_mode & 0o777) == oct(0o644)


def test_write_json_converts_numpy_values(tmp_path):
    write_json(
        tmp_path / "m.json", {"map": np.float32(0.5), "n": np.int64(3), "curve": np.arange(3)}
    )
    assert json.loads((tmp_path / "m.json").read_text()) == {"map": 0.5, "n": 3, "curve": [0, 1, 2]}


def test_write_json_rejects_unserialisable_objects_without_leaving_a_file(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not os.listdir(tmp_path)
