"""Key-space handlers: expiry boundaries, policies, type-scoped extensions, scans."""

import pytest

from tests.support.harness import Err, PartitionHarness
from zan.store.keyspace import LOCAL_DELETION, KeyspaceOptions

REFUSED = Err("ERR change ttl is not supported in current expire policy")


@pytest.fixture
def local(tmp_path):
    h = PartitionHarness(str(tmp_path / "local"),
                         options=KeyspaceOptions(expiration_policy=LOCAL_DELETION))
    try:
        yield h
    finally:
        h.close()


def _make_all_types(p):
    p.call("set", "str", "v")
    p.call("hset", "hash", "f", "v")
    p.call("rpush", "list", "a")
    p.call("sadd", "set", "m")
    p.call("zadd", "zset", "1", "m")


def test_expire_boundaries_and_values(part):
    now = part.now_ms
    part.call("set", "k", "v")
    assert part.call("pexpire", "k", "1500") == 1
    assert part.call("pttl", "k") == 1500
    assert part.call("ttl", "k") == 2            # rounded like Redis: (ms + 500) / 1000
    assert part.call("pexpiretime", "k") == now + 1500
    assert part.call("expiretime", "k") == (now + 1500 + 500) // 1000
    part.advance(1499)
    assert part.call("pttl", "k") == 1 and part.call("ttl", "k") == 0
    part.advance(1)
    assert part.call("exists", "k") == 0 and part.call("ttl", "k") == -2
    assert part.call("type", "k") == b"none"


def test_expire_collections_and_recreate_empty(part):
    part.call("hset", "h", "a", "1", "b", "2")
    assert part.call("expire", "h", "1") == 1
    part.advance(1000)
    assert part.call("exists", "h") == 0
    part.call("hset", "h", "c", "3")
    assert part.call("hgetall", "h") == [b"c", b"3"]
    assert part.call("ttl", "h") == -1


def test_expire_in_the_past_deletes(part):
    _make_all_types(part)
    for k in ("str", "hash", "list", "set", "zset"):
        assert part.call("expireat", k, "1") == 1
        assert part.call("exists", k) == 0
    part.call("set", "k", "v")
    assert part.call("pexpire", "k", "0") == 1 and part.call("exists", "k") == 0


def test_expire_options(part):
    part.call("set", "k", "v")
    assert part.call("expire", "k", "100", "XX") == 0
    assert part.call("expire", "k", "100", "GT") == 0     # no TTL counts as infinite
    assert part.call("expire", "k", "100", "LT") == 1
    assert part.call("expire", "k", "50", "GT") == 0
    assert part.call("expire", "k", "200", "gt") == 1
    assert part.call("expire", "k", "300", "NX") == 0
    assert part.call("ttl", "k") == 200
    assert part.ncall("expire", "k", "1", "NX", "GT") == Err(
        "ERR NX and XX, GT or LT options at the same time are not compatible")
    assert part.ncall("expire", "k", "1", "bogus") == Err("ERR Unsupported option bogus")


def test_del_exists_type_on_every_type(part):
    _make_all_types(part)
    assert [part.call("type", k) for k in ("str", "hash", "list", "set", "zset")] == \
        [b"string", b"hash", b"list", b"set", b"zset"]
    assert part.call("exists", "str", "hash", "list", "set", "zset", "nope") == 5
    assert part.call("del", "str", "hash", "list", "set", "zset", "nope") == 5
    assert part.call("exists", "str", "hash", "list", "set", "zset") == 0


@pytest.mark.parametrize("p, key, other", [
    ("h", "hash", "str"), ("l", "list", "hash"), ("s", "set", "list"), ("z", "zset", "set"),
    ("b", "str", "zset")])
def test_type_scoped_commands(part, p, key, other):
    _make_all_types(part)
    # The other type behaves as missing.
    assert part.call(p + "keyexist", other) == 0
    assert part.call(p + "ttl", other) == -2
    assert part.call(p + "expire", other, "10") == 0
    assert part.call(p + "persist", other) == 0
    assert part.call(p + "clear", other) == 0
    assert part.call("exists", other) == 1
    # The own type.
    assert part.call(p + "keyexist", key) == 1
    assert part.call(p + "ttl", key) == -1
    assert part.call(p + "expire", key, "10") == 1
    assert part.call(p + "ttl", key) == 10
    assert part.call(p + "persist", key) == 1
    assert part.call(p + "ttl", key) == -1
    assert part.call(p + "persist", key) == 0
    assert part.call(p + "expire", key, "1") == 1
    part.advance(1000)
    assert part.call(p + "keyexist", key) == 0
    assert part.call(p + "ttl", key) == -2
    assert part.call(p + "clear", key) == 0
    assert part.ncall(p + "expire", key) == Err(f"ERR wrong number of arguments for '{p}expire' command")


