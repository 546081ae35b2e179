"""Differential: ZUNION ZINTER ZDIFF, their STORE forms, ZINTERCARD, ZMPOP and LMPOP on a
standalone `twistd zan-node` and on redis-server 7.0, over keys in different partitions
of the node (run as one over all of them)."""

import random

import pytest

from tests.support.differential import check, node_and_redis

pytestmark = pytest.mark.integration

KEYS = [f"z{i}" for i in range(6)] + ["str", "lst", "st"]
MEMBERS = ["a", "b", "c", "d", "e"]
SCORES = ["1", "2", "-1", "0", "0.5", "3", "inf", "-inf", "10"]
WEIGHTS = ["1", "2", "0", "-1", "0.5", "inf", "x", "nan", "1e400"]


@pytest.fixture
def pair(zan_node, redis):
    with node_and_redis(zan_node.redis_port, redis) as clients:
        yield clients


def keys_arg(rng):
    keys = [rng.choice(KEYS) for _ in range(rng.randint(1, 3))]
    numkeys = len(keys)
    if rng.random() < 0.1:
        numkeys = rng.choice([0, -1, numkeys + 1, "x"])
    return [str(numkeys), *keys], len(keys)


def gen_command(rng):
    z = rng.choice(KEYS)
    keys, n = keys_arg(rng)
    opts = []
    if rng.random() < 0.4:
        opts += ["WEIGHTS", *[rng.choice(WEIGHTS[:5] if rng.random() < 0.9 else WEIGHTS)
                              for _ in range(n if rng.random() < 0.9 else n + 1)]]
    if rng.random() < 0.4:
        opts += ["AGGREGATE", rng.choice(["SUM", "min", "MAX", "avg"])]
    algebra = rng.choice(["zunion", "zinter", "zdiff"])
    withscores = ["WITHSCORES"] if rng.random() < 0.6 else []
    choices = [
        ("zadd", z, *[x for m in rng.sample(MEMBERS, rng.randint(1, 4))
                      for x in (rng.choice(SCORES), m)]),
        ("zadd", z, rng.choice(SCORES), rng.choice(MEMBERS)), ("zrem", z, rng.choice(MEMBERS)),
        ("sadd", rng.choice(["st", z]), *rng.sample(MEMBERS, 2)),
        ("rpush", "lst", rng.choice(MEMBERS)), ("set", "str", "v"),
        (algebra, *keys, *opts, *withscores), (algebra, *keys, *withscores),
        (algebra + "store", rng.choice(KEYS), *keys, *opts),
        (algebra + "store", rng.choice(KEYS), *keys),
        ("zintercard", *keys), ("zintercard", *keys, "LIMIT", rng.choice(["0", "1", "2", "-1", "x"])),
        ("zmpop", *keys, rng.choice(["MIN", "max", "foo"])),
        ("zmpop", *keys, "MIN", "COUNT", rng.choice(["1", "2", "10", "0", "x"])),
        ("lmpop", *keys, rng.choice(["LEFT", "right", "up"]), "COUNT", rng.choice(["1", "3", "0"])),
        ("lmpop", "2", "nolist", "lst", "LEFT"),
        ("zrange", z, "0", "-1", "WITHSCORES"), ("type", z), ("ttl", z),
        ("zunion",), ("zunion", "1"), ("zinterstore", "d", "1"), ("zdiffstore", "d"),
        ("zintercard", "1"), ("zmpop", "1", "z0"), ("lmpop", "1", "z0"),
    ]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_redis(pair, seed):
    rng = random.Random(seed)
    for _ in range(500):
        check(pair, *gen_command(rng))
    for key in KEYS:
        check(pair, "type", key)
        check(pair, "zrange", key, "0", "-1", "withscores")


