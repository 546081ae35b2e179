"""Raft peer transport: every group's messages to a peer node over one TCP connection.

Links are one-way.  Each node dials every peer it sends to and only *writes* on that
connection; what a node receives arrives on the connections its peers dialled in.  Two
nodes therefore share two connections (one per direction, as etcd's rafthttp streams do),
but there is never a dial race to settle, and a link's state says exactly whether *we* can
reach the peer, which is what the Raft core needs to hear.

Wire format: frames of ``uint32 length`` (big-endian, covering what follows) + one kind
byte + body::

    H  hello     msgpack {"version": int, "cluster_id": str, "node_id": int}
    M  messages  `zan.raft.codec.encode_messages` body: any number of (group, message)
    E  error     msgpack {"error": str}, sent just before closing

Both ends send a hello as soon as the connection is made and check the other's: another
version or cluster id gets an error frame and the connection closed.  Anything that does
not parse (an oversized frame, an unknown kind, a bad body, messages before the hello)
closes that connection and nothing else.

All messages `send` is handed during one reactor turn leave in one frame per peer (one
``callLater(0)`` flush).  While a peer cannot be reached its messages are dropped (Raft
retransmits) and the groups concerned are reported unreachable, at most once per
`unreachable_interval` per peer.  When the peer stops reading, the socket's buffer pauses
us (`IPushProducer`) and frames wait in a bounded backlog; past `max_buffer_bytes` they are
dropped and reported too.  A dropped SNAP message is also reported as a failed snapshot,
or the leader would wait for that follower's snapshot forever.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Callable, Iterable

import msgpack
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from zan.errors import ConfigError
from zan.netutil import no_delay
from zan.raft.codec import CodecError, decode_messages, encode_messages
from zan.raft.types import Message, MessageType

__all__ = [
    "TRANSPORT_VERSION", "DEFAULT_MAX_FRAME", "RaftTransport", "PeerStatus",
    "ReplicaResolver", "MessagesCallback", "UnreachableCallback", "SnapshotFailedCallback",
]

TRANSPORT_VERSION = 1
DEFAULT_MAX_FRAME = 64 << 20

ReplicaResolver = Callable[[int, int], "int | None"]
"""``(group_id, replica_id) -> node_id`` (None when the replica is not known)."""

MessagesCallback = Callable[[list[tuple[int, Message]]], None]
"""Receives each inbound frame's ``(group_id, message)`` pairs."""

UnreachableCallback = Callable[[int, frozenset[tuple[int, int]]], None]
"""``(node_id, {(group_id, replica_id), ...})``: messages to these replicas on that node were
lost; the node calls ``driver.report_unreachable(group_id, replica_id)`` for each."""

SnapshotFailedCallback = Callable[[int, int], None]
"""``(group_id, replica_id)``: a SNAP message was dropped; the node calls
``driver.report_snapshot(group_id, replica_id, False)``."""

_HEADER = struct.Struct("!I")
_HELLO, _MESSAGES, _ERROR = b"H", b"M", b"E"


@dataclass(frozen=True, slots=True)
class PeerStatus:
    node_id: int
    host: str
    port: int
    connected: bool
    failed_attempts: int
    backlog_bytes: int
    frames_sent: int
    messages_sent: int
    messages_dropped: int


class _ProtocolViolation(Exception):
    """The peer sent something this transport does not accept; the connection is closed."""


def _frame(kind: bytes, body: bytes) -> list[bytes]:
    return [_HEADER.pack(len(body) + 1) + kind, body]


