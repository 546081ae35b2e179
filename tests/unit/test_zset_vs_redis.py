"""Sorted-set commands against a real redis-server 7.0: seeded random sequences, every
reply compared after normalisation (ZRANDMEMBER and ZSCAN by content, their order being
Redis's choice)."""

from __future__ import annotations

import random

import pytest

from tests.support.harness import Err, normalize

KEYS = ["z1", "z2", "z3", "str", "lst"]
MEMBERS = ["a", "b", "c", "d", "aa", "", "B", "e\x00f", "zz"]
SCORES = ["0", "1", "2", "-1", "1.5", "0.1", "1e20", "-0.0", "inf", "-inf", "+inf",
          "1.5e-7", "3", "2", "2", "0x10", "1e-310"]
BAD_FLOATS = ["x", "nan", "", " 1", "1 ", "1e400", "1e-400", "1_0", "--1", "1e", "0x"]
BAD_INTS = ["x", "1.5", "", "+1", "01", "9223372036854775808"]
BOUNDS = ["-inf", "+inf", "inf", "0", "1", "(1", "2", "(2", "-1", "(-inf", "(inf", "1.5",
          "(0", "0.1", "3", "(3"]
BAD_BOUNDS = ["", "(", " 1", "1e400", "abc", "nan", "(x", "1 "]
LEX = ["-", "+", "[a", "(a", "[b", "(b", "[", "(", "[aa", "(zz", "[zz", "[c", "(B", "[e"]
BAD_LEX = ["a", "", "++", "-a", "x"]


