"""PD's reads and writes of the cluster metadata in etcd.

Reads turn etcd subtrees into the records of `zan.pd.model`, each carrying its etcd
`modifiedIndex` as `epoch`.  Writes are guarded by that epoch: a record read at epoch 0
(absent) is created with ``prevExist=false``, any other is replaced with
``prevIndex=<epoch>``; a lost race raises `EpochConflict` and the caller re-reads.  Only
the cluster counter (`ClusterMeta`) is retried here, as ZanRedisDB does (5 attempts),
because reserving a group id block has no decision to re-make.

The `parse_*` functions are pure (etcd nodes in, records out) so the watch callbacks of the
coordinator and the tests share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from twisted.logger import Logger

from zan.errors import ClusterError, StorageError, ZanError
from zan.etcd.client import EtcdClient, Node
from zan.etcd.errors import KeyNotFound, NodeExist, TestFailed
from zan.pd import keys
from zan.pd.model import (
    ClusterMeta, NamespaceMeta, NodeInfo, PartitionReplicaInfo, RealLeader, RemovalState,
    decode_removals, encode_removals,
)

__all__ = [
    "EpochConflict", "NamespaceExists", "NamespaceRecord", "PDRegister", "parse_data_nodes",
    "parse_namespaces", "CAS_RETRIES",
]

CAS_RETRIES = 5


class EpochConflict(ClusterError):
    """A record changed since it was read: the write was refused, re-read and decide again."""

    http_status = 409
    text = "ERR_CLUSTER_CHANGED: metadata changed concurrently"


class NamespaceExists(ZanError):
    http_status = 500

    def __init__(self, ns: str):
        super().__init__(f"namespace {ns} already exists")


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    """One namespace as read from `…/Namespaces/<ns>`.  `meta` is None while the tree is
    being created or deleted (a directory with no NamespaceMeta)."""

    name: str
    meta: NamespaceMeta | None
    partitions: Mapping[int, PartitionReplicaInfo] = field(default_factory=dict)
    leaders: Mapping[int, RealLeader] = field(default_factory=dict)


_log = Logger()


def parse_data_nodes(node: Node | None) -> dict[str, NodeInfo]:
    """`…/DataNodes` → {node id: NodeInfo}; unreadable entries are skipped with a warning."""
    out: dict[str, NodeInfo] = {}
    if node is None:
        return out
    for child in node.nodes:
        if child.dir or child.value is None or not child.name.startswith(keys.NODE_PREFIX):
            continue
        try:
            info = NodeInfo.from_json(child.value, epoch=child.modified_index)
        except StorageError as e:
            _log.warn("ignoring data node record {key}: {why}", key=child.key, why=e)
            continue
        node_id = info.id or child.name[len(keys.NODE_PREFIX):]
        out[node_id] = replace(info, id=node_id)
    return out


def parse_namespaces(node: Node | None) -> dict[str, NamespaceRecord]:
    """`…/Namespaces` (recursive) → {ns: NamespaceRecord}."""
    out: dict[str, NamespaceRecord] = {}
    if node is None:
        return out
    for ns_node in node.nodes:
        if not ns_node.dir:
            continue
        meta = None
        parts: dict[int, PartitionReplicaInfo] = {}
        leaders: dict[int, RealLeader] = {}
        for child in ns_node.nodes:
            try:
                if child.name == "NamespaceMeta" and child.value is not None:
                    meta = NamespaceMeta.from_json(child.value, epoch=child.modified_index)
                elif child.dir and child.name.isdigit():
                    pid = int(child.name)
                    info = child.child("ReplicaInfo")
                    if info is not None and info.value is not None:
                        parts[pid] = PartitionReplicaInfo.from_json(
                            info.value, epoch=info.modified_index)
                    leader = child.child("RealLeader")
                    if leader is not None and leader.value is not None:
                        leaders[pid] = RealLeader.from_json(
                            leader.value, epoch=leader.modified_index)
            except StorageError as e:
                _log.warn("ignoring namespace record {key}: {why}", key=child.key, why=e)
        out[ns_node.name] = NamespaceRecord(ns_node.name, meta, parts, leaders)
    return out


class PDRegister:
    """The etcd side of a PD for cluster `cluster_id`."""

    _log = Logger()

    def __init__(self, client: EtcdClient, cluster_id: str):
        self.client = client
        self.cluster_id = cluster_id

    # --- reads ------------------------------------------------------------------------

    async def read_data_nodes(self) -> tuple[dict[str, NodeInfo], int]:
        try:
            resp = await self.client.get(keys.data_nodes_dir(self.cluster_id), recursive=True,
                                         quorum=True)
        except KeyNotFound as e:
            return {}, e.index
        return parse_data_nodes(resp.node), resp.etcd_index

    async def read_namespaces(self) -> tuple[dict[str, NamespaceRecord], int]:
        """The whole namespace tree and the etcd index it was read at (the epoch)."""
        try:
            resp = await self.client.get(keys.namespaces_dir(self.cluster_id), recursive=True)
        except KeyNotFound as e:
            return {}, e.index
        return parse_namespaces(resp.node), resp.etcd_index

    async def read_cluster_meta(self) -> ClusterMeta:
        try:
            resp = await self.client.get(keys.cluster_meta(self.cluster_id))
        except KeyNotFound:
            return ClusterMeta()
        return ClusterMeta.from_json(resp.node.value or "{}", epoch=resp.node.modified_index)

    async def read_pd_nodes(self) -> list[NodeInfo]:
        try:
            resp = await self.client.get(keys.pd_nodes_dir(self.cluster_id), recursive=True)
        except KeyNotFound:
            return []
        return sorted(parse_data_nodes(resp.node).values(), key=lambda n: n.id)

    async def read_pd_leader(self) -> NodeInfo | None:
        try:
            resp = await self.client.get(keys.pd_leader_session(self.cluster_id))
        except KeyNotFound:
            return None
        try:
            return NodeInfo.from_json(resp.node.value or "{}", epoch=resp.node.modified_index)
        except StorageError:
            return None

    async def read_removals(self) -> tuple[dict[str, RemovalState], int]:
        """The persisted node removals and their epoch (0: no record yet)."""
        try:
            resp = await self.client.get(keys.removing_nodes(self.cluster_id))
        except KeyNotFound:
            return {}, 0
        return decode_removals(resp.node.value or "{}"), resp.node.modified_index

    # --- guarded writes ------------------------------------------------------------------

    async def _put(self, key: str, value: str, epoch: int) -> int:
        """Create (epoch 0) or CAS-replace `key`; the new modifiedIndex."""
        try:
            if epoch == 0:
                resp = await self.client.create(key, value)
            else:
                resp = await self.client.compare_and_swap(key, value, prev_index=epoch)
        except (NodeExist, TestFailed, KeyNotFound) as e:
            raise EpochConflict(f"{EpochConflict.text}: {key} ({e})") from None
        return resp.node.modified_index

    async def reserve_gid_block(self) -> ClusterMeta:
        """MaxGID += 10000 by CAS, retried; the returned meta's `max_gid` is the new MinGID."""
        return await self._bump_cluster_meta(ClusterMeta.reserve_gids)

    async def allocate_reg_id(self) -> int:
        """MaxRegID += 1 by CAS, retried: a new data node's registration id."""
        return (await self._bump_cluster_meta(ClusterMeta.next_reg_id)).max_reg_id

    async def _bump_cluster_meta(self, change) -> ClusterMeta:
        last: Exception | None = None
        for _ in range(CAS_RETRIES):
            meta = await self.read_cluster_meta()
            new = change(meta)
            try:
                index = await self._put(keys.cluster_meta(self.cluster_id), new.to_json(),
                                        meta.epoch)
            except EpochConflict as e:
                last = e
                continue
            return replace(new, epoch=index)
        raise last  # type: ignore[misc]

    async def create_namespace(self, ns: str, meta: NamespaceMeta) -> NamespaceMeta:
        """Reserve a group id block, create NamespaceMeta (must not exist) and the
        partition directories.  ReplicaInfo records are written by `write_replica_info`."""
        try:
            await self.client.get(keys.namespace_meta(self.cluster_id, ns))
            raise NamespaceExists(ns)
        except KeyNotFound:
            pass
        block = await self.reserve_gid_block()
        meta = replace(meta, min_gid=block.max_gid)
        try:
            resp = await self.client.create(keys.namespace_meta(self.cluster_id, ns),
                                            meta.to_json())
        except NodeExist:
            raise NamespaceExists(ns) from None
        for pid in range(meta.partition_num):
            try:
                await self.client.mkdir(keys.partition_dir(self.cluster_id, ns, pid))
            except NodeExist:
                pass
        return replace(meta, epoch=resp.node.modified_index)

    async def update_namespace_meta(self, ns: str, meta: NamespaceMeta) -> NamespaceMeta:
        """Replace NamespaceMeta by CAS on `meta.epoch`."""
        if meta.epoch == 0:
            raise ValueError("update_namespace_meta needs the epoch the meta was read at")
        index = await self._put(keys.namespace_meta(self.cluster_id, ns), meta.to_json(),
                                meta.epoch)
        return replace(meta, epoch=index)

    async def delete_namespace(self, ns: str) -> None:
        """Delete the namespace tree: partitions first, then the rest (ZanRedisDB's order,
        so a node watching sees its partitions go before the meta)."""
        try:
            resp = await self.client.get(keys.namespace_dir(self.cluster_id, ns))
        except KeyNotFound:
            return
        for child in resp.node.nodes:
            if child.dir and child.name.isdigit():
                try:
                    await self.client.delete(child.key, recursive=True, dir=True)
                except KeyNotFound:
                    pass
        try:
            await self.client.delete(keys.namespace_dir(self.cluster_id, ns), recursive=True,
                                     dir=True)
        except KeyNotFound:
            pass

    async def write_replica_info(self, ns: str, pid: int,
                                 info: PartitionReplicaInfo) -> PartitionReplicaInfo:
        """Write `info` guarded by `info.epoch` (the epoch it was derived from; 0 creates)."""
        index = await self._put(keys.replica_info(self.cluster_id, ns, pid), info.to_json(),
                                info.epoch)
        return replace(info, epoch=index)

    async def write_real_leader(self, ns: str, pid: int, leader: RealLeader) -> RealLeader:
        index = await self._put(keys.real_leader(self.cluster_id, ns, pid), leader.to_json(),
                                leader.epoch)
        return replace(leader, epoch=index)

    async def write_removals(self, removals: Mapping[str, RemovalState], epoch: int) -> int:
        """Persist the node removal map, guarded by `epoch`; the new epoch."""
        return await self._put(keys.removing_nodes(self.cluster_id), encode_removals(removals),
                               epoch)
