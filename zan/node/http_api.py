"""The data node's HTTP admin API (Klein), ZanRedisDB's routes and JSON shapes.

Errors are answered in one place (`_error`): a `ZanError` becomes ``{"message": ...}``
with its `http_status`; anything else is logged and answered 500.
"""

from __future__ import annotations

import json
import socket

from klein import Klein
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from zan import __version__
from zan.errors import BadRequest, NotFound, ZanError
from zan.store.codec import META, prefix_end

__all__ = ["NodeHTTPAPI"]

_LATENCY_BUCKETS = 16


def _json(request, value, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(value).encode()


class _NodeCollector:
    """Exposes the node's counters to Prometheus at scrape time (no double bookkeeping)."""

    def __init__(self, node):
        self._node = node

    def collect(self):
        node = self._node
        yield CounterMetricFamily("zan_commands_processed", "Commands dispatched",
                                  value=node.dispatcher.commands_processed)
        yield GaugeMetricFamily("zan_connected_clients", "Open RESP connections",
                                value=len(node.server_context.clients))
        yield CounterMetricFamily("zan_log_syncs", "fsyncs of the node's log",
                                  value=node.log_syncs())
        keys = GaugeMetricFamily("zan_keys", "Keys per partition", labels=["partition"])
        applied = GaugeMetricFamily("zan_applied_index", "Applied log index",
                                    labels=["partition"])
        for p in node.partitions():
            keys.add_metric([p.name], p.state_machine.keys_count)
            applied.add_metric([p.name], p.applied_index)
        yield keys
        yield applied


class NodeHTTPAPI:
    app = Klein()
    _log = Logger()

    def __init__(self, node):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_NodeCollector(node))
        Gauge("zan_up", "1 while the node serves", registry=self.registry).set(1)

    @app.handle_errors(Exception)
    def _error(self, request, failure):
        if isinstance(failure.value, ZanError):
            return _json(request, {"message": str(failure.value)}, failure.value.http_status)
        self._log.failure("HTTP {method} {uri}", failure, method=request.method,
                          uri=request.uri)
        return _json(request, {"message": "internal error"}, 500)

    @app.route("/ping", methods=["GET"])
    def ping(self, request):
        return b"OK"

    @app.route("/info", methods=["GET"])
    def info(self, request):
        c = self.node.config
        return _json(request, {
            "version": __version__, "broadcast_address": c.broadcast_addr,
            "hostname": socket.gethostname(), "http_port": str(c.http_api_port),
            "redis_port": str(c.redis_api_port), "start_time": int(self.node.started_at),
        })

    @app.route("/stats", methods=["GET"])
    def stats(self, request):
        leader_only = _bool_arg(request, b"leader_only", True)
        table_detail = _bool_arg(request, b"table_detail", False)
        ns_stats = []
        for p in self.node.partitions():
            if leader_only and not p.is_leader:
                continue
            sm = p.state_machine
            ns_stats.append({
                "name": p.name,
                "table_stats": self._table_stats(p) if table_detail else [],
                "db_write_stats": {"value_size_stats": [0] * _LATENCY_BUCKETS,
                                   "write_latency_stats": [0] * _LATENCY_BUCKETS},
                "cluster_write_stats": {"value_size_stats": [0] * _LATENCY_BUCKETS,
                                        "write_latency_stats": [0] * _LATENCY_BUCKETS},
                "internal_stats": {"applied_index": p.applied_index,
                                   "key_num": sm.keys_count, "expires": sm.expires_count},
                "db_compact_stats": {},
                "eng_type": "leveldb",
                "is_leader": p.is_leader,
                "top_n_write_keys": [],
                "top_n_large_coll_keys": [],
            })
        return _json(request, {
            "version": __version__,
            "up_time": int(self.node.reactor.seconds() - self.node.started_at),
            "stats": {"ns_stats": ns_stats,
                      "scan_stats": {"scan_count": 0,
                                     "scan_latency_stats": [0] * _LATENCY_BUCKETS}},
        })

    def _table_stats(self, partition) -> list[dict]:
        sm = partition.state_machine
        return [{"name": "", "key_num": sm.keys_count,
                 "disk_bytes_usage": sm.engine.approximate_size(),
                 "approximate_key_num": sm.keys_count}]

    @app.route("/kv/optimize", methods=["POST"])
    def optimize_all(self, request):
        return self._optimize(request, None, None)

    @app.route("/kv/optimize/<string:ns>", methods=["POST"])
    def optimize_ns(self, request, ns):
        return self._optimize(request, ns, None)

    @app.route("/kv/optimize/<string:ns>/<string:table>", methods=["POST"])
    def optimize_table(self, request, ns, table):
        return self._optimize(request, ns, table)

    def _optimize(self, request, ns: str | None, table: str | None):
        targets = [p for p in self.node.partitions() if ns is None or p.namespace == ns]
        if ns is not None and not targets:
            raise NotFound(f"namespace {ns} not found")
        for p in targets:
            if table is None:
                p.state_machine.engine.compact_range()
            else:
                start = META + table.encode() + b":"
                p.state_machine.engine.compact_range(start, prefix_end(start))
        return b""

    # -- cluster routes (a node of a static cluster) --------------------------------------

    def _replica(self, ns_pid: str):
        cluster = self.node.cluster
        if cluster is None:
            raise BadRequest("this node is standalone: it has no raft groups")
        ns, sep, pid = ns_pid.rpartition("-")
        if not sep or not pid.isdigit():
            raise BadRequest(f"invalid partition name {ns_pid!r} (expected <namespace>-<pid>)")
        partition = self.node.partition(ns, int(pid))
        if partition is None:
            raise NotFound(f"partition {ns_pid} not found on this node")
        return cluster, partition

    def _member_info(self, cluster, partition, replica: int) -> dict:
        node_id = cluster.node_of(partition.group_id, replica)
        address = cluster.peer_address(node_id, "raft_addr") if node_id else None
        return {"id": replica, "node_id": node_id or 0, "group_name": partition.name,
                "group_id": partition.group_id,
                "peer_urls": [f"http://{address[0]}:{address[1]}"] if address else []}

    @app.route("/cluster/leader/<string:ns_pid>", methods=["GET"])
    def cluster_leader(self, request, ns_pid):
        cluster, partition = self._replica(ns_pid)
        lead = partition.leader
        if not lead:
            return _json(request, {"message": "no leader found"}, 303)
        return _json(request, self._member_info(cluster, partition, lead))

    @app.route("/cluster/members/<string:ns_pid>", methods=["GET"])
    def cluster_members(self, request, ns_pid):
        cluster, partition = self._replica(ns_pid)
        cs = cluster.driver.conf_state(partition.group_id)
        return _json(request, [self._member_info(cluster, partition, r) for r in cs.voters])

    def _synced(self, cluster, partition) -> bool:
        status = cluster.driver.status(partition.group_id)
        return bool(status.lead) and status.commit - partition.applied_index <= 1000 \
            and not partition.fetching_snapshot and not status.recovering

    @app.route("/cluster/israftsynced/<string:ns_pid>", methods=["GET"])
    def cluster_israftsynced(self, request, ns_pid):
        cluster, partition = self._replica(ns_pid)
        if self._synced(cluster, partition):
            return _json(request, {"message": "synced"})
        return _json(request, {"message": "raft not synced"}, 406)

    @app.route("/node/allready", methods=["GET"])
    def node_allready(self, request):
        cluster = self.node.cluster
        if cluster is None:
            return _json(request, {"message": "ready"})
        if all(self._synced(cluster, p) for p in self.node.partitions()):
            return _json(request, {"message": "ready"})
        return _json(request, {"message": "some raft groups are not synced"}, 406)

    def _member_from_body(self, request) -> tuple:
        try:
            body = json.loads(request.content.read() or b"null")
        except ValueError as e:
            raise BadRequest(f"invalid JSON body: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a MemberInfo object")
        for key in ("id", "group_name"):
            if key not in body:
                raise BadRequest(f"MemberInfo.{key} is missing")
        if not isinstance(body["id"], int) or body["id"] < 1:
            raise BadRequest("MemberInfo.id must be a positive integer")
        cluster, partition = self._replica(str(body["group_name"]))
        return cluster, partition, body

    async def _conf_change(self, request, kind):
        from zan.raft.types import ConfChange
        cluster, partition, body = self._member_from_body(request)
        if not partition.is_leader:
            raise BadRequest("this node does not lead the partition")
        await cluster.driver.propose_conf_change(
            partition.group_id, ConfChange(kind, body["id"], json.dumps(body).encode()))
        return _json(request, {"message": "ok"})

    @app.route("/cluster/node/add", methods=["POST"])
    async def cluster_node_add(self, request):
        from zan.raft.types import ConfChangeType
        return await self._conf_change(request, ConfChangeType.ADD_NODE)

    @app.route("/cluster/node/addlearner", methods=["POST"])
    async def cluster_node_addlearner(self, request):
        from zan.raft.types import ConfChangeType
        return await self._conf_change(request, ConfChangeType.ADD_LEARNER_NODE)

    @app.route("/cluster/node/remove", methods=["POST"])
    async def cluster_node_remove(self, request):
        from zan.raft.types import ConfChangeType
        return await self._conf_change(request, ConfChangeType.REMOVE_NODE)

    @app.route("/cluster/leader/transfer/<string:ns_pid>", methods=["POST"])
    def cluster_leader_transfer(self, request, ns_pid):
        cluster, partition = self._replica(ns_pid)
        to = _int_arg(request, b"to")
        if to not in cluster.driver.conf_state(partition.group_id).voters:
            raise BadRequest(f"replica {to} is not a voter of {ns_pid}")
        if not partition.is_leader:
            raise BadRequest("this node does not lead the partition")
        cluster.driver.transfer_leader(partition.group_id, to)
        return _json(request, {"message": "transfer started"})

    @app.route("/cluster/snapshot/<string:ns_pid>", methods=["GET"])
    def cluster_snapshot(self, request, ns_pid):
        from zan.node.snapshot import stream_snapshot
        cluster, partition = self._replica(ns_pid)
        replica = _int_arg(request, b"replica")
        # Klein finishes the request as soon as a handler returns anything but a Deferred
        # (NOT_DONE_YET included), which would cut the stream after its first write.
        streamed = Deferred()

        def served(ok: bool) -> None:
            cluster.snapshot_served(partition.group_id, replica, ok)
            if not streamed.called:
                streamed.callback(None)
        if replica:
            cluster.snapshot_fetch_started(partition.group_id, replica)
        stream_snapshot(request, partition.state_machine.engine, served)
        return streamed

    @app.route("/cluster/checksum/<string:ns_pid>", methods=["GET"])
    def cluster_checksum(self, request, ns_pid):
        _, partition = self._replica(ns_pid)
        now_ms = int(self.node.reactor.seconds() * 1000)
        if request.args.get(b"now_ms"):
            now_ms = _int_arg(request, b"now_ms")
        index, digest, keys = data_checksum(partition.state_machine.engine, now_ms)
        return _json(request, {"applied_index": index, "checksum": digest, "keys": keys})

    @app.route("/raft/stats", methods=["GET"])
    def raft_stats(self, request):
        cluster = self.node.cluster
        prefix = (request.args.get(b"namespace") or [b""])[0].decode("utf-8", "replace")
        leader_only = _bool_arg(request, b"leader_only", False)
        out = []
        if cluster is None:
            return _json(request, out)
        for p in self.node.partitions():
            if not p.name.startswith(prefix) or (leader_only and not p.is_leader):
                continue
            st = cluster.driver.status(p.group_id).to_dict()
            cs = cluster.driver.conf_state(p.group_id)
            out.append({
                "leader_info": self._member_info(cluster, p, p.leader) if p.leader else None,
                "members": [self._member_info(cluster, p, r) for r in cs.voters],
                "learners": [self._member_info(cluster, p, r) for r in cs.learners],
                "raft_stat": st,
            })
        return _json(request, out)

    @app.route("/staleread", methods=["POST"])
    def staleread(self, request):
        self.node.settings["stale_read"] = _bool_arg(request, b"allow", False)
        return _json(request, {"message": "ok", "allow": self.node.settings["stale_read"]})

    _DYNAMIC = {"int": ("proposal_timeout_ms", "sweep_batch"), "str": ()}

    @app.route("/conf/get", methods=["GET"])
    def conf_get(self, request):
        key = _str_arg(request, b"key")
        type_ = (request.args.get(b"type") or [b"int"])[0].decode()
        if type_ not in self._DYNAMIC:
            raise BadRequest(f"invalid type {type_!r}: int or str")
        if key in self.node.settings:
            return _json(request, {"key": key, "value": self.node.settings[key]})
        if key not in self._DYNAMIC[type_]:
            raise NotFound(f"unknown {type_} config key {key!r}")
        return _json(request, {"key": key, "value": getattr(self.node.config, key)})

    @app.route("/conf/set", methods=["POST"])
    def conf_set(self, request):
        key = _str_arg(request, b"key")
        type_ = (request.args.get(b"type") or [b"int"])[0].decode()
        if type_ == "int" and key in ("maxclients", "timeout"):
            self.node.settings[key] = _int_arg(request, b"value")
            self.node.settings_changed(key)
            return _json(request, {"key": key, "value": self.node.settings[key]})
        raise BadRequest(f"config key {key!r} cannot be changed at run time")

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)


