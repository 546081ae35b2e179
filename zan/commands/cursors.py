"""Integer scan cursors for clients, opaque scan positions for handlers.

Redis clients expect SCAN/HSCAN/SSCAN/ZSCAN cursors to be decimal integers that come
back as "0" when the iteration ends.  Our handlers resume from an opaque bytes token
(the last key or element returned), so the node keeps a bounded map from the integers
it hands out to the tokens, plus whatever context it needs to resume (the command, the
key, per-partition positions...).

Cursors are random (from an injected `random.Random`), never 0 and never reissued while
live, so a client cannot walk into another client's iteration by counting.  The map is
LRU-bounded: an iteration abandoned long enough ago is forgotten and its cursor then
gets Redis's "ERR invalid cursor".  Looking a cursor up does not consume it, so a client
may retry a page, as it can with Redis.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from zan.errors import RespError

__all__ = ["CursorRegistry", "CursorEntry", "INVALID_CURSOR", "START_TOKEN",
           "parse_cursor", "SCAN_CURSOR_ARG"]

INVALID_CURSOR = "ERR invalid cursor"
START_TOKEN = b"0"
_MAX_CURSOR = (1 << 63) - 1          # fits every client's signed 64-bit parser
_ULONG = 1 << 64

# Position of the cursor in argv (name = 0) for the commands that take one.
SCAN_CURSOR_ARG = {"scan": 1, "hscan": 2, "sscan": 2, "zscan": 2}

# strtoul as Redis calls it: no leading space, optional sign, decimal digits, nothing after.
_CURSOR_RE = re.compile(rb"[+-]?[0-9]+\Z")


def parse_cursor(raw: bytes) -> int:
    """Redis's parseScanCursorOrReply: an unsigned long (a '-' wraps, as strtoul does)."""
    if not _CURSOR_RE.match(raw):
        raise RespError(INVALID_CURSOR)
    n = int(raw)
    if abs(n) >= _ULONG:
        raise RespError(INVALID_CURSOR)       # ERANGE
    return n % _ULONG


@dataclass(frozen=True, slots=True)
class CursorEntry:
    token: bytes
    context: Any


class CursorRegistry:
    def __init__(self, max_entries: int = 10000, rng: random.Random | None = None):
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._rng = rng if rng is not None else random.Random()
        self._entries: OrderedDict[int, CursorEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, token: bytes, context: Any = None) -> bytes:
        """A new cursor (decimal bytes) standing for `token` (+ `context`); b"0" for the
        end token b"0", which needs no entry."""
        if token == START_TOKEN:
            return b"0"
        while True:
            n = self._rng.randint(1, _MAX_CURSOR)
            if n not in self._entries:
                break
        self._entries[n] = CursorEntry(token, context)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return str(n).encode()

    def resolve(self, raw: bytes, context: Any = None, *, check_context: bool = True
                ) -> CursorEntry:
        """The entry of cursor `raw`: cursor 0 starts (token b"0", the given context).
        An unparsable, unknown or evicted cursor, or one issued for another context
        (another command or key), raises "ERR invalid cursor"."""
        n = parse_cursor(raw)
        if n == 0:
            return CursorEntry(START_TOKEN, context)
        entry = self._entries.get(n)
        if entry is None or (check_context and entry.context != context):
            raise RespError(INVALID_CURSOR)
        self._entries.move_to_end(n)
        return entry

    def forget(self, raw: bytes) -> None:
        """Drop a cursor whose iteration is known to be over."""
        try:
            self._entries.pop(parse_cursor(raw), None)
        except RespError:
            pass
