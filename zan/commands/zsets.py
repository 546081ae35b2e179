"""Sorted-set commands (Redis t_zset.c).

A sorted set is a meta record (element count) and two records per member, kept in step:
``ZSET_ELEM member -> score`` answers point queries (ZSCORE, ZADD's current score) with
one get, and ``ZSCORE_ELEM sortable(score) member -> b""`` is the order Redis's skiplist
keeps (score, then member bytes), so every range is one iterator scan.  Ranks are found
by counting in that index.

Lexicographic ranges follow Redis's listpack walk (the encoding small sets use) step by
step, so they give Redis's answers even on sets whose scores differ.
"""

from __future__ import annotations

import functools
import itertools
import math

from zan.commands.table import DENYOOM, FAST, READONLY, WRITE, Route, command
from zan.commands.collection_scan import END_TOKEN, parse_scan_options, scan_page
from zan.commands.util import clamp_range, parse_int
from zan.commands.zset_args import (
    LexRange, ScoreRange, format_score, parse_lex_range, parse_score, parse_score_range,
)
from zan.errors import SYNTAX, RespError
from zan.store.codec import (
    ZSCORE_ELEM, ZSET_ELEM, decode_score, elem_prefix, encode_i64, encode_score,
    prefix_end, sortable_score, unsortable_score,
)
from zan.store.keyspace import (
    T_ZSET, Meta, Txn, check_subkey, lookup, lookup_as, new_collection, remove_key,
    store_meta,
)

__all__ = ["ZSetView"]

_NAN_SCORE = "ERR resulting score is not a number (NaN)"
_POSITIVE = "ERR value is out of range, must be positive"


class ZSetView:
    """One sorted-set key inside a txn.  `count` changes are written by `save`."""

    __slots__ = ("txn", "pk", "meta", "mprefix", "sprefix", "_slen", "count")

    def __init__(self, txn: Txn, pk: bytes, meta: Meta):
        self.txn = txn
        self.pk = pk
        self.meta = meta
        self.mprefix = elem_prefix(ZSET_ELEM, pk, meta.version)
        self.sprefix = elem_prefix(ZSCORE_ELEM, pk, meta.version)
        self._slen = len(self.sprefix)
        self.count = meta.count

    @classmethod
    def open(cls, txn: Txn, pk: bytes, create: bool = False) -> "ZSetView | None":
        meta = lookup_as(txn, pk, T_ZSET)
        if meta is None:
            if not create:
                return None
            meta = new_collection(txn, T_ZSET, pk)
        return cls(txn, pk, meta)

    # -- members ----------------------------------------------------------------

    def score(self, member: bytes) -> float | None:
        raw = self.txn.get(self.mprefix + member)
        return None if raw is None else decode_score(raw)

    def set(self, member: bytes, score: float, old: float | None) -> None:
        if score == 0.0:
            score = 0.0  # Redis's compact encoding stores -0 as 0
        if old is not None:
            self.txn.delete(self.sprefix + sortable_score(old) + member)
        else:
            self.count += 1
        self.txn.put(self.mprefix + member, encode_score(score))
        self.txn.put(self.sprefix + sortable_score(score) + member, b"")

    def remove(self, member: bytes, old: float) -> None:
        self.remove_sorted(member, sortable_score(old))

    def remove_sorted(self, member: bytes, sorted_score: bytes) -> None:
        self.txn.delete(self.mprefix + member)
        self.txn.delete(self.sprefix + sorted_score + member)
        self.count -= 1

    def save(self) -> None:
        if self.count == 0:
            remove_key(self.txn, self.pk)
        else:
            self.meta.payload = encode_i64(self.count)
            store_meta(self.txn, self.pk, self.meta)

    # -- the score index ----------------------------------------------------------

    def scan(self, start: bytes | None = None, stop: bytes | None = None,
             reverse: bool = False):
        """(sortable score bytes, member) in score order over index keys [start, stop).
        Scores stay encoded: most callers only need members or the index key back."""
        n = self._slen
        if start is None:
            start = self.sprefix
        if stop is None:
            stop = prefix_end(self.sprefix)
        for key, _ in self.txn.iterate(start, stop, reverse=reverse):
            yield key[n:n + 8], key[n + 8:]

    def score_bounds(self, rng: ScoreRange) -> tuple[bytes, bytes]:
        """Index keys [start, stop) holding exactly the scores of `rng`."""
        lo = self.sprefix + sortable_score(rng.min)
        hi = self.sprefix + sortable_score(rng.max)
        start = prefix_end(lo) if rng.minex else lo
        stop = hi if rng.maxex else prefix_end(hi)
        return start, stop

    def in_score_range(self, rng: ScoreRange, reverse: bool = False):
        if rng.is_empty():
            return iter(())
        start, stop = self.score_bounds(rng)
        return self.scan(start, stop, reverse)

    def rank(self, member: bytes, score: float) -> int:
        """Elements ordered before (score, member)."""
        stop = self.sprefix + sortable_score(score) + member
        return sum(1 for _ in self.txn.iterate(self.sprefix, stop))

    def first(self):
        return next(self.scan(), None)

    def last(self):
        return next(self.scan(reverse=True), None)

    def in_lex_range(self, rng: LexRange, reverse: bool = False, offset: int = 0):
        """Redis's listpack lex walk: find the first member past the near bound, skip
        `offset` elements whatever they are (as Redis's LIMIT does), then take members
        while they are within the far bound."""
        if rng.is_empty() or self.count == 0 or offset < 0:
            return
        last, first = self.last(), self.first()
        if not rng.gte_min(last[1]) or not rng.lte_max(first[1]):
            return
        near, far = (rng.lte_max, rng.gte_min) if reverse else (rng.gte_min, rng.lte_max)
        it = self.scan(reverse=reverse)
        for item in it:
            if near(item[1]):
                if not far(item[1]):
                    return
                break
        else:
            return
        for _ in range(offset):
            item = next(it, None)
            if item is None:
                return
        while item is not None and far(item[1]):
            yield item
            item = next(it, None)

    def by_rank(self, lo: int, hi: int, reverse: bool = False):
        """Elements with ranks [lo, hi) (ranks counted from the far end when reversed):
        one scan, skipping the first `lo`."""
        return itertools.islice(self.scan(reverse=reverse), lo, hi)


