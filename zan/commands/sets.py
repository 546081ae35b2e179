"""Set commands (Redis t_set.c).

A set is a meta record whose payload is its cardinality, plus one empty record per
member under ``codec.elem_prefix(SET_ELEM, pk, version) + member``.  Members iterate in
byte order; where Redis's order is undefined (SMEMBERS, SINTER, SPOP with a count...) we
answer in that order.  Random choices (SPOP, SRANDMEMBER) come from ``txn.rng``: for
SPOP, a write, that is the entry's seed, so every replica pops the same members.
"""

from __future__ import annotations

from zan.commands.collection_scan import parse_scan_options, scan_page
from zan.commands.hashes import parse_signed_count
from zan.commands.table import DENYOOM, FAST, RANDOM, READONLY, WRITE, Route, command
from zan.commands.util import parse_int, parse_limit
from zan.errors import SYNTAX, RespError, wrongtype
from zan.store import codec
from zan.store.keyspace import (
    T_SET, Meta, Txn, check_subkey, lookup, lookup_as, new_collection, remove_key,
    store_meta,
)

__all__ = ["set_members"]

_TAG = codec.SET_ELEM
_NOT_POSITIVE = "ERR value is out of range, must be positive"


def _prefix(pk: bytes, meta: Meta) -> bytes:
    return codec.elem_prefix(_TAG, pk, meta.version)


def set_members(txn: Txn, pk: bytes, meta: Meta):
    """Members of a live set, in byte order."""
    prefix = _prefix(pk, meta)
    n = len(prefix)
    for key, _ in txn.iterate(prefix, codec.prefix_end(prefix)):
        yield key[n:]


def _set_count(txn: Txn, pk: bytes, meta: Meta, count: int) -> None:
    if count == 0:
        remove_key(txn, pk)
    else:
        meta.payload = codec.encode_i64(count)
        store_meta(txn, pk, meta)


def _add(txn: Txn, pk: bytes, meta: Meta | None, members: list[bytes]) -> int:
    """Add `members` to the set at `pk` (`meta` from lookup_as; None creates it)."""
    for m in members:
        check_subkey(m)
    fresh = meta is None
    if fresh:
        meta = new_collection(txn, T_SET, pk)
        count = 0
    else:
        count = meta.count
    prefix = _prefix(pk, meta)
    seen: set[bytes] = set()
    added = 0
    for m in members:
        key = prefix + m
        # A fresh collection's version is this entry's index: nothing of it is on disk.
        if (m not in seen) if fresh else (txn.get(key) is None):
            txn.put(key, b"")
            added += 1
            if fresh:
                seen.add(m)
    if added:
        _set_count(txn, pk, meta, count + added)
    return added


def _store(txn: Txn, pk: bytes, members: list[bytes]) -> int:
    """Replace whatever `pk` holds by a set of `members` (distinct); delete it if empty."""
    if lookup(txn, pk) is not None:
        remove_key(txn, pk)
    if members:
        meta = new_collection(txn, T_SET, pk)
        prefix = _prefix(pk, meta)
        for m in members:
            txn.put(prefix + m, b"")
        _set_count(txn, pk, meta, len(members))
    return len(members)


def _remove(txn: Txn, pk: bytes, meta: Meta, members: list[bytes]) -> None:
    prefix = _prefix(pk, meta)
    for m in members:
        txn.delete(prefix + m)
    _set_count(txn, pk, meta, meta.count - len(members))


@command("sadd", -3, (WRITE, DENYOOM, FAST), group="set",
         summary="Add one or more members to a set")
def sadd(txn: Txn, args: list[bytes]):
    pk = args[0]
    return _add(txn, pk, lookup_as(txn, pk, T_SET), args[1:])


@command("srem", -3, (WRITE, FAST), group="set",
         summary="Remove one or more members from a set")
def srem(txn: Txn, args: list[bytes]):
    pk = args[0]
    meta = lookup_as(txn, pk, T_SET)
    if meta is None:
        return 0
    prefix = _prefix(pk, meta)
    gone: list[bytes] = []
    for m in dict.fromkeys(args[1:]):
        if txn.get(prefix + m) is not None:
            gone.append(m)
    if gone:
        _remove(txn, pk, meta, gone)
    return len(gone)


