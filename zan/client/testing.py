"""An in-memory placement driver for client tests: PD's `/query/<ns>` as a twisted.web resource.

Serve it through `treq.testing.StubTreq(FakePD())` in unit tests, or on a real `Site` for a
client in another process.  Each change of a namespace's map raises its epoch, and a query
carrying the current epoch gets 304, as from PD.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterable

from twisted.web.resource import Resource

from zan.client.pd import DataNode, PartitionInfo, PartitionMap

__all__ = ["FakePD", "make_node", "uniform_map"]


def make_node(host: str, redis_port: int, node_id: str | None = None) -> DataNode:
    return DataNode(node_id=node_id or f"0:{host}::{redis_port}:0:datanode",
                    broadcast_address=host, redis_port=redis_port)


def uniform_map(namespace: str, partition_num: int, leaders: Iterable[DataNode] | DataNode,
                epoch: int = 1) -> PartitionMap:
    """A map whose partition `pid` is led by `leaders[pid % len(leaders)]`, every leader also
    being a replica of every partition."""
    nodes = [leaders] if isinstance(leaders, DataNode) else list(leaders)
    parts = tuple(PartitionInfo(nodes[pid % len(nodes)], tuple(nodes)) for pid in range(partition_num))
    return PartitionMap(namespace=namespace, epoch=epoch, partition_num=partition_num,
                        partitions=parts, replicator=len(nodes))


class FakePD(Resource):
    """PD's lookup route.  `available = False` makes it answer 503 (a PD in trouble);
    `requests` records every path and query string served."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.maps: dict[str, PartitionMap] = {}
        self.available = True
        self.requests: list[str] = []

    def publish(self, pmap: PartitionMap) -> PartitionMap:
        self.maps[pmap.namespace] = pmap
        return pmap

    def set_leader(self, namespace: str, pid: int, leader: DataNode | None) -> PartitionMap:
        """Move one partition's leadership; the map's epoch goes up by one."""
        pmap = self.maps[namespace]
        parts = list(pmap.partitions)
        replicas = parts[pid].replicas
        if leader is not None and leader not in replicas:
            replicas = replicas + (leader,)
        parts[pid] = PartitionInfo(leader, replicas)
        return self.publish(replace(pmap, partitions=tuple(parts), epoch=pmap.epoch + 1))

    def render_GET(self, request) -> bytes:
        self.requests.append(request.uri.decode("utf-8", "replace"))
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        if not self.available:
            request.setResponseCode(503)
            return b'{"message":"service unavailable"}'
        parts = request.path.decode("utf-8").strip("/").split("/")
        if len(parts) != 2 or parts[0] != "query":
            request.setResponseCode(404)
            return b'{"message":"not found"}'
        pmap = self.maps.get(parts[1])
        if pmap is None:
            request.setResponseCode(404)
            return b'{"message":"NAMESPACE not found"}'
        epoch = request.args.get(b"epoch")
        if epoch and epoch[0].isdigit() and int(epoch[0]) == pmap.epoch:
            request.setResponseCode(304)
            return b""
        return json.dumps(pmap.to_json()).encode("utf-8")
