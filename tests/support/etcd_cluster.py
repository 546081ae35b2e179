"""A whole etcd-coordinated Zan cluster of real processes on 127.0.0.1: one etcd (v2 API),
`twistd zan-pd` processes and `twistd zan-node` processes in etcd mode, with every
interval shortened so failures are repaired in seconds.  Every process started is
stopped by PID in `close()`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.node import REPO_ROOT, ZanNode
from tests.support.processes import free_port, stop_process, wait_for_port

__all__ = ["EtcdServer", "PDProc", "EtcdClusterProcs", "http", "wait_until"]


def http(method: str, url: str, timeout: float = 10, **params) -> tuple[int, bytes]:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class EtcdServer:
    def __init__(self, data_dir: str | None = None):
        self.port, self.peer_port = free_port(), free_port()
        self.dir = data_dir or tempfile.mkdtemp(prefix="zan-etcd-")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.extra: list[str] = []

    def start(self, health_ca: str | None = None) -> "EtcdServer":
        exe = shutil.which("etcd")
        if exe is None:
            pytest.skip("etcd is not installed")
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.proc = subprocess.Popen(
            [exe, "--name", "n1", "--data-dir", self.dir,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"n1={peer}", "--enable-v2=true", "--logger=zap",
             "--log-level=error", "--heartbeat-interval=10", "--election-timeout=100",
             *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        context = None
        if health_ca is not None:
            import ssl
            context = ssl.create_default_context(cafile=health_ca)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=0.5,
                                            context=context) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("etcd did not become healthy")

    def halt(self) -> None:
        """Stop the process, keep the data (for a restart)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


