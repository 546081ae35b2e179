"""The smart client against an in-memory PD (through StubTreq) and fake data nodes.

The fake nodes hold one shared keyspace and know the cluster's true leaders, which the
PD map the client holds may lag: a node asked about a partition it does not lead answers
ZanRedisDB's `ERR_CLUSTER_CHANGED` text.  Partitions are computed here with mmh3 directly,
independently of the client's own routing.
"""

from __future__ import annotations

import base64
import random

import mmh3
import pytest
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from zan.client.cluster import NoPartitionNode, ZanClient, is_cluster_changed
from zan.client.pd import PDClient, PDNamespaceNotFound, PDUnavailable, PartitionTracker, partition_of
from zan.client.testing import FakePD, make_node, uniform_map
from zan.resp.client import ReplyError
from zan.resp.types import SimpleString

NS = "ns"
# Not a power of two: a signed hash would route some keys elsewhere.
P = 10
NOT_LEADER = "ERR_CLUSTER_CHANGED: partition of the namespace is not leader on the node"


def pid_of(full_key: bytes, num: int) -> int:
    pk = full_key.split(b":", 1)[1]
    return mmh3.hash(pk, 0, signed=False) % num


class FakeCluster:
    """Data nodes sharing one keyspace; `leaders[pid]` is the truth about leadership."""

    def __init__(self, names, partition_num):
        self.partition_num = partition_num
        self.nodes = {n: FakeNode(self, n, 7000 + i) for i, n in enumerate(names)}
        self.leaders = {pid: names[pid % len(names)] for pid in range(partition_num)}
        self.data: dict[bytes, bytes] = {}

    def descriptor(self, name):
        return make_node(name, self.nodes[name].port)

    def pd_map(self, epoch=1):
        return uniform_map(NS, self.partition_num, [self.descriptor(n) for n in self.nodes], epoch=epoch)

    def factory(self, host, port):
        node = self.nodes[host]
        assert node.port == port
        node.connections += 1
        return node


class FakeNode:
    def __init__(self, cluster, name, port):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.calls: list[tuple[bytes, ...]] = []
        self.fail_next: list[BaseException] = []
        self.connections = 0
        self.closed = 0

    def close(self):
        self.closed += 1

    def execute(self, *argv):
        self.calls.append(argv)
        try:
            return defer.succeed(self._run(argv))
        except BaseException as e:
            return defer.fail(Failure(e))

    def _lead(self, pid):
        if self.cluster.leaders[pid] != self.name:
            raise ReplyError(NOT_LEADER)

    def _run(self, argv):
        if self.fail_next:
            raise self.fail_next.pop(0)
        c = self.cluster
        name = argv[0].upper()
        if name == b"ADVSCAN":
            return self._advscan(argv)
        keys = argv[1::2] if name == b"MSET" else argv[1:2] if name == b"SET" else \
            argv[1:] if name in (b"MGET", b"DEL", b"EXISTS") else argv[1:2]
        for k in keys:
            self._lead(pid_of(k, c.partition_num))
        if name == b"SET":
            c.data[argv[1]] = argv[2]
            return SimpleString(b"OK")
        if name == b"GET":
            return c.data.get(argv[1])
        if name == b"MGET":
            return [c.data.get(k) for k in argv[1:]]
        if name == b"MSET":
            for k, v in zip(argv[1::2], argv[2::2]):
                c.data[k] = v
            return SimpleString(b"OK")
        if name == b"DEL":
            return sum(c.data.pop(k, None) is not None for k in set(argv[1:]))
        if name == b"EXISTS":
            return sum(k in c.data for k in argv[1:])
        if name == b"LPUSH":
            raise ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")
        raise ReplyError(f"ERR unknown command '{name.decode()}'")

    def _advscan(self, argv):
        ns, table, cursor = argv[1].split(b":", 2)
        assert ns == NS.encode() and argv[2] == b"KV"
        count = int(argv[argv.index(b"COUNT") + 1])
        states = {}
        for item in filter(None, base64.b64decode(cursor).split(b";")):
            pid, _, part = item.partition(b":")
            states[int(pid)] = base64.b64decode(part)
        assert states, "the client names the partitions it wants"
        share = max(1, count // len(states))
        out, remaining = [], {}
        prefix = ns + b":" + table + b":"
        for pid, after in states.items():
            self._lead(pid)
            keys = sorted(k[len(prefix):] for k in self.cluster.data
                          if k.startswith(prefix) and pid_of(k, self.cluster.partition_num) == pid
                          and k[len(prefix):] > after)
            page = keys[:share]
            out += [table + b":" + k for k in page]
            if len(keys) > share:
                remaining[pid] = page[-1]
        text = b"".join(b"%d:%s;" % (p, base64.b64encode(c)) for p, c in sorted(remaining.items()))
        return [base64.b64encode(text) if remaining else b"", out]


class Env:
    def __init__(self, names=("a", "b", "c", "d"), partition_num=P, **client_kw):
        self.clock = Clock()
        self.cluster = FakeCluster(list(names), partition_num)
        self.pd = FakePD()
        self.pd.publish(self.cluster.pd_map())
        self.http = StubTreq(self.pd)
        client_kw.setdefault("refresh_interval", 3.0)
        self.client = ZanClient(self.clock, ["pd1:18001"], NS, conn_factory=self.cluster.factory,
                                http_client=self.http, **client_kw)

    def move_leader(self, pid, name, tell_pd=True):
        self.cluster.leaders[pid] = name
        if tell_pd:
            self.pd.set_leader(NS, pid, self.cluster.descriptor(name))

    def run(self, d, advance=0.01, limit=10_000):
        """Fire `d`, advancing the clock through backoffs; its result (or raise its error)."""
        d = defer.ensureDeferred(d) if not isinstance(d, defer.Deferred) else d
        box = []
        d.addBoth(box.append)
        for _ in range(limit):
            if box:
                break
            self.clock.advance(advance)
        assert box, "the operation never finished"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]


