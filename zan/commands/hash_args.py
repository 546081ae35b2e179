"""Redis's long double arithmetic for HINCRBYFLOAT, emulated exactly.

Redis parses with ``strtold`` and adds in the x86-64 ``long double`` (80-bit extended:
64-bit significand, binary exponent down to -16382, subnormals to 2**-16445), then
prints with ``"%.17Lf"`` and trims trailing zeros (util.c ``string2ld`` / ``ld2string``
in LD_STR_HUMAN mode).  A Python float would round differently after a few additions
and print other digits, so values are kept as exact `Fraction`s rounded to the long
double grid after every operation.  Infinity is a plain float (NaN never survives
parsing).
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["LongDouble", "parse_long_double", "add_long_double", "format_long_double"]

LongDouble = Fraction | float  # a float only for +-inf

_MANT_BITS = 64
_MIN_EXP = -16382                 # exponent of the smallest normal value
_OVERFLOW = Fraction(2) ** 16384  # smallest magnitude that rounds to infinity
_MAX_CHARS = 5 * 1024             # MAX_LONG_DOUBLE_CHARS: longer input is rejected

_DEC = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?\Z")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?\Z")
_INF = re.compile(rb"([+-]?)(?:inf|infinity)\Z", re.IGNORECASE)
_C_SPACE = b" \t\n\v\f\r"


def _round(x: Fraction) -> LongDouble | None:
    """`x` rounded to the nearest long double (ties to even); None on overflow."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    m = abs(x)
    # floor(log2(m)) from the bit lengths, corrected by one comparison.
    e = m.numerator.bit_length() - m.denominator.bit_length()
    if Fraction(2) ** e > m:
        e -= 1
    q = Fraction(2) ** (max(e, _MIN_EXP) - (_MANT_BITS - 1))
    n = round(m / q)  # Fraction.__round__ rounds half to even
    r = n * q
    if r >= _OVERFLOW:
        return None
    return sign * r


def parse_long_double(raw: bytes) -> LongDouble | None:
    """Redis's string2ld: the value, or None when Redis would reject the text."""
    if not raw or len(raw) >= _MAX_CHARS:
        return None
    raw = raw.split(b"\x00", 1)[0]  # strtold stops at the C string's end
    if not raw or raw[0] in _C_SPACE:
        return None
    m = _INF.match(raw)
    if m:
        return float("-inf") if m.group(1) == b"-" else float("inf")
    m = _HEX.match(raw)
    if m:
        sign, ip, fp, ex = m.groups()
        fp = fp or b""
        if not ip and not fp:
            return None
        digits = (ip + fp).lstrip(b"0")
        exp2 = int(ex or b"0") - 4 * len(fp)
        value = _scaled(int(digits, 16) if digits else 0, 2, exp2, 4 * len(digits))
    else:
        m = _DEC.match(raw)
        if not m:
            return None
        sign, ip, fp, ex = m.groups()
        fp = fp or b""
        if not ip and not fp:
            return None
        digits = (ip + fp).lstrip(b"0")
        exp10 = int(ex or b"0") - len(fp)
        value = _scaled(int(digits) if digits else 0, 10, exp10, len(digits))
    if value is None:
        return None
    if sign == b"-":
        value = -value
    return value


def _scaled(mantissa: int, base: int, exp: int, ndigits: int) -> Fraction | None:
    """mantissa * base**exp on the long double grid; None when strtold reports ERANGE
    with an infinite or zero result (Redis rejects both)."""
    if mantissa == 0:
        return Fraction(0)
    # Order of magnitude in the base, to refuse absurd exponents before computing them.
    magnitude = exp + ndigits
    limit = 4950 if base == 10 else 16450
    if magnitude > limit:
        return None
    if magnitude < -limit:
        return None
    if exp >= 0:
        x = Fraction(mantissa * base ** exp)
    else:
        x = Fraction(mantissa, base ** -exp)
    r = _round(x)
    if r is None or r == 0:
        return None
    return r


def add_long_double(a: LongDouble, b: LongDouble) -> LongDouble | None:
    """a + b in long double; None when the sum is infinite or NaN."""
    if isinstance(a, float) or isinstance(b, float):
        return None
    return _round(a + b)


def format_long_double(value: Fraction) -> bytes:
    """``"%.17Lf"`` with trailing zeros (and a bare point) removed; "-0" becomes "0"."""
    scaled = round(abs(value) * 10 ** 17)
    int_part, frac_part = divmod(scaled, 10 ** 17)
    text = b"%d.%017d" % (int_part, frac_part)
    text = text.rstrip(b"0").rstrip(b".")
    if value < 0 and text != b"0":
        text = b"-" + text
    return text
