"""Key-space commands against a real redis-server 7.0.

Our clock is simulated and Redis's is real, so sequences use TTLs far from both clocks'
"now" (relative TTLs of tens of seconds compared with TTL's second rounding, absolute
deadlines in 1970 or 2096) and never compare PTTL of a relative deadline."""

import random
import time

import pytest

from tests.support.harness import normalize

KEYS = ["k1", "k2", "k3", "h1", "l1", "s1", "z1", "missing"]


def _check(part, redis, argv):
    ours = part.ncall(*argv)
    theirs = normalize(redis.call(*argv))
    assert ours == theirs, argv
    return ours


EDGE_CASES = [
    ("set", "a", "1"), ("hset", "h", "f", "v"), ("rpush", "l", "x"), ("sadd", "s", "m"),
    ("zadd", "z", "1", "m"),
    ("type", "a"), ("type", "h"), ("type", "l"), ("type", "s"), ("type", "z"), ("type", "no"),
    ("exists", "a", "h", "no", "a"), ("touch", "a", "l", "no"), ("del", "a", "a", "no"),
    ("unlink", "h", "l"), ("exists", "h", "l", "s", "z"),
    ("set", "a", "1"),
    ("expire", "a", "10", "nx", "xx"), ("expire", "a", "10", "gt", "lt"),
    ("expire", "a", "10", "foo"), ("expire", "a", "abc", "foo"), ("expire", "a", "abc"),
    ("expire", "missing", "10", "xx"), ("expire", "a", "9223372036854776"),
    ("expire", "a", "-9223372036854776"), ("pexpire", "a", "9223372036854775807"),
    ("expireat", "a", "9223372036854776"), ("pexpireat", "a", "9223372036854775807"),
    ("expiretime", "a"), ("pexpiretime", "a"), ("expiretime", "nokey"),
    ("ttl", "nokey"), ("pttl", "nokey"), ("persist", "a"), ("persist", "nokey"),
    ("expire", "a", "100", "XX"), ("expire", "a", "100", "GT"), ("expire", "a", "100", "LT"),
    ("ttl", "a"), ("expire", "a", "100", "NX"), ("ttl", "a"), ("expire", "a", "200", "NX"),
    ("expire", "a", "200", "XX"), ("ttl", "a"), ("expire", "a", "50", "GT"), ("ttl", "a"),
    ("expire", "a", "500", "GT"), ("ttl", "a"), ("expire", "a", "5000", "LT"),
    ("expire", "a", "60", "lt"), ("ttl", "a"), ("expireat", "a", "4000000000"),
    ("expiretime", "a"), ("pexpiretime", "a"), ("pexpireat", "a", "4000000000123"),
    ("pexpiretime", "a"), ("expiretime", "a"), ("pttl", "nokey"), ("persist", "a"),
    ("ttl", "a"), ("persist", "a"), ("expire", "a", "100", "LT"), ("ttl", "a"),
    ("expire", "s", "100"), ("ttl", "s"), ("type", "s"), ("persist", "s"), ("ttl", "s"),
    ("expire", "s", "0"), ("exists", "s"), ("type", "s"), ("set", "b", "1"),
    ("expire", "b", "-1"), ("get", "b"), ("set", "b", "1"), ("expireat", "b", "1000"),
    ("exists", "b"), ("set", "b", "1"), ("pexpireat", "b", "1"), ("exists", "b"),
    ("set", "b", "1"), ("pexpire", "b", "-5", "gt"), ("exists", "b"),
    ("expireat", "z", "4000000000", "XX"), ("expireat", "z", "4000000000", "NX"),
    ("expireat", "z", "3000000000", "GT"), ("expireat", "z", "3000000000", "LT"),
    ("expiretime", "z"), ("set", "z", "str"), ("ttl", "z"), ("type", "z"),
    ("del",), ("exists",), ("type",), ("expire", "a"), ("ttl",), ("persist", "a", "b"),
    ("expiretime", "a", "b"), ("touch",),
]


def test_edge_cases_match_redis(part, redis):
    for argv in EDGE_CASES:
        _check(part, redis, argv)


