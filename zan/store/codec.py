"""Byte layout of one partition's LevelDB.  Every key and value format lives here.

A partition's database holds one partition's share of a namespace.  Keys are ordered
bytes: a one-byte space tag first, then big-endian integers, so LevelDB's byte order is
the order we iterate in.

    \\x00 <name>                           partition metadata (applied index, ...)
    \\x01 <pk>                             key meta record, one per live key (any type)
    \\x02 <expire_at_ms:u64> <pk>          expiry index: keys with a TTL, by deadline
    <elem tag> <len(pk):u32> <pk> <version:u64> <suffix>
                                          collection elements (tags \\x10..\\x14)

`pk` is the key inside its namespace (``table:key``; in the compat namespace the whole
key).  A meta value is

    <type:u8> <expire_at_ms:u64, 0 = none> <version:u64> <payload>

where the payload is the value itself for a string, the element count (i64) for a hash,
set or zset, and ``head:i64 size:i64`` for a list.  Collection elements carry the
collection's version (the log index of the entry that created it), so deleting or
overwriting a collection only drops its meta record: the old elements stop matching
any live version at once and a background sweep removes them later.

Element suffixes:
    hash   \\x10 ... <field>                 -> value
    set    \\x11 ... <member>                -> b""
    list   \\x12 ... <seq:u64>               -> value      (seq = head + position, biased)
    zset   \\x13 ... <member>                -> <score:f64 big-endian>
    zscore \\x14 ... <sortable score:8> <member> -> b""   (score order, then member order)
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "T_STRING", "T_HASH", "T_LIST", "T_SET", "T_ZSET", "T_JSON", "TYPE_NAMES",
    "META", "EXPIRY", "PARTITION_META",
    "HASH_ELEM", "SET_ELEM", "LIST_ELEM", "ZSET_ELEM", "ZSCORE_ELEM",
    "meta_key", "pk_of_meta_key", "pk_of_record", "encode_meta", "decode_meta_header",
    "META_HEADER",
    "expiry_key", "decode_expiry_key", "elem_prefix", "decode_elem_key",
    "encode_i64", "decode_i64", "encode_list_seq", "decode_list_seq", "LIST_SEQ_BIAS",
    "encode_score", "decode_score", "sortable_score", "unsortable_score",
    "prefix_end", "APPLIED_INDEX_KEY", "KEYS_COUNT_KEY", "EXPIRES_COUNT_KEY",
]

# Value types (the first byte of a meta value).
T_STRING = 1
T_HASH = 2
T_LIST = 3
T_SET = 4
T_ZSET = 5
T_JSON = 6      # a JSON document, its compact text in the meta record (zan.commands.json)

TYPE_NAMES = {T_STRING: b"string", T_HASH: b"hash", T_LIST: b"list", T_SET: b"set", T_ZSET: b"zset",
              T_JSON: b"ReJSON-RL"}

# Key spaces.
PARTITION_META = b"\x00"
META = b"\x01"
EXPIRY = b"\x02"
HASH_ELEM = b"\x10"
SET_ELEM = b"\x11"
LIST_ELEM = b"\x12"
ZSET_ELEM = b"\x13"
ZSCORE_ELEM = b"\x14"

APPLIED_INDEX_KEY = PARTITION_META + b"applied_index"
KEYS_COUNT_KEY = PARTITION_META + b"keys_count"
EXPIRES_COUNT_KEY = PARTITION_META + b"expires_count"

META_HEADER = struct.Struct(">BQQ")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


def meta_key(pk: bytes) -> bytes:
    return META + pk


def pk_of_meta_key(key: bytes) -> bytes:
    return key[1:]


def encode_meta(type_: int, expire_at: int, version: int, payload: bytes) -> bytes:
    return META_HEADER.pack(type_, expire_at, version) + payload


def decode_meta_header(value: bytes) -> tuple[int, int, int]:
    """(type, expire_at_ms, version); the payload is ``value[META_HEADER.size:]``."""
    return META_HEADER.unpack_from(value)


def expiry_key(expire_at: int, pk: bytes) -> bytes:
    return EXPIRY + _U64.pack(expire_at) + pk


def decode_expiry_key(key: bytes) -> tuple[int, bytes]:
    return _U64.unpack_from(key, 1)[0], key[9:]


def elem_prefix(tag: bytes, pk: bytes, version: int) -> bytes:
    """Common prefix of every element of one collection version."""
    return tag + _U32.pack(len(pk)) + pk + _U64.pack(version)


def decode_elem_key(key: bytes) -> tuple[bytes, bytes, int, bytes]:
    """(tag, pk, version, suffix) of an element key."""
    (n,) = _U32.unpack_from(key, 1)
    pk = key[5:5 + n]
    (version,) = _U64.unpack_from(key, 5 + n)
    return key[:1], pk, version, key[13 + n:]


def pk_of_record(key: bytes) -> bytes:
    """The primary key a data record belongs to: meta, expiry index or element.  (Used
    to send each record of a command over several partitions to its partition.)"""
    tag = key[:1]
    if tag == META:
        return key[1:]
    if tag == EXPIRY:
        return key[9:]
    if tag >= HASH_ELEM:
        (n,) = _U32.unpack_from(key, 1)
        return key[5:5 + n]
    raise ValueError(f"no primary key in record {key[:16]!r}")


def encode_i64(n: int) -> bytes:
    return _I64.pack(n)


def decode_i64(b: bytes, offset: int = 0) -> int:
    return _I64.unpack_from(b, offset)[0]


# List sequence numbers are signed (a list grows both ways from 0) but keys must sort as
# unsigned bytes, so they are stored with a bias.
LIST_SEQ_BIAS = 1 << 63


def encode_list_seq(seq: int) -> bytes:
    return _U64.pack(seq + LIST_SEQ_BIAS)


def decode_list_seq(b: bytes) -> int:
    return _U64.unpack(b)[0] - LIST_SEQ_BIAS


def encode_score(score: float) -> bytes:
    return _F64.pack(score)


def decode_score(b: bytes) -> float:
    return _F64.unpack(b)[0]


def sortable_score(score: float) -> bytes:
    """8 bytes whose unsigned byte order is the numeric order of `score` (no NaN).

    IEEE-754 doubles sort like sign-magnitude integers: flip the sign bit of positives and
    every bit of negatives.  -0.0 is folded into 0.0 so both spell the same key."""
    if score == 0.0:
        score = 0.0
    if math.isnan(score):
        raise ValueError("NaN has no order")
    (bits,) = _U64.unpack(_F64.pack(score))
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
    return _U64.pack(bits)


def unsortable_score(b: bytes) -> float:
    (bits,) = _U64.unpack_from(b)
    bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFFFFFFFFFFFFFF
    return _F64.unpack(_U64.pack(bits))[0]


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
