"""ZanRedisDB's stale reads of expired values, plset and setbitv2 through the partition
harness, and its batch limit (max_batch_elements) on collection and multi-key reads."""

import pytest

from tests.support.harness import Err, PartitionHarness
from zan.store.keyspace import KeyspaceOptions

LIMIT = Err("ERR the batch size exceed the limit")


def test_stale_reads_of_expired_values(part):
    part.call("set", "k", "v", "PX", "100")
    part.call("hset", "h", "a", "1", "b", "2")
    part.call("pexpire", "h", "100")
    part.advance(200)
    assert part.ncall("get", "k") is None
    assert part.ncall("stale.getexpired", "k") == b"v"
    assert part.ncall("hgetall", "h") == []
    assert part.ncall("stale.hgetall.expired", "h") == [b"a", b"1", b"b", b"2"]
    assert part.ncall("stale.hmget.expired", "h", "b", "zz") == [b"2", None]
    assert part.ncall("stale.getexpired", "missing") is None


def test_plset_and_setbitv2(part):
    assert part.ncall("plset", "a", "1", "b", "2") == b"OK"
    assert part.ncall("mget", "a", "b") == [b"1", b"2"]
    assert part.ncall("plset", "a", "1", "b") == Err(
        "ERR wrong number of arguments for 'plset' command")
    assert part.ncall("setbitv2", "bm", "7", "1") == 0
    assert part.ncall("get", "bm") == b"\x01"
    assert part.ncall("bitclear", "bm") == 1
    assert part.ncall("exists", "bm") == 0


@pytest.fixture
def limited(tmp_path):
    h = PartitionHarness(str(tmp_path / "db"), options=KeyspaceOptions(max_batch_elements=3))
    yield h
    h.engine.close()


def test_the_batch_limit(limited):
    limited.call("hset", "h", "a", "1", "b", "2", "c", "3")
    assert limited.ncall("hgetall", "h") == [b"a", b"1", b"b", b"2", b"c", b"3"]
    limited.call("hset", "h", "d", "4")
    assert limited.ncall("hgetall", "h") == LIMIT
    assert limited.ncall("hkeys", "h") == LIMIT
    assert limited.ncall("hmget", "h", "a", "b") == [b"1", b"2"]
    assert limited.ncall("hmget", "h", "a", "b", "c", "d") == LIMIT
    limited.call("rpush", "l", "1", "2", "3", "4")
    assert limited.ncall("lrange", "l", "0", "2") == [b"1", b"2", b"3"]
    assert limited.ncall("lrange", "l", "0", "-1") == LIMIT
    limited.call("zadd", "z", "1", "a", "2", "b", "3", "c")
    assert limited.ncall("zrange", "z", "0", "-1", "WITHSCORES") == [
        b"a", b"1", b"b", b"2", b"c", b"3"]
    assert limited.ncall("mget", "a", "b", "c", "d") == LIMIT
    # Pages of a scan stay within it.
    assert limited.ncall("hlen", "h") == 4


def test_stale_getversion_is_the_write_time_in_nanoseconds(part):
    assert part.ncall("stale.getversion", "k") is None
    part.call("set", "k", "v")
    assert part.ncall("stale.getversion", "k") == part.now_ms * 1_000_000
    part.advance(5)
    part.call("append", "k", "w")
    assert part.ncall("stale.getversion", "k") == part.now_ms * 1_000_000
    part.advance(5)
    part.call("set", "k", "again")          # the plain SET's own apply path
    assert part.ncall("stale.getversion", "k") == part.now_ms * 1_000_000
    part.call("hset", "h", "f", "v")
    assert part.ncall("stale.getversion", "h") == Err(
        "WRONGTYPE Operation against a key holding the wrong kind of value")
