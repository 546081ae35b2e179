"""INCRBYFLOAT's arithmetic, bit-exact with Redis on x86-64: C ``long double`` (80-bit
extended: 64-bit significand, exponents down to 2**-16445) parsed by ``strtold``, summed,
and printed with ``"%.17Lf"`` minus trailing zeros (util.c ld2string, LD_STR_HUMAN).

Python has no long double, so values are exact `Fraction`s rounded to the format after
every operation, which is what the FPU does.
"""

from __future__ import annotations

import re
from fractions import Fraction

from zan.errors import NOT_FLOAT, RespError

__all__ = ["parse_long_double", "add_long_double", "format_long_double", "INFINITY"]

_MANT_BITS = 64
_MIN_EXP = -16382          # smallest normal exponent
_MAX_EXP = 16383
_MAX_CHARS = 5 * 1024      # MAX_LONG_DOUBLE_CHARS

INFINITY = "inf"           # sentinel: the result overflowed

_DEC = re.compile(rb"([+-]?)((\d*)(?:\.(\d*))?)(?:[eE]([+-]?\d+))?\Z")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?\Z")
_INF = re.compile(rb"[+-]?(inf|infinity)\Z", re.IGNORECASE)


def _round(x: Fraction):
    """`x` rounded to the nearest long double (ties to even); INFINITY on overflow."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    q = max(e, _MIN_EXP) - (_MANT_BITS - 1)
    scaled = a / (Fraction(2) ** q)
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n & 1):
        n += 1
    r = n * Fraction(2) ** q
    if r >= Fraction(2) ** (_MAX_EXP + 1):
        return INFINITY
    return sign * r


def parse_long_double(raw: bytes) -> Fraction | str:
    """strtold with Redis's string2ld checks; returns INFINITY for a literal infinity
    (Redis accepts "inf" and then refuses the sum).  Raises "not a valid float"."""
    if not raw or len(raw) >= _MAX_CHARS or raw[:1].isspace():
        raise RespError(NOT_FLOAT)
    if _INF.match(raw):
        return INFINITY
    m = _DEC.match(raw)
    if m and (m.group(3) or m.group(4)):
        sign, _, whole, frac, exp = m.groups()
        digits = (whole or b"") + (frac or b"")
        e10 = int(exp or b"0") - len(frac or b"")
        stripped = digits.lstrip(b"0")
        if not stripped:
            return Fraction(0)
        # Far outside the format: decide without building a gigantic integer.
        magnitude = len(stripped) + e10
        if magnitude > 4940:
            raise RespError(NOT_FLOAT)          # ERANGE, HUGE_VAL
        if magnitude < -4960:
            raise RespError(NOT_FLOAT)          # ERANGE, underflow to zero
        value = Fraction(int(digits)) * (Fraction(10) ** e10)
    else:
        m = _HEX.match(raw)
        if not m or not (m.group(2) or m.group(3)):
            raise RespError(NOT_FLOAT)
        sign, whole, frac, exp = m.groups()
        digits = (whole or b"") + (frac or b"")
        e2 = int(exp or b"0") - 4 * len(frac or b"")
        if not digits.strip(b"0"):
            return Fraction(0)
        if abs(e2) > 40000:
            raise RespError(NOT_FLOAT)
        value = Fraction(int(digits, 16)) * (Fraction(2) ** e2)
    rounded = _round(value)
    if rounded is INFINITY or rounded == 0:
        raise RespError(NOT_FLOAT)              # ERANGE: overflow or underflow to zero
    return -rounded if sign == b"-" else rounded


def add_long_double(a, b):
    """a + b in long double; INFINITY if either is infinite or the sum overflows."""
    if a is INFINITY or b is INFINITY:
        return INFINITY
    return _round(a + b)


def format_long_double(x: Fraction) -> bytes:
    """"%.17Lf" (exact decimal expansion, rounded half-even), trailing zeros and a bare
    '.' removed, "-0" spelled "0"."""
    neg = x < 0
    scaled = abs(x) * 10 ** 17
    n = scaled.numerator // scaled.denominator
    rem = scaled - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n & 1):
        n += 1
    text = f"{n // 10 ** 17}.{n % 10 ** 17:017d}".rstrip("0").rstrip(".")
    if neg:
        text = "-" + text
    if text == "-0":
        text = "0"
    return text.encode()
