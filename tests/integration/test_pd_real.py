"""Two real `twistd -n zan-pd` processes on a real etcd: create a namespace over HTTP, look
it up from both PDs, kill -9 the leader and see the other take over within the lock TTL."""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request

import pytest

from tests.support.etcd_cluster import EtcdServer, PDProc, http, wait_until
from zan.pd import keys
from zan.pd.model import NodeInfo, gen_node_id

pytestmark = pytest.mark.integration

CID = "itest"
LEADER_TTL = 3


def PD(etcd_url: str) -> PDProc:
    return PDProc(etcd_url, CID, {"leader_ttl": LEADER_TTL, "node_ttl": LEADER_TTL})


def etcd_put(etcd: EtcdServer, key: str, value: str) -> None:
    data = urllib.parse.urlencode({"value": value}).encode()
    req = urllib.request.Request(f"{etcd.url}/v2/keys{key}", data=data, method="PUT")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    urllib.request.urlopen(req, timeout=5).read()


def leader_of(pds: list[PDProc]) -> PD | None:
    for pd in pds:
        code, _ = http("GET", pd.url + "/cluster/stats")
        if code == 200:
            return pd
    return None


def test_two_pds_create_query_and_failover():
    etcd = EtcdServer()
    pds: list[PDProc] = []
    try:
        etcd.start()
        for i in (1, 2, 3):
            nid = gen_node_id(i, "127.0.0.1", 20000 + i, 21000 + i)
            info = NodeInfo(id=nid, reg_id=i, node_ip="127.0.0.1", redis_port=str(20000 + i),
                            http_port=str(21000 + i))
            etcd_put(etcd, keys.data_node(CID, nid), info.to_json())
        pds = [PD(etcd.url).start(), PD(etcd.url).start()]
        leader = wait_until(lambda: leader_of(pds), 10, "a PD leader")
        follower = next(pd for pd in pds if pd is not leader)
        assert http("POST", follower.url + "/cluster/namespace/create", namespace="ns1",
                    partition_num="4", replicator="2")[0] == 400
        code, body = http("POST", leader.url + "/cluster/namespace/create", namespace="ns1",
                          partition_num="4", replicator="2")
        assert (code, body) == (200, b""), leader.log()

        def query(pd):
            code, body = http("GET", pd.url + "/query/ns1")
            return json.loads(body) if code == 200 else None
        docs = [wait_until(lambda pd=pd: query(pd), 5, "the namespace") for pd in pds]
        for doc in docs:
            assert doc["partition_num"] == 4 and len(doc["partitions"]) == 4
            assert all(len(p["replicas"]) == 2 for p in doc["partitions"].values())
        assert docs[0]["partitions"] == docs[1]["partitions"]
        assert http("GET", follower.url + "/query/ns1",
                    epoch=str(docs[1]["epoch"]))[0] in (200, 304)

        killed_at = time.monotonic()
        leader.stop(signal.SIGKILL)
        wait_until(lambda: http("GET", follower.url + "/cluster/stats")[0] == 200,
                   LEADER_TTL + 5, "the follower to take over")
        took = time.monotonic() - killed_at
        assert took <= LEADER_TTL + 2, took
        code, body = http("GET", follower.url + "/listpd")
        assert json.loads(body)["pdleader"]["HttpPort"] == str(follower.port)
        # The new leader serves writes.
        assert http("POST", follower.url + "/cluster/namespace/create", namespace="ns2",
                    partition_num="2", replicator="3")[0] == 200
        assert query(follower)["partition_num"] == 4
        assert "Traceback" not in follower.log(), follower.log()
        print(f"failover took {took:.2f} s with a {LEADER_TTL} s lock TTL")
    finally:
        for pd in pds:
            pd.stop(signal.SIGKILL)
        etcd.stop()
