"""String and bitmap commands against a real redis-server 7.0: fixed edge cases, then
seeded random command sequences, every reply compared after `normalize`."""

import random

import pytest

from tests.support.harness import normalize

KEYS = ["s1", "s2", "num", "flt", "bits", "lst", "missing"]


def _check(part, redis, argv):
    ours = part.ncall(*argv)
    theirs = normalize(redis.call(*argv))
    assert ours == theirs, argv
    return ours


EDGE_CASES = [
    # SET options
    ("set", "k", "v", "EX", "10", "EX", "20"), ("ttl", "k"),
    ("set", "k", "v", "PX", "100", "EX", "20"), ("set", "k", "v", "KEEPTTL", "EX", "5"),
    ("set", "k", "v", "EX", "5", "KEEPTTL"), ("set", "k", "v", "NX", "XX"),
    ("set", "k", "v", "XX", "NX"), ("set", "k", "v", "EX"), ("set", "k", "v", "PERSIST"),
    ("set", "k", "v", "EX", "-1"), ("set", "k", "v", "EX", "9223372036854775807"),
    ("set", "k", "v", "PX", "9223372036854775807"), ("set", "k", "v", "EXAT", "9223372036854776"),
    ("set", "k", "v", "PXAT", "1"), ("get", "k"), ("set", "k", "v2", "GET", "NX"),
    ("set", "k", "v3", "GET"), ("set", "k", "v4", "GET", "XX", "KEEPTTL"), ("ttl", "k"),
    ("set", "k", "v", "ex", "100"), ("set", "k", "v", "KEEPTTL"), ("ttl", "k"),
    ("set", "k", "v"), ("ttl", "k"),
    ("lpush", "L", "a"), ("set", "L", "x", "GET"), ("get", "L"), ("set", "L", "x"), ("get", "L"),
    # SETEX / PSETEX / SETNX / GETSET / GETDEL / GETEX
    ("setex", "k", "0", "v"), ("setex", "k", "abc", "v"), ("setex", "k", "10", "v"), ("ttl", "k"),
    ("psetex", "k", "-5", "v"), ("psetex", "k", "150000", "v"), ("ttl", "k"),
    ("setnx", "k", "x"), ("setnx", "nk", "x"), ("getset", "k", "y"), ("ttl", "k"),
    ("getset", "nope", "y"), ("getdel", "nope2"), ("getdel", "k"), ("exists", "k"),
    ("lpush", "L2", "a"), ("getset", "L2", "x"), ("getdel", "L2"),
    ("getex", "missing", "EX", "abc"), ("getex", "nk", "EX", "abc"), ("getex", "L2", "EX", "abc"),
    ("getex", "nk", "EX", "10", "PX", "5"), ("getex", "nk", "PERSIST", "EX", "5"),
    ("getex", "nk", "EX", "5", "PERSIST"), ("getex", "nk", "KEEPTTL"), ("getex", "nk", "NX"),
    ("getex", "nk", "EX", "100"), ("ttl", "nk"), ("getex", "nk", "PERSIST"), ("ttl", "nk"),
    ("getex", "nk", "PXAT", "1"), ("exists", "nk"), ("getex", "nk", "EX", "0"),
    # MGET / MSET / MSETNX
    ("mset", "a", "1", "b"), ("msetnx", "a", "1", "b"), ("mset", "a", "1", "b", "2"),
    ("mget", "a", "b", "L2", "zz"), ("msetnx", "a", "1", "c", "3"), ("msetnx", "c", "3", "d", "4"),
    ("mget", "c", "d"),
    # APPEND / STRLEN / GETRANGE / SETRANGE
    ("append", "ap", "hello"), ("append", "ap", " world"), ("strlen", "ap"), ("strlen", "L2"),
    ("append", "L2", "x"), ("getrange", "ap", "0", "-1"), ("getrange", "ap", "-3", "-1"),
    ("getrange", "ap", "-1", "-3"), ("getrange", "ap", "5", "2"), ("getrange", "ap", "-100", "2"),
    ("getrange", "ap", "3", "1000"), ("getrange", "missing", "a", "1"), ("getrange", "ap", "a", "1"),
    ("substr", "ap", "1", "3"), ("getrange", "L2", "0", "1"), ("setrange", "L2", "-1", "a"),
    ("setrange", "ap", "-1", "x"), ("setrange", "missing", "0", ""), ("exists", "missing"),
    ("setrange", "ap", "2", ""), ("setrange", "ap", "20", "Z"), ("get", "ap"),
    ("setrange", "sr", "3", "ab"), ("get", "sr"), ("setrange", "ap", "x", "y"),
    ("set", "e", ""), ("getrange", "e", "0", "-1"), ("strlen", "e"),
    # counters
    ("incr", "n"), ("incrby", "n", "10"), ("decr", "n"), ("decrby", "n", "5"),
    ("decrby", "n", "-9223372036854775808"), ("incrby", "n", "abc"), ("incrby", "L2", "1"),
    ("set", "big", "9223372036854775807"), ("incr", "big"), ("incrby", "big", "-1"),
    ("set", "small", "-9223372036854775808"), ("decr", "small"), ("incrby", "small", "-1"),
    ("set", "sp", " 1"), ("incr", "sp"), ("set", "sp", "+1"), ("incr", "sp"),
    ("set", "sp", "01"), ("incr", "sp"), ("set", "sp", "-0"), ("incr", "sp"),
    ("incrby", "n", "9223372036854775808"), ("incr", "e"),
    # INCRBYFLOAT
    ("incrbyfloat", "f", "0.1"), ("incrbyfloat", "f", "10.2"), ("incrbyfloat", "f", "-10.3"),
    ("incrbyfloat", "f", "1e400"), ("incrbyfloat", "f", "inf"), ("incrbyfloat", "f", "abc"),
    ("incrbyfloat", "f", "1.5e3"), ("incrbyfloat", "f", " 1"), ("incrbyfloat", "f", "1 "),
    ("incrbyfloat", "f", "0x10"), ("incrbyfloat", "f", "+.5"), ("incrbyfloat", "f", "1e-30"),
    ("incrbyfloat", "f2", "3.0e3"), ("incrbyfloat", "f2", "5.0e3"), ("incrbyfloat", "f2", "-8000"),
    ("incrbyfloat", "f3", "1.7976931348623157e308"), ("incrbyfloat", "f3", "1.7976931348623157e308"),
    ("incrbyfloat", "f4", "1e4000"), ("incrbyfloat", "f4", "1e-4000"), ("incrbyfloat", "f4", "nan"),
    ("incrbyfloat", "f5", "0.0000000000000000001"), ("incrbyfloat", "f5", "-0"),
    ("incrbyfloat", "f6", "-0.1"), ("incrbyfloat", "f6", "0.1"), ("incrbyfloat", "f6", "."),
    ("set", "fi", "inf"), ("incrbyfloat", "fi", "1"), ("incrbyfloat", "L2", "1"),
    ("set", "fs", "abc"), ("incrbyfloat", "fs", "abc"), ("incrbyfloat", "fs", "1"),
    ("incrbyfloat", "f7", "3.14159265358979323846264338327950288"),
    ("incrbyfloat", "f8", "123456789012345678901234567890"), ("incrbyfloat", "f8", "0.5"),
    # bits
    ("setbit", "bm", "7", "1"), ("setbit", "bm", "7", "0"), ("setbit", "bm", "100", "1"),
    ("getbit", "bm", "100"), ("getbit", "bm", "4294967295"), ("getbit", "bm", "4294967296"),
    ("getbit", "bm", "-1"), ("setbit", "bm", "4294967296", "1"), ("setbit", "bm", "1", "2"),
    ("setbit", "bm", "-1", "2"), ("setbit", "bm", "1", "-1"), ("setbit", "bm", "x", "1"),
    ("setbit", "L2", "1", "1"), ("getbit", "L2", "1"), ("getbit", "missing", "3"),
    ("set", "s", "foobar"), ("bitcount", "s"), ("bitcount", "s", "1"), ("bitcount", "s", "1", "1"),
    ("bitcount", "s", "0", "-1", "BIT"), ("bitcount", "s", "5", "30", "bit"),
    ("bitcount", "s", "-5", "-1", "BIT"), ("bitcount", "s", "0", "1", "foo"),
    ("bitcount", "s", "a", "1", "foo"), ("bitcount", "s", "0", "b", "foo"),
    ("bitcount", "s", "0", "1", "byte", "x"), ("bitcount", "missing", "a", "b"),
    ("bitcount", "s", "-1", "-5"), ("bitcount", "s", "3", "1"), ("bitcount", "L2"),
    ("bitpos", "s", "1"), ("bitpos", "s", "0"), ("bitpos", "s", "2"), ("bitpos", "missing", "2"),
    ("bitpos", "missing", "0"), ("bitpos", "missing", "1"), ("bitpos", "L2", "1"),
    ("bitpos", "s", "1", "0", "1", "foo"), ("bitpos", "s", "1", "0", "b", "foo"),
    ("bitpos", "s", "1", "a"), ("bitpos", "s", "1", "2"), ("bitpos", "s", "0", "2", "-1"),
    ("bitpos", "s", "1", "7", "15", "BIT"), ("bitpos", "s", "0", "7", "15", "bit"),
    ("bitpos", "s", "1", "0", "-1", "byte", "x"),
    ("set", "ff", "\xff\xff"), ("bitpos", "ff", "0"), ("bitpos", "ff", "0", "0"),
    ("bitpos", "ff", "0", "0", "-1"), ("bitpos", "ff", "0", "3", "9", "BIT"), ("bitpos", "e", "0"),
    ("bitpos", "e", "1"), ("bitpos", "e", "0", "0"), ("bitcount", "e", "0", "-1"),
    # arity
    ("get",), ("set", "k"), ("mget",), ("mset", "a"), ("setex", "k", "1"), ("getbit", "k"),
    ("incrbyfloat", "k"), ("getex",), ("bitcount",), ("bitpos", "k"),
]


