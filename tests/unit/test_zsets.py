"""Sorted-set handlers through one partition, the records they keep in step, and the
score parsers and formatter."""

from __future__ import annotations

import math
import random

import pytest

from tests.support.harness import Err
from zan.commands.zset_args import format_score, parse_score, parse_score_range
from zan.errors import RespError
from zan.store import codec
from zan.store.keyspace import Txn, lookup


def _check_invariants(part, pk: bytes) -> dict[bytes, float]:
    """Both element spaces agree with each other and with the meta count."""
    meta = lookup(Txn(part.engine, now_ms=part.now_ms), pk)
    if meta is None:
        return {}
    mp = codec.elem_prefix(codec.ZSET_ELEM, pk, meta.version)
    sp = codec.elem_prefix(codec.ZSCORE_ELEM, pk, meta.version)
    members = {k[len(mp):]: codec.decode_score(v)
               for k, v in part.engine.iterator(start=mp, stop=codec.prefix_end(mp))}
    index = {k[len(sp) + 8:]: codec.unsortable_score(k[len(sp):len(sp) + 8])
             for k in part.engine.iterator(start=sp, stop=codec.prefix_end(sp), include_value=False)}
    assert members == index
    assert meta.count == len(members)
    return members


def test_records_stay_in_step_under_random_updates(part):
    rng = random.Random(5)
    for _ in range(400):
        m = "m%d" % rng.randint(0, 15)
        cmd = rng.choice([("zadd", "z", str(rng.randint(-3, 3)), m),
                          ("zincrby", "z", "0.5", m), ("zrem", "z", m),
                          ("zadd", "z", "GT", "CH", str(rng.randint(-3, 3)), m),
                          ("zremrangebyscore", "z", "(1", "2"), ("zpopmin", "z"),
                          ("zremrangebyrank", "z", "-2", "-1")])
        assert not isinstance(part.ncall(*cmd), Err), cmd
        members = _check_invariants(part, b"z")
        assert part.ncall("zcard", "z") == len(members)


def test_ties_order_by_member_bytes_and_ranks(part):
    part.call("zadd", "z", "1", "b", "1", "a", "1", "B", "0", "z", "2", "", "1", "a\x00")
    assert part.ncall("zrange", "z", "0", "-1") == [b"z", b"B", b"a", b"a\x00", b"b", b""]
    assert part.ncall("zrank", "z", "a\x00") == 3
    assert part.ncall("zrevrank", "z", "a\x00") == 2
    assert part.ncall("zrank", "z", "nope") is None
    assert part.ncall("zrevrange", "z", "0", "1", "WITHSCORES") == [b"", b"2", b"b", b"1"]


def test_exclusive_bounds_and_limit(part):
    part.call("zadd", "z", "1", "a", "2", "b", "2", "c", "3", "d", "-inf", "n", "inf", "p")
    assert part.ncall("zrangebyscore", "z", "(1", "(3") == [b"b", b"c"]
    assert part.ncall("zrangebyscore", "z", "-inf", "+inf", "LIMIT", "1", "-1") == \
        [b"a", b"b", b"c", b"d", b"p"]
    assert part.ncall("zrevrangebyscore", "z", "2", "(-inf", "LIMIT", "1", "2") == [b"b", b"a"]
    assert part.ncall("zrangebyscore", "z", "(-inf", "(inf") == [b"a", b"b", b"c", b"d"]
    assert part.ncall("zcount", "z", "(2", "2") == 0
    assert part.ncall("zrange", "z", "(3", "-inf", "BYSCORE", "REV", "WITHSCORES") == \
        [b"c", b"2", b"b", b"2", b"a", b"1", b"n", b"-inf"]
    assert part.ncall("zrangebyscore", "z", "x", "1") == Err("ERR min or max is not a float")


def test_zadd_option_errors(part):
    assert part.ncall("zadd", "z", "NX", "XX", "1", "a") == \
        Err("ERR XX and NX options at the same time are not compatible")
    assert part.ncall("zadd", "z", "GT", "LT", "1", "a") == \
        Err("ERR GT, LT, and/or NX options at the same time are not compatible")
    assert part.ncall("zadd", "z", "INCR", "1", "a", "2", "b") == \
        Err("ERR INCR option supports a single increment-element pair")
    assert part.ncall("zadd", "z", "1", "a", "nan", "b") == Err("ERR value is not a valid float")
    assert part.ncall("zcard", "z") == 0
    assert part.ncall("zadd", "z", "XX", "1", "a") == 0
    assert part.ncall("zadd", "z", "XX", "INCR", "1", "a") is None
    assert part.ncall("zadd", "z", "inf", "a") == 1
    assert part.ncall("zincrby", "z", "-inf", "a") == Err("ERR resulting score is not a number (NaN)")
    assert part.ncall("zscore", "z", "a") == b"inf"


