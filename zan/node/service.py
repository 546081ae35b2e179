"""The data node: storage, partitions, the RESP and HTTP listeners, as one service tree.

Storage is opened in `startService` (after twistd has daemonized, so LevelDB's and the
WAL's file locks belong to the process that serves), listeners are bound before that in
`privilegedStartService` so a busy port fails the start with a clear message.
"""

from __future__ import annotations

import gc
import os
import random
import uuid

import mmh3
from twisted.application import service
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger
from twisted.web.server import Site

from zan.errors import RespError, ZanError
from zan.resp.types import OK
from zan.node.config import NodeConfig
from zan.node.dispatch import NodeDispatcher
from zan.node.namespaces import KeyRouter
from zan.node.partition import GroupCommitter, LocalPartition
from zan.commands.cursors import CursorRegistry
from zan.node.keyspace_runner import KeyspaceRunner
from zan.node.scan import ScanRunner
from zan.node.server import ServerContext
from zan.raft.wal import WalLogStore
from zan.store import sweeper
from zan.resp.protocol import RespServerFactory

from zan.store.engine import LevelDBEngine
from zan.store.keyspace import KeyspaceOptions
from zan.store.statemachine import PartitionStateMachine

__all__ = ["NodeService", "group_id_of"]


def group_id_of(namespace: str, pid: int) -> int:
    """A stable id for the log group of partition `pid` of `namespace`."""
    return mmh3.hash64(f"{namespace}-{pid}".encode(), 0, signed=False)[0] >> 1