@command("smembers", 2, (READONLY,), group="set", summary="Get all the members in a set")
def smembers(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_SET)
    return [] if meta is None else list(set_members(txn, args[0], meta))


@command("sismember", 3, (READONLY, FAST), group="set",
         summary="Determine if a given value is a member of a set")
def sismember(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_SET)
    if meta is None:
        return 0
    return int(txn.get(_prefix(args[0], meta) + args[1]) is not None)


@command("smismember", -3, (READONLY, FAST), group="set", since="6.2.0",
         summary="Returns the membership associated with the given elements for a set")
def smismember(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_SET)
    if meta is None:
        return [0] * (len(args) - 1)
    prefix = _prefix(args[0], meta)
    return [int(txn.get(prefix + m) is not None) for m in args[1:]]


@command("scard", 2, (READONLY, FAST), group="set",
         summary="Get the number of members in a set")
def scard(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_SET)
    return 0 if meta is None else meta.count


def _nth_member(txn: Txn, pk: bytes, meta: Meta, n: int) -> bytes:
    for i, m in enumerate(set_members(txn, pk, meta)):
        if i == n:
            return m
    raise AssertionError("set shorter than its count")


@command("spop", -2, (WRITE, FAST, RANDOM), group="set",
         summary="Remove and return one or multiple random members from a set")
def spop(txn: Txn, args: list[bytes]):
    pk = args[0]
    if len(args) > 2:
        raise RespError(SYNTAX)
    if len(args) == 1:
        meta = lookup_as(txn, pk, T_SET)
        if meta is None:
            return None
        member = _nth_member(txn, pk, meta, txn.rng.randrange(meta.count))
        _remove(txn, pk, meta, [member])
        return member
    # getPositiveLongFromObjectOrReply: one text for "not a number" and "negative".
    count = parse_int(args[1], _NOT_POSITIVE)
    if count < 0:
        raise RespError(_NOT_POSITIVE)
    meta = lookup_as(txn, pk, T_SET)
    if meta is None or count == 0:
        return []
    members = list(set_members(txn, pk, meta))
    if count >= len(members):
        remove_key(txn, pk)
        return members
    popped = txn.rng.sample(members, count)
    _remove(txn, pk, meta, popped)
    return popped


@command("srandmember", -2, (READONLY, RANDOM), group="set",
         summary="Get one or multiple random members from a set")
def srandmember(txn: Txn, args: list[bytes]):
    pk = args[0]
    if len(args) > 2:
        raise RespError(SYNTAX)
    if len(args) == 1:
        meta = lookup_as(txn, pk, T_SET)
        if meta is None:
            return None
        return _nth_member(txn, pk, meta, txn.rng.randrange(meta.count))
    count = parse_signed_count(args[1])
    meta = lookup_as(txn, pk, T_SET)
    if meta is None or count == 0:
        return []
    members = list(set_members(txn, pk, meta))
    rng = txn.rng
    if count < 0:
        return [members[rng.randrange(len(members))] for _ in range(-count)]
    if count >= len(members):
        return members
    return rng.sample(members, count)


@command("smove", 4, (WRITE, FAST), route=Route.SAME_PARTITION, first_key=1, last_key=2,
         group="set", summary="Move a member from one set to another")
def smove(txn: Txn, args: list[bytes]):
    src, dst, member = args
    src_meta = lookup(txn, src)
    dst_meta = lookup(txn, dst)
    if src_meta is None:
        return 0
    if src_meta.type != T_SET or (dst_meta is not None and dst_meta.type != T_SET):
        raise wrongtype()
    key = _prefix(src, src_meta) + member
    if src == dst:
        return int(txn.get(key) is not None)
    if txn.get(key) is None:
        return 0
    _remove(txn, src, src_meta, [member])
    _add(txn, dst, dst_meta, [member])
    return 1


# --- SINTER / SUNION / SDIFF and their STORE and CARD forms --------------------------

