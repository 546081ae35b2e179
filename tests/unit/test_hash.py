"""Hash commands through one partition's apply/read path."""

from __future__ import annotations

from zan.store import codec
from zan.store.keyspace import Txn, lookup

from tests.support.harness import CountingGets, Err, PartitionHarness


def test_hset_counts_new_fields_and_keeps_meta_count(part):
    assert part.call("hset", "h", "a", "1", "b", "2", "a", "3") == 2
    assert part.call("hget", "h", "a") == b"3"
    assert part.call("hset", "h", "b", "x", "c", "y") == 1
    assert part.call("hlen", "h") == 3
    assert part.call("hdel", "h", "a", "a", "zz") == 1
    assert part.call("hlen", "h") == 2
    assert sorted(part.ncall("hkeys", "h")) == [b"b", b"c"]


def test_hset_odd_pairs_is_an_arity_error(part):
    assert part.ncall("hset", "h", "a", "1", "b") == Err(
        "ERR wrong number of arguments for 'hset' command")
    assert part.ncall("hmset", "h", "a", "1", "b") == Err(
        "ERR wrong number of arguments for 'hmset' command")
    assert part.call("hlen", "h") == 0


def test_empty_hash_disappears(part):
    part.call("hset", "h", "a", "1")
    assert part.call("hdel", "h", "a") == 1
    assert lookup(_read_txn(part), b"h") is None
    # A new incarnation does not see fields of the old one.
    part.call("hset", "h", "b", "1")
    assert part.ncall("hgetall", "h") == [b"b", b"1"]


def test_wrongtype(part):
    part.call("set", "s", "v")
    for argv in (("hset", "s", "a", "1"), ("hget", "s", "a"), ("hgetall", "s"),
                 ("hincrby", "s", "a", "1"), ("hscan", "s", "0"), ("hrandfield", "s")):
        assert part.ncall(*argv).startswith("WRONGTYPE"), argv
    # Argument errors come before the type check, as in Redis.
    assert part.ncall("hincrby", "s", "a", "x") == Err("ERR value is not an integer or out of range")


def test_hincrby_and_overflow(part):
    assert part.call("hincrby", "h", "n", "5") == 5
    assert part.call("hincrby", "h", "n", "-7") == -2
    part.call("hset", "h", "m", "9223372036854775807")
    assert part.ncall("hincrby", "h", "m", "1") == Err("ERR increment or decrement would overflow")
    part.call("hset", "h", "s", "1.0")
    assert part.ncall("hincrby", "h", "s", "1") == Err("ERR hash value is not an integer")
    assert part.call("hget", "h", "m") == b"9223372036854775807"


def test_hincrbyfloat(part):
    assert part.call("hincrbyfloat", "h", "f", "10.5") == b"10.5"
    assert part.call("hincrbyfloat", "h", "f", "0.1") == b"10.6"
    assert part.call("hincrbyfloat", "h", "f", "-10.6") == b"0"
    assert part.call("hincrbyfloat", "h", "g", "5.0e3") == b"5000"
    assert part.ncall("hincrbyfloat", "h", "f", "inf") == Err("ERR value is NaN or Infinity")
    assert part.ncall("hincrbyfloat", "h", "f", "nan") == Err("ERR value is not a valid float")
    part.call("hset", "h", "big", "1e4932")
    assert part.ncall("hincrbyfloat", "h", "big", "1e4932") == Err(
        "ERR increment would produce NaN or Infinity")


def test_hsetnx_hstrlen_hexists_hmget(part):
    assert part.call("hsetnx", "h", "a", "1") == 1
    assert part.call("hsetnx", "h", "a", "2") == 0
    assert part.call("hget", "h", "a") == b"1"
    assert part.call("hstrlen", "h", "a") == 1
    assert part.call("hstrlen", "h", "zz") == 0
    assert part.call("hexists", "h", "a") == 1
    assert part.call("hmget", "h", "a", "zz") == [b"1", None]
    assert part.call("hmget", "nokey", "a", "b") == [None, None]


def test_field_and_value_limits(part):
    assert part.ncall("hset", "h", "f" * 10241, "v") == Err("ERR invalid sub key size")
    assert part.call("hset", "h", "f" * 10240, "v") == 1
    assert part.ncall("hset", "h", "f", b"v" * ((8 << 20) + 1)) == Err("ERR invalid value size")


