"""Fault injection on a real 3-node static cluster: kill -9, restarts, wiped data
directories, network partitions, garbage on the Raft port.  What is checked is what a
user relies on: acknowledged writes survive, replicas converge to the same state, the
history of a concurrent register workload is linearizable, and a node refuses what it
cannot serve with ZanRedisDB's error texts instead of answering wrongly.
"""

from __future__ import annotations

import itertools
import os
import pickle
import random
import socket
import struct
import threading
import time
import urllib.request

import hiredis
import msgpack
import pytest

from tests.support.cluster import StaticClusterProcs, http_request
from tests.support.keys import keys_in
from tests.support.linearizability import check
from tests.support.registers import RegisterClients

pytestmark = pytest.mark.integration

PARTITIONS = 4
NOT_LEADER = b"ERR_CLUSTER_CHANGED: partition of the namespace is not leader on the node"


def _namespaces(partitions: int = PARTITIONS) -> list[dict]:
    return [{"name": "default", "partition_num": partitions, "replicator": 3}]


def keys_of(pid: int, count: int, prefix: str = "k", partitions: int = PARTITIONS) -> list[str]:
    return keys_in(pid, count, prefix, partitions)


def _is_error(reply) -> bool:
    return isinstance(reply, hiredis.ReplyError)


class Writers:
    """Client threads writing unique keys and set members through different nodes and
    recording what was acknowledged.  A thread whose node dies moves to the next one."""

    def __init__(self, cluster: StaticClusterProcs, threads: int = 3, sets: int = 3,
                 pause: float = 0.002):
        self.cluster = cluster
        self.sets = [f"set{i}" for i in range(sets)]
        self.acked_strings: dict[str, str] = {}
        self.acked_members: dict[str, set[str]] = {s: set() for s in self.sets}
        self.errors: list[str] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pause = pause
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                         for t in range(threads)]

    def start(self) -> "Writers":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def acked(self) -> int:
        with self._lock:
            return len(self.acked_strings) + sum(map(len, self.acked_members.values()))

    def _run(self, t: int) -> None:
        rng = random.Random(t)
        nodes = itertools.cycle(self.cluster.nodes[t % len(self.cluster.nodes):]
                                + self.cluster.nodes[:t % len(self.cluster.nodes)])
        client = None
        for i in itertools.count():
            if self._stop.is_set():
                break
            if client is None:
                node = next(nodes)
                try:
                    client = node.client(timeout=10)
                except OSError:
                    time.sleep(0.05)
                    continue
            if rng.random() < 0.6:
                key, value = f"w{t}:{i}", f"v{t}:{i}"
                argv, done = ("SET", key, value), lambda r: r == b"OK"
            else:
                key, value = rng.choice(self.sets), f"m{t}:{i}"
                argv, done = ("SADD", key, value), lambda r: r == 1
            with self._lock:
                self.attempts += 1
            try:
                reply = client.call(*argv)
            except (OSError, ConnectionError):
                client.close()
                client = None
                continue
            if done(reply):
                with self._lock:
                    if argv[0] == "SET":
                        self.acked_strings[key] = value
                    else:
                        self.acked_members[key].add(value)
            else:
                with self._lock:
                    self.errors.append(str(reply))
                time.sleep(0.02)
            time.sleep(self._pause)
        if client is not None:
            client.close()

    def verify(self, cluster: StaticClusterProcs) -> None:
        """Every acknowledged write is visible through every live node."""
        for node in cluster.nodes:
            if not node.alive:
                continue
            client = node.client()
            try:
                keys = list(self.acked_strings)
                for start in range(0, len(keys), 200):
                    chunk = keys[start:start + 200]
                    values = client.call("MGET", *chunk)
                    assert not _is_error(values), values
                    lost = {k: (self.acked_strings[k], v) for k, v in zip(chunk, values)
                            if v != self.acked_strings[k].encode()}
                    assert not lost, f"node {node.node_id} lost acknowledged SETs: {lost}"
                for name, members in self.acked_members.items():
                    got = client.call("SMEMBERS", name)
                    assert not _is_error(got), got
                    missing = members - {m.decode() for m in got}
                    assert not missing, f"node {node.node_id} lost members of {name}: {missing}"
            finally:
                client.close()


def _wait_acked(writers: Writers, more: int, timeout: float = 30.0) -> None:
    target = writers.acked + more
    deadline = time.monotonic() + timeout
    while writers.acked < target:
        assert time.monotonic() < deadline, (
            f"writes stalled: {writers.acked} acknowledged, {writers.errors[-5:]}\n"
            f"{writers.cluster.logs()}")
        time.sleep(0.05)


