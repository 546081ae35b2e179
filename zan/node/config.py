"""Data node configuration: ZanRedisDB's ``{"server_conf": {...}}`` JSON, validated.

Every key has its default here, next to its meaning; `conf/node.example.json` shows them
all.  An unknown key, a value of the wrong type or an out-of-range value fails at start
with a `ConfigError` naming the key.  Command-line options override the file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from zan.errors import ConfigError
from zan.raft.transport import DEFAULT_MAX_FRAME

__all__ = ["ClusterNode", "NamespaceConfig", "NodeConfig", "load_config", "build_config", "parse_host_port", "NAME_RE"]

NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")

_POLICIES = ("wait_compact", "local_deletion")


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    name: str
    partition_num: int = 8
    replicator: int = 1
    # Raft log compaction: snapshot every snap_count applied entries, keeping snap_catchup
    # entries for slow followers (ZanRedisDB default.conf values).
    snap_count: int = 100000
    snap_catchup: int = 50000
    expiration_policy: str = "wait_compact"
    # Accepted for compatibility with ZanRedisDB namespace files; Zan has one engine.
    eng_type: str = "leveldb"
    data_version: str = "value_header_v1"
    optimized_fsync: bool = False

    def validate(self, where: str) -> None:
        if not NAME_RE.match(self.name):
            raise ConfigError(f"{where}.name: invalid namespace name {self.name!r} "
                              "(letters, digits and _ only, 1..255)")
        if not 1 <= self.partition_num <= 1024:
            raise ConfigError(f"{where}.partition_num: must be in 1..1024, got {self.partition_num}")
        if not 1 <= self.replicator <= 9:
            raise ConfigError(f"{where}.replicator: must be in 1..9, got {self.replicator}")
        if self.snap_count < 1 or self.snap_catchup < 0:
            raise ConfigError(f"{where}.snap_count/snap_catchup: must be positive")
        if self.expiration_policy not in _POLICIES:
            raise ConfigError(f"{where}.expiration_policy: must be one of {', '.join(_POLICIES)}, "
                              f"got {self.expiration_policy!r}")


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """A member of a static cluster and where to reach it."""

    node_id: int
    raft_addr: str            # host:port of its Raft transport
    redis_addr: str           # host:port of its RESP listener (forwarding)
    http_addr: str            # host:port of its HTTP API (snapshots, admin)

    def address(self, which: str) -> tuple[str, int]:
        return parse_host_port(f"cluster_nodes[{self.node_id}].{which}", getattr(self, which))


def _default_namespaces() -> tuple[NamespaceConfig, ...]:
    return (NamespaceConfig(name="default"),)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    # -- identity and cluster (ZanRedisDB keys) --
    cluster_id: str = "zan-standalone"
    etcd_cluster_addresses: str = ""          # empty: standalone, namespaces below
    broadcast_interface: str = ""
    broadcast_addr: str = "127.0.0.1"
    tags: dict = field(default_factory=dict)
    # -- listeners --
    redis_api_port: int = 12381
    http_api_port: int = 12380
    grpc_api_port: int = 12382                # accepted; Zan has no gRPC listener
    local_raft_addr: str = "http://127.0.0.1:12379"
    redis_api_host: str = "127.0.0.1"         # Zan: interface the RESP listener binds
    http_api_host: str = "127.0.0.1"          # Zan: interface the HTTP listener binds
    profile_port: int = 0                     # accepted; no pprof in Zan
    metric_addr: str = ""                     # accepted; metrics are on the HTTP port
    # -- storage --
    data_dir: str = "./zan-data"
    log_dir: str = ""
    row_cache_mb: int = 4                     # Zan: per partition, recent point reads (0: off)
    # -- raft --
    tick_ms: int = 200
    election_tick: int = 30
    default_snap_count: int = 100000
    default_snap_catchup: int = 50000
    keep_wal: int = 20
    keep_backup: int = 10
    proposal_timeout_ms: int = 4000           # ZanRedisDB's proposeTimeout
    commit_batch_us: int = 500               # Zan: writes gathered per sync (0: one turn)
    max_entry_bytes: int = 32 << 20           # Zan: largest replicated write (one Raft entry)
    # -- redis front end (Zan) --
    default_namespace: str = "default"        # compat mode: keys without a known namespace
    requirepass: str = ""
    max_clients: int = 10000
    proto_max_bulk_len: int = 16 << 20        # values are capped at 8 MiB anyway
    idle_timeout_s: int = 0                   # 0: never (Redis); ZanRedisDB closes after 300
    max_batch_elements: int = 0               # ZanRedisDB's 5000-element read limit (0: off)
    # -- TTL sweep --
    sweep_interval_ms: int = 1000
    sweep_batch: int = 1024
    expire_grace_ms: int = 0                  # standalone: purge as soon as expired
    # -- static cluster (Zan): every node of the cluster, with this node's id.  Empty: a
    # standalone node (one replica per partition, no Raft traffic).
    node_id: int = 0
    cluster_nodes: tuple[ClusterNode, ...] = ()
    read_mode: str = "lease"                  # lease (CheckQuorum-guarded) | read_index
    allow_forwarding: bool = True             # false: ERR_CLUSTER_CHANGED, as ZanRedisDB
    stale_read: bool = False                  # serve reads on followers (POST /staleread)
    # -- etcd mode (Zan): the coordinator's timers.  ZanRedisDB: TTL 30 s refreshed every
    # 3 s; a leader hands leadership to RaftNodes[0] at most once a minute per group.
    etcd_node_ttl: int = 30
    coordinator_interval_ms: int = 1000       # reconcile + leader duties (also on changes)
    leader_change_wait_ms: int = 60000        # since the last election, before a transfer
    leader_transfer_lag: int = 64             # how far behind the target may be
    # -- namespaces (standalone / static mode) --
    namespaces: tuple[NamespaceConfig, ...] = field(default_factory=_default_namespaces)

    @property
    def replicated(self) -> bool:
        return bool(self.cluster_nodes)

    def cluster_node(self, node_id: int) -> "ClusterNode | None":
        for n in self.cluster_nodes:
            if n.node_id == node_id:
                return n
        return None

    def namespace(self, name: str) -> NamespaceConfig | None:
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        return None

    @property
    def row_cache_bytes(self) -> int:
        return self.row_cache_mb << 20

    @property
    def standalone(self) -> bool:
        return not self.etcd_cluster_addresses

    @property
    def etcd_mode(self) -> bool:
        return bool(self.etcd_cluster_addresses)

    @property
    def etcd_endpoints(self) -> list[str]:
        return [e.strip() for e in self.etcd_cluster_addresses.split(",") if e.strip()]

    @property
    def raft_listen_address(self) -> tuple[str, int]:
        """(host, port) of `local_raft_addr` (``http://host:port`` or ``host:port``)."""
        return parse_host_port("local_raft_addr", self.local_raft_addr.split("://", 1)[-1])


# A Raft message carries at least one whole entry, and a frame of the transport holds a
# message: an entry must leave room in a frame for its message's other entries' headers.
MAX_ENTRY_BYTES = DEFAULT_MAX_FRAME // 2

_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(NodeConfig)}
_NODE_FIELDS = {f.name for f in dataclasses.fields(ClusterNode)}
_NS_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(NamespaceConfig)}


