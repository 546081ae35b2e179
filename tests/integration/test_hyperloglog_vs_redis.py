"""Differential: PFADD, PFCOUNT, PFMERGE, PFDEBUG and PFSELFTEST on a standalone
`twistd zan-node` and on redis-server 7.0; the bytes GET returns must be the same after
every step (sparse and dense encodings, the promotion between them, the cached count),
over keys in different partitions of the node."""

import random

import pytest

from tests.support.differential import both, check, node_and_redis

pytestmark = pytest.mark.integration

KEYS = [f"h{i}" for i in range(5)]


@pytest.fixture
def pair(zan_node, redis):
    with node_and_redis(zan_node.redis_port, redis) as clients:
        yield clients


def same_bytes(pair, *keys):
    for key in keys:
        check(pair, "get", key)


def elements(rng, n, universe):
    return [f"e{rng.randrange(universe)}" for _ in range(n)]


@pytest.mark.parametrize("seed,sparse_max_bytes", [(0, "3000"), (1, "3000"), (2, "3000"),
                                                    (3, "200"), (4, "12000")])
def test_random_adds_counts_and_merges_match_redis(pair, seed, sparse_max_bytes):
    rng = random.Random(seed)
    check(pair, "config", "set", "hll-sparse-max-bytes", sparse_max_bytes)
    try:
        _random_steps(pair, rng)
    finally:
        # redis-server is shared by the session.
        check(pair, "config", "set", "hll-sparse-max-bytes", "3000")


def _random_steps(pair, rng):
    for _ in range(60):
        key = rng.choice(KEYS)
        kind = rng.random()
        if kind < 0.55:
            # Mostly small batches (sparse edits), sometimes large ones (promotion, dense).
            n = rng.choice([1, 3, 10, 50, 400]) if rng.random() < 0.9 else 3000
            check(pair, "pfadd", key, *elements(rng, n, rng.choice([100, 5000, 10 ** 6])))
        elif kind < 0.75:
            check(pair, "pfcount", key)
        elif kind < 0.85:
            check(pair, "pfcount", *rng.sample(KEYS + ["nokey"], rng.randint(2, 4)))
        else:
            check(pair, "pfmerge", key, *rng.sample(KEYS + ["nokey"], rng.randint(0, 3)))
        same_bytes(pair, key)
    same_bytes(pair, *KEYS)
    for key in KEYS:
        check(pair, "pfcount", key)
        check(pair, "pfdebug", "encoding", key)
    same_bytes(pair, *KEYS)


def test_promotion_at_the_sparse_limit(pair):
    rng = random.Random(7)
    for _ in range(400):
        check(pair, "pfadd", "h", *elements(rng, 5, 10 ** 9))
        check(pair, "get", "h")
        if check(pair, "pfdebug", "encoding", "h") in ("dense", b"dense"):
            break
    else:
        pytest.fail("never promoted")
    check(pair, "pfcount", "h")
    check(pair, "get", "h")


def test_a_value_copied_from_redis_counts_the_same(pair, redis):
    zan, _ = pair
    rng = random.Random(3)
    for key, n in (("small", 20), ("mid", 700), ("big", 20000)):
        for start in range(0, n, 1000):
            redis.call("pfadd", key, *elements(rng, min(1000, n - start), 10 ** 9))
        raw = redis.call("get", key)
        assert zan.call("set", key, raw) == b"OK"
        check(pair, "pfcount", key)
        check(pair, "get", key)
        check(pair, "pfdebug", "getreg", key)
    check(pair, "pfcount", "small", "mid", "big")
    check(pair, "pfmerge", "all", "small", "mid", "big")
    check(pair, "get", "all")


def _header(encoding: int) -> bytes:
    return b"HYLL" + bytes([encoding]) + bytes(11)


