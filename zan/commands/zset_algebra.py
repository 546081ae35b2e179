"""Sorted-set algebra and multi-key pops (Redis t_zset.c, t_list.c): ZUNION ZINTER ZDIFF
and their STORE forms, ZINTERCARD, ZMPOP and LMPOP.

A set given as input counts as a sorted set whose members all score 1, as in Redis.
Checks come in Redis's order: the key count, then the input keys' types, then the
options, so a wrong type is reported before a bad option.
"""

from __future__ import annotations

import math

from zan.commands.lists import ListView
from zan.commands.sets import set_members
from zan.commands.table import DENYOOM, MOVABLEKEYS, READONLY, WRITE, Route, command
from zan.commands.util import parse_int, parse_limit
from zan.commands.zset_args import format_score, parse_score
from zan.commands.zsets import ZSetView
from zan.errors import SYNTAX, RespError, wrongtype
from zan.resp.types import NULL_ARRAY
from zan.store.codec import (
    T_SET, T_ZSET, ZSET_ELEM, decode_score, elem_prefix, prefix_end, unsortable_score,
)
from zan.store.keyspace import Txn, lookup, new_collection, remove_key

__all__ = ["zset_scores", "store_scores"]

_UNION, _INTER, _DIFF = "union", "inter", "diff"
_AGGREGATES = {b"SUM", b"MIN", b"MAX"}
NUMKEYS_POSITIVE = "ERR numkeys should be greater than 0"
COUNT_POSITIVE = "ERR count should be greater than 0"


def zset_scores(txn: Txn, pk: bytes) -> dict[bytes, float] | None:
    """member -> score of the sorted set or set at `pk` (a set's members score 1);
    None if there is no such key; WRONGTYPE for any other type."""
    meta = lookup(txn, pk)
    if meta is None:
        return None
    if meta.type == T_SET:
        return dict.fromkeys(set_members(txn, pk, meta), 1.0)
    if meta.type != T_ZSET:
        raise wrongtype()
    prefix = elem_prefix(ZSET_ELEM, pk, meta.version)
    n = len(prefix)
    return {key[n:]: decode_score(value) for key, value in txn.iterate(prefix, prefix_end(prefix))}


def _aggregate(current: float, value: float, how: bytes) -> float:
    if how == b"SUM":
        total = current + value
        return 0.0 if math.isnan(total) else total   # inf + -inf counts as 0
    if how == b"MIN":
        return value if value < current else current
    return value if value > current else current


def _weighted(score: float, weight: float) -> float:
    value = score * weight
    return 0.0 if math.isnan(value) else value


def _zsetop(txn: Txn, args: list[bytes], at: int, op: str, name: str, *,
            store: bool = False, cardinality_only: bool = False):
    """Redis's zunionInterDiffGenericCommand over ``args[at]`` = numkeys, the keys after
    it and the options after them.  Returns {member: score}, or a count for ZINTERCARD."""
    numkeys = parse_int(args[at])
    if numkeys < 1:
        raise RespError(f"ERR at least 1 input key is needed for '{name}' command")
    first = at + 1
    if numkeys > len(args) - first:
        raise RespError(SYNTAX)
    sources = [zset_scores(txn, pk) or {} for pk in args[first:first + numkeys]]
    weights = [1.0] * numkeys
    how = b"SUM"
    limit = 0
    withscores = False
    i = first + numkeys
    algebra = op != _DIFF and not cardinality_only
    while i < len(args):
        opt = args[i].upper()
        left = len(args) - i
        if algebra and opt == b"WEIGHTS" and left >= numkeys + 1:
            for n in range(numkeys):
                try:
                    weights[n] = parse_score(args[i + 1 + n])
                except RespError:
                    raise RespError("ERR weight value is not a float") from None
            i += numkeys + 1
        elif algebra and opt == b"AGGREGATE" and left >= 2:
            how = args[i + 1].upper()
            if how not in _AGGREGATES:
                raise RespError(SYNTAX)
            i += 2
        elif opt == b"WITHSCORES" and not store and not cardinality_only:
            withscores = True
            i += 1
        elif cardinality_only and opt == b"LIMIT" and left >= 2:
            limit = parse_limit(args[i + 1])
            i += 2
        else:
            raise RespError(SYNTAX)
    if op == _DIFF:
        base, others = sources[0], sources[1:]
        result = {m: s for m, s in base.items() if not any(m in other for other in others)}
        return result, withscores
    # Smallest inputs first, as Redis orders them (it matters to a SUM's rounding only).
    order = sorted(range(numkeys), key=lambda n: len(sources[n]))
    result: dict[bytes, float] = {}
    if op == _INTER:
        smallest = order[0]
        count = 0
        for member, score in sources[smallest].items():
            total = _weighted(score, weights[smallest])
            for n in order[1:]:
                other = sources[n].get(member)
                if other is None:
                    break
                total = _aggregate(total, _weighted(other, weights[n]), how)
            else:
                if cardinality_only:
                    count += 1
                    if limit and count >= limit:
                        break
                else:
                    result[member] = total
        if cardinality_only:
            return count
        return result, withscores
    for n in order:
        for member, score in sources[n].items():
            value = _weighted(score, weights[n])
            current = result.get(member)
            result[member] = value if current is None else _aggregate(current, value, how)
    return result, withscores


def _ordered(result: dict[bytes, float]) -> list[tuple[bytes, float]]:
    return sorted(result.items(), key=lambda item: (item[1], item[0]))


def _reply(outcome) -> list[bytes]:
    result, withscores = outcome
    out: list[bytes] = []
    for member, score in _ordered(result):
        out.append(member)
        if withscores:
            out.append(format_score(score))
    return out