CASES = [
    ("zadd", "za", "1", "a", "2", "b", "3", "c"), ("zadd", "zb", "10", "b", "20", "c", "30", "d"),
    ("sadd", "sa", "a", "d", "x"), ("expire", "dst", "100"),
    ("zunionstore", "dst", "2", "za", "zb"), ("zrange", "dst", "0", "-1", "withscores"),
    ("zunionstore", "dst", "3", "za", "zb", "sa", "WEIGHTS", "2", "0.5", "-3"),
    ("zrange", "dst", "0", "-1", "withscores"), ("ttl", "dst"),
    ("zunionstore", "dst", "2", "za", "zb", "AGGREGATE", "MIN"),
    ("zrange", "dst", "0", "-1", "withscores"),
    ("zunionstore", "dst", "2", "za", "zb", "WEIGHTS", "1", "2", "AGGREGATE", "max"),
    ("zrange", "dst", "0", "-1", "withscores"),
    ("zinterstore", "dst", "2", "za", "zb", "WEIGHTS", "2", "3"),
    ("zrange", "dst", "0", "-1", "withscores"),
    ("zinterstore", "dst", "3", "za", "zb", "sa"), ("exists", "dst"),
    ("zdiffstore", "dst", "2", "za", "sa"), ("zrange", "dst", "0", "-1", "withscores"),
    ("zadd", "zi", "inf", "a", "-inf", "b"), ("zunion", "2", "za", "zi", "WITHSCORES"),
    ("zunion", "2", "zi", "zi", "WITHSCORES"), ("zunion", "2", "zi", "zi", "WEIGHTS", "1", "-1",
                                                 "WITHSCORES"),
    ("zinter", "2", "zi", "za", "WEIGHTS", "0", "1", "WITHSCORES"),
    ("zunionstore", "dst", "2", "za", "zb", "WEIGHTS", "1"),
    ("zunionstore", "dst", "2", "za", "zb", "WEIGHTS", "1", "x"),
    ("zunionstore", "dst", "2", "za", "zb", "AGGREGATE"),
    ("zunionstore", "dst", "2", "za", "zb", "WITHSCORES"),
    ("zdiff", "2", "za", "zb", "WEIGHTS", "1", "1"), ("zdiff", "2", "za", "zb", "WITHSCORES"),
    ("zintercard", "2", "za", "zb"), ("zintercard", "2", "za", "zb", "LIMIT", "1"),
    ("zintercard", "2", "za", "zb", "WITHSCORES"),
    ("set", "str", "v"), ("zunion", "2", "za", "str", "WEIGHTS", "x"),
    ("zunionstore", "str", "1", "za"), ("type", "str"),
    ("zmpop", "3", "nokey", "za", "zb", "MAX", "COUNT", "2"), ("zmpop", "2", "str", "za", "MIN"),
    ("zmpop", "2", "nokey", "str", "MIN"), ("zmpop", "1", "nokey", "MIN"),
    ("zmpop", "1", "za", "MIN", "COUNT", "5"), ("exists", "za"),
    ("rpush", "l1", "a", "b", "c"), ("lmpop", "2", "nokey", "l1", "RIGHT", "COUNT", "2"),
    ("lmpop", "2", "l1", "str", "LEFT", "COUNT", "5"), ("exists", "l1"),
    ("lmpop", "1", "str", "LEFT"), ("lmpop", "1", "nokey", "LEFT"),
    # Wrong arity and wrong type, every command.
    ("zunion",), ("zinter", "1"), ("zdiff",), ("zintercard", "1"), ("zunionstore", "d", "1"),
    ("zinterstore", "d"), ("zdiffstore", "d", "1"), ("zmpop", "1", "za"), ("lmpop", "1"),
    ("zunion", "1", "str"), ("zinter", "2", "zb", "str"), ("zdiff", "2", "zb", "str"),
    ("zintercard", "1", "str"), ("zunionstore", "d", "1", "str"),
    ("zinterstore", "d", "2", "str", "zb"), ("zdiffstore", "d", "1", "str"),
    ("zmpop", "1", "str", "MAX"), ("lmpop", "1", "zb", "RIGHT"),
]


def test_targeted_cases_match_redis(pair):
    for argv in CASES:
        check(pair, *argv)
