"""The standalone node through its real entry point, driven by real clients."""

import shutil
import subprocess

import pytest
import redis as redis_py

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def cli(node, *args):
    out = subprocess.run(["redis-cli", "-p", str(node.redis_port), *args],
                         capture_output=True, timeout=30)
    return out.stdout.decode().strip()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")
def test_redis_cli(zan_node):
    assert cli(zan_node, "set", "foo", "bar") == "OK"
    assert cli(zan_node, "get", "foo") == "bar"
    assert cli(zan_node, "ping") == "PONG"
    assert cli(zan_node, "dbsize") == "1"
    assert "redis_version:7.0" in cli(zan_node, "info")
    assert cli(zan_node, "lpush", "l", "a", "b") == "2"
    assert cli(zan_node, "lrange", "l", "0", "-1") == "b\na"
    assert cli(zan_node, "nosuch").startswith("ERR unknown command 'nosuch'")


def test_redis_py_protocol_2(zan_node):
    r = redis_py.Redis(port=zan_node.redis_port, protocol=2)
    assert r.ping()
    assert r.set("k", "v", ex=100)
    assert r.get("k") == b"v"
    assert 0 < r.ttl("k") <= 100
    assert r.hset("h", mapping={"a": 1, "b": 2}) == 2
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert r.sadd("s", "x", "y") == 2
    assert r.smembers("s") == {b"x", b"y"}
    assert r.zadd("z", {"m1": 1.5, "m2": 0.5}) == 2
    assert r.zrange("z", 0, -1, withscores=True) == [(b"m2", 0.5), (b"m1", 1.5)]
    assert r.incr("n") == 1 and r.incrby("n", 10) == 11
    assert r.mset({"a1": "1", "a2": "2", "a3": "3"})
    assert r.mget("a1", "a2", "a3", "nope") == [b"1", b"2", b"3", None]
    assert r.delete("a1", "a2", "nope") == 2
    assert sorted(r.scan_iter(match="a*")) == [b"a3"]
    with pytest.raises(redis_py.ResponseError, match="WRONGTYPE"):
        r.lpush("k", "x")
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
        pipe.get(f"p{i}")
    replies = pipe.execute()
    assert replies[1::2] == [str(i).encode() for i in range(100)]
    r.close()


def test_txredisapi(zan_node):
    """txredisapi (the Twisted client the cluster uses) against the node, in a subprocess
    with its own reactor so this test does not share the global one."""
    script = f"""
import sys
from twisted.internet import task, defer
import txredisapi

async def main(reactor):
    conn = await txredisapi.Connection("127.0.0.1", {zan_node.redis_port}, reconnect=False,
                                       charset=None, convertNumbers=False)
    assert (await conn.set(b"tx", b"1")) in ("OK", b"OK"), "set"
    assert (await conn.get(b"tx")) == b"1", "get"
    assert (await conn.incr(b"tx")) == 2, "incr"
    assert (await conn.hset(b"txh", b"f", b"v")) == 1, "hset"
    assert (await conn.hget(b"txh", b"f")) == b"v", "hget"
    await conn.disconnect()

task.react(lambda r: defer.ensureDeferred(main(r)))
"""
    import sys
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()


def test_restart_keeps_data(zan_node):
    c = RawClient(zan_node.redis_port)
    for i in range(200):
        assert c.call("set", f"k{i}", f"v{i}") == b"OK"
    c.call("rpush", "list", "a", "b", "c")
    c.call("zadd", "z", "1", "one")
    c.call("set", "ttl", "x", "EX", "1000")
    c.close()
    zan_node.restart()
    c = RawClient(zan_node.redis_port)
    assert [c.call("get", f"k{i}") for i in range(200)] == [f"v{i}".encode() for i in range(200)]
    assert c.call("lrange", "list", "0", "-1") == [b"a", b"b", b"c"]
    assert c.call("zscore", "z", "one") == b"1"
    assert 990 <= c.call("ttl", "ttl") <= 1000
    assert c.call("dbsize") == 203
    c.close()


