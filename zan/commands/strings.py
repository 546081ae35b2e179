"""String and bitmap commands (Redis t_string.c, bitops.c) and ZanRedisDB's compare-and-set
extensions.

Validation order follows Redis 7.0 command by command (which argument is parsed before
the key is looked up decides which error a caller sees), so several handlers parse in an
order that looks odd on purpose.

Size limit: a string may not exceed 8 MiB (`check_value`), where Redis allows 512 MB
(proto-max-bulk-len).  APPEND, SETRANGE and SETBIT that would grow a value past it fail
with check_value's "ERR invalid value size" instead of Redis's "ERR string exceeds
maximum allowed size (proto-max-bulk-len)"; bit offsets are still validated against
Redis's 2**32-1 first, so that error text is unchanged.
"""

from __future__ import annotations

from zan.commands.longdouble import (
    INFINITY, add_long_double, format_long_double, parse_long_double,
)
from zan.commands.merge import merge_ok, merge_positional
from zan.commands.table import DENYOOM, FAST, READONLY, REGISTRY, WRITE, Route, command
from zan.commands.ttl import (
    CHANGE_TTL_REFUSED, apply_deadline, is_local_deletion, kept_expire,
    set_option_deadline,
)
from zan.commands.util import INT64_MAX, INT64_MIN, parse_int
from zan.errors import OVERFLOW, SYNTAX, RespError, wrong_arity, wrongtype
from zan.resp.types import OK
from zan.store.codec import META, META_HEADER
from zan.store.keyspace import (
    MAX_VALUE, T_STRING, Meta, Txn, check_value, expired, lookup, lookup_as, remove_key,
    store_meta,
)

__all__ = ["get_string", "put_string", "update_string", "BIT_OFFSET_ERR", "MAX_BIT_OFFSET"]


def get_string(txn: Txn, pk: bytes) -> bytes | None:
    meta = lookup_as(txn, pk, T_STRING)
    return None if meta is None else meta.payload


def write_version(now_ms: int) -> int:
    """A string's version: when it was last written, in nanoseconds (the entry's time),
    as ZanRedisDB's value headers keep it (stale.getversion).  Collections' versions are
    log indexes, far below any such time."""
    return now_ms * 1_000_000


def put_string(txn: Txn, pk: bytes, value: bytes, expire_at: int = 0) -> None:
    store_meta(txn, pk, Meta(T_STRING, expire_at, write_version(txn.now_ms), value))


def _replace(txn: Txn, pk: bytes, current: Meta | None, value: bytes,
             expire_at: int = 0) -> None:
    """Overwrite `pk` with a string (whatever it held): Redis's setKey, which drops the
    TTL unless the policy keeps it."""
    expire_at = kept_expire(txn, current, expire_at)
    if expire_at and expire_at <= txn.now_ms and not is_local_deletion(txn):
        if current is not None:
            remove_key(txn, pk)
        return
    put_string(txn, pk, value, expire_at)


def update_string(txn: Txn, pk: bytes, current: Meta | None, value: bytes) -> None:
    """Change the value of a string in place, keeping its TTL (APPEND, INCR, SETBIT...)."""
    if current is None:
        put_string(txn, pk, value)
    else:
        current.payload = value
        current.version = write_version(txn.now_ms)
        store_meta(txn, pk, current)


# -- GET / SET family --------------------------------------------------------------------

@command("get", 2, (READONLY, FAST), group="string", summary="Get the value of a key")
def get(txn: Txn, args: list[bytes]):
    return get_string(txn, args[0])


def _get_without_txn(source, pk: bytes, now_ms: int, options) -> bytes | None:
    """GET straight from a read-only source, for the state machine's read path: `lookup`'s
    rules (an expired key is absent under wait_compact), then the type check."""
    raw = source.get(META + pk)
    if raw is None:
        return None
    type_, expire_at, _ = META_HEADER.unpack_from(raw)
    if expire_at and expired(expire_at, now_ms, options):
        return None
    if type_ != T_STRING:
        raise wrongtype()
    return raw[META_HEADER.size:]


