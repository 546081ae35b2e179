"""Hash commands against a real redis-server 7.0: seeded random command sequences, every
reply compared (order-insensitively where Redis leaves the order undefined)."""

from __future__ import annotations

import random

import pytest

from tests.support.harness import Err, normalize, scan_to_end

KEYS = ["h1", "h2", "h3", "str"]
_KEY_WEIGHTS = [4, 4, 2, 1]
FIELDS = ["a", "b", "c", "d", "0", "", "long" * 5]
VALUES = ["1", "2", "-7", "0", "x", "1.5", "-0", " 1", "010", "9223372036854775807",
          "-9223372036854775808", "3.0e2", "0x10", "inf", ""]
INCRS = ["1", "-1", "5", "100", "0", "abc", "1.5", "9223372036854775807",
         "-9223372036854775808", "99999999999999999999", "+1", " 1"]
FLOAT_INCRS = ["0.1", "-0.3", "1.5", "1e3", "-2.5e-3", "3", "abc", "nan", "inf", "-inf",
               "1e5000", "1e-5000", "", ".5", "5.", "0x1p3", "1e300", "-1e300", "  2"]
COUNTS = ["0", "1", "2", "3", "5", "20", "-1", "-3", "-9223372036854775808", "abc"]

# Replies whose order Redis does not define.
_UNORDERED = {"hkeys", "hvals"}
_PAIRS = {"hgetall"}


def _random_command(rng: random.Random) -> list[str]:
    k = rng.choices(KEYS, _KEY_WEIGHTS)[0]
    f = lambda: rng.choice(FIELDS)  # noqa: E731
    v = lambda: rng.choice(VALUES)  # noqa: E731
    kind = rng.randrange(24)
    if kind < 4:
        argv = ["hset", k]
        for _ in range(rng.randint(1, 3)):
            argv += [f(), v()]
        if rng.random() < 0.1:
            argv.append(f())  # odd: wrong arity
        return argv
    if kind == 4:
        argv = ["hmset", k] + [x for _ in range(rng.randint(1, 3)) for x in (f(), v())]
        return argv if rng.random() > 0.1 else argv[:-1]
    table = {
        5: lambda: ["hsetnx", k, f(), v()],
        6: lambda: ["hget", k, f()],
        7: lambda: ["hmget", k] + [f() for _ in range(rng.randint(1, 4))],
        8: lambda: ["hdel", k] + [f() for _ in range(rng.randint(1, 3))],
        9: lambda: ["hlen", k],
        10: lambda: ["hexists", k, f()],
        11: lambda: ["hgetall", k],
        12: lambda: ["hkeys", k],
        13: lambda: ["hvals", k],
        14: lambda: ["hincrby", k, f(), rng.choice(INCRS)],
        15: lambda: ["hincrbyfloat", k, f(), rng.choice(FLOAT_INCRS)],
        16: lambda: ["hstrlen", k, f()],
        17: lambda: ["hincrby", k, f(), rng.choice(INCRS)],
        18: lambda: ["hincrbyfloat", k, f(), rng.choice(FLOAT_INCRS)],
        19: lambda: rng.choice([["hget", k], ["hlen"], ["hset", k, f()], ["hgetall"],
                                ["hincrby", k, f()], ["hstrlen", k], ["hexists", k],
                                ["hsetnx", k, f()], ["hdel", k], ["hmget", k]]),
        20: lambda: ["set", "str", v()] if rng.random() < 0.5 else ["get", "str"],
        21: lambda: ["hrandfield", k] + rng.choice(
            [[], [rng.choice(COUNTS)], [rng.choice(COUNTS), "WITHVALUES"],
             [rng.choice(COUNTS), "withvalue"], ["1", "withvalues", "x"]]),
        22: lambda: ["hscan", k] + rng.choice(
            [[], ["COUNT", rng.choice(["1", "2", "100", "0", "-1", "x"])],
             ["MATCH", rng.choice(["*", "a*", "[ab]", "?", "z*"])],
             ["MATCH", "*", "COUNT", "3"], ["NOVALUES"], ["COUNT"]]),
        23: lambda: _keys_command(rng, k),
    }
    return table[kind]()


def _keys_command(rng: random.Random, k: str) -> list[str]:
    """Key-level commands on a key of this family (DEL and EXPIRE 0 delete at once)."""
    return rng.choice([["del", k], ["expire", k, "0"], ["exists", k], ["type", k]])


