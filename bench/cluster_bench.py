"""A 3-node static cluster (replica 3) against a 1-node standalone node and a 3-member etcd,
and failover time.

    python bench/cluster_bench.py [-n 100000] [--failovers 5] [--etcd-seconds 10]

Starts both on this host, runs `redis-benchmark -c 50 -n N -r 100000 -d 100 -t
set,get,incr,lpush,hset` with -P 1 and -P 16 against one node of each (interleaved), prints
requests/s and the cluster/standalone ratio.  Then it starts a 3-member etcd (v2 API) on
the same host and loads it with 50 connections (PUT of 100-byte values, quorum GET; see
bench/etcd_load.py), printing the cluster's durable writes and linearizable reads beside
etcd's.  Then, with tick 100 ms and election 10 ticks, it kills the leader of a partition
with SIGKILL and measures the time until a write to that partition succeeds through
another node (median over --failovers runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.etcd_load import EtcdCluster, etcd_rate  # noqa: E402
from bench.node_bench import ROOT, _benchmark_figure, free_port  # noqa: E402

import mmh3  # noqa: E402

TESTS = "set,get,incr,lpush,hset"


class Proc:
    def __init__(self, name, conf: dict, tmp: str):
        self.name = name
        self.conf = conf
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, "node.json")
        with open(self.path, "w") as f:
            json.dump({"server_conf": conf}, f)
        self.proc = None

    @property
    def redis_port(self):
        return self.conf["redis_api_port"]

    @property
    def http_port(self):
        return self.conf["http_api_port"]

    def start(self):
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile", os.path.join(self.dir, "log"), "zan-node",
             "--config", self.path], env=env, cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        try:
            with open(os.path.join(self.dir, "log"), encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:]
        except OSError:
            tail = "(no log)"
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cluster_confs(tmp, tick_ms, election_tick, partitions=8):
    ids = [1, 2, 3]
    ports = {i: (free_port(), free_port(), free_port()) for i in ids}
    nodes = [{"node_id": i, "raft_addr": f"127.0.0.1:{ports[i][0]}",
              "http_addr": f"127.0.0.1:{ports[i][1]}", "redis_addr": f"127.0.0.1:{ports[i][2]}"}
             for i in ids]
    return [{"cluster_id": "bench", "node_id": i, "cluster_nodes": nodes,
             "data_dir": os.path.join(tmp, f"node{i}", "data"),
             "redis_api_port": ports[i][2], "http_api_port": ports[i][1],
             "tick_ms": tick_ms, "election_tick": election_tick,
             "namespaces": [{"name": "default", "partition_num": partitions, "replicator": 3}]}
            for i in ids]


def http_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return json.load(r)


def wait_leaders(procs, partitions, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stats = http_json(procs[0].http_port, "/raft/stats")
            if len(stats) == partitions and all(s["raft_stat"]["lead"] for s in stats):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("partitions without a leader")


def try_set(port, key, timeout=0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key))
            return s.recv(64).startswith(b"+OK")
    except OSError:
        return False


def failover_times(tmp, runs):
    procs = [Proc(f"fo{i + 1}", c, tmp) for i, c in enumerate(cluster_confs(tmp, 100, 10, 4))]
    for p in procs:
        p.start()
    times = []
    try:
        wait_leaders(procs, 4)
        key = next(b"fk%d" % i for i in range(1000)
                   if mmh3.hash(b"fk%d" % i, 0, signed=False) % 4 == 0)
        for _ in range(runs):
            lead = http_json(procs[0].http_port, "/cluster/leader/default-0")["node_id"]
            victim = procs[lead - 1]
            other = next(p for p in procs if p is not victim)
            assert try_set(other.redis_port, key, 5)
            victim.stop(signal.SIGKILL)
            start = time.monotonic()
            while not try_set(other.redis_port, key):
                if time.monotonic() - start > 30:
                    stats = http_json(other.http_port, "/raft/stats?namespace=default-0")
                    raise RuntimeError(f"no failover within 30 s (killed node {lead}; "
                                       f"{other.name} sees {stats[0]['raft_stat']})")
                time.sleep(0.02)
            times.append(time.monotonic() - start)
            print(f"  failover {len(times)}: {times[-1]:.2f}s", file=sys.stderr, flush=True)
            victim.start()
            wait_leaders(procs, 4)
            time.sleep(1)
    finally:
        for p in procs:
            p.stop()
    return times


def against_etcd(args, tmp, results) -> None:
    """Zan's replicated writes and linearizable reads beside a 3-member etcd's (v2 PUT of
    100-byte values, quorum GET; 50 connections), measured after the cluster's runs."""
    etcd = EtcdCluster(os.path.join(tmp, "etcd"), free_port).start()
    try:
        put = etcd_rate(etcd.urls, "PUT", args.etcd_seconds)
        get = etcd_rate(etcd.urls, "GET", args.etcd_seconds)
    finally:
        etcd.stop()
    set1, set16 = results.get(("set", 1, "cluster")), results.get(("set", 16, "cluster"))
    get1 = results.get(("get", 1, "cluster"))
    print("\nagainst a 3-member etcd on this host (v2 API, 50 connections, 100-byte values; "
          "its load generator is Python, so its figures are lower bounds)\n")
    print(f"{'':<34} {'zan':>9} {'etcd':>9} {'ratio':>6}  target")
    for label, z, e, target in (("durable writes/s, -P 1", set1, put, ">= 1.0"),
                                ("durable writes/s, -P 16", set16, put, ">= 3.0"),
                                ("linearizable GET/s, -P 1", get1, get, ">= 2.0")):
        if z is None:
            continue
        print(f"{label:<34} {z:>9.0f} {e:>9.0f} {z / e:>6.2f}  {target}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--tests", default=TESTS)
    ap.add_argument("--etcd-seconds", type=float, default=10.0,
                    help="how long to load the 3-member etcd (0: skip it)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="zan-cluster-bench-")
    confs = cluster_confs(tmp, 200, 30)
    cluster = [Proc(f"node{i + 1}", c, tmp) for i, c in enumerate(confs)]
    standalone = Proc("single", {"data_dir": os.path.join(tmp, "single", "data"),
                                 "redis_api_port": free_port(), "http_api_port": free_port()}, tmp)
    results = {}
    try:
        run(args, tmp, cluster, standalone, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp, cluster, standalone, results):
    try:
        for p in cluster + [standalone]:
            p.start()
        wait_leaders(cluster, 8)
        target = cluster[1]      # a node that leads only some partitions: forwarding included
        for pipeline in (1, 16):
            for test in args.tests.split(","):
                for name, p in (("cluster", target), ("single", standalone)):
                    # 100-byte values, as the etcd comparison below writes.
                    rps = _benchmark_figure(["-r", "100000", "-d", "100", "-P", str(pipeline),
                                             "-t", test], p.redis_port, args.n)
                    results[(test, pipeline, name)] = rps
                    print(f"  -P {pipeline:<2} {test:<6} {name:<8} {rps:>9.0f}/s",
                          file=sys.stderr, flush=True)
    finally:
        for p in cluster + [standalone]:
            p.stop()
    print(f"\nredis-benchmark -c 50 -n {args.n} -r 100000 -d 100 against node 2 of a 3-node cluster "
          "(replica 3, durable) and a standalone node\n")
    print(f"{'test':<7} {'-P':>3} {'cluster':>9} {'single':>9} {'ratio':>6}")
    for pipeline in (1, 16):
        for test in args.tests.split(","):
            c, s = results[(test, pipeline, "cluster")], results[(test, pipeline, "single")]
            print(f"{test:<7} {pipeline:>3} {c:>9.0f} {s:>9.0f} {c / s:>6.2f}")
    print("targets: cluster SET >= 5k/s at -P 1 and >= 20k/s at -P 16; GET >= 10k/s at -P 1")
    if args.etcd_seconds and shutil.which("etcd"):
        against_etcd(args, tmp, results)
    if args.failovers:
        times = failover_times(tmp, args.failovers)
        print(f"\nleader failover (tick 100 ms, election 10 ticks), kill -9 to first successful "
              f"write through another node: median {statistics.median(times):.2f}s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}; target median < 2.5 s)")


if __name__ == "__main__":
    main()
