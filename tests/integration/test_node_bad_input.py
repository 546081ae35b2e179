"""Hostile input: the node answers like Redis, closes what Redis closes, keeps serving."""

import socket

import pytest

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def _exchange(port, data: bytes, timeout=5.0) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed on us mid-send (it refuses oversized input)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


HOSTILE = [
    b"*-5\r\n",                              # ignored by Redis
    b"*abc\r\n",
    b"*2\r\n$-7\r\nfoo\r\n",
    b"*1\r\n$99999999999999\r\n",
    b"*1\r\n$600000000\r\n",
    b"*3\r\n$3\r\nSET\r\n:1\r\n",
    b"*99999999999\r\n",
    b"\"unbalanced\r\n",
    b"GET 'x\r\n",
    b"*2\r\n$3\r\nGET\r\n$3\r\nfo",              # truncated frame
    b"y" * 70000,                            # just over the inline limit, all of it read
    b"x" * (1 << 20),                        # 1 MiB line without a newline
    b"\x00\xff\xfe garbage\r\n",
    b"PING\r\nPING\r\n*1\r\n$4\r\nPING\r\n",  # inline + multibulk mixed
]


@pytest.mark.parametrize("payload", HOSTILE, ids=lambda p: repr(p[:20]))
def test_hostile_payload_matches_redis(zan_node, redis_server, payload):
    mine, theirs = _exchange(zan_node.redis_port, payload), _exchange(redis_server.port, payload)
    if len(payload) > 200_000:
        # Both servers answer and close while most of the payload is unread, so the kernel
        # may reset the connection before the reply is read: what did arrive must be the
        # error Redis sends.
        expected = b"-ERR Protocol error: too big inline request\r\n"
        assert mine in (expected, b"") and theirs in (expected, b"")
    else:
        assert mine == theirs
    # And the node keeps serving everyone else.
    c = RawClient(zan_node.redis_port)
    assert c.call("ping") == b"PONG"
    c.close()


WRONG = [
    ("get",), ("set", "k"), ("hset", "h", "f"), ("lpush", "l"), ("zadd", "z", "1"),
    ("sadd", "s"), ("expire", "k"), ("incrby", "k", "x"), ("zadd", "z", "nan", "m"),
    ("lrange", "l", "a", "b"), ("mset", "a", "1", "b"), ("select", "x"), ("hello", "4"),
    ("auth", "pw"), ("config", "set", "nosuch", "1"), ("client", "nosuch"),
]


def test_wrong_arity_and_arguments_match_redis(zan_node, redis):
    c = RawClient(zan_node.redis_port)
    c.call("set", "str", "v")
    redis.call("set", "str", "v")
    for argv in WRONG + [("lpush", "str", "x"), ("hget", "str", "f"), ("zscore", "str", "m")]:
        mine, theirs = c.call(*argv), redis.call(*argv)
        assert type(mine) is type(theirs) and str(mine) == str(theirs), argv
    assert c.call("get", "str") == b"v"
    c.close()


def test_huge_value_and_key_are_refused(zan_node):
    c = RawClient(zan_node.redis_port)
    big = c.call("set", "k", "x" * ((8 << 20) + 1))
    assert "invalid value size" in str(big)
    assert "invalid key size" in str(c.call("set", "k" * 10241, "v"))
    assert c.call("set", "k", "ok") == b"OK"
    c.close()


def test_select_other_database_is_refused(zan_node):
    c = RawClient(zan_node.redis_port)
    assert str(c.call("select", "1")) == "ERR DB index is out of range"
    assert c.call("select", "0") == b"OK"
    c.close()
