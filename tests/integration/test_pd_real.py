"""Two real `twistd -n zan-pd` processes on a real etcd: create a namespace over HTTP, look
it up from both PDs, kill -9 the leader and see the other take over within the lock TTL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.integration.test_etcd_real import EtcdServer
from tests.support.processes import free_port, stop_process, wait_for_port
from zan.pd import keys
from zan.pd.model import NodeInfo, gen_node_id

pytestmark = pytest.mark.integration

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CID = "itest"
LEADER_TTL = 3


def http(method: str, url: str, **params) -> tuple[int, bytes]:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class PD:
    def __init__(self, etcd_url: str):
        self.tmp = tempfile.mkdtemp(prefix="zan-pd-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(self.tmp, "pd.toml"), "w") as f:
            f.write(f'cluster_id = "{CID}"\ncluster_leadership_addresses = "{etcd_url}"\n'
                    f'leader_ttl = {LEADER_TTL}\nnode_ttl = {LEADER_TTL}\n')
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PD":
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile", os.path.join(self.tmp, "pd.log"), "zan-pd",
             "--config", os.path.join(self.tmp, "pd.toml"),
             "--http-address", f"127.0.0.1:{self.port}", "--data-dir", self.tmp],
            cwd=self.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, self.proc)
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig)

    def log(self) -> str:
        try:
            return open(os.path.join(self.tmp, "pd.log")).read()[-3000:]
        except OSError:
            return ""


def etcd_put(etcd: EtcdServer, key: str, value: str) -> None:
    data = urllib.parse.urlencode({"value": value}).encode()
    req = urllib.request.Request(f"{etcd.url}/v2/keys{key}", data=data, method="PUT")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    urllib.request.urlopen(req, timeout=5).read()


def leader_of(pds: list[PD]) -> PD | None:
    for pd in pds:
        code, _ = http("GET", pd.url + "/cluster/stats")
        if code == 200:
            return pd
    return None


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_pds_create_query_and_failover():
    etcd = EtcdServer()
    pds: list[PD] = []
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
