"""MULTI, EXEC, DISCARD, WATCH and UNWATCH on a standalone `twistd zan-node`, side by side
with redis-server 7.0: replies byte for byte, over one connection and over two (one
watches and executes, the other writes in between)."""

from __future__ import annotations

import random
import time

import pytest
import redis as redis_py

from tests.support.differential import watch_exec_rounds
from tests.support.harness import normalize
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(zan_node, redis_server):
    """Two connections to each server: (zan_a, zan_b, redis_a, redis_b), both flushed."""
    clients = [RawClient(zan_node.redis_port), RawClient(zan_node.redis_port),
               redis_server.client(), redis_server.client()]
    clients[0].call("FLUSHALL")
    clients[2].call("FLUSHALL")
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def same(zan, red, *argv):
    mine, theirs = normalize(zan.call(*argv)), normalize(red.call(*argv))
    assert mine == theirs, (argv, mine, theirs)
    return mine


SCRIPTS = {
    "errors_outside_multi": [("EXEC",), ("DISCARD",), ("UNWATCH",), ("WATCH",)],
    "nesting_and_watch_inside": [("MULTI",), ("MULTI",), ("WATCH", "k"), ("SET", "k", "1"),
                                 ("EXEC",), ("GET", "k")],
    "queueing_errors_abort": [("MULTI",), ("SET", "a", "1"), ("NOPE", "x"), ("GET",),
                              ("EXEC",), ("GET", "a")],
    "arity_error_aborts": [("MULTI",), ("INCR",), ("SET", "a", "1"), ("EXEC",),
                           ("EXISTS", "a")],
    "runtime_error_fails_alone": [("SET", "s", "str"), ("MULTI",), ("INCR", "n"),
                                  ("LPUSH", "s", "x"), ("INCR", "n"), ("SADD", "set", "m"),
                                  ("EXEC",), ("GET", "n"), ("GET", "s")],
    "discard": [("MULTI",), ("SET", "a", "1"), ("DISCARD",), ("GET", "a"), ("EXEC",)],
    "empty": [("MULTI",), ("EXEC",)],
    "reads_see_earlier_writes": [("MULTI",), ("SET", "a", "1"), ("INCRBY", "a", "5"),
                                 ("GET", "a"), ("RPUSH", "l", "x", "y"), ("LRANGE", "l", "0", "-1"),
                                 ("DEL", "l"), ("RPUSH", "l", "z"), ("LRANGE", "l", "0", "-1"),
                                 ("SADD", "s1", "a", "b"), ("SADD", "s2", "b", "c"),
                                 ("SINTERSTORE", "s3", "s1", "s2"), ("SMEMBERS", "s3"),
                                 ("MSET", "m1", "1", "m2", "2"), ("MGET", "m1", "m2", "a"),
                                 ("DBSIZE",), ("EXEC",), ("DBSIZE",), ("LRANGE", "l", "0", "-1")],
    "server_commands_inside": [("MULTI",), ("PING",), ("ECHO", "hi"), ("SET", "a", "1"),
                               ("EXEC",)],
    "own_write_after_watch_aborts": [("SET", "w", "1"), ("WATCH", "w"), ("SET", "w", "2"),
                                     ("MULTI",), ("SET", "w", "3"), ("EXEC",), ("GET", "w")],
    "unwatch_forgets": [("WATCH", "w"), ("SET", "w", "2"), ("UNWATCH",), ("MULTI",),
                        ("SET", "w", "3"), ("EXEC",), ("GET", "w")],
    "discard_unwatches": [("WATCH", "w"), ("MULTI",), ("DISCARD",), ("SET", "w", "2"),
                          ("MULTI",), ("SET", "w", "4"), ("EXEC",)],
    "watch_missing_key_then_create": [("WATCH", "x"), ("SET", "x", "1"), ("MULTI",),
                                      ("GET", "x"), ("EXEC",)],
    "untouched_watch_runs": [("SET", "w", "1"), ("WATCH", "w", "other"), ("MULTI",),
                             ("INCR", "w"), ("EXEC",), ("GET", "w")],
    "flushall_modifies": [("SET", "w", "1"), ("WATCH", "w"), ("FLUSHALL",), ("MULTI",),
                          ("SET", "w", "2"), ("EXEC",)],
    "del_modifies": [("SET", "w", "1"), ("WATCH", "w"), ("DEL", "w"), ("MULTI",),
                     ("SET", "w", "2"), ("EXEC",), ("GET", "w")],
    "failed_del_does_not_modify": [("WATCH", "w"), ("DEL", "w"), ("MULTI",),
                                   ("SET", "w", "2"), ("EXEC",), ("GET", "w")],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripted_transactions_match_redis(pair, name):
    zan, _, red, _ = pair
    for argv in SCRIPTS[name]:
        same(zan, red, *argv)


def test_a_write_by_another_connection_aborts_exec(pair):
    zan_a, zan_b, red_a, red_b = pair
    for a, b in ((zan_a, zan_b), (red_a, red_b)):
        a.call("SET", "w", "1")
        assert a.call("WATCH", "w") == b"OK"
        b.call("SET", "w", "1")             # same value: still a modification
        a.call("MULTI")
        a.call("SET", "w", "mine")
    assert normalize(zan_a.call("EXEC")) == normalize(red_a.call("EXEC")) is None
    assert zan_a.call("GET", "w") == b"1"


def test_a_watched_key_that_expires_aborts_exec(pair):
    zan, _, red, _ = pair
    for c in (zan, red):
        c.call("SET", "t", "1", "PX", "150")
        c.call("WATCH", "t")
    time.sleep(0.3)
    for c in (zan, red):
        c.call("MULTI")
        c.call("SET", "u", "1")
    assert normalize(zan.call("EXEC")) == normalize(red.call("EXEC")) is None


def test_seeded_watch_and_exec_over_two_connections_match_redis(pair):
    """One connection WATCHes, reads, queues and EXECs; the other writes in between."""
    zan_a, zan_b, red_a, red_b = pair
    rng = random.Random(5)
    keys = [f"k{i}" for i in range(8)]
    writes = [lambda k: ("SET", k, str(rng.randrange(5))), lambda k: ("INCR", k),
              lambda k: ("DEL", k), lambda k: ("SADD", k + "s", "m"),
              lambda k: ("RPUSH", k + "l", "x")]
    watch_exec_rounds(zan_a, zan_b, red_a, red_b, rng, keys, writes, 150)
    for k in keys:
        same(zan_a, red_a, "GET", k)


def test_redis_py_pipeline_and_optimistic_locking(zan_node):
    r = redis_py.Redis(port=zan_node.redis_port, protocol=2)
    r.flushall()
    p = r.pipeline(transaction=True)
    p.set("a", 1).incr("a").sadd("s", "x").get("a").lpush("a", "x").mset({"k1": 1, "k2": 2})
    result = p.execute(raise_on_error=False)
    assert result[:4] == [True, 2, 1, b"2"] and result[5] is True
    assert isinstance(result[4], redis_py.ResponseError)
    r.mset({"acct:a": 100, "acct:b": 0})

    def transfer(pipe):
        a, b = int(pipe.get("acct:a")), int(pipe.get("acct:b"))
        pipe.multi()
        pipe.set("acct:a", a - 10)
        pipe.set("acct:b", b + 10)

    for _ in range(5):
        r.transaction(transfer, "acct:a", "acct:b")
    assert r.mget("acct:a", "acct:b") == [b"50", b"50"]
    r.close()


def test_an_open_multi_is_discarded_when_the_client_goes(zan_node):
    c = RawClient(zan_node.redis_port)
    c.call("MULTI")
    c.call("SET", "left", "1")
    c.close()
    c = RawClient(zan_node.redis_port)
    assert c.call("GET", "left") is None
    c.close()


def test_a_ten_thousand_command_transaction_applies_whole(zan_node):
    c = RawClient(zan_node.redis_port, timeout=60)
    c.call("MULTI")
    for i in range(10000):
        key = b"c%d" % (i % 100)
        c.send_raw(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
    for _ in range(10000):
        assert c.read_reply() == b"QUEUED"
    replies = c.call("EXEC")
    assert len(replies) == 10000 and replies[-1] == 100
    assert c.call("DBSIZE") == 100
    c.close()
