"""Scripts on a 3-node replicated cluster of `twistd zan-node` processes, through
redis-py: `register_script` and `Lock` (which runs Lua) on hash-tagged keys, sent to
every node; keys of two partitions answer CROSSSLOT; counters incremented by scripts
from three threads on three nodes reach the exact total."""

import threading

import pytest
import redis

from tests.integration.test_transactions_cluster import client
from tests.support.cluster import StaticClusterProcs
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    with StaticClusterProcs(3) as c:
        yield c


def test_a_registered_script_from_every_node(cluster):
    for node in cluster.nodes:
        r = client(node)
        tag = f"{{cart:{node.node_id}}}"
        add = r.register_script(
            "redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2]) "
            "redis.call('rpush', KEYS[2], ARGV[1]) "
            "return {redis.call('hget', KEYS[1], ARGV[1]), redis.call('llen', KEYS[2])}")
        assert add(keys=[f"{tag}:items", f"{tag}:log"], args=["apple", 3]) == [b"3", 1]
        assert add(keys=[f"{tag}:items", f"{tag}:log"], args=["apple", 2]) == [b"5", 2]
        for other in cluster.nodes:
            o = client(other)
            assert o.hgetall(f"{tag}:items") == {b"apple": b"5"}
            assert o.lrange(f"{tag}:log", 0, -1) == [b"apple", b"apple"]
            o.close()
        r.close()


def test_keys_of_two_partitions_and_undeclared_keys_are_refused(cluster):
    r = client(cluster.nodes[0])
    keys = [f"spread{i}" for i in range(20)]
    with pytest.raises(redis.ResponseError, match="don.t hash to the same slot"):
        r.eval("return 1", len(keys), *keys)
    with pytest.raises(redis.ResponseError, match="non local key"):
        r.eval("return redis.call('get', 'elsewhere')", 1, "{u}:k")
    assert r.eval("return redis.call('ping')", 0) == b"PONG"
    r.close()


def test_redis_py_locks_from_every_node(cluster):
    clients = [client(node) for node in cluster.nodes]
    name = "{res}:lock"
    first = clients[0].lock(name, timeout=30, blocking=False)
    assert first.acquire()
    for r in clients[1:]:
        assert not r.lock(name, timeout=30, blocking=False).acquire()
    first.extend(10)
    assert 30 < clients[2].pttl(name) / 1000 <= 40
    first.release()
    second = clients[1].lock(name, timeout=30, blocking=False)
    assert second.acquire()
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        first.do_release(b"another owner's token")
    assert clients[0].exists(name) == 1
    second.reacquire()
    second.release()
    assert clients[2].exists(name) == 0
    for r in clients:
        r.close()


def test_script_counters_from_three_nodes_reach_the_exact_total(cluster):
    keys = ["{stock}:a", "{stock}:b"]
    client(cluster.nodes[0]).delete(*keys)
    errors = []
    rounds = 40

    def worker(node):
        r = client(node)
        move = r.register_script(
            "local a = redis.call('incr', KEYS[1]) "
            "local b = redis.call('incrby', KEYS[2], 2) "
            "return {a, b}")
        try:
            for _ in range(rounds):
                move(keys=keys)
                r.incr(keys[0])       # plain writes between the scripts
        except Exception as e:      # reported below, with the others'
            errors.append(repr(e))
        finally:
            r.close()

    threads = [threading.Thread(target=worker, args=(node,)) for node in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors
    for node in cluster.nodes:
        r = client(node)
        assert r.mget(keys) == [str(6 * rounds).encode(), str(6 * rounds).encode()]
        r.close()


def test_replies_of_every_kind_come_back_from_the_leader(cluster):
    for node in cluster.nodes:
        r = client(node)
        key = "{kinds}:k"
        raw = RawClient(node.redis_port)
        argv = [b"EVAL", b"return redis.call('set', KEYS[1], 'x')", b"1", key.encode()]
        raw.send_raw(b"*4\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv))
        assert raw.sock.recv(64) == b"+OK\r\n"      # a status, as the leader answered it
        raw.sock.close()
        assert r.eval("return {1, 'two', {3}, false}", 1, key) == [1, b"two", [3], None]
        with pytest.raises(redis.ResponseError, match="^MYERR boom$"):
            r.eval("return {err='MYERR boom'}", 1, key)
        with pytest.raises(redis.ResponseError, match="not an integer"):
            r.eval("return redis.call('incr', KEYS[1])", 1, key)
        one, error = r.eval("return {1, redis.pcall('incr', KEYS[1])}", 1, key)
        assert one == 1 and "not an integer" in str(error)
        # A failing script keeps the writes made before the error.
        with pytest.raises(redis.ResponseError):
            r.eval("redis.call('set', KEYS[1], ARGV[1]) return redis.call('incr', KEYS[1])",
                   1, key, f"kept{node.node_id}")
        assert r.get(key) == f"kept{node.node_id}".encode()
        r.close()