def test_http_admin(zan_node):
    import json
    import urllib.request
    base = f"http://127.0.0.1:{zan_node.http_port}"
    assert urllib.request.urlopen(base + "/ping").read() == b"OK"
    info = json.load(urllib.request.urlopen(base + "/info"))
    assert info["redis_port"] == str(zan_node.redis_port)
    RawClient(zan_node.redis_port).call("set", "x", "y")
    stats = json.load(urllib.request.urlopen(base + "/stats"))
    assert len(stats["stats"]["ns_stats"]) == 8
    assert sum(s["internal_stats"]["key_num"] for s in stats["stats"]["ns_stats"]) == 1
    req = urllib.request.Request(base + "/kv/optimize/default", method="POST")
    assert urllib.request.urlopen(req).status == 200
    req = urllib.request.Request(base + "/kv/optimize/nosuchns", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 404 and "nosuchns" in json.load(e.value)["message"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/stats?leader_only=maybe")
    assert e.value.code == 400
    metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    assert "zan_commands_processed_total" in metrics and 'zan_keys{partition="default-0"}' in metrics


def test_expired_keys_are_invisible_then_purged(zan_node):
    import time
    c = RawClient(zan_node.redis_port)
    for i in range(50):
        c.call("set", f"e{i}", "v", "PX", "200")
        c.call("hset", f"h{i}", "f", "v")
        c.call("pexpire", f"h{i}", "200")
    c.call("set", "keep", "v")
    assert c.call("dbsize") == 101
    time.sleep(0.3)
    assert c.call("get", "e1") is None and c.call("hget", "h1", "f") is None
    deadline = time.monotonic() + 10
    while c.call("dbsize") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert c.call("dbsize") == 1
    assert c.call("get", "keep") == b"v"
    c.close()


def test_server_commands_match_redis(zan_node, redis):
    c = RawClient(zan_node.redis_port)
    for argv in [("ping",), ("ping", "hi"), ("echo", "x"), ("select", "0"),
                 ("client", "setname", "myname"), ("client", "getname"),
                 ("client", "setname", "bad name"), ("client", "nosuch"),
                 ("config", "get", "maxmemory"), ("config", "set", "nosuch", "1"),
                 ("hello", "4"), ("hello", "x"), ("auth", "pw"), ("ping", "a", "b")]:
        mine, theirs = c.call(*argv), redis.call(*argv)
        assert type(mine) is type(theirs) and str(mine) == str(theirs), argv
    assert str(c.call("hello", "3")).startswith("NOPROTO")
    hello = c.call("hello", "2")
    assert dict(zip(hello[::2], hello[1::2]))[b"proto"] == 2
    assert isinstance(c.call("client", "id"), int)
    assert c.call("command", "count") == len(c.call("command"))
    info = c.call("command", "info", "get", "nosuch")
    assert info[0][:2] == [b"get", 2] and info[1] is None
    docs = c.call("command", "docs", "set")
    assert docs[0] == b"set"
    text = c.call("info").decode()
    for field in ("redis_version:", "arch_bits:", "cluster_enabled:0", "# Keyspace"):
        assert field in text
    assert c.call("quit") == b"OK"
    c.close()


def test_requirepass():
    from tests.support.node import ZanNode
    node = ZanNode(extra_args=["--requirepass", "s3cret"]).start()
    try:
        c = RawClient(node.redis_port)
        assert str(c.call("get", "k")) == "NOAUTH Authentication required."
        assert str(c.call("auth", "wrong")).startswith("WRONGPASS")
        assert str(c.call("ping")) == "NOAUTH Authentication required."
        assert c.call("auth", "s3cret") == b"OK"
        assert c.call("set", "k", "v") == b"OK" and c.call("get", "k") == b"v"
        c.close()
    finally:
        node.cleanup()
