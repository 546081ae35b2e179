"""List commands (Redis t_list.c).

A list is a meta record ``head:i64 size:i64`` plus one element record per position:
element ``i`` (0 = leftmost) lives at sequence number ``head + i``.  Pushing on the left
decrements ``head``, on the right writes at ``head + size``, so every index is a single
key computed by arithmetic and every range is one iterator scan.  Only an insertion or
removal in the middle (LINSERT, LREM) moves elements, and then only the shorter side.
"""

from __future__ import annotations

from zan.commands.table import DENYOOM, FAST, READONLY, WRITE, Route, command
from zan.commands.util import clamp_range, parse_int
from zan.errors import NO_SUCH_KEY, OUT_OF_RANGE, SYNTAX, RespError, wrong_arity
from zan.resp.types import NULL_ARRAY, OK
from zan.store import codec
from zan.store.codec import LIST_ELEM, elem_prefix, encode_i64, encode_list_seq
from zan.store.keyspace import (
    T_LIST, Meta, Txn, check_value, lookup_as, new_collection, remove_key, store_meta,
)

__all__ = ["ListView"]

_POSITIVE = "ERR value is out of range, must be positive"
_RANK_ZERO = ("ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
              "second ... or use negative to start from the end of the list")


class ListView:
    """One list key inside a txn: index arithmetic over its sequence numbers.

    Changes to ``head``/``size`` are kept here until `save` writes the meta record (or
    removes the key once it is empty, as Redis does)."""

    __slots__ = ("txn", "pk", "meta", "prefix", "head", "size")

    def __init__(self, txn: Txn, pk: bytes, meta: Meta):
        self.txn = txn
        self.pk = pk
        self.meta = meta
        self.prefix = elem_prefix(LIST_ELEM, pk, meta.version)
        self.head = codec.decode_i64(meta.payload, 0)
        self.size = codec.decode_i64(meta.payload, 8)

    @classmethod
    def open(cls, txn: Txn, pk: bytes, create: bool = False) -> "ListView | None":
        meta = lookup_as(txn, pk, T_LIST)
        if meta is None:
            if not create:
                return None
            meta = new_collection(txn, T_LIST, pk)
        return cls(txn, pk, meta)

    def key(self, index: int) -> bytes:
        return self.prefix + encode_list_seq(self.head + index)

    def get(self, index: int) -> bytes | None:
        return self.txn.get(self.key(index))

    def set(self, index: int, value: bytes) -> None:
        self.txn.put(self.key(index), value)

    def values(self, start: int, stop: int, reverse: bool = False) -> list[bytes]:
        """Elements at indexes [start, stop), one range scan."""
        if start >= stop:
            return []
        return [v for _, v in self.txn.iterate(self.key(start), self.key(stop), reverse=reverse)]

    def push(self, value: bytes, left: bool) -> None:
        if left:
            self.head -= 1
            self.txn.put(self.key(0), value)
        else:
            self.txn.put(self.key(self.size), value)
        self.size += 1

    def pop(self, count: int, left: bool) -> list[bytes]:
        """Remove up to `count` elements from one end; returned in pop order."""
        n = min(count, self.size)
        if n == 1:
            # The common single pop: a point get, no iterator.
            key = self.key(0 if left else self.size - 1)
            out = [self.txn.get(key)]
            self.txn.delete(key)
            if left:
                self.head += 1
            self.size -= 1
            return out
        if left:
            out = self.values(0, n)
            for i in range(n):
                self.txn.delete(self.key(i))
            self.head += n
        else:
            out = self.values(self.size - n, self.size, reverse=True)
            for i in range(self.size - n, self.size):
                self.txn.delete(self.key(i))
        self.size -= n
        return out

    def rewrite(self, new: list[bytes], old: list[bytes]) -> None:
        """Replace the whole content `old` (as read) by `new`, moving the fewest records:
        elements keep their seq either counted from the head or from the tail."""
        n_old, n_new = len(old), len(new)
        # Writes needed when anchored at the head: every position where they differ.
        front = 0
        while front < n_new and front < n_old and new[front] == old[front]:
            front += 1
        back = 0
        while back < n_new - front and back < n_old - front and \
                new[n_new - 1 - back] == old[n_old - 1 - back]:
            back += 1
        if n_new - front <= n_new - back:
            # Keep the head: rewrite [front, n_new), delete the surplus tail.
            for i in range(front, n_new):
                self.set(i, new[i])
            for i in range(n_new, n_old):
                self.txn.delete(self.key(i))
        else:
            # Keep the tail: move the head by the length difference.
            old_head = self.head
            self.head = old_head + n_old - n_new
            for i in range(0, n_new - back):
                self.set(i, new[i])
            for seq in range(old_head, self.head):
                self.txn.delete(self.prefix + encode_list_seq(seq))
        self.size = n_new

    def save(self) -> None:
        if self.size == 0:
            remove_key(self.txn, self.pk)
        else:
            self.meta.payload = encode_i64(self.head) + encode_i64(self.size)
            store_meta(self.txn, self.pk, self.meta)


