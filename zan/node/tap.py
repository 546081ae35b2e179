"""``twistd zan-node``: options, configuration and the service tree of a data node."""

from __future__ import annotations

import sys

from twisted.python import usage

from zan.errors import ConfigError
from zan.node.config import load_config, parse_host_port

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Runs a Zan data node.  With no options: a standalone node on 127.0.0.1 "
                "(RESP 12381, HTTP 12380), data in ./zan-data, namespace 'default' with 8 "
                "partitions answering plain Redis keys.")
    optParameters = [
        ["config", "c", None, 'JSON config file {"server_conf": {...}} (see conf/node.example.json)'],
        ["data-dir", None, None, "Data directory (server_conf.data_dir)"],
        ["redis-addr", None, None, "HOST:PORT of the RESP listener"],
        ["http-addr", None, None, "HOST:PORT of the HTTP admin listener"],
        ["cluster-id", None, None, "Cluster id (server_conf.cluster_id)"],
        ["requirepass", None, None, "Password clients must AUTH with"],
    ]

    def overrides(self) -> dict:
        out: dict = {}
        if self["data-dir"]:
            out["data_dir"] = self["data-dir"]
        if self["redis-addr"]:
            out["redis_api_host"], out["redis_api_port"] = parse_host_port(
                "--redis-addr", self["redis-addr"])
        if self["http-addr"]:
            out["http_api_host"], out["http_api_port"] = parse_host_port(
                "--http-addr", self["http-addr"])
        if self["cluster-id"]:
            out["cluster_id"] = self["cluster-id"]
        if self["requirepass"] is not None:
            out["requirepass"] = self["requirepass"]
        return out


def makeService(options: Options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    try:
        config = load_config(options["config"], options.overrides())
    except ConfigError as e:
        # twistd prints a SystemExit message and exits non-zero: the operator sees exactly
        # which key is wrong, without a traceback.
        raise SystemExit(f"zan-node: configuration error: {e}") from None
    from zan.node.service import NodeService
    return NodeService(config, reactor)


def main() -> None:  # pragma: no cover - convenience for `python -m zan.node.tap`
    from twisted.scripts.twistd import run
    sys.argv[1:1] = ["-n", "zan-node"]
    run()
