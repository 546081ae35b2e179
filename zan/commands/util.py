"""Argument parsing shared by the command families, with Redis's rules and error texts."""

from __future__ import annotations

import re

from zan.errors import NOT_INTEGER, RespError

__all__ = ["parse_int", "parse_int_or", "INT64_MIN", "INT64_MAX", "upper", "clamp_range"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# Redis's string2ll: optional '-', no '+', no spaces, no leading zeros (except "0").
_INT_RE = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


def parse_int(raw: bytes, error: str = NOT_INTEGER) -> int:
    if len(raw) > 20 or not _INT_RE.match(raw):
        raise RespError(error)
    n = int(raw)
    if not INT64_MIN <= n <= INT64_MAX:
        raise RespError(error)
    return n


def parse_int_or(raw: bytes, default_error: str) -> int:
    return parse_int(raw, default_error)


def upper(raw: bytes) -> bytes:
    return raw.upper()


def clamp_range(start: int, end: int, size: int) -> tuple[int, int]:
    """Redis's inclusive [start, end] with negative indexes (LRANGE, ZRANGE ...) as a
    half-open [lo, hi) over `size` elements; (0, 0) when empty."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    if start < 0:
        start = 0
    if start > end or start >= size:
        return 0, 0
    if end >= size:
        end = size - 1
    return start, end + 1
