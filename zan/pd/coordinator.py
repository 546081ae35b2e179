"""The PD process: registration, leader election, the cluster view and the leader's loops.

Every PD registers under `PDInfo/PDNodes`, campaigns for `PDInfo/PDLeaderSession`, and
watches `DataNodes` and `Namespaces` to keep a cached `ClusterView` whose `epoch` is the
etcd index of the last namespace scan (what `/query` returns).  Only the leader acts: on
an injected clock it builds a `ClusterSnapshot`, asks `zan.pd.placement` for a plan and
applies each step with a compare-and-swap on the epoch the step was computed from, so a
deposed leader or a concurrent writer can never overwrite a newer record.

Node removals are kept in etcd (`keys.removing_nodes`), loaded when a PD becomes leader:
a failover continues a removal instead of forgetting it as ZanRedisDB does.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredLock, ensureDeferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from zan import __version__
from zan.errors import BadRequest, NotFound, ZanError
from zan.etcd.client import EtcdClient, Node
from zan.etcd.errors import EtcdError
from zan.etcd.lock import LeaderLock, TTLRegistration
from zan.etcd.watch import Watcher
from zan.pd import keys
from zan.pd.config import PDConfig
from zan.pd.model import NamespaceMeta, NodeInfo, PartitionReplicaInfo, RemovalState, gen_node_id
from zan.pd.placement import (
    ClearRemoval, ClusterSnapshot, CreatePartition, MarkRemovalState, NamespaceView,
    PartitionView, Plan, allocate_namespace, apply_step, balance, drain, next_stable_node_num,
    repair, trim,
)
from zan.pd.sync import HttpSyncProbe, PartitionSync
from zan.pd.register import (
    EpochConflict, NamespaceExists, NamespaceRecord, PDRegister, parse_data_nodes,
    parse_namespaces,
)

__all__ = ["ClusterView", "NotPDLeader", "PDCoordinator"]


class NotPDLeader(ZanError):
    """A leader-only request reached a follower.  ZanRedisDB answers some routes 400
    `E_FAILED_ON_NOT_LEADER` and others 500 `Not leader`; the API picks the form."""

    http_status = 500

    def __init__(self, message: str = "Not leader"):
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What this PD last read from etcd.  `epoch` only grows."""

    data_nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    namespaces: Mapping[str, NamespaceRecord] = field(default_factory=dict)
    epoch: int = 0
    data_nodes_epoch: int = 0


