"""A whole etcd-coordinated cluster of real processes: etcd (v2 API), two `twistd zan-pd`,
`twistd zan-node`s in etcd mode, driven with `curl`, `redis-cli`, redis-py and `zan.client`.

Intervals are shortened (tests/support/etcd_cluster.py): PD's grace period for a dead node
is 4 s, TTLs are 3 s, Raft ticks 50 ms.  Every process is stopped by PID at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import pytest_twisted
import redis

from tests.support.etcd_cluster import EtcdClusterProcs, http, wait_until

pytestmark = pytest.mark.integration

NS = "it"
PARTITIONS = 4
REPLICAS = 3


def redis_cli(port: int, *args: str) -> str:
    exe = shutil.which("redis-cli")
    if exe is None:
        pytest.skip("redis-cli is not installed")
    out = subprocess.run([exe, "-p", str(port), *args], capture_output=True, timeout=30,
                         check=True)
    return out.stdout.decode().strip()


def client(node) -> redis.Redis:
    return redis.Redis(port=node.redis_port, protocol=2, socket_timeout=10)


def curl_create(pd_url: str, ns: str, partitions: int, replicas: int) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-f", "-X", "POST",
         f"{pd_url}/cluster/namespace/create?namespace={ns}&partition_num={partitions}"
         f"&replicator={replicas}"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr


def serving(c: EtcdClusterProcs, ns: str, replicas: int, exclude=(), timeout=60.0) -> None:
    try:
        wait_until(lambda: c.fully_replicated(ns, replicas, exclude), timeout,
                   f"{ns} fully replicated", interval=0.25)
    except AssertionError:
        raise AssertionError(
            f"{ns} not fully replicated: {json.dumps(c.replica_infos(ns))}\n"
            + "\n".join(n.output()[-3000:] for n in c.nodes if n.proc is not None)) from None


class AckedWriter(threading.Thread):
    """SETs distinct keys through one node, remembering each acknowledged one; errors
    (a partition between leaders, a dead forward target) are counted and retried later."""

    def __init__(self, node, prefix: str):
        super().__init__(daemon=True)
        self.node, self.prefix = node, prefix
        self.acked: dict[str, str] = {}
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        r = redis.Redis(port=self.node.redis_port, protocol=2, socket_timeout=5)
        i = 0
        while not self.halt.is_set():
            key, value = f"{NS}:w:{self.prefix}{i}", f"v{i}"
            try:
                if r.set(key, value):
                    self.acked[key] = value
                    i += 1
            except redis.RedisError:
                self.errors += 1
                time.sleep(0.05)

    def stop(self) -> dict[str, str]:
        self.halt.set()
        self.join(15)
        return self.acked


def assert_all_present(nodes, acked: dict[str, str]) -> None:
    for node in nodes:
        r = client(node)
        keys = list(acked)
        for start in range(0, len(keys), 200):
            chunk = keys[start:start + 200]
            got = r.mget(chunk)
            missing = [k for k, v in zip(chunk, got) if v != acked[k].encode()]
            assert not missing, f"node {node.redis_port} lost {missing[:10]}"


@contextlib.contextmanager
def cluster_serving(nodes: int):
    """A cluster of its own (etcd, two PDs, `nodes` data nodes) serving namespace NS."""
    with EtcdClusterProcs(nodes=nodes, pds=2) as c:
        c.create_namespace(NS, PARTITIONS, REPLICAS)
        serving(c, NS, REPLICAS)
        yield c


def replica_holders(c: EtcdClusterProcs) -> set[str]:
    """The node ids NS's placement lists."""
    return set().union(*(set(i["RaftNodes"]) for i in c.replica_infos(NS).values()))


# -- one cluster for the tests that only read and write ------------------------------------

@pytest.fixture(scope="module")
def cluster():
    with EtcdClusterProcs(nodes=3, pds=2) as c:
        curl_create(c.pd_url(), NS, PARTITIONS, REPLICAS)
        serving(c, NS, REPLICAS)
        yield c


