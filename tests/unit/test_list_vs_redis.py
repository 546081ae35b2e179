"""List commands against a real redis-server 7.0: seeded random sequences, every reply
compared after normalisation."""

from __future__ import annotations

import random

import pytest

from tests.support.harness import normalize

KEYS = ["l1", "l2", "l3", "str", "zs"]
VALUES = ["a", "b", "c", "a", "", "dd", "b"]
BAD_INTS = ["x", "1.5", "", "+1", "01", " 1", "9223372036854775808", "-9223372036854775809"]


def _int(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return rng.choice(BAD_INTS)
    if r < 0.15:
        return str(rng.choice([-(2**63), 2**63 - 1, 100, -100, 2**62]))
    return str(rng.randint(-6, 6))


def _values(rng: random.Random, lo: int = 1, hi: int = 4) -> list[str]:
    return [rng.choice(VALUES) for _ in range(rng.randint(lo, hi))]


def random_list_command(rng: random.Random) -> list[str]:
    key = rng.choice(KEYS)
    cmd = rng.choice([
        "lpush", "rpush", "lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop", "llen",
        "lindex", "lrange", "lrange", "lset", "ltrim", "lrem", "linsert", "lpos", "lpos",
        "lmove", "rpoplpush", "set", "zadd", "arity"])
    if cmd in ("lpush", "rpush", "lpushx", "rpushx"):
        return [cmd, key] + _values(rng, 0 if rng.random() < 0.03 else 1)
    if cmd in ("lpop", "rpop"):
        r = rng.random()
        if r < 0.4:
            return [cmd, key]
        if r < 0.95:
            return [cmd, key, rng.choice([_int(rng), "0", "1", "3", "100"])]
        return [cmd, key, "1", "2"]
    if cmd == "llen":
        return [cmd, key]
    if cmd == "lindex":
        return [cmd, key, _int(rng)]
    if cmd in ("lrange", "ltrim"):
        return [cmd, key, _int(rng), _int(rng)]
    if cmd == "lset":
        return [cmd, key, _int(rng), rng.choice(VALUES)]
    if cmd == "lrem":
        return [cmd, key, _int(rng), rng.choice(VALUES)]
    if cmd == "linsert":
        where = rng.choice(["BEFORE", "after", "before", "middle"])
        return [cmd, key, where, rng.choice(VALUES + ["zz"]), rng.choice(VALUES)]
    if cmd == "lpos":
        argv = [cmd, key, rng.choice(VALUES)]
        for _ in range(rng.randint(0, 3)):
            opt = rng.choice(["RANK", "COUNT", "MAXLEN", "rank", "count", "bogus"])
            argv += [opt, rng.choice([_int(rng), "1", "2", "-1", "0"])]
        if rng.random() < 0.03:
            argv.append("RANK")
        return argv
    if cmd == "lmove":
        return [cmd, key, rng.choice(KEYS), rng.choice(["LEFT", "RIGHT", "left", "up"]),
                rng.choice(["LEFT", "RIGHT", "right"])]
    if cmd == "rpoplpush":
        return [cmd, key, rng.choice(KEYS)]
    if cmd == "set":
        return ["set", "str", rng.choice(VALUES)]
    if rng.random() < 0.05:
        return rng.choice([["del", key], ["type", key], ["exists", key]])
    if cmd == "zadd":
        return ["zadd", "zs", str(rng.randint(0, 3)), rng.choice(VALUES)]
    # Wrong arity.
    return rng.choice([["lpush", key], ["llen"], ["lindex", key], ["lrange", key, "0"],
                       ["lset", key, "0"], ["linsert", key, "before", "a"], ["lpos", key],
                       ["lmove", key, key, "left"], ["rpoplpush", key], ["lrem", key, "0"]])


def run_sequence(part, redis, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        argv = random_list_command(rng)
        ours = part.ncall(*argv)
        theirs = normalize(redis.call(*argv))
        assert ours == theirs, (seed, i, argv)
    for key in KEYS[:3]:
        assert part.ncall("lrange", key, "0", "-1") == normalize(redis.call("lrange", key, "0", "-1"))


@pytest.mark.parametrize("seed", range(6))
def test_random_list_sequences(part, redis, seed):
    run_sequence(part, redis, seed, 600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_list_sequences_long(part, redis, seed):
    run_sequence(part, redis, seed, 5000)


def test_long_list_edges(part, redis):
    """Larger lists: middle insertions and removals on both sides of the centre."""
    rng = random.Random(7)
    for _ in range(3):
        argv = ["rpush", "L"] + [str(rng.randint(0, 9)) for _ in range(60)]
        assert part.ncall(*argv) == normalize(redis.call(*argv))
    for i in range(300):
        argv = rng.choice([
            ["linsert", "L", rng.choice(["before", "after"]), str(rng.randint(0, 9)), "x%d" % i],
            ["lrem", "L", str(rng.randint(-3, 3)), str(rng.randint(0, 9))],
            ["lrange", "L", str(rng.randint(-200, 200)), str(rng.randint(-200, 200))],
            ["lpos", "L", str(rng.randint(0, 9)), "RANK", str(rng.choice([-2, -1, 1, 3])),
             "COUNT", str(rng.randint(0, 4)), "MAXLEN", str(rng.randint(0, 50))],
            ["ltrim", "L", str(rng.randint(-5, 2)), str(rng.randint(-3, 300))],
            ["lpush", "L", str(rng.randint(0, 9))],
            ["lindex", "L", str(rng.randint(-200, 200))],
        ])
        assert part.ncall(*argv) == normalize(redis.call(*argv)), (i, argv)
    assert part.ncall("lrange", "L", "0", "-1") == normalize(redis.call("lrange", "L", "0", "-1"))


def test_expiry_of_a_list(part):
    part.call("rpush", "l", "a", "b")
    part.call("pexpire", "l", "100")
    part.advance(99)
    assert part.ncall("llen", "l") == 2
    part.advance(1)
    assert part.ncall("llen", "l") == 0
    assert part.ncall("lrange", "l", "0", "-1") == []
    assert part.ncall("rpush", "l", "c") == 1
    assert part.ncall("lrange", "l", "0", "-1") == [b"c"]
