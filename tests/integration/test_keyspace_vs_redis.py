"""Differential: KEYS RANDOMKEY RENAME RENAMENX COPY MOVE SWAPDB TIME SORT SORT_RO on a
standalone `twistd zan-node` and on redis-server 7.0 started with ``databases 1`` (Zan
has one database).  Keys fall in different partitions of the node, so RENAME, COPY and
SORT's BY/GET/STORE keys cross partitions."""

import random
import time

import pytest

from tests.support.differential import both, check, node_and_redis
from tests.support.node import ZanNode
from tests.support.processes import RedisServer

pytestmark = pytest.mark.integration

KEYS = [f"k{i}" for i in range(8)]
ELEMENTS = ["1", "2", "10", "-3", "a", "b", "3.5", "", "0x10", "1e3"]
NUMERIC = ["1", "2", "10", "-3", "3.5", "0x10", "1e3", " 4", "inf"]


@pytest.fixture(scope="module")
def one_db_redis():
    server = RedisServer("--databases", "1").start()
    yield server
    server.stop()


@pytest.fixture
def pair(zan_node, one_db_redis):
    redis = one_db_redis.client()
    with node_and_redis(zan_node.redis_port, redis) as clients:
        yield clients
    redis.close()


def seed_weights(pair):
    """w_<e>: numeric weights (some missing, some equal); n_<e>: distinct strings for
    every element a list may hold (ALPHA BY ties would leave Redis's order undefined);
    h_<e>: hashes."""
    for i, e in enumerate(ELEMENTS):
        if i % 4 != 3:
            check(pair, "set", f"w_{e}", str((i * 7) % 5))
        check(pair, "set", f"n_{e}", f"{(i * 3) % 10}{e}")
        if i % 3:
            check(pair, "hset", f"h_{e}", "f", f"v{i}", "g", str(i))
    # Values a SORT ... GET ... STORE may put in a list, so that they have n_ keys too.
    for value in [str(n) for n in range(10)] + [f"v{n}" for n in range(10)]:
        if value not in ELEMENTS:
            check(pair, "set", f"n_{value}", f"z{value}")


def dump(pair, key):
    """Compare everything about `key`: type, TTL and content."""
    type_ = check(pair, "type", key)
    check(pair, "ttl", key)
    if type_ == b"string":
        check(pair, "get", key)
    elif type_ == b"list":
        check(pair, "lrange", key, "0", "-1")
    elif type_ == b"set":
        check(pair, "smembers", key, unordered=True)
    elif type_ == b"zset":
        check(pair, "zrange", key, "0", "-1", "withscores")
    elif type_ == b"hash":
        mine, theirs = both(pair, "hgetall", key)
        assert sorted(zip(mine[::2], mine[1::2])) == sorted(zip(theirs[::2], theirs[1::2]))


def make_key(rng, key):
    kind = rng.randrange(5)
    picks = rng.sample(ELEMENTS, rng.randint(1, 5))
    if kind == 0:
        return ("set", key, rng.choice(ELEMENTS))
    if kind == 1:
        return ("rpush", key, *[rng.choice(ELEMENTS) for _ in range(rng.randint(1, 6))])
    if kind == 2:
        return ("sadd", key, *picks)
    if kind == 3:
        return ("zadd", key, *[x for e in picks for x in (str(rng.randint(-3, 3)), e)])
    return ("hset", key, *[x for e in picks for x in ("f" + e, e)])


def gen_sort(rng):
    name = rng.choice(["sort", "sort_ro"])
    argv = [name, rng.choice(KEYS)]
    alpha = rng.random() < 0.4
    by = rng.choice([None, None, "w_*", "n_*", "h_*->g", "nosort"])
    if alpha and by in ("w_*", "h_*->g"):
        by = "n_*"
    if by == "nosort":
        # Without sorting, a set's order is Redis's own; only a stored one is sorted.
        name = argv[0] = "sort"
    if by:
        argv += ["BY", by]
    for _ in range(rng.randint(0, 2)):
        argv += ["GET", rng.choice(["#", "w_*", "h_*->f", "n_*", "nope_*", "fixed"])]
    if rng.random() < 0.5:
        argv += ["LIMIT", str(rng.randint(-1, 3)), str(rng.randint(-1, 4))]
    if rng.random() < 0.5:
        argv.append(rng.choice(["ASC", "DESC", "desc"]))
    if alpha:
        argv.append("ALPHA")
    if by == "nosort" or (name == "sort" and rng.random() < 0.4):
        argv += ["STORE", rng.choice(KEYS)]
    return argv