def _random_argv(rng):
    k = rng.choice(KEYS)
    secs = lambda: rng.choice(["30", "100", "200", "-1", "0", "abc", "4000"])
    abs_s = lambda: rng.choice(["1000", "4000000000", "4100000000"])
    opts = lambda: rng.sample(["NX", "XX", "GT", "LT"], rng.choice([0, 0, 1, 1, 2]))
    # GT/LT between two relative deadlines would compare the two clocks' drift.
    rel_opts = lambda: rng.sample(["NX", "XX"], rng.choice([0, 0, 1, 2]))
    return rng.choice([
        lambda: ("set", k, "v"), lambda: ("set", k, "v", "EX", "300"),
        lambda: ("set", k, "v", "KEEPTTL"),
        lambda: ("hset", k, "f", "v"), lambda: ("rpush", k, "x"), lambda: ("sadd", k, "m"),
        lambda: ("zadd", k, "1", "m"),
        lambda: ("del", k, rng.choice(KEYS)), lambda: ("unlink", k),
        lambda: ("exists", k, rng.choice(KEYS), k), lambda: ("touch", k), lambda: ("type", k),
        lambda: ("expire", k, secs(), *rel_opts()),
        lambda: ("pexpire", k, secs() + "000", *rel_opts()),
        lambda: ("expireat", k, abs_s(), *opts()),
        lambda: ("pexpireat", k, abs_s() + "500", *opts()),
        lambda: ("ttl", k), lambda: ("persist", k),
        lambda: ("get", k), lambda: ("getex", k, "PERSIST"), lambda: ("incr", k),
        lambda: ("append", k, "x"), lambda: ("getset", k, "y"),
    ])()


def _pexpiretime_consistent(part, redis):
    # Absolute deadlines compare exactly; relative ones only by their second-rounded TTL.
    for k in KEYS:
        ours, theirs = part.ncall("pexpiretime", k), normalize(redis.call("pexpiretime", k))
        if ours in (-1, -2) or theirs in (-1, -2):
            assert ours == theirs, k


def _run(part, redis, seed, n):
    rng = random.Random(seed)
    # Start both clocks together; no deadline in the sequences is near enough to be crossed
    # while it runs, so TTLs may only differ by the run's duration.
    part.now_ms = int(time.time() * 1000)
    for _ in range(n):
        argv = _random_argv(rng)
        if argv[0] == "ttl":
            ours, theirs = part.ncall(*argv), normalize(redis.call(*argv))
            assert ours == theirs or (ours > 0 and theirs > 0 and abs(ours - theirs) <= 3), argv
        else:
            _check(part, redis, argv)
    _pexpiretime_consistent(part, redis)


@pytest.mark.parametrize("seed", range(4))
def test_random_sequences_match_redis(part, redis, seed):
    _run(part, redis, seed, 500)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 108))
def test_random_sequences_match_redis_long(part, redis, seed):
    _run(part, redis, seed, 3000)


def _scan_all(call, opts):
    cursor, seen = b"0", []
    for _ in range(10000):
        reply = normalize(call("scan", cursor, *opts))
        if not isinstance(reply, list):
            return reply, None
        cursor, keys = reply
        seen += keys
        if cursor == b"0":
            return None, sorted(seen)
    raise AssertionError("scan did not finish")


def test_full_scans_match_redis(part, redis):
    rng = random.Random(5)
    for i in range(150):
        k = f"key:{i}"
        kind = rng.choice(["set", "hset", "rpush", "sadd", "zadd"])
        argv = {"set": ("set", k, "v"), "hset": ("hset", k, "f", "v"),
                "rpush": ("rpush", k, "x"), "sadd": ("sadd", k, "m"),
                "zadd": ("zadd", k, "1", "m")}[kind]
        part.call(*argv)
        redis.call(*argv)
    for opts in ([], ["COUNT", "7"], ["MATCH", "key:1*"], ["TYPE", "hash", "COUNT", "3"],
                 ["TYPE", "string"], ["MATCH", "*5", "TYPE", "zset"], ["TYPE", "nosuch"],
                 ["COUNT", "0"], ["COUNT", "-1"], ["COUNT", "x"], ["MATCH"], ["FOO", "1"]):
        assert _scan_all(part.call, opts) == _scan_all(redis.call, opts), opts
    for bad in (["x"], ["-"], ["1.5"]):
        assert part.ncall("scan", *bad) == normalize(redis.call("scan", *bad))