def _default_ip(host: str) -> str:
    if host and host not in ("0.0.0.0", "::"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class PDCoordinator(MultiService):
    _log = Logger()

    def __init__(self, config: PDConfig, client: EtcdClient, clock: IReactorTime,
                 hour_of: Callable[[float], int] | None = None, sync_probe=None):
        super().__init__()
        self.config = config
        self.client = client
        self.clock = clock
        # Asks data nodes whether a partition's replicas are in sync (zan.pd.sync).
        self.sync_probe = sync_probe or HttpSyncProbe(clock, timeout=config.sync_timeout)
        self._sync: dict[tuple[str, int], tuple[int, PartitionSync, float]] = {}
        self._hour_of = hour_of or (lambda t: time.localtime(t).tm_hour)
        self.register = PDRegister(client, config.cluster_id)
        host, port = config.http_host_port
        ip = config.broadcast_address or _default_ip(host)
        http_port = config.reverse_proxy_port or str(port)
        self.node_info = NodeInfo(
            id=gen_node_id(0, ip, "", http_port, "pd"), reg_id=0, node_ip=ip,
            hostname=socket.gethostname(), http_port=http_port, version=__version__)
        value = self.node_info.to_json()
        self.registration = TTLRegistration(client, keys.pd_node(config.cluster_id,
                                                                 self.node_info.id),
                                            value, clock, ttl=config.node_ttl)
        self.node_watch = Watcher(client, keys.data_nodes_dir(config.cluster_id),
                                  self._on_data_nodes, clock, quorum=True)
        self.ns_watch = Watcher(client, keys.namespaces_dir(config.cluster_id),
                                self._on_namespaces, clock)
        self.lock = LeaderLock(client, keys.pd_leader_session(config.cluster_id), value, clock,
                               ttl=config.leader_ttl, on_elected=self._on_elected,
                               on_lost=self._on_lost)
        for child in (self.registration, self.node_watch, self.ns_watch, self.lock):
            child.setServiceParent(self)

        self.view = ClusterView()
        self.lost_since: dict[str, float] = {}
        self.stable_node_num = 0
        self.removals: dict[str, RemovalState] = {}
        self._removals_epoch = 0
        self.auto_balance = config.auto_balance_and_migrate
        self.upgrading = False
        self.last_notes: tuple[str, ...] = ()
        self.check_failed = False
        self.checks_run = 0
        self.steps_applied = 0
        self.log_level = config.log_level
        self._term = 0
        self._exclusive = DeferredLock()
        self._loops: list[LoopingCall] = []
        self._pending_check = None

    # --- leadership -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.lock.is_leader

    def require_leader(self, message: str = "Not leader") -> None:
        if not self.is_leader:
            raise NotPDLeader(message)

    def _on_elected(self) -> None:
        self._term += 1
        term = self._term
        self._log.info("PD {id} is the leader", id=self.node_info.id)
        self._run(self._load_removals, term)
        for interval, job in ((self.config.check_interval, self._check),
                              (self.config.removing_check_interval, self._drain),
                              (self.config.balance_check_interval, self._balance)):
            loop = LoopingCall(self._run, job, term)
            loop.clock = self.clock
            loop.start(interval, now=False).addErrback(
                lambda f: self._log.failure("PD loop failed", f))
            self._loops.append(loop)
        self.trigger_check()

    def _on_lost(self) -> None:
        self._term += 1
        self._log.info("PD {id} is no longer the leader", id=self.node_info.id)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        if self._pending_check is not None and self._pending_check.active():
            self._pending_check.cancel()
        self._pending_check = None
        # Followers keep no removal state: the next leader reads it from etcd.
        self.removals = {}
        self._removals_epoch = 0

    def stopService(self):
        if self.is_leader:
            self._on_lost()
        stopped = super().stopService()
        close = getattr(self.sync_probe, "close", None)
        if close is None:
            return stopped
        return gatherResults([d for d in (stopped, close()) if d is not None])

    def _run(self, job, term: int):
        """Run `job(term)` alone (one leader job at a time), only while `term` lasts."""
        async def guarded():
            if term != self._term:
                return
            try:
                await job(term)
            except EtcdError as e:
                self.check_failed = True
                self._log.warn("PD job {job} failed: {why}", job=job.__name__, why=e)
            except ZanError as e:
                self._log.warn("PD job {job}: {why}", job=job.__name__, why=e)
        return self._exclusive.run(guarded).addErrback(
            lambda f: self._log.failure("PD job failed", f))

    def trigger_check(self) -> None:
        """Run the namespace check soon (debounced), on the leader only."""
        if not self.is_leader or (self._pending_check is not None
                                  and self._pending_check.active()):
            return
        term = self._term
        self._pending_check = self.clock.callLater(self.config.check_delay, self._run,
                                                   self._check, term)

    # --- the cached view ---------------------------------------------------------------

    def _on_data_nodes(self, node: Node | None, index: int) -> None:
        nodes = parse_data_nodes(node)
        gone = set(self.view.data_nodes) - set(nodes)
        now = self.clock.seconds()
        for n in gone:
            self.lost_since.setdefault(n, now)
        for n in nodes:
            self.lost_since.pop(n, None)
        self.view = replace(self.view, data_nodes=nodes, data_nodes_epoch=index)
        alive = sum(1 for info in nodes.values() if not info.is_learner)
        self.stable_node_num = next_stable_node_num(self.stable_node_num, alive)
        if gone:
            self._log.info("data nodes lost: {gone}", gone=sorted(gone))
            self.check_failed = True
        self.trigger_check()

    def _on_namespaces(self, node: Node | None, index: int) -> None:
        self._set_namespaces(parse_namespaces(node), index)

    def _set_namespaces(self, namespaces: dict[str, NamespaceRecord], index: int) -> None:
        if index < self.view.epoch:
            return  # an older read finished after a newer one
        self.view = replace(self.view, namespaces=namespaces, epoch=index)

    async def rescan_namespaces(self) -> ClusterView:
        """Read the namespace tree now (raises EtcdError when etcd cannot answer)."""
        namespaces, index = await self.register.read_namespaces()
        self._set_namespaces(namespaces, index)
        return self.view

    def snapshot(self) -> ClusterSnapshot:
        now = self.clock.seconds()
        nodes = {n: i for n, i in self.view.data_nodes.items() if not i.is_learner}
        namespaces: dict[str, NamespaceView] = {}
        for name, rec in self.view.namespaces.items():
            if rec.meta is None:
                continue
            parts = {}
            for pid, info in rec.partitions.items():
                leader = rec.leaders.get(pid)
                # What the data nodes said about this very placement; unknown counts as
                # not synced, with every Removing replica possibly still a member.
                known = self._sync.get((name, pid))
                sync = known[1] if known is not None and known[0] == info.epoch else \
                    PartitionSync(False, frozenset(info.removings))
                parts[pid] = PartitionView(info, leader=leader.leader if leader else "",
                                           synced=sync.synced, lingering=sync.lingering)
                for member in info.raft_nodes:
                    if member not in nodes:
                        self.lost_since.setdefault(member, now)
            namespaces[name] = NamespaceView(rec.meta, parts)
        self.stable_node_num = next_stable_node_num(self.stable_node_num, len(nodes))
        return ClusterSnapshot(nodes, namespaces, now, dict(self.lost_since),
                               dict(self.removals), self.stable_node_num)

    # --- leader jobs -------------------------------------------------------------------

    async def _load_removals(self, term: int) -> None:
        removals, epoch = await self.register.read_removals()
        if term == self._term:
            self.removals, self._removals_epoch = removals, epoch
            if removals:
                self._log.info("continuing node removals {r}",
                               r={k: str(v) for k, v in removals.items()})

    async def refresh_sync(self) -> None:
        """Ask the data nodes about every partition whose placement changed, that was not
        in sync or still had a Removing member, or that was last asked `sync_recheck` ago."""
        now = self.clock.seconds()
        nodes = self.view.data_nodes
        todo = []
        for name, rec in self.view.namespaces.items():
            if rec.meta is None:
                continue
            for pid, info in rec.partitions.items():
                known = self._sync.get((name, pid))
                if known is not None and known[0] == info.epoch and known[1].synced \
                        and not known[1].lingering and now - known[2] < self.config.sync_recheck:
                    continue
                leader = rec.leaders.get(pid)
                todo.append((name, pid, info, leader.leader if leader else ""))
        if not todo:
            return
        results = await gatherResults([
            ensureDeferred(self.sync_probe(name, pid, info, leader, nodes))
            for name, pid, info, leader in todo])
        current = {(n, p) for n, rec in self.view.namespaces.items() for p in rec.partitions}
        for (name, pid, info, _), sync in zip(todo, results):
            self._sync[(name, pid)] = (info.epoch, sync, now)
        for gone in set(self._sync) - current:
            del self._sync[gone]

    async def _check(self, term: int) -> None:
        self.checks_run += 1
        if not self.auto_balance or self.upgrading:
            self.last_notes = ("auto balance and migrate is off" if not self.auto_balance
                               else "upgrade in progress",)
            return
        await self.refresh_sync()
        if term != self._term:
            return
        snap = self.snapshot()
        plan = repair(snap, grace=self.config.node_grace_period,
                      removing_wait=self.config.removing_wait,
                      version=self.config.balance_ver)
        if not plan:
            plan = plan + trim(snap, version=self.config.balance_ver)
        self.last_notes = plan.notes
        applied = await self.apply(plan, term)
        self.check_failed = bool(plan.notes) and not applied
        if applied:
            self.trigger_check()

    async def _drain(self, term: int) -> None:
        if self.upgrading or not self.removals:
            return
        await self.refresh_sync()
        if term != self._term:
            return
        plan = drain(self.snapshot(), version=self.config.balance_ver)
        await self.apply(plan, term)

    async def _balance(self, term: int) -> None:
        if not self.auto_balance or self.upgrading or self.check_failed:
            return
        await self.refresh_sync()
        if term != self._term:
            return
        snap = self.snapshot()
        plan = balance(snap, self._hour_of(snap.now), window=self.config.balance_interval,
                       version=self.config.balance_ver)
        await self.apply(plan, term)

    async def apply(self, plan: Plan, term: int) -> int:
        """Apply the plan's steps in order; the number written.  A step whose record
        changed since the snapshot is skipped (the next check decides again)."""
        applied = 0
        for step in plan.steps:
            if term != self._term:
                break
            if isinstance(step, (MarkRemovalState, ClearRemoval)):
                removals = dict(self.removals)
                if isinstance(step, ClearRemoval):
                    removals.pop(step.node, None)
                else:
                    removals[step.node] = step.state
                await self._save_removals(removals, term)
                applied += 1
                continue
            rec = self.view.namespaces.get(step.ns)
            info = rec.partitions.get(step.pid) if rec is not None else None
            if (info.epoch if info is not None else 0) != step.epoch:
                continue
            new = replace(apply_step(info, step, self.clock.seconds()), epoch=step.epoch)
            try:
                written = await self.register.write_replica_info(step.ns, step.pid, new)
            except EpochConflict as e:
                self._log.info("{why}; re-reading", why=e)
                await self.rescan_namespaces()
                continue
            self._log.info("{ns}-{pid}: {step}", ns=step.ns, pid=step.pid,
                           step=type(step).__name__)
            self._remember(step.ns, step.pid, written)
            applied += 1
            self.steps_applied += 1
        return applied

    def _remember(self, ns: str, pid: int, info: PartitionReplicaInfo) -> None:
        rec = self.view.namespaces.get(ns)
        if rec is None:
            return
        rec = replace(rec, partitions={**rec.partitions, pid: info})
        self.view = replace(self.view, namespaces={**self.view.namespaces, ns: rec})

    async def _save_removals(self, removals: dict[str, RemovalState], term: int) -> None:
        try:
            epoch = await self.register.write_removals(removals, self._removals_epoch)
        except EpochConflict:
            # Someone else wrote it (a leader we overlapped with): take theirs, decide again.
            self.removals, self._removals_epoch = await self.register.read_removals()
            raise
        if term == self._term:
            self.removals, self._removals_epoch = removals, epoch

    # --- operator requests (leader) -----------------------------------------------------

    async def create_namespace(self, ns: str, meta: NamespaceMeta) -> NamespaceMeta:
        self.require_leader()
        term = self._term
        return await self._exclusive.run(self._create_namespace, ns, meta, term)

    async def _create_namespace(self, ns: str, meta: NamespaceMeta, term: int) -> NamespaceMeta:
        await self.rescan_namespaces()
        rec = self.view.namespaces.get(ns)
        if rec is not None and rec.meta is not None:
            raise NamespaceExists(ns)
        plan = allocate_namespace(self.snapshot(), ns, meta.partition_num, meta.replica,
                                  meta.tags, self.config.balance_ver)
        meta = await self.register.create_namespace(ns, meta)
        for step in plan.steps:
            assert isinstance(step, CreatePartition)
            if term != self._term:
                raise NotPDLeader()
            try:
                await self.register.write_replica_info(
                    ns, step.pid, PartitionReplicaInfo.initial(step.nodes))
            except EpochConflict:
                pass  # created by an earlier attempt: the check loop owns it now
        await self.rescan_namespaces()
        self._log.info("namespace {ns} created: {n} partitions x {r}", ns=ns,
                       n=meta.partition_num, r=meta.replica)
        return meta

    async def delete_namespace(self, ns: str) -> None:
        self.require_leader()
        await self.rescan_namespaces()
        if ns not in self.view.namespaces:
            raise NotFound("NAMESPACE not found")
        await self._exclusive.run(self.register.delete_namespace, ns)
        await self.rescan_namespaces()
        self._log.info("namespace {ns} deleted", ns=ns)

    async def update_namespace_meta(self, ns: str, replica: int | None = None,
                                    optimized_fsync: bool | None = None,
                                    snap_count: int | None = None) -> NamespaceMeta:
        self.require_leader("E_FAILED_ON_NOT_LEADER")
        last: Exception | None = None
        for _ in range(3):
            await self.rescan_namespaces()
            rec = self.view.namespaces.get(ns)
            if rec is None or rec.meta is None:
                raise NotFound("NAMESPACE not found")
            meta = rec.meta
            if replica is not None:
                meta = replace(meta, replica=replica)
            if optimized_fsync is not None:
                meta = replace(meta, optimized_fsync=optimized_fsync)
            if snap_count is not None:
                meta = replace(meta, snap_count=snap_count)
            try:
                meta = await self.register.update_namespace_meta(ns, meta)
            except EpochConflict as e:
                last = e
                continue
            await self.rescan_namespaces()
            self.trigger_check()
            return meta
        raise last  # type: ignore[misc]

    async def mark_node_removing(self, node_id: str) -> None:
        self.require_leader()
        known = set(self.view.data_nodes) | {
            n for rec in self.view.namespaces.values() for info in rec.partitions.values()
            for n in info.raft_nodes}
        if node_id not in known:
            raise NotFound(f"node {node_id} not found")
        if node_id in self.removals:
            return
        term = self._term

        async def mark():
            removals = dict(self.removals)
            removals[node_id] = RemovalState.MARKED
            await self._save_removals(removals, term)
        await self._exclusive.run(mark)
        self._log.info("node {node} marked for removal", node=node_id)

    async def mark_partition_replica_removing(self, ns: str, pid: int, node_id: str) -> None:
        self.require_leader()
        await self.rescan_namespaces()
        rec = self.view.namespaces.get(ns)
        if rec is None or rec.meta is None:
            raise NotFound("NAMESPACE not found")
        info = rec.partitions.get(pid)
        if info is None:
            raise NotFound("PARTITION not found")
        if node_id not in info.raft_nodes:
            raise BadRequest(f"node {node_id} is not a replica of {ns}-{pid}")
        new = info.with_removing(node_id, int(self.clock.seconds() * 1e9))
        if new is info:
            return
        written = await self.register.write_replica_info(ns, pid, new)
        self._remember(ns, pid, written)

    def set_stable_node_num(self, number: int) -> None:
        self.require_leader()
        if number >= self.stable_node_num:
            raise BadRequest(f"stable node number can only be decreased "
                             f"(now {self.stable_node_num})")
        if number < 1:
            raise BadRequest("stable node number must be positive")
        self.stable_node_num = number

    @property
    def stable(self) -> bool:
        return not self.check_failed and not self.upgrading

    def stats(self) -> dict[str, Any]:
        return {"stable": self.stable}
