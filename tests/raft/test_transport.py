"""RaftTransport on a MemoryReactorClock: framing, handshake, coalescing, backoff, drops."""

from __future__ import annotations

import random
import struct

import msgpack
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.test.iosim import ConnectionCompleter

from zan.errors import ConfigError
from zan.raft.codec import encode_messages
from zan.raft.transport import RaftTransport, TRANSPORT_VERSION
from zan.raft.types import (
    ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata,
)

MT = MessageType
PORT_BASE = 7000


def frame(kind: bytes, body: bytes) -> bytes:
    return struct.pack("!I", len(body) + 1) + kind + body


def hello(cluster="c1", node_id=2, version=TRANSPORT_VERSION) -> bytes:
    return frame(b"H", msgpack.packb({"version": version, "cluster_id": cluster,
                                      "node_id": node_id}))


def app(to, frm=1, index=5, data=b"x", term=2):
    return Message(MT.APP, to=to, frm=frm, term=term, log_term=term, index=index,
                   entries=(Entry(term, index + 1, data=data),), commit=index)


class Recorder:
    def __init__(self):
        self.batches = []
        self.unreachable = []
        self.snap_failed = []

    def on_messages(self, batch):
        self.batches.append(list(batch))

    def on_unreachable(self, node_id, pairs):
        self.unreachable.append((node_id, pairs))

    def on_snapshot_failed(self, gid, replica):
        self.snap_failed.append((gid, replica))

    @property
    def messages(self):
        return [item for b in self.batches for item in b]


class Net:
    """Transports of several nodes on one MemoryReactorClock.  Replica id == node id."""

    def __init__(self):
        self.reactor = MemoryReactorClock()
        self.completer = ConnectionCompleter(self.reactor)
        self.t: dict[int, RaftTransport] = {}
        self.rec: dict[int, Recorder] = {}
        self.pumps = []

    def node(self, nid, cluster="c1", **kw):
        rec = self.rec[nid] = Recorder()
        kw.setdefault("reconnect_jitter", 0.0)
        t = self.t[nid] = RaftTransport(
            self.reactor, cluster, nid, rec.on_messages, rec.on_unreachable,
            resolve_node=lambda gid, replica: replica, on_snapshot_failed=rec.on_snapshot_failed,
            endpoint_factory=lambda h, p: TCP4ClientEndpoint(self.reactor, h, p),
            rand=random.Random(nid), **kw)
        self.reactor.listenTCP(PORT_BASE + nid, t.server_factory)
        return t

    def link(self, a, b):
        self.t[a].add_peer(b, "127.0.0.1", PORT_BASE + b)

    def connect_all(self):
        while True:
            pump = self.completer.succeedOnce()
            if pump is None:
                break
            self.pumps.append(pump)
        self.flush()

    def flush(self):
        moved = True
        while moved:
            moved = False
            self.reactor.advance(0)
            for p in self.pumps:
                moved = p.flush() or moved

    def retry_delays(self):
        now = self.reactor.seconds()
        return sorted(round(c.getTime() - now, 6) for c in self.reactor.getDelayedCalls())


@pytest.fixture
def net():
    return Net()


def pair(net, **kw):
    net.node(1, **kw)
    net.node(2, **kw)
    net.link(1, 2)
    net.connect_all()
    return net.t[1], net.t[2]


def server_proto(t):
    proto = t.server_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    tr = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
    proto.makeConnection(tr)
    return proto, tr


def test_config_is_checked():
    with pytest.raises(ConfigError):
        RaftTransport(MemoryReactorClock(), "", 1, print, print, resolve_node=lambda g, r: r)
    with pytest.raises(ConfigError):
        RaftTransport(MemoryReactorClock(), "c", 0, print, print, resolve_node=lambda g, r: r)


# ---------------------------------------------------------------- framing

def test_frames_split_at_every_byte(net):
    t = net.node(1)
    batch1 = [(7, app(1, frm=2)), (8, Message(MT.HEARTBEAT, to=1, frm=2, term=3, commit=4))]
    batch2 = [(9, app(1, frm=2, data=b"\x00" * 300))]
    data = hello() + frame(b"M", encode_messages(batch1)) + frame(b"M", encode_messages(batch2))
    for cut in range(len(data) + 1):
        rec = net.rec[1]
        rec.batches.clear()
        proto, tr = server_proto(t)
        proto.dataReceived(data[:cut])
        proto.dataReceived(data[cut:])
        assert rec.batches == [batch1, batch2], cut
        assert not tr.disconnecting
    rec.batches.clear()
    proto, tr = server_proto(t)
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert rec.batches == [batch1, batch2]