def _load(txn: Txn, keys: list[bytes]) -> list[tuple[bytes, Meta] | None]:
    """The live set of each key (None if missing); WRONGTYPE if any key is not a set."""
    return [(pk, meta) if (meta := lookup_as(txn, pk, T_SET)) is not None else None
            for pk in keys]


def _inter(txn: Txn, keys: list[bytes], limit: int = 0) -> list[bytes]:
    sets = _load(txn, keys)
    if any(s is None for s in sets):
        return []
    sets.sort(key=lambda s: s[1].count)
    (pk0, meta0), others = sets[0], sets[1:]
    prefixes = [_prefix(pk, meta) for pk, meta in others]
    out: list[bytes] = []
    for m in set_members(txn, pk0, meta0):
        if all(txn.get(p + m) is not None for p in prefixes):
            out.append(m)
            if len(out) == limit:
                break
    return out


def _union(txn: Txn, keys: list[bytes]) -> list[bytes]:
    result: set[bytes] = set()
    for s in _load(txn, keys):
        if s is not None:
            result.update(set_members(txn, *s))
    return sorted(result)


def _diff(txn: Txn, keys: list[bytes]) -> list[bytes]:
    sets = _load(txn, keys)
    if sets[0] is None:
        return []
    prefixes = [_prefix(pk, meta) for s in sets[1:] if s is not None for pk, meta in [s]]
    return [m for m in set_members(txn, *sets[0])
            if not any(txn.get(p + m) is not None for p in prefixes)]


_MULTI = dict(route=Route.SAME_PARTITION, first_key=1, last_key=-1, group="set")


@command("sinter", -2, (READONLY,), summary="Intersect multiple sets", **_MULTI)
def sinter(txn: Txn, args: list[bytes]):
    return _inter(txn, args)


@command("sunion", -2, (READONLY,), summary="Add multiple sets", **_MULTI)
def sunion(txn: Txn, args: list[bytes]):
    return _union(txn, args)


@command("sdiff", -2, (READONLY,), summary="Subtract multiple sets", **_MULTI)
def sdiff(txn: Txn, args: list[bytes]):
    return _diff(txn, args)


@command("sinterstore", -3, (WRITE, DENYOOM),
         summary="Intersect multiple sets and store the resulting set in a key", **_MULTI)
def sinterstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _inter(txn, args[1:]))


@command("sunionstore", -3, (WRITE, DENYOOM),
         summary="Add multiple sets and store the resulting set in a key", **_MULTI)
def sunionstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _union(txn, args[1:]))


@command("sdiffstore", -3, (WRITE, DENYOOM),
         summary="Subtract multiple sets and store the resulting set in a key", **_MULTI)
def sdiffstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _diff(txn, args[1:]))


@command("sintercard", -3, (READONLY,), since="7.0.0", numkeys_at=1,
         summary="Intersect multiple sets and return the cardinality of the result", **_MULTI)
def sintercard(txn: Txn, args: list[bytes]):
    """args: numkeys key [key ...] [LIMIT limit]."""
    numkeys = parse_int(args[0], "ERR numkeys should be greater than 0")
    if numkeys < 1:
        raise RespError("ERR numkeys should be greater than 0")
    if numkeys > len(args) - 1:
        raise RespError("ERR Number of keys can't be greater than number of args")
    limit = 0
    i = 1 + numkeys
    while i < len(args):
        if args[i].lower() == b"limit" and i + 1 < len(args):
            limit = parse_limit(args[i + 1])
            i += 2
        else:
            raise RespError(SYNTAX)
    return len(_inter(txn, args[1:1 + numkeys], limit))


@command("sscan", -3, (READONLY, RANDOM), group="set", since="2.8.0",
         summary="Incrementally iterate Set elements")
def sscan(txn: Txn, args: list[bytes]):
    """args: key, token (b"0" or b"" to start), options.  Reply [next_token, [members]]."""
    pk, token = args[0], args[1]
    meta = lookup_as(txn, pk, T_SET)
    if meta is None:
        return [b"0", []]
    count, pattern = parse_scan_options(args[2:])
    next_token, items = scan_page(txn, _prefix(pk, meta), token, count, pattern)
    return [next_token, [m for m, _ in items]]
