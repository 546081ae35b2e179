"""Hostile and malformed request streams: our server must answer byte for byte like redis-server.

Both servers run as real processes on 127.0.0.1 free ports: redis-server 7.0, and
`RespServerFactory` with a dispatcher that knows PING and ECHO.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SERVER = r"""
import sys
from twisted.internet import reactor
from zan.errors import wrong_arity
from zan.resp.protocol import RespServerFactory
from zan.resp.types import PONG

class Dispatcher:
    def dispatch(self, client, argv):
        name = argv[0].lower()
        if name == b"ping":
            if len(argv) > 2:
                raise wrong_arity("ping")
            return PONG if len(argv) == 1 else argv[1]
        if name == b"echo":
            if len(argv) != 2:
                raise wrong_arity("echo")
            return argv[1]
        raise wrong_arity(name.decode("latin-1"))

reactor.listenTCP(int(sys.argv[1]), RespServerFactory(Dispatcher(), reactor), interface="127.0.0.1")
reactor.run()
"""


def wait_port(port, proc):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def servers():
    procs = []
    try:
        rport, zport = free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SERVER, str(zport)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT}))
        wait_port(rport, procs[0])
        wait_port(zport, procs[1])
        yield rport, zport
    finally:
        for p in procs:
            p.kill()
            p.wait()


def exchange(port, data, quiet=0.3):
    """Send data; collect the reply until EOF, or until `quiet` seconds pass with nothing new."""
    s = socket.create_connection(("127.0.0.1", port))
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(quiet)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, "open"
            except ConnectionResetError:
                # Closing with unread input sends RST instead of FIN; both are a close.
                return out, "closed"
            if not chunk:
                return out, "closed"
            out += chunk
    finally:
        s.close()


CASES = {
    "negative multibulk": b"*-5\r\nPING\r\n",
    "zero multibulk": b"*0\r\n*1\r\n$4\r\nPING\r\n",
    "multibulk too big": b"*2147483648\r\n",
    "multibulk not a number": b"*abc\r\n",
    "multibulk leading zero": b"*01\r\n$4\r\nPING\r\n",
    "multibulk huge number": b"*99999999999999999999999\r\n",
    "negative bulk": b"*1\r\n$-1\r\n",
    "bulk leading zero": b"*1\r\n$04\r\nPING\r\n",
    "bulk over 512 MiB": b"*2\r\n$4\r\nECHO\r\n$536870913\r\n",
    "bulk not a number": b"*1\r\n$x\r\nPING\r\n",
    "missing dollar": b"*2\r\n$4\r\nECHO\r\nfoo\r\n",
    "empty line for dollar": b"*1\r\n\r\n",
    "high byte for dollar": b"*1\r\n\xff\r\n",
    "nested array": b"*1\r\n$4\r\nPING\r\n*1\r\n*1\r\n$4\r\nPING\r\n",
    "status element": b"*2\r\n$4\r\nECHO\r\n+OK\r\n",
    "cr without lf is skipped": b"*1\rX$4\r\nPINGZZ*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
    "truncated frame": b"*2\r\n$4\r\nECHO\r\n$10\r\nabc",
    "truncated header": b"*2\r\n$4\r\nECHO\r\n$1",
    "big declared bulk, little data": b"*2\r\n$4\r\nECHO\r\n$100000000\r\nabc",
    "inline": b"PING\r\necho hello\nECHO \"a\\x41\\n\\t\" 'it\\'s'\r\n\r\n\n",
    "inline unbalanced": b'PING\r\nECHO "abc\r\nPING\r\n',
    "inline quote not followed by space": b"ECHO 'a'b\r\n",
    "inline vertical tab": b"ECHO a\x0bb\r\nECHO \x0bc\r\n",
    "inline with NUL waits": b"PING a\0b\r\n",
    "count with NUL waits": b"*1\0\r\n",
    "1 MiB line without newline": b"x" * (1 << 20),
    "1 MiB multibulk count": b"*" + b"1" * (1 << 20),
    "1 MiB bulk count": b"*1\r\n$" + b"9" * (1 << 20),
    "70 KiB inline with NUL": b"ECHO \0" + b"a" * 70000 + b"\r\n",
    "garbage": bytes(range(256)) * 4,
    "pipeline then error": b"PING\r\n*1\r\n$4\r\nPING\r\n*3\r\n$4\r\nECHO\r\n$1\r\nx\r\n:1\r\n",
    "wrong arity": b"*1\r\n$4\r\nECHO\r\n",
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_bytes_as_redis(servers, name):
    rport, zport = servers
    data = CASES[name]
    expected = exchange(rport, data)
    got = exchange(zport, data)
    assert got == expected