def test_bclear_and_bitclear(part):
    part.call("setbit", "b", "3", "1")
    assert part.call("bclear", "b") == 1
    part.call("setbit", "b", "3", "1")
    assert part.call("bitclear", "b") == 1 and part.call("exists", "b") == 0


def test_local_deletion_policy(local):
    local.call("set", "k", "v")
    assert local.call("expire", "k", "1") == 1
    assert local.call("ttl", "k") == -1 and local.call("pttl", "k") == -1
    assert local.call("expiretime", "k") == -1
    assert local.ncall("expire", "k", "100") == REFUSED
    assert local.ncall("persist", "k") == REFUSED
    assert local.ncall("getex", "k", "PERSIST") == REFUSED
    assert local.call("expire", "k", "100", "NX") == 0
    # The first TTL survives rewrites.
    local.call("set", "k", "v2", "EX", "500")
    local.call("set", "k", "v3")
    assert local.call("httl", "k") == -2
    local.advance(5000)
    # Expired but not swept: still visible.
    assert local.call("get", "k") == b"v3" and local.call("exists", "k") == 1
    assert local.call("ttl", "k") == -1
    # Keys without a TTL behave normally; PERSIST without a TTL is a no-op.
    local.call("set", "n", "v")
    assert local.call("persist", "n") == 0
    assert local.call("ttl", "missing") == -2
    local.call("hset", "h", "f", "v")
    assert local.call("hexpire", "h", "10") == 1
    assert local.call("httl", "h") == -1
    assert local.ncall("hpersist", "h") == REFUSED


def test_scan_pages_match_type_and_expiry(part):
    for i in range(12):
        part.call("set", f"s{i:02d}", "v")
    part.call("hset", "h1", "f", "v")
    part.call("sadd", "set1", "m")
    part.call("set", "gone", "v", "PX", "10")
    part.advance(10)
    token, keys = part.call_raw("scan", "0", "COUNT", "5")
    assert len(keys) == 5 and token != b"0"
    seen = list(keys)
    while token != b"0":
        token, keys = part.call_raw("scan", token, "COUNT", "5")
        seen += keys
    assert sorted(seen) == sorted([f"s{i:02d}".encode() for i in range(12)] + [b"h1", b"set1"])
    assert part.call_raw("scan", "0", "TYPE", "hash", "COUNT", "100") == [b"0", [b"h1"]]
    assert part.call_raw("scan", "0", "TYPE", "HASH", "COUNT", "100") == [b"0", [b"h1"]]
    assert part.call_raw("scan", "0", "TYPE", "nosuch", "COUNT", "100") == [b"0", []]
    assert part.call_raw("scan", "0", "MATCH", "s0*", "COUNT", "100")[1] == \
        [f"s{i:02d}".encode() for i in range(10)]
    assert part.ncall("scan", "0", "COUNT", "0") == Err("ERR syntax error")
    assert part.ncall("scan", "0", "COUNT", "x") == Err("ERR value is not an integer or out of range")
    assert part.ncall("scan", "0", "MATCH") == Err("ERR syntax error")
    # Exactly COUNT keys left: the scan still ends on that page.
    assert part.call_raw("scan", "0", "COUNT", "14")[0] == b"0"


def test_scan_key_named_zero(part):
    part.call("set", "0", "v")
    part.call("set", "1", "v")
    token, keys = part.call_raw("scan", "0", "COUNT", "1")
    assert keys == [b"0"] and token != b"0"
    assert part.call_raw("scan", token, "COUNT", "1") == [b"0", [b"1"]]


def test_advscan(part):
    for i in range(5):
        part.call("set", f"t1:k{i}", "v")
    part.call("hset", "t1:h", "f", "v")
    part.call("set", "t2:k0", "v")
    part.call("set", "t0:k9", "v")
    cursor, keys = part.call("advscan", "t1:", "KV", "COUNT", "3")
    assert keys == [b"t1:k0", b"t1:k1", b"t1:k2"] and cursor == b"k2"
    cursor, keys = part.call("advscan", b"t1:" + cursor, "kv", "COUNT", "3")
    assert keys == [b"t1:k3", b"t1:k4"] and cursor == b""
    assert part.call("advscan", "t1:", "HASH") == [b"", [b"t1:h"]]
    assert part.call("advscan", "t1:", "KV", "MATCH", "k[13]") == [b"", [b"t1:k1", b"t1:k3"]]
    assert part.call("advscan", "t1:", "ZSET") == [b"", []]
    assert part.ncall("advscan", "t1:", "JSON") == Err("ERR invalid scan type")
    assert part.ncall("advscan", "notable", "KV") == Err("ERR invalid table name")
    assert part.ncall("advscan", "t1:", "KV", "COUNT", "0") == Err("ERR syntax error")