def _follower_of(cluster, ns_pid: str, exclude=()):
    leader = cluster.leader_of(ns_pid)
    return next(n for n in cluster.replicas(ns_pid) if n is not leader and n not in exclude)


def _log_mentions(node, text: str) -> bool:
    with open(node.log_path, encoding="utf-8", errors="replace") as f:
        return text in f.read()


# -- 1. acknowledged writes survive kill -9, restarts and a wiped replica ------------------

def _run_survival(rounds: int, writes_between: int) -> None:
    with StaticClusterProcs(3, namespaces=_namespaces(), snap_count=100, snap_catchup=10,
                            extra_conf={"proposal_timeout_ms": 3000}) as cluster:
        writers = Writers(cluster).start()
        try:
            for r in range(rounds):
                _wait_acked(writers, writes_between)
                leader = cluster.leader_of(f"default-{r % PARTITIONS}")
                cluster.kill(leader)
                _wait_acked(writers, writes_between)
                cluster.restart(leader)

                _wait_acked(writers, writes_between)
                follower = _follower_of(cluster, f"default-{(r + 1) % PARTITIONS}")
                cluster.kill(follower)
                _wait_acked(writers, writes_between)
                cluster.restart(follower)

            # A replica that lost everything rebuilds from a snapshot: by now every log
            # has been compacted far past its start.
            _wait_acked(writers, writes_between)
            wiped = _follower_of(cluster, "default-0")
            cluster.kill(wiped)
            cluster.wipe(wiped)
            _wait_acked(writers, 4 * 100)          # more than snap_count per partition
            cluster.restart(wiped)
            _wait_acked(writers, writes_between)
        finally:
            writers.stop()
        assert writers.acked > 0
        converged = cluster.wait_converged(60)
        writers.verify(cluster)
        assert _log_mentions(wiped, "installed snapshot"), cluster.logs()
        assert all(v["applied_index"] > 100 for per in converged.values() for v in per.values())


def test_acknowledged_writes_survive_kills_restarts_and_wipe():
    _run_survival(rounds=1, writes_between=60)


@pytest.mark.slow
def test_acknowledged_writes_survive_many_rounds():
    _run_survival(rounds=5, writes_between=300)


# -- 2. network partition ---------------------------------------------------------------------