def _coerce(key: str, value: Any, type_: str) -> Any:
    expected = {"int": int, "str": str, "bool": bool, "dict": dict}.get(type_)
    if expected is None:
        return value
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if expected is int and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {type_}, got {type(value).__name__} {value!r}")
    return value


def _namespace(i: int, raw: Any) -> NamespaceConfig:
    where = f"namespaces[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    values = {}
    for key, value in raw.items():
        if key in ("local_replica_id", "base_name", "raft_group_conf"):
            continue  # static cluster fields, read by the replicated node
        if key not in _NS_FIELD_TYPES:
            raise ConfigError(f"{where}.{key}: unknown namespace key")
        values[key] = _coerce(f"{where}.{key}", value, _NS_FIELD_TYPES[key])
    if "name" not in values:
        raise ConfigError(f"{where}.name: missing")
    ns = NamespaceConfig(**values)
    ns.validate(where)
    return ns


def _cluster_node(i: int, raw: Any) -> ClusterNode:
    where = f"cluster_nodes[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    for key in raw:
        if key not in _NODE_FIELDS:
            raise ConfigError(f"{where}.{key}: unknown cluster node key")
    for key in _NODE_FIELDS:
        if key not in raw:
            raise ConfigError(f"{where}.{key}: missing")
    node = ClusterNode(node_id=_coerce(f"{where}.node_id", raw["node_id"], "int"),
                       **{k: _coerce(f"{where}.{k}", raw[k], "str")
                          for k in ("raft_addr", "redis_addr", "http_addr")})
    if node.node_id < 1:
        raise ConfigError(f"{where}.node_id: must be positive")
    for which in ("raft_addr", "redis_addr", "http_addr"):
        parse_host_port(f"{where}.{which}", getattr(node, which))
    return node


