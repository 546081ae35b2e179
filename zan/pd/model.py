"""Cluster metadata records as PD and data nodes keep them in etcd.

Each record is a frozen value with a JSON codec whose field names are ZanRedisDB's Go
field names (`RaftNodes`, `MaxRaftID`, `PartitionNum`, ...), so a cluster's etcd tree
reads the same to both systems.  Decoding is lenient the way Go's `encoding/json` is:
missing fields take their zero value, `null` maps and lists are empty, unknown fields are
ignored.  The etcd `modifiedIndex` a record was read at is its `epoch`; it is not part of
the JSON and is the `prevIndex` of the compare-and-swap that replaces the record.

Maps and lists inside the records are plain dicts and tuples: treat them as read-only and
derive changed records with the `with_*` methods or `dataclasses.replace`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from zan.errors import StorageError

__all__ = [
    "ClusterMeta", "NamespaceMeta", "NodeInfo", "PartitionReplicaInfo", "RealLeader",
    "RemovalState", "RemovingInfo", "decode_removals", "encode_removals", "gen_node_id",
    "parse_node_id", "DC_TAG", "GID_BLOCK",
]

# The node tag whose string value names the data centre, for DC-aware placement.
DC_TAG = "dc_info"
# Raft group ids are reserved per namespace in blocks of this size (ClusterMeta.MaxGID).
GID_BLOCK = 10000


def _load(text: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(text, Mapping):
        return text
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StorageError(f"invalid metadata JSON: {e}") from None
    if not isinstance(data, dict):
        raise StorageError(f"metadata JSON must be an object, got {type(data).__name__}")
    return data


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _map(value: Any) -> dict:
    return dict(value) if value else {}


# --- data nodes -------------------------------------------------------------------

def gen_node_id(reg_id: int, ip: str, redis_port: str | int, http_port: str | int,
                extra: str = "datanode", rpc_port: str | int = "") -> str:
    """ZanRedisDB's node id, `<RegID>:<IP>:<rpc>:<redisPort>:<httpPort>:<extra>`."""
    return f"{reg_id}:{ip}:{rpc_port}:{redis_port}:{http_port}:{extra}"


def parse_node_id(node_id: str) -> tuple[int, str, str, str, str, str]:
    """(reg_id, ip, rpc_port, redis_port, http_port, extra) from a node id.

    The IP may be IPv6 with colons, so the fixed fields are taken from both ends.
    """
    parts = node_id.split(":")
    if len(parts) < 6:
        raise ValueError(f"invalid node id {node_id!r}")
    try:
        reg_id = int(parts[0])
    except ValueError:
        raise ValueError(f"invalid node id {node_id!r}") from None
    ip = ":".join(parts[1:-4])
    return reg_id, ip, parts[-4], parts[-3], parts[-2], parts[-1]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A registered node (`…/DataNodes/Node-<id>`, or a PD under `PDInfo`)."""

    id: str
    reg_id: int = 0
    node_ip: str = ""
    hostname: str = ""
    redis_port: str = ""
    http_port: str = ""
    rpc_port: str = ""
    raft_transport_addr: str = ""
    version: str = ""
    # Values are `true` for plain labels and a string for `dc_info`.
    tags: Mapping[str, Any] = field(default_factory=dict)
    data_root: str = ""
    rsync_module: str = ""
    learner_role: str = ""
    epoch: int = 0

    @property
    def dc(self) -> str:
        value = self.tags.get(DC_TAG, "")
        return value if isinstance(value, str) else ""

    @property
    def is_learner(self) -> bool:
        return bool(self.learner_role)

    def to_dict(self) -> dict[str, Any]:
        return {
            "RegID": self.reg_id, "ID": self.id, "NodeIP": self.node_ip,
            "Hostname": self.hostname, "RedisPort": self.redis_port,
            "HttpPort": self.http_port, "RpcPort": self.rpc_port,
            "RaftTransportAddr": self.raft_transport_addr, "Version": self.version,
            "Tags": dict(self.tags), "DataRoot": self.data_root,
            "RsyncModule": self.rsync_module, "LearnerRole": self.learner_role,
        }

    def to_json(self) -> str:
        return _dump(self.to_dict())

    @classmethod
    def from_json(cls, text, epoch: int = 0) -> "NodeInfo":
        d = _load(text)
        return cls(
            id=str(d.get("ID") or ""), reg_id=int(d.get("RegID") or 0),
            node_ip=str(d.get("NodeIP") or ""), hostname=str(d.get("Hostname") or ""),
            redis_port=str(d.get("RedisPort") or ""), http_port=str(d.get("HttpPort") or ""),
            rpc_port=str(d.get("RpcPort") or ""),
            raft_transport_addr=str(d.get("RaftTransportAddr") or ""),
            version=str(d.get("Version") or ""), tags=_map(d.get("Tags")),
            data_root=str(d.get("DataRoot") or ""), rsync_module=str(d.get("RsyncModule") or ""),
            learner_role=str(d.get("LearnerRole") or ""), epoch=epoch)


# --- cluster-wide counters ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClusterMeta:
    """`…/ClusterMeta`: the raft group id and node registration id high-water marks."""

    max_gid: int = 0
    max_reg_id: int = 0
    epoch: int = 0

    def to_json(self) -> str:
        return _dump({"MaxGID": self.max_gid, "MaxRegID": self.max_reg_id})

    @classmethod
    def from_json(cls, text, epoch: int = 0) -> "ClusterMeta":
        d = _load(text)
        return cls(int(d.get("MaxGID") or 0), int(d.get("MaxRegID") or 0), epoch)

    def reserve_gids(self) -> "ClusterMeta":
        """The meta after reserving a namespace's block; its `max_gid` is the new MinGID."""
        return replace(self, max_gid=self.max_gid + GID_BLOCK)

    def next_reg_id(self) -> "ClusterMeta":
        return replace(self, max_reg_id=self.max_reg_id + 1)