@implementer(IPushProducer)
class _PeerProtocol(Protocol):
    """One connection, either end.  `link` is set on connections we dialled."""

    _log = Logger()

    def __init__(self, owner: RaftTransport, link: _Link | None):
        self._owner = owner
        self.link = link
        self.peer_node_id: int | None = None
        self.ready = False
        self.paused = False
        self._buf = bytearray()
        self._closing = False
        self._hello_timer = None
        self._lost = Deferred()

    # -- connection events

    def connectionMade(self) -> None:
        owner = self._owner
        no_delay(self.transport)
        self.transport.registerProducer(self, True)
        self._hello_timer = owner._reactor.callLater(owner.handshake_timeout, self._hello_timeout)
        self.transport.writeSequence(_frame(_HELLO, msgpack.packb(
            {"version": TRANSPORT_VERSION, "cluster_id": owner.cluster_id,
             "node_id": owner.local_node_id}, use_bin_type=True)))
        if self.link is None:
            owner._inbound.add(self)

    def connectionLost(self, reason: Failure = None) -> None:
        self._cancel_hello_timer()
        self.ready = False
        self._owner._inbound.discard(self)
        if self.link is not None:
            self.link.connection_lost(self, reason)
        self._lost.callback(None)

    def when_lost(self) -> Deferred:
        d = Deferred()
        self._lost.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    # -- IPushProducer: the socket tells us when the peer stops reading

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.link is not None:
            self.link.drain()

    def stopProducing(self) -> None:
        self.paused = True

    # -- input

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        max_frame = self._owner.max_frame
        pos = 0
        try:
            while not self._closing and len(buf) - pos >= 4:
                (length,) = _HEADER.unpack_from(buf, pos)
                if length == 0 or length > max_frame + 1:
                    raise _ProtocolViolation(f"frame of {length} bytes (limit {max_frame})")
                end = pos + 4 + length
                if len(buf) < end:
                    break
                kind = bytes(buf[pos + 4:pos + 5])
                body = bytes(buf[pos + 5:end])
                pos = end
                self._frame_received(kind, body)
        except _ProtocolViolation as e:
            self._refuse(str(e), garbage=True)
        finally:
            del buf[:pos]

    def _frame_received(self, kind: bytes, body: bytes) -> None:
        if kind == _MESSAGES:
            if not self.ready:
                raise _ProtocolViolation("messages before the hello")
            try:
                batch = decode_messages(body)
            except CodecError as e:
                raise _ProtocolViolation(str(e)) from None
            self._owner._deliver(batch)
        elif kind == _HELLO:
            if self.peer_node_id is not None:
                raise _ProtocolViolation("a second hello")
            self._hello(body)
        elif kind == _ERROR:
            try:
                text = msgpack.unpackb(body, raw=False).get("error")
            except Exception:
                text = None
            self._log.error("raft peer {peer} refused the connection: {error}",
                            peer=self._describe(), error=str(text)[:500])
            self._close()
        else:
            raise _ProtocolViolation(f"unknown frame kind {kind!r}")

    def _hello(self, body: bytes) -> None:
        try:
            hello = msgpack.unpackb(body, raw=False)
            version, cluster_id, node_id = hello["version"], hello["cluster_id"], hello["node_id"]
        except Exception:
            raise _ProtocolViolation("undecodable hello") from None
        if type(node_id) is not int or node_id <= 0 or type(cluster_id) is not str:
            raise _ProtocolViolation("malformed hello")
        self.peer_node_id = node_id
        owner = self._owner
        if version != TRANSPORT_VERSION:
            return self._refuse(f"raft transport version {version!r} is not supported "
                                f"(this node speaks {TRANSPORT_VERSION})")
        if cluster_id != owner.cluster_id:
            return self._refuse(f"cluster id mismatch: node {owner.local_node_id} belongs to "
                                f"cluster {owner.cluster_id!r}, node {node_id} to {cluster_id!r}")
        if node_id == owner.local_node_id:
            return self._refuse(f"node id {node_id} is this node's own id")
        if self.link is not None and node_id != self.link.node_id:
            return self._refuse(f"{self.link.host}:{self.link.port} is node {node_id}, "
                                f"expected node {self.link.node_id}")
        self._cancel_hello_timer()
        self.ready = True
        if self.link is not None:
            self.link.handshake_done(self)

    def _hello_timeout(self) -> None:
        self._hello_timer = None
        self._log.warn("raft peer {peer} sent no hello within {timeout}s; closing",
                       peer=self._describe(), timeout=self._owner.handshake_timeout)
        self._close(abort=True)

    # -- output

    def write_frame(self, parts: list[bytes]) -> None:
        self.transport.writeSequence(parts)

    def _refuse(self, reason: str, garbage: bool = False) -> None:
        if self._closing:
            return
        if garbage:
            self._log.warn("raft peer {peer} sent garbage, closing the connection: {reason}",
                           peer=self._describe(), reason=reason)
        else:
            self._log.error("raft peer {peer} refused: {reason}", peer=self._describe(),
                            reason=reason)
        self.transport.writeSequence(_frame(_ERROR, msgpack.packb({"error": reason})))
        self._close()

    def _close(self, abort: bool = False) -> None:
        self._closing = True
        self.ready = False
        self._cancel_hello_timer()
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _cancel_hello_timer(self) -> None:
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None

    def _describe(self) -> str:
        if self.link is not None:
            return f"node {self.link.node_id} ({self.link.host}:{self.link.port})"
        addr = self.transport.getPeer() if self.transport is not None else None
        who = f"node {self.peer_node_id}" if self.peer_node_id is not None else "unidentified"
        return f"{who} from {getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}"


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, link: _Link):
        self._link = link

    def buildProtocol(self, addr) -> _PeerProtocol:
        return _PeerProtocol(self._link.owner, self._link)


