"""deephash.codes: validation, packing order, round trips."""

import numpy as np
import pytest

from deephash import codes


@pytest.mark.parametrize("k", [1, 7, 8, 12, 16, 24, 48, 64, 100, 128])
def test_pack_unpack_round_trip_any_length(k):
    bits = np.random.default_rng(k).integers(0, 2, (9, k)).astype(bool)
    packed = codes.pack(bits)
    assert packed.dtype == np.uint8 and packed.shape == (9, (k + 7) // 8)
    np.testing.assert_array_equal(codes.unpack(packed, k), bits)


def test_pack_uses_packbits_bit_order():
    # bit j is bit 7 - j % 8 of byte j // 8: 1,0,1,1 -> 0b10110000 = 176; bit 8 -> byte 1 = 128
    bits = np.zeros((1, 9), bool)
    bits[0, [0, 2, 3, 8]] = True
    np.testing.assert_array_equal(codes.pack(bits), [[176, 128]])


def test_accepts_bool_01_and_pm1_equally():
    b = np.array([[True, False, True], [False, False, True]])
    for form in (
        b,
        b.astype(np.int8),
        b.astype(np.float32),
        np.where(b, 1, -1),
        np.where(b, 1.0, -1.0),
    ):
        np.testing.assert_array_equal(codes.as_bits(form), b)
        np.testing.assert_array_equal(codes.pack(form), codes.pack(b))


def test_as_bits_accepts_packed_codes_only_when_said():
    b = np.random.default_rng(0).integers(0, 2, (5, 12)).astype(bool)
    np.testing.assert_array_equal(codes.as_bits(codes.pack(b), n_bits=12, packed=True), b)
    words, k = codes.as_words(codes.pack(b), n_bits=12, packed=True)
    assert k == 12
    np.testing.assert_array_equal(words, codes.as_words(b)[0])
    with pytest.raises(ValueError, match="packed=True needs n_bits"):
        codes.as_bits(codes.pack(b), packed=True)


def test_uint8_zero_one_codes_with_byte_count_columns_are_plain_codes():
    # (n, 2) uint8 of 0/1 with n_bits=16: two-bit codes, not 16-bit packed ones (was guessed packed)
    b = np.random.default_rng(1).integers(0, 2, (6, 2)).astype(np.uint8)
    with pytest.raises(ValueError, match="2 bits, expected 16.*packed=True"):
        codes.as_bits(b, n_bits=16)
    with pytest.raises(ValueError, match="2 bits, expected 16"):
        codes.as_words(b, n_bits=16)
    np.testing.assert_array_equal(codes.as_bits(b), b.astype(bool))


def test_as_words_pads_to_whole_words():
    b = np.ones((3, 70), bool)
    words, k = codes.as_words(b)
    assert k == 70 and words.dtype == np.uint64 and words.shape == (3, 2)
    assert int(np.bitwise_count(words).sum()) == 3 * 70


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[0, 1, 2]]), "not binary"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[-1, 0, 1]]), "mix -1 and 0"),
        (np.array([0, 1, 1]), "2-D"),
        (np.zeros((0, 8)), "empty"),
        (np.zeros((3, 0)), "empty"),
        (np.array([["a", "b"]]), "numeric or bool"),
    ],
)
def test_bad_codes_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        codes.as_bits(bad)


def test_bit_length_mismatch_and_bad_padding_raise():
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        codes.as_bits(np.zeros((2, 8), bool), n_bits=16)
    with pytest.raises(ValueError, match="padding bits"):
        codes.as_bits(np.array([[0, 0b00000001]], np.uint8), n_bits=12, packed=True)
    with pytest.raises(ValueError, match="uint8"):
        codes.as_bits(np.zeros((2, 2), np.int64), n_bits=12, packed=True)
    with pytest.raises(ValueError, match="mismatched bit lengths"):
        codes.unpack(np.zeros((2, 3), np.uint8), 12)
    with pytest.raises(ValueError, match="n_bits"):
        codes.unpack(np.zeros((2, 1), np.uint8), 0)