def keys_in(pid, num, count, table=b"t"):
    out, i = [], 0
    while len(out) < count:
        k = b"%s:%s:k%d" % (NS.encode(), table, i)
        if pid_of(k, num) == pid:
            out.append(k)
        i += 1
    return out


# --- hashing ----------------------------------------------------------------------------

def test_partition_of_is_unsigned_murmur3_seed0():
    # Reference vectors of MurmurHash3_x86_32 with seed 0.
    assert partition_of(b"", 1 << 32) == 0
    assert partition_of(b"hello", 1 << 32) == 0x248BFA47
    assert partition_of(b"The quick brown fox jumps over the lazy dog", 1 << 32) == 0x2E4FF723
    rng = random.Random(7)
    for _ in range(500):
        pk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        n = rng.randrange(1, 1024)
        assert partition_of(pk, n) == mmh3.hash(pk, 0, signed=False) % n
    # A hash with the top bit set must not come out negative.
    pk = next(b"t:%d" % i for i in range(10_000) if mmh3.hash(b"t:%d" % i, 0) < 0)
    assert 0 <= partition_of(pk, 7) == (mmh3.hash(pk, 0) & 0xFFFFFFFF) % 7


def test_cluster_changed_texts():
    assert is_cluster_changed(NOT_LEADER)
    assert is_cluster_changed("no partition node")
    assert is_cluster_changed("ERR something: the node stopped now")
    assert not is_cluster_changed("ERR no partition node")
    assert not is_cluster_changed("WRONGTYPE Operation against a key holding the wrong kind of value")


# --- routing ----------------------------------------------------------------------------

def test_routes_each_key_to_its_partition_leader_and_prefixes_the_namespace():
    env = Env()
    c = env.client
    env.run(c.start())
    written = {}
    for i in range(60):
        key = f"t:key{i}" if i % 2 else f"{NS}:t:key{i}"
        assert env.run(c.execute("SET", key, f"v{i}")) == b"OK"
        written[f"{NS}:t:key{i}".encode()] = f"v{i}".encode()
    assert env.cluster.data == written
    for node in env.cluster.nodes.values():
        assert node.calls, "every node leads some partition"
        for argv in node.calls:
            assert env.cluster.leaders[pid_of(argv[1], P)] == node.name
    assert env.run(c.execute("GET", "t:key3")) == b"v3"
    assert env.run(c.execute(b"GET", b"ns:t:key4")) == b"v4"
    # A key whose first part is the namespace but has no table part is a table:key.
    assert c.full_key("ns:x") == b"ns:ns:x"
    assert c.full_key("other:t:k") == b"ns:other:t:k"
    # One connection per node, reused.
    assert all(n.connections == 1 for n in env.cluster.nodes.values())


