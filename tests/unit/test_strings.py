"""String handlers through the partition harness: expiry at exact boundaries, size
limits, ZanRedisDB extensions, MULTI_KEY declarations and merges, long double maths."""

from fractions import Fraction

import pytest

from tests.support.harness import Err
from zan.commands.longdouble import add_long_double, format_long_double, parse_long_double
from zan.commands.merge import merge_ok, merge_positional, merge_sum
from zan.commands.table import REGISTRY, Route
from zan.errors import RespError
from zan.resp.types import OK
from zan.store.keyspace import MAX_VALUE

SIZE_ERR = Err("ERR invalid value size")


def test_px_expiry_boundary(part):
    part.call("set", "k", "v", "PX", "100")
    part.advance(99)
    assert part.call("get", "k") == b"v"
    assert part.call("pttl", "k") == 1
    part.advance(1)
    assert part.call("get", "k") is None
    assert part.call("pttl", "k") == -2


def test_exat_pxat_and_keepttl(part):
    now = part.now_ms
    part.call("set", "k", "v", "PXAT", str(now + 5000))
    assert part.call("pexpiretime", "k") == now + 5000
    part.call("set", "k", "v2", "KEEPTTL")
    assert part.call("pexpiretime", "k") == now + 5000
    part.call("set", "k", "v3")
    assert part.call("ttl", "k") == -1
    part.call("set", "k", "v", "EXAT", str(now // 1000 + 10))
    assert part.call("expiretime", "k") == now // 1000 + 10
    # A deadline already past deletes the key; GET still returns the old value.
    assert part.call("set", "k", "v4", "PXAT", str(now), "GET") == b"v"
    assert part.call("exists", "k") == 0


def test_getex_and_setex(part):
    part.call("setex", "k", "10", "v")
    assert part.call("ttl", "k") == 10
    assert part.call("getex", "k", "PX", "500") == b"v"
    assert part.call("pttl", "k") == 500
    assert part.call("getex", "k", "PERSIST") == b"v"
    assert part.call("ttl", "k") == -1
    assert part.call("getex", "k", "PXAT", str(part.now_ms)) == b"v"
    assert part.call("get", "k") is None
    part.call("psetex", "k", "1", "v")
    part.advance(1)
    assert part.call("get", "k") is None


def test_append_incr_setrange_setbit_keep_ttl(part):
    part.call("set", "k", "1", "EX", "100")
    for argv in (("append", "k", "0"), ("incr", "k"), ("incrbyfloat", "k", "0.5"),
                 ("setrange", "k", "0", "2"), ("setbit", "k", "1", "1")):
        part.call(*argv)
        assert part.call("ttl", "k") == 100, argv
    part.call("getset", "k", "x")
    assert part.call("ttl", "k") == -1


def test_value_size_limits(part):
    assert part.ncall("set", "k", b"x" * (MAX_VALUE + 1)) == SIZE_ERR
    part.call("set", "k", b"x" * (MAX_VALUE - 1))
    assert part.call("append", "k", "y") == MAX_VALUE
    assert part.ncall("append", "k", "y") == SIZE_ERR
    assert part.ncall("setrange", "k2", str(MAX_VALUE), "a") == SIZE_ERR
    assert part.call("setrange", "k2", str(MAX_VALUE - 1), "a") == MAX_VALUE
    assert part.ncall("setbit", "k3", str(MAX_VALUE * 8), "1") == SIZE_ERR
    assert part.call("setbit", "k3", str(MAX_VALUE * 8 - 1), "1") == 0
    assert part.call("strlen", "k3") == MAX_VALUE
    # Redis's own offset limit is checked first, with its own text.
    assert part.ncall("setbit", "k3", str(2 ** 32), "1") == Err(
        "ERR bit offset is not an integer or out of range")
    assert part.call("getbit", "k3", str(2 ** 32 - 1)) == 0
    assert part.call("exists", "k4") == 0 and part.call("setrange", "k4", "99999999", "") == 0


def test_incrby_overflow(part):
    part.call("set", "n", str(2 ** 63 - 2))
    assert part.call("incr", "n") == 2 ** 63 - 1
    assert part.ncall("incr", "n") == Err("ERR increment or decrement would overflow")
    assert part.ncall("incrby", "n", str(-(2 ** 63))) == -1
    part.call("set", "n", str(-(2 ** 63)))
    assert part.ncall("decr", "n") == Err("ERR increment or decrement would overflow")


def test_setifeq_delifeq(part):
    assert part.call("setifeq", "k", "a", "b") == 0
    assert part.call("exists", "k") == 0
    part.call("set", "k", "a")
    assert part.call("setifeq", "k", "x", "b") == 0
    assert part.call("setifeq", "k", "a", "b", "EX", "30") == 1
    assert part.call("get", "k") == b"b" and part.call("ttl", "k") == 30
    assert part.call("setifeq", "k", "b", "c") == 1
    assert part.call("ttl", "k") == -1
    assert part.ncall("setifeq", "k", "c", "d", "EX") == Err("ERR syntax error")
    assert part.ncall("setifeq", "k", "c", "d", "EX", "0") == Err(
        "ERR invalid expire time in 'setifeq' command")
    assert part.call("delifeq", "k", "x") == 0
    assert part.call("delifeq", "k", "c") == 1
    assert part.call("exists", "k") == 0
    part.call("rpush", "l", "a")
    assert part.ncall("setifeq", "l", "a", "b").startswith("WRONGTYPE")
    assert part.ncall("delifeq", "l", "a").startswith("WRONGTYPE")


def test_stale_get_is_get():
    spec = REGISTRY["stale.get"]
    assert spec.allow_stale and spec.handler is REGISTRY["get"].handler
    assert not REGISTRY["get"].allow_stale


def test_multi_key_declarations():
    for name, step in (("mget", 1), ("mset", 2), ("del", 1), ("exists", 1), ("unlink", 1),
                       ("touch", 1)):
        spec = REGISTRY[name]
        assert spec.route is Route.MULTI_KEY and spec.merge is not None, name
        assert (spec.first_key, spec.last_key, spec.key_step) == (1, -1, step), name
    assert list(REGISTRY["mset"].key_positions(7)) == [1, 3, 5]
    assert REGISTRY["msetnx"].route is Route.SAME_PARTITION


def test_split_mget_matches_whole(part):
    part.call("mset", "a", "1", "b", "2", "d", "4")
    part.call("rpush", "l", "x")
    keys = ["a", "b", "c", "l", "d", "a"]
    whole = part.call("mget", *keys)
    groups = {0: [0, 2, 5], 1: [1, 3], 2: [4]}
    parts = [(pos, part.call("mget", *[keys[i] for i in pos])) for pos in groups.values()]
    assert merge_positional(parts, len(keys)) == whole == [b"1", b"2", None, None, b"4", b"1"]


def test_split_del_exists_match_whole(part):
    part.call("mset", "a", "1", "b", "2")
    keys = ["a", "b", "c", "a"]
    parts = [([0, 3], part.call("exists", "a", "a")), ([1, 2], part.call("exists", "b", "c"))]
    assert merge_sum(parts, 4) == part.call("exists", *keys) == 3
    parts = [([0, 3], part.call("del", "a", "a")), ([1, 2], part.call("del", "b", "c"))]
    assert merge_sum(parts, 4) == 2


def test_merges_report_errors_and_ok():
    err = RespError("ERR boom")
    assert merge_sum([([0], 1), ([1], err)], 2) is err
    assert merge_positional([([1], err), ([0], [b"x"])], 2) is err
    assert merge_ok([([0, 1], OK), ([2], OK)], 3) == OK
    assert merge_ok([([0], OK), ([1], err)], 2) is err
    with pytest.raises(ValueError):
        merge_positional([([0, 1], [b"x"])], 2)


@pytest.mark.parametrize("a, b, expected", [
    ("10.5", "0.1", b"10.6"), ("0.1", "0.2", b"0.3"), ("5.0e3", "2.0e2", b"5200"),
    ("1", "-1", b"0"), ("-0.1", "0.1", b"0"), ("3", "1e-20", b"3"),
    # Beyond double range, still exact in long double.
    ("0x1p1023", "0x1p1023", str(2 ** 1024).encode()),
    ("0x1p-2", "0x.8p0", b"0.75"),
])
def test_long_double_formatting(a, b, expected):
    assert format_long_double(add_long_double(parse_long_double(a.encode()),
                                              parse_long_double(b.encode()))) == expected


def test_long_double_precision_is_64_bits():
    # 2**64 + 1 is not representable in 64 significant bits; 2**63 + 1 is.
    assert parse_long_double(b"18446744073709551617") == Fraction(2 ** 64)
    assert parse_long_double(b"9223372036854775809") == Fraction(2 ** 63 + 1)
    for bad in (b"", b"nan", b"1e5000", b"1e-5000", b"0x", b"1e", b" 1", b"1\x00"):
        with pytest.raises(RespError, match="not a valid float"):
            parse_long_double(bad)