CORRUPT = {
    "badmagic": b"HYLX" + bytes([1]) + bytes(11) + b"\x7f\xff",
    "badencoding": _header(2) + b"\x7f\xff",
    "shortdense": _header(0) + bytes(100),
    "short": b"HYLL\x01",
    # Sparse runs covering 16384 + 4 registers (an XZERO of 16384 then a VAL of 4).
    "overflow": _header(1) + b"\x7f\xff" + bytes([0x80 | 3]),
    # Sparse runs covering 16384 - 1 registers.
    "underflow": _header(1) + b"\x7f\xfe",
    # A VAL run crossing the end of the registers.
    "valover": _header(1) + b"\x7f\xfd" + bytes([0x80 | 3]),
    # An XZERO cut short (its second byte missing).
    "cut": _header(1) + b"\x40",
    "empty": _header(1),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_values_give_redis_errors(pair, name):
    value = CORRUPT[name]
    rng = random.Random(name)
    argvs = [("pfcount", "c"), ("pfcount", "c", "ok"), ("pfmerge", "d", "c"),
             ("pfmerge", "c", "ok"), ("pfdebug", "getreg", "c"), ("pfdebug", "decode", "c"),
             ("pfdebug", "encoding", "c"), ("pfdebug", "todense", "c"),
             ("pfadd", "c", "a"), ("pfadd", "c", *elements(rng, 40, 10 ** 6)), ("pfadd", "c")]
    for argv in argvs:
        check(pair, "set", "c", value)
        check(pair, "pfadd", "ok", "x", "y")
        check(pair, *argv)
        check(pair, "get", "c")
        check(pair, "exists", "d")


def test_wrong_types(pair):
    check(pair, "set", "s", "plain string, no HLL here")
    check(pair, "set", "n", "12345")
    check(pair, "rpush", "l", "x")
    check(pair, "pfadd", "h", "a")
    for key in ("s", "n", "l"):
        check(pair, "pfadd", key, "a")
        check(pair, "pfcount", key)
        check(pair, "pfcount", "h", key)
        check(pair, "pfmerge", key, "h")
        check(pair, "pfmerge", "h", key)
        check(pair, "pfdebug", "encoding", key)
    check(pair, "get", "h")
    check(pair, "type", "h")


def test_arity_debug_and_selftest_replies(pair):
    for argv in (("pfadd",), ("pfcount",), ("pfmerge",), ("pfdebug",), ("pfdebug", "getreg"),
                 ("pfdebug", "getreg", "h", "x"), ("pfselftest", "x")):
        check(pair, *argv)
    check(pair, "pfdebug", "getreg", "nokey")
    check(pair, "pfdebug", "nosuch", "nokey")
    check(pair, "pfadd", "h", "a", "b", "c")
    check(pair, "pfadd", "h", "a")
    check(pair, "pfadd", "h")
    check(pair, "pfadd", "fresh")
    check(pair, "get", "fresh")
    check(pair, "pfdebug", "nosuch", "h")
    check(pair, "pfdebug", "DECODE", "h")
    check(pair, "pfdebug", "Encoding", "h")
    check(pair, "pfdebug", "getreg", "h")
    check(pair, "get", "h")
    check(pair, "pfdebug", "decode", "h")
    check(pair, "pfdebug", "todense", "h")
    check(pair, "pfdebug", "todense", "h")
    check(pair, "get", "h")
    check(pair, "pfselftest")
    # Name, arity, flags and key positions (Zan's COMMAND INFO has no key specs).
    argv = ("command", "info", "pfadd", "pfcount", "pfmerge", "pfdebug", "pfselftest")
    mine, theirs = both(pair, *argv)
    assert [info[:6] for info in mine] == [info[:6] for info in theirs]


def test_ttl_is_kept_and_the_cache_is_stored(pair):
    check(pair, "pfadd", "h", "a", "b")
    check(pair, "expire", "h", "1000")
    check(pair, "get", "h")
    check(pair, "pfcount", "h")
    check(pair, "get", "h")
    check(pair, "ttl", "h")
    check(pair, "pfmerge", "h", "h")
    check(pair, "ttl", "h")
    check(pair, "pfadd", "h", "c")
    check(pair, "ttl", "h")
    check(pair, "get", "h")
    check(pair, "type", "h")


def _dense(registers: int) -> bytes:
    """A dense value whose registers all hold `registers`, its cache stale."""
    v = registers | registers << 6 | registers << 12 | registers << 18
    return b"HYLL\x00" + bytes(10) + b"\x80" + v.to_bytes(3, "little") * 4096


@pytest.mark.parametrize("registers", [0, 1, 40, 50, 51, 63])
def test_dense_values_with_extreme_registers(pair, registers):
    # All registers at 51 or more make Redis divide by zero: it answers LLONG_MIN and
    # stores it, which leaves the cache marked stale.
    check(pair, "set", "d", _dense(registers))
    for _ in range(2):
        check(pair, "pfcount", "d")
        check(pair, "get", "d")
    check(pair, "pfcount", "d", "nokey")
    check(pair, "pfadd", "d", "a", "b")
    check(pair, "get", "d")
    check(pair, "pfmerge", "m", "d")
    check(pair, "get", "m")


def test_in_transactions_and_under_watch(pair):
    zan, redis = pair
    check(pair, "multi")
    check(pair, "pfadd", "h", "a", "b")
    check(pair, "pfcount", "h")
    check(pair, "get", "h")
    check(pair, "pfmerge", "m", "h", "nokey")
    check(pair, "pfcount", "m", "h")
    check(pair, "exec")
    check(pair, "get", "m")
    check(pair, "pfadd", "h", "c")
    # PFCOUNT storing its count changes the key: a WATCH on it fails the transaction.
    check(pair, "watch", "h")
    check(pair, "pfcount", "h")
    check(pair, "multi")
    check(pair, "get", "h")
    check(pair, "exec")
    check(pair, "object", "encoding", "h")
