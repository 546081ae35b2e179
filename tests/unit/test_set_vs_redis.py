"""Set commands against a real redis-server 7.0: seeded random command sequences, every
reply compared (order-insensitively where Redis leaves the order undefined).  SPOP and
SRANDMEMBER are checked for validity against Redis's state, and popped members are
removed from Redis with SREM so both sides stay equal."""

from __future__ import annotations

import random

import pytest

from tests.support.harness import Err, normalize, scan_to_end

KEYS = ["s1", "s2", "s3", "str", "h"]
_KEY_WEIGHTS = [5, 5, 3, 1, 1]
MEMBERS = ["a", "b", "c", "d", "e", "1", "2", "10", "-3", "", "0"]
COUNTS = ["0", "1", "2", "3", "5", "20", "-1", "-4", "-9223372036854775808", "x", "1.5"]

_UNORDERED = {"smembers", "sinter", "sunion", "sdiff"}


def _random_command(rng: random.Random) -> list[str]:
    k = rng.choices(KEYS, _KEY_WEIGHTS)[0]
    key = lambda: rng.choices(KEYS, _KEY_WEIGHTS)[0] if rng.random() < 0.9 else "nokey"  # noqa: E731
    m = lambda: rng.choice(MEMBERS)  # noqa: E731
    some = lambda lo=1, hi=4: [m() for _ in range(rng.randint(lo, hi))]  # noqa: E731
    keys = lambda: [key() for _ in range(rng.randint(1, 3))]  # noqa: E731
    kind = rng.randrange(22)
    table = {
        0: lambda: ["sadd", k] + some(),
        1: lambda: ["sadd", k] + some(1, 6),
        2: lambda: ["srem", k] + some(),
        3: lambda: ["smembers", k],
        4: lambda: ["sismember", k, m()],
        5: lambda: ["smismember", k] + some(),
        6: lambda: ["scard", k],
        7: lambda: ["spop", k] + rng.choice([[], [], [rng.choice(COUNTS)], ["1", "2"]]),
        8: lambda: ["srandmember", k] + rng.choice([[], [rng.choice(COUNTS)], ["1", "2"]]),
        9: lambda: ["smove", key(), key(), m()],
        10: lambda: ["sinter"] + keys(),
        11: lambda: ["sunion"] + keys(),
        12: lambda: ["sdiff"] + keys(),
        13: lambda: _sintercard(rng, keys()),
        14: lambda: ["sinterstore", key()] + keys(),
        15: lambda: ["sunionstore", key()] + keys(),
        16: lambda: ["sdiffstore", key()] + keys(),
        17: lambda: ["sscan", k] + rng.choice(
            [[], ["COUNT", rng.choice(["1", "2", "100", "0", "x"])],
             ["MATCH", rng.choice(["*", "[a-c]", "1*", "?"])], ["MATCH"], ["TYPE", "set"]]),
        18: lambda: rng.choice([["sadd", k], ["srem", k], ["smembers"], ["scard"],
                                ["sismember", k], ["smove", k, k], ["sinter"], ["sdiffstore", k],
                                ["sintercard", "1"], ["smismember", k], ["spop"]]),
        19: lambda: rng.choice([["set", "str", "v"], ["hset", "h", "f", "v"]]),
        20: lambda: _keys_command(rng, k),
        21: lambda: ["sadd", k] + some(),
    }
    return table[kind]()


def _sintercard(rng: random.Random, keys: list[str]) -> list[str]:
    numkeys = rng.choice([str(len(keys))] * 6 + ["0", "x", str(len(keys) + 1), "1"])
    tail = rng.choice([[], [], ["LIMIT", rng.choice(["0", "1", "2", "-1", "x"])], ["LIMIT"],
                       ["FOO"]])
    return ["sintercard", numkeys] + keys + tail


def _keys_command(rng: random.Random, k: str) -> list[str]:
    """Key-level commands on a key of this family (DEL and EXPIRE 0 delete at once)."""
    return rng.choice([["del", k], ["expire", k, "0"], ["exists", k], ["type", k]])


