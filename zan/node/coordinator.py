"""The data node of an etcd-coordinated cluster: it obeys the placement PD writes.

`DataNodeCoordinator` is the service: it finds the node's registration id (`myid` in the
data directory, else a fresh one from `ClusterMeta.MaxRegID`), keeps the node's
`DataNodes` record alive with a TTL, watches the namespace tree and the data nodes, and
runs the reconcile loop.  `EtcdCluster` is the replica host it drives: it starts the
replicas placement lists (founding a group, or joining one), destroys those placement
dropped, and, for the groups it leads, publishes `RealLeader`, adds and removes Raft
members to match `ReplicaInfo` and hands leadership to `RaftNodes[0]`
(`zan.node.reconcile` decides; this module carries out).

Replica ids are per partition (`RaftIDs`); the Raft transport addresses nodes by
registration id, learned from the member's conf-change context or from `ReplicaInfo`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import replace

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from zan import __version__
from zan.errors import ZanError
from zan.etcd.client import EtcdClient
from zan.etcd.errors import EtcdError
from zan.etcd.lock import TTLRegistration
from zan.etcd.watch import Backoff, Watcher
from zan.node.cluster import RemotePartition, ReplicaHost
from zan.node.config import NamespaceConfig, NodeConfig
from zan.node.reconcile import (
    AddVoter, LocalReplica, RemoveVoter, TransferLeader, leader_action, replica_changes,
    wanted_replicas,
)
from zan.pd import keys
from zan.pd.model import NodeInfo, RealLeader, gen_node_id, parse_node_id
from zan.pd.register import EpochConflict, PDRegister, parse_data_nodes, parse_namespaces
from zan.raft.types import ConfChange, ConfChangeType
from zan.store.keyspace import KeyspaceOptions

__all__ = ["DataNodeCoordinator", "EtcdCluster", "MYID_FILE"]

MYID_FILE = "myid"
_MARKER_SUFFIX = ".replica"
_POLICIES = {"local_deletion", "wait_compact"}


def _reg_of(node_id: str) -> int:
    try:
        return parse_node_id(node_id)[0]
    except ValueError:
        return 0


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class EtcdCluster(ReplicaHost):
    """Replicas placed by PD.  `namespaces` and `data_nodes` are the coordinator's latest
    reads of etcd; `reconcile()` and `leader_duties()` act on them."""

    def __init__(self, node, config: NodeConfig, reactor, log_store, reg_id: int,
                 node_id: str, register: PDRegister, **seams):
        super().__init__(node, config, reactor, log_store, local_node_id=reg_id, **seams)
        self.node_id = node_id
        self.register = register
        self.local: dict[tuple[str, int], object] = {}      # (ns, pid) -> RaftPartition
        self.namespaces: dict = {}
        self.data_nodes: dict[str, NodeInfo] = {}
        self._addresses: dict[int, dict[str, tuple[str, int]]] = {}
        self._replica_nodes: dict[int, dict[int, int]] = {}  # gid -> replica -> reg id
        self._where: dict[int, tuple[str, int]] = {}         # gid -> (ns, pid)
        self._leading_since: dict[int, tuple[int, float]] = {}
        self._published: dict[int, int] = {}                 # gid -> term published
        self._busy: set[int] = set()                          # gids with a change in flight
        self._campaigns: dict[int, object] = {}               # gid -> pending campaign call
        self.seen_namespaces = False

    # -- who is where --------------------------------------------------------------------

    def node_of(self, gid: int, replica: int) -> int | None:
        partition = self.by_group.get(gid)
        if partition is not None:
            context = partition.members.get(replica)
            if context:
                try:
                    reg = json.loads(context).get("node_id")
                except (ValueError, AttributeError):
                    reg = None
                if isinstance(reg, int) and reg > 0:
                    return reg
        return self._replica_nodes.get(gid, {}).get(replica)

    def peer_address(self, node_id, which: str):
        if not node_id:
            return None
        return self._addresses.get(node_id, {}).get(which)

    def set_data_nodes(self, nodes: dict[str, NodeInfo]) -> None:
        """Learn where the registered nodes listen (kept after a node's record expires:
        its replicas may still be reachable, and a restarted node reuses its addresses)."""
        self.data_nodes = nodes
        for info in nodes.values():
            reg = info.reg_id or _reg_of(info.id)
            if not reg:
                continue
            addresses = self._addresses.setdefault(reg, {})
            raft = _host_port(info.raft_transport_addr)
            if raft is not None:
                addresses["raft_addr"] = raft
                if reg != self.local_node_id:
                    self.transport.add_peer(reg, *raft)
            if info.node_ip and info.redis_port.isdigit():
                addresses["redis_addr"] = (info.node_ip, int(info.redis_port))
            if info.node_ip and info.http_port.isdigit():
                addresses["http_addr"] = (info.node_ip, int(info.http_port))

    def set_namespaces(self, namespaces: dict) -> None:
        self.namespaces = namespaces
        self.seen_namespaces = True
        replica_nodes: dict[int, dict[int, int]] = {}
        where: dict[int, tuple[str, int]] = {}
        configs: dict[str, NamespaceConfig] = {}
        for name, rec in namespaces.items():
            meta = rec.meta
            if meta is None or meta.partition_num < 1:
                continue
            configs[name] = self._namespace_config(name, meta)
            for pid, info in rec.partitions.items():
                gid = meta.group_id(pid)
                where[gid] = (name, pid)
                ids = {rid: _reg_of(n) for n, rid in info.raft_ids.items()}
                for n, removing in info.removings.items():
                    if removing.remove_replica_id:
                        ids.setdefault(removing.remove_replica_id, _reg_of(n))
                replica_nodes[gid] = ids
                # Node ids carry the IP and the RESP and HTTP ports: enough to forward to
                # a node whose DataNodes record is gone for now.
                for n in info.raft_nodes:
                    try:
                        reg, ip, _, redis_port, http_port, _ = parse_node_id(n)
                    except ValueError:
                        continue
                    addresses = self._addresses.setdefault(reg, {})
                    if redis_port.isdigit():
                        addresses.setdefault("redis_addr", (ip, int(redis_port)))
                    if http_port.isdigit():
                        addresses.setdefault("http_addr", (ip, int(http_port)))
        self._replica_nodes = replica_nodes
        self._where = where
        self.node.router.update(configs, self.config.default_namespace)

    def _namespace_config(self, name: str, meta) -> NamespaceConfig:
        policy = meta.expiration_policy if meta.expiration_policy in _POLICIES else "wait_compact"
        return NamespaceConfig(
            name=name, partition_num=meta.partition_num, replicator=max(1, meta.replica),
            snap_count=meta.snap_count or self.config.default_snap_count,
            snap_catchup=self.config.default_snap_catchup, expiration_policy=policy)

    # -- the dispatcher's view -------------------------------------------------------------

    def partition(self, namespace: str, pid: int):
        local = self.local.get((namespace, pid))
        if local is not None:
            return local
        rec = self.namespaces.get(namespace)
        if rec is None or rec.meta is None or not 0 <= pid < rec.meta.partition_num:
            return None
        leader = rec.leaders.get(pid)
        info = rec.partitions.get(pid)
        node = leader.leader if leader is not None and leader.leader else (
            info.desired_leader if info is not None else "")
        return RemotePartition(namespace, pid, _reg_of(node) if node else 0)

    def partitions(self) -> list:
        return [self.partition(name, pid) for name, rec in sorted(self.namespaces.items())
                if rec.meta is not None for pid in range(rec.meta.partition_num)]

    # -- replicas ------------------------------------------------------------------------

    def local_replicas(self) -> dict[int, LocalReplica]:
        return {gid: LocalReplica(gid, p.replica_id, p.removed)
                for gid, p in self.by_group.items()}

    def reconcile(self) -> None:
        """Make the local replicas match placement (only after etcd has been read)."""
        if not self.seen_namespaces or self.stopped:
            return
        local = self.local_replicas()
        changes = replica_changes(wanted_replicas(self.node_id, self.namespaces, local), local)
        for gid in changes.destroy:
            self._destroy(gid)
        for want in changes.open:
            try:
                self._open(want)
            except (ZanError, OSError) as e:
                self._log.error("{ns}-{pid}: cannot start replica {rid}: {why}",
                                ns=want.namespace, pid=want.pid, rid=want.replica_id, why=e)
        # Logs of groups no local replica uses any more (a namespace deleted while this
        # node was down, a replica dropped before it could be destroyed).
        for gid in self.log_store.group_ids():
            if gid not in self.by_group:
                self.log_store.remove_group(gid)

    def _open(self, want) -> None:
        name = f"{want.namespace}-{want.pid}"
        path = os.path.join(self.config.data_dir, name)
        self._discard_stale(path, want)
        ns = self._namespace_config(want.namespace, want.meta)
        options = KeyspaceOptions(expiration_policy=ns.expiration_policy,
                                  redis_config=getattr(self.node, "redis_parameters", None),
                                  max_batch_elements=self.config.max_batch_elements)
        partition = self.open_replica(want.namespace, want.pid, want.group_id, want.replica_id,
                                      options, ns.snap_count, ns.snap_catchup, want.peers)
        self.local[(want.namespace, want.pid)] = partition
        self._log.info("{partition}: replica {rid} of group {gid} started ({how})",
                       partition=name, rid=want.replica_id, gid=want.group_id,
                       how="founding" if want.peers else "joining")
        if want.peers and want.peers[0] == want.replica_id:
            # Every founder may win the first election; the desired leader (the ISR's
            # first) asks for votes first, so leadership need not move to it later.
            self._campaign_soon(want.group_id, tries=10)

    def _campaign_soon(self, gid: int, tries: int) -> None:
        self._campaigns[gid] = self.reactor.callLater(
            self.config.tick_ms * 5 / 1000.0, self._campaign, gid, tries)

    def _campaign(self, gid: int, tries: int) -> None:
        self._campaigns.pop(gid, None)
        if self.stopped or gid not in self.by_group or self.driver.leader(gid):
            return
        self.driver.campaign(gid)
        if tries > 1:       # not founded yet (still asking the other founders): again
            self._campaign_soon(gid, tries - 1)

    def stop(self):
        for call in self._campaigns.values():
            if call.active():
                call.cancel()
        self._campaigns.clear()
        return super().stop()

    def _discard_stale(self, path: str, want) -> None:
        """Data left by another incarnation (a namespace deleted and created again, or a
        replica removed and added back under a new id) must not pass for this one: its
        applied index would make the new group skip entries.  The marker next to the
        database names the incarnation it belongs to."""
        marker = path + _MARKER_SUFFIX
        expected = {"group_id": want.group_id, "replica_id": want.replica_id,
                    "magic_code": want.meta.magic_code}
        try:
            with open(marker, encoding="utf-8") as f:
                found = json.load(f)
        except (OSError, ValueError):
            found = None
        if found == expected:
            return
        if os.path.exists(path):
            self._log.warn("{path}: discarding data of another incarnation ({found}, now "
                           "{expected})", path=path, found=found, expected=expected)
            doomed = f"{path}-deleted-{int(self.reactor.seconds() * 1000)}"
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        if want.group_id in self.log_store.group_ids():
            self.log_store.remove_group(want.group_id)
        tmp = marker + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(expected, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)

    def _destroy(self, gid: int) -> None:
        partition = self.by_group.get(gid)
        if partition is None:
            return
        self.local.pop((partition.namespace, partition.pid), None)
        self.close_replica(gid, destroy=True)
        try:
            os.remove(partition.state_machine.engine.path + _MARKER_SUFFIX)
        except OSError:
            pass
        self._leading_since.pop(gid, None)
        self._published.pop(gid, None)

    # -- duties of the groups this node leads ------------------------------------------------

    def leader_duties(self) -> None:
        now = self.reactor.seconds()
        for gid, partition in list(self.by_group.items()):
            if not partition.is_leader or gid in self._busy:
                self._leading_since.pop(gid, None)
                continue
            status = self.driver.status(gid)
            since = self._leading_since.get(gid)
            if since is None or since[0] != status.term:
                since = self._leading_since[gid] = (status.term, now)
            where = self._where.get(gid)
            rec = self.namespaces.get(where[0]) if where else None
            if rec is None:
                continue
            pid = where[1]
            self._publish_leader(gid, where[0], pid, rec, status.term)
            info = rec.partitions.get(pid)
            if info is None:
                continue
            raft = self.driver.raw_node(gid).raft
            action = leader_action(
                partition.replica_id, info, self.driver.conf_state(gid).voters,
                {r: p.match for r, p in status.progress.items()}, status.commit,
                conf_change_pending=raft.pending_conf_index > raft.raft_log.applied,
                since_leader_change=now - since[1],
                change_wait=self.config.leader_change_wait_ms / 1000.0,
                lag=self.config.leader_transfer_lag,
                active={r for r, pr in raft.prs.items() if pr.recent_active})
            if action is not None:
                self._carry_out(gid, partition, action)

    def _carry_out(self, gid: int, partition, action) -> None:
        if isinstance(action, TransferLeader):
            self._log.info("{partition}: handing leadership to replica {rid}",
                           partition=partition.name, rid=action.replica_id)
            self.driver.transfer_leader(gid, action.replica_id)
            return
        if isinstance(action, AddVoter):
            reg = _reg_of(action.node)
            address = self.peer_address(reg, "raft_addr")
            context = json.dumps({
                "id": action.replica_id, "node_id": reg, "group_id": gid,
                "group_name": partition.name,
                "peer_urls": [f"http://{address[0]}:{address[1]}"] if address else []})
            cc = ConfChange(ConfChangeType.ADD_NODE, action.replica_id, context.encode())
        else:
            assert isinstance(action, RemoveVoter)
            cc = ConfChange(ConfChangeType.REMOVE_NODE, action.replica_id)
        self._log.info("{partition}: {kind} replica {rid}", partition=partition.name,
                       kind=cc.type.name, rid=action.replica_id)
        self._busy.add(gid)

        def done(result):
            self._busy.discard(gid)
            return result

        def failed(failure):
            self._log.info("{partition}: membership change failed: {why}",
                           partition=partition.name, why=failure.getErrorMessage())
        self.driver.propose_conf_change(gid, cc).addBoth(done).addErrback(failed)

    def _publish_leader(self, gid: int, ns: str, pid: int, rec, term: int) -> None:
        current = rec.leaders.get(pid)
        if (current is not None and current.leader == self.node_id) or \
                self._published.get(gid) == term:
            return
        self._published[gid] = term
        record = RealLeader(self.node_id, current.epoch if current is not None else 0)

        async def write():
            try:
                written = await self.register.write_real_leader(ns, pid, record)
            except (EpochConflict, EtcdError) as e:
                self._published.pop(gid, None)       # try again next round
                self._log.info("{ns}-{pid}: publishing the leader failed: {why}",
                               ns=ns, pid=pid, why=e)
                return
            fresh = self.namespaces.get(ns)
            if fresh is not None:
                self.namespaces[ns] = replace(fresh, leaders={**fresh.leaders, pid: written})
        Deferred.fromCoroutine(write())

    async def hand_off_leadership(self, timeout: float) -> None:
        """Before leaving: move leadership of every group this node leads to another
        voter that has caught up, and wait (at most `timeout`) for it to happen."""
        for gid, partition in self.by_group.items():
            if not partition.is_leader:
                continue
            status = self.driver.status(gid)
            prs = self.driver.raw_node(gid).raft.prs
            heirs = sorted((p.match, r) for r, p in status.progress.items()
                           if r != partition.replica_id
                           and r in self.driver.conf_state(gid).voters
                           and r in prs and prs[r].recent_active)
            if heirs:
                self.driver.transfer_leader(gid, heirs[-1][1])
        led = sum(1 for p in self.by_group.values() if p.is_leader)
        deadline = self.reactor.seconds() + timeout
        while any(p.is_leader for p in self.by_group.values()) and \
                self.reactor.seconds() < deadline:
            await deferLater(self.reactor, 0.05, lambda: None)
        kept = sum(1 for p in self.by_group.values() if p.is_leader)
        if led:
            self._log.info("leaving: handed off leadership of {moved} of {led} groups",
                           moved=led - kept, led=led)


class _LateFactory(Factory):
    """Serves a listener bound before the factory that answers it exists: connections
    made before `target` is set are closed at once (peers dial again)."""

    noisy = False

    def __init__(self):
        self.target: Factory | None = None

    def buildProtocol(self, addr):
        if self.target is None:
            return None
        return self.target.buildProtocol(addr)


class DataNodeCoordinator(MultiService):
    """Registration, watches and the reconcile loop of an etcd-mode data node."""

    _log = Logger()

    def __init__(self, node, config: NodeConfig, reactor, *, etcd_client=None,
                 cluster_seams: dict | None = None):
        super().__init__()
        self.node = node
        self.config = config
        self.reactor = reactor
        self.client = etcd_client or EtcdClient(reactor, config.etcd_endpoints)
        self.register = PDRegister(self.client, config.cluster_id)
        self.cluster: EtcdCluster | None = None
        self.node_info: NodeInfo | None = None
        self._seams = cluster_seams or {}
        self._starting: Deferred | None = None
        self._loop = LoopingCall(self._round)
        self._loop.clock = reactor
        self._pending_round = None
        self.ready = Deferred()     # fires once the node is registered and watching
        # The Raft port is bound when the service starts, like the RESP port: a taken
        # port must stop the node before it registers and PD places replicas on it.
        # What serves it exists once the node knows its registration id.
        self._raft_factory = _LateFactory()
        if "transport_factory" not in self._seams:
            raft_host, raft_port = config.raft_listen_address
            listener = StreamServerEndpointService(
                TCP4ServerEndpoint(reactor, raft_port, interface=raft_host), self._raft_factory)
            listener._raiseSynchronously = True
            listener.setName("raft")
            listener.setServiceParent(self)

    # -- start -------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(self._start_failed)

    def _start_failed(self, failure):
        if self.running:
            self._log.failure("the data node coordinator could not start", failure)

    async def _start(self) -> None:
        reg_id = await self._registration_id()
        config = self.config
        ip = config.broadcast_addr or "127.0.0.1"
        node_id = gen_node_id(reg_id, ip, config.redis_api_port, config.http_api_port)
        _, raft_port = config.raft_listen_address
        self.node_info = NodeInfo(
            id=node_id, reg_id=reg_id, node_ip=ip, hostname=socket.gethostname(),
            redis_port=str(config.redis_api_port), http_port=str(config.http_api_port),
            raft_transport_addr=f"http://{ip}:{raft_port}", version=__version__,
            tags=dict(config.tags), data_root=os.path.abspath(config.data_dir))
        cluster = self.cluster = EtcdCluster(
            self.node, config, self.reactor, self.node.log_store, reg_id, node_id,
            self.register, **self._seams)
        cluster.set_data_nodes({node_id: self.node_info})
        self.node.attach_cluster(cluster, cluster.local)
        self._raft_factory.target = cluster.transport.server_factory
        cluster.driver.start()
        for child in (
            TTLRegistration(self.client, keys.data_node(config.cluster_id, node_id),
                            self.node_info.to_json(), self.reactor, ttl=config.etcd_node_ttl),
            Watcher(self.client, keys.data_nodes_dir(config.cluster_id), self._on_data_nodes,
                    self.reactor, quorum=True),
            Watcher(self.client, keys.namespaces_dir(config.cluster_id), self._on_namespaces,
                    self.reactor),
        ):
            child.setServiceParent(self)
        self._loop.start(config.coordinator_interval_ms / 1000.0, now=False)
        self._log.info("data node {node} of cluster {cluster} registering in etcd",
                       node=node_id, cluster=config.cluster_id)
        self.ready.callback(node_id)

    async def _registration_id(self) -> int:
        """`myid` in the data directory; a node without one takes MaxRegID+1 (CAS on
        ClusterMeta) and keeps it there, so it comes back as the same node."""
        path = os.path.join(self.config.data_dir, MYID_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        except FileNotFoundError:
            text = ""
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ZanError(f"{path}: not a registration id: {text!r}")
            return int(text)
        backoff = Backoff(0.5, 5.0)
        while True:
            try:
                reg_id = await self.register.allocate_reg_id()
                break
            except (EtcdError, EpochConflict) as e:
                delay = backoff.next_delay()
                self._log.warn("cannot allocate a registration id yet ({why}); retrying in "
                               "{delay}s", why=e, delay=delay)
                await deferLater(self.reactor, delay, lambda: None)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{reg_id}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._log.info("registered as {reg} (saved in {path})", reg=reg_id, path=path)
        return reg_id

    # -- watches -------------------------------------------------------------------------

    def _on_data_nodes(self, node, index: int) -> None:
        if self.cluster is not None:
            nodes = parse_data_nodes(node)
            if self.node_info is not None:
                nodes.setdefault(self.node_info.id, self.node_info)
            self.cluster.set_data_nodes(nodes)

    def _on_namespaces(self, node, index: int) -> None:
        if self.cluster is None:
            return
        self.cluster.set_namespaces(parse_namespaces(node))
        self._soon()

    def _soon(self) -> None:
        if self._pending_round is None:
            self._pending_round = self.reactor.callLater(0, self._round)

    def _round(self) -> None:
        if self._pending_round is not None:
            if self._pending_round.active():
                self._pending_round.cancel()
            self._pending_round = None
        cluster = self.cluster
        if cluster is None or cluster.stopped:
            return
        try:
            cluster.reconcile()
            cluster.leader_duties()
        except Exception:
            self._log.failure("reconcile round failed")

    # -- stop --------------------------------------------------------------------------

    def stopService(self):
        """Leave gracefully: hand leadership away, unregister, then stop watching."""
        if self._loop.running:
            self._loop.stop()
        if self._pending_round is not None and self._pending_round.active():
            self._pending_round.cancel()
        self._pending_round = None
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()

        async def leave():
            if self.cluster is not None and not self.cluster.stopped:
                timeout = self.config.tick_ms * self.config.election_tick / 1000.0
                try:
                    await self.cluster.hand_off_leadership(timeout)
                except Exception:
                    self._log.failure("handing off leadership")
            await DeferredList([d for d in [MultiService.stopService(self)] if d is not None])
            await self.client.close()
        return Deferred.fromCoroutine(leave())
