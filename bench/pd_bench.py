"""Placement driver: lookup throughput against etcd, data-node repair time, PD failover time.

    python bench/pd_bench.py [--seconds 5] [--connections 16] [--rounds 2]
                             [--partitions 8,32,128] [--failovers 5]

Starts real processes on this host (etcd with the v2 API, `twistd zan-pd`, `twistd zan-node`
in etcd mode, through tests/support/etcd_cluster.py) and measures three things:

1. Lookups.  A 3-node cluster with 2 PDs and one namespace.  A load generator in this
   process (--connections threads, one keep-alive http.client connection each, as fast as
   they can) runs for --seconds against, in turn:
     pd query     GET /query/<ns> on the PD leader (answered from its cached view)
     pd 304       GET /query/<ns>?epoch=<current>: what polling clients send; 304, no body
     etcd meta    etcd's own GET /v2/keys/.../Namespaces/<ns>/NamespaceMeta
     etcd ns dir  etcd GET of the whole namespace directory, recursive (the data /query
                  serves, read from etcd itself)
   interleaved, --rounds times; the median requests/s of each is printed with its ratio to
   "etcd meta", and p50/p99 latency over all rounds.  The generator is Python threads sharing the host's
   cores with the server under test, so a high figure (etcd's) is bounded by the client:
   read the etcd numbers as a lower bound, the PD ones as what one PD process serves here.

2. Repair.  For each partition count: a fresh cluster of 4 data nodes (one spare) and one
   PD, a namespace of that many partitions at replica 3, fully replicated; then `kill -9`
   of the data node with the most replicas.  "repair" is the time from the kill until every
   partition again has 3 in-sync replicas, none on the dead node, each a synced Raft member
   with 3 members on its node.  Printed alongside: when the PD saw the node gone (its etcd
   node key expired: etcd_node_ttl), when etcd's placement no longer named the dead node,
   repair minus node_grace_period (which the PD waits on purpose after the loss): what
   detection and repair cost, and "after grace": repair minus the time the PD saw the loss
   minus the grace period, what moving the replicas itself costs.

3. PD failover.  On the cluster of part 1: `kill -9` the PD leader, time until the other
   PD answers GET /cluster/stats with 200 (leader-only route); restart the killed one as a
   follower, wait until it is registered, repeat --failovers times; median and max.  The
   bound is the leader lock's TTL (leader_ttl): the lock must expire before it is taken.

All intervals are the harness's shortened ones (printed).  Every process started is
stopped by its PID on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from http import client as httpclient

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.etcd_cluster import (  # noqa: E402
    EtcdClusterProcs, http, wait_until)
from zan.pd import keys  # noqa: E402

NS = "bench"
REPLICAS = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- 1. lookups -------------------------------------------------------------------------


def http_load(url: str, seconds: float, connections: int) -> dict:
    """GET `url` over `connections` keep-alive connections for `seconds`; returns
    {"rps", "count", "statuses", "errors", "p50_ms", "p99_ms", "latencies"} (latencies:
    every request's, in seconds, sorted)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    path = "/" + path
    start_gate = threading.Barrier(connections + 1)
    stop = threading.Event()
    results: list[tuple[Counter, list[float], int]] = []
    lock = threading.Lock()

    def worker():
        statuses: Counter = Counter()
        latencies: list[float] = []
        errors = 0
        conn = httpclient.HTTPConnection(host, int(port), timeout=10)
        try:
            start_gate.wait(30)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, httpclient.HTTPException):
                    errors += 1
                    conn.close()
                    conn = httpclient.HTTPConnection(host, int(port), timeout=10)
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[resp.status] += 1
        finally:
            conn.close()
            with lock:
                results.append((statuses, latencies, errors))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    start_gate.wait(30)
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < seconds:
            time.sleep(0.05)
    finally:
        stop.set()
        elapsed = time.perf_counter() - began
        for t in threads:
            t.join(15)
    statuses = sum((r[0] for r in results), Counter())
    latencies = sorted(x for r in results for x in r[1])
    count = len(latencies)
    return {"rps": count / elapsed, "count": count, "statuses": dict(statuses),
            "errors": sum(r[2] for r in results), "p50_ms": percentile_ms(latencies, 0.50),
            "p99_ms": percentile_ms(latencies, 0.99), "latencies": latencies}


