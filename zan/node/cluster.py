"""The replicated side of a data node: Raft driver, peer transport, one `RaftPartition`
per local replica, snapshot transfer and leader forwarding.

`ReplicaHost` is what every replicated node shares; where replicas live and how a replica
id maps to a node is left to its subclasses.  `StaticCluster` takes both from the
configuration: replica ids are node ids, and partition `pid` of a namespace with
`replicator` r lives on the r nodes that follow position `pid` in the sorted node list
(its first node is the preferred leader).  The etcd-coordinated node
(`zan.node.coordinator`) takes them from the placement PD writes.
"""

from __future__ import annotations

import os
import shutil

import treq
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from zan.errors import NoLeader, NotLeader, NotReady, StorageError, ZanError
from zan.node.config import NamespaceConfig, NodeConfig
from zan.node.replica import RaftPartition, recover_snapshot_swap, SNAPSHOT_SUFFIX, COMPLETE_MARKER
from zan.node.snapshot import SnapshotReceiver
from zan.raft.core import Config as RaftConfig, ReadOnlyOption
from zan.raft.driver import RaftDriver
from zan.raft.transport import RaftTransport
from zan.raft.types import MessageType
from zan.resp.client import RespClientPool
from zan.store.engine import LevelDBEngine
from zan.store.keyspace import KeyspaceOptions
from zan.store.statemachine import PartitionStateMachine

__all__ = ["ReplicaHost", "RemotePartition", "StaticCluster", "replicas_of"]

# A follower sent a snapshot fetches it at once; if it has not started after this long
# (the message was dropped, it was busy with another fetch, its fetch failed before
# reaching us) the leader reports the snapshot as failed and sends it again later.  Once
# the fetch has started, the end of the stream reports the outcome.
SNAPSHOT_START_TIMEOUT = 10.0


def replicas_of(config: NodeConfig, ns: NamespaceConfig, pid: int) -> list[int]:
    ids = sorted(n.node_id for n in config.cluster_nodes)
    return [ids[(pid + i) % len(ids)] for i in range(ns.replicator)]