class _ServerFactory(Factory):
    noisy = False

    def __init__(self, owner: RaftTransport):
        self._owner = owner

    def buildProtocol(self, addr) -> _PeerProtocol:
        return _PeerProtocol(self._owner, None)


class _Link:
    """Our outbound connection to one peer node: dialling, backoff, coalescing, backlog."""

    _log = Logger()

    def __init__(self, owner: RaftTransport, node_id: int, host: str, port: int):
        self.owner = owner
        self.node_id = node_id
        self.host = host
        self.port = port
        self.proto: _PeerProtocol | None = None   # set once the handshake is done
        self.pending: list[tuple[int, Message]] = []
        self.backlog: list[tuple[list[bytes], list[tuple[int, Message]], int]] = []
        self.backlog_bytes = 0
        self.failures = 0
        self.frames_sent = 0
        self.messages_sent = 0
        self.messages_dropped = 0
        self.routes: set[tuple[int, int]] = set()   # (gid, replica) written since the link came up
        self._stopped = False
        self._connecting: Deferred | None = None
        self._dialled: _PeerProtocol | None = None
        self._retry = None
        self._endpoint = owner._endpoint_factory(host, port)
        self._factory = _LinkFactory(self)

    # -- connection management

    def start(self) -> None:
        self._connect()

    def stop(self) -> Deferred:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        self._drop(self.pending, report=False)
        self.pending = []
        self._drop_backlog(report=False)
        p = self._dialled
        if p is None:
            return succeed(None)
        d = p.when_lost()
        p._close(abort=True)
        return d

    def _connect(self) -> None:
        self._retry = None
        d = self._connecting = self._endpoint.connect(self._factory)
        d.addCallbacks(self._tcp_connected, self._connect_failed)

    def _tcp_connected(self, proto: _PeerProtocol) -> None:
        self._connecting = None
        self._dialled = proto

    def _connect_failed(self, f: Failure) -> None:
        self._connecting = None
        if self._stopped:
            return
        self._log.debug("raft peer {node} at {host}:{port} unreachable: {err}", node=self.node_id,
                        host=self.host, port=self.port, err=f.getErrorMessage())
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self.failures += 1
        delay = self.owner._retry_policy(self.failures)
        self._retry = self.owner._reactor.callLater(delay, self._connect)

    def handshake_done(self, proto: _PeerProtocol) -> None:
        self.failures = 0
        self.proto = proto
        self._log.info("raft link to node {node} at {host}:{port} is up", node=self.node_id,
                       host=self.host, port=self.port)

    def connection_lost(self, proto: _PeerProtocol, reason: Failure | None) -> None:
        if proto is not self._dialled:
            return
        self._dialled = None
        if self.proto is proto:
            self.proto = None
            self._log.info("raft link to node {node} lost: {reason}", node=self.node_id,
                           reason=reason.getErrorMessage() if reason is not None else "")
            # Whatever the socket still held is gone: make the leaders probe again.
            lost, self.routes = self.routes, set()
            self._drop(self.pending, report=True)
            self.pending = []
            self._drop_backlog(report=True)
            self.owner._note_unreachable(self.node_id, lost)
        if not self._stopped:
            self._schedule_retry()

    # -- output

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        proto = self.proto
        if proto is None:
            self._drop(batch, report=True)
            return
        for parts, msgs, size in self.owner._frames(batch):
            if parts is None:
                self._drop(msgs, report=True)
                continue
            if proto.paused or self.backlog:
                if self.backlog_bytes + size > self.owner.max_buffer_bytes:
                    self._log.warn("raft peer {node} is not reading: dropped {count} messages",
                                   node=self.node_id, count=len(msgs))
                    self._drop(msgs, report=True)
                    continue
                self.backlog.append((parts, msgs, size))
                self.backlog_bytes += size
                continue
            self._write(proto, parts, msgs)

    def drain(self) -> None:
        proto = self.proto
        while self.backlog and proto is not None and not proto.paused:
            parts, msgs, size = self.backlog.pop(0)
            self.backlog_bytes -= size
            self._write(proto, parts, msgs)

    def _write(self, proto: _PeerProtocol, parts: list[bytes], msgs) -> None:
        proto.write_frame(parts)
        self.frames_sent += 1
        self.messages_sent += len(msgs)
        self.routes.update((gid, m.to) for gid, m in msgs)

    def _drop_backlog(self, report: bool) -> None:
        backlog, self.backlog, self.backlog_bytes = self.backlog, [], 0
        for _, msgs, _ in backlog:
            self._drop(msgs, report)

    def _drop(self, msgs: list[tuple[int, Message]], report: bool) -> None:
        if not msgs:
            return
        self.messages_dropped += len(msgs)
        if report:
            self.owner._note_dropped(self.node_id, msgs)

    def status(self) -> PeerStatus:
        return PeerStatus(self.node_id, self.host, self.port, self.proto is not None,
                          self.failures, self.backlog_bytes, self.frames_sent,
                          self.messages_sent, self.messages_dropped)


