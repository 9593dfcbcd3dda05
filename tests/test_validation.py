"""deephash.validation: the one set of argument checks and its one message format."""

import math

import numpy as np
import pytest

from deephash import validation as v


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(200)])
def test_check_int_accepts_python_and_numpy_integers(value):
    out = v.check_int(value, "bits")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, "3", None, np.bool_(True), [1]])
def test_check_int_rejects_non_positive_and_non_integers_in_one_format(value):
    with pytest.raises(ValueError) as err:
        v.check_int(value, "bits", owner="dpsh")
    assert str(err.value) == f"dpsh: bits must be a positive integer. Received: bits={value!r}"


def test_check_int_bounds_and_their_wording():
    assert v.check_int(0, "n", minimum=0) == 0
    with pytest.raises(ValueError, match=r"n must be a non-negative integer\. Received: n=-1"):
        v.check_int(-1, "n", minimum=0)
    with pytest.raises(ValueError, match=r"an integer in \[1, 4\]\. Received: k=5"):
        v.check_int(5, "k", maximum=4)
    assert v.check_int(-5, "offset", minimum=None) == -5


@pytest.mark.parametrize("value", [0.5, 2, np.float32(0.25)])
def test_check_number_accepts_reals(value):
    assert v.check_number(value, "lr", positive=True) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_check_number_rejects_non_positive_nan_inf_bool_and_strings(value):
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0\. Received: lr="):
        v.check_number(value, "lr", positive=True)


def test_check_number_inclusive_bounds_and_infinite_on_request():
    assert v.check_number(0, "w", minimum=0) == 0.0
    assert v.check_number(1, "w", maximum=1) == 1.0
    with pytest.raises(ValueError):
        v.check_number(1.5, "w", maximum=1)
    assert v.check_number(math.inf, "cap", finite=False) == math.inf


def test_check_fraction_ends():
    assert v.check_fraction(0.2, "f") == 0.2
    for bad in (0, 1, -0.1, 1.1, math.nan, True):
        with pytest.raises(ValueError, match=r"f must be a number in \(0, 1\)"):
            v.check_fraction(bad, "f")
    assert v.check_fraction(0, "f", allow_zero=True) == 0.0
    assert v.check_fraction(1, "f", allow_one=True) == 1.0


def test_check_choice_names_the_options():
    assert v.check_choice("adam", ("sgd", "adam"), "optimizer") == "adam"
    with pytest.raises(ValueError) as err:
        v.check_choice("rmsprop", ("sgd", "adam"), "optimizer", owner="dseh")
    assert str(err.value) == (
        "dseh: optimizer must be one of 'sgd', 'adam'. Received: optimizer='rmsprop'"
    )
    with pytest.raises(ValueError):
        v.check_choice([1], ("a",), "x")  # unhashable, not a crash


def test_check_bool():
    assert v.check_bool(np.bool_(True), "augment") is True
    with pytest.raises(ValueError, match="augment must be True or False. Received: augment=1"):
        v.check_bool(1, "augment")


def test_is_int_and_is_number_exclude_booleans():
    assert v.is_int(np.int8(1)) and not v.is_int(True) and not v.is_int(1.0)
    assert v.is_number(1.5) and v.is_number(2) and not v.is_number(False)
