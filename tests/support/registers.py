"""Clients for fault runs: threads doing GET/SET/INCR/SETIFEQ on a few keys through
every node of a cluster, recorded in a `History` for the linearizability checker, and
SADDs whose acknowledged members must all survive."""

from __future__ import annotations

import itertools
import random
import threading
import time

import hiredis

from tests.support.linearizability import History

__all__ = ["RegisterClients"]


def _is_error(reply) -> bool:
    return isinstance(reply, hiredis.ReplyError)


# Errors a write gets only when it was never proposed.
_NOT_PROPOSED = ("is not leader on the node", "has no leader", "raft proposal dropped",
                 "is not found")


class RegisterClients:
    """Client threads doing GET/SET/INCR/SETIFEQ on a few keys through different nodes,
    recorded in a `History`; plus SADDs whose acknowledged members must survive."""

    def __init__(self, cluster, keys: list[str], threads: int = 4, seed: int = 7):
        self.cluster = cluster
        self.keys = keys
        self.history = History()
        self.members: set[str] = set()
        self.ops = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t, seed), daemon=True)
                         for t in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, t: int, seed: int) -> None:
        rng = random.Random(seed * 100 + t)
        order = self.cluster.nodes[t % 3:] + self.cluster.nodes[:t % 3]
        nodes = itertools.cycle(order)
        client = None
        last_seen: dict[str, bytes] = {}
        for i in itertools.count():
            if self._stop.is_set():
                break
            if client is None:
                try:
                    client = next(nodes).client(timeout=5)
                except OSError:
                    time.sleep(0.05)
                    continue
            key = rng.choice(self.keys)
            roll = rng.random()
            if roll < 0.35:
                kind, argv, args = "read", ("GET", key), {}
            elif roll < 0.6:
                value = str(rng.randrange(1000))
                kind, argv, args = "write", ("SET", key, value), {"value": value}
            elif roll < 0.8:
                kind, argv, args = "incr", ("INCR", key), {}
            elif roll < 0.92:
                expected = last_seen.get(key, b"0").decode()
                value = str(rng.randrange(1000, 2000))
                kind, argv = "cas", ("SETIFEQ", key, expected, value)
                args = {"value": value, "expected": expected}
            else:
                member = f"m{t}:{i}"
                try:
                    if client.call("SADD", "lin-set", member) == 1:
                        self.members.add(member)
                except (OSError, ConnectionError):
                    client.close()
                    client = None
                continue
            op = self.history.invoke(t, key, kind, **args)
            self.ops += 1
            try:
                reply = client.call(*argv)
            except (OSError, ConnectionError):
                self.history.unknown(op)
                client.close()
                client = None
                continue
            if _is_error(reply):
                # A read that failed had no effect, nor did a write refused before it was
                # proposed; any other error of a write (leader change, timeout) may come
                # after its entry was proposed, so it may or may not have happened.
                if kind == "read" or any(t in str(reply) for t in _NOT_PROPOSED):
                    self.history.fail(op)
                else:
                    self.history.unknown(op)
                # As a client would: try another node.
                client.close()
                client = None
                time.sleep(0.05)
                continue
            self.history.ok(op, reply)
            time.sleep(0.005)
            if kind == "read" and reply is not None:
                last_seen[key] = reply
            elif kind == "incr":
                last_seen[key] = str(reply).encode()
            elif kind == "write":
                last_seen[key] = args["value"].encode()
