"""Start and stop real server processes for tests: free ports, readiness, clean teardown."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import hiredis

__all__ = ["free_port", "free_port_range", "wait_for_port", "RedisServer", "RawClient", "stop_process"]


# Ports for servers the tests start come from below the kernel's ephemeral range
# (32768-60999 on Linux), one slice per xdist worker: a port handed out here and bound a
# moment later by a child process cannot be taken meanwhile by some outgoing connection
# or by another worker.
_PORT_BASE = 20000
_PORT_SLICE = 3000
_next_port = None


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in worker if ch.isdigit())
    return int(digits) % 4 if digits else 0


def free_port() -> int:
    global _next_port
    low = _PORT_BASE + _worker_index() * _PORT_SLICE
    if _next_port is None:
        _next_port = low + (os.getpid() % _PORT_SLICE)
    for _ in range(_PORT_SLICE):
        port = _next_port
        _next_port = low + (_next_port - low + 1) % _PORT_SLICE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left in this worker's slice")


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports, all free now, from this worker's slice; the
    ports after it are not handed out again by `free_port` for a while."""
    global _next_port
    low = _PORT_BASE + _worker_index() * _PORT_SLICE
    if _next_port is None:
        _next_port = low + (os.getpid() % _PORT_SLICE)
    for _ in range(_PORT_SLICE // count):
        first = _next_port
        if first + count > low + _PORT_SLICE:
            first = low
        _next_port = low + (first + count - low) % _PORT_SLICE
        socks = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports left in this worker's slice")


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a process this test started (by its PID), escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class RedisServer:
    """A throw-away redis-server on 127.0.0.1 (no persistence)."""

    def __init__(self, *extra_args: str):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="zan-redis-")
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> "RawClient":
        return RawClient(self.port)


class RawClient:
    """A blocking RESP2 client returning raw replies: bytes, int, None, lists, and errors as
    `hiredis.ReplyError` values (not raised), so replies compare exactly."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = hiredis.Reader()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self):
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.reader.feed(chunk)

    def call(self, *argv):
        parts = [b"*%d\r\n" % len(argv)]
        for a in argv:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self.read_reply()

    def close(self) -> None:
        self.sock.close()