# --- namespaces -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NamespaceMeta:
    """`…/Namespaces/<ns>/NamespaceMeta`."""

    partition_num: int
    replica: int
    magic_code: int = 0
    min_gid: int = 0
    engine_type: str = ""
    optimized_fsync: bool = False
    snap_count: int = 0
    tags: Mapping[str, Any] = field(default_factory=dict)
    expiration_policy: str = ""
    data_version: str = ""
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "PartitionNum": self.partition_num, "Replica": self.replica,
            "MagicCode": self.magic_code, "MinGID": self.min_gid, "EngType": self.engine_type,
            "OptimizedFsync": self.optimized_fsync, "SnapCount": self.snap_count,
            "Tags": dict(self.tags), "ExpirationPolicy": self.expiration_policy,
            "DataVersion": self.data_version,
        }

    def to_json(self) -> str:
        return _dump(self.to_dict())

    @classmethod
    def from_json(cls, text, epoch: int = 0) -> "NamespaceMeta":
        d = _load(text)
        return cls(
            partition_num=int(d.get("PartitionNum") or 0), replica=int(d.get("Replica") or 0),
            magic_code=int(d.get("MagicCode") or 0), min_gid=int(d.get("MinGID") or 0),
            engine_type=str(d.get("EngType") or ""),
            optimized_fsync=bool(d.get("OptimizedFsync")),
            snap_count=int(d.get("SnapCount") or 0), tags=_map(d.get("Tags")),
            expiration_policy=str(d.get("ExpirationPolicy") or ""),
            data_version=str(d.get("DataVersion") or ""), epoch=epoch)

    def group_id(self, pid: int) -> int:
        """The raft group id of partition `pid` (unique across namespaces and re-creations)."""
        return self.min_gid + pid


