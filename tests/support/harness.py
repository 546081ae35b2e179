"""Run commands through the data layer exactly as a node's partition does, in-process.

`PartitionHarness` is one partition: write commands become command entries applied at
consecutive log indexes, reads run on the current state, both through the command table
with Redis's existence and arity checks first.  Replies are normalised so they compare
with a real redis-server's (see `normalize`).
"""

from __future__ import annotations

import hiredis

import random

from zan.commands.cursors import SCAN_CURSOR_ARG, CursorRegistry
from zan.commands.table import Route, check_arity, lookup_command
from zan.errors import ZanError
from zan.resp.types import NULL_ARRAY, SimpleString
from zan.store.engine import LevelDBEngine
from zan.store.keyspace import DEFAULT_OPTIONS
from zan.store.statemachine import PartitionStateMachine, encode_command_entry

__all__ = ["PartitionHarness", "normalize", "Err", "scan_to_end", "CountingGets"]


class CountingGets:
    """A read source (an engine, a plyvel DB) that counts the point reads passing through
    it; everything else goes straight to the source."""

    def __init__(self, source):
        self._source = source
        self.gets = 0

    def get(self, key):
        self.gets += 1
        return self._source.get(key)

    def __getattr__(self, name):
        return getattr(self._source, name)


class Err(str):
    """An error reply's text, so errors compare equal across both sides."""


def normalize(reply):
    if isinstance(reply, ZanError):
        return Err(reply.resp_message())
    if isinstance(reply, hiredis.ReplyError):
        return Err(str(reply))
    if isinstance(reply, SimpleString):
        return bytes(reply)
    if reply is NULL_ARRAY:
        return None
    if isinstance(reply, (list, tuple)):
        return [normalize(r) for r in reply]
    return reply


class PartitionHarness:
    def __init__(self, path: str, now_ms: int = 1_700_000_000_000, options=DEFAULT_OPTIONS):
        self.engine = LevelDBEngine(path)
        self.sm = PartitionStateMachine(self.engine, options)
        self.now_ms = now_ms
        self.seed = 12345
        self.index = self.sm.applied_index
        # Integer cursors for SCAN/HSCAN/SSCAN/ZSCAN, translated as the node does.
        self.cursors = CursorRegistry(rng=random.Random(7))

    def call(self, *argv):
        """Run one command; returns the raw reply (errors as ZanError values).  Scan
        cursors are integers, as a client sees them (see `call_raw` for tokens)."""
        return self._call(argv, translate_cursors=True)

    def call_raw(self, *argv):
        """Like `call`, but scan handlers get and return their opaque tokens."""
        return self._call(argv, translate_cursors=False)

    def _call(self, argv, *, translate_cursors: bool):
        argv = [a.encode() if isinstance(a, str) else str(a).encode() if isinstance(a, int)
                else a for a in argv]
        try:
            spec = lookup_command(argv)
            check_arity(spec, len(argv))
            pos = SCAN_CURSOR_ARG.get(spec.name) if translate_cursors else None
            if pos is not None:
                context = (spec.name, argv[1]) if pos == 2 else (spec.name,)
                argv[pos] = self.cursors.resolve(argv[pos], context).token
                reply = self._run(spec, argv)
                if isinstance(reply, list):
                    reply = [self.cursors.issue(reply[0], context), reply[1]]
                return reply
            return self._run(spec, argv)
        except ZanError as e:
            return e

    def _run(self, spec, argv):
        if spec.route is Route.SERVER:
            raise AssertionError(f"{spec.name} is a server command")
        if spec.is_write:
            self.index += 1
            self.seed += 1
            return self.sm.apply(self.index, encode_command_entry(
                self.now_ms, self.seed, spec.name, argv[1:]))
        return self.sm.read(spec.name, argv[1:], self.now_ms, self.seed)

    def ncall(self, *argv):
        return normalize(self.call(*argv))

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def close(self) -> None:
        self.engine.close()


def scan_to_end(call, argv):
    """Run a key scan, ``argv`` = ``[HSCAN|SSCAN|ZSCAN, key, *options]`` (no cursor), page
    by page to its end through ``call``; returns (error or None, every item collected)."""
    name, key, opts = argv[0], argv[1], argv[2:]
    cursor = "0"
    items = []
    for _ in range(1000):
        reply = normalize(call(name, key, cursor, *opts))
        if isinstance(reply, Err):
            return reply, None
        cursor, page = reply
        items += page
        if cursor in (b"0", 0):
            return None, items
    raise AssertionError("scan did not finish")