def gen_command(rng):
    a, b = rng.choice(KEYS), rng.choice(KEYS)
    choices = [
        make_key(rng, a), make_key(rng, a), ("expire", a, str(rng.randint(100, 1000))),
        ("rename", a, b), ("renamenx", a, b), ("copy", a, b), ("copy", a, b, "REPLACE"),
        ("copy", a, b, "DB", "0"), ("copy", a, b, "DB", rng.choice(["1", "-1", "x"])),
        ("copy", a, b, "foo"), ("copy", a, a), ("rename", a, a), ("renamenx", a, a),
        ("move", a, rng.choice(["0", "1", "x", "-1"])),
        ("swapdb", rng.choice(["0", "1", "x"]), rng.choice(["0", "1", "y"])),
        ("keys", rng.choice(["*", "k*", "k[0-3]", "?_*", "*1*", "nope"])),
        ("del", a), ("exists", a, b), gen_sort(rng), gen_sort(rng), gen_sort(rng),
        ("rename", a), ("renamenx", a, b, "c"), ("copy", a), ("move", a), ("swapdb", "0"),
        ("keys",), ("keys", "a", "b"), ("randomkey", "x"), ("time", "x"), ("sort",),
        ("sort_ro",),
    ]
    return rng.choice(choices)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sequences_match_redis(pair, seed):
    rng = random.Random(seed)
    seed_weights(pair)
    for i in range(400):
        argv = gen_command(rng)
        unordered = argv[0] == "keys"
        check(pair, *argv, unordered=unordered)
        if rng.random() < 0.1:
            mine, theirs = both(pair, "randomkey")
            assert (mine is None) == (theirs is None)
    for key in KEYS:
        dump(pair, key)
    check(pair, "keys", "*", unordered=True)
    check(pair, "dbsize")


def test_rename_keeps_every_type_and_its_ttl(pair):
    setup = [("set", "s", "v"), ("rpush", "l", "a", "b", "c"), ("sadd", "st", "x", "y"),
             ("zadd", "z", "1", "a", "2", "b"), ("hset", "h", "f", "v", "g", "w")]
    for argv in setup:
        check(pair, *argv)
        check(pair, "expire", argv[1], "500")
    for n, (_, key, *_rest) in enumerate(setup):
        check(pair, "rename", key, f"r{n}")
        check(pair, "copy", f"r{n}", f"c{n}")
        check(pair, "renamenx", f"c{n}", f"r{n}")
        check(pair, "exists", key)
        dump(pair, f"r{n}")
        dump(pair, f"c{n}")
        check(pair, "copy", f"r{n}", f"c{(n + 1) % 5}", "replace")
    for n in range(5):
        dump(pair, f"c{n}")
    # Writes to a copy leave the original alone.
    check(pair, "rpush", "c1", "d")
    dump(pair, "r1")
    dump(pair, "c1")
    check(pair, "rename", "nokey", "x")
    check(pair, "renamenx", "r0", "r1")
    check(pair, "rename", "r0", "r1")
    dump(pair, "r1")