class RaftTransport:
    """The node's Raft peer transport.

    The node binds `server_factory` on its raft port, registers peers with `add_peer`, and
    gives `send` to `RaftDriver` as its ``transport_send``.
    """

    _log = Logger()

    def __init__(self, reactor, cluster_id: str, local_node_id: int,
                 on_messages: MessagesCallback, on_unreachable: UnreachableCallback,
                 *, resolve_node: ReplicaResolver,
                 on_snapshot_failed: SnapshotFailedCallback | None = None,
                 max_frame: int = DEFAULT_MAX_FRAME, max_buffer_bytes: int = 16 << 20,
                 unreachable_interval: float = 1.0, handshake_timeout: float = 10.0,
                 reconnect_initial: float = 0.1, reconnect_max: float = 2.0,
                 reconnect_factor: float = 2.0, reconnect_jitter: float = 0.1,
                 connect_timeout: float = 5.0, rand: random.Random | None = None,
                 endpoint_factory: Callable[[str, int], object] | None = None):
        if not cluster_id:
            raise ConfigError("raft transport: cluster_id must not be empty")
        if local_node_id <= 0:
            raise ConfigError("raft transport: local_node_id must be positive")
        if max_frame < 1024:
            raise ConfigError("raft transport: max_frame must be at least 1024 bytes")
        self._reactor = reactor
        self.cluster_id = cluster_id
        self.local_node_id = local_node_id
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._on_snapshot_failed = on_snapshot_failed
        self._resolve = resolve_node
        self.max_frame = max_frame
        self.max_buffer_bytes = max_buffer_bytes
        self.unreachable_interval = unreachable_interval
        self.handshake_timeout = handshake_timeout
        rand = rand if rand is not None else random.Random()
        self._retry_policy = backoffPolicy(reconnect_initial / reconnect_factor, reconnect_max,
                                           reconnect_factor,
                                           jitter=lambda: rand.uniform(0, reconnect_jitter))
        if endpoint_factory is None:
            def endpoint_factory(host: str, port: int):
                return HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
        self._endpoint_factory = endpoint_factory
        self._links: dict[int, _Link] = {}
        self._inbound: set[_PeerProtocol] = set()
        self._local: list[tuple[int, Message]] = []
        self._flush_call = None
        # node id -> [pending {(gid, replica)}, last report time, timer]
        self._unreach: dict[int, list] = {}
        self._snap_failed: list[tuple[int, int]] = []
        self._snap_call = None
        self._stopped = False
        self.server_factory: Factory = _ServerFactory(self)
        self.dropped_unresolved = 0

    # ------------------------------------------------------------------ peers

    def add_peer(self, node_id: int, host: str, port: int) -> None:
        """Dial `node_id` at host:port (now, and again after every loss).  Re-adding a peer
        at the same address does nothing; at a new address it replaces the link."""
        if node_id == self.local_node_id:
            return
        old = self._links.get(node_id)
        if old is not None:
            if (old.host, old.port) == (host, port):
                return
            old.stop()
        link = self._links[node_id] = _Link(self, node_id, host, port)
        if not self._stopped:
            link.start()

    def remove_peer(self, node_id: int) -> Deferred:
        link = self._links.pop(node_id, None)
        return link.stop() if link is not None else succeed(None)

    def peers(self) -> dict[int, PeerStatus]:
        return {n: link.status() for n, link in self._links.items()}

    def stop(self) -> Deferred:
        """Close every connection; fires once all are closed."""
        self._stopped = True
        for call in (self._flush_call, self._snap_call,
                     *(u[2] for u in self._unreach.values())):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._snap_call = None
        self._unreach.clear()
        waits = [link.stop() for link in self._links.values()]
        for p in list(self._inbound):
            waits.append(p.when_lost())
            p._close(abort=True)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # ------------------------------------------------------------------ sending

    def send(self, batch: Iterable[tuple[int, Message]]) -> None:
        """Queue messages for their replicas' nodes; they leave at the end of this turn."""
        if self._stopped:
            return
        links = self._links
        for item in batch:
            gid, m = item
            node = self._resolve(gid, m.to)
            if node is None:
                self.dropped_unresolved += 1
                self._log.debug("raft group {group}: no node for replica {replica}; dropped {type}",
                                group=gid, replica=m.to, type=m.type.name)
                if m.type == MessageType.SNAP:
                    self._note_snapshot_failed(gid, m.to)
                continue
            if node == self.local_node_id:
                self._local.append(item)
                continue
            link = links.get(node)
            if link is None:
                self._note_dropped(node, [item])
            elif link.proto is None:
                link._drop([item], report=True)
            else:
                link.pending.append(item)
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        for link in list(self._links.values()):
            if link.pending:
                link.flush()
        if self._local:
            local, self._local = self._local, []
            self._deliver(local)

    def _frames(self, batch: list[tuple[int, Message]]):
        """Yield ``(parts, messages, size)`` frames of at most `max_frame` bytes; ``parts`` is
        None for a single message too large to send."""
        body = encode_messages(batch)
        if len(body) + 1 <= self.max_frame:
            yield _frame(_MESSAGES, body), batch, len(body) + 5
        elif len(batch) > 1:
            half = len(batch) // 2
            yield from self._frames(batch[:half])
            yield from self._frames(batch[half:])
        else:
            gid, m = batch[0]
            self._log.error("raft group {group}: a {type} message to {to} of {size} bytes exceeds "
                            "the frame limit {limit}; dropped", group=gid, type=m.type.name,
                            to=m.to, size=len(body), limit=self.max_frame)
            yield None, batch, 0

    # ------------------------------------------------------------------ receiving

    def _deliver(self, batch: list[tuple[int, Message]]) -> None:
        try:
            self._on_messages(batch)
        except Exception:
            self._log.failure("raft transport: delivering {count} messages failed",
                              count=len(batch))

    # ------------------------------------------------------------------ failure reports

    def _note_dropped(self, node_id: int, msgs: list[tuple[int, Message]]) -> None:
        for gid, m in msgs:
            if m.type == MessageType.SNAP:
                self._note_snapshot_failed(gid, m.to)
        self._note_unreachable(node_id, {(gid, m.to) for gid, m in msgs})

    def _note_unreachable(self, node_id: int, pairs: set[tuple[int, int]]) -> None:
        """Report at most once per interval per node; never from inside `send`, which the
        driver calls in the middle of processing a Ready."""
        if not pairs or self._stopped:
            return
        entry = self._unreach.get(node_id)
        if entry is None:
            entry = self._unreach[node_id] = [set(), None, None]
        entry[0].update(pairs)
        if entry[2] is None:
            now = self._reactor.seconds()
            delay = 0.0 if entry[1] is None else max(0.0, entry[1] + self.unreachable_interval - now)
            entry[2] = self._reactor.callLater(delay, self._report_unreachable, node_id)

    def _report_unreachable(self, node_id: int) -> None:
        entry = self._unreach[node_id]
        pairs, entry[0] = frozenset(entry[0]), set()
        entry[1] = self._reactor.seconds()
        entry[2] = None
        try:
            self._on_unreachable(node_id, pairs)
        except Exception:
            self._log.failure("raft transport: unreachable report for node {node} failed",
                              node=node_id)

    def _note_snapshot_failed(self, gid: int, replica: int) -> None:
        if self._stopped:
            return
        self._snap_failed.append((gid, replica))
        if self._snap_call is None:
            self._snap_call = self._reactor.callLater(0, self._report_snapshots)

    def _report_snapshots(self) -> None:
        self._snap_call = None
        failed, self._snap_failed = self._snap_failed, []
        for gid, replica in dict.fromkeys(failed):
            self._log.info("raft group {group}: snapshot message to {replica} dropped",
                           group=gid, replica=replica)
            if self._on_snapshot_failed is not None:
                try:
                    self._on_snapshot_failed(gid, replica)
                except Exception:
                    self._log.failure("raft transport: snapshot failure report failed")