def test_namespace_created_with_curl_is_placed_and_led(cluster):
    doc = cluster.query(NS)
    assert doc["partition_num"] == PARTITIONS
    nodes = {cluster.node_id_of(n) for n in cluster.nodes}
    for pid, part in doc["partitions"].items():
        assert {r["node_id"] for r in part["replicas"]} == nodes
        # The leader each group elected, as published in RealLeader.
        assert part["leader"]["node_id"] in nodes, part
    infos = cluster.replica_infos(NS)
    assert sorted(infos) == list(range(PARTITIONS))
    for info in infos.values():
        assert set(info["RaftNodes"]) == nodes
    # Every node knows every partition's members and the leaders agree.
    for pid in range(PARTITIONS):
        leaders = set()
        for node in cluster.nodes:
            code, body = http("GET", f"http://127.0.0.1:{node.http_port}"
                                     f"/cluster/leader/{NS}-{pid}")
            assert code == 200, body
            leaders.add(body)
        assert len(leaders) == 1, leaders


def test_redis_cli_writes_and_reads_through_any_node(cluster):
    for i, node in enumerate(cluster.nodes):
        for j in range(20):
            assert redis_cli(node.redis_port, "set", f"{NS}:cli:k{i}-{j}", f"v{i}-{j}") == "OK"
    for node in cluster.nodes:
        for i in range(len(cluster.nodes)):
            for j in range(20):
                assert redis_cli(node.redis_port, "get", f"{NS}:cli:k{i}-{j}") == f"v{i}-{j}"
    assert redis_cli(cluster.nodes[0].redis_port, "incr", f"{NS}:cli:n") == "1"
    assert redis_cli(cluster.nodes[1].redis_port, "incr", f"{NS}:cli:n") == "2"
    # Redis's errors, unchanged through forwarding.
    assert "WRONGTYPE" in redis_cli(cluster.nodes[2].redis_port, "lpush", f"{NS}:cli:n", "x")


def test_redis_py_multi_key_commands_split_across_partitions(cluster):
    keys = [f"{NS}:py:k{i}" for i in range(40)]
    r0, r1 = client(cluster.nodes[0]), client(cluster.nodes[1])
    assert r0.mset({k: k.upper() for k in keys}) is True
    assert r1.mget(keys) == [k.upper().encode() for k in keys]
    assert r1.exists(*keys) == len(keys)
    assert r0.delete(*keys[:10]) == 10
    assert r1.mget(keys[:10]) == [None] * 10
    r0.hset(f"{NS}:py:h", mapping={"a": "1", "b": "2"})
    assert client(cluster.nodes[2]).hgetall(f"{NS}:py:h") == {b"a": b"1", b"b": b"2"}


@pytest.fixture
def reactor():
    from twisted.internet import reactor
    return reactor


@pytest_twisted.ensureDeferred
async def test_zan_client_routes_by_pd_map(cluster, reactor):
    from zan.client.cluster import ZanClient
    pd = cluster.pd_url().split("://", 1)[1]
    zc = ZanClient(reactor, [pd], NS, command_timeout=10.0)
    await zc.start()
    try:
        for i in range(30):
            assert await zc.execute("SET", f"zc:k{i}", f"v{i}") in (b"OK", "OK")
        got = await zc.mget(*[f"zc:k{i}" for i in range(30)])
        assert got == [f"v{i}".encode() for i in range(30)]
    finally:
        await zc.close()
    # What the smart client wrote, any node reads.
    assert client(cluster.nodes[2]).get(f"{NS}:zc:k7") == b"v7"


# -- faults, each on a cluster of its own ---------------------------------------------------

@pytest.mark.slow
def test_dead_node_replicas_move_to_spare_node_and_no_acked_write_is_lost():
    with cluster_serving(4) as c:
        holders = replica_holders(c)
        writer_node = next(n for n in c.nodes if c.node_id_of(n) in holders)
        victim = next(n for n in c.nodes
                      if n is not writer_node and c.node_id_of(n) in holders)
        victim_id = c.node_id_of(victim)
        writer = AckedWriter(writer_node, "a")
        writer.start()
        time.sleep(1.0)
        victim.kill()
        killed_at = time.monotonic()
        serving(c, NS, REPLICAS, exclude=(victim_id,), timeout=90)
        repaired = time.monotonic() - killed_at
        time.sleep(0.5)
        acked = writer.stop()
        assert len(acked) > 50, (len(acked), writer.errors)
        live = [n for n in c.nodes if n is not victim]
        assert_all_present(live, acked)
        for info in c.replica_infos(NS).values():
            assert victim_id not in info["RaftNodes"]
        print(f"repaired in {repaired:.1f} s (grace {c.pd_settings['node_grace_period']} s), "
              f"{len(acked)} acked writes, {writer.errors} retried errors")