def _pairs(flat):
    return sorted(zip(flat[::2], flat[1::2]))


def _check_random(argv, ours, redis):
    """HRANDFIELD: same errors; otherwise a valid random choice from Redis's hash."""
    theirs = normalize(redis.call(*argv))
    if isinstance(theirs, Err) or isinstance(ours, Err) or len(argv) == 2:
        if len(argv) == 2 and not isinstance(ours, Err):
            # single field: nil for nil, else a field of the hash
            if theirs is None:
                assert ours is None
            else:
                assert ours in normalize(redis.call("hkeys", argv[1]))
            return
        assert ours == theirs, argv
        return
    whole = dict(_pairs(normalize(redis.call("hgetall", argv[1]))))
    count = int(argv[2])
    withvalues = len(argv) == 4
    fields = ours[::2] if withvalues else ours
    assert len(theirs) == len(ours), argv
    if count >= 0:
        assert len(fields) == min(count, len(whole))
        assert len(set(fields)) == len(fields), "positive count repeats a field"
    else:
        assert len(fields) == (-count if whole else 0)
    for i, fld in enumerate(fields):
        assert fld in whole, (argv, fld)
        if withvalues:
            assert ours[2 * i + 1] == whole[fld]


def _run(part, redis, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for step in range(n):
        argv = _random_command(rng)
        name = argv[0]
        if name == "hscan":
            ours = scan_to_end(part.call, argv)
            theirs = scan_to_end(redis.call, argv)
            if ours[1] is not None and theirs[1] is not None:
                assert _pairs(ours[1]) == _pairs(theirs[1]), (seed, step, argv)
            else:
                assert ours[0] == theirs[0], (seed, step, argv)
            continue
        ours = part.ncall(*argv)
        if name == "hrandfield":
            _check_random(argv, ours, redis)
            continue
        theirs = normalize(redis.call(*argv))
        if name in _UNORDERED and isinstance(ours, list) and isinstance(theirs, list):
            ours, theirs = sorted(ours), sorted(theirs)
        elif name in _PAIRS and isinstance(ours, list) and isinstance(theirs, list):
            ours, theirs = _pairs(ours), _pairs(theirs)
        assert ours == theirs, (seed, step, argv)
    for k in KEYS:
        if normalize(redis.call("type", k)) == b"hash":
            assert _pairs(part.ncall("hgetall", k)) == _pairs(normalize(redis.call("hgetall", k)))
            assert part.ncall("hlen", k) == normalize(redis.call("hlen", k))


@pytest.mark.parametrize("seed", range(6))
def test_random_hash_commands_match_redis(part, redis, seed):
    _run(part, redis, seed, 600)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_hash_commands_match_redis_long(part, redis, seed):
    _run(part, redis, seed, 5000)


def test_hincrbyfloat_chains_match_redis(part, redis):
    """Long double rounding and printing, accumulated over many additions."""
    rng = random.Random(7)
    for i in range(400):
        incr = rng.choice(["0.1", "-0.3", "1e-7", "123456.789", "3.3333333333333", "1e20",
                           "-1e20", "7e-3", "1e-300", "2.5e15"])
        argv = ["hincrbyfloat", "h", "f%d" % (i % 5), incr]
        assert part.ncall(*argv) == normalize(redis.call(*argv)), (i, argv)


def test_large_hash_scan_and_reads_match_redis(part, redis):
    fields = [b"field:%d" % i for i in range(300)]
    for i in range(0, 300, 50):
        argv = ["hset", "big"] + [x for f in fields[i:i + 50] for x in (f, f + b"v")]
        assert part.ncall(*argv) == normalize(redis.call(*argv))
    for argv in (["hlen", "big"], ["hget", "big", "field:7"], ["hdel", "big", "field:1", "zz"]):
        assert part.ncall(*argv) == normalize(redis.call(*argv))
    for opts in ([], ["COUNT", "7"], ["MATCH", "field:1*", "COUNT", "20"]):
        ours = scan_to_end(part.call, ["hscan", "big"] + opts)
        theirs = scan_to_end(redis.call, ["hscan", "big"] + opts)
        assert _pairs(ours[1]) == _pairs(theirs[1]), opts