# -- push ---------------------------------------------------------------------------

def _push(txn: Txn, args: list[bytes], left: bool, only_existing: bool) -> int:
    values = [check_value(v) for v in args[1:]]
    lst = ListView.open(txn, args[0], create=not only_existing)
    if lst is None:
        return 0
    for v in values:
        lst.push(v, left)
    lst.save()
    return lst.size


@command("lpush", -3, (WRITE, DENYOOM, FAST), group="list",
         summary="Prepend one or multiple elements to a list")
def lpush(txn: Txn, args: list[bytes]):
    return _push(txn, args, True, False)


@command("rpush", -3, (WRITE, DENYOOM, FAST), group="list",
         summary="Append one or multiple elements to a list")
def rpush(txn: Txn, args: list[bytes]):
    return _push(txn, args, False, False)


@command("lpushx", -3, (WRITE, DENYOOM, FAST), group="list",
         summary="Prepend an element to a list, only if the list exists")
def lpushx(txn: Txn, args: list[bytes]):
    return _push(txn, args, True, True)


@command("rpushx", -3, (WRITE, DENYOOM, FAST), group="list",
         summary="Append an element to a list, only if the list exists")
def rpushx(txn: Txn, args: list[bytes]):
    return _push(txn, args, False, True)


# -- pop ----------------------------------------------------------------------------

def _pop(txn: Txn, args: list[bytes], left: bool):
    if len(args) > 2:
        raise wrong_arity("lpop" if left else "rpop")
    has_count = len(args) == 2
    count = 1
    if has_count:
        count = parse_int(args[1], _POSITIVE)
        if count < 0:
            raise RespError(_POSITIVE)
    lst = ListView.open(txn, args[0])
    if lst is None:
        return NULL_ARRAY if has_count else None
    if not has_count:
        out = lst.pop(1, left)
        lst.save()
        return out[0]
    if count == 0:
        return []
    out = lst.pop(count, left)
    lst.save()
    return out


@command("lpop", -2, (WRITE, FAST), group="list",
         summary="Remove and get the first elements in a list")
def lpop(txn: Txn, args: list[bytes]):
    return _pop(txn, args, True)


@command("rpop", -2, (WRITE, FAST), group="list",
         summary="Remove and get the last elements in a list")
def rpop(txn: Txn, args: list[bytes]):
    return _pop(txn, args, False)


# -- reads --------------------------------------------------------------------------

@command("llen", 2, (READONLY, FAST), group="list", summary="Get the length of a list")
def llen(txn: Txn, args: list[bytes]):
    meta = lookup_as(txn, args[0], T_LIST)
    return 0 if meta is None else meta.count


@command("lindex", 3, (READONLY,), group="list",
         summary="Get an element from a list by its index")
def lindex(txn: Txn, args: list[bytes]):
    lst = ListView.open(txn, args[0])
    if lst is None:
        return None
    index = parse_int(args[1])
    if index < 0:
        index += lst.size
    if not 0 <= index < lst.size:
        return None
    return lst.get(index)


@command("lrange", 4, (READONLY,), group="list",
         summary="Get a range of elements from a list")
def lrange(txn: Txn, args: list[bytes]):
    start, end = parse_int(args[1]), parse_int(args[2])
    lst = ListView.open(txn, args[0])
    if lst is None:
        return []
    lo, hi = clamp_range(start, end, lst.size)
    return lst.values(lo, hi)


@command("lpos", -3, (READONLY,), group="list",
         summary="Return the index of matching elements on a list")
def lpos(txn: Txn, args: list[bytes]):
    element = args[1]
    rank, count, maxlen = 1, None, 0
    i = 2
    while i < len(args):
        opt = args[i].upper()
        more = i + 1 < len(args)
        if opt == b"RANK" and more:
            rank = parse_int(args[i + 1])
            if rank == 0:
                raise RespError(_RANK_ZERO)
        elif opt == b"COUNT" and more:
            count = parse_int(args[i + 1], "ERR COUNT can't be negative")
            if count < 0:
                raise RespError("ERR COUNT can't be negative")
        elif opt == b"MAXLEN" and more:
            maxlen = parse_int(args[i + 1], "ERR MAXLEN can't be negative")
            if maxlen < 0:
                raise RespError("ERR MAXLEN can't be negative")
        else:
            raise RespError(SYNTAX)
        i += 2
    lst = ListView.open(txn, args[0])
    if lst is None:
        return None if count is None else []
    from_head = rank > 0
    # Redis negates the rank in a C long: LONG_MIN stays negative, so the first match
    # from the tail already qualifies.
    skip = 0 if rank == -(1 << 63) else abs(rank) - 1
    limit = lst.size if maxlen == 0 else min(maxlen, lst.size)
    if from_head:
        it = lst.txn.iterate(lst.key(0), lst.key(limit))
    else:
        it = txn.iterate(lst.key(lst.size - limit), lst.key(lst.size), reverse=True)
    found: list[int] = []
    for n, (_, value) in enumerate(it):
        if value != element:
            continue
        if skip:
            skip -= 1
            continue
        found.append(n if from_head else lst.size - 1 - n)
        if count is None or (count and len(found) >= count):
            break
    if count is None:
        return found[0] if found else None
    return found


