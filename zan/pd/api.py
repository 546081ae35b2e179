"""The PD's HTTP API (Klein): placedriver's routes, parameters, status codes and JSON.

Errors are answered in one place (`_error`): a `ZanError` becomes ``{"message": ...}``
with its `http_status`.  Routes that need the leader answer a follower the way
placedriver does: 400 ``E_FAILED_ON_NOT_LEADER`` (stats, balance, namespace create and
meta update) or 500 ``Not leader`` (node and replica removal, upgrade, delete).

Namespace creation defaults follow placedriver's code (not its docs): data version
``value_header_v1`` with expiration policy ``wait_compact``.
"""

from __future__ import annotations

import json
import re

from klein import Klein
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.logger import Logger

from zan import __version__
from zan.errors import BadRequest, NotFound, ZanError
from zan.etcd.errors import EtcdError
from zan.pd.config import LOG_LEVELS
from zan.pd.coordinator import NotPDLeader, PDCoordinator
from zan.pd.model import NamespaceMeta, NodeInfo, parse_node_id
from zan.pd.placement import NotEnoughNodes

__all__ = ["PDHTTPAPI", "MAX_PARTITION_NUM", "MAX_REPLICATOR"]

NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")
MAX_PARTITION_NUM = 1024     # exclusive: 1..1023
MAX_REPLICATOR = 5
_DATA_VERSIONS = ("value_header_v1", "default")
_POLICIES = ("local_deletion", "wait_compact")

_NOT_LEADER_400 = "E_FAILED_ON_NOT_LEADER"


class _Failed(ZanError):
    """A request placedriver answers with a plain 500 (not enough nodes, etcd failures)."""

    http_status = 500


