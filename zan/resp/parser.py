"""Sans-IO parser of client requests, byte-compatible with Redis 7.0's networking.c.

`RequestParser` takes bytes as they arrive (`feed`) and yields each complete command as a
``list[bytes]`` (iterate it, or call `next`).  It never decodes and never touches a socket.

Both request forms Redis accepts are handled:

* multibulk (``*N\\r\\n$n\\r\\n...``), the form every client library sends, on the hot path;
* inline (``SET k "v\\x41"``), split with the rules of Redis's ``sdssplitargs``.

Malformed input raises `ProtocolError` carrying the exact detail text Redis replies with, after
every command that was complete before it has been yielded.  Redis's own quirks are kept on
purpose, because a client that works against Redis must work here too: the byte after a header's
``\\r`` is skipped unchecked, the two bytes after a bulk are skipped unchecked, ``*0`` and negative
counts are ignored, and a NUL before a line's end hides that line end (Redis searches with
``strchr``), so such a request waits until it is too big.

Speed: runs of well-formed multibulk commands are parsed by ``hiredis.Reader`` (C), about ten times
faster than Python.  hiredis is laxer than Redis, so its output is only trusted when it provably
matches Redis's reading: every element must be a plain bulk (checked by ``b"".join``), the region
holds no line that hiredis could read as a RESP3/status element returning bytes (``\n+``, ``\n=``,
``\n(``) nor an array header of 10000 or more (hiredis allocates the list when it reads the
header), and the region is too small to hold an argument or a count beyond the limits.  Under
those conditions the consumed bytes are exactly the canonical encoding of the commands, so the
position is known: the whole region when the reader, probed with an empty array, stands at a
command boundary (then the reader is kept for the next feed), else the measured commands.  Everything else (a command cut by a chunk boundary, inline requests, errors,
Redis-only leniencies) goes through the exact pure-Python parser below, which keeps the texts.

Commands are parsed lazily, one batch per call when the buffer runs dry, so a caller that stops
iterating (QUIT, back-pressure, close) leaves the rest unparsed, and a change of the
`authenticated` flag applies from the next command on, as in Redis.
"""

from __future__ import annotations

import re
from collections import deque
from itertools import chain

import hiredis

from zan.errors import ProtocolError

__all__ = ["RequestParser", "split_args", "parse_ll"]

PROTO_INLINE_MAX_SIZE = 64 * 1024
PROTO_MAX_BULK_LEN = 512 * 1024 * 1024
PROTO_MAX_MULTIBULK_LEN = 2**31 - 1  # Redis 7.0 accepts any count up to INT_MAX
UNAUTH_MAX_MULTIBULK_LEN = 10
UNAUTH_MAX_BULK_LEN = 16384

_LLONG_MAX = 2**63 - 1
_STAR = 0x2A
_DOLLAR = 0x24
# A run of commands parsed ahead per refill; bounded so a huge pipeline is not all parsed at once.
_BATCH = 1024
# Lines hiredis would turn into bytes although Redis rejects them (status, verbatim, bignum,
# attribute), and aggregate headers with a count of 10000 or more, for which hiredis allocates
# the whole list up front (``*2147483647`` would cost 16 GiB); such regions go to the exact parser.
_SUSPECT = re.compile(rb"\n(?:[+=(|~%>]|\*[0-9]{5})")
_BIG_COUNT = re.compile(rb"\*[0-9]{5}")
_EMPTY_ARRAY = b"*0\r\n"


def parse_ll(s: bytes) -> int | None:
    """Redis's ``string2ll``: strict decimal, no sign but '-', no leading zero, fits int64."""
    if s.isdigit():
        if s[0] == 0x30 and len(s) > 1:
            return None
        v = int(s)
        return v if v <= _LLONG_MAX else None
    if len(s) > 1 and s[0] == 0x2D and s[1] != 0x30 and s[1:].isdigit():
        v = -int(s[1:])
        return v if v >= -_LLONG_MAX - 1 else None
    return None