@pytest.mark.slow
def test_a_wiped_node_comes_back_as_a_new_node_and_no_acked_write_is_lost():
    """kill -9, the node's whole data directory (its `myid` too) deleted, and started
    again: it registers under a new id and the PD replaces the replicas of the id it
    lost, on it again; every acknowledged write is on every node."""
    with cluster_serving(3) as c:
        victim = c.nodes[2]
        old_id = c.node_id_of(victim)
        writer = AckedWriter(c.nodes[0], "w")
        writer.start()
        time.sleep(1.0)
        victim.kill()
        shutil.rmtree(victim.data_dir)
        victim.start()
        wait_until(lambda: os.path.exists(os.path.join(victim.data_dir, "myid")), 30,
                   "the wiped node registered again")
        new_id = c.node_id_of(victim)
        assert new_id != old_id
        serving(c, NS, REPLICAS, exclude=(old_id,), timeout=90)
        time.sleep(0.5)
        acked = writer.stop()
        assert len(acked) > 50, (len(acked), writer.errors)
        for info in c.replica_infos(NS).values():
            assert old_id not in info["RaftNodes"] and new_id in info["RaftNodes"], info
        assert_all_present(c.nodes, acked)


def removal_state(c: EtcdClusterProcs, node_id: str) -> str | None:
    key = f"/ZanRedisDBMetaData/{c.cluster_id}/PDInfo/RemovingNodes"
    code, body = http("GET", f"{c.etcd.url}/v2/keys{key}")
    if code != 200:
        return None
    return json.loads(json.loads(body)["node"]["value"]).get(node_id)


@pytest.mark.slow
def test_node_removal_continues_across_pd_failover_and_destroys_the_data():
    with cluster_serving(4) as c:
        written = {f"{NS}:rm:k{i}": f"v{i}" for i in range(100)}
        assert client(c.nodes[0]).mset(written)
        holders = replica_holders(c)
        leaving = next(n for n in c.nodes[1:] if c.node_id_of(n) in holders)
        leaving_id = c.node_id_of(leaving)
        held = [pid for pid, i in c.replica_infos(NS).items() if leaving_id in i["RaftNodes"]]
        assert held
        first = c.pd_leader()
        code, body = http("POST", first.url + "/cluster/node/remove", remove_node=leaving_id)
        assert code == 200, body
        wait_until(lambda: removal_state(c, leaving_id) in ("pending", "data_transferred",
                                                            "done"),
                   20, "the removal under way")
        # The leader dies mid-removal; the other PD picks the removal up from etcd.
        first.stop(9)
        second = wait_until(c.pd_leader, 20, "the other PD leading")
        assert second is not first
        wait_until(lambda: removal_state(c, leaving_id) == "done", 120,
                   "the removal done", interval=0.25)
        serving(c, NS, REPLICAS, exclude=(leaving_id,), timeout=60)
        for info in c.replica_infos(NS).values():
            assert leaving_id not in info["RaftNodes"] and not info.get("Removings")
        # The removed node destroyed its replicas' data.
        wait_until(lambda: not [d for d in os.listdir(leaving.data_dir)
                                if d.startswith(f"{NS}-")], 30,
                   "the removed node's data destroyed")
        assert_all_present([n for n in c.nodes if n is not leaving], written)
        assert "Traceback" not in second.log(), second.log()


@pytest.mark.slow
def test_whole_cluster_restart_including_etcd_keeps_the_data():
    with cluster_serving(3) as c:
        r = client(c.nodes[1])
        expected = {f"{NS}:rs:k{i}": f"v{i}" for i in range(200)}
        assert r.mset(expected)
        before = c.replica_infos(NS)
        for node in c.nodes:
            node.stop()
        for pd in c.pds:
            pd.stop()
        c.etcd.halt()

        c.etcd.start()
        for pd in c.pds:
            pd.start()
        for node in c.nodes:
            node.start()
        wait_until(c.pd_leader, 30, "a PD leader again")
        serving(c, NS, REPLICAS)
        assert_all_present(c.nodes, expected)
        assert client(c.nodes[2]).set(f"{NS}:rs:after", "yes")
        assert client(c.nodes[0]).get(f"{NS}:rs:after") == b"yes"
        # The same replicas hold each partition; leader balancing may list them in
        # another order (RaftNodes[0] is the desired leader).
        after = c.replica_infos(NS)
        assert {p: sorted(i["RaftNodes"]) for p, i in after.items()} == \
            {p: sorted(i["RaftNodes"]) for p, i in before.items()}


