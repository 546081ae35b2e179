"""Standalone node throughput against a bare and a floor Twisted RESP server and redis-server.

One command, one interleaved run:

    python bench/node_bench.py [-n 100000] [--rounds 1] [--tests set,get,...] [--keys 1000000]

For each test and pipeline depth (-P 1, -P 16) it runs `redis-benchmark -c 50 -n N -r 100000`
against the Zan node (durable: every write fsynced through group commit), the bare server
of bench/bare_server.py (GET/SET on a dict: what Twisted and Python cost with no storage),
the floor server of bench/floor_server.py (GET/SET made durable and stored as Zan does,
and nothing more: what no design on this stack avoids), redis-server with no persistence
and redis-server with `appendfsync always` (aof: durable as Zan is), rotating the order
each round; it prints the median requests/s of each and the ratios.
Then, against redis-server with `appendonly yes` and `appendfsync always` (every write
fsynced, as Zan's are), it measures transactions (`MULTI`, 10 `SET`s of keys spread over
the partitions, `EXEC`; 50 connections, each sending its next transaction once the last
is answered), `ZUNIONSTORE` of two 100-member sorted sets, and `EVALSHA` of a script of
three commands on two keys and `FCALL` of the same as a function (redis-benchmark -c 50),
and prints each and its ratio.  Then it loads --keys keys into a fresh node and prints its
RSS and the time a restart takes until it answers again.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Ports from below the ephemeral range: one the kernel picked could be taken by one of the
# benchmark's own outgoing connections before the server meant for it listens.
from tests.support.processes import free_port  # noqa: E402
DEFAULT_TESTS = ("set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,"
                 "lrange_300,mset")
BARE_TESTS = {"set", "get"}  # all the bare and floor servers know


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"port {port} not answering")


class Server:
    def __init__(self, name: str, argv: list[str], port: int, env=None, cwd=None):
        self.name, self.argv, self.port, self.env, self.cwd = name, argv, port, env, cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return wait_port(self.port, self.proc)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


def zan_server(data_dir: str, port: int, http_port: int) -> Server:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return Server("zan", [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                          "-n", "--pidfile=", "--logfile=/dev/null", "zan-node",
                          "--data-dir", data_dir, "--redis-addr", f"127.0.0.1:{port}",
                          "--http-addr", f"127.0.0.1:{http_port}"], port, env=env, cwd=data_dir)


def redis_benchmark(port: int, test: str, pipeline: int, n: int) -> float:
    return _benchmark_figure(["-r", "100000", "-P", str(pipeline), "-t", test], port, n)


def _benchmark_figure(args: list[str], port: int, n: int) -> float:
    """Requests/s of `redis-benchmark -c 50 -n n` with `args`, from its CSV output."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(n), "--csv", *args],
        capture_output=True, text=True, timeout=1800).stdout
    for line in out.splitlines():
        # "test","rps", then 6 latencies; the test (the command's words, unescaped) may
        # hold commas and quotes, so the figures are counted from the right.
        fields = [f.strip('"') for f in line.rsplit(",", 7)]
        if len(fields) == 8 and re.match(r"[0-9.]+$", fields[1]):
            return float(fields[1])
    raise RuntimeError(f"no figure from redis-benchmark {args}: {out!r}")


def _command(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def multi_exec_rate(port: int, transactions: int, clients: int = 50, sets: int = 10) -> float:
    """Transactions/s: `clients` connections each send MULTI, `sets` SETs and EXEC in one
    write, read the replies, then send the next (one event loop: the load generator's
    Python costs the same against every server)."""
    import hiredis

    rng = random.Random(7)

    def transaction() -> bytes:
        keys = [b"tx:%d" % rng.randrange(100000) for _ in range(sets)]
        return _command(b"MULTI") + b"".join(_command(b"SET", k, b"v") for k in keys) + \
            _command(b"EXEC")
    requests = [transaction() for _ in range(256)]
    selector = selectors.DefaultSelector()
    readers = {}
    sent = done = 0
    start = time.monotonic()
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        readers[sock] = [hiredis.Reader(), 0]
        selector.register(sock, selectors.EVENT_READ)
        sock.sendall(requests[sent % len(requests)])
        sent += 1
    while done < transactions:
        for key, _ in selector.select():
            sock = key.fileobj
            reader, got = readers[sock]
            reader.feed(sock.recv(1 << 16))
            while reader.gets() is not False:
                got += 1
                if got == sets + 2:
                    got = 0
                    done += 1
                    if sent < transactions:
                        sock.setblocking(True)
                        sock.sendall(requests[sent % len(requests)])
                        sock.setblocking(False)
                        sent += 1
            readers[sock][1] = got
    elapsed = time.monotonic() - start
    for sock in readers:
        selector.unregister(sock)
        sock.close()
    return transactions / elapsed


def zunionstore_rate(port: int, n: int) -> float:
    """ZUNIONSTORE of two 100-member sorted sets, redis-benchmark -c 50 (0: unsupported)."""
    load = b"".join(_command(b"ZADD", name, b"%d" % i, b"m%d" % (i * step))
                    for name, step in ((b"za", 1), (b"zb", 2)) for i in range(100))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=load, capture_output=True,
                   timeout=60)
    probe = subprocess.run(["redis-cli", "-p", str(port), "zunionstore", "zdst", "2", "za", "zb"],
                           capture_output=True, text=True, timeout=60).stdout
    if not probe.strip().isdigit():
        return 0.0
    return _benchmark_figure(["zunionstore", "zdst", "2", "za", "zb"], port, n)


