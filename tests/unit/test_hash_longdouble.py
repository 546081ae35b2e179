"""The long double emulation behind HINCRBYFLOAT (values checked with redis-server 7.0)."""

from fractions import Fraction

import pytest

from zan.commands.hash_args import add_long_double, format_long_double, parse_long_double


@pytest.mark.parametrize("text, ok", [
    (b"1.5", True), (b"-1.5", True), (b"+.5", True), (b"5.", True), (b"1e3", True),
    (b"0x10", True), (b"0x1p-2", True), (b"inf", True), (b"-Infinity", True),
    (b"nan", False), (b"", False), (b" 1", False), (b"1 ", False), (b"1e", False),
    (b".", False), (b"abc", False), (b"1e5000", False), (b"1e-5000", False), (b"0x", False),
    (b"0", True), (b"-0.0", True), (b"1e4932", True), (b"1e-4940", True),
])
def test_parse_accepts_what_strtold_and_redis_accept(text, ok):
    assert (parse_long_double(text) is not None) == ok


def test_parse_stops_at_nul_like_a_c_string():
    assert parse_long_double(b"2.5\x00junk") == Fraction(5, 2)


def test_rounding_uses_a_64_bit_significand():
    # 2**64 + 1 needs 65 bits: it rounds to 2**64 (tie to even).
    assert parse_long_double(b"18446744073709551617") == 2 ** 64
    assert parse_long_double(b"18446744073709551619") == 2 ** 64 + 4  # 2**64+3 rounds up
    third = parse_long_double(b"0.1")
    assert third != Fraction(1, 10)
    assert abs(third - Fraction(1, 10)) < Fraction(1, 10) / 2 ** 63


@pytest.mark.parametrize("a, b, expected", [
    (b"10.5", b"0.1", b"10.6"),
    (b"0", b"-0.0", b"0"),
    (b"2.5", b"1e300", None),  # checked below by prefix
    (b"3.0e2", b"0", b"300"),
    (b"0x10", b"1000", b"1016"),
    (b"0.1", b"0.2", b"0.3"),
    (b"1", b"-1.0000001", b"-0.0000001"),
])
def test_add_and_format(a, b, expected):
    total = add_long_double(parse_long_double(a), parse_long_double(b))
    text = format_long_double(total)
    if expected is None:
        # Redis 7.0 prints 2.5 + 1e300 in long double as this.
        assert text.startswith(b"10000000000000000000089973240795591938705239442732907479382600823212656465961809")
    else:
        assert text == expected


def test_overflow_and_infinity():
    big = parse_long_double(b"1e4932")
    assert add_long_double(big, big) is None
    assert add_long_double(parse_long_double(b"inf"), Fraction(1)) is None
