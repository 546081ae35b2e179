"""One page of HSCAN / SSCAN over a collection's element records.

Redis's cursors are positions in its hash table; ours is where the previous page
stopped.  A page returns an opaque token: ``b"0"`` when the collection is exhausted,
otherwise a marker byte followed by the last element examined (so a member literally
named "0" cannot be mistaken for the end).  The node layer maps integer cursors to
these tokens.  COUNT bounds the elements examined, MATCH filters them afterwards, as in
Redis, so a page may come back empty with a non-zero token.
"""

from __future__ import annotations

from zan.commands.glob import glob_match
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError
from zan.store import codec
from zan.store.keyspace import Txn

__all__ = ["parse_scan_options", "scan_page", "DEFAULT_COUNT", "END_TOKEN"]

DEFAULT_COUNT = 10
END_TOKEN = b"0"
_MARK = b"@"


def parse_scan_options(opts: list[bytes]) -> tuple[int, bytes | None]:
    """(count, pattern or None) from ``[MATCH p] [COUNT n]`` in any order, repeated."""
    count = DEFAULT_COUNT
    pattern: bytes | None = None
    i = 0
    while i < len(opts):
        opt = opts[i].lower()
        more = len(opts) - i
        if opt == b"count" and more >= 2:
            count = parse_int(opts[i + 1])
            if count < 1:
                raise RespError(SYNTAX)
        elif opt == b"match" and more >= 2:
            pattern = None if opts[i + 1] == b"*" else opts[i + 1]
        else:
            raise RespError(SYNTAX)
        i += 2
    return count, pattern


def scan_page(txn: Txn, prefix: bytes, token: bytes, count: int, pattern: bytes | None,
              ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(next token, [(suffix, value), ...]) for the elements under `prefix` after `token`."""
    if token in (b"", END_TOKEN):
        start = prefix
    elif token.startswith(_MARK):
        start = prefix + token[1:] + b"\x00"  # just after the last element returned
    else:
        raise RespError("ERR invalid cursor")
    n = len(prefix)
    items: list[tuple[bytes, bytes]] = []
    examined = 0
    last = b""
    for key, value in txn.iterate(start, codec.prefix_end(prefix)):
        if examined == count:
            return _MARK + last, items
        last = key[n:]
        examined += 1
        if pattern is None or glob_match(pattern, last):
            items.append((last, value))
    return END_TOKEN, items
