"""Differential: BITOP, BITFIELD, BITFIELD_RO and LCS on a standalone `twistd zan-node`
and on redis-server 7.0, over keys in different partitions of the node."""

import random

import pytest

from tests.support.differential import check, node_and_redis

pytestmark = pytest.mark.integration

KEYS = [f"b{i}" for i in range(6)] + ["lst"]
TYPES = ["i1", "u1", "i5", "u7", "i8", "u8", "i16", "u16", "i31", "u32", "i63", "u63",
         "i64", "u64", "i65", "x8", "I8", "i0", "i-3", "i"]
NUMBERS = ["0", "1", "-1", "127", "128", "-129", "255", "256", "1000", "-100000",
           "9223372036854775807", "-9223372036854775808", "4611686018427387904", "x", ""]
STRINGS = ["ohmytext", "mynewtext", "", "abc", "aXbXc", "\x00\xff", "rohmytext"]


@pytest.fixture
def pair(zan_node, redis):
    with node_and_redis(zan_node.redis_port, redis) as clients:
        yield clients


def field_op(rng):
    kind = rng.random()
    typ = rng.choice(TYPES[:14]) if rng.random() < 0.9 else rng.choice(TYPES)
    offset = rng.choice([str(rng.randint(0, 40)), f"#{rng.randint(0, 5)}", "-1", "#-1", "x"]
                        if rng.random() < 0.2 else [str(rng.randint(0, 40)), f"#{rng.randint(0, 5)}"])
    if kind < 0.3:
        return ["GET", typ, offset]
    if kind < 0.6:
        return ["SET", typ, offset, rng.choice(NUMBERS[:-2] if rng.random() < 0.9 else NUMBERS)]
    if kind < 0.9:
        return ["INCRBY", typ, offset, rng.choice(NUMBERS[:-2] if rng.random() < 0.9 else NUMBERS)]
    return ["OVERFLOW", rng.choice(["WRAP", "sat", "FAIL", "FAIL", "nope"])]


def gen_command(rng):
    k, k2 = rng.choice(KEYS), rng.choice(KEYS)
    sources = [rng.choice(KEYS) for _ in range(rng.randint(1, 3))]
    ops = [x for _ in range(rng.randint(0, 4)) for x in field_op(rng)]
    lcs_opts = rng.sample(["IDX", "LEN", "WITHMATCHLEN", "MINMATCHLEN"], rng.randint(0, 2))
    if "MINMATCHLEN" in lcs_opts:
        lcs_opts.insert(lcs_opts.index("MINMATCHLEN") + 1, rng.choice(["0", "2", "-1", "x"]))
    choices = [
        ("set", k, rng.choice(STRINGS)), ("setbit", k, str(rng.randint(0, 30)), "1"),
        ("rpush", "lst", "x"), ("get", k), ("strlen", k),
        ("bitop", rng.choice(["AND", "or", "XOR", "NOT", "nand"]), k, *sources),
        ("bitop", "NOT", k, k2), ("bitfield", k, *ops), ("bitfield", k, *ops),
        ("bitfield", k, "OVERFLOW", rng.choice(["WRAP", "SAT", "FAIL"]), *ops),
        ("bitfield_ro", k, *ops), ("bitfield_ro", k, "GET", rng.choice(TYPES[:14]), "0"),
        ("lcs", k, k2, *lcs_opts), ("lcs", k, k2, "IDX", "WITHMATCHLEN"),
        ("bitop",), ("bitop", "and", k), ("bitfield",), ("bitfield_ro",), ("lcs", k),
    ]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_redis(pair, seed):
    rng = random.Random(seed)
    for _ in range(600):
        check(pair, *gen_command(rng))
    for key in KEYS:
        check(pair, "type", key)
        if key != "lst":
            check(pair, "get", key)


