"""Shared set-up for the PD unit tests: PDs on one FakeEtcd and one Clock."""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from tests.unit.etcd_support import Env
from zan.pd import keys
from zan.pd.api import PDHTTPAPI
from zan.pd.config import build_config
from zan.pd.coordinator import PDCoordinator
from zan.pd.model import NodeInfo, gen_node_id
from zan.pd.sync import PartitionSync

CID = "c1"


def node_id(i: int) -> str:
    return gen_node_id(i, f"10.0.0.{i}", 12381, 12380)


def assume_synced(ns, pid, info, leader, nodes):
    """The fake cluster has no data nodes to ask: every partition is in sync."""
    return succeed(PartitionSync(True, frozenset()))


class PDEnv(Env):
    def __init__(self, **config):
        super().__init__()
        self.config_values = {"cluster_id": CID, "cluster_leadership_addresses": "http://e1:2379",
                              "auto_balance_and_migrate": True, "leader_ttl": 10,
                              **config}
        self.pds: list[PDCoordinator] = []
        # The fake cluster has no data nodes to ask: every partition counts as in sync
        # unless a test installs its own probe.
        self.sync_probe = assume_synced

    def new_pd(self, port: int = 18001, **config) -> PDCoordinator:
        values = dict(self.config_values, http_address=f"127.0.0.1:{port}", **config)
        pd = PDCoordinator(build_config(values), self.new_client(), self.clock,
                           hour_of=lambda t: 3, sync_probe=self.sync_probe)
        self.pds.append(pd)
        pd.startService()
        self.net.flush()
        return pd

    def stop(self, pd: PDCoordinator, gracefully: bool = True) -> None:
        """Stop a PD; without `gracefully` its etcd keys stay until their TTL runs out."""
        if gracefully:
            pd.stopService()
        else:
            # A crash: nothing more reaches etcd from this PD.
            for child in (pd.lock, pd.registration):
                child._loop.cancel() if child._loop is not None else None
                child._loop = None
            pd.node_watch.stop()
            pd.ns_watch.stop()
            if pd.lock.is_leader:
                pd.lock._lose("crashed")
        self.net.flush()

    def add_node(self, i: int, ttl: int | None = None, **tags) -> str:
        nid = node_id(i)
        info = NodeInfo(id=nid, reg_id=i, node_ip=f"10.0.0.{i}", hostname=f"h{i}",
                        redis_port="12381", http_port="12380", version="0.1", tags=tags)
        self.run(self.client.set(keys.data_node(CID, nid), info.to_json(), ttl=ttl))
        self.net.flush()
        return nid

    def drop_node(self, i: int) -> None:
        self.run(self.client.delete(keys.data_node(CID, node_id(i))))
        self.net.flush()

    def leader(self) -> PDCoordinator | None:
        leaders = [pd for pd in self.pds if pd.is_leader]
        assert len(leaders) <= 1, "two PD leaders at once"
        return leaders[0] if leaders else None

    def wait(self, d: Deferred, seconds: float = 5.0):
        """Advance time until `d` fires; its result."""
        box = []
        d.addBoth(box.append)
        while not box and seconds > 0:
            self.advance(0.05, step=0.05)
            seconds -= 0.05
        assert box, "did not complete"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    def http(self, pd: PDCoordinator) -> "Http":
        return Http(self, PDHTTPAPI(pd))


class Http:
    def __init__(self, env: PDEnv, api: PDHTTPAPI):
        self.env = env
        self.api = api
        self.stub = StubTreq(api.resource())

    def _settle(self, d: Deferred):
        box = []
        d.addBoth(box.append)
        for _ in range(200):
            if box:
                break
            self.env.net.flush()
            self.stub.flush()
            self.env.clock.advance(0.01)
        assert box, "no HTTP answer"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    def call(self, method: str, path: str, **params) -> tuple[int, bytes]:
        url = "http://pd" + path
        resp = self._settle(self.stub.request(method, url, params=params or None))
        body = self._settle(self.stub.content(resp))
        return resp.code, body