@pytest.mark.slow
def test_nodes_keep_serving_while_etcd_is_down_and_resync_after():
    with cluster_serving(3) as c:
        before = c.replica_infos(NS)
        c.etcd.halt()
        down_until = time.monotonic() + 6      # longer than the node TTL (3 s)
        i = 0
        while time.monotonic() < down_until:
            node = c.nodes[i % 3]
            assert client(node).set(f"{NS}:down:k{i}", f"v{i}") is True
            assert client(c.nodes[(i + 1) % 3]).get(f"{NS}:down:k{i}") == f"v{i}".encode()
            i += 1
            time.sleep(0.05)
        assert i > 20
        c.etcd.start()
        wait_until(lambda: len(c.registered()) == 3, 30, "the nodes registered again")
        # PD saw the nodes come back within its grace period: nothing moved.
        time.sleep(c.pd_settings["node_grace_period"] + 1)
        assert {p: x["RaftNodes"] for p, x in c.replica_infos(NS).items()} == \
            {p: x["RaftNodes"] for p, x in before.items()}
        serving(c, NS, REPLICAS)
        assert_all_present(c.nodes, {f"{NS}:down:k{j}": f"v{j}" for j in range(i)})
        # A namespace created after the outage is placed and served: the watches resumed.
        c.create_namespace("later", 2, 3)
        serving(c, "later", 3)
        assert client(c.nodes[0]).set("later:t:k", "v")
        assert client(c.nodes[2]).get("later:t:k") == b"v"


@pytest.mark.slow
def test_graceful_stop_hands_off_leadership_and_unregisters():
    with cluster_serving(3) as c:

        def leaders():
            return {pid: part["leader"].get("node_id") for pid, part in
                    c.query(NS)["partitions"].items()}
        # With leader_change_wait 1 s, leadership settles on each RaftNodes[0].
        wait_until(lambda: len(set(leaders().values())) > 1, 30, "leaders spread")
        counts = {}
        for nid in leaders().values():
            counts[nid] = counts.get(nid, 0) + 1
        leaving_id = max(counts, key=counts.get)
        leaving = next(n for n in c.nodes if c.node_id_of(n) == leaving_id)
        led = [pid for pid, nid in leaders().items() if nid == leaving_id]
        stopped_at = time.monotonic()
        leaving.stop()                              # SIGTERM: a graceful leave
        took = time.monotonic() - stopped_at
        # Unregistered at once, not when the 3 s TTL runs out.
        assert leaving_id not in {n["node_id"] for n in c.registered()}
        rest = [n for n in c.nodes if n is not leaving]
        # Every partition it led already has another leader: writes go through at once.
        for pid in range(PARTITIONS):
            for node in rest:
                code, body = http("GET", f"http://127.0.0.1:{node.http_port}"
                                         f"/cluster/leader/{NS}-{pid}")
                assert code == 200, (pid, body)
        r = client(rest[0])
        for i in range(50):
            assert r.set(f"{NS}:leave:k{i}", "v")
        # It handed every leadership it held to a caught-up member before it went.
        handed = re.search(r"handed off leadership of (\d+) of (\d+) groups", leaving.output())
        assert handed and handed[1] == handed[2] and int(handed[1]) >= 1, leaving.output()
        print(f"graceful stop took {took:.2f} s; it led {len(led)} partitions")


def test_a_node_whose_raft_port_is_taken_exits_before_registering():
    """As with its RESP port: a node that cannot listen for Raft must not register,
    or PD would place replicas on it that never elect."""
    import socket
    from tests.support.etcd_cluster import EtcdServer
    from tests.support.node import ZanNode
    etcd = EtcdServer().start()
    busy = socket.socket()
    node = None
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        node = ZanNode(server_conf={"cluster_id": "taken", "etcd_cluster_addresses": etcd.url,
                                    "local_raft_addr": f"http://127.0.0.1:{port}"})
        try:
            node.start(timeout=20)
        except RuntimeError:
            pass    # it may exit before its RESP port answers, or just after
        deadline = time.monotonic() + 20
        while node.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.proc.poll() not in (None, 0), "the node kept running"
        output = node.output()
        assert str(port) in output and "Address already in use" in output, output
        code, body = http("GET", f"{etcd.url}/v2/keys/ZanRedisDBMetaData/taken/DataNodes")
        assert code == 404 or not json.loads(body)["node"].get("nodes"), body
    finally:
        busy.close()
        if node is not None:
            node.cleanup()
        etcd.stop()