CASES = [
    ("set", "a", "foobar"), ("set", "b", "abcdef"),
    ("bitop", "AND", "dest", "a", "b"), ("get", "dest"), ("bitop", "OR", "dest", "a", "b", "c"),
    ("get", "dest"), ("bitop", "XOR", "dest", "a", "nokey"), ("get", "dest"),
    ("bitop", "NOT", "dest", "a"), ("get", "dest"), ("bitop", "NOT", "dest", "a", "b"),
    ("bitop", "AND", "dest", "nokey", "nokey2"), ("exists", "dest"),
    ("expire", "a", "100"), ("bitop", "OR", "a", "a"), ("ttl", "a"),
    ("rpush", "l", "x"), ("bitop", "OR", "dest", "a", "l"), ("bitop", "OR", "l", "a"),
    ("bitfield", "bf", "SET", "i8", "0", "100", "GET", "i8", "0"),
    ("bitfield", "bf", "INCRBY", "i8", "0", "100", "GET", "u8", "0"),
    ("bitfield", "bf", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "100", "INCRBY", "i8", "0", "-1000"),
    ("bitfield", "bf", "OVERFLOW", "FAIL", "INCRBY", "i8", "0", "1000", "GET", "i8", "0"),
    ("bitfield", "bf", "OVERFLOW", "WRAP", "INCRBY", "u2", "100", "1", "OVERFLOW", "SAT",
     "INCRBY", "u2", "102", "1", "OVERFLOW", "FAIL", "INCRBY", "u2", "104", "5"),
    ("strlen", "bf"), ("get", "bf"),
    ("bitfield", "bf", "SET", "u8", "#1", "255", "GET", "u4", "#2", "GET", "i4", "#3"),
    ("bitfield", "bf", "SET", "i64", "0", "-9223372036854775808",
     "INCRBY", "i64", "0", "-1", "GET", "i64", "0"),
    ("bitfield", "bf", "OVERFLOW", "SAT", "SET", "i8", "0", "-9223372036854775808",
     "SET", "u8", "0", "-1", "GET", "u8", "0"),
    ("bitfield", "bf", "OVERFLOW", "SAT", "INCRBY", "u63", "1", "9223372036854775807",
     "INCRBY", "i64", "1", "9223372036854775807", "INCRBY", "i64", "1", "1"),
    ("bitfield", "new", "OVERFLOW", "FAIL", "SET", "u2", "0", "7"), ("get", "new"),
    ("bitfield", "bf", "GET", "u64", "0"), ("bitfield", "bf", "GET", "i65", "0"),
    ("bitfield", "bf", "GET", "i8", "-1"), ("bitfield", "bf", "GET", "i8"),
    ("bitfield", "bf", "OVERFLOW", "nope"), ("bitfield", "bf", "FOO", "i8", "0"),
    ("bitfield", "bf", "SET", "i8", "0", "x"), ("bitfield", "bf", "SET", "i8", "4294967296", "1"),
    ("bitfield", "bf"), ("bitfield", "l", "GET", "i8", "0"), ("bitfield", "l"),
    ("bitfield_ro", "bf", "GET", "i8", "0", "GET", "u16", "#1"),
    ("bitfield_ro", "bf", "SET", "i8", "0", "1"), ("bitfield_ro", "l", "SET", "i8", "0", "1"),
    ("bitfield_ro", "l", "GET", "i8", "0"), ("bitfield_ro", "nokey", "GET", "i8", "0"),
    ("bitfield_ro", "bf", "OVERFLOW", "SAT", "GET", "i8", "0"),
    ("set", "key1", "ohmytext"), ("set", "key2", "mynewtext"),
    ("lcs", "key1", "key2"), ("lcs", "key1", "key2", "LEN"), ("lcs", "key1", "key2", "IDX"),
    ("lcs", "key1", "key2", "IDX", "MINMATCHLEN", "4"),
    ("lcs", "key1", "key2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"),
    ("lcs", "key1", "key2", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "-5"),
    ("lcs", "key1", "key2", "IDX", "LEN"), ("lcs", "key1", "key2", "MINMATCHLEN"),
    ("lcs", "key1", "key2", "MINMATCHLEN", "x"), ("lcs", "key1", "key2", "FOO"),
    ("lcs", "key1", "nokey"), ("lcs", "key1", "nokey", "IDX"), ("lcs", "key1", "l"),
    ("lcs", "l", "key1", "FOO"),
    # Wrong arity and wrong type, every command.
    ("lcs", "key1"), ("bitop", "and", "d"), ("bitfield",), ("bitfield_ro",),
    ("bitop", "and", "d", "l"), ("bitop", "not", "d", "l"), ("bitfield", "l", "GET", "u8", "0"),
    ("bitfield", "l", "SET", "u8", "0", "1"), ("bitfield_ro", "l"), ("lcs", "l", "l"),
]


def test_targeted_cases_match_redis(pair):
    for argv in CASES:
        check(pair, *argv)