REGISTRY["get"].extra["read"] = _get_without_txn

command("stale.get", 2, (READONLY, FAST), group="string", allow_stale=True,
        summary="Get the value of a key, possibly from a follower")(get)


@command("stale.getversion", 2, (READONLY, FAST), group="string", allow_stale=True,
         summary="When a string was last written, in nanoseconds (ZanRedisDB)")
def stale_getversion(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_STRING)
    return None if meta is None else meta.version


def as_if_unexpired(txn: Txn) -> Txn:
    """The same view with no key expired (ZanRedisDB's stale.*expired reads): a read at
    time 0 sees every deadline ahead.  A key the sweep has purged is gone all the same."""
    txn.now_ms = 0
    return txn


@command("stale.getexpired", 2, (READONLY, FAST), group="string", allow_stale=True,
         summary="Get the value of a key even if it has expired (ZanRedisDB)")
def stale_getexpired(txn: Txn, args: list[bytes]):
    return get_string(as_if_unexpired(txn), args[0])

_EXPIRE_KINDS = (b"EX", b"PX", b"EXAT", b"PXAT")


def _parse_string_options(args: list[bytes], start: int, *, for_set: bool):
    """Redis's parseExtendedStringArgumentsOrReply.  Returns (flags, expire kind, raw
    expire).  A repeated EX/PX/... is accepted and the last one wins, as in Redis."""
    flags: set[bytes] = set()
    kind = None
    raw = b""
    i = start
    n = len(args)
    while i < n:
        opt = args[i].upper()
        has_next = i + 1 < n
        other_expire = {k for k in _EXPIRE_KINDS if k != opt}
        if opt == b"NX" and for_set and b"XX" not in flags:
            flags.add(opt)
        elif opt == b"XX" and for_set and b"NX" not in flags:
            flags.add(opt)
        elif opt == b"GET" and for_set:
            flags.add(opt)
        elif opt == b"KEEPTTL" and for_set and kind is None:
            flags.add(opt)
        elif opt == b"PERSIST" and not for_set and kind is None:
            flags.add(opt)
        elif (opt in _EXPIRE_KINDS and has_next and b"KEEPTTL" not in flags
              and b"PERSIST" not in flags and kind not in other_expire):
            kind, raw = opt, args[i + 1]
            i += 1
        else:
            raise RespError(SYNTAX)
        i += 1
    return flags, kind, raw


@command("set", -3, (WRITE, DENYOOM), group="string", summary="Set the string value of a key")
def set_(txn: Txn, args: list[bytes]):
    pk, value = args[0], check_value(args[1])
    if len(args) == 2:
        # Plain SET, the common case: _set_generic with no flags and no deadline.
        _replace(txn, pk, lookup(txn, pk), value)
        return OK
    flags, kind, raw = _parse_string_options(args, 2, for_set=True)
    expire_at = set_option_deadline(txn, kind, raw, "set") if kind is not None else 0
    return _set_generic(txn, pk, value, flags, expire_at)


def _set_generic(txn: Txn, pk: bytes, value: bytes, flags, expire_at: int):
    want_get = b"GET" in flags
    current = lookup(txn, pk)
    old_value = None
    if want_get and current is not None:
        if current.type != T_STRING:
            raise wrongtype()
        old_value = current.payload
    if (b"NX" in flags and current is not None) or (b"XX" in flags and current is None):
        return old_value if want_get else None
    if b"KEEPTTL" in flags and current is not None:
        expire_at = current.expire_at
    _replace(txn, pk, current, value, expire_at)
    return old_value if want_get else OK


def _set_without_txn(view, args: list[bytes], now_ms: int):
    """Plain SET straight on the state machine's pending view, for its apply path: when
    the key has no TTL (absent, or of any type without one), SET only replaces its meta
    record, so the Txn, Meta objects and expiry bookkeeping of `set_` can be skipped.
    Returns (reply, whether a key was added), or None when `set_` must run instead
    (options, a TTL to drop or keep, an oversized value to refuse)."""
    if len(args) != 2:
        return None
    pk, value = args
    if len(value) > MAX_VALUE:
        return None
    key = META + pk
    raw = view.get(key)
    if raw is not None and META_HEADER.unpack_from(raw)[1]:
        return None
    view.changes[key] = META_HEADER.pack(T_STRING, 0, write_version(now_ms)) + value
    return OK, raw is None


