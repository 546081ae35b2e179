"""Transactions on a 3-node replicated cluster of `twistd zan-node` processes, through
redis-py: `pipeline(transaction=True)` and the optimistic-locking helper
(`Redis.transaction`: WATCH, read, MULTI, write, retry when EXEC aborts) on hash-tagged
keys, sent to every node; keys of two partitions answer CROSSSLOT; seeded WATCH/EXEC
sequences over two connections (to two nodes) side by side with redis-server."""

import itertools
import time
import random
import threading

import pytest
import redis

from zan.node.namespaces import hash_tag, partition_of
from tests.support.cluster import StaticClusterProcs
from tests.support.differential import check, watch_exec_rounds
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    with StaticClusterProcs(3) as c:
        yield c


def client(node) -> redis.Redis:
    return redis.Redis(port=node.redis_port, protocol=2, socket_timeout=15)


def test_a_transaction_pipeline_from_every_node(cluster):
    for node in cluster.nodes:
        r = client(node)
        tag = f"{{order:{node.node_id}}}"
        pipe = r.pipeline(transaction=True)
        pipe.set(f"{tag}:state", "paid").hset(f"{tag}:items", mapping={"a": 1, "b": 2})
        pipe.incrby(f"{tag}:total", 30).lpush(f"{tag}:log", "created", "paid")
        pipe.get(f"{tag}:state")
        assert pipe.execute() == [True, 2, 30, 2, b"paid"]
        other = client(cluster.nodes[node.node_id % 3])
        assert other.hgetall(f"{tag}:items") == {b"a": b"1", b"b": b"2"}
        assert other.lrange(f"{tag}:log", 0, -1) == [b"paid", b"created"]
        r.close()
        other.close()


def test_optimistic_locking_loses_no_update(cluster):
    """Three clients, one per node, each add 1 to a counter 15 times with a plain read
    and write guarded by WATCH: any lost update shows in the final count."""
    key = "{bank}:counter"
    client(cluster.nodes[0]).set(key, 0)
    errors = []
    retries = []

    def worker(node):
        r = client(node)
        attempts = [0]

        def add_one(pipe):
            attempts[0] += 1
            value = int(pipe.get(key))
            pipe.multi()
            pipe.set(key, value + 1)
        try:
            for _ in range(15):
                r.transaction(add_one, key)
        except Exception as e:      # reported below, with the others'
            errors.append(repr(e))
        finally:
            retries.append(attempts[0] - 15)
            r.close()

    threads = [threading.Thread(target=worker, args=(node,)) for node in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert int(client(cluster.nodes[2]).get(key)) == 45
    # The clients did collide (else the test would prove nothing about WATCH).
    assert sum(retries) > 0


def test_keys_of_two_partitions_abort_the_transaction(cluster):
    r = client(cluster.nodes[1])
    pipe = r.pipeline(transaction=True)
    pipe.set("{a}:x", 1).set("{b}:x", 1)
    # redis-py names the queueing error (CROSSSLOT) rather than EXEC's EXECABORT.
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        pipe.execute()
    assert r.exists("{a}:x") == 0
    r.close()


def test_seeded_watch_and_exec_over_two_nodes_match_redis(cluster, redis_server):
    """One connection (node 1) WATCHes, reads, queues and EXECs; another (node 3) writes
    in between.  Every write changes its key (a fresh value each time), since a write
    leaving a collection as it was aborts EXEC on Redis but not here."""
    zan_a, zan_b = RawClient(cluster.nodes[0].redis_port), RawClient(cluster.nodes[2].redis_port)
    red_a, red_b = redis_server.client(), redis_server.client()
    red_a.call("FLUSHALL")
    rng = random.Random(7)
    fresh = itertools.count()
    keys = [f"{{seq}}:k{i}" for i in range(6)]
    writes = [lambda k: ("SET", k, f"v{next(fresh)}"), lambda k: ("INCR", k + "n"),
              lambda k: ("DEL", k), lambda k: ("SADD", k + "s", str(rng.randrange(3))),
              lambda k: ("RPUSH", k + "l", "x"), lambda k: ("LPUSH", k, "x")]

    try:
        watch_exec_rounds(zan_a, zan_b, red_a, red_b, rng, keys, writes, 120)
        for k in keys:
            check((zan_b, red_b), "TYPE", k)
            check((zan_b, red_b), "EXISTS", k)
    finally:
        for c in (zan_a, zan_b, red_a, red_b):
            c.close()


def test_a_ten_thousand_command_transaction_applies_whole(cluster):
    c = RawClient(cluster.nodes[1].redis_port, timeout=60)
    c.call("MULTI")
    for i in range(10000):
        key = b"{big}:c%d" % (i % 100)
        c.send_raw(b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key))
    for _ in range(10000):
        assert c.read_reply() == b"QUEUED"
    replies = c.call("EXEC")
    assert len(replies) == 10000 and replies[-1] == 100
    other = client(cluster.nodes[2])
    assert other.get("{big}:c99") == b"100"
    other.close()
    c.close()


def _transfers(port, counters, stop, done, errors):
    """MULTI/EXEC transfers between hash-tagged counters until `stop`; failures (a node
    killed under the connection) are retried on a new one."""
    rng = random.Random(port)
    r = None
    while not stop.is_set():
        try:
            if r is None:
                r = redis.Redis(port=port, protocol=2, socket_timeout=10)
            a, b = rng.sample(counters, 2)
            amount = rng.randint(1, 9)
            pipe = r.pipeline(transaction=True)
            pipe.decrby(a, amount).incrby(b, amount)
            pipe.execute()
            done.append(1)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            r = None
            stop.wait(0.2)
        except redis.exceptions.ResponseError as e:
            if "CLUSTER_CHANGED" not in str(e) and "leader" not in str(e).lower():
                errors.append(str(e))
            stop.wait(0.1)


@pytest.mark.slow
def test_kill_9_of_leaders_never_breaks_a_transfer():
    """Transfers between counters run on every node while the partition's leader is
    killed with kill -9 three times: a transaction is one entry, so afterwards the
    counters, read through every node, still sum to zero."""
    counters = [f"{{bank}}:c{i}" for i in range(5)]
    with StaticClusterProcs(3, extra_conf={"proposal_timeout_ms": 3000}) as c:
        stop, done, errors = threading.Event(), [], []
        workers = [threading.Thread(target=_transfers,
                                    args=(n.redis_port, counters, stop, done, errors))
                   for n in c.nodes]
        for w in workers:
            w.start()
        try:
            pid = f"default-{_partition_of(c, counters[0])}"
            for _ in range(3):
                before = len(done)
                while len(done) < before + 30:
                    time.sleep(0.05)
                leader = c.leader_of(pid)
                c.kill(leader)
                c.leader_of(pid, among=[n for n in c.nodes if n is not leader])
                c.restart(leader)
                c.wait_leaders()
        finally:
            stop.set()
            for w in workers:
                w.join(30)
        assert not errors, errors[:5]
        assert len(done) >= 90
        for node in c.nodes:
            r = client(node)
            values = [int(v or 0) for v in r.mget(counters)]
            assert sum(values) == 0, (node.node_id, values)
            r.close()


def _partition_of(cluster, key: str) -> int:
    return partition_of(hash_tag(key.encode()), cluster.namespaces[0]["partition_num"])