def test_edge_cases_match_redis(part, redis):
    for argv in EDGE_CASES:
        _check(part, redis, argv)


def _random_argv(rng: random.Random):
    k = rng.choice(KEYS)
    num = lambda: rng.choice(["0", "1", "-1", "5", "-7", "100", "abc", "9223372036854775807",
                              "-9223372036854775808", str(rng.randint(-50, 50))])
    val = lambda: rng.choice(["", "a", "hello", "12", "-3", "3.5", "\x00\xff", "x" * rng.randint(0, 40)])
    flt = lambda: rng.choice(["0.1", "-2.5", "1e3", "3", "abc", "1e-5", "-0.0001", "7.77"])
    choices = [
        lambda: ("set", k, val()),
        lambda: ("set", k, val(), rng.choice(["NX", "XX", "GET", "KEEPTTL"])),
        lambda: ("set", k, val(), "EX", rng.choice(["50", "200", "0", "-1"])),
        lambda: ("get", k), lambda: ("getset", k, val()), lambda: ("getdel", k),
        lambda: ("getex", k, *rng.choice([["PERSIST"], ["PX", "100000"], ["EX", "100"], ["EX", "0"], []])),
        lambda: ("setnx", k, val()), lambda: ("psetex", k, rng.choice(["30000", "300000"]), val()),
        lambda: ("mget", k, rng.choice(KEYS), rng.choice(KEYS)),
        lambda: ("mset", k, val(), rng.choice(KEYS), val()),
        lambda: ("msetnx", k, val(), rng.choice(KEYS), val()),
        lambda: ("append", k, val()), lambda: ("strlen", k),
        lambda: ("getrange", k, num(), num()), lambda: ("setrange", k, rng.choice(["0", "3", "-1", "10"]), val()),
        lambda: ("incr", k), lambda: ("decr", k), lambda: ("incrby", k, num()), lambda: ("decrby", k, num()),
        lambda: ("incrbyfloat", k, flt()),
        lambda: ("setbit", k, str(rng.randint(0, 80)), rng.choice(["0", "1", "2"])),
        lambda: ("getbit", k, str(rng.randint(-1, 90))),
        lambda: ("bitcount", k, *rng.choice([[], [num(), num()], [num(), num(), rng.choice(["BIT", "BYTE", "x"])]])),
        lambda: ("bitpos", k, rng.choice(["0", "1"]), *rng.choice([[], [num()], [num(), num()],
                                                                   [num(), num(), rng.choice(["BIT", "BYTE"])]])),
        lambda: ("lpush", "lst", "x"),
        lambda: ("ttl", k), lambda: ("exists", k),
    ]
    return rng.choice(choices)()