REGISTRY["set"].extra["apply"] = _set_without_txn


@command("setex", 4, (WRITE, DENYOOM), group="string", since="2.0.0",
         summary="Set the value and expiration of a key")
def setex(txn: Txn, args: list[bytes]):
    expire_at = set_option_deadline(txn, b"EX", args[1], "setex")
    return _set_generic(txn, args[0], check_value(args[2]), (), expire_at)


@command("psetex", 4, (WRITE, DENYOOM), group="string", since="2.6.0",
         summary="Set the value and expiration in milliseconds of a key")
def psetex(txn: Txn, args: list[bytes]):
    expire_at = set_option_deadline(txn, b"PX", args[1], "psetex")
    return _set_generic(txn, args[0], check_value(args[2]), (), expire_at)


@command("setnx", 3, (WRITE, DENYOOM, FAST), group="string",
         summary="Set the value of a key, only if the key does not exist")
def setnx(txn: Txn, args: list[bytes]):
    value = check_value(args[1])
    if lookup(txn, args[0]) is not None:
        return 0
    put_string(txn, args[0], value)
    return 1


@command("getset", 3, (WRITE, DENYOOM, FAST), group="string",
         summary="Set the string value of a key and return its old value")
def getset(txn: Txn, args: list[bytes]):
    return _set_generic(txn, args[0], check_value(args[1]), (b"GET",), 0)


@command("getdel", 2, (WRITE, FAST), group="string", since="6.2.0",
         summary="Get the value of a key and delete the key")
def getdel(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_STRING)
    if meta is None:
        return None
    remove_key(txn, args[0])
    return meta.payload


@command("getex", -2, (WRITE, FAST), group="string", since="6.2.0",
         summary="Get the value of a key and optionally set its expiration")
def getex(txn: Txn, args: list[bytes]):
    pk = args[0]
    flags, kind, raw = _parse_string_options(args, 1, for_set=False)
    meta = lookup_as(txn, pk, T_STRING)
    if meta is None:
        return None
    value = meta.payload
    if kind is not None:
        when = set_option_deadline(txn, kind, raw, "getex")
        if is_local_deletion(txn) and meta.expire_at:
            raise RespError(CHANGE_TTL_REFUSED)
        apply_deadline(txn, pk, meta, when)
    elif b"PERSIST" in flags and meta.expire_at:
        if is_local_deletion(txn):
            raise RespError(CHANGE_TTL_REFUSED)
        meta.expire_at = 0
        store_meta(txn, pk, meta)
    return value


# -- multi-key ---------------------------------------------------------------------------

@command("mget", -2, (READONLY, FAST), route=Route.MULTI_KEY, first_key=1, last_key=-1,
         group="string", merge=merge_positional,
         summary="Get the values of all the given keys")
def mget(txn: Txn, args: list[bytes]):
    out = []
    for pk in args:
        meta = lookup(txn, pk)
        out.append(meta.payload if meta is not None and meta.type == T_STRING else None)
    return out


def _pairs(args: list[bytes], name: str) -> list[tuple[bytes, bytes]]:
    if len(args) % 2:
        raise wrong_arity(name)
    return [(args[i], check_value(args[i + 1])) for i in range(0, len(args), 2)]


@command("mset", -3, (WRITE, DENYOOM), route=Route.MULTI_KEY, first_key=1, last_key=-1,
         key_step=2, group="string", merge=merge_ok, since="1.0.1",
         summary="Set multiple keys to multiple values")
def mset(txn: Txn, args: list[bytes]):
    return _set_pairs(txn, args, "mset")


def _set_pairs(txn: Txn, args: list[bytes], name: str):
    for pk, value in _pairs(args, name):
        _replace(txn, pk, lookup(txn, pk), value)
    return OK