SORT_CASES = [
    ("rpush", "l", "3", "1", "2", "10", "-1"), ("sort", "l"), ("sort", "l", "desc"),
    ("sort", "l", "alpha"), ("sort", "l", "limit", "1", "2"), ("sort", "l", "limit", "10", "2"),
    ("sort", "l", "limit", "-5", "2"), ("sort", "l", "limit", "0", "-1"),
    ("sort", "l", "limit", "2", "0"), ("sort", "l", "by", "nosort"),
    ("sort", "l", "by", "nosort", "desc", "limit", "1", "2"),
    ("mset", "w_3", "1", "w_1", "3", "w_2", "2", "w_10", "-5"),
    ("sort", "l", "by", "w_*"), ("sort", "l", "by", "w_*", "desc"),
    ("sort", "l", "by", "w_*", "get", "#", "get", "w_*"),
    ("sort", "l", "by", "w_*", "limit", "1", "3", "get", "w_*", "get", "nope_*"),
    ("hset", "h_1", "f", "one"), ("hset", "h_2", "f", "two"), ("hset", "h_3", "g", "x"),
    ("sort", "l", "get", "h_*->f", "get", "h_*->", "get", "h_*->g"),
    ("sort", "l", "by", "h_*->f", "alpha", "get", "#"),
    ("sort", "l", "store", "dst"), ("lrange", "dst", "0", "-1"), ("type", "dst"),
    ("sort", "l", "by", "w_*", "get", "h_*->f", "store", "dst"), ("lrange", "dst", "0", "-1"),
    ("sort", "nokey", "store", "dst"), ("exists", "dst"),
    ("sort_ro", "l", "store", "dst"), ("sort_ro", "l", "by", "w_*", "get", "#"),
    ("rpush", "bad", "1", "x"), ("sort", "bad"), ("sort", "bad", "alpha"),
    ("sort", "bad", "by", "nosort"), ("set", "w_x", "nan"), ("sort", "l", "by", "w_*"),
    ("set", "str", "v"), ("sort", "str"), ("sort_ro", "str"), ("sort", "str", "foo"),
    ("sort", "l", "limit", "x", "1"), ("sort", "l", "limit", "1"), ("sort", "l", "by"),
    ("sort", "l", "get"), ("sort", "l", "store"),
    ("zadd", "z", "3", "a", "1", "c", "2", "b"), ("sort", "z", "alpha"),
    ("sort", "z", "by", "nosort"), ("sort", "z", "by", "nosort", "desc", "limit", "0", "2"),
    ("sort", "z", "by", "nosort", "limit", "1", "5"),
    ("sadd", "s", "5", "3", "4"), ("sort", "s"), ("sort", "s", "desc"),
    ("sort", "s", "by", "nosort", "store", "dst2"), ("lrange", "dst2", "0", "-1"),
    ("set", "dst3", "x"), ("expire", "dst3", "100"), ("sort", "s", "store", "dst3"),
    ("ttl", "dst3"), ("type", "dst3"),
    ("rpush", "nums", "1.5", "1e2", "0x1A", "-inf", "  7", ""), ("sort", "nums"),
    ("rpush", "junk", "7 "), ("sort", "junk"), ("rpush", "big", "1e400"), ("sort", "big"),
    ("sort", "l", "store", "l"), ("lrange", "l", "0", "-1"),
]


def test_sort_cases_match_redis(pair):
    for argv in SORT_CASES:
        check(pair, *argv)


def test_move_swapdb_time_and_arity(pair):
    for argv in [("set", "a", "1"), ("move", "a", "0"), ("move", "a", "1"),
                 ("move", "a", "3000000000"), ("move", "nokey", "1"), ("swapdb", "0", "0"),
                 ("swapdb", "0", "1"), ("swapdb", "x", "0"), ("swapdb", "0", "x"),
                 ("swapdb", "3000000000", "0"), ("copy", "a", "b", "db", "3000000000"),
                 ("copy", "a", "b", "db"), ("copy", "a", "b", "replace", "db", "0"),
                 ("move",), ("move", "a", "0", "1"), ("swapdb", "0", "0", "0"), ("time", "1"),
                 ("randomkey", "1"), ("keys",), ("rename", "a"), ("renamenx", "a"),
                 ("copy", "a"), ("sort",), ("sort_ro",)]:
        check(pair, *argv)
    zan, redis = pair
    seconds, micros = zan.call("time")
    assert abs(int(seconds) - time.time()) < 5 and 0 <= int(micros) < 1_000_000
    assert zan.call("randomkey") in (b"a", b"b")
    check(pair, "flushall")
    check(pair, "randomkey")


