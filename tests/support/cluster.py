"""A static cluster of real `twistd -n zan-node` processes for fault-injection tests.

`StaticClusterProcs` allocates free ports on 127.0.0.1, writes one config per node, starts
the nodes and waits until every partition has a leader.  It kills, restarts and wipes nodes,
reads each replica's checksum over HTTP and waits for the replicas to converge.

With ``proxies=True`` every address a node uses to reach a peer (Raft, RESP forwarding and
HTTP snapshots) goes through a TCP proxy in the test process, one per ordered pair of nodes
and kind of traffic, so `cut(a, b)` / `heal(a, b)` / `isolate(a)` make network partitions
without touching the nodes.  A cut proxy closes its open connections and drops new ones at
once, so dialers see a refused peer and retry with their backoff.  `delay(a, b, seconds)`
holds every byte between `a` and `b` that long before passing it on (a slow link; order
is kept).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

from tests.support.node import ZanNode
from tests.support.processes import RawClient, free_port, wait_for_port

__all__ = ["StaticClusterProcs", "ClusterNodeProc", "PairProxy", "http_get"]

_KINDS = ("raft_addr", "redis_addr", "http_addr")


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, object]:
    """(status, decoded JSON or raw bytes) of GET http://127.0.0.1:port/path."""
    return http_request(port, path, timeout=timeout)


def http_request(port: int, path: str, method: str = "GET", body: bytes | None = None,
                 timeout: float = 5.0) -> tuple[int, object]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class PairProxy:
    """Forwards TCP from `listen_port` to `target_port` on 127.0.0.1 until cut.

    A thread accepts; each connection gets two pump threads.  `cut()` closes every open
    connection and makes new ones close on accept; `heal()` lets them through again.
    `delay` (seconds, 0 by default) holds what each pump reads that long before sending
    it: a reader thread stamps chunks, the pump sends each once its time has come.
    """

    def __init__(self, target_port: int, name: str = ""):
        self.name = name
        self.target_port = target_port
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.delay = 0.0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"proxy-{name}")
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            conns, self._conns = self._conns, set()
        for s in conns:
            _close(s)

    def heal(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._server)
        self._thread.join(2)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(upstream)
                    continue
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        # A reader thread queues (due time, chunk); this thread sends them in order.
        queue: collections.deque = collections.deque()
        ready = threading.Condition()

        def read() -> None:
            try:
                while True:
                    data = src.recv(65536)
                    with ready:
                        queue.append((time.monotonic() + self.delay, data))
                        ready.notify()
                    if not data:
                        return
            except OSError:
                with ready:
                    queue.append((0.0, b""))
                    ready.notify()

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data or self._cut:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class ClusterNodeProc(ZanNode):
    """One node of the cluster: a `ZanNode` with a node id and a Raft port."""

    def __init__(self, node_id: int, data_dir: str | None = None):
        super().__init__(data_dir=data_dir)
        self.node_id = node_id
        self.raft_port = free_port()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout: float = 10.0) -> RawClient:
        return RawClient(self.redis_port, timeout=timeout)

    def http(self, path: str, timeout: float = 5.0) -> tuple[int, object]:
        return http_get(self.http_port, path, timeout)

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"<node {self.node_id} {state} redis={self.redis_port} http={self.http_port}>"