def _run_seed(part, redis, seed, n):
    rng = random.Random(seed)
    for i in range(n):
        argv = _random_argv(rng)
        _check(part, redis, argv)


@pytest.mark.parametrize("seed", range(4))
def test_random_sequences_match_redis(part, redis, seed):
    _run_seed(part, redis, seed, 600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 110))
def test_random_sequences_match_redis_long(part, redis, seed):
    _run_seed(part, redis, seed, 3000)


def test_bit_ranges_on_random_bitmaps_match_redis(part, redis):
    rng = random.Random(11)
    patterns = [b"", b"\x00", b"\xff", b"\x00\x00\xff", b"\xff\xff\x00", b"\x0f\xf0",
                b"\x80\x01\x00\xff"]
    for _ in range(12):
        patterns.append(bytes(rng.choice([0, 255, rng.randrange(256)]) for _ in range(rng.randint(1, 6))))
    idx = lambda: str(rng.randint(-60, 60))
    for value in patterns:
        _check(part, redis, ("set", "bm", value))
        for _ in range(60):
            unit = rng.choice([[], ["BIT"], ["BYTE"]])
            bit = rng.choice(["0", "1"])
            if unit:
                tail = [idx(), idx()] + unit
            else:
                tail = rng.choice([[], [idx()], [idx(), idx()]])
            _check(part, redis, ("bitpos", "bm", bit, *tail))
            _check(part, redis, ("bitcount", "bm", *([idx(), idx()] + unit if unit or rng.random() < .7 else [])))