class LeaderWatcher:
    """Polls every node's /raft/stats and records which node claimed leadership of which
    partition in which term (two leaders in one term would break Raft's election safety)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.claims: dict[tuple[str, int], set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            for node in self.cluster.nodes:
                if not node.alive:
                    continue
                for name, st in self.cluster.raft_stats(node).items():
                    if st["raft_state"] == "StateLeader":
                        self.claims.setdefault((name, st["term"]), set()).add(node.node_id)
            time.sleep(0.03)

    def assert_one_leader_per_term(self):
        doubles = {k: v for k, v in self.claims.items() if len(v) > 1}
        assert not doubles, f"two leaders in one term: {doubles}"


def _heal_and_check(cluster, acked: dict[str, str], refused=()) -> None:
    """Heal every link; once the replicas converge, every node has every acknowledged
    value and none of the refused writes."""
    cluster.heal_all()
    cluster.wait_converged(30)
    for node in cluster.nodes:
        c = node.client()
        for key, value in acked.items():
            assert c.call("GET", key) == value.encode(), (node, key)
        for key in refused:
            assert c.call("GET", key) is None, f"refused write {key} appeared on {node}"
        c.close()


def test_network_partition_minority_refuses_majority_serves():
    with StaticClusterProcs(3, namespaces=_namespaces(3), proxies=True,
                            extra_conf={"proposal_timeout_ms": 2000}) as cluster, \
            LeaderWatcher(cluster) as watcher:
        cluster.wait_leaders()
        isolated = cluster.leader_of("default-0")
        majority = [n for n in cluster.nodes if n is not isolated]
        led = [name for name, (node, _) in cluster.leaders().items() if node is isolated]
        acked: dict[str, str] = {}
        c = majority[0].client()
        for i, key in enumerate(keys_of(0, 5, "before", 3)):
            assert c.call("SET", key, f"b{i}") == b"OK"
            acked[key] = f"b{i}"

        cluster.isolate(isolated)
        minority = isolated.client(timeout=15)
        refused = []
        for pid in range(3):
            name = f"default-{pid}"
            for key in keys_of(pid, 2, "minority", 3):
                reply = minority.call("SET", key, "lost")
                assert _is_error(reply), f"{name} accepted {key} on the isolated node: {reply}"
                refused.append((key, str(reply)))
        for _, text in refused:
            assert "ERR_CLUSTER_CHANGED" in text or "timed out" in text, refused

        # The majority elects leaders for what the isolated node led, and serves.
        leaders = cluster.wait_leaders(20, among=majority)
        assert all(leaders[name][0] in majority for name in led)
        for node in majority:
            c = node.client()
            for pid in range(3):
                for i, key in enumerate(keys_of(pid, 3, f"major{node.node_id}-", 3)):
                    reply = c.call("SET", key, f"m{i}")
                    assert reply == b"OK", (node, key, reply)
                    acked[key] = f"m{i}"
            c.close()
        # Still refused after the majority moved on (no stale leader accepts writes).
        assert _is_error(minority.call("SET", keys_of(0, 1, "late", 3)[0], "lost"))
        minority.close()

        _heal_and_check(cluster, acked, refused=[key for key, _ in refused])
        watcher.assert_one_leader_per_term()


def _state_of(cluster, node, name: str) -> str | None:
    st = cluster.raft_stats(node).get(name)
    return st["raft_state"] if st else None


def test_isolated_leader_steps_down_and_serves_no_stale_read():
    """Cut off from both peers, a leader stops leading within an election timeout of
    last hearing them, and once the others have a new leader and a newer value it never
    answers the old one."""
    tick, election = 0.05, 10
    with StaticClusterProcs(3, namespaces=_namespaces(3), proxies=True, tick_ms=50,
                            election_tick=election,
                            extra_conf={"proposal_timeout_ms": 2000}) as cluster:
        cluster.wait_leaders()
        old = cluster.leader_of("default-0")
        majority = [n for n in cluster.nodes if n is not old]
        key = keys_of(0, 1, "lease", 3)[0]
        c = old.client()
        assert c.call("SET", key, "v1") == b"OK"
        assert c.call("GET", key) == b"v1"
        c.close()

        cluster.isolate(old)
        cut_at = time.monotonic()
        while _state_of(cluster, old, "default-0") == "StateLeader":
            assert time.monotonic() - cut_at < 10, "the isolated leader never stepped down"
            time.sleep(0.01)
        stepped_down = time.monotonic() - cut_at
        # An election timeout, plus the scheduling slack of a loaded 2-core machine.
        assert stepped_down < election * tick + 1.0, stepped_down

        cluster.leader_of("default-0", among=majority)
        m = majority[0].client()
        assert m.call("SET", key, "v2") == b"OK"
        m.close()
        stale = old.client(timeout=15)
        for _ in range(5):
            reply = stale.call("GET", key)
            assert reply != b"v1", "the isolated node answered a value the majority replaced"
            assert _is_error(reply), reply
        stale.close()

        cluster.heal_all()
        cluster.wait_converged(30)
        for node in cluster.nodes:
            c = node.client()
            assert c.call("GET", key) == b"v2", node
            c.close()


def test_slow_links_delay_writes_but_lose_none():
    """One node's links are slow (shorter than an election timeout, then longer):
    writes through every node go on, and after healing every replica has every write
    that was acknowledged."""
    with StaticClusterProcs(3, namespaces=_namespaces(3), proxies=True,
                            extra_conf={"proposal_timeout_ms": 4000}) as cluster:
        cluster.wait_leaders()
        leader = cluster.leader_of("default-0")
        slow = next(n for n in cluster.nodes if n is not leader)
        acked: dict[str, str] = {}
        for delay in (0.2, 1.5):
            for other in cluster.nodes:
                if other is not slow:
                    cluster.delay(slow, other, delay)
            for node in cluster.nodes:
                c = node.client(timeout=20)
                for pid in range(3):
                    for i, key in enumerate(keys_of(pid, 2, f"slow{delay}-{node.node_id}-", 3)):
                        reply = c.call("SET", key, f"v{i}")
                        if reply == b"OK":
                            acked[key] = f"v{i}"
                        else:
                            # A slow link longer than an election timeout makes the
                            # partitions the slow node led elect again: a write caught
                            # by that fails with a clear error, and counts as unknown.
                            assert delay > 0.5 and _is_error(reply), (node, key, reply)
                            assert "ERR_CLUSTER_CHANGED" in str(reply) or \
                                "timed out" in str(reply), reply
                c.close()
        assert len(acked) >= 24
        _heal_and_check(cluster, acked)


# -- 3. linearizability under leader kills and a partition -----------------------------------

def _run_linearizable(cycles: int, settle: float, keys_per_partition: int = 4) -> None:
    # Many keys: an unknown write may take effect at any later moment, so each one a key
    # has multiplies the checker's search; spread them thin.
    keys = [key for pid in range(3) for key in keys_of(pid, keys_per_partition, "reg", 3)]
    with StaticClusterProcs(3, namespaces=_namespaces(3), proxies=True,
                            extra_conf={"proposal_timeout_ms": 2000}) as cluster:
        with RegisterClients(cluster, keys) as clients:
            for cycle in range(cycles):
                time.sleep(settle)
                leader = cluster.leader_of(f"default-{cycle % 3}")
                cluster.kill(leader)
                time.sleep(settle)
                cluster.restart(leader)
                time.sleep(settle)
                isolated = cluster.leader_of(f"default-{(cycle + 1) % 3}")
                cluster.isolate(isolated)
                time.sleep(settle * 2)
                cluster.heal_all()
            time.sleep(settle)
        cluster.wait_converged(30)
        ops = clients.history.ops
        outcomes = {o: sum(1 for op in ops if op.outcome == o) for o in ("ok", "fail", "unknown")}
        result = check(clients.history, timeout_s=30)
        if not result.ok and os.environ.get("ZAN_HISTORY_DUMP"):
            with open(os.environ["ZAN_HISTORY_DUMP"], "wb") as f:
                pickle.dump(ops, f)
        assert result.ok, (result.explanation, outcomes)
        assert not result.timed_out
        oks = sum(1 for op in clients.history.ops if op.outcome == "ok")
        assert oks > 50, f"only {oks} operations completed"
        for node in cluster.nodes:
            c = node.client()
            got = {m.decode() for m in c.call("SMEMBERS", "lin-set")}
            c.close()
            assert clients.members <= got, clients.members - got


def test_register_history_is_linearizable_under_faults():
    _run_linearizable(cycles=1, settle=1.0)


@pytest.mark.slow
def test_register_history_is_linearizable_under_many_faults():
    _run_linearizable(cycles=6, settle=1.5, keys_per_partition=16)


# -- 4. bad input on the Raft port and the cluster HTTP routes --------------------------------

def _raft_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send `payload` to a Raft port and read until the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"the node kept the connection open; got {data!r}")


def _frames(data: bytes) -> list[tuple[bytes, object]]:
    out = []
    while len(data) >= 4:
        (length,) = struct.unpack_from("!I", data)
        kind, body = data[4:5], data[5:4 + length]
        out.append((kind, msgpack.unpackb(body, raw=False)))
        data = data[4 + length:]
    return out


def _frame(kind: bytes, body: bytes) -> bytes:
    return struct.pack("!I", len(body) + 1) + kind + body


@pytest.fixture(scope="module")
def plain_cluster():
    with StaticClusterProcs(3, namespaces=_namespaces()) as cluster:
        yield cluster


def test_raft_port_garbage_and_foreign_cluster_are_refused(plain_cluster):
    cluster = plain_cluster
    node = cluster.nodes[0]
    hello = lambda cid, nid=9: _frame(b"H", msgpack.packb(
        {"version": 1, "cluster_id": cid, "node_id": nid}))
    cases = {
        "garbage": (b"\xff" * 64, "frame of"),
        "http on the raft port": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "frame of"),
        "foreign cluster": (hello("someone-else", 2), "cluster id mismatch"),
        "messages before hello": (_frame(b"M", b"\x00\x01"), "before the hello"),
        "undecodable hello": (_frame(b"H", b"\xc1\xc1"), "hello"),
        "bad messages body": (hello(cluster.cluster_id, 2) + _frame(b"M", b"\xc1junk"), ""),
        "unknown kind": (hello(cluster.cluster_id, 2) + _frame(b"Z", b"x"), "unknown frame"),
        "own node id": (hello(cluster.cluster_id, node.node_id), "own id"),
    }
    for name, (payload, reason) in cases.items():
        data = _raft_exchange(node.raft_port, payload)
        frames = _frames(data)
        errors = [body["error"] for kind, body in frames if kind == b"E"]
        assert errors, f"{name}: closed without a reason: {frames}"
        assert reason in errors[0], (name, errors)
        assert node.alive, f"{name} killed the node:\n{node.output()}"
    # Still a working member of the cluster.
    cluster.wait_leaders(10)
    c = node.client()
    for pid in range(PARTITIONS):
        key = keys_of(pid, 1, "after-garbage")[0]
        assert c.call("SET", key, "ok") == b"OK"
        assert c.call("GET", key) == b"ok"
    c.close()


def test_cluster_http_routes_answer_bad_requests_with_a_reason(plain_cluster):
    cluster = plain_cluster
    node = cluster.nodes[1]
    leader = cluster.leader_of("default-0")
    cases = [
        (node, "POST", "/cluster/node/add", b"{not json", 400),
        (node, "POST", "/cluster/node/add", b"[1, 2]", 400),
        (node, "POST", "/cluster/node/add", b'{"id": 4}', 400),
        (node, "POST", "/cluster/node/add", b'{"id": "x", "group_name": "default-0"}', 400),
        (node, "POST", "/cluster/node/remove", b'{"id": 2, "group_name": "nodash"}', 400),
        (node, "POST", "/cluster/node/addlearner", b'{"id": 5, "group_name": "default-99"}', 404),
        (node, "GET", "/cluster/leader/default-99", None, 404),
        (node, "GET", "/cluster/leader/nosuch-0", None, 404),
        (node, "GET", "/cluster/leader/default-x", None, 400),
        (node, "GET", "/cluster/members/nodash", None, 400),
        (node, "GET", "/cluster/checksum/default-0?now_ms=soon", None, 400),
        (node, "GET", "/cluster/israftsynced/default-77", None, 404),
        (node, "GET", "/cluster/snapshot/default-0", None, 400),
        (node, "GET", "/cluster/snapshot/default-0?replica=abc", None, 400),
        (leader, "POST", "/cluster/leader/transfer/default-0?to=abc", None, 400),
        (leader, "POST", "/cluster/leader/transfer/default-0?to=42", None, 400),
        (node, "GET", "/raft/stats?leader_only=maybe", None, 400),
    ]
    for target, method, path, body, status in cases:
        got, reply = http_request(target.http_port, path, method=method, body=body)
        assert got == status, (path, body, got, reply)
        assert isinstance(reply, dict) and reply.get("message"), (path, reply)
        assert target.alive
    status, reply = http_request(node.http_port, "/cluster/leader/default-0")
    assert status == 200 and reply["node_id"] == leader.node_id


def test_snapshot_route_streams_the_whole_database(plain_cluster):
    """The stream a follower fetches to catch up: header, every record, and an end record
    counting them (a handler that let the request finish early cut it after the header)."""
    cluster = plain_cluster
    leader = cluster.leader_of("default-2")
    c = leader.client()
    for i, key in enumerate(keys_of(2, 300, "snap")):
        assert c.call("SET", key, "x" * 2000) == b"OK"
    c.close()
    follower = _follower_of(cluster, "default-2")
    with urllib.request.urlopen(f"http://127.0.0.1:{leader.http_port}/cluster/snapshot/"
                                f"default-2?replica={follower.node_id}", timeout=10) as resp:
        assert resp.status == 200
        raw = resp.read()
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=64 << 20)
    unpacker.feed(raw)
    items = list(unpacker)
    assert items[0][0] == "zan-snapshot" and items[0][2] >= 300
    assert items[-1][0] == "end", items[-1][:1]
    records = sum(len(item[1]) for item in items[1:-1])
    assert items[-1][1] == records and records > 300
    assert leader.alive


def test_snapshot_route_for_an_unknown_replica_keeps_the_node_up(plain_cluster):
    cluster = plain_cluster
    leader = cluster.leader_of("default-1")
    status, _ = http_request(leader.http_port, "/cluster/snapshot/default-1?replica=42")
    assert status in (200, 400)
    time.sleep(0.3)
    assert leader.alive, leader.output()
    c = leader.client()
    key = keys_of(1, 1, "after-snap")[0]
    assert c.call("SET", key, "ok") == b"OK"
    c.close()
    cluster.wait_converged(20)


# -- 5. forwarding off: ZanRedisDB's error on a follower ------------------------------------

def test_follower_refuses_without_forwarding():
    with StaticClusterProcs(3, namespaces=_namespaces(),
                            extra_conf={"allow_forwarding": False}) as cluster:
        for pid in range(PARTITIONS):
            name = f"default-{pid}"
            leader = cluster.leader_of(name)
            key = keys_of(pid, 1, "fwd")[0]
            c = leader.client()
            assert c.call("SET", key, "v") == b"OK"
            c.close()
            for follower in cluster.replicas(name):
                if follower is leader:
                    continue
                c = follower.client()
                for argv in (("SET", key, "x"), ("GET", key), ("INCR", key)):
                    reply = c.call(*argv)
                    assert _is_error(reply) and str(reply) == NOT_LEADER.decode(), (argv, reply)
                c.close()
            c = leader.client()
            assert c.call("GET", key) == b"v"
            c.close()