def percentile_ms(sorted_seconds: list[float], q: float) -> float:
    n = len(sorted_seconds)
    return sorted_seconds[min(n - 1, int(q * n))] * 1000 if n else float("nan")


def stable_epoch(pd: str, ns: str, timeout: float = 30) -> int:
    """The namespace's epoch once it has stayed the same for a second: right after a
    namespace is replicated its partitions' leaders still move (each RealLeader write
    is a new epoch), and a poll with an old epoch is answered 200, not 304."""
    def probe():
        code, body = http("GET", f"{pd}/query/{ns}")
        if code != 200:
            return None
        epoch = json.loads(body)["epoch"]
        time.sleep(1)
        return epoch if http("GET", f"{pd}/query/{ns}", epoch=str(epoch))[0] == 304 else None
    return wait_until(probe, timeout, f"a stable epoch of {ns}")


def lookup_targets(cluster: EtcdClusterProcs, ns: str) -> dict[str, str]:
    pd = cluster.pd_url()
    epoch = stable_epoch(pd, ns)
    etcd_keys = cluster.etcd.url + "/v2/keys"
    return {
        "pd query": f"{pd}/query/{ns}",
        "pd 304": f"{pd}/query/{ns}?epoch={epoch}",
        "etcd meta": etcd_keys + keys.namespace_meta(cluster.cluster_id, ns),
        "etcd ns dir": etcd_keys + keys.namespace_dir(cluster.cluster_id, ns) + "?recursive=true",
    }


