"""bench/pd_bench.py's measurements on tiny parameters: lookups against the PD and etcd,
one PD failover, and the repair after kill -9 of a data node (namespace of 4 partitions)."""

from __future__ import annotations

import re

import pytest

from bench import pd_bench
from tests.support.etcd_cluster import EtcdClusterProcs, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_lookups_and_pd_failover(capsys):
    with EtcdClusterProcs(nodes=3, pds=2, cluster_id="pdbenchtest") as cluster:
        cluster.create_namespace(pd_bench.NS, 4, pd_bench.REPLICAS)
        wait_until(lambda: len(cluster.replica_infos(pd_bench.NS)) == 4, 30, "placement")
        pd_bench.wait_replicated(cluster, pd_bench.NS, 60)
        res = pd_bench.lookup_throughput(cluster, pd_bench.NS, seconds=0.5, connections=4,
                                         rounds=1)
        times = pd_bench.pd_failover(cluster, 1)
        ttl = cluster.pd_settings["leader_ttl"]
        assert len([pd for pd in cluster.pds if pd.proc is not None]) == 2

    assert set(res) == {"pd query", "pd 304", "etcd meta", "etcd ns dir"}
    for name, r in res.items():
        assert r["rps"] > 0 and r["count"] > 0, (name, r)
        assert 0 < r["p50_ms"] <= r["p99_ms"], (name, r)
    assert set(res["pd query"]["statuses"]) == {200}
    assert set(res["etcd meta"]["statuses"]) == {200}
    assert res["pd 304"]["statuses"].get(304, 0) > 0, res["pd 304"]
    assert len(times) == 1 and 0 < times[0] <= ttl + 3, times

    pd_bench.print_lookups(res, 4, 0.5, 4, 1)
    pd_bench.print_failover(times, ttl)
    out = capsys.readouterr().out
    assert re.search(r"^pd query\s+\d+\s+\d+\.\d\d", out, re.M), out
    assert re.search(r"^etcd meta\s+\d+\s+1\.00", out, re.M), out
    assert f"leader_ttl {ttl}s" in out and "median" in out, out


def test_repair_after_data_node_kill(capsys):
    with pd_bench.repair_cluster() as cluster:
        r = pd_bench.repair_time(cluster, 4)
        pd_settings, node_settings = cluster.pd_settings, cluster.node_settings
        dead = [n for n in cluster.nodes if n.proc is not None and n.proc.poll() is not None]
        assert len(dead) == 1

    grace = pd_settings["node_grace_period"]
    assert r["partitions"] == 4 and r["hosted"] >= 1, r
    assert r["grace"] == grace
    # The PD moves replicas only after the grace period, and only after it saw the loss.
    assert 0 < r["pd_lost"] <= r["placed"] <= r["repair"], r
    assert r["repair"] >= grace, r
    assert r["repair_minus_grace"] == pytest.approx(r["repair"] - grace)
    assert r["after_grace"] == pytest.approx(r["repair"] - r["pd_lost"] - grace)
    assert r["after_grace"] > 0, r
    assert r["repair"] < grace + node_settings["etcd_node_ttl"] + 30, r

    pd_bench.print_repairs([r], pd_settings, node_settings)
    out = capsys.readouterr().out
    assert f"node_grace_period {grace:g}s" in out, out
    assert re.search(r"^\s+4\s+\d+(\s+\d+\.\d\d){5}$", out, re.M), out