class PDProc:
    def __init__(self, etcd_url: str, cluster_id: str, settings: dict):
        self.tmp = tempfile.mkdtemp(prefix="zan-pd-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = [f'cluster_id = "{cluster_id}"', f'cluster_leadership_addresses = "{etcd_url}"']
        for key, value in settings.items():
            lines.append(f"{key} = {json.dumps(value)}")
        with open(os.path.join(self.tmp, "pd.toml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PDProc":
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
            self.proc = None

    def is_leader(self) -> bool:
        return self.proc is not None and http("GET", self.url + "/cluster/stats", 2)[0] == 200

    def log(self) -> str:
        try:
            with open(os.path.join(self.tmp, "pd.log"), encoding="utf-8") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


PD_SETTINGS = {
    "auto_balance_and_migrate": True, "leader_ttl": 3, "node_ttl": 3,
    "check_interval": 0.5, "removing_check_interval": 0.5, "balance_check_interval": 3600.0,
    "node_grace_period": 4.0, "removing_wait": 1.0,
}
NODE_SETTINGS = {
    "tick_ms": 50, "election_tick": 10, "etcd_node_ttl": 3, "coordinator_interval_ms": 200,
    "leader_change_wait_ms": 1000, "proposal_timeout_ms": 3000, "default_snap_count": 200,
    "default_snap_catchup": 50,
}


class EtcdClusterProcs:
    """etcd + `pds` PDs + `nodes` data nodes; use as a context manager."""

    def __init__(self, nodes: int = 3, pds: int = 2, cluster_id: str = "itest",
                 pd_settings: dict | None = None, node_settings: dict | None = None):
        self.cluster_id = cluster_id
        self.etcd = EtcdServer()
        self.pd_settings = {**PD_SETTINGS, **(pd_settings or {})}
        self.node_settings = {**NODE_SETTINGS, **(node_settings or {})}
        self.pds: list[PDProc] = []
        self.nodes: list[ZanNode] = []
        self._want_nodes = nodes
        self._want_pds = pds

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "EtcdClusterProcs":
        try:
            self.etcd.start()
            for _ in range(self._want_pds):
                self.pds.append(PDProc(self.etcd.url, self.cluster_id, self.pd_settings).start())
            for _ in range(self._want_nodes):
                self.add_node()
            wait_until(self.pd_leader, 20, "a PD leader")
            wait_until(lambda: len(self.registered()) >= self._want_nodes, 20,
                       "every data node registered")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for node in self.nodes:
            node.cleanup()
        for pd in self.pds:
            pd.cleanup()
        self.etcd.stop()

    def add_node(self) -> ZanNode:
        raft_port = free_port()
        conf = {"cluster_id": self.cluster_id, "etcd_cluster_addresses": self.etcd.url,
                "local_raft_addr": f"http://127.0.0.1:{raft_port}", **self.node_settings}
        node = ZanNode(server_conf=conf)
        node.raft_port = raft_port
        self.nodes.append(node)
        return node.start()

    # -- looking at it --------------------------------------------------------------------

    def pd_leader(self) -> PDProc | None:
        return next((pd for pd in self.pds if pd.is_leader()), None)

    def pd_url(self) -> str:
        return wait_until(self.pd_leader, 20, "a PD leader").url

    def registered(self) -> list[dict]:
        for pd in self.pds:
            if pd.proc is None:
                continue
            code, body = http("GET", pd.url + "/datanodes", 2)
            if code == 200:
                return json.loads(body).get("nodes") or []
        return []

    def query(self, ns: str) -> dict:
        code, body = http("GET", self.pd_url() + f"/query/{ns}")
        assert code == 200, body
        return json.loads(body)

    def node_id_of(self, node: ZanNode) -> str:
        with open(os.path.join(node.data_dir, "myid")) as f:
            reg = f.read().strip()
        return f"{reg}:127.0.0.1::{node.redis_port}:{node.http_port}:datanode"

    def replica_infos(self, ns: str) -> dict[int, dict]:
        """pid -> ReplicaInfo JSON, straight from etcd."""
        key = f"/ZanRedisDBMetaData/{self.cluster_id}/Namespaces/{ns}"
        code, body = http("GET", f"{self.etcd.url}/v2/keys{key}", recursive="true")
        out = {}
        if code != 200:
            return out
        for child in json.loads(body)["node"].get("nodes", []):
            name = child["key"].rsplit("/", 1)[-1]
            if name.isdigit():
                for leaf in child.get("nodes", []):
                    if leaf["key"].endswith("/ReplicaInfo"):
                        out[int(name)] = json.loads(leaf["value"])
        return out

    def create_namespace(self, ns: str, partitions: int, replicas: int) -> None:
        code, body = http("POST", self.pd_url() + "/cluster/namespace/create", namespace=ns,
                          partition_num=str(partitions), replicator=str(replicas))
        assert code == 200, body

    def fully_replicated(self, ns: str, replicas: int, exclude: tuple[str, ...] = ()) -> bool:
        """Every partition: `replicas` in-sync replicas, none on `exclude`, each a synced
        raft member of the partition on its node."""
        return not self.unreplicated(ns, replicas, exclude)

    def unreplicated(self, ns: str, replicas: int, exclude: tuple[str, ...] = (),
                     confirmed: set | None = None) -> list[int]:
        """The partitions that are not fully replicated (see `fully_replicated`); [-1] when
        etcd has no partitions for `ns`.  With a `confirmed` set, replicas found synced are
        remembered in it (keyed by the partition's member list too) and not asked again,
        so a caller polling a large namespace only asks the nodes about what is left."""
        infos = self.replica_infos(ns)
        if not infos:
            return [-1]
        by_id = {self.node_id_of(n): n for n in self.nodes if n.proc is not None}
        missing = []
        for pid, info in sorted(infos.items()):
            isr = [n for n in info["RaftNodes"] if n not in (info.get("Removings") or {})]
            if len(isr) != replicas or info.get("Removings") or set(isr) & set(exclude):
                missing.append(pid)
                continue
            for nid in isr:
                key = (pid, nid, tuple(sorted(isr)))
                if confirmed is not None and key in confirmed:
                    continue
                node = by_id.get(nid)
                if node is None or not self._replica_synced(node, ns, pid, replicas):
                    missing.append(pid)
                    break
                if confirmed is not None:
                    confirmed.add(key)
        return missing

    @staticmethod
    def _replica_synced(node: ZanNode, ns: str, pid: int, replicas: int) -> bool:
        base = f"http://127.0.0.1:{node.http_port}/cluster"
        if http("GET", f"{base}/israftsynced/{ns}-{pid}", 2)[0] != 200:
            return False
        code, body = http("GET", f"{base}/members/{ns}-{pid}", 2)
        return code == 200 and len(json.loads(body)) == replicas
