"""Commands over the keyspace as a whole or over whole keys (Redis db.c, sort.c): KEYS,
RANDOMKEY, RENAME, RENAMENX, COPY, MOVE, SWAPDB, TIME, SORT and SORT_RO.

Zan has one database per namespace, so MOVE, SWAPDB and COPY ... DB answer as a
redis-server started with ``databases 1`` does.

SORT reads keys named by its BY and GET patterns, which are not declared keys.  The
handler reads them through its txn: on a standalone node `zan.node.keyspace_runner`
runs SORT over every partition of the key's namespace, so they are found wherever they
live; on a replicated node it runs on the sort key's partition, where keys of other
partitions read as missing.
"""

from __future__ import annotations

import math

from zan.commands.glob import glob_match
from zan.commands.lists import ListView
from zan.commands.sets import set_members
from zan.commands.table import (
    DENYOOM, FAST, LOADING, MOVABLEKEYS, READONLY, REGISTRY, STALE, WRITE, Route, command,
)
from zan.commands.util import parse_int
from zan.commands.zset_args import strtod_full
from zan.commands.zsets import ZSetView
from zan.errors import SYNTAX, RespError, wrongtype
from zan.resp.types import OK
from zan.store import codec
from zan.store.codec import (
    HASH_ELEM, LIST_ELEM, META, SET_ELEM, T_HASH, T_LIST, T_SET, T_STRING, T_ZSET,
    ZSCORE_ELEM, ZSET_ELEM, decode_meta_header, elem_prefix, prefix_end,
)
from zan.store.keyspace import (
    Meta, Txn, expired, lookup, remove_key, store_meta,
)

__all__ = ["copy_key", "sort_keys_of", "SORT_COMMANDS"]

NO_SUCH_KEY = "ERR no such key"
SAME_OBJECT = "ERR source and destination objects are the same"
DB_OUT_OF_RANGE = "ERR DB index is out of range"

# The records of each collection type besides its meta record.
_ELEMENT_TAGS = {T_HASH: (HASH_ELEM,), T_SET: (SET_ELEM,), T_LIST: (LIST_ELEM,),
                 T_ZSET: (ZSET_ELEM, ZSCORE_ELEM)}


# -- KEYS / RANDOMKEY -------------------------------------------------------------------

def _live_keys(txn: Txn):
    """Primary keys of the partition's live keys, in byte order."""
    for key, value in txn.iterate(META, prefix_end(META)):
        if expired(decode_meta_header(value)[1], txn.now_ms, txn.options):
            continue
        yield codec.pk_of_meta_key(key)


def _concat(replies):
    out = []
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
        out.extend(reply)
    return out


@command("keys", 2, (READONLY,), route=Route.ALL_PARTITIONS, first_key=0, last_key=0,
         key_step=0, merge=_concat, summary="Find all keys matching the given pattern")
def keys(txn: Txn, args: list[bytes]):
    """One partition's keys matching ``pattern``; a second argument, the namespace's
    prefix (``ns:``), is put before each key, both to match and to answer."""
    pattern = args[0]
    prefix = args[1] if len(args) > 1 else b""
    matched = (prefix + pk for pk in _live_keys(txn))
    if pattern == b"*":
        return list(matched)
    return [key for key in matched if glob_match(pattern, key)]


def _first_key(replies):
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return next((reply[1] for reply in replies if reply[0]), None)


@command("randomkey", 1, (READONLY,), route=Route.ALL_PARTITIONS, first_key=0,
         last_key=0, key_step=0, merge=_first_key, summary="Return a random key from the keyspace")
def randomkey(txn: Txn, args: list[bytes]):
    """One partition's ``[number of live keys, one of them chosen with txn.rng]``: the
    node picks a partition in proportion to its count, so every key is equally likely."""
    pks = list(_live_keys(txn))
    if not pks:
        return [0, None]
    return [len(pks), pks[txn.rng.randrange(len(pks))]]


# -- RENAME / RENAMENX / COPY ----------------------------------------------------------

def copy_key(txn: Txn, src: bytes, meta: Meta, dst: bytes) -> None:
    """Write a copy of the live key `src` (its `meta`, TTL included) at `dst`, which
    must not exist.  A collection's copy gets a version of its own: its elements are
    written anew under `dst`, the suffixes unchanged."""
    # A string keeps its version (when it was written); a collection needs its own.
    version = meta.version if meta.type == T_STRING else txn.version_for(dst)
    for tag in _ELEMENT_TAGS.get(meta.type, ()):
        old = elem_prefix(tag, src, meta.version)
        new = elem_prefix(tag, dst, version)
        n = len(old)
        for key, value in list(txn.iterate(old, prefix_end(old))):
            txn.put(new + key[n:], value)
    store_meta(txn, dst, Meta(meta.type, meta.expire_at, version, meta.payload))


