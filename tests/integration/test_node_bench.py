"""bench/node_bench.py end to end on tiny parameters: every server it compares starts and
answers, and the table carries a figure and a ratio for each of them.  The floor server
also keeps what it acknowledged across a restart."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import redis

from tests.support.processes import free_port
from bench.node_bench import ROOT, Server

pytestmark = [pytest.mark.integration]


def test_the_benchmark_prints_every_server_and_ratio():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "node_bench.py"), "-n", "2000",
         "--tests", "set,get", "--keys", "2000"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for test in ("set", "get"):
        for pipeline in (1, 16):
            # test, -P, zan, bare, floor, redis, aof, zan/bare, floor/bare, zan/floor,
            # zan/redis, zan/aof
            row = (rf"^{test}\s+{pipeline}\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+"
                   r"(\s+\d+\.\d\d){5}$")
            assert re.search(row, out.stdout, re.M), out.stdout
    assert re.search(r"2000 keys loaded .* DBSIZE after restart 2000$", out.stdout, re.M), out.stdout
    # Transactions against redis-server fsyncing every write, with the ratio.
    assert re.search(r"^multi_exec\s+\d+\s+\d+\s+\d\.\d\d ", out.stdout, re.M), out.stdout
    assert re.search(r"^zunionstore\s+\S+\s+\d+\s+\S+ ", out.stdout, re.M), out.stdout
    assert re.search(r"^evalsha\s+\d+\s+\d+\s+\d\.\d\d ", out.stdout, re.M), out.stdout
    assert re.search(r"^fcall\s+\S+\s+\d+\s+\S+ ", out.stdout, re.M), out.stdout


def test_the_floor_server_keeps_acknowledged_writes(tmp_path):
    port = free_port()
    floor = Server("floor", [sys.executable, os.path.join(ROOT, "bench", "floor_server.py"),
                             "--port", str(port), "--dir", str(tmp_path)], port)
    floor.start()
    try:
        client = redis.Redis(port=port, protocol=2)
        with client.pipeline(transaction=False) as pipe:
            for i in range(100):
                pipe.set(b"k%d" % i, b"v%d" % i)
            assert pipe.execute() == [True] * 100
        assert client.get(b"k7") == b"v7" and client.get(b"absent") is None
        client.close()
    finally:
        floor.stop()
    floor.start()
    try:
        client = redis.Redis(port=port, protocol=2)
        assert [client.get(b"k%d" % i) for i in range(100)] == [b"v%d" % i for i in range(100)]
        client.close()
    finally:
        floor.stop()


def test_the_growth_benchmark_prints_a_row_per_operation():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "growth_bench.py"), "--sizes", "10,1000",
         "-n", "300"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for op in ("hget", "sismember", "zscore", "zrank", "lindex_mid", "lrange_100",
               "zrangebyscore_100", "scard", "zcard", "hlen"):
        assert re.search(rf"^{op}\s+\d+\s+\d+\s+\d+\.\d\d$", out.stdout, re.M), out.stdout


def test_the_types_benchmark_prints_every_ratio():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "types_bench.py"), "-n", "300",
         "--points", "300"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for test in ("pfadd", "pfcount", "geoadd", "geosearch", "json.set", "json.get"):
        assert re.search(rf"^{re.escape(test)}\s+\d+\s+\d+\s+\d+\.\d\d$", out.stdout, re.M), \
            out.stdout


@pytest.mark.slow
def test_the_cluster_benchmark_sets_zan_beside_etcd():
    if shutil.which("etcd") is None:
        pytest.skip("etcd is not installed")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "cluster_bench.py"), "-n", "2000",
         "--failovers", "0", "--tests", "set,get", "--etcd-seconds", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("durable writes/s, -P 1", "durable writes/s, -P 16",
                  "linearizable GET/s, -P 1"):
        assert re.search(rf"^{re.escape(label)}\s+\d+\s+\d+\s+\d+\.\d\d\s+>= ", out.stdout,
                         re.M), out.stdout