def _json(request, value, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(value).encode()


def _arg(request, name: str) -> str:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else ""


def _node_json(node_id: str, info: NodeInfo | None) -> dict:
    """A node as `/datanodes` and `/query` show it; a node that is not registered now is
    described from its id, as placedriver does for lost replicas."""
    if info is not None:
        return {"node_id": info.id, "broadcast_address": info.node_ip,
                "hostname": info.hostname, "redis_port": info.redis_port,
                "http_port": info.http_port, "grpc_port": info.rpc_port,
                "version": info.version, "dc_info": info.dc}
    try:
        _, ip, rpc, redis_port, http_port, _ = parse_node_id(node_id)
    except ValueError:
        ip = rpc = redis_port = http_port = ""
    return {"node_id": node_id, "broadcast_address": ip, "hostname": "",
            "redis_port": redis_port, "http_port": http_port, "grpc_port": rpc,
            "version": "", "dc_info": ""}


class _PDCollector:
    def __init__(self, coord: PDCoordinator):
        self._coord = coord

    def collect(self):
        c = self._coord
        yield GaugeMetricFamily("zan_pd_is_leader", "1 on the PD leader", value=int(c.is_leader))
        yield GaugeMetricFamily("zan_pd_data_nodes", "Registered data nodes",
                                value=len(c.view.data_nodes))
        yield GaugeMetricFamily("zan_pd_namespaces", "Namespaces",
                                value=len(c.view.namespaces))
        yield GaugeMetricFamily("zan_pd_epoch", "etcd index of the last namespace scan",
                                value=c.view.epoch)
        yield GaugeMetricFamily("zan_pd_stable_node_num", "Stable node count",
                                value=c.stable_node_num)
        yield CounterMetricFamily("zan_pd_checks", "Namespace checks run", value=c.checks_run)
        yield CounterMetricFamily("zan_pd_steps_applied", "Placement steps written",
                                  value=c.steps_applied)


class PDHTTPAPI:
    app = Klein()
    _log = Logger()

    def __init__(self, coordinator: PDCoordinator):
        self.coord = coordinator
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_PDCollector(coordinator))

    def resource(self):
        return self.app.resource()

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        err = failure.value
        if isinstance(err, NotEnoughNodes):
            return _json(request, {"message": str(err)}, 500)
        if isinstance(err, ZanError):
            return _json(request, {"message": str(err)}, err.http_status)
        self._log.failure("HTTP {method} {uri}", failure, method=request.method,
                          uri=request.uri)
        return _json(request, {"message": "internal error"}, 500)

    def _leader(self, not_leader_400: bool = False) -> None:
        if not self.coord.is_leader:
            raise _NotLeader400() if not_leader_400 else NotPDLeader()

    # --- lookups (any PD) -----------------------------------------------------------

    @app.route("/ping", methods=["GET"])
    def ping(self, request):
        return b"OK"

    @app.route("/info", methods=["GET"])
    def info(self, request):
        return _json(request, {"version": __version__})

    @app.route("/namespaces", methods=["GET"])
    def namespaces(self, request):
        names = sorted(n for n, rec in self.coord.view.namespaces.items() if rec.meta)
        return _json(request, {"namespaces": names})

    @app.route("/datanodes", methods=["GET"])
    def datanodes(self, request):
        nodes = [_node_json(n, info) for n, info in sorted(self.coord.view.data_nodes.items())
                 if not info.is_learner]
        return _json(request, {"nodes": nodes})

    @app.route("/listpd", methods=["GET"])
    async def listpd(self, request):
        try:
            pds = await self.coord.register.read_pd_nodes()
            leader = await self.coord.register.read_pd_leader()
        except EtcdError as e:
            raise _Failed(str(e)) from None
        return _json(request, {
            "pdnodes": [p.to_dict() for p in pds if not p.is_learner],
            "pdleader": leader.to_dict() if leader is not None else {}})

    @app.route("/query/<string:namespace>", methods=["GET"])
    async def query(self, request, namespace):
        if _arg(request, "disable_cache") == "true":
            try:
                await self.coord.rescan_namespaces()
            except EtcdError as e:
                raise _Failed(str(e)) from None
        view = self.coord.view
        rec = view.namespaces.get(namespace)
        if rec is None or rec.meta is None:
            raise NotFound("NAMESPACE not found")
        epoch = _arg(request, "epoch")
        if epoch and epoch == str(view.epoch):
            request.setResponseCode(304)
            return b""
        meta = rec.meta
        nodes = view.data_nodes
        partitions = {}
        for pid in range(meta.partition_num):
            info = rec.partitions.get(pid)
            if info is None:
                continue
            leader = rec.leaders.get(pid)
            # Until the raft leader has reported itself, the desired leader stands in.
            leader_id = leader.leader if leader is not None and leader.leader else info.desired_leader
            partitions[str(pid)] = {
                "leader": _node_json(leader_id, nodes.get(leader_id)) if leader_id else {},
                "replicas": [_node_json(n, nodes.get(n)) for n in info.raft_nodes],
            }
        return _json(request, {
            "epoch": view.epoch, "partition_num": meta.partition_num,
            "replicator": meta.replica, "expire_policy": meta.expiration_policy,
            "fsync_optimized": meta.optimized_fsync, "eng_type": meta.engine_type,
            "partitions": partitions})

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)

    # --- cluster management (leader) ---------------------------------------------------

    @app.route("/cluster/stats", methods=["GET"])
    def cluster_stats(self, request):
        self._leader(not_leader_400=True)
        return _json(request, self.coord.stats())

    @app.route("/cluster/balance", methods=["POST"])
    def cluster_balance(self, request):
        self._leader(not_leader_400=True)
        enable = _arg(request, "enable")
        if enable not in ("true", "false"):
            raise BadRequest("INVALID_ARG_ENABLE")
        self.coord.auto_balance = enable == "true"
        if self.coord.auto_balance:
            self.coord.trigger_check()
        return b""

    @app.route("/cluster/namespace/create", methods=["POST"])
    async def namespace_create(self, request):
        self._leader(not_leader_400=True)
        ns = _arg(request, "namespace")
        if not ns:
            raise BadRequest("MISSING_ARG_NAMESPACE")
        if not NAME_RE.match(ns):
            raise BadRequest("INVALID_ARG_NAMESPACE")
        engtype = _arg(request, "engtype") or "rockredis"
        pnum = _arg(request, "partition_num")
        if not pnum:
            raise BadRequest("MISSING_ARG_NAMESPACE_PARTITION_NUM")
        if not pnum.isdigit() or not 1 <= int(pnum) < MAX_PARTITION_NUM:
            raise BadRequest("INVALID_ARG_NAMESPACE_PARTITION_NUM")
        replicator = _arg(request, "replicator")
        if not replicator:
            raise BadRequest("MISSING_ARG_NAMESPACE_REPLICATOR")
        if not replicator.isdigit() or not 1 <= int(replicator) <= MAX_REPLICATOR:
            raise BadRequest("INVALID_ARG_NAMESPACE_REPLICATOR")
        data_version = _arg(request, "data_version") or "value_header_v1"
        if data_version not in _DATA_VERSIONS:
            raise BadRequest("INVALID_ARG_DATA_VERSION")
        policy = _arg(request, "expiration_policy") or (
            "wait_compact" if data_version == "value_header_v1" else "local_deletion")
        if policy not in _POLICIES or (policy == "wait_compact"
                                       and data_version != "value_header_v1"):
            raise BadRequest("INVALID_ARG_EXPIRATION_POLICY")
        tags = {t.strip(): True for t in _arg(request, "tags").split(",") if t.strip()}
        meta = NamespaceMeta(
            partition_num=int(pnum), replica=int(replicator), engine_type=engtype,
            optimized_fsync=_arg(request, "optimizedfsync") != "false", tags=tags,
            expiration_policy=policy, data_version=data_version)
        try:
            await self.coord.create_namespace(ns, meta)
        except NotPDLeader:
            raise _NotLeader400() from None
        except EtcdError as e:
            raise _Failed(str(e)) from None
        return b""

    @app.route("/cluster/namespace/delete", methods=["DELETE"])
    async def namespace_delete(self, request):
        self._leader()
        ns = _arg(request, "namespace")
        if not ns:
            raise BadRequest("MISSING_ARG_NAMESPACE")
        if not NAME_RE.match(ns):
            raise BadRequest("INVALID_ARG_NAMESPACE")
        partition = _arg(request, "partition")
        if not partition:
            raise BadRequest("MISSING_ARG_PARTITION")
        if partition != "**":
            raise BadRequest("REMOVE_SINGLE_PARTITION_NOT_ALLOWED")
        await self.coord.delete_namespace(ns)
        return b""

    @app.route("/cluster/namespace/meta/update", methods=["POST"])
    async def namespace_meta_update(self, request):
        self._leader(not_leader_400=True)
        ns = _arg(request, "namespace")
        if not ns:
            raise BadRequest("MISSING_ARG_NAMESPACE")
        if not NAME_RE.match(ns):
            raise BadRequest("INVALID_ARG_NAMESPACE")
        replica = snap = fsync = None
        if text := _arg(request, "replicator"):
            if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICATOR:
                raise BadRequest("INVALID_ARG_NAMESPACE_REPLICATOR")
            replica = int(text)
        if text := _arg(request, "optimizefsync"):
            if text not in ("true", "false"):
                raise BadRequest("INVALID_ARG_OPTIMIZE_FSYNC")
            fsync = text == "true"
        if text := _arg(request, "snapcount"):
            if not text.isdigit() or int(text) < 1:
                raise BadRequest("INVALID_ARG_SNAPCOUNT")
            snap = int(text)
        try:
            await self.coord.update_namespace_meta(ns, replica, fsync, snap)
        except NotPDLeader:
            raise _NotLeader400() from None
        return b""

    @app.route("/cluster/node/remove", methods=["POST"])
    async def node_remove(self, request):
        self._leader()
        node = _arg(request, "remove_node")
        if not node:
            raise BadRequest("MISSING_ARG_REMOVE_NODE")
        await self.coord.mark_node_removing(node)
        return b""

    @app.route("/cluster/partition/remove_node", methods=["DELETE"])
    async def partition_remove_node(self, request):
        self._leader()
        ns = _arg(request, "namespace")
        if not ns:
            raise BadRequest("MISSING_ARG_NAMESPACE")
        partition = _arg(request, "partition")
        if not partition:
            raise BadRequest("MISSING_ARG_PARTITION")
        if not partition.isdigit():
            raise BadRequest("INVALID_ARG_PARTITION")
        node = _arg(request, "node")
        if not node:
            raise BadRequest("MISSING_ARG_NODE")
        await self.coord.mark_partition_replica_removing(ns, int(partition), node)
        return b""

    @app.route("/cluster/upgrade/begin", methods=["POST"])
    def upgrade_begin(self, request):
        self._leader()
        self.coord.upgrading = True
        return b""

    @app.route("/cluster/upgrade/done", methods=["POST"])
    def upgrade_done(self, request):
        self._leader()
        self.coord.upgrading = False
        self.coord.trigger_check()
        return b""

    @app.route("/stable/nodenum", methods=["POST"])
    def stable_nodenum(self, request):
        self._leader()
        text = _arg(request, "number")
        if not text:
            raise BadRequest("MISSING_ARG_NUMBER")
        if not text.isdigit():
            raise BadRequest("INVALID_ARG_NUMBER")
        self.coord.set_stable_node_num(int(text))
        return b""

    @app.route("/loglevel/set", methods=["POST"])
    def loglevel_set(self, request):
        text = _arg(request, "loglevel")
        if not text:
            raise BadRequest("MISSING_ARG_LOGLEVEL")
        if not text.isdigit() or int(text) not in LOG_LEVELS:
            raise BadRequest("INVALID_ARG_LOGLEVEL")
        self.coord.log_level = int(text)
        return b""


class _NotLeader400(NotPDLeader):
    http_status = 400

    def __init__(self):
        super().__init__(_NOT_LEADER_400)