# -- in-place updates ---------------------------------------------------------------

@command("lset", 4, (WRITE, DENYOOM), group="list",
         summary="Set the value of an element in a list by its index")
def lset(txn: Txn, args: list[bytes]):
    lst = ListView.open(txn, args[0])
    if lst is None:
        raise RespError(NO_SUCH_KEY)
    index = parse_int(args[1])
    value = check_value(args[2])
    if index < 0:
        index += lst.size
    if not 0 <= index < lst.size:
        raise RespError(OUT_OF_RANGE)
    lst.set(index, value)
    return OK


@command("ltrim", 4, (WRITE,), group="list", summary="Trim a list to the specified range")
def ltrim(txn: Txn, args: list[bytes]):
    start, end = parse_int(args[1]), parse_int(args[2])
    lst = ListView.open(txn, args[0])
    if lst is None:
        return OK
    lo, hi = clamp_range(start, end, lst.size)
    if hi - lo == lst.size:
        return OK
    for i in range(0, lo):
        txn.delete(lst.key(i))
    for i in range(max(hi, lo), lst.size):
        txn.delete(lst.key(i))
    lst.head += lo
    lst.size = hi - lo
    lst.save()
    return OK


@command("lrem", 4, (WRITE,), group="list", summary="Remove elements from a list")
def lrem(txn: Txn, args: list[bytes]):
    count = parse_int(args[1])
    element = args[2]
    lst = ListView.open(txn, args[0])
    if lst is None:
        return 0
    old = lst.values(0, lst.size)
    limit = abs(count) if count else len(old)
    removed = 0
    keep = [True] * len(old)
    order = range(len(old)) if count >= 0 else range(len(old) - 1, -1, -1)
    for i in order:
        if old[i] == element:
            keep[i] = False
            removed += 1
            if removed == limit:
                break
    if removed:
        lst.rewrite([v for v, k in zip(old, keep) if k], old)
        lst.save()
    return removed


@command("linsert", 5, (WRITE, DENYOOM), group="list",
         summary="Insert an element before or after another element in a list")
def linsert(txn: Txn, args: list[bytes]):
    where = args[1].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise RespError(SYNTAX)
    pivot, value = args[2], check_value(args[3])
    lst = ListView.open(txn, args[0])
    if lst is None:
        return 0
    pos = None
    for n, (_, v) in enumerate(txn.iterate(lst.key(0), lst.key(lst.size))):
        if v == pivot:
            pos = n
            break
    if pos is None:
        return -1
    at = pos if where == b"BEFORE" else pos + 1
    if at < lst.size - at:
        # Shift [0, at) one step left.
        moved = lst.values(0, at)
        lst.head -= 1
        for i, v in enumerate(moved):
            lst.set(i, v)
    else:
        moved = lst.values(at, lst.size)
        for i, v in enumerate(moved):
            lst.set(at + 1 + i, v)
    lst.set(at, value)
    lst.size += 1
    lst.save()
    return lst.size


# -- two keys -----------------------------------------------------------------------

def _where(raw: bytes) -> bool:
    w = raw.upper()
    if w == b"LEFT":
        return True
    if w == b"RIGHT":
        return False
    raise RespError(SYNTAX)


def _move(txn: Txn, src: bytes, dst: bytes, from_left: bool, to_left: bool):
    source = ListView.open(txn, src)
    if source is None:
        return None
    if dst == src:
        target = source
    else:
        target = ListView.open(txn, dst, create=True)
    value = source.pop(1, from_left)[0]
    target.push(value, to_left)
    if target is not source:
        source.save()
    target.save()
    return value


@command("lmove", 5, (WRITE, DENYOOM), route=Route.SAME_PARTITION, last_key=2,
         group="list", since="6.2.0",
         summary="Pop an element from a list, push it to another list and return it")
def lmove(txn: Txn, args: list[bytes]):
    from_left = _where(args[2])
    to_left = _where(args[3])
    return _move(txn, args[0], args[1], from_left, to_left)


@command("rpoplpush", 3, (WRITE, DENYOOM), route=Route.SAME_PARTITION, last_key=2,
         group="list", since="1.2.0",
         summary="Remove the last element in a list, prepend it to another list and return it")
def rpoplpush(txn: Txn, args: list[bytes]):
    return _move(txn, args[0], args[1], False, True)