def _str_arg(request, name: bytes) -> str:
    values = request.args.get(name)
    if not values or not values[0]:
        raise BadRequest(f"missing parameter {name.decode()}")
    return values[0].decode("utf-8", "replace")


def _int_arg(request, name: bytes) -> int:
    raw = _str_arg(request, name)
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"invalid value for {name.decode()}: {raw!r}") from None


def data_checksum(engine, now_ms: int) -> tuple[int, str, int]:
    """(applied index, digest, live keys) of a partition's logical content at `now_ms`,
    from one consistent view: live keys and the elements of their current versions.
    Expired-but-unpurged keys, orphaned elements and counters are left out: when the
    background sweep gets to them differs from replica to replica."""
    import hashlib
    from zan.store.codec import (
        APPLIED_INDEX_KEY, EXPIRY, META, decode_elem_key, decode_i64, decode_meta_header,
        pk_of_meta_key, prefix_end,
    )
    snap = engine.snapshot()
    try:
        raw = snap.get(APPLIED_INDEX_KEY)
        h = hashlib.sha256()
        live: dict[bytes, int] = {}
        for key, value in snap.iterator(start=META, stop=prefix_end(META)):
            _type, expire_at, version = decode_meta_header(value)
            if expire_at and expire_at <= now_ms:
                continue
            live[pk_of_meta_key(key)] = version
            h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
        for key, value in snap.iterator(start=prefix_end(EXPIRY)):
            _tag, pk, version, _suffix = decode_elem_key(key)
            if live.get(pk) == version:
                h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
        return (decode_i64(raw) if raw else 0), h.hexdigest(), len(live)
    finally:
        snap.close()


def _bool_arg(request, name: bytes, default: bool) -> bool:
    values = request.args.get(name)
    if not values:
        return default
    value = values[0].lower()
    if value in (b"true", b"1", b"yes"):
        return True
    if value in (b"false", b"0", b"no"):
        return False
    raise BadRequest(f"invalid value for {name.decode()}: {values[0].decode('utf-8', 'replace')}")
