"""ZanRedisDB's scans: FULLSCAN (keys with their values, for backups), the reverse table
scans ADVREVSCAN and REVSCAN, and the reverse element scans HREVSCAN SREVSCAN ZREVSCAN.

The table scans page through one table (``ns:table:``) of every partition; these are the
per-partition primitives, the node (`zan.node.scan`) runs them over the partitions and
builds ZanRedisDB's merged cursor.  A partition's cursor is the last key returned (its
part after ``table:``), and b"" once the table is exhausted.  COUNT bounds the keys of a
page; a FULLSCAN page carries each key's whole value.

The element scans take and return ZanRedisDB's cursors: the last field or member
returned, b"" to start from the end and b"" again once the scan is done.
"""

from __future__ import annotations

from decimal import Decimal

from zan.commands.collection_scan import parse_scan_options
from zan.commands.glob import glob_match
from zan.commands.keys import ADVSCAN_TYPES, scan_keys
from zan.commands.table import READONLY, Route, command
from zan.errors import RespError
from zan.store import codec
from zan.store.codec import (
    HASH_ELEM, LIST_ELEM, SET_ELEM, T_HASH, T_LIST, T_SET, T_STRING, T_ZSET, ZSET_ELEM,
    decode_score, elem_prefix, meta_key, prefix_end,
)
from zan.store.keyspace import Txn, lookup, lookup_as

__all__ = ["go_float"]

_SCAN = dict(group="generic", since="1.0.0")


def _table_and_cursor(raw: bytes) -> tuple[bytes, bytes]:
    table, sep, cursor = raw.partition(b":")
    if not sep or not table:
        raise RespError("ERR invalid table name")
    return table, cursor


def _scan_type(raw: bytes) -> int:
    type_ = ADVSCAN_TYPES.get(raw.upper())
    if type_ is None:
        raise RespError("ERR invalid scan type")
    return type_


def _table_page(txn: Txn, args: list[bytes], *, reverse: bool):
    """(keys of the page as pks, next cursor) of ``table:<cursor> <type> [opts]``."""
    table, cursor = _table_and_cursor(args[0])
    type_ = _scan_type(args[1])
    count, pattern = parse_scan_options(args[2:])
    prefix = meta_key(table + b":")
    strip = len(table) + 1
    if reverse:
        lo, hi = prefix, (prefix + cursor if cursor else prefix_end(prefix))
    else:
        lo, hi = (prefix + cursor + b"\x00" if cursor else prefix), prefix_end(prefix)

    def accept(pk: bytes, t: int) -> bool:
        return t == type_ and (pattern is None or glob_match(pattern, pk[strip:]))

    keys, last = scan_keys(txn, lo, hi, count, accept, only_type=type_, reverse=reverse)
    return keys, (b"" if last is None else last[strip:]), type_, strip


@command("advrevscan", -3, (READONLY,), route=Route.ALL_PARTITIONS, first_key=1, last_key=1,
         summary="Iterate the keys of one type in one table, from the last", **_SCAN)
def advrevscan(txn: Txn, args: list[bytes]):
    """Like ADVSCAN, from the table's last key down."""
    keys, cursor, _, _ = _table_page(txn, args, reverse=True)
    return [cursor, keys]


@command("revscan", -2, (READONLY,), route=Route.ALL_PARTITIONS, first_key=1, last_key=1,
         summary="Iterate the string keys of one table, from the last", **_SCAN)
def revscan(txn: Txn, args: list[bytes]):
    """``revscan table:<cursor> [MATCH p] [COUNT n]``: ADVREVSCAN of the KV type."""
    return advrevscan(txn, [args[0], b"KV", *args[1:]])


@command("fullscan", -3, (READONLY,), route=Route.ALL_PARTITIONS, first_key=1, last_key=1,
         summary="Iterate the keys of one type in one table, with their values", **_SCAN)