def lookup_throughput(cluster: EtcdClusterProcs, ns: str, seconds: float, connections: int,
                      rounds: int) -> dict[str, dict]:
    """Interleaved runs of `http_load` against each lookup target; per target the median
    requests/s over the rounds, "rounds" (every round's requests/s), and the statuses,
    errors and latency percentiles of all rounds together."""
    targets = lookup_targets(cluster, ns)
    for url in targets.values():      # warm-up: connections, caches, JIT-less code paths
        http_load(url, min(0.5, seconds), min(4, connections))
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    names = list(targets)
    for rnd in range(rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            r = http_load(targets[name], seconds, connections)
            runs[name].append(r)
            log(f"  round {rnd + 1} {name:<11} {r['rps']:>8.0f}/s  statuses {r['statuses']}"
                f"  errors {r['errors']}")
    out = {}
    for name, rs in runs.items():
        latencies = sorted(x for r in rs for x in r["latencies"])
        out[name] = {"rps": statistics.median(r["rps"] for r in rs),
                     "rounds": [r["rps"] for r in rs], "count": len(latencies),
                     "statuses": dict(sum((Counter(r["statuses"]) for r in rs), Counter())),
                     "errors": sum(r["errors"] for r in rs),
                     "p50_ms": percentile_ms(latencies, 0.50),
                     "p99_ms": percentile_ms(latencies, 0.99)}
    return out


def print_lookups(res: dict[str, dict], partitions: int, seconds: float, connections: int,
                  rounds: int) -> None:
    base = res["etcd meta"]["rps"]
    print(f"\nlookups: {connections} keep-alive connections, {seconds:g}s per run, median of "
          f"{rounds} round(s); namespace of {partitions} partitions x {REPLICAS} replicas\n")
    print(f"{'target':<12} {'req/s':>9} {'/etcd meta':>10} {'p50 ms':>7} {'p99 ms':>7}  statuses")
    for name, r in res.items():
        print(f"{name:<12} {r['rps']:>9.0f} {r['rps'] / base:>10.2f} {r['p50_ms']:>7.2f} "
              f"{r['p99_ms']:>7.2f}  {r['statuses']}" + (f" errors {r['errors']}"
                                                        if r["errors"] else ""))


# --- 2. repair --------------------------------------------------------------------------


def wait_replicated(cluster: EtcdClusterProcs, ns: str, timeout: float,
                    exclude: tuple[str, ...] = (), on_poll=None) -> float:
    """Poll until `ns` is fully replicated (without `exclude`); returns the monotonic time
    of the poll that found it so.  `on_poll(now)` runs on every poll."""
    confirmed: set = set()
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if on_poll is not None:
            on_poll(now)
        if not cluster.unreplicated(ns, REPLICAS, exclude, confirmed):
            return time.monotonic()
        if now > deadline:
            left = cluster.unreplicated(ns, REPLICAS, exclude)
            raise TimeoutError(f"{ns}: partitions {left[:20]} not fully replicated after "
                               f"{timeout:.0f}s")
        time.sleep(0.05)


def repair_time(cluster: EtcdClusterProcs, partitions: int, ns: str = NS) -> dict:
    """Create `ns`, wait for full replication, kill -9 the node with the most replicas and
    time the way back to full replication."""
    cluster.create_namespace(ns, partitions, REPLICAS)
    t0 = time.monotonic()
    wait_replicated(cluster, ns, 60 + 2 * partitions)
    log(f"  {partitions} partitions fully replicated {time.monotonic() - t0:.1f}s after create")
    infos = cluster.replica_infos(ns)
    ids = {cluster.node_id_of(n): n for n in cluster.nodes}
    hosted = Counter(nid for info in infos.values() for nid in info["RaftNodes"])
    victim_id = max(ids, key=lambda nid: hosted[nid])
    victim = ids[victim_id]
    marks: dict[str, float] = {}

    def on_poll(now):
        if "pd_lost" not in marks and victim_id not in {
                n["node_id"] for n in cluster.registered()}:
            marks["pd_lost"] = now
        if "placed" not in marks and not any(
                victim_id in info["RaftNodes"] for info in cluster.replica_infos(ns).values()):
            marks["placed"] = now

    killed = time.monotonic()
    victim.kill()
    grace = cluster.pd_settings["node_grace_period"]
    try:
        done = wait_replicated(cluster, ns, 90 + grace + partitions, (victim_id,), on_poll)
    except TimeoutError:
        dump_logs(cluster)
        raise
    pd_lost = marks.get("pd_lost", done)
    return {"partitions": partitions, "hosted": hosted[victim_id], "grace": grace,
            "repair": done - killed, "repair_minus_grace": done - killed - grace,
            "pd_lost": pd_lost - killed, "after_grace": done - pd_lost - grace,
            "placed": marks.get("placed", done) - killed}


def dump_logs(cluster: EtcdClusterProcs) -> None:
    for pd in cluster.pds:
        log(f"--- PD {pd.url} log tail ---\n{pd.log()}")
    for node in cluster.nodes:
        log(f"--- node {node.redis_port} log tail ---\n{node.output()[-3000:]}")


def repair_cluster(pd_settings: dict | None = None,
                   node_settings: dict | None = None) -> EtcdClusterProcs:
    return EtcdClusterProcs(nodes=4, pds=1, cluster_id="pdbench", pd_settings=pd_settings,
                            node_settings=node_settings)


def print_repairs(results: list[dict], pd_settings: dict, node_settings: dict) -> None:
    print(f"\nrepair after kill -9 of a data node: 4 data nodes, replica {REPLICAS}, 1 PD; "
          f"node_grace_period {pd_settings['node_grace_period']:g}s, "
          f"data node etcd_node_ttl {node_settings['etcd_node_ttl']}s, "
          f"PD check_interval {pd_settings['check_interval']:g}s, "
          f"node coordinator_interval_ms {node_settings['coordinator_interval_ms']}, "
          f"tick_ms {node_settings['tick_ms']} x election_tick {node_settings['election_tick']}\n")
    print(f"{'partitions':>10} {'on dead':>8} {'PD saw':>7} {'placed':>7} {'repair':>7} "
          f"{'- grace':>8} {'after grace':>11}   (seconds)")
    for r in results:
        print(f"{r['partitions']:>10} {r['hosted']:>8} {r['pd_lost']:>7.2f} {r['placed']:>7.2f} "
              f"{r['repair']:>7.2f} {r['repair_minus_grace']:>8.2f} {r['after_grace']:>11.2f}")
    print("on dead: replicas the killed node held.  After the kill: PD saw: the node left the "
          "PD's /datanodes (its etcd key\nexpired); placed: no ReplicaInfo names it; repair: "
          "every partition fully replicated again.\n- grace: repair minus node_grace_period; "
          "after grace: from the end of the grace period (counted from PD saw)\nto repaired: "
          "what moving the replicas costs")


# --- 3. PD failover ---------------------------------------------------------------------


def pd_failover(cluster: EtcdClusterProcs, rounds: int) -> list[float]:
    """kill -9 the PD leader, time until another PD answers /cluster/stats with 200;
    restart the killed one as a follower between rounds."""
    ttl = cluster.pd_settings["leader_ttl"]
    times = []
    for rnd in range(rounds):
        leader = wait_until(cluster.pd_leader, 30, "a PD leader")
        others = [pd for pd in cluster.pds if pd is not leader and pd.proc is not None]
        assert others, "failover needs a second PD"
        wait_until(lambda: len(json.loads(http("GET", leader.url + "/listpd")[1] or b"{}")
                               .get("pdnodes") or []) >= len(cluster.pds),
                   30, "every PD registered")
        killed = time.monotonic()
        leader.stop(signal.SIGKILL)
        wait_until(lambda: any(http("GET", pd.url + "/cluster/stats", 1)[0] == 200
                               for pd in others), ttl + 30, "another PD to lead", 0.02)
        times.append(time.monotonic() - killed)
        log(f"  PD failover {rnd + 1}: {times[-1]:.2f}s")
        leader.start()
    return times


def print_failover(times: list[float], ttl: int) -> None:
    print(f"\nPD leader failover, 2 PDs, leader_ttl {ttl}s: kill -9 of the leader until the "
          f"other answers /cluster/stats 200: median {statistics.median(times):.2f}s, "
          f"max {max(times):.2f}s (runs: {', '.join(f'{t:.2f}' for t in times)})")


# --- main -------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one load run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of load runs")
    ap.add_argument("--query-partitions", type=int, default=16)
    ap.add_argument("--partitions", default="8,32,128",
                    help="partition counts for the repair runs ('' to skip)")
    ap.add_argument("--failovers", type=int, default=5, help="PD failover rounds (0 to skip)")
    args = ap.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("etcd is not installed")
    # SIGTERM unwinds like Ctrl-C, so the clusters' processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    log("lookups and PD failover: etcd, 2 PDs, 3 data nodes")
    with EtcdClusterProcs(nodes=3, pds=2, cluster_id="pdbench") as cluster:
        cluster.create_namespace(NS, args.query_partitions, REPLICAS)
        wait_until(lambda: len(cluster.replica_infos(NS)) == args.query_partitions, 30,
                   "the namespace's placement")
        wait_replicated(cluster, NS, 60 + 2 * args.query_partitions)
        lookups = lookup_throughput(cluster, NS, args.seconds, args.connections, args.rounds)
        times = pd_failover(cluster, args.failovers) if args.failovers else []
        ttl = cluster.pd_settings["leader_ttl"]
    print_lookups(lookups, args.query_partitions, args.seconds, args.connections, args.rounds)

    repairs = []
    for p in [int(x) for x in args.partitions.split(",") if x.strip()]:
        log(f"repair: etcd, 1 PD, 4 data nodes, {p} partitions")
        with repair_cluster() as cluster:
            repairs.append(repair_time(cluster, p))
            log(f"  repair {repairs[-1]}")
            pd_settings, node_settings = cluster.pd_settings, cluster.node_settings
    if repairs:
        print_repairs(repairs, pd_settings, node_settings)
    if times:
        print_failover(times, ttl)


if __name__ == "__main__":
    main()
