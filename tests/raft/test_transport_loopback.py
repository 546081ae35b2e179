"""Three RaftDrivers over RaftTransport on real loopback TCP, in one reactor.

Two groups, replica ids distinct from node ids (replica = 100 * group + node), so the
resolver is exercised and both groups share each node-to-node link.
"""

from __future__ import annotations

import random
import struct
import time

import msgpack

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs

from zan.raft.core import Config
from zan.raft.driver import RaftDriver
from zan.raft.storage import MemoryLogStore
from zan.raft.transport import TRANSPORT_VERSION, RaftTransport
from zan.raft.types import Entry, EntryType, Message, MessageType

GROUPS = (1, 2)
NODES = (1, 2, 3)


def replica(gid, node):
    return 100 * gid + node


class StateMachine:
    def __init__(self):
        self.data = []

    def apply(self, entries):
        for e in entries:
            if e.type == EntryType.NORMAL and e.data:
                self.data.append(e.data)
        return [None] * len(entries)


class Node:
    def __init__(self, reactor, nid):
        self.reactor = reactor
        self.nid = nid
        self.store = MemoryLogStore()
        self.transport: RaftTransport | None = None
        self.port = None
        self.port_no = 0
        self.driver = RaftDriver(reactor, self.store, lambda batch: self.transport.send(batch),
                                 tick_ms=20, rand=random.Random(nid))
        self.sms = {}
        for gid in GROUPS:
            sm = self.sms[gid] = StateMachine()
            self.driver.add_group(
                gid, Config(id=replica(gid, nid), election_tick=10, heartbeat_tick=1,
                            pre_vote=True, check_quorum=True),
                sm.apply, peers=[replica(gid, n) for n in NODES])

    def start_transport(self):
        d = self.driver
        self.transport = RaftTransport(
            self.reactor, "loopback-test", self.nid,
            on_messages=lambda batch: [d.step(gid, m) for gid, m in batch],
            on_unreachable=lambda node, pairs: [d.report_unreachable(g, r) for g, r in pairs],
            on_snapshot_failed=lambda g, r: d.report_snapshot(g, r, False),
            resolve_node=lambda gid, r: r % 100, unreachable_interval=0.2,
            reconnect_initial=0.05, reconnect_max=0.3, rand=random.Random(self.nid))
        self.port = self.reactor.listenTCP(self.port_no, self.transport.server_factory,
                                           interface="127.0.0.1")
        self.port_no = self.port.getHost().port

    async def stop_transport(self):
        port, self.port = self.port, None
        if port is not None:
            await defer.maybeDeferred(port.stopListening)
        await self.transport.stop()


async def wait_for(reactor, cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


def leader_of(nodes, gid):
    leaders = [n for n in nodes.values() if n.driver.is_leader(gid)]
    return leaders[0] if len(leaders) == 1 else None


@pytest_twisted.ensureDeferred
async def test_three_nodes_elect_commit_and_catch_up_after_restart():
    from twisted.internet import reactor

    nodes = {nid: Node(reactor, nid) for nid in NODES}
    with capturedLogs() as events:
        await run(reactor, nodes)
    failures = [e for e in events if e.get("log_failure") is not None]
    assert failures == [], [e["log_failure"].getTraceback() for e in failures]


async def run(reactor, nodes):
    try:
        for n in nodes.values():
            n.start_transport()
        for n in nodes.values():
            for m in nodes.values():
                n.transport.add_peer(m.nid, "127.0.0.1", m.port_no)
            n.driver.start()

        await wait_for(reactor, lambda: all(leader_of(nodes, g) for g in GROUPS), what="leaders")
        for gid in GROUPS:
            lead = leader_of(nodes, gid)
            await lead.driver.propose(gid, b"first")
            await wait_for(reactor, lambda: True)
        for i in range(20):
            for gid in GROUPS:
                await leader_of(nodes, gid).driver.propose(gid, b"a%d" % i)
        expected = [b"first"] + [b"a%d" % i for i in range(20)]
        await wait_for(reactor, lambda: all(n.sms[g].data == expected for n in nodes.values()
                                            for g in GROUPS), what="replication")
        # one link per peer node carries both groups
        for n in nodes.values():
            assert sorted(n.transport.peers()) == [m for m in NODES if m != n.nid]
            assert all(st.connected for st in n.transport.peers().values())

        # Take down the transport (listener and connections) of a node leading no group.
        down = next(n for n in nodes.values() if not any(n.driver.is_leader(g) for g in GROUPS))
        await down.stop_transport()
        for i in range(20):
            for gid in GROUPS:
                lead = leader_of(nodes, gid)
                assert lead is not down
                await lead.driver.propose(gid, b"b%d" % i)
        assert all(down.sms[g].data == expected for g in GROUPS)
        others = [n for n in nodes.values() if n is not down]
        assert not any(n.transport.peers()[down.nid].connected for n in others)
        assert all(leader_of(nodes, g).transport.peers()[down.nid].messages_dropped > 0
                   for g in GROUPS)

        # Same port again: the others' links reconnect and the node catches up.
        down.start_transport()
        for m in others:
            down.transport.add_peer(m.nid, "127.0.0.1", m.port_no)
        expected += [b"b%d" % i for i in range(20)]
        await wait_for(reactor, lambda: all(down.sms[g].data == expected for g in GROUPS),
                       what="catch-up")
        await wait_for(reactor, lambda: all(n.transport.peers()[down.nid].connected
                                            for n in others), what="reconnect")
        for gid in GROUPS:
            await leader_of(nodes, gid).driver.propose(gid, b"last")
        await wait_for(reactor, lambda: all(n.sms[g].data[-1:] == [b"last"]
                                            for n in nodes.values() for g in GROUPS),
                       what="final commit")
    finally:
        for n in nodes.values():
            n.driver.stop()
        for n in nodes.values():
            if n.transport is not None:
                await n.stop_transport()


class _SilentPeer(Protocol):
    """Greets like node 2, then never reads: its socket buffers fill up."""

    def connectionMade(self):
        body = msgpack.packb({"version": TRANSPORT_VERSION, "cluster_id": "loopback-test",
                              "node_id": 2})
        self.transport.write(struct.pack("!I", len(body) + 1) + b"H" + body)
        self.transport.pauseProducing()


@pytest_twisted.ensureDeferred
async def test_peer_that_stops_reading_fills_a_bounded_buffer():
    from twisted.internet import reactor

    unreachable = []
    port = reactor.listenTCP(0, Factory.forProtocol(_SilentPeer), interface="127.0.0.1")
    t = RaftTransport(reactor, "loopback-test", 1, lambda batch: None,
                      lambda node, pairs: unreachable.append((node, pairs)),
                      resolve_node=lambda gid, r: r, max_buffer_bytes=1 << 20)
    try:
        t.add_peer(2, "127.0.0.1", port.getHost().port)
        await wait_for(reactor, lambda: t.peers()[2].connected, what="handshake")
        payload = b"z" * (256 << 10)
        sent = 0
        # Far more than the kernel's socket buffers and our 1 MiB backlog can hold.
        while not unreachable and sent < 2000:
            t.send([(7, Message(MessageType.APP, to=2, frm=1, term=1, index=sent,
                                entries=(Entry(1, sent + 1, data=payload),)))])
            sent += 1
            await task.deferLater(reactor, 0, lambda: None)
        st = t.peers()[2]
        assert unreachable and unreachable[0][0] == 2
        assert st.messages_dropped > 0 and st.connected
        assert 0 < st.backlog_bytes <= 1 << 20
    finally:
        await t.stop()
        await defer.maybeDeferred(port.stopListening)
