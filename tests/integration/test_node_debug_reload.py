"""DEBUG RELOAD on a real `twistd zan-node`: the node closes and reopens its storage as a
restart would, and every key is still there, on the same connection."""

import pytest

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def test_debug_reload_keeps_every_key(zan_node):
    client = RawClient(zan_node.redis_port)
    try:
        for i in range(300):
            assert client.call("set", f"k{i}", f"v{i}") == b"OK"
        client.call("hset", "h", "a", "1", "b", "2")
        client.call("rpush", "l", "x", "y")
        client.call("zadd", "z", "1", "m")
        client.call("sadd", "s", "1", "2")
        client.call("set", "ttl", "v", "ex", "1000")
        assert client.call("debug", "reload") == b"OK"
        assert client.call("dbsize") == 305
        assert client.call("mget", "k0", "k150", "k299") == [b"v0", b"v150", b"v299"]
        assert client.call("hgetall", "h") == [b"a", b"1", b"b", b"2"]
        assert client.call("lrange", "l", "0", "-1") == [b"x", b"y"]
        assert client.call("object", "encoding", "s") == b"intset"
        assert 0 < client.call("ttl", "ttl") <= 1000
        assert client.call("set", "after", "1") == b"OK"
        assert client.call("debug", "reload") == b"OK"
        assert client.call("get", "after") == b"1"
    finally:
        client.close()