def fullscan(txn: Txn, args: list[bytes]):
    """``fullscan table:<cursor> <KV|HASH|LIST|SET|ZSET> [MATCH p] [COUNT n]`` ->
    ``[next cursor, items]``, an item as ZanRedisDB's merged reply has it (the key
    without its table): KV ``[key, value]``, HASH ``[key, [field, value], ...]``, LIST
    and SET ``[key, element, ...]``, ZSET ``[key, [member, score], ...]``."""
    keys, cursor, type_, strip = _table_page(txn, args, reverse=False)
    return [cursor, [_item(txn, pk, type_, strip) for pk in keys]]


def _item(txn: Txn, pk: bytes, type_: int, strip: int) -> list:
    meta = lookup(txn, pk)
    key = pk[strip:]
    if type_ == T_STRING:
        return [key, meta.payload]
    tag = {T_HASH: HASH_ELEM, T_LIST: LIST_ELEM, T_SET: SET_ELEM, T_ZSET: ZSET_ELEM}[type_]
    prefix = elem_prefix(tag, pk, meta.version)
    n = len(prefix)
    records = txn.iterate(prefix, prefix_end(prefix))
    if type_ == T_HASH:
        return [key, *([k[n:], v] for k, v in records)]
    if type_ == T_ZSET:
        return [key, *([k[n:], go_float(decode_score(v)).encode()] for k, v in records)]
    if type_ == T_LIST:
        return [key, *(v for _, v in records)]
    return [key, *(k[n:] for k, _ in records)]


def go_float(x: float) -> str:
    """Go's strconv.FormatFloat(x, 'g', -1, 64), which ZanRedisDB's replies use: the
    shortest digits, in exponent form when the exponent is below -4 or at least 6
    (Go decides with precision 6 when asked for the shortest form)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if str(x).startswith("-") else "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + exponent - 1
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif exponent >= 0:
        out = text + "0" * exponent
    elif exp >= 0:
        out = text[:exp + 1] + "." + text[exp + 1:]
    else:
        out = "0." + "0" * (-exp - 1) + text
    return ("-" if sign else "") + out


# -- HREVSCAN / SREVSCAN / ZREVSCAN key cursor [MATCH p] [COUNT n] -----------------------

def _reverse_elements(txn: Txn, args: list[bytes], type_: int, tag: bytes):
    """(next cursor, [(suffix, value), ...]) of one page, from the cursor down."""
    pk, cursor = args[0], args[1]
    count, pattern = parse_scan_options(args[2:])
    meta = lookup_as(txn, pk, type_)
    if meta is None:
        return b"", []
    prefix = elem_prefix(tag, pk, meta.version)
    n = len(prefix)
    hi = prefix + cursor if cursor else codec.prefix_end(prefix)
    items = []
    for key, value in txn.iterate(prefix, hi, reverse=True):
        suffix = key[n:]
        if pattern is None or glob_match(pattern, suffix):
            items.append((suffix, value))
            if len(items) == count:
                return suffix, items
    return b"", items


@command("hrevscan", -3, (READONLY,), group="hash",
         summary="Iterate a hash's fields from the last (ZanRedisDB)")
def hrevscan(txn: Txn, args: list[bytes]):
    cursor, items = _reverse_elements(txn, args, T_HASH, HASH_ELEM)
    return [cursor, [word for field, value in items for word in (field, value)]]


@command("srevscan", -3, (READONLY,), group="set",
         summary="Iterate a set's members from the last (ZanRedisDB)")
def srevscan(txn: Txn, args: list[bytes]):
    cursor, items = _reverse_elements(txn, args, T_SET, SET_ELEM)
    return [cursor, [member for member, _ in items]]


@command("zrevscan", -3, (READONLY,), group="sorted-set",
         summary="Iterate a sorted set's members from the last (ZanRedisDB)")
def zrevscan(txn: Txn, args: list[bytes]):
    cursor, items = _reverse_elements(txn, args, T_ZSET, ZSET_ELEM)
    return [cursor, [word for member, score in items
                     for word in (member, go_float(decode_score(score)).encode())]]
