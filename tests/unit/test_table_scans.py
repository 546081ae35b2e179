"""ZanRedisDB's scans through the partition harness: FULLSCAN pages (every type, the
reply shapes of ZanRedisDB's merged reply), ADVREVSCAN/REVSCAN, the reverse element
scans with ZanRedisDB's string cursors, and Go's float format for scores."""

import pytest

from tests.support.harness import Err
from zan.commands.table_scans import go_float


@pytest.fixture
def filled(part):
    for i in range(5):
        part.call("set", f"t1:k{i}", f"v{i}")
    part.call("hset", "t1:h", "a", "1", "b", "2")
    part.call("rpush", "t1:l", "x", "y", "x")
    part.call("sadd", "t1:s", "m2", "m1")
    part.call("zadd", "t1:z", "1.5", "a", "1000000", "b")
    part.call("set", "t2:k0", "other table")
    part.call("set", "t0:k9", "other table")
    return part


def test_fullscan_pages_keys_with_their_values(filled):
    cursor, items = filled.call("fullscan", "t1:", "KV", "COUNT", "3")
    assert items == [[b"k0", b"v0"], [b"k1", b"v1"], [b"k2", b"v2"]] and cursor == b"k2"
    assert filled.call("fullscan", b"t1:" + cursor, "KV", "COUNT", "3") == [
        b"", [[b"k3", b"v3"], [b"k4", b"v4"]]]
    assert filled.call("fullscan", "t1:", "HASH") == [b"", [[b"h", [b"a", b"1"], [b"b", b"2"]]]]
    assert filled.call("fullscan", "t1:", "LIST") == [b"", [[b"l", b"x", b"y", b"x"]]]
    assert filled.call("fullscan", "t1:", "SET") == [b"", [[b"s", b"m1", b"m2"]]]
    assert filled.call("fullscan", "t1:", "ZSET") == [
        b"", [[b"z", [b"a", b"1.5"], [b"b", b"1e+06"]]]]
    assert filled.call("fullscan", "t1:", "KV", "MATCH", "k[13]") == [
        b"", [[b"k1", b"v1"], [b"k3", b"v3"]]]
    assert filled.ncall("fullscan", "t1:", "JSON") == Err("ERR invalid scan type")
    assert filled.ncall("fullscan", "t1", "KV") == Err("ERR invalid table name")
    assert filled.ncall("fullscan", "t1:", "KV", "COUNT", "x") == Err(
        "ERR value is not an integer or out of range")


def test_reverse_table_scans(filled):
    cursor, keys = filled.call("advrevscan", "t1:", "KV", "COUNT", "3")
    assert keys == [b"t1:k4", b"t1:k3", b"t1:k2"] and cursor == b"k2"
    assert filled.call("advrevscan", b"t1:" + cursor, "KV", "COUNT", "3") == [
        b"", [b"t1:k1", b"t1:k0"]]
    assert filled.call("revscan", "t1:", "MATCH", "k[13]") == [b"", [b"t1:k3", b"t1:k1"]]
    assert filled.call("advrevscan", "t1:", "HASH") == [b"", [b"t1:h"]]


def test_reverse_element_scans(filled):
    filled.call("hset", "t1:h", "c", "3", "d", "4")
    assert filled.call("hrevscan", "t1:h", "", "COUNT", "3") == [
        b"b", [b"d", b"4", b"c", b"3", b"b", b"2"]]
    assert filled.call("hrevscan", "t1:h", "b", "COUNT", "3") == [b"", [b"a", b"1"]]
    assert filled.call("srevscan", "t1:s", "") == [b"", [b"m2", b"m1"]]
    assert filled.call("srevscan", "t1:s", "", "MATCH", "*1") == [b"", [b"m1"]]
    assert filled.call("zrevscan", "t1:z", "") == [b"", [b"b", b"1e+06", b"a", b"1.5"]]
    assert filled.call("hrevscan", "t1:nothing", "") == [b"", []]
    assert filled.ncall("hrevscan", "t1:s", "") == Err(
        "WRONGTYPE Operation against a key holding the wrong kind of value")


@pytest.mark.parametrize("x,text", [
    (1.0, "1"), (1.5, "1.5"), (100000.0, "100000"), (1e6, "1e+06"),
    (123456789.0, "1.23456789e+08"), (0.0001, "0.0001"), (1e-5, "1e-05"), (-2.5, "-2.5"),
    (float("inf"), "+Inf"), (0.1, "0.1"),
])
def test_go_float_format(x, text):
    assert go_float(x) == text
