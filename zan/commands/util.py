"""Argument parsing shared by the command families, with Redis's rules and error texts."""

from __future__ import annotations

import re

from zan.errors import NOT_INTEGER, RespError, wrong_arity
from zan.resp.types import SimpleString

__all__ = ["parse_int", "parse_limit", "parse_int_or", "INT64_MIN", "INT64_MAX", "upper", "clamp_range",
           "check_subcommand", "help_reply"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"

# Redis's string2ll: optional '-', no '+', no spaces, no leading zeros (except "0").
_INT_RE = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")


def parse_int(raw: bytes, error: str = NOT_INTEGER) -> int:
    if len(raw) > 20 or not _INT_RE.match(raw):
        raise RespError(error)
    n = int(raw)
    if not INT64_MIN <= n <= INT64_MAX:
        raise RespError(error)
    return n


def parse_limit(raw: bytes) -> int:
    """SINTERCARD's and ZINTERCARD's LIMIT: a non-negative integer, one error text for
    anything else (Redis's getPositiveLongFromObjectOrReply)."""
    limit = parse_int(raw, LIMIT_NEGATIVE)
    if limit < 0:
        raise RespError(LIMIT_NEGATIVE)
    return limit


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


def check_subcommand(command: str, arities: dict[bytes, int], args: list[bytes]) -> None:
    """Redis's checks for a container command (CONFIG, OBJECT, DEBUG ...): a known
    subcommand (`arities`: by upper-case name, Redis's arity of "<command> <subcommand>",
    both words counted) called with that arity; `args` follows the command's name."""
    sub = args[0].upper()
    arity = arities.get(sub)
    argc = len(args) + 1
    if arity is None:
        raise RespError(f"ERR unknown subcommand '{args[0][:128].decode('utf-8', 'replace')}'. "
                        f"Try {command.upper()} HELP.")
    if (arity > 0 and argc != arity) or (arity < 0 and argc < -arity):
        raise wrong_arity(f"{command}|{sub.decode('utf-8', 'replace').lower()}")


def help_reply(command: str, lines: list[str]) -> list[SimpleString]:
    """addReplyHelp: the header, the subcommands' lines, then HELP's own."""
    header = f"{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [SimpleString(line.encode()) for line in
            [header, *lines, "HELP", "    Prints this help."]]
