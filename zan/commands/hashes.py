"""Hash commands (Redis t_hash.c).

A hash is a meta record whose payload is its field count, plus one record per field
under ``codec.elem_prefix(HASH_ELEM, pk, version) + field`` holding the value.  Single
field commands cost one meta read and one element read.
"""

from __future__ import annotations

from zan.commands import hash_args
from zan.commands.collection_scan import parse_scan_options, scan_page
from zan.commands.strings import as_if_unexpired
from zan.commands.table import DENYOOM, FAST, RANDOM, READONLY, WRITE, command
from zan.commands.util import INT64_MAX, INT64_MIN, parse_int
from zan.errors import NOT_FLOAT, OVERFLOW, SYNTAX, RespError, wrong_arity
from zan.resp.types import OK
from zan.store import codec
from zan.store.keyspace import (
    T_HASH, Meta, Txn, check_subkey, check_value, lookup_as, new_collection, remove_key,
    store_meta,
)

__all__ = ["hash_items"]

_TAG = codec.HASH_ELEM


def _prefix(pk: bytes, meta: Meta) -> bytes:
    return codec.elem_prefix(_TAG, pk, meta.version)


def hash_items(txn: Txn, pk: bytes, meta: Meta):
    """(field, value) pairs of a live hash, in field byte order."""
    prefix = _prefix(pk, meta)
    n = len(prefix)
    for key, value in txn.iterate(prefix, codec.prefix_end(prefix)):
        yield key[n:], value


def _set_count(txn: Txn, pk: bytes, meta: Meta, count: int) -> None:
    if count == 0:
        remove_key(txn, pk)
    else:
        meta.payload = codec.encode_i64(count)
        store_meta(txn, pk, meta)


def _set_fields(txn: Txn, pk: bytes, pairs: list[bytes]) -> int:
    """Write field/value pairs, creating the hash if needed; the number of new fields."""
    for i in range(0, len(pairs), 2):
        check_subkey(pairs[i])
        check_value(pairs[i + 1])
    meta = lookup_as(txn, pk, T_HASH)
    fresh = meta is None
    if fresh:
        meta = new_collection(txn, T_HASH, pk)
        count = 0
    else:
        count = meta.count
    prefix = _prefix(pk, meta)
    seen: set[bytes] = set()
    added = 0
    for i in range(0, len(pairs), 2):
        field = pairs[i]
        key = prefix + field
        # A fresh collection's version is this entry's index: nothing of it is on disk.
        is_new = field not in seen if fresh else txn.get(key) is None
        if is_new:
            added += 1
            if fresh:
                seen.add(field)
        txn.put(key, pairs[i + 1])
    if added:
        _set_count(txn, pk, meta, count + added)
    return added


@command("hset", -4, (WRITE, DENYOOM, FAST), group="hash", since="2.0.0",
         summary="Set the string value of a hash field")
def hset(txn: Txn, args: list[bytes]):
    if len(args) % 2 == 0:
        raise wrong_arity("hset")
    return _set_fields(txn, args[0], args[1:])


@command("hmset", -4, (WRITE, DENYOOM, FAST), group="hash", since="2.0.0",
         summary="Set multiple hash fields to multiple values")
def hmset(txn: Txn, args: list[bytes]):
    if len(args) % 2 == 0:
        raise wrong_arity("hmset")
    _set_fields(txn, args[0], args[1:])
    return OK


@command("hsetnx", 4, (WRITE, DENYOOM, FAST), group="hash", since="2.0.0",
         summary="Set the value of a hash field, only if the field does not exist")
def hsetnx(txn: Txn, args: list[bytes]):
    pk, field, value = args
    meta = lookup_as(txn, pk, T_HASH)
    if meta is not None and txn.get(_prefix(pk, meta) + field) is not None:
        return 0
    return _set_fields(txn, pk, [field, value])


def _get(txn: Txn, pk: bytes, field: bytes) -> bytes | None:
    meta = lookup_as(txn, pk, T_HASH)
    if meta is None:
        return None
    return txn.get(_prefix(pk, meta) + field)


@command("hget", 3, (READONLY, FAST), group="hash", since="2.0.0",
         summary="Get the value of a hash field")
def hget(txn: Txn, args: list[bytes]):
    return _get(txn, args[0], args[1])


@command("hmget", -3, (READONLY, FAST), group="hash", since="2.0.0",
         summary="Get the values of all the given hash fields")
def hmget(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_HASH)
    if meta is None:
        return [None] * (len(args) - 1)
    prefix = _prefix(args[0], meta)
    return [txn.get(prefix + f) for f in args[1:]]


@command("hdel", -3, (WRITE, FAST), group="hash", since="2.0.0",
         summary="Delete one or more hash fields")
def hdel(txn: Txn, args: list[bytes]):
    pk = args[0]
    meta = lookup_as(txn, pk, T_HASH)
    if meta is None:
        return 0
    prefix = _prefix(pk, meta)
    removed = 0
    for field in args[1:]:
        key = prefix + field
        if txn.get(key) is not None:
            txn.delete(key)
            removed += 1
    if removed:
        _set_count(txn, pk, meta, meta.count - removed)
    return removed


@command("hlen", 2, (READONLY, FAST), group="hash", since="2.0.0",
         summary="Get the number of fields in a hash")
def hlen(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_HASH)
    return 0 if meta is None else meta.count


@command("hexists", 3, (READONLY, FAST), group="hash", since="2.0.0",
         summary="Determine if a hash field exists")
def hexists(txn: Txn, args: list[bytes]):
    return int(_get(txn, args[0], args[1]) is not None)


@command("hstrlen", 3, (READONLY, FAST), group="hash", since="3.2.0",
         summary="Get the length of the value of a hash field")
