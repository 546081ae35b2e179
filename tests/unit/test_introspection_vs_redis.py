"""OBJECT and DEBUG against a real redis-server 7.0: encodings of every
type on both sides of every threshold, before and after CONFIG SET of the thresholds, and
the error replies, byte for byte."""

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.support.harness import Err, normalize
from zan.errors import ZanError
from zan.node.config import load_config
from zan.node.service import NodeService
from zan.resp.protocol import ClientState


@pytest.fixture
def redis(redis):
    """The shared redis-server, with the thresholds and policies the tests change put back
    to Redis's defaults afterwards."""
    try:
        yield redis
    finally:
        redis.call("config", "set", "hash-max-listpack-entries", "512",
                   "hash-max-listpack-value", "64", "zset-max-listpack-entries", "128",
                   "zset-max-listpack-value", "64", "set-max-intset-entries", "512",
                   "list-max-listpack-size", "-2", "maxmemory", "0",
                   "maxmemory-policy", "noeviction")


class Node:
    def __init__(self, path):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.service = NodeService(load_config(None, {"data_dir": str(path)}), self.clock)
        self.service.open_storage()
        self.client = ClientState(id=1, addr="127.0.0.1:1", created=0.0)

    def call(self, *argv):
        try:
            result = self.service.dispatcher.dispatch(self.client, [a.encode() for a in argv])
        except ZanError as e:
            return normalize(e)
        for _ in range(100):
            if not isinstance(result, Deferred) or result.called:
                break
            self.clock.advance(0.01)
        if isinstance(result, Deferred):
            box = []
            result.addBoth(box.append)
            result = box[0]
            if hasattr(result, "value"):
                result = result.value
        return normalize(result)

    def close(self):
        self.service.close_storage()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.close()


def check(node, redis, *argv):
    ours = node.call(*argv)
    theirs = normalize(redis.call(*argv))
    assert ours == theirs, argv
    return ours


def idle(node, redis, key):
    """OBJECT IDLETIME: Zan answers 0 (it keeps no access clock); redis-server counts
    whole seconds since the access, which a loaded machine can make 1 or more."""
    assert node.call("object", "idletime", key) == 0
    assert isinstance(normalize(redis.call("object", "idletime", key)), int)


def both(node, redis, *argv):
    node.call(*argv)
    redis.call(*argv)


def test_strings(node, redis):
    for i, value in enumerate(["0", "9999", "10000", "-1", "123", "01", "-0", " 1", "1.5",
                               "9223372036854775807", "9223372036854775808",
                               "-9223372036854775808", "", "a" * 44, "a" * 45, "x" * 100]):
        both(node, redis, "set", f"s{i}", value)
        check(node, redis, "object", "encoding", f"s{i}")
        check(node, redis, "object", "refcount", f"s{i}")
    both(node, redis, "incr", "counter")
    check(node, redis, "object", "encoding", "counter")


def test_lists_sets_hashes_zsets_across_default_thresholds(node, redis):
    both(node, redis, "rpush", "l", "a")
    check(node, redis, "object", "encoding", "l")
    both(node, redis, "sadd", "si", *[str(i) for i in range(512)])
    check(node, redis, "object", "encoding", "si")
    both(node, redis, "sadd", "si", "512")
    check(node, redis, "object", "encoding", "si")
    both(node, redis, "sadd", "sm", "1", "x")
    check(node, redis, "object", "encoding", "sm")
    both(node, redis, "hset", "h", *[str(i) for i in range(256)])
    check(node, redis, "object", "encoding", "h")
    both(node, redis, "hset", "h", "f", "v" * 64)
    check(node, redis, "object", "encoding", "h")
    both(node, redis, "hset", "h", "g", "v" * 65)
    check(node, redis, "object", "encoding", "h")
    for i in range(257):
        both(node, redis, "hset", "h2", f"f{i}", "v")
    check(node, redis, "object", "encoding", "h2")
    both(node, redis, "hset", "h2", "f257", "v")
    check(node, redis, "object", "encoding", "h2")
    both(node, redis, "zadd", "z", *[x for i in range(128) for x in (str(i), f"m{i}")])
    check(node, redis, "object", "encoding", "z")
    both(node, redis, "zadd", "z", "1", "extra")
    check(node, redis, "object", "encoding", "z")
    both(node, redis, "zadd", "z2", "1", "m" * 64)
    check(node, redis, "object", "encoding", "z2")
    both(node, redis, "zadd", "z3", "1", "m" * 65)
    check(node, redis, "object", "encoding", "z3")


@pytest.mark.parametrize("name,value", [
    ("set-max-intset-entries", "2"), ("set-max-intset-entries", "0"),
    ("hash-max-ziplist-entries", "2"), ("hash-max-listpack-entries", "0"),
    ("hash-max-listpack-value", "3"), ("zset-max-ziplist-entries", "2"),
    ("zset-max-listpack-entries", "0"), ("zset-max-listpack-value", "3"),
    ("list-max-ziplist-size", "1"), ("list-max-listpack-size", "-5")])
