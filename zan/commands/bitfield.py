"""BITOP, BITFIELD and BITFIELD_RO (Redis bitops.c).

Bit offsets count from the most significant bit of the first byte, as in Redis.
BITFIELD's overflow checks are Redis's own, C integer arithmetic included, so the
corner cases (an i64 SET of a value out of a narrower type's range, say) saturate or
wrap exactly as redis-server does.
"""

from __future__ import annotations

from zan.commands.strings import BIT_OFFSET_ERR, MAX_BIT_OFFSET, put_string, update_string
from zan.commands.table import DENYOOM, FAST, READONLY, WRITE, Route, command
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError
from zan.store.keyspace import (
    MAX_VALUE, T_STRING, Txn, check_value, lookup, lookup_as, remove_key,
)

__all__ = []

_U64 = (1 << 64) - 1


def _i64(n: int) -> int:
    """`n` as C's int64_t would hold it (two's complement wrap)."""
    n &= _U64
    return n - (1 << 64) if n >> 63 else n


# -- BITOP -------------------------------------------------------------------------------

_BITOPS = {b"AND": int.__and__, b"OR": int.__or__, b"XOR": int.__xor__, b"NOT": None}


@command("bitop", -4, (WRITE, DENYOOM), route=Route.SAME_PARTITION, first_key=2,
         last_key=-1, group="bitmap", since="2.6.0",
         summary="Perform bitwise operations between strings")
def bitop(txn: Txn, args: list[bytes]):
    name = args[0].upper()
    if name not in _BITOPS:
        raise RespError(SYNTAX)
    if name == b"NOT" and len(args) != 3:
        raise RespError("ERR BITOP NOT must be called with a single source key.")
    dst, sources = args[1], args[2:]
    values = []
    for pk in sources:
        meta = lookup_as(txn, pk, T_STRING)
        values.append(meta.payload if meta is not None else b"")
    size = max(len(v) for v in values)
    if size:
        # Big integers do the byte-wise work at once; shorter strings are zero-padded.
        as_ints = [int.from_bytes(v.ljust(size, b"\0"), "big") for v in values]
        op = _BITOPS[name]
        if op is None:
            result = ~as_ints[0] & ((1 << (8 * size)) - 1)
        else:
            result = as_ints[0]
            for n in as_ints[1:]:
                result = op(result, n)
        # setKey: the destination is replaced whatever it held, TTL dropped.
        if lookup(txn, dst) is not None:
            remove_key(txn, dst)
        put_string(txn, dst, result.to_bytes(size, "big"))
    elif lookup(txn, dst) is not None:
        remove_key(txn, dst)
    return size


# -- BITFIELD ----------------------------------------------------------------------------

_TYPE_ERR = ("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
             "supported but i64 is.")
_WRAP, _SAT, _FAIL = "wrap", "sat", "fail"


def _bitfield_type(raw: bytes) -> tuple[bool, int]:
    """(signed, bits) of ``i<bits>`` (1..64) or ``u<bits>`` (1..63)."""
    signed = raw[:1] == b"i"
    if not signed and raw[:1] != b"u":
        raise RespError(_TYPE_ERR)
    bits = parse_int(raw[1:], _TYPE_ERR)
    if bits < 1 or bits > (64 if signed else 63):
        raise RespError(_TYPE_ERR)
    return signed, bits


def _bitfield_offset(raw: bytes, bits: int) -> int:
    """An offset in bits, or ``#n``: the n-th field of this width."""
    by_field = raw[:1] == b"#"
    offset = parse_int(raw[1:] if by_field else raw, BIT_OFFSET_ERR)
    if by_field:
        offset = _i64(offset * bits)
    if offset < 0 or offset > MAX_BIT_OFFSET:
        raise RespError(BIT_OFFSET_ERR)
    return offset


def _read_field(buf, offset: int, bits: int, signed: bool) -> int:
    first, last = offset >> 3, (offset + bits - 1) >> 3
    chunk = bytes(buf[first:last + 1]).ljust(last - first + 1, b"\0")
    value = int.from_bytes(chunk, "big") >> ((last + 1) * 8 - offset - bits)
    value &= (1 << bits) - 1
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def _write_field(buf: bytearray, offset: int, bits: int, value: int) -> None:
    first, last = offset >> 3, (offset + bits - 1) >> 3
    shift = (last + 1) * 8 - offset - bits
    mask = ((1 << bits) - 1) << shift
    chunk = int.from_bytes(buf[first:last + 1], "big")
    chunk = (chunk & ~mask) | ((value << shift) & mask)
    buf[first:last + 1] = chunk.to_bytes(last - first + 1, "big")