def _store(txn: Txn, dst: bytes, outcome) -> int:
    return store_scores(txn, dst, outcome[0])


def store_scores(txn: Txn, dst: bytes, result: dict[bytes, float]) -> int:
    """Replace `dst` by a sorted set of `result` (Redis's setKey: any type, TTL
    dropped), or delete it when the result is empty; the number of members stored."""
    if lookup(txn, dst) is not None:
        remove_key(txn, dst)
    if not result:
        return 0
    out = ZSetView(txn, dst, new_collection(txn, T_ZSET, dst))
    for member, score in _ordered(result):
        out.set(member, score, None)
    out.save()
    return out.count


# Redis declares no fixed key range for these (first_key 0) beyond a destination.
_READ = dict(route=Route.SAME_PARTITION, numkeys_at=1, first_key=0, last_key=0, key_step=0,
             group="sorted_set", since="6.2.0")
_STORE = dict(route=Route.SAME_PARTITION, numkeys_at=2, first_key=1, last_key=1,
              group="sorted_set")


@command("zunion", -3, (READONLY, MOVABLEKEYS), summary="Add multiple sorted sets", **_READ)
def zunion(txn: Txn, args: list[bytes]):
    return _reply(_zsetop(txn, args, 0, _UNION, "zunion"))


@command("zinter", -3, (READONLY, MOVABLEKEYS), summary="Intersect multiple sorted sets", **_READ)
def zinter(txn: Txn, args: list[bytes]):
    return _reply(_zsetop(txn, args, 0, _INTER, "zinter"))


@command("zdiff", -3, (READONLY, MOVABLEKEYS), summary="Subtract multiple sorted sets", **_READ)
def zdiff(txn: Txn, args: list[bytes]):
    return _reply(_zsetop(txn, args, 0, _DIFF, "zdiff"))


@command("zunionstore", -4, (WRITE, DENYOOM, MOVABLEKEYS), since="2.0.0",
         summary="Add multiple sorted sets and store the resulting sorted set in a new key",
         **_STORE)
def zunionstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _zsetop(txn, args, 1, _UNION, "zunionstore", store=True))


@command("zinterstore", -4, (WRITE, DENYOOM, MOVABLEKEYS), since="2.0.0",
         summary="Intersect multiple sorted sets and store the resulting sorted set in a "
                 "new key", **_STORE)
def zinterstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _zsetop(txn, args, 1, _INTER, "zinterstore", store=True))


@command("zdiffstore", -4, (WRITE, DENYOOM, MOVABLEKEYS), since="6.2.0",
         summary="Subtract multiple sorted sets and store the resulting sorted set in a "
                 "new key", **_STORE)
def zdiffstore(txn: Txn, args: list[bytes]):
    return _store(txn, args[0], _zsetop(txn, args, 1, _DIFF, "zdiffstore", store=True))


@command("zintercard", -3, (READONLY, MOVABLEKEYS), summary="Intersect multiple sorted sets and return "
         "the cardinality of the result", **dict(_READ, since="7.0.0"))
def zintercard(txn: Txn, args: list[bytes]):
    return _zsetop(txn, args, 0, _INTER, "zintercard", cardinality_only=True)


# -- ZMPOP / LMPOP ---------------------------------------------------------------------

def _mpop_request(args: list[bytes], ends: dict[bytes, bool]):
    """numkeys key [key ...] <end> [COUNT n] -> (keys, end, count)."""
    numkeys = parse_int(args[0], NUMKEYS_POSITIVE)
    if numkeys < 1:
        raise RespError(NUMKEYS_POSITIVE)
    if numkeys + 1 >= len(args):
        raise RespError(SYNTAX)
    end = ends.get(args[numkeys + 1].upper())
    if end is None:
        raise RespError(SYNTAX)
    count = -1
    i = numkeys + 2
    while i < len(args):
        if count == -1 and args[i].upper() == b"COUNT" and i + 1 < len(args):
            count = parse_int(args[i + 1], COUNT_POSITIVE)
            if count < 1:
                raise RespError(COUNT_POSITIVE)
            i += 2
        else:
            raise RespError(SYNTAX)
    return args[1:numkeys + 1], end, max(count, 1)


def _pop_first(txn: Txn, keys: list[bytes], open_view, pop) -> list | object:
    """Pop from the first of `keys` that exists (one of another type is WRONGTYPE, as
    `open_view` reports it): [key, what `pop(view)` took], or a null array."""
    for pk in keys:
        view = open_view(txn, pk)
        if view is None:
            continue
        popped = pop(view)
        view.save()
        return [pk, popped]
    return NULL_ARRAY


@command("zmpop", -4, (WRITE, MOVABLEKEYS),
         summary="Remove and return members with scores in a sorted set",
         **dict(_READ, since="7.0.0"))
def zmpop(txn: Txn, args: list[bytes]):
    keys, highest, count = _mpop_request(args, {b"MIN": False, b"MAX": True})

    def pop(zs: ZSetView):
        items = list(zs.by_rank(0, count, highest))
        for raw, member in items:
            zs.remove_sorted(member, raw)
        return [[member, format_score(unsortable_score(raw))] for raw, member in items]

    return _pop_first(txn, keys, ZSetView.open, pop)


@command("lmpop", -4, (WRITE, MOVABLEKEYS), summary="Pop elements from a list",
         **dict(_READ, group="list", since="7.0.0"))
def lmpop(txn: Txn, args: list[bytes]):
    keys, left, count = _mpop_request(args, {b"LEFT": True, b"RIGHT": False})
    return _pop_first(txn, keys, ListView.open, lambda lst: lst.pop(count, left))