def test_encodings_after_config_set_of_thresholds(node, redis, name, value):
    check(node, redis, "config", "set", name, value)
    both(node, redis, "sadd", "s1", "1", "2")
    both(node, redis, "sadd", "s2", "1", "2", "3")
    both(node, redis, "hset", "h1", "a", "bcd", "e", "f")
    both(node, redis, "hset", "h2", "a", "b", "c", "d", "e", "f")
    both(node, redis, "hset", "h3", "abcd", "1")
    both(node, redis, "zadd", "z1", "1", "a", "2", "b")
    both(node, redis, "zadd", "z2", "1", "a", "2", "b", "3", "c")
    both(node, redis, "zadd", "z3", "1", "abcd")
    both(node, redis, "rpush", "l", "a", "b", "c")
    for key in ("s1", "s2", "h1", "h2", "h3", "z1", "z2", "z3", "l"):
        check(node, redis, "object", "encoding", key)


def test_freq_idletime_refcount_under_policies(node, redis):
    both(node, redis, "set", "k", "v")
    both(node, redis, "set", "n", "5")
    for sub in ("freq", "idletime", "refcount", "encoding"):
        check(node, redis, "object", sub, "missing")
    check(node, redis, "object", "freq", "k")
    idle(node, redis, "k")
    check(node, redis, "object", "refcount", "k")
    check(node, redis, "config", "set", "maxmemory-policy", "allkeys-lfu")
    both(node, redis, "set", "fresh", "v")
    check(node, redis, "object", "freq", "fresh")
    check(node, redis, "object", "idletime", "fresh")   # an error under LFU
    check(node, redis, "config", "set", "maxmemory", "1gb")
    both(node, redis, "set", "n2", "7")
    check(node, redis, "object", "refcount", "n2")
    check(node, redis, "object", "encoding", "n2")


@pytest.mark.parametrize("argv", [
    ("object",), ("object", "help"), ("object", "HELP", "x"), ("object", "encoding"),
    ("object", "encoding", "a", "b"), ("object", "nosuch"), ("object", "nosuch", "k"),
    ("object", "freq"), ("object", "idletime"), ("object", "refcount", "a", "b"),
    ("debug",), ("debug", "nosuch"), ("debug", "sleep"), ("debug", "sleep", "0", "1"),
    ("debug", "sleep", "0"), ("debug", "sleep", "x"), ("debug", "set-active-expire", "1"),
    ("debug", "set-active-expire"), ("debug", "object"), ("debug", "object", "missing"),
    ("debug", "reload", "bad"), ("debug", "quicklist-packed-threshold", "1gb"),
    ("debug", "quicklist-packed-threshold", "5gb"),
    ("debug", "quicklist-packed-threshold", "x"), ("debug", "change-repl-id"),
    ("debug", "set-disable-deny-scripts", "0"), ("debug", "pause-cron", "0"),
    ("debug", "replybuffer", "peak-reset-time", "100"), ("debug", "replybuffer", "x", "1"),
    ("debug", "replybuffer", "resizing", "1"), ("debug", "help"), ("debug", "help", "x"),
    ("debug", "error", "ERR custom"), ("debug", "change-repl-id", "x"),
])
def test_replies_and_errors(node, redis, argv):
    check(node, redis, *argv)


def test_debug_object_line(node, redis):
    both(node, redis, "set", "k", "123")
    ours = node.call("debug", "object", "k")
    assert ours.startswith(b"Value at:0x") and b" refcount:2147483647 encoding:int " in ours
    theirs = normalize(redis.call("debug", "object", "k"))
    assert [f.split(b":")[0] for f in ours.split()] == [f.split(b":")[0] for f in theirs.split()]


def test_tuning_switches_redis_70_does_not_know_are_accepted(node):
    for argv in (("debug", "jmap"), ("debug", "stringmatch-len"), ("debug", "dict-resizing", "1"),
                 ("debug", "listpack", "k"), ("debug", "quicklist", "k")):
        assert node.call(*argv) == b"OK"


def test_set_active_expire_stops_the_sweeper(node):
    node.call("set", "k", "v", "px", "10")
    assert node.call("debug", "set-active-expire", "0") == b"OK"
    node.clock.advance(5)
    node.service.sweep_once()
    assert node.service.keyspace_counts()[0] == 1
    node.call("debug", "set-active-expire", "1")
    node.service.sweep_once()
    assert node.service.keyspace_counts()[0] == 0


def test_debug_reload_keeps_every_key(node):
    for i in range(50):
        node.call("set", f"k{i}", str(i))
    node.call("hset", "h", "a", "1")
    assert node.call("debug", "reload") == b"OK"
    assert node.call("dbsize") == 51
    assert node.call("get", "k7") == b"7"
    assert node.call("hget", "h", "a") == b"1"
    node.call("set", "after", "1")
    assert node.call("get", "after") == b"1"


def test_errors_are_text_not_exceptions(node):
    assert isinstance(node.call("object", "nosuch"), Err)


def test_debug_sleep_blocks_the_node(node):
    import time
    start = time.monotonic()
    assert node.call("debug", "sleep", "0.2") == b"OK"
    assert time.monotonic() - start >= 0.2


def test_debug_reload_is_refused_without_a_local_log(node):
    committer, node.service.committer = node.service.committer, None   # as a replicated node
    try:
        assert node.call("debug", "reload") == "ERR DEBUG RELOAD is not supported on a " \
                                               "replicated node"
    finally:
        node.service.committer = committer
