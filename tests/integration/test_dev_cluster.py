"""scripts/dev-cluster: starts etcd, two PDs and three etcd-mode data nodes, serves the
default namespace through every node, stops everything it started on SIGINT, and reuses
its data when run again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support.node import REPO_ROOT
from tests.support.processes import free_port_range

pytestmark = pytest.mark.integration

SCRIPT = os.path.join(REPO_ROOT, "scripts", "dev-cluster")
PORTS = 34          # BASE .. BASE+33
READY = "Zan dev cluster ready"


def _need_tools():
    for tool in ("etcd", "redis-cli", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


class DevCluster:
    """One run of the script, in its own process group."""

    def __init__(self, base: int, data_dir: str):
        self.base = base
        self.dir = data_dir
        env = dict(os.environ)
        # The twistd next to this interpreter (the script falls back to PATH).
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["ZAN_DEV_PORT_BASE"] = str(base)
        env["ZAN_DEV_DIR"] = data_dir
        env.pop("ZAN_DEV_NAMESPACE", None)
        self.proc = subprocess.Popen([SCRIPT], env=env, cwd=REPO_ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(READY) for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"dev-cluster exited with {self.proc.returncode}:\n"
                                     f"{self.output()}\n{self.logs()}")
            time.sleep(0.2)
        raise AssertionError(f"dev-cluster not ready after {timeout}s:\n{self.output()}\n"
                             f"{self.logs()}")

    def pids(self) -> dict[str, int]:
        with open(os.path.join(self.dir, "pids"), encoding="utf-8") as f:
            return {name: int(pid) for name, pid in (line.split() for line in f if line.strip())}

    def logs(self) -> str:
        out = []
        for name in ("etcd", "pd1", "pd2", "node1", "node2", "node3"):
            try:
                with open(os.path.join(self.dir, f"{name}.log"), encoding="utf-8",
                          errors="replace") as f:
                    out.append(f"--- {name}.log (end)\n" + f.read()[-2000:])
            except OSError:
                pass
        return "\n".join(out)

    def redis_port(self, i: int) -> int:
        return self.base + 10 * i + 1

    def stop(self, timeout: float = 90) -> int:
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill_all(self) -> None:
        """Last resort after a failure: the whole process group, then any PID listed."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pids = _safe_pids(self)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10      # orphans are reaped by init, not at once
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)


def _redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=15).stdout.strip()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(base: int, data_dir: str, body) -> None:
    cluster = DevCluster(base, data_dir)
    try:
        cluster.wait_ready(240)
        pids = cluster.pids()
        assert sorted(pids) == ["etcd", "node1", "node2", "node3", "pd1", "pd2"]
        assert all(_alive(pid) for pid in pids.values())
        body(cluster)
        rc = cluster.stop()
        assert rc == 130, cluster.output()
        assert cluster.lines[-1] == "dev-cluster: stopped", cluster.output()
        still = {name: pid for name, pid in pids.items() if _alive(pid)}
        assert not still, f"still running after the script exited: {still}"
    finally:
        if cluster.proc.poll() is None or any(_alive(p) for p in _safe_pids(cluster)):
            cluster.kill_all()


def _safe_pids(cluster: DevCluster) -> list[int]:
    try:
        return list(cluster.pids().values())
    except (OSError, ValueError):
        return []


@pytest.mark.slow
def test_dev_cluster_serves_through_every_node_stops_on_sigint_and_restarts(tmp_path):
    _need_tools()
    base = free_port_range(PORTS)
    data_dir = str(tmp_path / "dev")
    myids = {}

    def first(cluster):
        assert "created namespace default" in cluster.output()
        assert _redis_cli(cluster.redis_port(1), "set", "foo", "bar") == "OK"
        assert _redis_cli(cluster.redis_port(2), "get", "foo") == "bar"
        for i in (1, 2, 3):
            with open(os.path.join(data_dir, f"node{i}", "myid")) as f:
                myids[i] = f.read().strip()

    _run(base, data_dir, first)

    def again(cluster):
        assert "created namespace" not in cluster.output()
        assert _redis_cli(cluster.redis_port(3), "get", "foo") == "bar"
        for i in (1, 2, 3):
            with open(os.path.join(data_dir, f"node{i}", "myid")) as f:
                assert f.read().strip() == myids[i]

    _run(base, data_dir, again)


def test_dev_cluster_refuses_a_taken_port(tmp_path):
    _need_tools()
    base = free_port_range(PORTS)
    taken = base + 21
    with socket.socket() as s:
        s.bind(("127.0.0.1", taken))
        s.listen()
        env = dict(os.environ, ZAN_DEV_PORT_BASE=str(base), ZAN_DEV_DIR=str(tmp_path / "dev"))
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run([SCRIPT], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 1
    assert f"port(s) already in use on 127.0.0.1: {taken}" in proc.stderr
    assert not os.path.exists(tmp_path / "dev" / "pids")
