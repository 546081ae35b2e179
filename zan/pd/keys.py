"""The etcd paths of a cluster, one function per record (ZanRedisDB's layout).

Everything lives under ``/ZanRedisDBMetaData/<cluster_id>``, so a Zan PD and a ZanRedisDB
placedriver read the same tree.  `removing_nodes` is Zan's own key: the operator's node
removals in progress, which ZanRedisDB kept only in the PD leader's memory.
"""

from __future__ import annotations

__all__ = [
    "ROOT", "cluster_root", "cluster_meta", "pd_info_dir", "pd_nodes_dir", "pd_node",
    "pd_leader_session", "removing_nodes", "data_nodes_dir", "data_node", "namespaces_dir",
    "namespace_dir", "namespace_meta", "partition_dir", "replica_info", "real_leader",
    "namespace_schema", "data_kv", "NODE_PREFIX",
]

ROOT = "/ZanRedisDBMetaData"
# Node keys are `Node-<node id>` under DataNodes and PDNodes.
NODE_PREFIX = "Node-"


def cluster_root(cluster_id: str) -> str:
    return f"{ROOT}/{cluster_id}"


def cluster_meta(cluster_id: str) -> str:
    return f"{cluster_root(cluster_id)}/ClusterMeta"


def pd_info_dir(cluster_id: str) -> str:
    return f"{cluster_root(cluster_id)}/PDInfo"


def pd_nodes_dir(cluster_id: str) -> str:
    return f"{pd_info_dir(cluster_id)}/PDNodes"


def pd_node(cluster_id: str, pd_id: str) -> str:
    return f"{pd_nodes_dir(cluster_id)}/{NODE_PREFIX}{pd_id}"


def pd_leader_session(cluster_id: str) -> str:
    return f"{pd_info_dir(cluster_id)}/PDLeaderSession"


def removing_nodes(cluster_id: str) -> str:
    """Zan only: `{node_id: "marked"|"pending"|"data_transferred"|"done"}` as one JSON
    object, so a new PD leader continues a removal where the old one stopped."""
    return f"{pd_info_dir(cluster_id)}/RemovingNodes"


def data_nodes_dir(cluster_id: str) -> str:
    return f"{cluster_root(cluster_id)}/DataNodes"


def data_node(cluster_id: str, node_id: str) -> str:
    return f"{data_nodes_dir(cluster_id)}/{NODE_PREFIX}{node_id}"


def namespaces_dir(cluster_id: str) -> str:
    return f"{cluster_root(cluster_id)}/Namespaces"


def namespace_dir(cluster_id: str, ns: str) -> str:
    return f"{namespaces_dir(cluster_id)}/{ns}"


def namespace_meta(cluster_id: str, ns: str) -> str:
    return f"{namespace_dir(cluster_id, ns)}/NamespaceMeta"


def partition_dir(cluster_id: str, ns: str, pid: int) -> str:
    return f"{namespace_dir(cluster_id, ns)}/{int(pid)}"


def replica_info(cluster_id: str, ns: str, pid: int) -> str:
    return f"{partition_dir(cluster_id, ns, pid)}/ReplicaInfo"


def real_leader(cluster_id: str, ns: str, pid: int) -> str:
    return f"{partition_dir(cluster_id, ns, pid)}/RealLeader"


def namespace_schema(cluster_id: str, ns: str, table: str) -> str:
    return f"{namespace_dir(cluster_id, ns)}/NamespaceSchema/{table}"


def data_kv(cluster_id: str, key: str) -> str:
    return f"{cluster_root(cluster_id)}/DataKV/{key}"