@functools.lru_cache(maxsize=4096)
def _format_sorted(raw: bytes) -> bytes:
    return format_score(unsortable_score(raw))


def _flat(items, withscores: bool) -> list[bytes]:
    out: list[bytes] = []
    if withscores:
        fmt = _format_sorted
        for raw, member in items:
            out.append(member)
            out.append(fmt(raw))
    else:
        out.extend(member for _, member in items)
    return out


def _limit(items, offset: int, limit: int):
    """LIMIT offset count on an iterator of range results (Redis: a negative offset
    skips everything; a negative count means no limit)."""
    if offset < 0:
        return
    for _ in range(offset):
        if next(items, None) is None:
            return
    if limit < 0:
        yield from items
        return
    for _ in range(limit):
        item = next(items, None)
        if item is None:
            return
        yield item


# -- ZADD / ZINCRBY -----------------------------------------------------------------

def _zadd(txn: Txn, args: list[bytes], incr: bool):
    pk = args[0]
    nx = xx = gt = lt = ch = False
    i = 1
    while i < len(args):
        opt = args[i].upper()
        if opt == b"NX":
            nx = True
        elif opt == b"XX":
            xx = True
        elif opt == b"CH":
            ch = True
        elif opt == b"INCR":
            incr = True
        elif opt == b"GT":
            gt = True
        elif opt == b"LT":
            lt = True
        else:
            break
        i += 1
    rest = len(args) - i
    if rest == 0 or rest % 2:
        raise RespError(SYNTAX)
    if nx and xx:
        raise RespError("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise RespError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and rest > 2:
        raise RespError("ERR INCR option supports a single increment-element pair")
    pairs = [(parse_score(args[j]), check_subkey(args[j + 1])) for j in range(i, len(args), 2)]

    zs = ZSetView.open(txn, pk)
    if zs is None:
        if xx:
            return None if incr else 0
        zs = ZSetView.open(txn, pk, create=True)
    added = updated = processed = 0
    result = None
    for score, member in pairs:
        cur = zs.score(member)
        if cur is not None:
            if nx:
                continue
            if incr:
                score += cur
                if math.isnan(score):
                    raise RespError(_NAN_SCORE)
            if (lt and score >= cur) or (gt and score <= cur):
                continue
            if score != cur:
                zs.set(member, score, cur)
                updated += 1
        elif xx:
            continue
        else:
            zs.set(member, score, None)
            added += 1
        processed += 1
        result = score
    if added or updated:
        zs.save()
    if incr:
        return format_score(result) if processed else None
    return added + updated if ch else added


@command("zadd", -4, (WRITE, DENYOOM, FAST), group="sorted_set",
         summary="Add one or more members to a sorted set, or update its score if it already exists")
def zadd(txn: Txn, args: list[bytes]):
    return _zadd(txn, args, False)


@command("zincrby", 4, (WRITE, DENYOOM, FAST), group="sorted_set",
         summary="Increment the score of a member in a sorted set")
def zincrby(txn: Txn, args: list[bytes]):
    return _zadd(txn, args, True)


@command("zrem", -3, (WRITE, FAST), group="sorted_set",
         summary="Remove one or more members from a sorted set")
def zrem(txn: Txn, args: list[bytes]):
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    removed = 0
    for member in args[1:]:
        cur = zs.score(member)
        if cur is not None:
            zs.remove(member, cur)
            removed += 1
    if removed:
        zs.save()
    return removed


# -- point reads --------------------------------------------------------------------

@command("zscore", 3, (READONLY, FAST), group="sorted_set",
         summary="Get the score associated with the given member in a sorted set")
def zscore(txn: Txn, args: list[bytes]):
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return None
    score = zs.score(args[1])
    return None if score is None else format_score(score)


@command("zmscore", -3, (READONLY, FAST), group="sorted_set", since="6.2.0",
         summary="Get the score associated with the given members in a sorted set")
def zmscore(txn: Txn, args: list[bytes]):
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return [None] * (len(args) - 1)
    out = []
    for member in args[1:]:
        score = zs.score(member)
        out.append(None if score is None else format_score(score))
    return out


@command("zcard", 2, (READONLY, FAST), group="sorted_set",
         summary="Get the number of members in a sorted set")
def zcard(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_ZSET)
    return 0 if meta is None else meta.count


def _rank(txn: Txn, args: list[bytes], reverse: bool):
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return None
    score = zs.score(args[1])
    if score is None:
        return None
    rank = zs.rank(args[1], score)
    return zs.count - 1 - rank if reverse else rank


@command("zrank", 3, (READONLY, FAST), group="sorted_set",
         summary="Determine the index of a member in a sorted set")
def zrank(txn: Txn, args: list[bytes]):
    return _rank(txn, args, False)


@command("zrevrank", 3, (READONLY, FAST), group="sorted_set",
         summary="Determine the index of a member in a sorted set, with scores ordered from high to low")
def zrevrank(txn: Txn, args: list[bytes]):
    return _rank(txn, args, True)


# -- counts -------------------------------------------------------------------------

@command("zcount", 4, (READONLY, FAST), group="sorted_set",
         summary="Count the members in a sorted set with scores within the given values")
def zcount(txn: Txn, args: list[bytes]):
    rng = parse_score_range(args[1], args[2])
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    return sum(1 for _ in zs.in_score_range(rng))


@command("zlexcount", 4, (READONLY, FAST), group="sorted_set",
         summary="Count the number of members in a sorted set between a given lexicographical range")
def zlexcount(txn: Txn, args: list[bytes]):
    rng = parse_lex_range(args[1], args[2])
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    return sum(1 for _ in zs.in_lex_range(rng))


# -- ranges -------------------------------------------------------------------------

_RANK, _SCORE, _LEX = "rank", "score", "lex"


def _range_request(args: list[bytes], first: int, store: bool, kind: str | None,
                   reverse: bool | None):
    """Parse Redis 7.0's unified ZRANGE syntax from args[first:] (src min max ...).
    Returns (kind, reverse, bounds, withscores, offset, limit)."""
    withscores = False
    offset, limit = 0, -1
    j = first + 3
    while j < len(args):
        opt = args[j].upper()
        left = len(args) - j - 1
        if not store and opt == b"WITHSCORES":
            withscores = True
        elif opt == b"LIMIT" and left >= 2:
            offset = parse_int(args[j + 1])
            limit = parse_int(args[j + 2])
            j += 2
        elif reverse is None and opt == b"REV":
            reverse = True
        elif kind is None and opt == b"BYLEX":
            kind = _LEX
        elif kind is None and opt == b"BYSCORE":
            kind = _SCORE
        else:
            raise RespError(SYNTAX)
        j += 1
    reverse = bool(reverse)
    kind = kind or _RANK
    if limit != -1 and kind == _RANK:
        raise RespError("ERR syntax error, LIMIT is only supported in combination with "
                        "either BYSCORE or BYLEX")
    if withscores and kind == _LEX:
        raise RespError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    lo_raw, hi_raw = args[first + 1], args[first + 2]
    if reverse and kind != _RANK:
        lo_raw, hi_raw = hi_raw, lo_raw
    if kind == _RANK:
        bounds = (parse_int(lo_raw), parse_int(hi_raw))
    elif kind == _SCORE:
        bounds = parse_score_range(lo_raw, hi_raw)
    else:
        bounds = parse_lex_range(lo_raw, hi_raw)
    return kind, reverse, bounds, withscores, offset, limit


def _range_items(zs: ZSetView, kind: str, reverse: bool, bounds, offset: int, limit: int):
    if kind == _RANK:
        lo, hi = clamp_range(bounds[0], bounds[1], zs.count)
        return zs.by_rank(lo, hi, reverse)
    if offset > 0 and offset >= zs.count:
        return iter(())
    if kind == _SCORE:
        return _limit(iter(zs.in_score_range(bounds, reverse)), offset, limit)
    return _limit(zs.in_lex_range(bounds, reverse, offset), 0, limit)


def _zrange(txn: Txn, args: list[bytes], kind: str | None, reverse: bool | None):
    kind, reverse, bounds, withscores, offset, limit = _range_request(
        args, 0, False, kind, reverse)
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return []
    return _flat(_range_items(zs, kind, reverse, bounds, offset, limit), withscores)


@command("zrange", -4, (READONLY,), group="sorted_set",
         summary="Return a range of members in a sorted set")
def zrange(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, None, None)


@command("zrevrange", -4, (READONLY,), group="sorted_set",
         summary="Return a range of members in a sorted set, by index, with scores ordered from high to low")
def zrevrange(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, _RANK, True)


@command("zrangebyscore", -4, (READONLY,), group="sorted_set", since="1.0.5",
         summary="Return a range of members in a sorted set, by score")
def zrangebyscore(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, _SCORE, False)


@command("zrevrangebyscore", -4, (READONLY,), group="sorted_set", since="2.2.0",
         summary="Return a range of members in a sorted set, by score, with scores ordered from high to low")
def zrevrangebyscore(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, _SCORE, True)


@command("zrangebylex", -4, (READONLY,), group="sorted_set", since="2.8.9",
         summary="Return a range of members in a sorted set, by lexicographical range")
def zrangebylex(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, _LEX, False)


@command("zrevrangebylex", -4, (READONLY,), group="sorted_set", since="2.8.9",
         summary="Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings")
def zrevrangebylex(txn: Txn, args: list[bytes]):
    return _zrange(txn, args, _LEX, True)


@command("zrangestore", -5, (WRITE, DENYOOM), route=Route.SAME_PARTITION, last_key=2,
         group="sorted_set", since="6.2.0",
         summary="Store a range of members from sorted set into another key")
def zrangestore(txn: Txn, args: list[bytes]):
    dst = args[0]
    kind, reverse, bounds, _, offset, limit = _range_request(args, 1, True, None, None)
    src = ZSetView.open(txn, args[1])
    items = [] if src is None else list(_range_items(src, kind, reverse, bounds, offset, limit))
    if lookup(txn, dst) is not None:
        remove_key(txn, dst)
    if not items:
        return 0
    out = ZSetView(txn, dst, new_collection(txn, T_ZSET, dst))
    for raw, member in items:
        out.set(member, unsortable_score(raw), None)
    out.save()
    return out.count


# -- removal by range ---------------------------------------------------------------

@command("zremrangebyrank", 4, (WRITE,), group="sorted_set", since="2.0.0",
         summary="Remove all members in a sorted set within the given indexes")
def zremrangebyrank(txn: Txn, args: list[bytes]):
    start, end = parse_int(args[1]), parse_int(args[2])
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    lo, hi = clamp_range(start, end, zs.count)
    return _remove_all(zs, list(zs.by_rank(lo, hi)))


@command("zremrangebyscore", 4, (WRITE,), group="sorted_set", since="1.1.0",
         summary="Remove all members in a sorted set within the given scores")
def zremrangebyscore(txn: Txn, args: list[bytes]):
    rng = parse_score_range(args[1], args[2])
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    return _remove_all(zs, list(zs.in_score_range(rng)))


@command("zremrangebylex", 4, (WRITE,), group="sorted_set", since="2.8.9",
         summary="Remove all members in a sorted set between the given lexicographical range")
def zremrangebylex(txn: Txn, args: list[bytes]):
    rng = parse_lex_range(args[1], args[2])
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return 0
    return _remove_all(zs, list(zs.in_lex_range(rng)))


def _remove_all(zs: ZSetView, items) -> int:
    for raw, member in items:
        zs.remove_sorted(member, raw)
    if items:
        zs.save()
    return len(items)


# -- pops and random members --------------------------------------------------------

def _zpop(txn: Txn, args: list[bytes], reverse: bool):
    if len(args) > 2:
        raise RespError(SYNTAX)
    count = 1
    if len(args) == 2:
        count = parse_int(args[1], _POSITIVE)
        if count < 0:
            raise RespError(_POSITIVE)
    zs = ZSetView.open(txn, args[0])
    if zs is None or count == 0:
        return []
    items = list(zs.by_rank(0, count, reverse))
    _remove_all(zs, items)
    return _flat(items, True)


@command("zpopmin", -2, (WRITE, FAST), group="sorted_set", since="5.0.0",
         summary="Remove and return members with the lowest scores in a sorted set")
def zpopmin(txn: Txn, args: list[bytes]):
    return _zpop(txn, args, False)


@command("zpopmax", -2, (WRITE, FAST), group="sorted_set", since="5.0.0",
         summary="Remove and return members with the highest scores in a sorted set")
def zpopmax(txn: Txn, args: list[bytes]):
    return _zpop(txn, args, True)


_LONG_MAX = (1 << 63) - 1


@command("zrandmember", -2, (READONLY,), group="sorted_set", since="6.2.0",
         summary="Get one or multiple random elements from a sorted set")
def zrandmember(txn: Txn, args: list[bytes]):
    if len(args) == 1:
        zs = ZSetView.open(txn, args[0])
        if zs is None:
            return None
        return next(zs.by_rank(k := txn.rng.randrange(zs.count), k + 1))[1]
    count = parse_int(args[1])
    if count < -_LONG_MAX:
        raise RespError(f"ERR value is out of range, value must between {-_LONG_MAX} and {_LONG_MAX}")
    withscores = False
    if len(args) > 3 or (len(args) == 3 and args[2].upper() != b"WITHSCORES"):
        raise RespError(SYNTAX)
    if len(args) == 3:
        withscores = True
        if count < -_LONG_MAX // 2 or count > _LONG_MAX // 2:
            raise RespError("ERR value is out of range")
    zs = ZSetView.open(txn, args[0])
    if zs is None or count == 0:
        return []
    rng = txn.rng
    if count < 0:
        # Repetitions allowed: draw ranks, then read them in one ordered pass.
        ranks = [rng.randrange(zs.count) for _ in range(-count)]
        wanted = sorted(set(ranks))
        by_rank = dict(zip(wanted, _pick(zs, wanted)))
        return _flat((by_rank[r] for r in ranks), withscores)
    if count >= zs.count:
        return _flat(zs.scan(), withscores)
    wanted = sorted(rng.sample(range(zs.count), count))
    picked = _pick(zs, wanted)
    rng.shuffle(picked)
    return _flat(picked, withscores)


def _pick(zs: ZSetView, ranks: list[int]) -> list:
    """The elements at the given increasing ranks, in one scan."""
    out = []
    want = iter(ranks)
    target = next(want, None)
    for i, item in enumerate(zs.scan()):
        while target == i:
            out.append(item)
            target = next(want, None)
        if target is None:
            break
    return out


# -- ZSCAN --------------------------------------------------------------------------

@command("zscan", -3, (READONLY,), group="sorted_set", since="2.8.0",
         summary="Incrementally iterate sorted sets elements and associated scores")
def zscan(txn: Txn, args: list[bytes]):
    """One page in member order; takes and returns the opaque token of collection_scan."""
    token = args[1]
    if token not in (b"", END_TOKEN) and not token.startswith(b"@"):
        raise RespError("ERR invalid cursor")
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return [END_TOKEN, []]
    count, pattern = parse_scan_options(args[2:])
    next_token, items = scan_page(txn, zs.mprefix, token, count, pattern)
    out: list[bytes] = []
    for member, raw in items:
        out.append(member)
        out.append(format_score(decode_score(raw)))
    return [next_token, out]