def _int(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.06:
        return rng.choice(BAD_INTS)
    if r < 0.1:
        return str(rng.choice([-(2**63), 2**63 - 1, 100, -100]))
    return str(rng.randint(-5, 5))


def _score(rng: random.Random) -> str:
    return rng.choice(BAD_FLOATS) if rng.random() < 0.04 else rng.choice(SCORES)


def _bound(rng: random.Random) -> str:
    return rng.choice(BAD_BOUNDS) if rng.random() < 0.05 else rng.choice(BOUNDS)


def _lex(rng: random.Random) -> str:
    return rng.choice(BAD_LEX) if rng.random() < 0.05 else rng.choice(LEX)


def _range_options(rng: random.Random, allowed: list[str]) -> list[str]:
    opts: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        opt = rng.choice(allowed)
        if opt == "LIMIT":
            opts += ["LIMIT", rng.choice([_int(rng), "0", "1", "-1"]),
                     rng.choice([_int(rng), "-1", "2", "0"])]
        else:
            opts.append(opt)
    return opts


def random_zset_command(rng: random.Random) -> list[str]:
    key = rng.choices(KEYS, weights=[6, 4, 2, 1, 1])[0]
    cmd = rng.choice([
        "zadd", "zadd", "zadd", "zadd", "zadd", "zadd", "zadd", "zincrby", "zrem", "zscore", "zmscore", "zcard",
        "zcount", "zlexcount", "zrange", "zrange", "zrevrange", "zrangebyscore",
        "zrevrangebyscore", "zrangebylex", "zrevrangebylex", "zrank", "zrevrank",
        "zremrangebyrank", "zremrangebyscore", "zremrangebylex", "zpopmin", "zpopmax",
        "zrangestore", "set", "rpush", "arity"])
    if cmd == "zadd":
        opts = [o for o in ["NX", "XX", "GT", "LT", "CH", "INCR", "nx", "ch"]
                if rng.random() < 0.05]
        rng.shuffle(opts)
        pairs: list[str] = []
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            pairs += [_score(rng), rng.choice(MEMBERS)]
        if rng.random() < 0.03:
            pairs.pop()
        return [cmd, key] + opts + pairs
    if cmd == "zincrby":
        return [cmd, key, _score(rng), rng.choice(MEMBERS)]
    if cmd == "zrem":
        return [cmd, key] + rng.sample(MEMBERS, rng.randint(1, 3))
    if cmd in ("zscore", "zrank", "zrevrank"):
        return [cmd, key, rng.choice(MEMBERS)]
    if cmd == "zmscore":
        return [cmd, key] + rng.sample(MEMBERS, rng.randint(1, 3))
    if cmd == "zcard":
        return [cmd, key]
    if cmd in ("zcount", "zremrangebyscore"):
        return [cmd, key, _bound(rng), _bound(rng)]
    if cmd in ("zlexcount", "zremrangebylex"):
        return [cmd, key, _lex(rng), _lex(rng)]
    if cmd == "zremrangebyrank":
        return [cmd, key, _int(rng), _int(rng)]
    if cmd in ("zrange", "zrangestore"):
        kind = rng.choice(["rank", "score", "lex"])
        lo, hi = ((_int(rng), _int(rng)) if kind == "rank" else
                  (_bound(rng), _bound(rng)) if kind == "score" else
                  (_lex(rng), _lex(rng)))
        opts = _range_options(rng, ["REV", "REV", "WITHSCORES", "WITHSCORES", "LIMIT", "LIMIT",
                                    "BYSCORE", "BYLEX", "bogus"])
        if kind == "score" and rng.random() < 0.8:
            opts.insert(rng.randint(0, len(opts)), "BYSCORE")
        if kind == "lex" and rng.random() < 0.8:
            opts.insert(rng.randint(0, len(opts)), "bylex")
        if cmd == "zrangestore":
            return [cmd, rng.choice(KEYS), key, lo, hi] + opts
        return [cmd, key, lo, hi] + opts
    if cmd == "zrevrange":
        return [cmd, key, _int(rng), _int(rng)] + _range_options(
            rng, ["WITHSCORES", "WITHSCORES", "WITHSCORES", "LIMIT", "REV"])
    if cmd in ("zrangebyscore", "zrevrangebyscore"):
        return [cmd, key, _bound(rng), _bound(rng)] + _range_options(
            rng, ["WITHSCORES", "LIMIT", "LIMIT", "withscores", "BYSCORE"])
    if cmd in ("zrangebylex", "zrevrangebylex"):
        return [cmd, key, _lex(rng), _lex(rng)] + _range_options(
            rng, ["LIMIT", "LIMIT", "WITHSCORES"])
    if cmd in ("zpopmin", "zpopmax"):
        r = rng.random()
        if r < 0.4:
            return [cmd, key]
        if r < 0.95:
            return [cmd, key, rng.choice([_int(rng), "0", "1", "2", "10"])]
        return [cmd, key, "1", "2"]
    if cmd == "set":
        return ["set", "str", "v"]
    if rng.random() < 0.05:
        return rng.choice([["del", key], ["type", key], ["exists", key]])
    if cmd == "rpush":
        return ["rpush", "lst", "a"]
    return rng.choice([["zadd", key, "1"], ["zadd", key], ["zincrby", key, "1"], ["zscore", key],
                       ["zrange", key, "0"], ["zrangestore", key, key, "0"], ["zcard"],
                       ["zcount", key, "0"], ["zrem", key], ["zpopmin"], ["zrandmember"],
                       ["zmscore", key], ["zrank", key]])


def _pairs(flat):
    return sorted(zip(flat[::2], flat[1::2]))


def _check_random_and_scan(part, redis, rng: random.Random, key: str) -> None:
    """ZRANDMEMBER and ZSCAN: compare what Redis leaves to chance by content."""
    full = normalize(redis.call("zrange", key, "0", "-1", "withscores"))
    if isinstance(full, Err):
        assert part.ncall("zrandmember", key) == full
        assert part.ncall("zscan", key, "0") == full
        return
    members = dict(zip(full[::2], full[1::2]))
    one = part.ncall("zrandmember", key)
    assert (one is None) if not members else one in members
    count = rng.choice([0, 1, 2, 5, 50, -1, -3, -20])
    got = part.ncall("zrandmember", key, str(count), "WITHSCORES")
    expected = min(count, len(members)) if count >= 0 else -count if members else 0
    assert len(got) == 2 * expected
    assert all(members[m] == s for m, s in zip(got[::2], got[1::2]))
    if count > 0:
        assert len(set(got[::2])) == len(got) // 2
    # A full ZSCAN through tokens yields every member once.
    token, seen = b"0", []
    while True:
        page = part.ncall("zscan", key, token, "COUNT", str(rng.randint(1, 4)))
        token, items = page
        seen += items
        if token == b"0":
            break
    assert _pairs(seen) == _pairs(full)


def run_sequence(part, redis, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        argv = random_zset_command(rng)
        ours = part.ncall(*argv)
        theirs = normalize(redis.call(*argv))
        assert ours == theirs, (seed, i, argv)
        if i % 50 == 0:
            _check_random_and_scan(part, redis, rng, rng.choice(KEYS[:3]))
    for key in KEYS[:3]:
        argv = ("zrange", key, "0", "-1", "withscores")
        assert part.ncall(*argv) == normalize(redis.call(*argv))


@pytest.mark.parametrize("seed", range(6))
def test_random_zset_sequences(part, redis, seed):
    run_sequence(part, redis, seed, 700)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_zset_sequences_long(part, redis, seed):
    run_sequence(part, redis, seed, 5000)


def test_same_score_lex_ranges(part, redis):
    """Lex commands on a set whose scores are all equal, as Redis documents them."""
    rng = random.Random(3)
    words = ["%s%d" % (rng.choice("abcde"), rng.randint(0, 30)) for _ in range(80)]
    argv = ["zadd", "w"] + [x for w in words for x in ("0", w)]
    assert part.ncall(*argv) == normalize(redis.call(*argv))
    for i in range(300):
        lo, hi = rng.choice(LEX + ["[c1", "(d2", "[e"]), rng.choice(LEX + ["[c1", "(d2", "[e"])
        cmd = rng.choice(["zrangebylex", "zrevrangebylex", "zlexcount"])
        argv = [cmd, "w", lo, hi]
        if cmd != "zlexcount" and rng.random() < 0.5:
            argv += ["LIMIT", str(rng.randint(-1, 5)), str(rng.randint(-2, 5))]
        assert part.ncall(*argv) == normalize(redis.call(*argv)), (i, argv)
    argv = ["zremrangebylex", "w", "[b", "(d"]
    assert part.ncall(*argv) == normalize(redis.call(*argv))
    assert part.ncall("zrange", "w", "0", "-1") == normalize(redis.call("zrange", "w", "0", "-1"))


def test_score_formatting_matches_redis(part, redis):
    scores = ["0.1", "1e20", "-0.0", "0", "inf", "-inf", "1.5e-7", "3.0", "-2.5", "1e-310",
              "123456789012345678", "0.30000000000000004", "1e15", "1e16", "1e17", "4.5e15",
              "-1e-5", "2.2250738585072014e-308", "1.7976931348623157e308", "0x1p-3", "+7"]
    for i, s in enumerate(scores):
        argv = ["zadd", "f", s, "m%d" % i]
        assert part.ncall(*argv) == normalize(redis.call(*argv))
        argv = ["zscore", "f", "m%d" % i]
        assert part.ncall(*argv) == normalize(redis.call(*argv)), s
    argv = ["zrange", "f", "0", "-1", "withscores"]
    assert part.ncall(*argv) == normalize(redis.call(*argv))
    for inc in ["0.1", "0.2", "-0.3", "1e300", "1e308", "1e308", "-inf"]:
        argv = ["zincrby", "f", inc, "m0"]
        assert part.ncall(*argv) == normalize(redis.call(*argv)), inc
    argv = ["zadd", "f", "INCR", "+inf", "m0"]
    assert part.ncall(*argv) == normalize(redis.call(*argv))  # -inf + inf: NaN error