@command("plset", -3, (WRITE, DENYOOM), route=Route.MULTI_KEY, first_key=1, last_key=-1,
         key_step=2, group="string", merge=merge_ok,
         summary="Set multiple keys to multiple values (ZanRedisDB's pipelined SET)")
def plset(txn: Txn, args: list[bytes]):
    return _set_pairs(txn, args, "plset")


@command("msetnx", -3, (WRITE, DENYOOM), route=Route.SAME_PARTITION, first_key=1,
         last_key=-1, key_step=2, group="string", since="1.0.1",
         summary="Set multiple keys to multiple values, only if none of the keys exist")
def msetnx(txn: Txn, args: list[bytes]):
    pairs = _pairs(args, "msetnx")
    if any(lookup(txn, pk) is not None for pk, _ in pairs):
        return 0
    for pk, value in pairs:
        put_string(txn, pk, value)
    return 1


# -- in-place edits ----------------------------------------------------------------------

@command("append", 3, (WRITE, DENYOOM), group="string", since="2.0.0",
         summary="Append a value to a key")
def append(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_STRING)
    value = check_value((meta.payload if meta is not None else b"") + args[1])
    update_string(txn, args[0], meta, value)
    return len(value)


@command("strlen", 2, (READONLY, FAST), group="string", since="2.2.0",
         summary="Get the length of the value stored in a key")
def strlen(txn: Txn, args: list[bytes]):
    value = get_string(txn, args[0])
    return 0 if value is None else len(value)


def _getrange(txn: Txn, args: list[bytes]):
    start, end = parse_int(args[1]), parse_int(args[2])
    value = get_string(txn, args[0])
    if value is None:
        return b""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = max(start, 0)
    end = min(max(end, 0), n - 1)
    if start > end or n == 0:
        return b""
    return value[start:end + 1]


command("getrange", 4, (READONLY,), group="string", since="2.4.0",
        summary="Get a substring of the string stored at a key")(_getrange)
command("substr", 4, (READONLY,), group="string",
        summary="Get a substring of the string stored at a key")(_getrange)


@command("setrange", 4, (WRITE, DENYOOM), group="string", since="2.2.0",
         summary="Overwrite part of a string at key starting at the specified offset")
def setrange(txn: Txn, args: list[bytes]):
    pk, piece = args[0], args[2]
    offset = parse_int(args[1])
    if offset < 0:
        raise RespError("ERR offset is out of range")
    meta = lookup_as(txn, pk, T_STRING)
    old = meta.payload if meta is not None else b""
    if not piece:
        return len(old)
    if offset + len(piece) > MAX_VALUE:
        check_value(b"\0" * (MAX_VALUE + 1))  # raises check_value's error
    buf = bytearray(old)
    if len(buf) < offset + len(piece):
        buf.extend(b"\0" * (offset + len(piece) - len(buf)))
    buf[offset:offset + len(piece)] = piece
    update_string(txn, pk, meta, bytes(buf))
    return len(buf)


# -- counters ----------------------------------------------------------------------------

def _incr(txn: Txn, pk: bytes, by: int):
    meta = lookup_as(txn, pk, T_STRING)
    old = parse_int(meta.payload) if meta is not None else 0
    if (by < 0 and old < 0 and by < INT64_MIN - old) or \
            (by > 0 and old > 0 and by > INT64_MAX - old):
        raise RespError(OVERFLOW)
    new = old + by
    update_string(txn, pk, meta, str(new).encode())
    return new


@command("incr", 2, (WRITE, DENYOOM, FAST), group="string",
         summary="Increment the integer value of a key by one")
def incr(txn: Txn, args: list[bytes]):
    return _incr(txn, args[0], 1)


@command("decr", 2, (WRITE, DENYOOM, FAST), group="string",
         summary="Decrement the integer value of a key by one")
def decr(txn: Txn, args: list[bytes]):
    return _incr(txn, args[0], -1)


@command("incrby", 3, (WRITE, DENYOOM, FAST), group="string",
         summary="Increment the integer value of a key by the given amount")
def incrby(txn: Txn, args: list[bytes]):
    return _incr(txn, args[0], parse_int(args[1]))


