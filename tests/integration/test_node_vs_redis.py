"""Differential: seeded random command sequences over every family, sent to a real
`twistd zan-node` and to redis-server 7 over sockets; replies must match."""

import random

import mmh3
import pytest

from tests.support.harness import normalize
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration

KEYS = [f"k{i}" for i in range(12)]
FIELDS = ["a", "b", "c", "d"]
VALUES = ["1", "2", "-3", "10", "x", "", "3.5", "9223372036854775807"]


def _partition(key: str) -> int:
    return mmh3.hash(key.encode(), 0, signed=False) % 8


def same_partition_pairs():
    pairs = []
    for a in KEYS:
        for b in KEYS:
            if a != b and _partition(a) == _partition(b):
                pairs.append((a, b))
    return pairs


# Replies whose order Redis leaves undefined: compare sorted.
UNORDERED = {"smembers", "hkeys", "hvals", "sinter", "sunion", "sdiff", "keys"}
PAIRED_UNORDERED = {"hgetall"}


def gen_command(rng: random.Random, pairs):
    k = rng.choice(KEYS)
    v = rng.choice(VALUES)
    f = rng.choice(FIELDS)
    n = str(rng.randint(-3, 5))
    choices = [
        ("set", k, v), ("get", k), ("append", k, v), ("strlen", k), ("incr", k),
        ("incrby", k, n), ("decr", k), ("getrange", k, n, "-1"), ("setrange", k, "2", v),
        ("mset", k, v, rng.choice(KEYS), v), ("mget", k, rng.choice(KEYS), rng.choice(KEYS)),
        ("del", k, rng.choice(KEYS)), ("exists", k, rng.choice(KEYS), k), ("type", k),
        ("setnx", k, v), ("getset", k, v), ("getdel", k), ("incrbyfloat", k, "1.5"),
        ("setbit", k, str(rng.randint(0, 40)), str(rng.randint(0, 1))), ("bitcount", k),
        ("expire", k, "1000"), ("persist", k),
        ("hset", k, f, v, rng.choice(FIELDS), v), ("hget", k, f), ("hdel", k, f),
        ("hlen", k), ("hgetall", k), ("hincrby", k, f, n), ("hexists", k, f),
        ("hmget", k, f, "zz"), ("hkeys", k), ("hvals", k), ("hsetnx", k, f, v),
        ("lpush", k, v, v), ("rpush", k, v), ("lpop", k), ("rpop", k, "2"), ("llen", k),
        ("lrange", k, n, "-1"), ("lindex", k, n), ("lset", k, n, v), ("ltrim", k, "1", n),
        ("lrem", k, n, v), ("linsert", k, "BEFORE", v, "ins"),
        ("sadd", k, v, f), ("srem", k, v), ("smembers", k), ("scard", k),
        ("sismember", k, v), ("smismember", k, v, f),
        ("zadd", k, n, f, str(rng.random()), rng.choice(FIELDS)), ("zincrby", k, n, f),
        ("zrem", k, f), ("zscore", k, f), ("zcard", k), ("zrange", k, "0", "-1", "WITHSCORES"),
        ("zrangebyscore", k, "-inf", n), ("zrevrange", k, "0", n), ("zrank", k, f),
        ("zcount", k, "(0", "+inf"), ("zremrangebyrank", k, "0", "0"), ("zpopmin", k),
        ("zrangebylex", k, "-", "+"),
        ("get",), ("set", k), ("hset", k, f), ("lpush", k), ("zadd", k, "x", f),
    ]
    if pairs:
        a, b = rng.choice(pairs)
        choices += [("sinter", a, b), ("sunion", a, b), ("sdiff", a, b),
                    ("smove", a, b, v), ("rpoplpush", a, b), ("sunionstore", a, a, b),
                    ("msetnx", a, v, b, v), ("unlink", a, b, k), ("sinterstore", b, a, b),
                    ("sdiffstore", a, b, a), ("lmove", a, b, "LEFT", "RIGHT"),
                    ("zrangestore", b, a, "0", "-1"), ("sintercard", "2", a, b),
                    ("del", a, b, k)]
    return rng.choice(choices)


def compare(name, mine, theirs):
    mine, theirs = normalize(mine), normalize(theirs)
    if name in UNORDERED and isinstance(mine, list) and isinstance(theirs, list):
        return sorted(mine) == sorted(theirs)
    if name in PAIRED_UNORDERED and isinstance(mine, list) and isinstance(theirs, list):
        return sorted(zip(mine[::2], mine[1::2])) == sorted(zip(theirs[::2], theirs[1::2]))
    return mine == theirs


def any_pairs():
    return [(a, b) for a in KEYS for b in KEYS if a != b]


@pytest.mark.parametrize("seed,pairs_of", [(0, same_partition_pairs),
                                           (1, same_partition_pairs), (2, any_pairs),
                                           (3, any_pairs)])
def test_random_sequences_match_redis(zan_node, redis, seed, pairs_of):
    """A standalone node runs a command over keys of several partitions as one, so
    pairs need not share a partition."""
    rng = random.Random(seed)
    pairs = pairs_of()
    zan = RawClient(zan_node.redis_port)
    zan.call("flushall")
    for i in range(1500):
        argv = gen_command(rng, pairs)
        mine, theirs = zan.call(*argv), redis.call(*argv)
        assert compare(argv[0], mine, theirs), (i, argv, mine, theirs)
    # The whole keyspace agrees at the end too.
    assert zan.call("dbsize") == redis.call("dbsize")
    for k in KEYS:
        assert zan.call("type", k) == redis.call("type", k)
    zan.close()


def test_scan_walks_every_key_once(zan_node):
    c = RawClient(zan_node.redis_port)
    expected = {f"key{i}".encode() for i in range(250)}
    for k in expected:
        c.call("set", k, "v")
    c.call("hset", "hh", *[x for i in range(40) for x in (f"f{i}", "v")])
    seen = []
    cursor = b"0"
    while True:
        cursor, keys = c.call("scan", cursor, "COUNT", "7", "MATCH", "key*")
        seen += keys
        if cursor == b"0":
            break
    assert sorted(seen) == sorted(expected)
    cursor, fields = b"0", []
    while True:
        cursor, items = c.call("hscan", "hh", cursor, "COUNT", "5")
        fields += items[::2]
        if cursor == b"0":
            break
    assert sorted(fields) == sorted(f"f{i}".encode() for i in range(40))
    assert str(c.call("scan", "12345")) == "ERR invalid cursor"
    assert str(c.call("hscan", "hh", "abc")) == "ERR invalid cursor"
    assert c.call("scan", "0", "TYPE", "hash", "COUNT", "1000") == [b"0", [b"hh"]]
    c.close()