class StaticClusterProcs:
    """Start `n` replicated data nodes sharing one static `cluster_nodes` list."""

    def __init__(self, n: int = 3, namespaces: list[dict] | None = None, tick_ms: int = 50,
                 election_tick: int = 10, snap_count: int | None = None,
                 snap_catchup: int | None = None, proxies: bool = False,
                 cluster_id: str = "zan-test", extra_conf: dict | None = None,
                 start: bool = True, ready_timeout: float = 60.0):
        if namespaces is None:
            namespaces = [{"name": "default", "partition_num": 4, "replicator": n}]
        namespaces = [dict(ns) for ns in namespaces]
        for ns in namespaces:
            ns.setdefault("replicator", n)
            if snap_count is not None:
                ns.setdefault("snap_count", snap_count)
                ns.setdefault("snap_catchup", snap_catchup if snap_catchup is not None
                              else max(1, snap_count // 10))
        self.namespaces = namespaces
        self.tick_ms = tick_ms
        self.election_tick = election_tick
        self.cluster_id = cluster_id
        self.extra_conf = dict(extra_conf or {})
        self.nodes: list[ClusterNodeProc] = []
        # (from node id, to node id, kind) -> proxy
        self.proxies: dict[tuple[int, int, str], PairProxy] = {}
        try:
            self.nodes = [ClusterNodeProc(i + 1) for i in range(n)]
            if proxies:
                for a, b in itertools.permutations(self.nodes, 2):
                    for kind, port in zip(_KINDS, (b.raft_port, b.redis_port, b.http_port)):
                        self.proxies[(a.node_id, b.node_id, kind)] = PairProxy(
                            port, f"{a.node_id}->{b.node_id}:{kind}")
            for node in self.nodes:
                node.server_conf = self._server_conf(node)
            if start:
                self.start_all(ready_timeout)
        except BaseException:
            self.cleanup()
            raise

    # -- configuration -------------------------------------------------------------------

    def _server_conf(self, me: ClusterNodeProc) -> dict:
        members = []
        for node in self.nodes:
            ports = {"raft_addr": node.raft_port, "redis_addr": node.redis_port,
                     "http_addr": node.http_port}
            if node is not me:
                for kind in _KINDS:
                    proxy = self.proxies.get((me.node_id, node.node_id, kind))
                    if proxy is not None:
                        ports[kind] = proxy.port
            members.append({"node_id": node.node_id,
                            **{k: f"127.0.0.1:{p}" for k, p in ports.items()}})
        conf = {
            "cluster_id": self.cluster_id,
            "node_id": me.node_id,
            "cluster_nodes": members,
            "local_raft_addr": f"http://127.0.0.1:{me.raft_port}",
            "tick_ms": self.tick_ms,
            "election_tick": self.election_tick,
            "default_namespace": self.namespaces[0]["name"],
            "namespaces": self.namespaces,
            "sweep_interval_ms": 200,
        }
        conf.update(self.extra_conf)
        return conf

    @property
    def partition_names(self) -> list[str]:
        return [f"{ns['name']}-{pid}" for ns in self.namespaces
                for pid in range(ns.get("partition_num", 8))]

    def node(self, node_id: int) -> ClusterNodeProc:
        return self.nodes[node_id - 1]

    def replicas(self, ns_pid: str) -> list[ClusterNodeProc]:
        """The nodes holding a replica of `ns_pid` (placement of zan.node.cluster)."""
        name, _, pid = ns_pid.rpartition("-")
        ns = next(ns for ns in self.namespaces if ns["name"] == name)
        ids = sorted(n.node_id for n in self.nodes)
        return [self.node(ids[(int(pid) + i) % len(ids)]) for i in range(ns["replicator"])]

    # -- lifecycle -------------------------------------------------------------------------

    def start_all(self, ready_timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.proc = None
            self._spawn(node)
        for node in self.nodes:
            self._wait_listening(node)
        self.wait_leaders(ready_timeout)

    def _spawn(self, node: ClusterNodeProc) -> None:
        import subprocess
        node.proc = subprocess.Popen(node.command(), cwd=node.tmp, env=node.env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def _wait_listening(self, node: ClusterNodeProc, timeout: float = 30.0) -> None:
        try:
            for port in (node.redis_port, node.http_port, node.raft_port):
                wait_for_port(port, timeout, node.proc)
        except Exception:
            node.kill()
            raise RuntimeError(f"node {node.node_id} did not start:\n{node.output()}")

    def kill(self, node: ClusterNodeProc) -> None:
        """kill -9."""
        node.kill()

    def stop(self, node: ClusterNodeProc) -> None:
        node.stop()

    def restart(self, node: ClusterNodeProc) -> None:
        """Start `node` again (killing it first if it runs) with the same config and data."""
        if node.alive:
            node.kill()
        self._spawn(node)
        self._wait_listening(node)

    def wipe(self, node: ClusterNodeProc) -> None:
        """Delete the data directory of a stopped node (it must rebuild from its peers)."""
        if node.alive:
            raise RuntimeError(f"wipe of running node {node.node_id}")
        shutil.rmtree(node.data_dir, ignore_errors=True)

    def cleanup(self) -> None:
        for node in self.nodes:
            try:
                node.stop(signal.SIGKILL)
            finally:
                shutil.rmtree(node.tmp, ignore_errors=True)
        for proxy in self.proxies.values():
            proxy.close()

    def __enter__(self) -> "StaticClusterProcs":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def logs(self) -> str:
        def interesting(node) -> str:
            # The checksum polling fills the access log; keep what the node itself said.
            try:
                with open(node.log_path, encoding="utf-8", errors="replace") as f:
                    lines = [line for line in f if "HTTP/1.1\" " not in line]
            except OSError:
                return node.output()
            return "".join(lines)[-6000:]
        return "\n".join(f"===== node {n.node_id} =====\n{interesting(n)}"
                         for n in self.nodes)

    # -- network partitions ------------------------------------------------------------------

    def cut(self, a: ClusterNodeProc, b: ClusterNodeProc) -> None:
        """Cut all traffic between `a` and `b`, both ways."""
        self._pair(a, b, cut=True)

    def heal(self, a: ClusterNodeProc, b: ClusterNodeProc) -> None:
        self._pair(a, b, cut=False)

    def isolate(self, node: ClusterNodeProc) -> None:
        for other in self.nodes:
            if other is not node:
                self.cut(node, other)

    def heal_all(self) -> None:
        """Heal every cut and remove every delay."""
        for proxy in self.proxies.values():
            proxy.heal()
            proxy.delay = 0.0

    def delay(self, a: ClusterNodeProc, b: ClusterNodeProc, seconds: float) -> None:
        """Hold all traffic between `a` and `b`, both ways, `seconds` (0: no delay)."""
        if not self.proxies:
            raise RuntimeError("the cluster was started without proxies")
        for src, dst in ((a, b), (b, a)):
            for kind in _KINDS:
                self.proxies[(src.node_id, dst.node_id, kind)].delay = seconds

    def _pair(self, a, b, cut: bool) -> None:
        if not self.proxies:
            raise RuntimeError("the cluster was started without proxies")
        for src, dst in ((a, b), (b, a)):
            for kind in _KINDS:
                proxy = self.proxies[(src.node_id, dst.node_id, kind)]
                proxy.cut() if cut else proxy.heal()

    # -- observation ------------------------------------------------------------------------------

    def raft_stats(self, node: ClusterNodeProc) -> dict[str, dict]:
        """`ns-pid` -> raft_stat of every replica on `node` ({} when it does not answer)."""
        try:
            status, body = node.http("/raft/stats", timeout=2)
        except OSError:
            return {}
        if status != 200 or not isinstance(body, list):
            return {}
        out = {}
        for entry in body:
            name = (entry.get("leader_info") or {}).get("group_name")
            if name is None and entry.get("members"):
                name = entry["members"][0]["group_name"]
            if name is not None:
                out[name] = entry["raft_stat"]
        return out

    def leaders(self) -> dict[str, tuple[ClusterNodeProc, int]]:
        """`ns-pid` -> (node, term) for every partition some live replica leads."""
        out: dict[str, tuple[ClusterNodeProc, int]] = {}
        for node in self.nodes:
            if not node.alive:
                continue
            for name, st in self.raft_stats(node).items():
                if st["raft_state"] == "StateLeader" and st["lead"] == node.node_id:
                    if name not in out or st["term"] > out[name][1]:
                        out[name] = (node, st["term"])
        return out

    def leader_of(self, ns_pid: str, timeout: float = 20.0,
                  among: list[ClusterNodeProc] | None = None) -> ClusterNodeProc:
        """The node leading `ns_pid` (waits for one, optionally only among `among`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.leaders().get(ns_pid)
            if found is not None and (among is None or found[0] in among):
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader for {ns_pid} after {timeout}s\n{self.logs()}")
            time.sleep(0.05)

    def wait_leaders(self, timeout: float = 30.0,
                     among: list[ClusterNodeProc] | None = None) -> dict:
        """Wait until every partition has a leader (in `among`, if given) that the other
        live replicas (in `among`) follow; returns `leaders()`."""
        deadline = time.monotonic() + timeout
        while True:
            leaders = self.leaders()
            followed: dict[str, set[int]] = {}
            for node in among or self.nodes:
                if node.alive:
                    for name, st in self.raft_stats(node).items():
                        followed.setdefault(name, set()).add(st["lead"])
            missing = [name for name in self.partition_names
                       if name not in leaders
                       or (among is not None and leaders[name][0] not in among)
                       or followed.get(name) != {leaders[name][0].node_id}]
            if not missing:
                return leaders
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader for {missing} after {timeout}s\n{self.logs()}")
            time.sleep(0.05)

    def checksums(self, ns_pid: str, now_ms: int | None = None) -> dict[int, dict]:
        """node id -> {applied_index, checksum, keys} of every live replica of `ns_pid`.
        One `now_ms` for all, so keys expiring meanwhile count the same everywhere."""
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        out = {}
        for node in self.replicas(ns_pid):
            if not node.alive:
                continue
            try:
                status, body = node.http(f"/cluster/checksum/{ns_pid}?now_ms={now_ms}")
            except OSError:
                continue
            if status == 200:
                out[node.node_id] = body
        return out

    def wait_converged(self, timeout: float = 30.0) -> dict[str, dict]:
        """Wait until every live replica of every partition has the same applied index and
        checksum; returns the last checksums seen."""
        deadline = time.monotonic() + timeout
        while True:
            now_ms = int(time.time() * 1000)
            seen = {name: self.checksums(name, now_ms) for name in self.partition_names}
            diverged = {}
            for name, per_node in seen.items():
                expected = len([n for n in self.replicas(name) if n.alive])
                values = {(v["applied_index"], v["checksum"]) for v in per_node.values()}
                if len(per_node) != expected or len(values) != 1:
                    diverged[name] = per_node
            if not diverged:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas did not converge in {timeout}s: "
                                     f"{json.dumps(diverged, indent=1)}\n{self.logs()}")
            time.sleep(0.1)

    def client(self, node: ClusterNodeProc, timeout: float = 10.0) -> RawClient:
        return node.client(timeout)

    def data_dir_exists(self, node: ClusterNodeProc) -> bool:
        return os.path.isdir(node.data_dir)