def _members(redis, key):
    reply = normalize(redis.call("smembers", key))
    return set(reply) if isinstance(reply, list) else set()


def _check_spop(argv, ours, redis):
    if isinstance(ours, Err):
        # An error has no effect in Redis either; it must be the same error.
        assert normalize(redis.call(*argv)) == ours, argv
        return
    key = argv[1]
    before = _members(redis, key)
    assert normalize(redis.call("type", key)) in (b"set", b"none"), argv
    if len(argv) == 2:
        if not before:
            assert ours is None
            return
        assert ours in before
        popped = [ours]
    else:
        count = int(argv[2])
        assert len(ours) == min(count, len(before)), argv
        assert len(set(ours)) == len(ours), "SPOP returned a member twice"
        assert set(ours) <= before
        popped = ours
    if popped:
        assert normalize(redis.call("srem", key, *popped)) == len(popped)


def _check_srandmember(argv, ours, redis):
    theirs = normalize(redis.call(*argv))
    if isinstance(ours, Err) or isinstance(theirs, Err) or ours is None or theirs is None:
        assert ours == theirs, argv
        return
    whole = _members(redis, argv[1])
    if len(argv) == 2:
        assert ours in whole
        return
    count = int(argv[2])
    assert len(ours) == len(theirs), argv
    if count >= 0:
        assert len(set(ours)) == len(ours) == min(count, len(whole))
    assert set(ours) <= whole


def _run(part, redis, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for step in range(n):
        argv = _random_command(rng)
        name = argv[0]
        if name == "sscan":
            ours, theirs = scan_to_end(part.call, argv), scan_to_end(redis.call, argv)
            if ours[1] is not None and theirs[1] is not None:
                assert sorted(ours[1]) == sorted(theirs[1]), (seed, step, argv)
            else:
                assert ours[0] == theirs[0], (seed, step, argv)
            continue
        ours = part.ncall(*argv)
        if name == "spop":
            _check_spop(argv, ours, redis)
            continue
        if name == "srandmember":
            _check_srandmember(argv, ours, redis)
            continue
        theirs = normalize(redis.call(*argv))
        if name in _UNORDERED and isinstance(ours, list) and isinstance(theirs, list):
            ours, theirs = sorted(ours), sorted(theirs)
        assert ours == theirs, (seed, step, argv)
    for k in KEYS:
        assert part.ncall("scard", k) == normalize(redis.call("scard", k)), k
        if normalize(redis.call("type", k)) == b"set":
            assert sorted(part.ncall("smembers", k)) == sorted(_members(redis, k))


@pytest.mark.parametrize("seed", range(6))
def test_random_set_commands_match_redis(part, redis, seed):
    _run(part, redis, seed, 600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_set_commands_match_redis_long(part, redis, seed):
    _run(part, redis, seed, 5000)


def test_large_set_operations_match_redis(part, redis):
    for key, step in (("a", 2), ("b", 3), ("c", 5)):
        argv = ["sadd", key] + [str(i) for i in range(0, 600, step)]
        assert part.ncall(*argv) == normalize(redis.call(*argv))
    for argv in (["sinter", "a", "b"], ["sunion", "a", "b", "c"], ["sdiff", "a", "b", "c"]):
        assert sorted(part.ncall(*argv)) == sorted(normalize(redis.call(*argv))), argv
    for argv in (["sinterstore", "d", "a", "b", "c"], ["sintercard", "2", "a", "c"],
                 ["sintercard", "3", "a", "b", "c", "LIMIT", "7"], ["scard", "d"],
                 ["sdiffstore", "a", "a", "b"], ["scard", "a"], ["sunionstore", "b", "b"]):
        assert part.ncall(*argv) == normalize(redis.call(*argv)), argv
    for opts in ([], ["COUNT", "13"], ["MATCH", "1*"]):
        ours, theirs = scan_to_end(part.call, ["sscan", "c"] + opts), scan_to_end(
            redis.call, ["sscan", "c"] + opts)
        assert sorted(ours[1]) == sorted(theirs[1]), opts