@dataclass(frozen=True, slots=True)
class RemovingInfo:
    """A replica on its way out: `RemoveTime` is Unix nanoseconds, as ZanRedisDB writes it."""

    remove_time: int
    remove_replica_id: int

    def to_dict(self) -> dict[str, int]:
        return {"RemoveTime": self.remove_time, "RemoveReplicaID": self.remove_replica_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RemovingInfo":
        return cls(int(d.get("RemoveTime") or 0), int(d.get("RemoveReplicaID") or 0))


@dataclass(frozen=True, slots=True)
class PartitionReplicaInfo:
    """`…/Namespaces/<ns>/<pid>/ReplicaInfo`.

    `raft_nodes[0]` is the desired leader.  The ISR (in-sync replicas) is `raft_nodes`
    minus the nodes in `removings`.
    """

    raft_nodes: tuple[str, ...] = ()
    raft_ids: Mapping[str, int] = field(default_factory=dict)
    removings: Mapping[str, RemovingInfo] = field(default_factory=dict)
    max_raft_id: int = 0
    learner_nodes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    epoch: int = 0

    @classmethod
    def initial(cls, nodes) -> "PartitionReplicaInfo":
        """A new partition's record: replica ids 1..n in list order."""
        nodes = tuple(nodes)
        return cls(nodes, {n: i + 1 for i, n in enumerate(nodes)}, {}, len(nodes))

    @property
    def isr(self) -> tuple[str, ...]:
        if not self.removings:
            return self.raft_nodes
        return tuple(n for n in self.raft_nodes if n not in self.removings)

    @property
    def desired_leader(self) -> str:
        isr = self.isr
        return isr[0] if isr else ""

    def with_added(self, node: str, replica_id: int | None = None) -> "PartitionReplicaInfo":
        """Append `node` as a new replica (no-op when already a member)."""
        if node in self.raft_nodes:
            return self
        rid = self.max_raft_id + 1 if replica_id is None else replica_id
        ids = dict(self.raft_ids)
        ids[node] = rid
        return replace(self, raft_nodes=self.raft_nodes + (node,), raft_ids=ids,
                       max_raft_id=max(self.max_raft_id, rid))

    def with_removing(self, node: str, now_ns: int) -> "PartitionReplicaInfo":
        """Mark `node` Removing (no-op when absent or already marked)."""
        if node not in self.raft_nodes or node in self.removings:
            return self
        rem = dict(self.removings)
        rem[node] = RemovingInfo(now_ns, self.raft_ids.get(node, 0))
        return replace(self, removings=rem)

    def without(self, node: str) -> "PartitionReplicaInfo":
        """Forget `node` entirely: from RaftNodes, RaftIDs and Removings."""
        if node not in self.raft_nodes and node not in self.removings and node not in self.raft_ids:
            return self
        ids = {k: v for k, v in self.raft_ids.items() if k != node}
        rem = {k: v for k, v in self.removings.items() if k != node}
        return replace(self, raft_nodes=tuple(n for n in self.raft_nodes if n != node),
                       raft_ids=ids, removings=rem)

    def with_leader(self, node: str) -> "PartitionReplicaInfo":
        """Swap `node` into slot 0 (the others keep their slots, as ZanRedisDB does)."""
        nodes = list(self.raft_nodes)
        if node not in nodes or nodes[0] == node:
            return self
        i = nodes.index(node)
        nodes[0], nodes[i] = nodes[i], nodes[0]
        return replace(self, raft_nodes=tuple(nodes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "RaftNodes": list(self.raft_nodes),
            "RaftIDs": dict(self.raft_ids),
            "Removings": {k: v.to_dict() for k, v in self.removings.items()},
            "MaxRaftID": self.max_raft_id,
            "LearnerNodes": {k: list(v) for k, v in self.learner_nodes.items()},
        }

    def to_json(self) -> str:
        return _dump(self.to_dict())

    @classmethod
    def from_json(cls, text, epoch: int = 0) -> "PartitionReplicaInfo":
        d = _load(text)
        return cls(
            raft_nodes=tuple(d.get("RaftNodes") or ()),
            raft_ids={str(k): int(v) for k, v in _map(d.get("RaftIDs")).items()},
            removings={str(k): RemovingInfo.from_dict(v or {})
                       for k, v in _map(d.get("Removings")).items()},
            max_raft_id=int(d.get("MaxRaftID") or 0),
            learner_nodes={str(k): tuple(v or ()) for k, v in _map(d.get("LearnerNodes")).items()},
            epoch=epoch)


@dataclass(frozen=True, slots=True)
class RealLeader:
    """`…/Namespaces/<ns>/<pid>/RealLeader`, published by the raft leader."""

    leader: str = ""
    epoch: int = 0

    def to_json(self) -> str:
        return _dump({"Leader": self.leader})

    @classmethod
    def from_json(cls, text, epoch: int = 0) -> "RealLeader":
        return cls(str(_load(text).get("Leader") or ""), epoch)


# --- data node removal ----------------------------------------------------------------

class RemovalState(str, enum.Enum):
    """Progress of an operator's node removal, in ZanRedisDB's words.

    Unlike ZanRedisDB, Zan persists it (see `encode_removals`), so a PD failover does not
    forget a removal in flight.
    """

    MARKED = "marked"
    PENDING = "pending"
    DATA_TRANSFERRED = "data_transferred"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


def encode_removals(removals: Mapping[str, RemovalState]) -> str:
    """`{node_id: state}` as one JSON object (one etcd key for the whole map)."""
    return _dump({k: RemovalState(v).value for k, v in sorted(removals.items())})


def decode_removals(text) -> dict[str, RemovalState]:
    d = _load(text)
    try:
        return {str(k): RemovalState(v) for k, v in d.items()}
    except ValueError as e:
        raise StorageError(f"invalid node removal record: {e}") from None
