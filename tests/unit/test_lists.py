"""List handlers through one partition: replies, and the records they leave behind."""

from __future__ import annotations

from tests.support.harness import Err
from zan.commands.lists import ListView
from zan.store import codec
from zan.store.keyspace import Txn, lookup


def _records(part, pk: bytes) -> dict[int, bytes]:
    """seq -> value of the live elements of list `pk`."""
    meta = lookup(Txn(part.engine, now_ms=part.now_ms), pk)
    prefix = codec.elem_prefix(codec.LIST_ELEM, pk, meta.version)
    return {codec.decode_list_seq(k[len(prefix):]): v
            for k, v in part.engine.iterator(start=prefix, stop=codec.prefix_end(prefix))}


def _view(part, pk: bytes) -> ListView:
    return ListView.open(Txn(part.engine, now_ms=part.now_ms), pk)


def test_push_grows_both_ways_from_zero(part):
    assert part.ncall("rpush", "l", "c", "d") == 2
    assert part.ncall("lpush", "l", "b", "a") == 4
    assert part.ncall("lrange", "l", "0", "-1") == [b"a", b"b", b"c", b"d"]
    assert _records(part, b"l") == {-2: b"a", -1: b"b", 0: b"c", 1: b"d"}
    view = _view(part, b"l")
    assert (view.head, view.size) == (-2, 4)


def test_pops_delete_their_records_and_the_empty_key(part):
    part.call("rpush", "l", "a", "b", "c")
    assert part.ncall("lpop", "l") == b"a"
    assert part.ncall("rpop", "l", "5") == [b"c", b"b"]
    assert part.ncall("llen", "l") == 0
    assert part.ncall("lpop", "l") is None
    assert part.ncall("lpop", "l", "2") is None  # null array, normalised
    assert part.call("lpop", "l", "2").__class__.__name__ == "NullArray"
    assert not [k for k in part.engine.iterator(include_value=False) if k[:1] == codec.LIST_ELEM]


def test_linsert_shifts_the_shorter_side(part):
    part.call("rpush", "l", *"abcdefgh")
    before = _records(part, b"l")
    # Near the tail: the head side must not move.
    assert part.ncall("linsert", "l", "after", "g", "X") == 9
    after = _records(part, b"l")
    assert all(after[s] == before[s] for s in range(0, 7))
    # Near the head: the tail side must not move.
    assert part.ncall("linsert", "l", "before", "b", "Y") == 10
    again = _records(part, b"l")
    assert min(again) == -1
    assert all(again[s] == after[s] for s in range(2, 9))
    assert part.ncall("lrange", "l", "0", "-1") == [b"a", b"Y", b"b", b"c", b"d", b"e", b"f",
                                                    b"g", b"X", b"h"]


def test_lrem_compacts_and_keeps_count_exact(part):
    part.call("rpush", "l", "x", "a", "x", "b", "x", "c", "x")
    assert part.ncall("lrem", "l", "-2", "x") == 2
    assert part.ncall("lrange", "l", "0", "-1") == [b"x", b"a", b"x", b"b", b"c"]
    assert part.ncall("lrem", "l", "0", "x") == 2
    assert part.ncall("lrange", "l", "0", "-1") == [b"a", b"b", b"c"]
    records = _records(part, b"l")
    view = _view(part, b"l")
    assert sorted(records) == list(range(view.head, view.head + 3))
    assert part.ncall("lrem", "l", "0", "a") == 1
    assert part.ncall("lrem", "l", "0", "b") == 1
    assert part.ncall("lrem", "l", "0", "c") == 1
    assert part.ncall("llen", "l") == 0


def test_ltrim_lset_lindex(part):
    part.call("rpush", "l", *"abcdef")
    assert part.ncall("ltrim", "l", "1", "-2") == b"OK"
    assert part.ncall("lrange", "l", "0", "-1") == [b"b", b"c", b"d", b"e"]
    assert len(_records(part, b"l")) == 4
    assert part.ncall("lset", "l", "-1", "E") == b"OK"
    assert part.ncall("lindex", "l", "-1") == b"E"
    assert part.ncall("lset", "l", "4", "x") == Err("ERR index out of range")
    assert part.ncall("lset", "nokey", "0", "x") == Err("ERR no such key")
    assert part.ncall("ltrim", "l", "5", "1") == b"OK"
    assert part.ncall("llen", "l") == 0


def test_lmove_same_key_rotates(part):
    part.call("rpush", "l", "a", "b", "c")
    assert part.ncall("lmove", "l", "l", "LEFT", "RIGHT") == b"a"
    assert part.ncall("lrange", "l", "0", "-1") == [b"b", b"c", b"a"]
    assert part.ncall("rpoplpush", "l", "m") == b"a"
    assert part.ncall("lrange", "m", "0", "-1") == [b"a"]
    part.call("set", "s", "v")
    assert part.ncall("lmove", "l", "s", "LEFT", "LEFT").startswith("WRONGTYPE")
    assert part.ncall("llen", "l") == 2  # nothing popped on error
    part.call("rpush", "one", "x")
    assert part.ncall("lmove", "one", "one", "RIGHT", "LEFT") == b"x"
    assert part.ncall("lrange", "one", "0", "-1") == [b"x"]


def test_lpos_options(part):
    part.call("rpush", "l", *"abcabca")
    assert part.ncall("lpos", "l", "a") == 0
    assert part.ncall("lpos", "l", "a", "RANK", "-1") == 6
    assert part.ncall("lpos", "l", "a", "COUNT", "0") == [0, 3, 6]
    assert part.ncall("lpos", "l", "a", "RANK", "-2", "COUNT", "2") == [3, 0]
    assert part.ncall("lpos", "l", "a", "RANK", "2", "MAXLEN", "3") is None
    assert part.ncall("lpos", "l", "a", "COUNT", "-1") == Err("ERR COUNT can't be negative")
    assert part.ncall("lpos", "nokey", "a", "COUNT", "1") == []


def test_value_size_limit(part):
    big = b"x" * ((8 << 20) + 1)
    assert part.ncall("rpush", "l", "a", big) == Err("ERR invalid value size")
    assert part.ncall("llen", "l") == 0