def _signed_overflow(value: int, incr: int, bits: int, how: str):
    """Redis's checkSignedBitfieldOverflow: (direction, value to store instead)."""
    top = (1 << 63) - 1 if bits == 64 else (1 << (bits - 1)) - 1
    bottom = -top - 1
    max_incr = _i64((top & _U64) - (value & _U64))
    min_incr = _i64(bottom - value)
    if value > top or (bits != 64 and incr > max_incr) or \
            (value >= 0 and incr > 0 and incr > max_incr):
        direction, saturated = 1, top
    elif value < bottom or (bits != 64 and incr < min_incr) or \
            (value < 0 and incr < 0 and incr < min_incr):
        direction, saturated = -1, bottom
    else:
        return 0, None
    if how == _WRAP:
        total = (value + incr) & _U64
        if bits < 64:
            high = (_U64 << bits) & _U64
            total = total | high if total >> (bits - 1) & 1 else total & ~high
        return direction, _i64(total)
    return direction, saturated


def _unsigned_overflow(value: int, incr: int, bits: int, how: str):
    """Redis's checkUnsignedBitfieldOverflow (`value` as uint64_t)."""
    top = (1 << bits) - 1
    max_incr = _i64(top - value)
    min_incr = _i64(-value)
    if value > top or (incr > 0 and incr > max_incr):
        direction, saturated = 1, top
    elif incr < 0 and incr < min_incr:
        direction, saturated = -1, 0
    else:
        return 0, None
    if how == _WRAP:
        return direction, (value + incr) & top
    return direction, saturated


def _parse_bitfield(args: list[bytes]):
    """The operations of ``BITFIELD key ...``: [(op, signed, bits, offset, number, overflow)]."""
    ops = []
    how = _WRAP
    i = 1
    while i < len(args):
        sub = args[i].upper()
        left = len(args) - i - 1
        if sub == b"OVERFLOW" and left >= 1:
            how = {b"WRAP": _WRAP, b"SAT": _SAT, b"FAIL": _FAIL}.get(args[i + 1].upper())
            if how is None:
                raise RespError("ERR Invalid OVERFLOW type specified")
            i += 2
            continue
        if not ((sub == b"GET" and left >= 2) or (sub in (b"SET", b"INCRBY") and left >= 3)):
            raise RespError(SYNTAX)
        signed, bits = _bitfield_type(args[i + 1])
        offset = _bitfield_offset(args[i + 2], bits)
        number = parse_int(args[i + 3]) if sub != b"GET" else 0
        ops.append((sub, signed, bits, offset, number, how))
        i += 3 if sub == b"GET" else 4
    return ops


def _bitfield(txn: Txn, args: list[bytes], readonly: bool):
    ops = _parse_bitfield(args)
    writes = [op for op in ops if op[0] != b"GET"]
    if writes and readonly:
        raise RespError("ERR BITFIELD_RO only supports the GET subcommand")
    meta = lookup_as(txn, args[0], T_STRING)
    if not writes:
        value = meta.payload if meta is not None else b""
        return [_read_field(value, offset, bits, signed) for _, signed, bits, offset, _, _ in ops]
    # The string grows to hold the farthest field written, even by a SET that fails.
    size = max((offset + bits - 1) // 8 + 1 for _, _, bits, offset, _, _ in writes)
    if size > MAX_VALUE:
        check_value(b"\0" * size)
    buf = bytearray(meta.payload if meta is not None else b"")
    if len(buf) < size:
        buf.extend(b"\0" * (size - len(buf)))
    replies = []
    for sub, signed, bits, offset, number, how in ops:
        old = _read_field(buf, offset, bits, signed)
        if sub == b"GET":
            replies.append(old)
            continue
        if sub == b"INCRBY":
            base, incr = old, number
        else:
            base, incr = (number if signed else number & _U64), 0
        check = _signed_overflow if signed else _unsigned_overflow
        overflow, limited = check(base, incr, bits, how)
        if overflow and how == _FAIL:
            replies.append(None)
            continue
        new = limited if overflow else (base + incr if sub == b"INCRBY" else base)
        _write_field(buf, offset, bits, new & ((1 << bits) - 1))
        replies.append(new if sub == b"INCRBY" else old)
    update_string(txn, args[0], meta, bytes(buf))
    return replies


@command("bitfield", -2, (WRITE, DENYOOM), group="bitmap", since="3.2.0",
         summary="Perform arbitrary bitfield integer operations on strings")
def bitfield(txn: Txn, args: list[bytes]):
    return _bitfield(txn, args, readonly=False)


@command("bitfield_ro", -2, (READONLY, FAST), group="bitmap", since="6.0.0",
         summary="Perform arbitrary bitfield integer operations on strings. Read-only "
                 "variant of BITFIELD")
def bitfield_ro(txn: Txn, args: list[bytes]):
    return _bitfield(txn, args, readonly=True)