def test_server_greets_with_hello(net):
    t = net.node(1)
    _, tr = server_proto(t)
    assert tr.value() == hello(node_id=1)


# ---------------------------------------------------------------- handshake

def test_handshake_then_messages_flow(net):
    t1, t2 = pair(net)
    assert t1.peers()[2].connected
    t1.send([(7, app(2)), (8, app(2, index=9))])
    net.flush()
    assert net.rec[2].batches == [[(7, app(2)), (8, app(2, index=9))]]
    assert net.rec[1].unreachable == []


def test_wrong_cluster_id_is_refused_and_logged(net):
    net.node(1, cluster="alpha")
    net.node(2, cluster="beta")
    net.link(1, 2)
    with capturedLogs() as events:
        net.connect_all()
    texts = [e.get("reason", "") for e in events]
    assert any("cluster id mismatch" in x and "'alpha'" in x and "'beta'" in x for x in texts)
    assert not net.t[1].peers()[2].connected
    # both ends closed; the dialler retries later
    assert all(p.clientIO.disconnected and p.serverIO.disconnected for p in net.pumps)
    assert net.retry_delays() == [0.1]
    net.t[1].send([(7, app(2))])
    net.flush()
    assert net.rec[2].batches == []


def test_wrong_cluster_hello_gets_error_frame(net):
    t = net.node(1)
    proto, tr = server_proto(t)
    tr.clear()
    proto.dataReceived(hello(cluster="other"))
    out = tr.value()
    assert out[4:5] == b"E"
    assert "cluster id mismatch" in msgpack.unpackb(out[5:])["error"]
    assert tr.disconnecting


def test_wrong_version_and_own_node_id_refused(net):
    t = net.node(1)
    proto, tr = server_proto(t)
    proto.dataReceived(hello(version=99))
    assert tr.disconnecting
    proto, tr = server_proto(t)
    proto.dataReceived(hello(node_id=1))
    assert tr.disconnecting


def test_dialled_address_must_be_the_expected_node(net):
    net.node(1)
    net.node(3)
    net.t[1].add_peer(2, "127.0.0.1", PORT_BASE + 3)   # node 3 answers where 2 was expected
    with capturedLogs() as events:
        net.connect_all()
    assert any("is node 3, expected node 2" in e.get("reason", "") for e in events)
    assert not net.t[1].peers()[2].connected


@pytest.mark.parametrize("garbage", [
    frame(b"M", b"\xc1\xc1 not msgpack"),
    frame(b"M", msgpack.packb([1, [[1, 2, 3]]])),            # a short message
    frame(b"Z", b""),                                          # unknown kind
    hello(),                                                   # a second hello
    struct.pack("!I", 0),                                      # empty frame
    struct.pack("!I", 1 << 30) + b"M",                         # over the limit
], ids=["undecodable", "bad-message", "unknown-kind", "second-hello", "empty", "oversized"])
def test_garbage_closes_that_connection_only(net, garbage):
    t = net.node(1)
    proto, tr = server_proto(t)
    other, other_tr = server_proto(t)
    proto.dataReceived(hello())
    other.dataReceived(hello(node_id=3))
    with capturedLogs() as events:
        proto.dataReceived(garbage + frame(b"M", encode_messages([(7, app(1))])))
    assert tr.disconnecting
    assert any("garbage" in e.get("log_format", "") for e in events)
    assert net.rec[1].batches == []
    other.dataReceived(frame(b"M", encode_messages([(7, app(1, frm=3))])))
    assert net.rec[1].batches == [[(7, app(1, frm=3))]]
    assert not other_tr.disconnecting


def test_messages_before_hello_are_garbage(net):
    t = net.node(1)
    proto, tr = server_proto(t)
    proto.dataReceived(frame(b"M", encode_messages([(7, app(1))])))
    assert tr.disconnecting
    assert net.rec[1].batches == []


def test_silent_connection_times_out(net):
    t = net.node(1, handshake_timeout=3.0)
    proto, tr = server_proto(t)
    net.reactor.advance(2.9)
    assert not tr.disconnecting
    net.reactor.advance(0.2)
    assert tr.disconnecting


# ---------------------------------------------------------------- coalescing