def test_namespaced_keys_and_sort_patterns(one_db_redis):
    """In a namespace other than the compat one, KEYS and RANDOMKEY spell keys with the
    namespace, and SORT's patterns name keys of the sorted key's namespace; what Redis
    answers for the same key names.  A pattern naming another namespace reads as missing."""
    namespaces = [{"name": "default", "partition_num": 4}, {"name": "app", "partition_num": 4}]
    node = ZanNode(server_conf={"namespaces": namespaces, "default_namespace": "default"}).start()
    redis = one_db_redis.client()
    try:
        with node_and_redis(node.redis_port, redis) as pair:
            setup = [("rpush", "app:t:l", "3", "1", "2", "10"), ("set", "w_1", "x"),
                     ("mset", "app:t:w_1", "4", "app:t:w_2", "3", "app:t:w_3", "2"),
                     ("hset", "app:t:h_2", "f", "two"), ("hset", "app:t:h_10", "f", "ten"),
                     ("set", "plain", "v"), ("sadd", "app:u:s", "b", "a")]
            for argv in setup:
                check(pair, *argv)
            check(pair, "keys", "*", unordered=True)
            check(pair, "keys", "app:t:*", unordered=True)
            check(pair, "keys", "app:?:[sl]", unordered=True)
            for argv in [("sort", "app:t:l", "by", "app:t:w_*", "get", "#", "get", "app:t:h_*->f"),
                         ("sort", "app:t:l", "by", "app:t:w_*", "desc", "limit", "1", "2"),
                         ("sort", "app:t:l", "by", "app:t:h_*->f", "alpha", "get", "app:t:w_*"),
                         ("sort", "app:t:l", "get", "#", "store", "app:t:out"),
                         ("lrange", "app:t:out", "0", "-1"), ("sort", "app:u:s", "alpha"),
                         ("rename", "app:t:l", "app:u:l"), ("copy", "app:u:l", "app:t:l2"),
                         ("lrange", "app:t:l2", "0", "-1")]:
                check(pair, *argv)
            zan = pair[0]
            # Keys of the compat namespace are not the app namespace's to read.
            assert zan.call("sort", "app:u:l", "get", "w_*") == [None] * 4
            # Every weight missing: all score 0, so the elements' bytes decide.
            assert zan.call("sort", "app:u:l", "by", "w_*", "get", "#") == [
                b"1", b"10", b"2", b"3"]
            assert str(zan.call("sort", "app:u:l", "store", "other")).startswith("CROSSSLOT")
            assert str(zan.call("rename", "app:u:l", "plain")).startswith("CROSSSLOT")
            every = set(zan.call("keys", "*"))
            assert {zan.call("randomkey") for _ in range(20)} <= every
    finally:
        redis.close()
        node.cleanup()


NEW_COMMANDS = ("keys randomkey rename renamenx copy move swapdb time sort sort_ro zunion "
                "zinter zdiff zunionstore zinterstore zdiffstore zintercard zmpop lmpop bitop "
                "bitfield bitfield_ro lcs").split()


def test_command_info_and_getkeys_of_the_new_commands(pair):
    zan, redis = pair
    for name in NEW_COMMANDS:
        # Name, arity, flags and key range; ACL categories and key specs are not modelled.
        assert zan.call("command", "info", name)[0][:6] == redis.call("command", "info", name)[0][:6]
    for argv in [("zunionstore", "d", "2", "a", "b"), ("zunion", "2", "a", "b"),
                 ("sort", "a", "limit", "0", "1", "store", "b"), ("sort_ro", "a", "by", "b"),
                 ("bitop", "and", "d", "a", "b"), ("lcs", "a", "b"), ("zmpop", "2", "a", "b", "min"),
                 ("rename", "a", "b"), ("copy", "a", "b", "replace")]:
        check(pair, "command", "getkeys", *argv)
