"""A 3-member etcd (v2 API) on this host, and a load generator for its v2 keys API.

Used by bench/cluster_bench.py to set Zan's replicated writes and linearizable reads
beside etcd's on the same box in the same run.  The generator is Python: several
processes of keep-alive HTTP connections (threads), so it shares the cores with etcd
and bounds what it can measure; its figure is a lower bound for etcd.
"""

from __future__ import annotations

import http.client as httpclient
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
import urllib.request

__all__ = ["EtcdCluster", "etcd_rate"]


class EtcdCluster:
    """Three etcd members with `--enable-v2`, fsyncing as they do by default."""

    def __init__(self, tmp: str, free_port):
        self.members = [(f"e{i}", free_port(), free_port()) for i in range(1, 4)]
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{client}" for _, client, _ in self.members]

    def start(self) -> "EtcdCluster":
        exe = shutil.which("etcd")
        if exe is None:
            raise RuntimeError("etcd is not installed")
        initial = ",".join(f"{name}=http://127.0.0.1:{peer}" for name, _, peer in self.members)
        for name, client, peer in self.members:
            url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
            self.procs.append(subprocess.Popen(
                [exe, "--name", name, "--data-dir", os.path.join(self.tmp, name),
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--enable-v2=true", "--logger=zap", "--log-level=error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.urls[0] + "/health", timeout=0.5) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("etcd did not become healthy")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def _worker_process(url: str, method: str, seconds: float, threads: int, value: str,
                    seed: int, out) -> None:
    host_port = url.removeprefix("http://")
    host, _, port = host_port.partition(":")
    counts = []
    stop = time.monotonic() + seconds
    body = "value=" + value

    def loop(t: int) -> None:
        conn = httpclient.HTTPConnection(host, int(port), timeout=10)
        done = 0
        n = seed * 1000 + t
        while time.monotonic() < stop:
            path = f"/v2/keys/bench/k{n % 100000}"
            n += 7919
            try:
                if method == "PUT":
                    conn.request("PUT", path, body,
                                 {"Content-Type": "application/x-www-form-urlencoded"})
                else:
                    conn.request("GET", path + "?quorum=true")
                resp = conn.getresponse()
                resp.read()
                if resp.status < 300 or (method == "GET" and resp.status == 404):
                    done += 1
            except (OSError, httpclient.HTTPException):
                conn.close()
                conn = httpclient.HTTPConnection(host, int(port), timeout=10)
        counts.append(done)
        conn.close()

    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(sum(counts))


def etcd_rate(urls: list[str], method: str, seconds: float = 10.0, connections: int = 50,
              processes: int = 4, value_bytes: int = 100) -> float:
    """Requests/s of `method` (PUT: a 100-byte value; GET: a quorum read) over
    `connections` keep-alive connections spread over the members."""
    out = multiprocessing.Queue()
    value = "x" * value_bytes
    per = max(1, connections // processes)
    procs = [multiprocessing.Process(target=_worker_process, args=(
        urls[i % len(urls)], method, seconds, per, value, i, out)) for i in range(processes)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join(30)
    return total / seconds