@command("decrby", 3, (WRITE, DENYOOM, FAST), group="string",
         summary="Decrement the integer value of a key by the given number")
def decrby(txn: Txn, args: list[bytes]):
    by = parse_int(args[1])
    if by == INT64_MIN:
        raise RespError("ERR decrement would overflow")
    return _incr(txn, args[0], -by)


@command("incrbyfloat", 3, (WRITE, DENYOOM, FAST), group="string", since="2.6.0",
         summary="Increment the float value of a key by the given amount")
def incrbyfloat(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_STRING)
    old = parse_long_double(meta.payload) if meta is not None else 0
    by = parse_long_double(args[1])
    total = add_long_double(old, by)
    if total is INFINITY:
        raise RespError("ERR increment would produce NaN or Infinity")
    text = format_long_double(total)
    update_string(txn, args[0], meta, text)
    return text


# -- bits --------------------------------------------------------------------------------

BIT_OFFSET_ERR = "ERR bit offset is not an integer or out of range"
MAX_BIT_OFFSET = (512 << 20) * 8 - 1   # Redis: (offset >> 3) < proto-max-bulk-len


def _bit_offset(raw: bytes) -> int:
    offset = parse_int(raw, BIT_OFFSET_ERR)
    if offset < 0 or offset > MAX_BIT_OFFSET:
        raise RespError(BIT_OFFSET_ERR)
    return offset


@command("getbit", 3, (READONLY, FAST), group="bitmap", since="2.2.0",
         summary="Returns the bit value at offset in the string value stored at key")
def getbit(txn: Txn, args: list[bytes]):
    offset = _bit_offset(args[1])
    value = get_string(txn, args[0])
    byte = offset >> 3
    if value is None or byte >= len(value):
        return 0
    return (value[byte] >> (7 - (offset & 7))) & 1


@command("setbit", 4, (WRITE, DENYOOM), group="bitmap", since="2.2.0",
         summary="Sets or clears the bit at offset in the string value stored at key")
def setbit(txn: Txn, args: list[bytes]):
    offset = _bit_offset(args[1])
    on = parse_int(args[2], "ERR bit is not an integer or out of range")
    if on & ~1:
        raise RespError("ERR bit is not an integer or out of range")
    meta = lookup_as(txn, args[0], T_STRING)
    buf = bytearray(meta.payload if meta is not None else b"")
    byte = offset >> 3
    if byte >= len(buf):
        if byte + 1 > MAX_VALUE:
            check_value(b"\0" * (byte + 1))  # raises check_value's error
        buf.extend(b"\0" * (byte + 1 - len(buf)))
    mask = 1 << (7 - (offset & 7))
    old = 1 if buf[byte] & mask else 0
    if on:
        buf[byte] |= mask
    else:
        buf[byte] &= ~mask & 0xFF
    update_string(txn, args[0], meta, bytes(buf))
    return old


command("setbitv2", 4, (WRITE, DENYOOM), group="bitmap",
        summary="SETBIT (ZanRedisDB's bitmap type: the same string bitmap here)")(setbit)


def _bit_range(value: bytes, raw_start: bytes, raw_end: bytes | None, unit: bytes | None,
               *, unit_before_end: bool):
    """BITCOUNT/BITPOS range arguments: (start, end, total, is_bit) before clamping.
    BITPOS parses the BYTE|BIT word before `end`, BITCOUNT after it (Redis 7.0)."""
    start = parse_int(raw_start)
    end = None
    if raw_end is not None and not unit_before_end:
        end = parse_int(raw_end)
    is_bit = False
    if unit is not None:
        u = unit.upper()
        if u == b"BIT":
            is_bit = True
        elif u != b"BYTE":
            raise RespError(SYNTAX)
    if raw_end is not None and unit_before_end:
        end = parse_int(raw_end)
    total = len(value) * (8 if is_bit else 1)
    if end is None:
        end = total - 1
    return start, end, total, is_bit


def _clamp(start: int, end: int, total: int):
    if start < 0:
        start += total
    if end < 0:
        end += total
    start = max(start, 0)
    end = max(end, 0)
    if end >= total:
        end = total - 1
    return start, end


