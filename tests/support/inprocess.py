"""A static Zan cluster inside one test: every node's Raft groups, dispatcher and storage
are real, on one `Clock`; the network between them is in memory and can drop, cut and
isolate (the TiKV test-cluster pattern).  Forwarding and snapshot fetches go straight to
the other node's objects instead of over TCP/HTTP."""

from __future__ import annotations

import os
import random
from contextlib import contextmanager

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock

from zan.node.cluster import StaticCluster
from zan.node.config import build_config
from zan.node.dispatch import NodeDispatcher
from zan.node.namespaces import KeyRouter
from zan.node.service import group_id_of
from zan.node.snapshot import snapshot_chunks
from zan.raft.wal import WalLogStore
from zan.resp.protocol import ClientState

__all__ = ["MemoryNetwork", "InProcessCluster", "running_cluster"]


class _MemoryTransport:
    def __init__(self, net, node_id, on_messages, on_unreachable, on_snapshot_failed):
        self.net = net
        self.node_id = node_id
        self.on_messages = on_messages
        self.on_unreachable = on_unreachable
        self.server_factory = None

    def add_peer(self, node_id, host, port):
        pass

    def send(self, batch):
        for gid, m in batch:
            self.net.deliver(self.node_id, m.to, gid, m)

    def stop(self):
        self.net.transports.pop(self.node_id, None)
        return succeed(None)


class MemoryNetwork:
    def __init__(self, clock: Clock, rng: random.Random):
        self.clock = clock
        self.rng = rng
        self.transports: dict[int, _MemoryTransport] = {}
        self.cut_links: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        # f(frm, to, gid, msg) -> True to lose that message (targeted faults).
        self.drop_if = None

    def factory(self, node_id):
        def make(on_messages, on_unreachable, on_snapshot_failed):
            t = _MemoryTransport(self, node_id, on_messages, on_unreachable, on_snapshot_failed)
            self.transports[node_id] = t
            return t
        return make

    def deliver(self, frm, to, gid, msg):
        if (frm, to) in self.cut_links or (self.drop_rate and self.rng.random() < self.drop_rate):
            return
        if self.drop_if is not None and self.drop_if(frm, to, gid, msg):
            return
        self.clock.callLater(0, self._arrive, to, gid, msg)

    def _arrive(self, to, gid, msg):
        t = self.transports.get(to)
        if t is not None:
            t.on_messages([(gid, msg)])

    def cut(self, a, b):
        self.cut_links |= {(a, b), (b, a)}

    def isolate(self, node, others):
        for o in others:
            if o != node:
                self.cut(node, o)

    def heal(self):
        self.cut_links.clear()


class _Node:
    """The parts of a data node the cluster and the dispatcher use."""

    def __init__(self, node_id, config, clock, net, cluster_ref):
        self.node_id = node_id
        self.config = config
        self.rng = random.Random(node_id)
        self.settings = {"stale_read": False}
        self.wal = WalLogStore(os.path.join(config.data_dir, "raft-wal"))
        self.cluster = StaticCluster(
            self, config, clock, self.wal, group_id_of,
            transport_factory=net.factory(node_id),
            snapshot_source=cluster_ref.snapshot_source(node_id),
            forward_to=cluster_ref.forward_from(node_id))
        self._partitions = self.cluster.open_partitions()
        router = KeyRouter({ns.name: ns for ns in config.namespaces}, config.default_namespace)
        self.dispatcher = NodeDispatcher(clock, router, self.cluster, server=None, rng=self.rng)
        self.dispatcher.forwarder = self.cluster.forward
        self.dispatcher.wait_for_leaders(config.tick_ms, config.election_tick,
                                         config.proposal_timeout_ms)

    def partition(self, ns, pid):
        return self._partitions.get((ns, pid))

    def partitions(self):
        return list(self._partitions.values())

    def close(self):
        self.cluster.stop()
        for p in self._partitions.values():
            p.state_machine.engine.close()
        self.wal.close()