def test_hrandfield_properties(part):
    fields = {b"f%d" % i: b"v%d" % i for i in range(20)}
    part.call("hset", "h", *[x for kv in fields.items() for x in kv])
    assert part.call("hrandfield", "h") in fields
    got = part.call("hrandfield", "h", "7")
    assert len(got) == len(set(got)) == 7 and set(got) <= set(fields)
    assert sorted(part.call("hrandfield", "h", "50")) == sorted(fields)
    got = part.call("hrandfield", "h", "-40", "WITHVALUES")
    assert len(got) == 80
    for f, v in zip(got[::2], got[1::2]):
        assert fields[f] == v
    assert part.call("hrandfield", "nokey") is None
    assert part.call("hrandfield", "nokey", "3") == []
    assert part.ncall("hrandfield", "h", "-9223372036854775808").startswith("ERR value is out of")
    assert part.ncall("hrandfield", "h", "9223372036854775807", "withvalues") == Err(
        "ERR value is out of range")


def test_hscan_pages_with_tokens(part):
    fields = [b"f%02d" % i for i in range(25)]
    part.call("hset", "h", *[x for f in fields for x in (f, f + b"!")])
    token, seen = b"0", []
    pages = 0
    while True:
        token, items = part.call("hscan", "h", token, "COUNT", "10")
        seen += items
        pages += 1
        if token == b"0":
            break
    assert pages == 3
    assert seen[::2] == fields and seen[1::2] == [f + b"!" for f in fields]
    token, items = part.call("hscan", "h", "0", "MATCH", "f1*", "COUNT", "100")
    assert token == b"0" and items[::2] == [f for f in fields if f.startswith(b"f1")]
    assert part.ncall("hscan", "h", "0", "COUNT", "0") == Err("ERR syntax error")
    assert part.ncall("hscan", "h", "0", "NOVALUES") == Err("ERR syntax error")
    assert part.call("hscan", "nokey", "0", "COUNT", "0") == [b"0", []]


def test_hscan_field_named_zero_does_not_end_the_scan(part):
    part.call("hset", "h", "0", "a", "1", "b")
    token, items = part.call("hscan", "h", "0", "COUNT", "1")
    assert items == [b"0", b"a"] and token != b"0"
    token, items = part.call("hscan", "h", token, "COUNT", "1")
    assert items == [b"1", b"b"] and token == b"0"


def test_expired_hash_is_gone_and_recreated_empty(part):
    part.call("hset", "h", "a", "1")
    _expire(part, b"h", part.now_ms + 100)
    part.advance(100)
    assert part.call("hlen", "h") == 0
    assert part.call("hset", "h", "b", "2") == 1
    assert part.ncall("hgetall", "h") == [b"b", b"2"]


def test_single_field_commands_cost_two_reads(part):
    """HSET of an existing hash and HGET read the meta record and the field, nothing else."""
    from zan.commands.registry import REGISTRY
    part.call("hset", "h", "a", "1")
    src = CountingGets(part.engine)
    txn = Txn(src, now_ms=part.now_ms, index=part.index + 1, writable=True)
    assert REGISTRY["hset"].handler(txn, [b"h", b"b", b"2"]) == 1
    assert src.gets == 2
    src.gets = 0
    txn = Txn(src, now_ms=part.now_ms, index=part.index + 1, writable=True)
    assert REGISTRY["hset"].handler(txn, [b"h", b"a", b"3"]) == 0
    assert src.gets == 2
    assert len(txn.changes) == 1  # the field only: the count did not change
    src.gets = 0
    txn = Txn(src, now_ms=part.now_ms)
    assert REGISTRY["hget"].handler(txn, [b"h", b"a"]) == b"1"
    assert src.gets == 2


def _read_txn(part: PartitionHarness) -> Txn:
    return Txn(part.engine, now_ms=part.now_ms)


def _expire(part: PartitionHarness, pk: bytes, at_ms: int) -> None:
    """Give `pk` a deadline straight in the meta record (the keys family may not exist)."""
    from zan.store.keyspace import store_meta
    txn = Txn(part.engine, now_ms=part.now_ms, writable=True)
    meta = lookup(txn, pk)
    meta.expire_at = at_ms
    store_meta(txn, pk, meta)
    part.engine.write(txn.changes)


def test_elements_live_under_the_codec_prefix(part):
    part.call("hset", "h", "a", "1")
    meta = lookup(_read_txn(part), b"h")
    key = codec.elem_prefix(codec.HASH_ELEM, b"h", meta.version) + b"a"
    assert part.engine.get(key) == b"1"
    assert meta.count == 1