class ReplicaHost:
    """Raft groups of the local replicas and everything that links them to other nodes.

    Subclasses say which node hosts a replica (`node_of`), where a node listens
    (`peer_address`) and how a partition with no local replica is reached (`partition`).
    """

    _log = Logger()

    def __init__(self, node, config: NodeConfig, reactor, log_store, *, local_node_id: int,
                 transport_factory=None, snapshot_source=None, forward_to=None):
        """The three seams to the other nodes default to the network: the Raft transport,
        where snapshots are fetched from (``snapshot_source(leader_node_id, partition,
        receiver) -> Deferred`` feeding a `SnapshotReceiver`) and how a command reaches
        another node (``forward_to(node_id, argv) -> Deferred``).  In-process tests pass
        in-memory ones."""
        self.node = node
        self.config = config
        self.reactor = reactor
        self.log_store = log_store
        self.local_node_id = local_node_id
        make_transport = transport_factory or self._tcp_transport
        self.transport = make_transport(
            self._on_messages, self._on_unreachable,
            lambda gid, replica: self.driver.report_snapshot(gid, replica, False))
        self._snapshot_source = snapshot_source or self._http_snapshot
        self._forward_to = forward_to or self._resp_forward
        self.driver = RaftDriver(reactor, log_store, self._send, tick_ms=config.tick_ms,
                                 proposal_timeout=config.proposal_timeout_ms / 1000.0,
                                 rand=node.rng, batch_delay=config.commit_batch_us / 1e6,
                                 forward_proposals=config.allow_forwarding)
        self.by_group: dict[int, RaftPartition] = {}
        self._snapshot_timers: dict[tuple[int, int], object] = {}
        self._pools: dict[int, RespClientPool] = {}
        self._http = None
        self.stopped = False

    def _tcp_transport(self, on_messages, on_unreachable, on_snapshot_failed):
        return RaftTransport(
            self.reactor, self.config.cluster_id, self.local_node_id, on_messages,
            on_unreachable, resolve_node=self.node_of,
            on_snapshot_failed=on_snapshot_failed)

    # -- what subclasses decide ------------------------------------------------------------

    def node_of(self, gid: int, replica: int) -> int | None:
        """The node hosting replica `replica` of group `gid` (None: unknown)."""
        raise NotImplementedError

    def peer_address(self, node_id: int, which: str) -> tuple[str, int] | None:
        """(host, port) of a node's ``raft_addr``, ``redis_addr`` or ``http_addr``."""
        raise NotImplementedError

    def partition(self, namespace: str, pid: int):
        raise NotImplementedError

    def partitions(self) -> list:
        raise NotImplementedError

    # -- local replicas ------------------------------------------------------------------

    def open_replica(self, namespace: str, pid: int, gid: int, replica_id: int, options,
                     snap_count: int, snap_catchup: int, peers) -> RaftPartition:
        """Start the local replica `replica_id` of group `gid`.  `peers` founds a new
        group (ignored when the log already holds state); None joins an existing one."""
        name = f"{namespace}-{pid}"
        path = os.path.join(self.config.data_dir, name)
        recover_snapshot_swap(path)
        log = self.log_store.group(gid)
        sm = PartitionStateMachine(self._engine(path), options, name=name)
        if sm.applied_index < log.snapshot().metadata.index:
            if os.path.exists(os.path.join(path + SNAPSHOT_SUFFIX, COMPLETE_MARKER)):
                sm = self._install_received_snapshot(sm, path, options, name)
            else:
                log = self._forget_log_of_lost_database(gid, name, sm, log)
        partition = RaftPartition(
            namespace, pid, gid, replica_id, sm, self.driver, log, reactor=self.reactor,
            options=options, snap_count=snap_count, snap_catchup=snap_catchup,
            stale_reads=lambda: self.node.settings["stale_read"],
            max_entry_bytes=self.config.max_entry_bytes)
        raft_config = RaftConfig(
            id=replica_id, election_tick=self.config.election_tick, heartbeat_tick=1,
            check_quorum=True, pre_vote=True, applied=_raft_applied(sm.applied_index, log),
            read_only_option=(ReadOnlyOption.LEASE_BASED if self.config.read_mode == "lease"
                              else ReadOnlyOption.SAFE))
        self.driver.add_group(gid, raft_config, partition.apply, peers=peers or None,
                              restore_callback=partition.restore)
        self.by_group[gid] = partition
        return partition

    def close_replica(self, gid: int, destroy: bool = False) -> None:
        """Stop the local replica of `gid`; `destroy` also deletes its log and its data
        (the directory is renamed first, so a crash midway leaves nothing half-deleted
        under the partition's name)."""
        partition = self.by_group.pop(gid, None)
        self.driver.remove_group(gid, destroy=destroy)
        if partition is None:
            return
        partition.stop()
        engine = partition.state_machine.engine
        engine.close()
        if destroy:
            doomed = f"{engine.path}-deleted-{int(self.reactor.seconds() * 1000)}"
            os.rename(engine.path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            shutil.rmtree(engine.path + SNAPSHOT_SUFFIX, ignore_errors=True)
            self._log.info("{partition}: replica {replica} destroyed",
                           partition=partition.name, replica=partition.replica_id)

    def _install_received_snapshot(self, sm, path, options, name):
        """A crash between persisting a snapshot in the log and swapping the database in:
        the received database is complete next to ours; finish the swap now."""
        incoming = path + SNAPSHOT_SUFFIX
        sm.engine.close()
        os.rename(path, path + ".old")
        os.rename(incoming, path)
        os.remove(os.path.join(path, COMPLETE_MARKER))
        recover_snapshot_swap(path)
        return PartitionStateMachine(self._engine(path), options, name=name)

    def _forget_log_of_lost_database(self, gid: int, name: str, sm, log):
        """The log was compacted past what the database holds and no received snapshot
        waits to be swapped in: the database was lost (deleted, a new disk) while the
        log was not.  What the log lacks cannot be replayed, so the replica starts over
        with an empty log: recovering, it votes for nobody and counts towards no quorum
        until the leader has brought it back (by snapshot)."""
        self._log.warn("{partition}: the database holds index {applied} but the Raft log "
                       "starts after {index}: the database was lost; the replica starts "
                       "over with an empty log", partition=name, applied=sm.applied_index,
                       index=log.snapshot().metadata.index)
        self.log_store.remove_group(gid)
        return self.log_store.group(gid)

    def _engine(self, path: str) -> LevelDBEngine:
        return LevelDBEngine(path, row_cache_bytes=self.config.row_cache_bytes)

    def stop(self) -> Deferred:
        self.stopped = True
        self.driver.stop()
        for p in self.by_group.values():
            p.stop()
        for pool in self._pools.values():
            pool.close()
        for t in self._snapshot_timers.values():
            if t.active():
                t.cancel()
        return self.transport.stop()

    # -- messages ------------------------------------------------------------------------

    def _send(self, batch) -> None:
        for gid, m in batch:
            if m.type == MessageType.SNAP:
                self._watch_snapshot(gid, m.to)
        self.transport.send(batch)

    def _on_unreachable(self, node_id, pairs) -> None:
        for gid, replica in pairs:
            self.driver.report_unreachable(gid, replica)

    def _on_messages(self, batch) -> None:
        step = self.driver.step
        by_group = self.by_group
        for gid, m in batch:
            partition = by_group.get(gid)
            if partition is None:
                continue
            if partition.fetching_snapshot:
                # Receiving a snapshot: appends cannot apply yet, and the leader will
                # send them again once we answer.  Heartbeats keep us a follower.
                if m.type in (MessageType.APP, MessageType.SNAP):
                    continue
            elif m.type == MessageType.SNAP:
                self._fetch_snapshot(partition, m)
                continue
            step(gid, m)

    # -- snapshots -----------------------------------------------------------------------

    def _watch_snapshot(self, gid: int, replica: int) -> None:
        key = (gid, replica)
        old = self._snapshot_timers.pop(key, None)
        if old is not None and old.active():
            old.cancel()
        self._snapshot_timers[key] = self.reactor.callLater(
            SNAPSHOT_START_TIMEOUT, self.driver.report_snapshot, gid, replica, False)

    def snapshot_fetch_started(self, gid: int, replica: int) -> None:
        """`replica` began fetching the snapshot it was sent: from now on the end of the
        stream reports the outcome (a large database may stream for a long time)."""
        timer = self._snapshot_timers.pop((gid, replica), None)
        if timer is not None and timer.active():
            timer.cancel()

    def snapshot_served(self, gid: int, replica: int, ok: bool) -> None:
        """The HTTP snapshot stream to `replica` ended (see the node's HTTP API)."""
        timer = self._snapshot_timers.pop((gid, replica), None)
        if timer is not None and timer.active():
            timer.cancel()
        self.driver.report_snapshot(gid, replica, ok)

    def _fetch_snapshot(self, partition: RaftPartition, message) -> None:
        gid = partition.group_id
        if self.node_of(gid, message.frm) is None:
            return
        partition.fetching_snapshot = True
        receiver = SnapshotReceiver(partition.state_machine.engine.path)
        self._log.info("{partition}: fetching snapshot {index} from node {leader}",
                       partition=partition.name, index=message.snapshot.metadata.index,
                       leader=message.frm)

        def done(_):
            receiver.finish()
            partition.fetching_snapshot = False
            if receiver.applied_index < message.snapshot.metadata.index:
                raise StorageError("the leader's database is behind its snapshot")
            self.driver.step(gid, message)

        def failed(failure):
            partition.fetching_snapshot = False
            receiver.abort()
            self._log.failure("{partition}: snapshot fetch failed", failure,
                              partition=partition.name)

        d = self._snapshot_source(message.frm, partition, receiver)
        d.addCallback(done).addErrback(failed)

    def _http_snapshot(self, leader: int, partition, receiver) -> Deferred:
        if self._http is None:
            self._http = treq.client.HTTPClient(
                Agent(self.reactor, pool=HTTPConnectionPool(self.reactor)))
        address = self.peer_address(self.node_of(partition.group_id, leader), "http_addr")
        if address is None:
            return fail(StorageError(f"no HTTP address known for the leader of {partition.name}"))
        host, port = address
        url = (f"http://{host}:{port}/cluster/snapshot/{partition.name}"
               f"?replica={partition.replica_id}").encode()

        def got(response):
            if response.code != 200:
                raise StorageError(f"snapshot fetch answered {response.code}")
            return treq.collect(response, receiver.feed)
        return self._http.get(url, unbuffered=True).addCallback(got)

    # -- forwarding ----------------------------------------------------------------------

    def forward(self, partition, name: str, args: list[bytes], hops: int) -> Deferred:
        """Run a partition-level command on the node leading `partition`; relay its reply
        (errors keep the leader's exact text)."""
        if isinstance(partition, RemotePartition):
            leader = partition.leader_node
        else:   # a local replica knows its leader's replica id
            leader = partition.leader and self.node_of(partition.group_id, partition.leader)
        if not leader:
            return fail(NoLeader())
        if leader == self.local_node_id or self.peer_address(leader, "redis_addr") is None:
            return fail(NotLeader())
        return self._forward_to(leader, [b"ZANFWD", str(hops).encode(),
                                         partition.namespace.encode(),
                                         str(partition.pid).encode(), name.encode(), *args])

    def _resp_forward(self, node_id: int, argv: list[bytes]) -> Deferred:
        pool = self._pools.get(node_id)
        if pool is None:
            host, port = self.peer_address(node_id, "redis_addr")
            pool = self._pools[node_id] = RespClientPool(
                self.reactor, host, port, size=4,
                timeout=self.config.proposal_timeout_ms / 1000.0 + 1)
        return pool.execute(*argv).addErrback(self._unreachable, node_id)

    @staticmethod
    def _unreachable(failure, node_id: int):
        if failure.check(ZanError):   # the leader's own reply: relayed as it is
            return failure
        raise NotReady(f"ERR_CLUSTER_CHANGED: the leader node {node_id} is unreachable "
                       f"({failure.getErrorMessage()})")


class StaticCluster(ReplicaHost):
    """Placement and peers from the configuration (`cluster_nodes`, `namespaces`)."""

    def __init__(self, node, config: NodeConfig, reactor, log_store, group_id_of, **seams):
        super().__init__(node, config, reactor, log_store, local_node_id=config.node_id,
                         **seams)
        self._group_id_of = group_id_of
        # Asked once per forwarded command: the configuration's addresses, parsed once.
        self._addresses = {(peer.node_id, which): peer.address(which)
                           for peer in config.cluster_nodes
                           for which in ("raft_addr", "redis_addr", "http_addr")}
        self._preferred: list[int] = []
        self._campaign_call = None
        for peer in config.cluster_nodes:
            if peer.node_id != config.node_id:
                host, port = peer.address("raft_addr")
                self.transport.add_peer(peer.node_id, host, port)

    def node_of(self, gid: int, replica: int) -> int | None:
        return replica if self.config.cluster_node(replica) is not None else None

    def peer_address(self, node_id, which: str):
        return self._addresses.get((node_id, which))

    def open_partitions(self) -> dict[tuple[str, int], RaftPartition]:
        out = {}
        me = self.config.node_id
        for ns in self.config.namespaces:
            options = KeyspaceOptions(expiration_policy=ns.expiration_policy,
                                      redis_config=getattr(self.node, "redis_parameters", None),
                                      max_batch_elements=self.config.max_batch_elements)
            for pid in range(ns.partition_num):
                replicas = replicas_of(self.config, ns, pid)
                if me not in replicas:
                    continue
                out[(ns.name, pid)] = self.open_replica(
                    ns.name, pid, self._group_id_of(ns.name, pid), me, options,
                    ns.snap_count, ns.snap_catchup, replicas)
                if replicas[0] == me:
                    self._preferred.append(out[(ns.name, pid)].group_id)
        self.driver.start()
        # The preferred leader asks for votes as soon as its peers are likely up, rather
        # than after a full election timeout; pre-vote keeps this harmless if a leader exists.
        self._campaign_call = self.reactor.callLater(
            self.config.tick_ms * 5 / 1000.0, self._campaign_preferred)
        return out

    def _campaign_preferred(self) -> None:
        self._campaign_call = None
        for gid in self._preferred:
            if gid in self.by_group and not self.driver.leader(gid):
                self.driver.campaign(gid)

    def stop(self) -> Deferred:
        if self._campaign_call is not None and self._campaign_call.active():
            self._campaign_call.cancel()
        return super().stop()

    # -- the dispatcher's view: every partition of the cluster, local or not --------------

    def partition(self, namespace: str, pid: int):
        local = self.node.partition(namespace, pid)
        if local is not None:
            return local
        ns = self.config.namespace(namespace)
        if ns is None or not 0 <= pid < ns.partition_num:
            return None
        return RemotePartition(namespace, pid, replicas_of(self.config, ns, pid)[0])

    def partitions(self) -> list:
        return [self.partition(ns.name, pid) for ns in self.config.namespaces
                for pid in range(ns.partition_num)]


def _raft_applied(db_applied: int, log) -> int:
    """Where Raft resumes applying: right after the log's snapshot, whatever the database
    holds.  Raft rebuilds its voter set only from the snapshot plus the membership entries
    it hands out again, so those must be replayed; the state machine skips every entry it
    already holds by index.  (Resuming at the database's index would also overshoot the
    commit index when kill -9 lost a lazily written hard state.)"""
    return log.snapshot().metadata.index


class RemotePartition:
    """A partition with no replica on this node: everything goes to a node that has one
    (`leader_node`, a node id; 0 when none is known)."""

    def __init__(self, namespace: str, pid: int, leader_node: int):
        self.namespace = namespace
        self.pid = pid
        self.name = f"{namespace}-{pid}"
        self.leader_node = leader_node
        self.leader = leader_node
        self.applied_index = 0
        self.is_leader = False

    def propose(self, data):
        raise NotLeader(leader_hint=self.leader)

    def read(self, *args):
        raise NotLeader(leader_hint=self.leader)