def test_cluster_changed_refreshes_the_map_then_succeeds():
    env = Env()
    c = env.client
    env.run(c.start())
    key = keys_in(3, P, 1)[0]
    env.cluster.data[key] = b"v"
    old = env.cluster.leaders[3]
    env.move_leader(3, "a" if old != "a" else "b")
    new = env.cluster.leaders[3]
    n_requests = len(env.pd.requests)
    assert env.run(c.execute("GET", key)) == b"v"
    assert env.cluster.nodes[old].calls[-1] == (b"GET", key)
    assert env.cluster.nodes[new].calls[-1] == (b"GET", key)
    # One refresh, sent with the epoch the client had.
    assert env.pd.requests[n_requests:] == [f"/query/{NS}?epoch=1"]
    assert c.partition_map.epoch == 2 and c.partition_map.leader(3).broadcast_address == new


def test_waits_for_pd_to_catch_up_with_backoff():
    env = Env()
    c = env.client
    env.run(c.start())
    key = keys_in(5, P, 1)[0]
    env.cluster.data[key] = b"v"
    env.move_leader(5, "a" if env.cluster.leaders[5] != "a" else "b", tell_pd=False)
    d = c.execute("GET", key)
    box = []
    d.addBoth(box.append)
    before = len(env.pd.requests)
    env.clock.advance(0.5)
    assert not box and len(env.pd.requests) > before  # PD still says 304
    env.pd.set_leader(NS, 5, env.cluster.descriptor(env.cluster.leaders[5]))
    for _ in range(100):
        env.clock.advance(0.05)
    assert box == [b"v"]


def test_retry_limit_exhausted_surfaces_the_error():
    env = Env(max_tries=3, retry_timeout=0)
    c = env.client
    env.run(c.start())
    key = keys_in(2, P, 1)[0]
    env.cluster.leaders[2] = "nobody"  # every node refuses, PD never learns better
    with pytest.raises(ReplyError) as e:
        env.run(c.execute("GET", key))
    assert e.value.message == NOT_LEADER
    assert sum(len(n.calls) for n in env.cluster.nodes.values()) == 3


def test_retries_continue_until_the_retry_timeout():
    env = Env(max_tries=3, retry_timeout=2.0, max_backoff=0.25)
    c = env.client
    env.run(c.start())
    env.cluster.leaders[2] = "nobody"
    start = env.clock.seconds()
    with pytest.raises(ReplyError):
        env.run(c.execute("GET", keys_in(2, P, 1)[0]))
    tries = sum(len(n.calls) for n in env.cluster.nodes.values())
    assert env.clock.seconds() - start >= 2.0
    assert 8 <= tries <= 20


def test_other_errors_fail_at_once():
    env = Env()
    c = env.client
    env.run(c.start())
    before = len(env.pd.requests)
    with pytest.raises(ReplyError) as e:
        env.run(c.execute("LPUSH", "t:k", "x"))
    assert e.value.message.startswith("WRONGTYPE")
    assert sum(len(n.calls) for n in env.cluster.nodes.values()) == 1
    assert len(env.pd.requests) == before


def test_connection_refused_is_retried():
    env = Env()
    c = env.client
    env.run(c.start())
    key = keys_in(1, P, 1)[0]
    leader = env.cluster.nodes[env.cluster.leaders[1]]
    leader.fail_next = [ConnectionRefusedError("refused"), ConnectionRefusedError("refused")]
    assert env.run(c.execute("SET", key, "v")) == b"OK"
    assert len(leader.calls) == 3


def test_missing_leader_is_no_partition_node_until_pd_names_one():
    env = Env(max_tries=2, retry_timeout=0)
    c = env.client
    env.pd.set_leader(NS, 4, None)
    env.run(c.start())
    key = keys_in(4, P, 1)[0]
    with pytest.raises(NoPartitionNode) as e:
        env.run(c.execute("GET", key))
    assert str(e.value) == "no partition node"
    env.pd.set_leader(NS, 4, env.cluster.descriptor(env.cluster.leaders[4]))
    assert env.run(c.execute("GET", key)) is None


# --- multi-key commands -----------------------------------------------------------------

