"""Test configuration: two logical CPU devices (to test MirroredStrategy without GPUs)
and quiet TensorFlow logs. Must run before TensorFlow initialises its runtime."""

import os
import tempfile

# Split files of the embedded sets go to a fresh cache, never the user's ~/.cache/deephash,
# so a test run neither depends on nor alters what earlier runs left there.
os.environ.setdefault("DEEPHASH_CACHE", tempfile.mkdtemp(prefix="deephash-test-cache-"))

# Tests never reach the internet: downloads are off unless a test switches them on for a
# server it runs on 127.0.0.1 (tests/_fileserver.py).
os.environ["DEEPHASH_OFFLINE"] = "1"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bitwise-reproducible CPU kernels

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # runtime already initialised by an earlier import
    pass


import pytest  # noqa: E402


@pytest.fixture
def online(monkeypatch):
    """Downloads on (for a 127.0.0.1 server of the test) and back to the default afterwards."""
    from deephash import downloads

    monkeypatch.delenv("DEEPHASH_OFFLINE", raising=False)
    downloads.set_network_allowed(None)
    yield
    downloads.set_network_allowed(None)