def build_config(server_conf: dict, overrides: dict | None = None) -> NodeConfig:
    values: dict[str, Any] = {}
    merged = dict(server_conf)
    merged.update(overrides or {})
    for key, value in merged.items():
        if key not in _FIELD_TYPES:
            raise ConfigError(f"{key}: unknown configuration key")
        if key == "namespaces":
            if merged.get("etcd_cluster_addresses"):
                raise ConfigError("namespaces: in etcd mode namespaces come from the placement "
                                  "driver (create them with its /cluster/namespace/create)")
            if not isinstance(value, list):
                raise ConfigError("namespaces: expected a list")
            values[key] = tuple(_namespace(i, ns) for i, ns in enumerate(value))
        elif key == "cluster_nodes":
            if not isinstance(value, list):
                raise ConfigError("cluster_nodes: expected a list")
            values[key] = tuple(_cluster_node(i, n) for i, n in enumerate(value))
        else:
            values[key] = _coerce(key, value, _FIELD_TYPES[key])
    config = NodeConfig(**values)
    _validate(config)
    return config


def _validate(c: NodeConfig) -> None:
    for key in ("redis_api_port", "http_api_port"):
        port = getattr(c, key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: not a TCP port: {port}")
    for key in ("tick_ms", "election_tick", "proposal_timeout_ms", "max_clients",
                "proto_max_bulk_len", "sweep_interval_ms", "sweep_batch"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{key}: must be positive, got {getattr(c, key)}")
    if c.commit_batch_us < 0 or c.commit_batch_us > 100_000:
        raise ConfigError(f"commit_batch_us: must be 0..100000, got {c.commit_batch_us}")
    if not 1 << 20 <= c.max_entry_bytes <= MAX_ENTRY_BYTES:
        raise ConfigError(f"max_entry_bytes: must be {1 << 20}..{MAX_ENTRY_BYTES} (half the "
                          f"Raft transport's frame limit), got {c.max_entry_bytes}")
    if not 0 <= c.row_cache_mb <= 4096:
        raise ConfigError(f"row_cache_mb: must be 0..4096, got {c.row_cache_mb}")
    if c.idle_timeout_s < 0 or c.expire_grace_ms < 0:
        raise ConfigError("idle_timeout_s/expire_grace_ms: must not be negative")
    if c.max_batch_elements < 0:
        raise ConfigError(f"max_batch_elements: must not be negative, got {c.max_batch_elements}")
    if not c.data_dir:
        raise ConfigError("data_dir: must not be empty")
    names = [ns.name for ns in c.namespaces]
    if len(set(names)) != len(names):
        raise ConfigError("namespaces: a namespace name appears twice")
    if c.read_mode not in ("lease", "read_index"):
        raise ConfigError(f"read_mode: must be lease or read_index, got {c.read_mode!r}")
    if c.cluster_nodes:
        ids = [n.node_id for n in c.cluster_nodes]
        if len(set(ids)) != len(ids):
            raise ConfigError("cluster_nodes: a node_id appears twice")
        if c.node_id not in ids:
            raise ConfigError(f"node_id: {c.node_id} is not one of cluster_nodes")
        for ns in c.namespaces:
            if ns.replicator > len(ids):
                raise ConfigError(f"namespaces.{ns.name}.replicator: {ns.replicator} replicas "
                                  f"need as many cluster_nodes, there are {len(ids)}")
    elif c.node_id:
        raise ConfigError("node_id: set without cluster_nodes")
    if c.etcd_mode:
        if c.cluster_nodes:
            raise ConfigError("cluster_nodes: a static cluster cannot also use etcd "
                              "(etcd_cluster_addresses is set)")
        c.raft_listen_address  # noqa: B018 - validates local_raft_addr
        if not c.cluster_id:
            raise ConfigError("cluster_id: required with etcd_cluster_addresses")
    for key in ("etcd_node_ttl", "coordinator_interval_ms"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{key}: must be positive, got {getattr(c, key)}")
    for key in ("leader_change_wait_ms", "leader_transfer_lag"):
        if getattr(c, key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {getattr(c, key)}")
    if c.default_namespace and c.standalone and c.default_namespace not in names:
        raise ConfigError(f"default_namespace: {c.default_namespace!r} is not a configured namespace")


def load_config(path: str | None, overrides: dict | None = None) -> NodeConfig:
    """Read a ZanRedisDB-shaped JSON file (or nothing: all defaults), apply overrides."""
    server_conf: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or set(doc) - {"server_conf"}:
            extra = sorted(set(doc) - {"server_conf"}) if isinstance(doc, dict) else []
            raise ConfigError(f"{extra[0] if extra else 'top level'}: the file must be "
                              '{"server_conf": {...}}')
        server_conf = doc.get("server_conf", {})
        if not isinstance(server_conf, dict):
            raise ConfigError("server_conf: expected an object")
    return build_config(server_conf, overrides)


def parse_host_port(option: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{option}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