_SCRIPT = ("redis.call('incr', KEYS[1]) redis.call('set', KEYS[2], ARGV[1]) "
           "return redis.call('get', KEYS[2])")
_LIBRARY = ("#!lua name=benchlib\nredis.register_function('three', function(KEYS, ARGV) "
            + _SCRIPT + " end)")
_SCRIPT_KEYS = ["2", "c:__rand_int__", "v:__rand_int__", "x"]


def script_rate(port: int, n: int, kind: str) -> float:
    """EVALSHA of a 3-command script, or FCALL of the same function, redis-benchmark -c 50
    (0: the server does not run it)."""
    if kind == "evalsha":
        load = ["script", "load", _SCRIPT]
    else:
        load = ["function", "load", "replace", _LIBRARY]
    loaded = subprocess.run(["redis-cli", "-p", str(port), *load], capture_output=True,
                            text=True, timeout=60).stdout.strip()
    if not loaded or loaded.startswith("ERR") or "error" in loaded.lower():
        return 0.0
    words = ["evalsha", loaded] if kind == "evalsha" else ["fcall", "three"]
    try:
        return _benchmark_figure(["-r", "100000", *words, *_SCRIPT_KEYS], port, n)
    except RuntimeError:
        return 0.0


def multi_key_table(zan: "Server", aof_redis: "Server", n: int, rounds: int) -> None:
    """Transactions and ZUNIONSTORE against redis-server fsyncing every write."""
    figures: dict[tuple[str, str], list[float]] = {}
    for rnd in range(rounds):
        order = (zan, aof_redis) if rnd % 2 == 0 else (aof_redis, zan)
        for s in order:
            flush(s.port)
            figures.setdefault(("multi_exec", s.name), []).append(
                multi_exec_rate(s.port, max(500, n // 20)))
            figures.setdefault(("zunionstore", s.name), []).append(
                zunionstore_rate(s.port, max(1000, n // 10)))
            for kind in ("evalsha", "fcall"):
                figures.setdefault((kind, s.name), []).append(
                    script_rate(s.port, max(1000, n // 10), kind))
    print(f"\nagainst redis-server with appendfsync always (median of {rounds} round(s))\n")
    print(f"{'test':<12} {'zan':>10} {'redis-aof':>10} {'zan/redis':>10}")
    for test, unit in (("multi_exec", "txn/s: MULTI, 10 SETs over the partitions, EXEC"),
                       ("zunionstore", "ZUNIONSTORE of two 100-member sets"),
                       ("evalsha", "EVALSHA of a script of 3 commands on 2 keys"),
                       ("fcall", "FCALL of the same as a function")):
        z = statistics.median(figures[(test, zan.name)])
        r = statistics.median(figures[(test, aof_redis.name)])
        print(f"{test:<12} {_figure(z):>10} {_figure(r):>10} {_ratio(z, r):>10}   {unit}")


def flush(port: int) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, timeout=600)


def load_keys(port: int, count: int) -> float:
    """SET count distinct keys through redis-cli --pipe; returns seconds taken."""
    def stream():
        for i in range(count):
            k = b"key:%012d" % i
            yield b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$10\r\nvalue%05d\r\n" % (len(k), k, i % 100000)
    start = time.monotonic()
    proc = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    chunk = []
    for cmd in stream():
        chunk.append(cmd)
        if len(chunk) == 10000:
            proc.stdin.write(b"".join(chunk))
            chunk = []
    proc.stdin.write(b"".join(chunk))
    proc.stdin.close()
    proc.wait()
    return time.monotonic() - start


def _figure(value: float | None) -> str:
    return f"{value:.0f}" if value else "-"


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value and reference else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tests", default=DEFAULT_TESTS)
    ap.add_argument("--keys", type=int, default=1000000, help="keys for the RSS/restart figure (0: skip)")
    ap.add_argument("--multi-key", type=int, default=1, metavar="ROUNDS",
                    help="rounds of the transaction and ZUNIONSTORE figures (0: skip)")
    args = ap.parse_args()
    for tool in ("redis-benchmark", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install redis-server redis-tools)")

    tmp = tempfile.mkdtemp(prefix="zan-bench-")
    ports = {name: free_port() for name in ("zan", "bare", "floor", "redis", "aof")}
    servers = [
        zan_server(os.path.join(tmp, "zan"), ports["zan"], free_port()),
        Server("bare", [sys.executable, os.path.join(ROOT, "bench", "bare_server.py"),
                        "--port", str(ports["bare"])], ports["bare"]),
        Server("floor", [sys.executable, os.path.join(ROOT, "bench", "floor_server.py"),
                         "--port", str(ports["floor"]), "--dir", os.path.join(tmp, "floor")],
               ports["floor"]),
        Server("redis", ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                         "--save", "", "--appendonly", "no", "--dir", tmp], ports["redis"]),
        # Durable as Zan is: every write fsynced before it is answered.
        Server("aof", ["redis-server", "--port", str(ports["aof"]), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                       "--dir", os.path.join(tmp, "aof")], ports["aof"]),
    ]
    os.makedirs(os.path.join(tmp, "zan"))
    os.makedirs(os.path.join(tmp, "aof"))
    results: dict[tuple[str, str, int], list[float]] = {}
    tests = args.tests.split(",")
    try:
        for s in servers:
            s.start()
        for rnd in range(args.rounds):
            for pipeline in (1, 16):
                for test in tests:
                    order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
                    for s in order:
                        if s.name in ("bare", "floor") and test not in BARE_TESTS:
                            continue
                        rps = redis_benchmark(s.port, test, pipeline, args.n)
                        results.setdefault((test, s.name, pipeline), []).append(rps)
                        print(f"  round {rnd + 1} -P {pipeline:<2} {test:<11} {s.name:<5} {rps:>10.0f}/s",
                              file=sys.stderr, flush=True)
        print(f"\nredis-benchmark -c 50 -n {args.n} -r 100000, median of {args.rounds} round(s)\n")
        print(f"{'test':<11} {'-P':>3} {'zan':>10} {'bare':>10} {'floor':>10} {'redis':>10} "
              f"{'aof':>10} {'zan/bare':>9} {'floor/bare':>11} {'zan/floor':>10} "
              f"{'zan/redis':>10} {'zan/aof':>8}")
        for pipeline in (1, 16):
            for test in tests:
                med = {name: statistics.median(results[(test, name, pipeline)])
                       for name in ("zan", "bare", "floor", "redis", "aof")
                       if (test, name, pipeline) in results}
                bare, floor = med.get("bare"), med.get("floor")
                print(f"{test:<11} {pipeline:>3} {med['zan']:>10.0f} "
                      f"{_figure(bare):>10} {_figure(floor):>10} {med['redis']:>10.0f} "
                      f"{med['aof']:>10.0f} {_ratio(med['zan'], bare):>9} "
                      f"{_ratio(floor, bare):>11} {_ratio(med['zan'], floor):>10} "
                      f"{med['zan'] / med['redis']:>10.2f} {med['zan'] / med['aof']:>8.2f}")
        print("\ntargets: against the floor, SET >= 0.9x at -P 1 and >= 0.8x at -P 16, GET >= 0.9x "
              "at -P 16;\n         against aof (redis-server, appendfsync always), every test "
              ">= 0.4x at -P 1 and >= 0.25x at -P 16")
        print("floor: durable SET and GET with nothing else (bench/floor_server.py); floor/bare "
              "bounds zan/bare on this stack")
    finally:
        for s in servers:
            s.stop()

    if args.multi_key:
        aof_port = free_port()
        aof_dir = os.path.join(tmp, "redis-aof")
        os.makedirs(aof_dir)
        zan_dir = os.path.join(tmp, "zan-multi")
        os.makedirs(zan_dir)
        pair = [zan_server(zan_dir, free_port(), free_port()),
                Server("redis-aof", ["redis-server", "--port", str(aof_port), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "yes",
                                     "--appendfsync", "always", "--dir", aof_dir], aof_port)]
        try:
            for s in pair:
                s.start()
            multi_key_table(pair[0], pair[1], args.n, args.multi_key)
        finally:
            for s in pair:
                s.stop()

    if args.keys:
        data = os.path.join(tmp, "zan-keys")
        os.makedirs(data)
        port = free_port()
        node = zan_server(data, port, free_port())
        node.start()
        try:
            took = load_keys(port, args.keys)
            rss = node.rss_mb()
            node.stop()
            restart = node.start()
            out = subprocess.run(["redis-cli", "-p", str(port), "dbsize"], capture_output=True,
                                 text=True).stdout.strip()
            print(f"\n{args.keys} keys loaded in {took:.1f}s; RSS {rss:.0f} MB (target < 250); "
                  f"restart until PING answers {restart:.2f}s (target < 3); DBSIZE after restart {out}")
        finally:
            node.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
