"""Run a real `twistd -n zan-node` process from the source tree for integration tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from tests.support.processes import free_port, stop_process, wait_for_port

__all__ = ["ZanNode", "REPO_ROOT"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ZanNode:
    def __init__(self, data_dir: str | None = None, server_conf: dict | None = None,
                 extra_args: list[str] | None = None):
        self.tmp = tempfile.mkdtemp(prefix="zan-node-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.redis_port = free_port()
        self.http_port = free_port()
        self.server_conf = server_conf
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.tmp, "node.log")

    def command(self) -> list[str]:
        args = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "--logfile", self.log_path, "zan-node",
                "--data-dir", self.data_dir,
                "--redis-addr", f"127.0.0.1:{self.redis_port}",
                "--http-addr", f"127.0.0.1:{self.http_port}"]
        if self.server_conf is not None:
            path = os.path.join(self.tmp, "node.json")
            with open(path, "w") as f:
                json.dump({"server_conf": self.server_conf}, f)
            args += ["--config", path]
        return args + self.extra_args

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, timeout: float = 30.0) -> "ZanNode":
        self.proc = subprocess.Popen(self.command(), cwd=self.tmp, env=self.env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.redis_port, timeout, self.proc)
            wait_for_port(self.http_port, timeout, self.proc)
        except Exception:
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"zan-node did not start:\n{self.output()}")
        return self

    def output(self) -> str:
        text = ""
        if self.proc is not None and self.proc.stdout is not None and self.proc.poll() is not None:
            text += self.proc.stdout.read().decode("utf-8", "replace")
        if os.path.exists(self.log_path):
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                text += f.read()[-8000:]
        return text

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout=20)

    def restart(self) -> "ZanNode":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)