def test_zrangestore_replaces_any_type(part):
    part.call("zadd", "src", "1", "a", "2", "b", "3", "c")
    part.call("set", "dst", "string")
    assert part.ncall("zrangestore", "dst", "src", "(1", "+inf", "BYSCORE") == 2
    assert part.ncall("zrange", "dst", "0", "-1", "WITHSCORES") == [b"b", b"2", b"c", b"3"]
    _check_invariants(part, b"dst")
    assert part.ncall("zrangestore", "dst", "src", "5", "9") == 0
    assert part.ncall("zcard", "dst") == 0
    assert part.ncall("zrangestore", "src", "src", "0", "0") == 1
    assert part.ncall("zrange", "src", "0", "-1") == [b"a"]
    _check_invariants(part, b"src")


def test_zscan_pages_with_tokens(part):
    members = ["m%02d" % i for i in range(25)]
    part.call("zadd", "z", *[x for i, m in enumerate(members) for x in (str(i), m)])
    token, seen, pages = b"0", [], 0
    while True:
        token, items = part.ncall("zscan", "z", token, "COUNT", "7", "MATCH", "m*")
        seen += items[::2]
        pages += 1
        if token == b"0":
            break
    assert pages == 4 and sorted(seen) == [m.encode() for m in members]
    assert part.ncall("zscan", "z", "0", "COUNT", "0") == Err("ERR syntax error")
    assert part.ncall("zscan", "nokey", "0", "COUNT", "0") == [b"0", []]
    assert part.ncall("zscan", "z", "bogus") == Err("ERR invalid cursor")


def test_zrandmember_is_deterministic_per_seed(part):
    part.call("zadd", "z", *[x for i in range(20) for x in (str(i), "m%d" % i)])
    part.seed = 99
    first = part.ncall("zrandmember", "z", "5")
    part.seed = 99
    assert part.ncall("zrandmember", "z", "5") == first
    assert len(set(first)) == 5


@pytest.mark.parametrize("raw,value", [
    (b"1", 1.0), (b"-0.5", -0.5), (b"+inf", math.inf), (b"-Infinity", -math.inf),
    (b"1e308", 1e308), (b"0x10", 16.0), (b".5", 0.5), (b"5.", 5.0), (b"1e-310", 1e-310),
    (b"0e-999", 0.0),
])
def test_parse_score_accepts(raw, value):
    assert parse_score(raw) == value


@pytest.mark.parametrize("raw", [b"", b" 1", b"1 ", b"nan", b"1e309", b"1e-400", b"1_0", b"0x",
                                 b"1e", b"--1", b"inf1", b"\x00"])
def test_parse_score_rejects(raw):
    with pytest.raises(RespError):
        parse_score(raw)


def test_range_bounds_follow_strtod():
    r = parse_score_range(b"", b" 2")
    assert (r.min, r.max, r.minex, r.maxex) == (0.0, 2.0, False, False)
    r = parse_score_range(b"(", b"(1e999")
    assert (r.min, r.max, r.minex, r.maxex) == (0.0, math.inf, True, True)
    for bad in (b" ", b"(nan", b"1 ", b"x"):
        with pytest.raises(RespError):
            parse_score_range(bad, b"1")


@pytest.mark.parametrize("score,text", [
    (0.1, b"0.10000000000000001"), (1e20, b"1e+20"), (-0.0, b"-0"), (math.inf, b"inf"),
    (-math.inf, b"-inf"), (1.5e-7, b"1.4999999999999999e-07"), (3.0, b"3"),
    (123456789012345678.0, b"1.2345678901234568e+17"),
])
def test_format_score(score, text):
    assert format_score(score) == text


def test_expired_zset_is_gone_and_recreated_empty(part):
    part.call("zadd", "z", "1", "a", "2", "b")
    part.call("pexpire", "z", "100")
    part.advance(99)
    assert part.ncall("zcard", "z") == 2
    part.advance(1)
    assert part.ncall("zcard", "z") == 0
    assert part.ncall("zrange", "z", "0", "-1") == []
    assert part.ncall("zscore", "z", "a") is None
    assert part.ncall("zadd", "z", "5", "c") == 1
    assert part.ncall("zrange", "z", "0", "-1", "WITHSCORES") == [b"c", b"5"]
    assert part.ncall("zrank", "z", "c") == 0
    _check_invariants(part, b"z")