def test_multi_key_commands_split_by_partition_and_merge_in_order():
    env = Env()
    c = env.client
    env.run(c.start())
    keys = [f"t:m{i}" for i in range(40)]
    assert env.run(c.mset({k: f"v{i}" for i, k in enumerate(keys)})) is None
    msets = [a for n in env.cluster.nodes.values() for a in n.calls]
    assert len(msets) == len({pid_of(c.full_key(k), P) for k in keys})  # one per partition
    for n in env.cluster.nodes.values():
        for argv in n.calls:
            assert argv[0] == b"MSET"
            assert {pid_of(k, P) for k in argv[1::2]} <= {p for p, l in env.cluster.leaders.items() if l == n.name}
    asked = ["t:nope", *reversed(keys), "t:m0"]
    want = [None] + [f"v{i}".encode() for i in reversed(range(40))] + [b"v0"]
    assert env.run(c.mget(*asked)) == want
    assert env.run(c.exists("t:m1", "t:m1", "t:nope", "ns:t:m2")) == 3
    assert env.run(c.delete("t:m1", "t:m2", "t:nope")) == 2
    assert env.run(c.mget("t:m1", "t:m2", "t:m3")) == [None, None, b"v3"]
    assert env.run(c.mget()) == [] and env.run(c.delete()) == 0


def test_multi_key_retries_only_the_moved_partition():
    env = Env()
    c = env.client
    env.run(c.start())
    keys = [f"t:r{i}" for i in range(30)]
    env.run(c.mset({k: k for k in keys}))
    moved = pid_of(c.full_key(keys[0]), P)
    old = env.cluster.leaders[moved]
    env.move_leader(moved, "d" if old != "d" else "c")
    for n in env.cluster.nodes.values():
        n.calls.clear()
    assert env.run(c.mget(*keys)) == [k.encode() for k in keys]
    mgets = sum(len(n.calls) for n in env.cluster.nodes.values())
    groups = len({pid_of(c.full_key(k), P) for k in keys})
    assert mgets == groups + 1  # the moved partition's MGET went twice


# --- PD lookup --------------------------------------------------------------------------

class _ByHost:
    """An http client that refuses some PD hosts and sends the rest to one StubTreq each."""

    def __init__(self, stubs: dict, refused=()):
        self.stubs = stubs
        self.refused = set(refused)
        self.asked: list[str] = []

    def get(self, url, **kw):
        host = url.split("//", 1)[1].split("/", 1)[0]
        self.asked.append(host)
        if host in self.refused:
            return defer.fail(ConnectionRefusedError(host))
        return self.stubs[host].get(url, **kw)


def test_pd_failover_between_two_addresses():
    clock = Clock()
    pd_a, pd_b = FakePD(), FakePD()
    for pd in (pd_a, pd_b):
        pd.publish(uniform_map(NS, 4, make_node("n1", 1)))
    http = _ByHost({"a:1": StubTreq(pd_a), "b:2": StubTreq(pd_b)}, refused={"a:1"})
    client = PDClient(clock, ["a:1", "http://b:2/"], http_client=http)
    got = defer.ensureDeferred(client.query(NS))
    assert got.result.partition_num == 4
    assert http.asked == ["a:1", "b:2"] and client.current_address == "http://b:2"
    # The PD that answered is asked first from then on; one in trouble (503) is skipped.
    http.refused.clear()
    pd_b.available = False
    got = defer.ensureDeferred(client.query(NS, epoch=1))
    assert got.result is None  # 304 from a
    assert http.asked[2:] == ["b:2", "a:1"] and client.current_address == "http://a:1"
    pd_a.available = False
    d = defer.ensureDeferred(client.query(NS))
    assert isinstance(d.result.value, PDUnavailable)
    d.addErrback(lambda f: None)
    pd_a.available = True
    d = defer.ensureDeferred(client.query("missing"))
    assert isinstance(d.result.value, PDNamespaceNotFound)
    d.addErrback(lambda f: None)


def test_pd_timeout_moves_to_the_next_address():
    clock = Clock()
    pd_b = FakePD()
    pd_b.publish(uniform_map(NS, 2, make_node("n1", 1)))

    class Hanging:
        def get(self, url, **kw):
            if "//a:1" in url:
                return defer.Deferred()
            return StubTreq(pd_b).get(url, **kw)

    client = PDClient(clock, ["a:1", "b:2"], http_client=Hanging(), timeout=3.0)
    d = defer.ensureDeferred(client.query(NS))
    assert not d.called
    clock.advance(3.0)
    assert d.result.epoch == 1 and client.current_address == "http://b:2"