class InProcessCluster:
    def __init__(self, tmp_path, n=3, partition_num=2, replicator=3, snap_count=1000,
                 snap_catchup=10, seed=0, settings=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.net = MemoryNetwork(self.clock, random.Random(seed))
        self.tmp = str(tmp_path)
        self.n = n
        nodes = [{"node_id": i, "raft_addr": f"127.0.0.1:{10000 + i}",
                  "redis_addr": f"127.0.0.1:{20000 + i}", "http_addr": f"127.0.0.1:{30000 + i}"}
                 for i in range(1, n + 1)]
        self.configs = {
            i: build_config({
                "node_id": i, "cluster_nodes": nodes, "cluster_id": "test",
                "data_dir": os.path.join(self.tmp, f"node{i}"), "tick_ms": 100,
                "election_tick": 10, "proposal_timeout_ms": 4000,
                "namespaces": [{"name": "default", "partition_num": partition_num,
                                "replicator": replicator, "snap_count": snap_count,
                                "snap_catchup": snap_catchup}], **(settings or {})})
            for i in range(1, n + 1)}
        self.nodes: dict[int, _Node] = {}
        for i in range(1, n + 1):
            self.start(i)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, i):
        os.makedirs(self.configs[i].data_dir, exist_ok=True)
        self.nodes[i] = _Node(i, self.configs[i], self.clock, self.net, self)

    def crash(self, i):
        """Stop node i abruptly (what was synced stays, the rest is gone)."""
        node = self.nodes.pop(i)
        node.close()

    def close(self):
        for i in list(self.nodes):
            self.crash(i)

    def run(self, seconds: float, step: float = 0.05):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    # -- seams ---------------------------------------------------------------------------

    def forward_from(self, origin):
        def forward(node_id, argv):
            target = self.nodes.get(node_id)
            if target is None or (origin, node_id) in self.net.cut_links:
                from zan.errors import Stopping
                return Deferred.fromCoroutine(_raise(Stopping("ERR connection refused")))
            client = ClientState(id=-origin, addr=f"node{origin}", created=0.0)
            return maybeDeferred(target.dispatcher.dispatch, client, argv)
        return forward

    def snapshot_source(self, origin):
        def fetch(leader, partition, receiver):
            node = self.nodes[leader]
            source = node.partition(partition.namespace, partition.pid)
            node.cluster.snapshot_fetch_started(source.group_id, origin)
            snap = source.state_machine.engine.snapshot()
            try:
                for chunk in snapshot_chunks(snap):
                    receiver.feed(chunk)
            finally:
                snap.close()
            node.cluster.snapshot_served(source.group_id, origin, True)
            return succeed(None)
        return fetch

    # -- client side -----------------------------------------------------------------------

    def call(self, node_id, *argv, settle=2.0):
        """Run a command on a node and let the cluster run until it answers."""
        argv = [a.encode() if isinstance(a, str) else a for a in argv]
        client = ClientState(id=1000 + node_id, addr="test", created=0.0)
        result = maybeDeferred(self.nodes[node_id].dispatcher.dispatch, client, argv)
        out = []
        result.addBoth(out.append)
        waited = 0.0
        while not out and waited < settle + 10:
            self.clock.advance(0.05)
            waited += 0.05
        if not out:
            raise AssertionError(f"{argv} got no answer")
        value = out[0]
        if hasattr(value, "value") and hasattr(value, "trap"):   # a Failure
            return value.value
        return value

    def leader_node(self, pid=0):
        for i, node in self.nodes.items():
            p = node.partition("default", pid)
            if p is not None and p.is_leader:
                return i
        return None

    def wait_leader(self, pid=0, among=None, timeout=20.0):
        waited = 0.0
        while waited < timeout:
            lead = self.leader_node(pid)
            if lead is not None and (among is None or lead in among):
                return lead
            self.clock.advance(0.05)
            waited += 0.05
        raise AssertionError(f"no leader for partition {pid}")


async def _raise(error):
    raise error


@contextmanager
def running_cluster(tmp_path):
    """An `InProcessCluster` whose two partitions have leaders, closed at the end."""
    c = InProcessCluster(tmp_path)
    try:
        c.wait_leader(0)
        c.wait_leader(1)
        yield c
    finally:
        c.close()
