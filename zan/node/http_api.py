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
        if node.committer is not None:
            yield CounterMetricFamily("zan_log_syncs", "fsyncs of the node's log",
                                      value=node.committer.syncs)
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

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)


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
