"""``twistd zan-pd``: options, configuration and the service tree of a placement driver."""

from __future__ import annotations

import sys

from twisted.application import internet
from twisted.application.service import MultiService
from twisted.python import usage
from twisted.web.server import Site

from zan.errors import ConfigError
from zan.pd.config import PDConfig, load_config

__all__ = ["Options", "makeService", "PDService"]


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Runs a Zan placement driver (PD): HTTP on 127.0.0.1:18001 by default; "
                "needs a cluster id and etcd (v2 API) endpoints.")
    optParameters = [
        ["config", "c", None, "TOML config file (see conf/pd.example.toml)"],
        ["http-address", None, None, "HOST:PORT of the HTTP API (http_address)"],
        ["cluster-id", None, None, "Cluster id (cluster_id)"],
        ["cluster-leadership-addresses", None, None,
         "etcd endpoints, comma separated (cluster_leadership_addresses)"],
        ["data-dir", None, None, "Data directory (data_dir)"],
    ]

    def overrides(self) -> dict:
        names = {"http-address": "http_address", "cluster-id": "cluster_id",
                 "cluster-leadership-addresses": "cluster_leadership_addresses",
                 "data-dir": "data_dir"}
        return {key: self[opt] for opt, key in names.items() if self[opt] is not None}


class PDService(MultiService):
    """The coordinator and the HTTP listener of one PD."""

    def __init__(self, config: PDConfig, reactor, http_client=None):
        super().__init__()
        from zan.etcd.client import EtcdClient
        from zan.pd.api import PDHTTPAPI
        from zan.pd.coordinator import PDCoordinator

        self.config = config
        self.client = EtcdClient(
            reactor, config.etcd_endpoints, http_client=http_client,
            timeout=config.etcd_timeout, ca_file=config.etcd_ca_file or None,
            cert_file=config.etcd_cert_file or None, key_file=config.etcd_key_file or None)
        self.coordinator = PDCoordinator(config, self.client, reactor)
        self.coordinator.setName("coordinator")
        self.coordinator.setServiceParent(self)
        self.api = PDHTTPAPI(self.coordinator)
        host, port = config.http_host_port
        http = internet.TCPServer(port, Site(self.api.resource()), interface=host,
                                  reactor=reactor)
        http.setName("http")
        http.setServiceParent(self)

    def stopService(self):
        d = super().stopService()
        return d.addBoth(lambda r: self.client.close().addBoth(lambda _: r))


def makeService(options: Options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    try:
        config = load_config(options["config"], options.overrides())
    except ConfigError as e:
        raise SystemExit(f"zan-pd: configuration error: {e}") from None
    return PDService(config, reactor)


def main() -> None:  # pragma: no cover - convenience for `python -m zan.pd.tap`
    from twisted.scripts.twistd import run
    sys.argv[1:1] = ["-n", "zan-pd"]
    run()