def _tune_gc() -> None:
    """The serving loop allocates many short-lived objects and almost no cycles, while the
    long-lived ones (caches of the log, partitions, the command table) are many: move what
    start-up built out of the collector's sight and collect the young generation less
    often.  A full collection then no longer rescans the whole heap every few thousand
    commands."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 20, 100)


class _RespFactory(RespServerFactory):
    highest_id = 0

    def buildProtocol(self, addr):
        proto = super().buildProtocol(addr)
        self.highest_id = max(self.highest_id, proto.client.id)
        return proto


class NodeService(service.MultiService):
    _log = Logger()

    def __init__(self, config: NodeConfig, reactor, *, rng: random.Random | None = None):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.rng = rng or random.Random()
        self.run_id = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.started_at = reactor.seconds()
        # Settings CONFIG SET may change at run time.
        self.settings = {"requirepass": config.requirepass, "maxclients": config.max_clients,
                         "timeout": config.idle_timeout_s, "stale_read": config.stale_read}
        self._partitions: dict = {}
        # DEBUG SET-ACTIVE-EXPIRE 0 stops the background purge of expired keys.
        self.active_expire = True
        self.log_store = None
        self.committer = None      # standalone: the group commit of local partitions
        self.cluster = None        # replicated: Raft groups, transport, forwarding
        self.coordinator = None    # etcd mode: registration, placement, reconcile
        self.server_context = ServerContext(self)
        # In etcd mode the namespaces are PD's, learned once the coordinator reads them.
        self.router = KeyRouter({} if config.etcd_mode else
                                {ns.name: ns for ns in config.namespaces},
                                config.default_namespace)
        self.dispatcher = NodeDispatcher(reactor, self.router, self, self.server_context,
                                         requirepass=config.requirepass, rng=self.rng)
        self.resp_factory = _RespFactory(
            self.dispatcher, reactor, idle_timeout=config.idle_timeout_s or None,
            max_bulk_len=config.proto_max_bulk_len, auth_required=bool(config.requirepass))
        self.redis_address = f"{config.redis_api_host}:{config.redis_api_port}"
        ScanRunner(self.dispatcher, self, CursorRegistry(rng=self.rng)).install()
        KeyspaceRunner(self.dispatcher, self, self.rng).install()

        from zan.node.http_api import NodeHTTPAPI
        self.http_api = NodeHTTPAPI(self)
        for name, endpoint, factory in (
            ("redis", TCP4ServerEndpoint(reactor, config.redis_api_port,
                                         interface=config.redis_api_host), self.resp_factory),
            ("http", TCP4ServerEndpoint(reactor, config.http_api_port,
                                        interface=config.http_api_host),
             Site(self.http_api.app.resource())),
        ):
            listener = StreamServerEndpointService(endpoint, factory)
            listener._raiseSynchronously = True  # a busy port fails the start, loudly
            listener.setName(name)
            listener.setServiceParent(self)
        sweep = TimerService(config.sweep_interval_ms / 1000.0, self.sweep_once)
        sweep.clock = reactor
        sweep.setName("sweeper")
        sweep.setServiceParent(self)
        # Per partition: which sweep runs next and where it resumes.
        self._sweep_state: dict[tuple[str, int], tuple[str, bytes | None]] = {}

    # -- lifecycle -------------------------------------------------------------------

    def privilegedStartService(self):
        self.open_storage()
        _tune_gc()
        super().privilegedStartService()

    def open_storage(self) -> None:
        """Open the log and every partition; replays what the databases miss."""
        if self.log_store is not None:
            return
        config = self.config
        os.makedirs(config.data_dir, exist_ok=True)
        self.log_store = WalLogStore(os.path.join(config.data_dir, "raft-wal"))
        if config.etcd_mode:
            from zan.node.coordinator import DataNodeCoordinator
            self.coordinator = DataNodeCoordinator(self, config, self.reactor)
            self.coordinator.setName("coordinator")
            self.coordinator.setServiceParent(self)
            return
        if config.replicated:
            self._open_cluster()
            return
        self.committer = GroupCommitter(self.reactor, self.log_store,
                                        batch_delay=config.commit_batch_us / 1e6)
        for ns in config.namespaces:
            options = KeyspaceOptions(expiration_policy=ns.expiration_policy,
                                      redis_config=self.redis_parameters,
                                      max_batch_elements=config.max_batch_elements)
            for pid in range(ns.partition_num):
                name = f"{ns.name}-{pid}"
                engine = LevelDBEngine(os.path.join(config.data_dir, name),
                                       row_cache_bytes=config.row_cache_bytes)
                sm = PartitionStateMachine(engine, options, name=name)
                gid = group_id_of(ns.name, pid)
                self._partitions[(ns.name, pid)] = LocalPartition(
                    ns.name, pid, sm, self.log_store.group(gid), self.committer,
                    snap_count=ns.snap_count, group_id=gid)
        self.dispatcher.local_partitions = True
        self.log_store.sync()
        self._log.info("opened {count} partitions in {dir}", count=len(self._partitions),
                       dir=os.path.abspath(config.data_dir))

    def attach_cluster(self, cluster, partitions: dict) -> None:
        """Serve through `cluster` (a `ReplicaHost`); `partitions` is its live map of the
        local replicas by (namespace, pid)."""
        self.cluster = cluster
        self._partitions = partitions
        self.dispatcher.partitions = cluster
        if self.config.allow_forwarding:
            self.dispatcher.forwarder = cluster.forward
            config = self.config
            self.dispatcher.wait_for_leaders(config.tick_ms, config.election_tick,
                                             config.proposal_timeout_ms)

    def _open_cluster(self) -> None:
        from zan.node.cluster import StaticCluster
        config = self.config
        cluster = StaticCluster(self, config, self.reactor, self.log_store, group_id_of)
        self.attach_cluster(cluster, cluster.open_partitions())
        host, port = config.cluster_node(config.node_id).address("raft_addr")
        listener = StreamServerEndpointService(
            TCP4ServerEndpoint(self.reactor, port, interface=host),
            self.cluster.transport.server_factory)
        listener._raiseSynchronously = True
        listener.setName("raft")
        listener.setServiceParent(self)
        self._log.info("node {node} of cluster {cluster}: {count} replicas in {dir}",
                       node=config.node_id, cluster=config.cluster_id,
                       count=len(self._partitions), dir=os.path.abspath(config.data_dir))

    def log_syncs(self) -> int:
        if self.committer is not None:
            return self.committer.syncs
        return self.cluster.driver.sync_count if self.cluster is not None else 0

    def stopService(self):
        d = super().stopService()

        def stop_cluster(result):
            if self.cluster is not None:
                return self.cluster.stop().addBoth(lambda _: result)
            if self.committer is not None:
                self.committer.flush()   # every write handed over: synced and answered
            return result

        def close(result):
            self.close_storage()
            return result
        return d.addBoth(stop_cluster).addBoth(close)

    def close_storage(self) -> None:
        if self.log_store is None:
            return
        if self.committer is not None:
            self.committer.flush()
        for partition in self._partitions.values():
            partition.stop()
            partition.state_machine.engine.close()
        self.log_store.close()
        self.log_store = None

    @property
    def redis_parameters(self):
        """The Redis parameters' values (CONFIG), as partitions' reads see them."""
        return self.server_context.redis_config.values

    def reload_storage(self):
        """DEBUG RELOAD on a standalone node: everything written is synced, then the log
        and every partition's database are closed and opened again, replaying the log as a
        restart does.  A replicated node's partitions belong to their Raft groups: refused."""
        if self.committer is None:
            raise RespError("ERR DEBUG RELOAD is not supported on a replicated node")
        self.committer.flush()
        self.committer.cancel()
        self.close_storage()
        self._partitions = {}
        self.committer = None
        self._sweep_state.clear()
        self.open_storage()
        self._log.info("DEBUG RELOAD: storage closed and opened again")
        return OK

    def settings_changed(self, name: str) -> None:
        if name == "timeout":
            self.resp_factory.idle_timeout = self.settings["timeout"] or None

    # -- PartitionSet ------------------------------------------------------------------

    def partition(self, namespace: str, pid: int):
        return self._partitions.get((namespace, pid))

    def partitions(self):
        return list(self._partitions.values())

    def keyspace_counts(self) -> tuple[int, int]:
        keys = expires = 0
        for p in self._partitions.values():
            keys += p.state_machine.keys_count
            expires += p.state_machine.expires_count
        return keys, expires

    # -- background purge of expired keys and dead collection elements ------------------

    def sweep_once(self) -> None:
        if self.log_store is None or not self.active_expire:
            return
        now_ms = int(self.reactor.seconds() * 1000)
        for key, partition in self._partitions.items():
            try:
                self._sweep_partition(key, partition, now_ms)
            except ZanError:
                self._log.failure("sweeping {partition}", partition=partition.name)

    def _sweep_partition(self, key, partition, now_ms: int) -> None:
        """One slice of one sweep: expired keys first, then orphaned collection elements,
        alternating pass by pass.  Computed and written in this same call, so no entry is
        applied in between."""
        sm = partition.state_machine
        kind, start = self._sweep_state.get(key, ("expired", None))
        if kind == "expired":
            batch = sweeper.sweep_expired(sm.engine, now_ms, grace_ms=self.config.expire_grace_ms,
                                          limit=self.config.sweep_batch, start=start)
        else:
            batch = sweeper.sweep_garbage(sm.engine, limit=self.config.sweep_batch, start=start)
        if batch.deletions:
            sm.purge(batch.deletions)
        if batch.resume is None:
            kind = "garbage" if kind == "expired" else "expired"
        self._sweep_state[key] = (kind, batch.resume)
