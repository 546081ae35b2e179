"""Parsing and formatting for sorted-set arguments, with Redis 7.0's exact rules.

Redis reads scores with C's ``strtod`` in two flavours: ZADD/ZINCRBY reject leading
spaces, overflow and underflow (``getDoubleFromObject``), while range bounds only require
the whole string to be consumed (``zslParseRange``), so ``" 1"``, ``""`` and ``1e999`` are
valid bounds.  Python's ``float()`` accepts things strtod does not (``1_0``) and not
everything strtod does (hex floats), hence the explicit grammar here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from zan.errors import NOT_FLOAT, RespError

__all__ = ["parse_score", "strtod_full", "format_score", "ScoreRange", "LexRange",
           "parse_score_range", "parse_lex_range", "lex_cmp", "LEX_MIN", "LEX_MAX",
           "MINMAX_NOT_FLOAT", "LEX_NOT_VALID"]

MINMAX_NOT_FLOAT = "ERR min or max is not a float"
LEX_NOT_VALID = "ERR min or max not valid string range item"

_DEC = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_HEX = re.compile(rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?\Z")
_INF = re.compile(rb"[+-]?(?:inf|infinity)\Z", re.IGNORECASE)
_NAN = re.compile(rb"[+-]?nan(?:\([0-9A-Za-z_]*\))?\Z", re.IGNORECASE)
_SPACE = b" \t\n\v\f\r"


def strtod_full(raw: bytes) -> tuple[float, bool] | None:
    """strtod over the whole of `raw`: (value, out_of_range) or None if some byte is left
    unconsumed.  `raw` must not start with white space (callers decide about that)."""
    if _DEC.match(raw):
        value = float(raw)
        if math.isinf(value):
            return value, True
        if value == 0.0 and any(48 < c <= 57 for c in raw.split(b"e")[0].split(b"E")[0]):
            return value, True  # underflow to zero
        return value, False
    if _INF.match(raw):
        return float(raw), False
    if _HEX.match(raw):
        text = raw.decode()
        try:
            value = float.fromhex(text)
        except OverflowError:
            return (-math.inf if text.startswith("-") else math.inf), True
        return value, False
    if _NAN.match(raw):
        return math.nan, False
    return None


def parse_score(raw: bytes) -> float:
    """A score argument (ZADD, ZINCRBY): Redis's getDoubleFromObject."""
    if not raw or raw[0] in _SPACE:
        raise RespError(NOT_FLOAT)
    parsed = strtod_full(raw)
    if parsed is None:
        raise RespError(NOT_FLOAT)
    value, out_of_range = parsed
    if out_of_range and (math.isinf(value) or value == 0.0) or math.isnan(value):
        raise RespError(NOT_FLOAT)
    return value


def _parse_bound(raw: bytes) -> tuple[float, bool]:
    exclusive = raw[:1] == b"("
    if exclusive:
        raw = raw[1:]
    body = raw.lstrip(_SPACE)
    if not body:
        # strtod converts nothing and leaves the end pointer at the start: only an
        # empty string is then "fully consumed" (as 0).
        if raw:
            raise RespError(MINMAX_NOT_FLOAT)
        return 0.0, exclusive
    parsed = strtod_full(body)
    if parsed is None or math.isnan(parsed[0]):
        raise RespError(MINMAX_NOT_FLOAT)
    return parsed[0], exclusive


@dataclass(frozen=True, slots=True)
class ScoreRange:
    min: float
    max: float
    minex: bool
    maxex: bool

    def gte_min(self, score: float) -> bool:
        return score > self.min if self.minex else score >= self.min

    def lte_max(self, score: float) -> bool:
        return score < self.max if self.maxex else score <= self.max

    def is_empty(self) -> bool:
        return self.min > self.max or (self.min == self.max and (self.minex or self.maxex))


def parse_score_range(raw_min: bytes, raw_max: bytes) -> ScoreRange:
    lo, lo_ex = _parse_bound(raw_min)
    hi, hi_ex = _parse_bound(raw_max)
    return ScoreRange(lo, hi, lo_ex, hi_ex)


# Lex bounds: the shared "-" and "+" items compare below / above every string.
LEX_MIN = object()
LEX_MAX = object()


def lex_cmp(a, b) -> int:
    """Redis's sdscmplex: LEX_MIN < every string < LEX_MAX."""
    if a is b:
        return 0
    if a is LEX_MIN or b is LEX_MAX:
        return -1
    if a is LEX_MAX or b is LEX_MIN:
        return 1
    return (a > b) - (a < b)


@dataclass(frozen=True, slots=True)
class LexRange:
    min: object
    max: object
    minex: bool
    maxex: bool

    def gte_min(self, member: bytes) -> bool:
        c = lex_cmp(member, self.min)
        return c > 0 if self.minex else c >= 0

    def lte_max(self, member: bytes) -> bool:
        c = lex_cmp(member, self.max)
        return c < 0 if self.maxex else c <= 0

    def is_empty(self) -> bool:
        c = lex_cmp(self.min, self.max)
        return c > 0 or (c == 0 and (self.minex or self.maxex))


def _lex_item(raw: bytes):
    head = raw[:1]
    if head == b"+":
        if len(raw) != 1:
            raise RespError(LEX_NOT_VALID)
        return LEX_MAX, True
    if head == b"-":
        if len(raw) != 1:
            raise RespError(LEX_NOT_VALID)
        return LEX_MIN, True
    if head == b"(":
        return raw[1:], True
    if head == b"[":
        return raw[1:], False
    raise RespError(LEX_NOT_VALID)


def parse_lex_range(raw_min: bytes, raw_max: bytes) -> LexRange:
    lo, lo_ex = _lex_item(raw_min)
    hi, hi_ex = _lex_item(raw_max)
    return LexRange(lo, hi, lo_ex, hi_ex)


def format_score(score: float) -> bytes:
    """Redis 7.0's addReplyDouble: "%.17g", with inf spelled "inf"/"-inf"."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    return b"%.17g" % score