def hstrlen(txn: Txn, args: list[bytes]):
    value = _get(txn, args[0], args[1])
    return 0 if value is None else len(value)


@command("hgetall", 2, (READONLY,), group="hash", since="2.0.0",
         summary="Get all the fields and values in a hash")
def hgetall(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_HASH)
    if meta is None:
        return []
    out: list[bytes] = []
    for field, value in hash_items(txn, args[0], meta):
        out.append(field)
        out.append(value)
    return out


@command("stale.hgetall.expired", 2, (READONLY,), group="hash", allow_stale=True,
         summary="HGETALL even if the hash has expired (ZanRedisDB)")
def stale_hgetall_expired(txn: Txn, args: list[bytes]):
    return hgetall(as_if_unexpired(txn), args)


@command("stale.hmget.expired", -3, (READONLY,), group="hash", allow_stale=True,
         summary="HMGET even if the hash has expired (ZanRedisDB)")
def stale_hmget_expired(txn: Txn, args: list[bytes]):
    return hmget(as_if_unexpired(txn), args)


@command("hkeys", 2, (READONLY,), group="hash", since="2.0.0",
         summary="Get all the fields in a hash")
def hkeys(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_HASH)
    return [] if meta is None else [f for f, _ in hash_items(txn, args[0], meta)]


@command("hvals", 2, (READONLY,), group="hash", since="2.0.0",
         summary="Get all the values in a hash")
def hvals(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_HASH)
    return [] if meta is None else [v for _, v in hash_items(txn, args[0], meta)]


@command("hincrby", 4, (WRITE, DENYOOM, FAST), group="hash", since="2.0.0",
         summary="Increment the integer value of a hash field by the given number")
def hincrby(txn: Txn, args: list[bytes]):
    pk, field = args[0], args[1]
    incr = parse_int(args[2])
    old = _get(txn, pk, field)
    value = 0 if old is None else parse_int(old, "ERR hash value is not an integer")
    new = value + incr
    if not INT64_MIN <= new <= INT64_MAX:
        raise RespError(OVERFLOW)
    _set_fields(txn, pk, [field, b"%d" % new])
    return new


@command("hincrbyfloat", 4, (WRITE, DENYOOM, FAST), group="hash", since="2.6.0",
         summary="Increment the float value of a hash field by the given amount")
def hincrbyfloat(txn: Txn, args: list[bytes]):
    pk, field = args[0], args[1]
    incr = hash_args.parse_long_double(args[2])
    if incr is None:
        raise RespError(NOT_FLOAT)
    if isinstance(incr, float):
        raise RespError("ERR value is NaN or Infinity")
    old = _get(txn, pk, field)
    if old is None:
        value = 0
    else:
        value = hash_args.parse_long_double(old)
        if value is None:
            raise RespError("ERR hash value is not a float")
    new = hash_args.add_long_double(value, incr)
    if new is None:
        raise RespError("ERR increment would produce NaN or Infinity")
    text = hash_args.format_long_double(new)
    _set_fields(txn, pk, [field, text])
    return text


_RANGE_TEXT = ("ERR value is out of range, value must between -9223372036854775807 and "
               "9223372036854775807")


def parse_signed_count(raw: bytes) -> int:
    """A count in [-LONG_MAX, LONG_MAX] (HRANDFIELD, SRANDMEMBER), with Redis's texts."""
    n = parse_int(raw)
    if n == INT64_MIN:
        raise RespError(_RANGE_TEXT)
    return n


@command("hrandfield", -2, (READONLY, RANDOM), group="hash", since="6.2.0",
         summary="Get one or multiple random fields from a hash")
def hrandfield(txn: Txn, args: list[bytes]):
    pk = args[0]
    if len(args) == 1:
        meta = lookup_as(txn, pk, T_HASH)
        if meta is None:
            return None
        return _nth_field(txn, pk, meta, txn.rng.randrange(meta.count))[0]
    count = parse_signed_count(args[1])
    withvalues = False
    if len(args) > 3 or (len(args) == 3 and args[2].lower() != b"withvalues"):
        raise RespError(SYNTAX)
    if len(args) == 3:
        withvalues = True
        if not -(INT64_MAX // 2) <= count <= INT64_MAX // 2:
            raise RespError("ERR value is out of range")
    meta = lookup_as(txn, pk, T_HASH)
    if meta is None or count == 0:
        return []
    items = list(hash_items(txn, pk, meta))
    rng = txn.rng
    if count < 0:
        picked = [items[rng.randrange(len(items))] for _ in range(-count)]
    elif count >= len(items):
        picked = items
    else:
        picked = rng.sample(items, count)
    if not withvalues:
        return [f for f, _ in picked]
    return [x for pair in picked for x in pair]


def _nth_field(txn: Txn, pk: bytes, meta: Meta, n: int) -> tuple[bytes, bytes]:
    for i, item in enumerate(hash_items(txn, pk, meta)):
        if i == n:
            return item
    raise AssertionError("hash shorter than its count")


@command("hscan", -3, (READONLY, RANDOM), group="hash", since="2.8.0",
         summary="Incrementally iterate hash fields and associated values")
def hscan(txn: Txn, args: list[bytes]):
    """args: key, token (b"0" or b"" to start), options.  Reply [next_token, [f, v, ...]]."""
    pk, token = args[0], args[1]
    meta = lookup_as(txn, pk, T_HASH)
    if meta is None:
        return [b"0", []]
    count, pattern = parse_scan_options(args[2:])
    next_token, items = scan_page(txn, _prefix(pk, meta), token, count, pattern)
    return [next_token, [x for pair in items for x in pair]]