def _popcount(b: bytes) -> int:
    return int.from_bytes(b, "big").bit_count()


@command("bitcount", -2, (READONLY,), group="bitmap", since="2.6.0",
         summary="Count set bits in a string")
def bitcount(txn: Txn, args: list[bytes]):
    value = get_string(txn, args[0])
    if value is None:
        return 0
    if len(args) == 1:
        return _popcount(value)
    if len(args) not in (3, 4):
        raise RespError(SYNTAX)
    start, end = parse_int(args[1]), parse_int(args[2])
    # Redis 7.0 answers an inverted negative range before it looks at BYTE|BIT.
    if start < 0 and end < 0 and start > end:
        return 0
    start, end, total, is_bit = _bit_range(value, args[1], args[2],
                                           args[3] if len(args) == 4 else None,
                                           unit_before_end=False)
    start, end = _clamp(start, end, total)
    if start > end:
        return 0
    if not is_bit:
        return _popcount(value[start:end + 1])
    # Bit range: whole bytes, minus the bits outside the range at both edges.
    chunk = int.from_bytes(value[start >> 3:(end >> 3) + 1], "big")
    nbits = ((end >> 3) - (start >> 3) + 1) * 8
    keep = nbits - (start & 7)
    chunk &= (1 << keep) - 1
    chunk >>= 7 - (end & 7)
    return chunk.bit_count()


@command("bitpos", -3, (READONLY,), group="bitmap", since="2.8.7",
         summary="Find first bit set or clear in a string")
def bitpos(txn: Txn, args: list[bytes]):
    bit = parse_int(args[1])
    if bit not in (0, 1):
        raise RespError("ERR The bit argument must be 1 or 0.")
    meta = lookup_as(txn, args[0], T_STRING)
    if meta is None:
        return -1 if bit else 0
    value = meta.payload
    if len(args) == 2:
        start, end, end_given, is_bit, total = 0, len(value) - 1, False, False, len(value)
    elif len(args) in (3, 4, 5):
        raw_end = args[3] if len(args) >= 4 else None
        start, end, total, is_bit = _bit_range(value, args[2], raw_end,
                                               args[4] if len(args) == 5 else None,
                                               unit_before_end=True)
        end_given = raw_end is not None
        start, end = _clamp(start, end, total)
    else:
        raise RespError(SYNTAX)
    if start > end:
        return -1
    first, last = (start, end) if is_bit else (start * 8, end * 8 + 7)
    pos = _find_bit(value, first, last, bit)
    if pos is not None:
        return pos
    if bit == 1 or end_given:
        return -1
    return last + 1   # looking for 0 with an open end: the string is zero-padded


def _find_bit(value: bytes, first: int, last: int, bit: int) -> int | None:
    skip = 0x00 if bit else 0xFF
    i = first
    while i <= last:
        if i & 7 == 0 and i + 7 <= last and value[i >> 3] == skip:
            i += 8
            continue
        if ((value[i >> 3] >> (7 - (i & 7))) & 1) == bit:
            return i
        i += 1
    return None


# -- ZanRedisDB extensions ---------------------------------------------------------------

@command("setifeq", -4, (WRITE, DENYOOM), group="string",
         summary="Set a key to a new value if its current value equals the given one")
def setifeq(txn: Txn, args: list[bytes]):
    pk, expected, value = args[0], args[1], check_value(args[2])
    expire_at = 0
    rest = args[3:]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"EX":
            raise RespError(SYNTAX)
        expire_at = set_option_deadline(txn, b"EX", rest[1], "setifeq")
    meta = lookup_as(txn, pk, T_STRING)
    if meta is None or meta.payload != expected:
        return 0
    _replace(txn, pk, meta, value, expire_at)
    return 1


@command("delifeq", 3, (WRITE, FAST), group="string",
         summary="Delete a key if its value equals the given one")
def delifeq(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_STRING)
    if meta is None or meta.payload != args[1]:
        return 0
    remove_key(txn, args[0])
    return 1