def _rename(txn: Txn, args: list[bytes], *, nx: bool):
    src, dst = args
    meta = lookup(txn, src)
    if meta is None:
        raise RespError(NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    if lookup(txn, dst) is not None:
        if nx:
            return 0
        remove_key(txn, dst)
    copy_key(txn, src, meta, dst)
    remove_key(txn, src)
    return 1 if nx else OK


@command("rename", 3, (WRITE,), route=Route.SAME_PARTITION, last_key=2,
         summary="Rename a key")
def rename(txn: Txn, args: list[bytes]):
    return _rename(txn, args, nx=False)


@command("renamenx", 3, (WRITE, FAST), route=Route.SAME_PARTITION, last_key=2,
         summary="Rename a key, only if the new key does not exist")
def renamenx(txn: Txn, args: list[bytes]):
    return _rename(txn, args, nx=True)


def _db_index(raw: bytes, error: str | None = None) -> int:
    """Redis's getIntFromObjectOrReply for a database number (`error`: its message
    for both a non-integer and an out-of-range value)."""
    n = parse_int(raw, error) if error else parse_int(raw)
    if not -(1 << 31) <= n < (1 << 31):
        raise RespError(error or "ERR value is out of range, value must between "
                                 "-2147483648 and 2147483647")
    return n


@command("copy", -3, (WRITE, DENYOOM), route=Route.SAME_PARTITION, last_key=2,
         since="6.2.0", summary="Copy a key")
def copy(txn: Txn, args: list[bytes]):
    src, dst = args[0], args[1]
    replace = False
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < len(args):
            if _db_index(args[i + 1]) != 0:
                raise RespError(DB_OUT_OF_RANGE)
            i += 1
        else:
            raise RespError(SYNTAX)
        i += 1
    if src == dst:
        raise RespError(SAME_OBJECT)
    meta = lookup(txn, src)
    if meta is None:
        return 0
    if lookup(txn, dst) is not None:
        if not replace:
            return 0
        remove_key(txn, dst)
    copy_key(txn, src, meta, dst)
    return 1


@command("move", 3, (WRITE, FAST), summary="Move a key to another database")
def move(txn: Txn, args: list[bytes]):
    # One database: the only valid target is the source itself.
    if _db_index(args[1]) != 0:
        raise RespError(DB_OUT_OF_RANGE)
    raise RespError(SAME_OBJECT)


@command("swapdb", 3, (WRITE, FAST), route=Route.SERVER, group="server", since="4.0.0",
         summary="Swaps two Redis databases")
def swapdb(server, client, args):
    first = _db_index(args[0], "ERR invalid first DB index")
    second = _db_index(args[1], "ERR invalid second DB index")
    if first != 0 or second != 0:
        raise RespError(DB_OUT_OF_RANGE)
    return OK


@command("time", 1, (LOADING, STALE, FAST), route=Route.SERVER,
         group="server", since="2.6.0", summary="Return the current server time")
def time_(server, client, args):
    micros = int(server.seconds() * 1_000_000)
    return [str(micros // 1_000_000).encode(), str(micros % 1_000_000).encode()]


# -- SORT ------------------------------------------------------------------------------

def sort_keys_of(argv: list[bytes]) -> list[int]:
    """Positions in argv (name = 0) of the keys a SORT call names: the sorted key and a
    STORE destination (Redis's sortGetKeys, which skips LIMIT's and BY/GET's words)."""
    positions = [1]
    i = 2
    while i < len(argv):
        word = argv[i].upper()
        if word == b"LIMIT":
            i += 2
        elif word in (b"GET", b"BY"):
            i += 1
        elif word == b"STORE" and i + 1 < len(argv):
            positions = [1, i + 1]   # the last STORE wins, as in Redis
            i += 1
        i += 1
    return positions


class _SortRequest:
    __slots__ = ("desc", "alpha", "offset", "count", "store", "by", "gets", "dontsort")

    def __init__(self, args: list[bytes], readonly: bool):
        self.desc = self.alpha = self.dontsort = False
        self.offset, self.count = 0, -1
        self.store: bytes | None = None
        self.by: bytes | None = None
        self.gets: list[bytes] = []
        i = 1
        while i < len(args):
            opt = args[i].upper()
            left = len(args) - i - 1
            if opt == b"ASC":
                self.desc = False
            elif opt == b"DESC":
                self.desc = True
            elif opt == b"ALPHA":
                self.alpha = True
            elif opt == b"LIMIT" and left >= 2:
                self.offset, self.count = parse_int(args[i + 1]), parse_int(args[i + 2])
                i += 2
            elif opt == b"STORE" and left >= 1 and not readonly:
                self.store = args[i + 1]
                i += 1
            elif opt == b"BY" and left >= 1:
                self.by = args[i + 1]
                # A pattern without '*' names no key per element: nothing to sort by.
                self.dontsort = b"*" not in self.by
                i += 1
            elif opt == b"GET" and left >= 1:
                self.gets.append(args[i + 1])
                i += 1
            else:
                raise RespError(SYNTAX)
            i += 1


def lookup_by_pattern(txn: Txn, pattern: bytes, element: bytes) -> bytes | None:
    """Redis's lookupKeyByPattern: ``#`` is the element itself; otherwise the first '*'
    takes the element, and ``->field`` after it reads a hash field instead of a string.
    A key of another type, or a pattern without '*', reads as missing."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2:]
        pattern = pattern[:arrow]
    pk = pattern[:star] + element + pattern[star + 1:]
    meta = lookup(txn, pk)
    if meta is None:
        return None
    if field is None:
        return meta.payload if meta.type == T_STRING else None
    if meta.type != T_HASH:
        return None
    return txn.get(elem_prefix(HASH_ELEM, pk, meta.version) + field)


def sort_score(raw: bytes) -> float | None:
    """The double C's strtod reads from all of `raw` (up to a NUL, where C strings end),
    or None where Redis reports that it "can't be converted": trailing junk, overflow,
    underflow or NaN.  An empty string reads as 0, as strtod leaves it."""
    whole = raw.split(b"\x00", 1)[0]
    if not whole:
        return 0.0
    parsed = strtod_full(whole.lstrip(b" \t\n\v\f\r"))
    if parsed is None:
        return None
    value, out_of_range = parsed
    return None if out_of_range or math.isnan(value) else value


def _sortable(txn: Txn, pk: bytes):
    """(type, elements in the order SORT meets them) of the key to sort."""
    meta = lookup(txn, pk)
    if meta is None:
        return T_LIST, []
    if meta.type == T_LIST:
        view = ListView(txn, pk, meta)
        return T_LIST, view.values(0, view.size)
    if meta.type == T_SET:
        return T_SET, list(set_members(txn, pk, meta))
    if meta.type == T_ZSET:
        return T_ZSET, [member for _, member in ZSetView(txn, pk, meta).scan()]
    raise wrongtype()


def _compare_key(request: _SortRequest, weights: dict):
    if not request.alpha:
        # Equal scores fall back on the elements' bytes, so the order is total.
        return lambda element: (weights.get(element, 0.0), element)
    if request.by is not None:
        # A missing BY value sorts first.
        return lambda element: ((0, b"") if weights.get(element) is None
                                else (1, weights[element]))
    return lambda element: element


def _sort(txn: Txn, args: list[bytes], readonly: bool):
    request = _SortRequest(args, readonly)
    type_, elements = _sortable(txn, args[0])
    dontsort = request.dontsort
    if dontsort and type_ == T_SET and request.store is not None:
        # A set has no order of its own: a stored result is sorted, to be deterministic.
        dontsort, request.alpha, request.by = False, True, None
    n = len(elements)
    start = max(request.offset, 0)
    end = n - 1 if request.count < 0 else start + request.count - 1
    if start >= n:
        start, end = n - 1, n - 2
    end = min(end, n - 1)
    if dontsort:
        if type_ != T_SET and request.desc:
            elements.reverse()
    else:
        weights: dict = {}
        for element in elements:
            value = element if request.by is None else lookup_by_pattern(txn, request.by, element)
            if value is None:
                continue
            if request.alpha:
                if request.by is not None:
                    weights[element] = value
            else:
                score = sort_score(value)
                if score is None:
                    weights = None
                    break
                weights[element] = score
        if weights is None:
            raise RespError("ERR One or more scores can't be converted into double")
        elements.sort(key=_compare_key(request, weights), reverse=request.desc)
    chosen = elements[start:end + 1] if end >= start else []
    if request.store is None:
        if not request.gets:
            return chosen
        return [lookup_by_pattern(txn, pattern, element)
                for element in chosen for pattern in request.gets]
    if request.gets:
        values = [lookup_by_pattern(txn, pattern, element) or b""
                  for element in chosen for pattern in request.gets]
    else:
        values = chosen
    dst = request.store
    if lookup(txn, dst) is not None:
        remove_key(txn, dst)
    if values:
        out = ListView.open(txn, dst, create=True)
        for value in values:
            out.push(value, left=False)
        out.save()
    return len(values)


@command("sort", -2, (WRITE, DENYOOM, MOVABLEKEYS), group="generic",
         summary="Sort the elements in a list, set or sorted set")
def sort(txn: Txn, args: list[bytes]):
    return _sort(txn, args, readonly=False)


@command("sort_ro", -2, (READONLY, MOVABLEKEYS), group="generic", since="7.0.0",
         summary="Sort the elements in a list, set or sorted set. Read-only variant of SORT.")
def sort_ro(txn: Txn, args: list[bytes]):
    return _sort(txn, args, readonly=True)


SORT_COMMANDS = ("sort", "sort_ro")
# SORT_RO has no STORE: its one key is the sorted one.
REGISTRY["sort"].extra["key_positions"] = sort_keys_of