def test_tracker_refreshes_periodically_with_304_and_older_epochs_ignored():
    clock = Clock()
    pd = FakePD()
    n1, n2 = make_node("n1", 1), make_node("n2", 2)
    pd.publish(uniform_map(NS, 4, [n1, n2], epoch=5))
    tracker = PartitionTracker(clock, PDClient(clock, ["pd:1"], StubTreq(pd)), NS, interval=2.0)
    seen = []
    tracker.listeners.append(seen.append)
    tracker.startService()
    first = tracker.current
    assert first.epoch == 5 and pd.requests == [f"/query/{NS}"]
    clock.advance(2.0)
    assert pd.requests[-1] == f"/query/{NS}?epoch=5" and tracker.current is first  # 304
    pd.set_leader(NS, 1, n1)
    clock.advance(2.0)
    assert tracker.current.epoch == 6 and tracker.current.leader(1) == n1
    pd.publish(uniform_map(NS, 4, [n2], epoch=3))  # a lagging PD
    clock.advance(2.0)
    assert tracker.current.epoch == 6
    assert [m.epoch for m in seen] == [5, 6]
    tracker.stopService()
    clock.advance(10.0)
    assert len(pd.requests) == 4


def test_leaderless_partition_keeps_the_old_leader_while_it_is_a_replica():
    clock = Clock()
    pd = FakePD()
    n1, n2 = make_node("n1", 1), make_node("n2", 2)
    pd.publish(uniform_map(NS, 2, [n1, n2]))
    tracker = PartitionTracker(clock, PDClient(clock, ["pd:1"], StubTreq(pd)), NS)
    tracker.refresh()
    pd.set_leader(NS, 0, None)
    pmap = tracker.refresh().result
    assert pmap.leader(0) == n1 and pmap.epoch == 2


def test_map_change_closes_connections_to_nodes_gone_from_it():
    env = Env(names=("a", "b"), partition_num=4)
    c = env.client
    env.run(c.start())
    env.run(c.mset({f"t:x{i}": "v" for i in range(20)}))
    env.pd.publish(uniform_map(NS, 4, env.cluster.descriptor("a"), epoch=9))
    env.clock.advance(3.0)  # the periodic refresh
    assert c.partition_map.epoch == 9
    assert env.cluster.nodes["b"].closed == 1 and env.cluster.nodes["a"].closed == 0
    env.run(c.close())
    assert env.cluster.nodes["a"].closed == 1


# --- scan -------------------------------------------------------------------------------

async def _collect(aiter):
    return [k async for k in aiter]


def test_scan_visits_every_key_once_across_leaders_and_a_leader_change():
    env = Env()
    c = env.client
    env.run(c.start())
    keys = {f"t:s{i:03d}" for i in range(100)}
    env.run(c.mset({k: "v" for k in keys}))
    env.run(c.mset({f"other:s{i}": "v" for i in range(10)}))
    # Move a leader behind the client's back after the first round.
    calls = {"n": 0}
    node_a = env.cluster.nodes["a"]
    orig = node_a.execute

    def execute(*argv):
        calls["n"] += 1
        if calls["n"] == 2:
            env.move_leader(0, "b")
        return orig(*argv)

    node_a.execute = execute
    got = env.run(defer.ensureDeferred(_collect(c.scan("t", count=8))))
    assert sorted(got) == sorted(k.encode() for k in keys)
    hosts_per_round = [n.name for n in env.cluster.nodes.values()
                       if any(a[0] == b"ADVSCAN" for a in n.calls)]
    assert set(hosts_per_round) == {"a", "b", "c", "d"}


def test_scan_with_match():
    env = Env()
    c = env.client
    env.run(c.start())
    env.run(c.mset({f"t:{p}{i}": "v" for p in "xy" for i in range(15)}))
    got = env.run(defer.ensureDeferred(_collect(c.scan("t", match="x*", count=4))))
    # The fake ignores MATCH; check the client sends it in ZanRedisDB's position.
    scans = [a for n in env.cluster.nodes.values() for a in n.calls if a[0] == b"ADVSCAN"]
    assert all(a[3:5] == (b"MATCH", b"x*") and a[5:] == (b"COUNT", b"4") for a in scans)
    assert len(got) == 30


def test_first_command_fetches_the_map_and_pd_errors_are_retried():
    env = Env(max_tries=3, retry_timeout=0)
    c = env.client
    env.pd.available = False
    d = c.execute("SET", "t:first", "v")
    box = []
    d.addBoth(box.append)
    assert not box and len(env.pd.requests) == 2  # PD 503: asked again, then a backoff
    env.pd.available = True
    env.clock.advance(1.0)
    assert box == [b"OK"] and env.cluster.data == {b"ns:t:first": b"v"}
    env2 = Env()
    env2.pd.maps.clear()  # PD does not know the namespace: not retried
    with pytest.raises(PDNamespaceNotFound):
        env2.run(env2.client.execute("GET", "t:x"))
    assert len(env2.pd.requests) == 1