def test_one_frame_per_peer_per_turn(net):
    net.node(3)
    t1, t2 = pair(net)
    net.link(1, 3)
    net.connect_all()
    t1.send([(7, app(2))])
    t1.send([(8, app(3)), (9, app(2, index=6))])
    t1.send([(10, Message(MT.HEARTBEAT, to=3, frm=1))])
    net.flush()
    peers = t1.peers()
    assert (peers[2].frames_sent, peers[2].messages_sent) == (1, 2)
    assert (peers[3].frames_sent, peers[3].messages_sent) == (1, 2)
    assert net.rec[2].batches == [[(7, app(2)), (9, app(2, index=6))]]
    assert net.rec[3].batches == [[(8, app(3)), (10, Message(MT.HEARTBEAT, to=3, frm=1))]]
    t1.send([(7, app(2, index=7))])
    net.flush()
    assert t1.peers()[2].frames_sent == 2


def test_large_batch_split_under_frame_limit(net):
    t1, t2 = pair(net, max_frame=4096)
    batch = [(7, app(2, index=i, data=bytes([i]) * 1000)) for i in range(10)]
    t1.send(batch)
    net.flush()
    assert net.rec[2].messages == batch
    assert t1.peers()[2].frames_sent > 2
    # one message over the limit cannot go: dropped and reported
    t1.send([(7, app(2, data=b"y" * 5000))])
    net.flush()
    assert t1.peers()[2].messages_dropped == 1
    assert net.rec[1].unreachable == [(2, frozenset({(7, 2)}))]


def test_messages_for_the_local_node_loop_back(net):
    t1 = net.node(1)
    t1.send([(7, app(1, frm=1))])
    assert net.rec[1].batches == []
    net.reactor.advance(0)
    assert net.rec[1].batches == [[(7, app(1, frm=1))]]


def test_replica_to_node_mapping_shares_one_link(net):
    """Replica ids differ per group; all groups' replicas on node 2 share its link."""
    where = {(7, 21): 2, (8, 35): 2, (9, 12): 2}
    net.node(1)
    net.node(2)
    net.t[1]._resolve = lambda gid, replica: where.get((gid, replica))
    net.link(1, 2)
    net.connect_all()
    net.t[1].send([(7, app(21)), (8, app(35)), (9, app(12)), (9, app(99))])
    net.flush()
    assert net.rec[2].batches == [[(7, app(21)), (8, app(35)), (9, app(12))]]
    assert net.t[1].dropped_unresolved == 1


# ---------------------------------------------------------------- reconnect

def test_backoff_schedule(net):
    t1 = net.node(1, reconnect_initial=0.1, reconnect_max=2.0, reconnect_factor=2.0)
    t1.add_peer(2, "127.0.0.1", PORT_BASE + 2)
    delays = []
    for _ in range(7):
        assert len(net.reactor.tcpClients) == 1
        net.completer.failOnce()
        (d,) = net.retry_delays()
        delays.append(d)
        net.reactor.advance(d + 1e-5)
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    # success resets the schedule
    net.node(2)
    net.connect_all()
    assert t1.peers()[2].connected and t1.peers()[2].failed_attempts == 0
    net.pumps[0].clientIO.loseConnection()
    net.flush()
    assert not t1.peers()[2].connected
    assert net.retry_delays() == [0.1]


def test_backoff_jitter_is_bounded_and_seeded():
    def run(seed):
        net = Net()
        rec = Recorder()
        t = RaftTransport(net.reactor, "c1", 1, rec.on_messages, rec.on_unreachable,
                          resolve_node=lambda g, r: r, reconnect_jitter=0.5,
                          endpoint_factory=lambda h, p: TCP4ClientEndpoint(net.reactor, h, p),
                          rand=random.Random(seed))
        t.add_peer(2, "127.0.0.1", 1)
        out = []
        for _ in range(5):
            net.completer.failOnce()
            (d,) = net.retry_delays()
            out.append(d)
            net.reactor.advance(d + 1e-5)
        return out

    a, b = run(1), run(1)
    assert a == b
    base = [0.1, 0.2, 0.4, 0.8, 1.6]
    assert all(x <= y <= x + 0.5 for x, y in zip(base, a))
    assert a != base and run(2) != a


def test_reconnects_after_connection_loss_and_resumes(net):
    t1, t2 = pair(net)
    net.pumps[0].serverIO.loseConnection()
    net.flush()
    assert not t1.peers()[2].connected
    net.reactor.advance(0.1)
    net.connect_all()
    assert t1.peers()[2].connected
    t1.send([(7, app(2))])
    net.flush()
    assert net.rec[2].batches == [[(7, app(2))]]


def test_remove_peer_stops_dialling(net):
    t1, _ = pair(net)
    t1.remove_peer(2)
    net.flush()
    assert 2 not in t1.peers()
    net.reactor.advance(10)
    assert net.reactor.tcpClients == []
    t1.send([(7, app(2))])
    net.reactor.advance(0)
    assert net.rec[1].unreachable == [(2, frozenset({(7, 2)}))]