class RequestParser:
    """Incremental parser of a client's request stream.

    `authenticated` may be flipped by the owner at any time; while it is false the stricter
    limits Redis applies to clients that have not passed AUTH are enforced.
    """

    __slots__ = (
        "authenticated",
        "_max_bulk",
        "_max_mbulk",
        "_max_inline",
        "_buf",
        "_pos",
        "_chunks",
        "_chunked",
        "_need",
        "_ready",
        "_argv",
        "_left",
        "_error",
        "_fast",
        "_fast_ok",
        "_fast_cap",
        "_reader",
    )

    def __init__(
        self,
        max_bulk_len: int = PROTO_MAX_BULK_LEN,
        max_multibulk_len: int = PROTO_MAX_MULTIBULK_LEN,
        max_inline_len: int = PROTO_INLINE_MAX_SIZE,
        authenticated: bool = True,
        use_hiredis: bool = True,
    ):
        self.authenticated = authenticated
        self._max_bulk = max_bulk_len
        self._max_mbulk = max_multibulk_len
        self._max_inline = max_inline_len
        self._buf = b""
        self._pos = 0
        # Data not yet joined into _buf: while a big bulk is still arriving we only count bytes,
        # so receiving an N-byte value costs O(N), not O(N^2).
        self._chunks: list[bytes] = []
        self._chunked = 0
        self._need = 0  # unconsumed bytes needed before parsing can progress (0: parse now)
        self._ready: deque[list[bytes]] = deque()
        self._argv: list[bytes] | None = None  # multibulk command in progress
        self._left = 0  # arguments still missing from _argv
        self._error: ProtocolError | None = None
        self._fast = use_hiredis
        self._fast_ok = use_hiredis  # cleared after an anomaly until new data arrives
        self._fast_cap = min(max_bulk_len, 6 * max_multibulk_len)
        self._reader: hiredis.Reader | None = None  # empty, at a command boundary

    def feed(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._chunked += len(data)
            self._fast_ok = self._fast

    def buffered(self) -> int:
        """Bytes received and not yet returned as commands (ready commands not counted)."""
        return len(self._buf) - self._pos + self._chunked

    def __iter__(self) -> RequestParser:
        return self

    def pop(self) -> list[bytes] | None:
        """The next complete command, or None until more data arrives (`next` without the
        cost of raising StopIteration on the hot path); raises the stream's ProtocolError."""
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._error is not None:
            raise self._error
        avail = len(self._buf) - self._pos + self._chunked
        if avail and avail >= self._need:
            if self._chunks:
                self._join()
            if self._fast_ok and self._argv is None and self.authenticated:
                self._fast_fill()
            if not ready:
                self._fill()
            if ready:
                return ready.popleft()
        if self._error is not None:
            raise self._error
        return None

    def __next__(self) -> list[bytes]:
        argv = self.pop()
        if argv is None:
            raise StopIteration
        return argv

    next = __next__

    def _join(self) -> None:
        buf = self._buf
        pos = self._pos
        if pos < len(buf):
            self._chunks.insert(0, buf[pos:] if pos else buf)
        self._buf = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._pos = 0
        self._chunks = []
        self._chunked = 0

    def _fast_fill(self) -> None:
        """Parse a run of commands at _pos with hiredis, when it provably agrees with Redis."""
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end or buf[pos] != _STAR or _BIG_COUNT.match(buf, pos) is not None:
            return
        # A command that fits in this many bytes cannot exceed either limit.
        cap = self._fast_cap
        if end - pos > cap:
            end = pos + cap
        m = _SUSPECT.search(buf, pos, end)
        if m is not None:
            end = m.start()
        # A reader is reused only when it was left empty at a command boundary.
        reader = self._reader
        if reader is None:
            reader = hiredis.Reader()
        else:
            self._reader = None
        reader.feed(buf, pos, end - pos)
        batch = []
        gets = reader.gets
        clean = True
        try:
            while True:
                argv = gets()
                if argv is False:
                    break
                if type(argv) is not list or not argv:
                    clean = False
                    break
                batch.append(argv)
        except hiredis.ProtocolError:
            clean = False
        if batch:
            try:
                b"".join(chain.from_iterable(batch))
            except TypeError:  # a non-bulk element: let the exact parser report it
                self._fast_ok = False
                return
            size = 0
            if clean and not reader.has_data():
                # Every byte fed was read: either the region ends exactly after the last
                # command, or hiredis holds the first elements of an unfinished one.  An
                # empty array tells them apart: only at a command boundary is it a reply
                # of its own.
                reader.feed(_EMPTY_ARRAY)
                try:
                    if gets() == []:
                        size = end - pos
                        self._reader = reader
                except hiredis.ProtocolError:
                    pass
            if not size:
                # The commands are canonical (hiredis, like Redis, rejects leading zeros
                # and signs in lengths), so their size follows from their arguments.
                flat = list(chain.from_iterable(batch))
                size = len(b"".join(flat))
                size += 5 * len(flat) + len("".join(map(str, map(len, flat))))
                size += 3 * len(batch) + len("".join(map(str, map(len, batch))))
            self._ready.extend(batch)
            pos += size
            if pos >= len(buf):
                self._buf = b""
                pos = 0
            self._pos = pos
        if not clean:
            self._fast_ok = False

    def _fill(self) -> None:
        """Parse complete commands from _buf into _ready; record the first error."""
        buf = self._buf
        pos = self._pos
        n = len(buf)
        out = self._ready
        # One command at a time while unauthenticated (AUTH changes the limits of the next one),
        # and in fast mode (so hiredis takes over again at the next command boundary).
        limit = _BATCH if self.authenticated and not self._fast_ok else 1
        need = 0
        try:
            while pos < n and len(out) < limit:
                if self._argv is None and buf[pos] != _STAR:
                    nl = buf.find(b"\n", pos)
                    if nl < 0 or buf.find(b"\0", pos, nl) >= 0:
                        if n - pos > self._max_inline:
                            raise ProtocolError("too big inline request")
                        need = n + 1
                        break
                    end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                    argv = split_args(buf[pos:end])
                    if argv is None:
                        raise ProtocolError("unbalanced quotes in request")
                    pos = nl + 1
                    if argv:
                        out.append(argv)
                    continue

                if self._argv is None:
                    nl = buf.find(b"\r", pos)
                    if nl < 0 or nl + 2 > n:
                        if nl < 0 and n - pos > self._max_inline:
                            raise ProtocolError("too big mbulk count string")
                        need = n + 1
                        break
                    count = parse_ll(buf[pos + 1 : nl])
                    if count is None or count > self._max_mbulk:
                        if buf.find(b"\0", pos, nl) >= 0:
                            # strchr stops at the NUL: Redis sees no line end yet.
                            if n - pos > self._max_inline:
                                raise ProtocolError("too big mbulk count string")
                            need = n + 1
                            break
                        raise ProtocolError("invalid multibulk length")
                    if count > UNAUTH_MAX_MULTIBULK_LEN and not self.authenticated:
                        raise ProtocolError("unauthenticated multibulk length")
                    pos = nl + 2
                    if count <= 0:
                        continue
                    argv = []
                    left = count
                else:
                    argv = self._argv
                    left = self._left

                max_bulk = self._max_bulk
                while left:
                    nl = buf.find(b"\r", pos)
                    if nl < 0 or nl + 2 > n:
                        if nl < 0 and n - pos > self._max_inline:
                            raise ProtocolError("too big bulk count string")
                        need = n + 1
                        break
                    head = buf[pos + 1 : nl]
                    if buf[pos] != _DOLLAR or not head.isdigit() or (head[0] == 0x30 and len(head) > 1):
                        if buf.find(b"\0", pos, nl) >= 0:
                            if n - pos > self._max_inline:
                                raise ProtocolError("too big bulk count string")
                            need = n + 1
                            break
                        if buf[pos] != _DOLLAR:
                            got = buf[pos : pos + 1].decode("utf-8", "surrogateescape")
                            if got in "\r\n":
                                got = " "  # Redis blanks CR/LF in error texts
                            raise ProtocolError(f"expected '$', got '{got}'")
                        raise ProtocolError("invalid bulk length")
                    blen = int(head)
                    if blen > max_bulk:
                        raise ProtocolError("invalid bulk length")
                    if blen > UNAUTH_MAX_BULK_LEN and not self.authenticated:
                        raise ProtocolError("unauthenticated bulk length")
                    start = nl + 2
                    end = start + blen
                    if end + 2 > n:
                        # The header stays unconsumed (re-checking it is cheap); wait for the body
                        # without rejoining chunks until all of it is here.
                        need = end + 2
                        break
                    argv.append(buf[start:end])
                    pos = end + 2
                    left -= 1
                if left:
                    self._argv = argv
                    self._left = left
                    break
                self._argv = None
                out.append(argv)
        except ProtocolError as e:
            self._error = e
            self._argv = None
        finally:
            # _need counts from the first unconsumed byte, which a later join moves to offset 0.
            self._need = need - pos if need else 0
            if pos >= n:
                self._buf = b""
                self._pos = 0
            else:
                self._pos = pos


# C isspace() in the "C" locale skips blanks between arguments; only these four (and NUL,
# which never reaches here) end an unquoted argument.
_ISSPACE = frozenset(b" \t\n\v\f\r")
_ARG_END = frozenset(b" \n\r\t")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_SPLIT_TABLE = bytes.maketrans(b"\r\n\t", b"   ")


def split_args(line: bytes) -> list[bytes] | None:
    """Redis's ``sdssplitargs``: split an inline request; None on unbalanced quotes."""
    if b'"' not in line and b"'" not in line:
        out = []
        for tok in line.translate(_SPLIT_TABLE).split(b" "):
            tok = tok.lstrip(b"\v\f")
            if tok:
                out.append(tok)
        return out
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            c = line[i] if i < n else 0
            nxt = line[i + 1] if i + 1 < n else 0
            if inq:
                if c == 0x5C and nxt == 0x78 and i + 3 < n and line[i + 2] in _HEX and line[i + 3] in _HEX:
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and nxt:
                    i += 1
                    cur.append(_ESCAPES.get(nxt, nxt))
                elif c == 0x22:
                    if nxt and nxt not in _ISSPACE:
                        return None
                    i += 1
                    break
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif insq:
                if c == 0x5C and nxt == 0x27:
                    i += 1
                    cur.append(0x27)
                elif c == 0x27:
                    if nxt and nxt not in _ISSPACE:
                        return None
                    i += 1
                    break
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif not c or c in _ARG_END:
                i += 1
                break
            elif c == 0x22:
                inq = True
            elif c == 0x27:
                insq = True
            else:
                cur.append(c)
            i += 1
        args.append(bytes(cur))