# ---------------------------------------------------------------- unreachable

def test_unreachable_reports_are_rate_limited(net):
    t1 = net.node(1, unreachable_interval=1.0)
    t1.add_peer(2, "127.0.0.1", PORT_BASE + 2)
    rec = net.rec[1]
    t1.send([(7, app(2)), (8, app(2))])
    assert rec.unreachable == []         # never from inside send
    net.reactor.advance(0)
    assert rec.unreachable == [(2, frozenset({(7, 2), (8, 2)}))]
    t1.send([(9, app(2))])
    net.reactor.advance(0.5)
    t1.send([(9, app(2)), (10, app(2))])
    net.reactor.advance(0.4)
    assert len(rec.unreachable) == 1
    net.reactor.advance(0.1)
    assert rec.unreachable[1:] == [(2, frozenset({(9, 2), (10, 2)}))]
    assert t1.peers()[2].messages_dropped == 5
    net.reactor.advance(5)
    assert len(rec.unreachable) == 2


def test_unknown_peer_is_unreachable(net):
    t1 = net.node(1)
    t1.send([(7, app(4))])
    net.reactor.advance(0)
    assert net.rec[1].unreachable == [(4, frozenset({(7, 4)}))]


def test_link_loss_reports_groups_sent_on_it(net):
    t1, _ = pair(net)
    t1.send([(7, app(2)), (8, app(2))])
    net.flush()
    assert net.rec[1].unreachable == []
    net.pumps[0].serverIO.loseConnection()
    net.flush()
    assert net.rec[1].unreachable == [(2, frozenset({(7, 2), (8, 2)}))]


# ---------------------------------------------------------------- backpressure

def test_send_buffer_is_bounded_while_peer_does_not_read(net):
    t1, _ = pair(net, max_buffer_bytes=10_000)
    proto = t1._links[2].proto
    proto.pauseProducing()               # what the socket does when the peer stops reading
    batches = [[(7, app(2, index=i, data=bytes([i]) * 3000))] for i in range(5)]
    for b in batches:
        t1.send(b)
        net.reactor.advance(0)
    st = t1.peers()[2]
    assert st.backlog_bytes <= 10_000
    assert st.messages_dropped == 2 and st.frames_sent == 0
    assert net.rec[1].unreachable == [(2, frozenset({(7, 2)}))]
    proto.resumeProducing()
    net.flush()
    assert net.rec[2].messages == [m for b in batches[:3] for m in b]
    assert t1.peers()[2].backlog_bytes == 0
    t1.send(batches[4])
    net.flush()
    assert net.rec[2].messages[-1] == batches[4][0]


# ---------------------------------------------------------------- snapshots

def snap_msg(to):
    meta = SnapshotMetadata(100, 4, ConfState((1, 2, 3), (4,)))
    return Message(MT.SNAP, to=to, frm=1, term=4,
                   snapshot=Snapshot(meta, b'{"url": "http://n1:12380/snap/7/100"}'))


def test_snapshot_messages_go_through(net):
    t1, _ = pair(net)
    t1.send([(7, snap_msg(2))])
    net.flush()
    assert net.rec[2].batches == [[(7, snap_msg(2))]]
    assert net.rec[1].snap_failed == []


def test_dropped_snapshot_is_reported_as_failed(net):
    t1 = net.node(1)
    t1.add_peer(2, "127.0.0.1", PORT_BASE + 2)
    t1.send([(7, snap_msg(2)), (8, app(2))])
    net.reactor.advance(0)
    assert net.rec[1].snap_failed == [(7, 2)]
    assert net.rec[1].unreachable == [(2, frozenset({(7, 2), (8, 2)}))]


# ---------------------------------------------------------------- lifecycle

def test_stop_closes_everything(net):
    t1, t2 = pair(net)
    d1, d2 = t1.stop(), t2.stop()
    net.flush()
    assert d1.called and d2.called
    assert all(p.clientIO.disconnected and p.serverIO.disconnected for p in net.pumps)
    t1.send([(7, app(2))])
    net.reactor.advance(60)
    assert net.reactor.getDelayedCalls() == []
    assert net.reactor.tcpClients == []


def test_on_messages_failure_does_not_close(net):
    t1, t2 = pair(net)

    def boom(batch):
        raise RuntimeError("boom")

    t2._on_messages = boom
    with capturedLogs() as events:
        t1.send([(7, app(2))])
        net.flush()
    assert any(e.get("log_failure") is not None for e in events)
    assert t1.peers()[2].connected
