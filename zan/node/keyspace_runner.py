"""KEYS, RANDOMKEY and SORT as the node runs them.

KEYS and RANDOMKEY run on every partition, like any ALL_PARTITIONS command, but answer
keys as clients spell them: a key of a namespace other than the compat one carries its
``namespace:`` prefix.  RANDOMKEY picks a partition in proportion to its number of keys.

SORT's BY and GET patterns name keys that are not declared keys.  On a standalone node
SORT runs as one over every partition of its namespace, so those keys are read wherever
they live; on a replicated node it runs on its key's partition, where keys of other
partitions read as missing.  Either way a pattern naming a key of another namespace
reads as missing, and a STORE destination in another partition is CROSSSLOT on a
replicated node only.
"""

from __future__ import annotations

import random

from twisted.internet.defer import gatherResults, maybeDeferred

from zan.commands.keyspace import SORT_COMMANDS
from zan.errors import RespError
from zan.node.dispatch import CROSSSLOT, first_failure

__all__ = ["KeyspaceRunner"]


class KeyspaceRunner:
    def __init__(self, dispatcher, node, rng: random.Random):
        self._dispatcher = dispatcher
        self._node = node
        self._rng = rng

    def install(self) -> None:
        special = self._dispatcher.special
        special["keys"] = self.keys
        special["randomkey"] = self.randomkey
        for name in SORT_COMMANDS:
            special[name] = self.sort

    def _prefix(self, namespace: str) -> bytes:
        """How a key of `namespace` is spelled before its primary key."""
        if namespace == self._node.config.default_namespace:
            return b""
        return namespace.encode() + b":"

    def _on_every_partition(self, spec, args_of):
        partitions = sorted(self._dispatcher.partitions.partitions(),
                            key=lambda p: (p.namespace, p.pid))
        replies = [maybeDeferred(self._dispatcher.run_on, p, spec, args_of(p))
                   for p in partitions]
        return gatherResults(replies, consumeErrors=True).addErrback(
            first_failure).addCallback(lambda results: (partitions, results))

    # -- KEYS pattern ------------------------------------------------------------------

    def keys(self, spec, argv):
        def args_of(partition):
            prefix = self._prefix(partition.namespace)
            return [argv[1], prefix] if prefix else [argv[1]]

        return self._on_every_partition(spec, args_of).addCallback(
            lambda done: [key for reply in done[1] for key in _value(reply)])

    # -- RANDOMKEY ---------------------------------------------------------------------

    def randomkey(self, spec, argv):
        def pick(done):
            partitions, replies = done
            counted = [(_value(reply), p) for p, reply in zip(partitions, replies)]
            total = sum(reply[0] for reply, _ in counted)
            if not total:
                return None
            n = self._rng.randrange(total)
            for (count, pk), partition in counted:
                if n < count:
                    return self._prefix(partition.namespace) + pk
                n -= count
            raise AssertionError("a key was counted but not found")

        return self._on_every_partition(spec, lambda p: []).addCallback(pick)

    # -- SORT / SORT_RO ----------------------------------------------------------------

    def sort(self, spec, argv):
        dispatcher = self._dispatcher
        positions = list(spec.key_positions_of(argv))
        routes = [dispatcher.router.route(argv[pos]) for pos in positions]
        args = list(argv[1:])
        for pos, route in zip(positions, routes):
            args[pos - 1] = route.pk
        namespace = routes[0].namespace
        if any(route.namespace != namespace for route in routes):
            raise RespError(CROSSSLOT)
        self._patterns_in(namespace, args)
        if dispatcher.local_partitions:
            count = dispatcher.router.partition_count(namespace)
            return dispatcher.across(spec, namespace, list(range(count)), args)
        if len({route.partition for route in routes}) > 1:
            raise RespError(CROSSSLOT)
        partition = dispatcher.partitions.partition(namespace, routes[0].partition)
        return dispatcher.run_on(partition, spec, args)

    def _patterns_in(self, namespace: str, args: list[bytes]) -> None:
        """Rewrite BY and GET patterns (in place) to name primary keys of `namespace`.
        In the compat namespace a key is its own primary key, and one of another
        namespace is never stored there.  In another namespace a pattern must start
        with ``namespace:``; any other one is made to name no possible key (a primary
        key there starts with a table name, never with ':')."""
        prefix = self._prefix(namespace)
        if not prefix:
            return
        i = 1
        while i < len(args):
            word = args[i].upper()
            left = len(args) - i - 1
            if word == b"LIMIT" and left >= 2:
                i += 2
            elif word in (b"BY", b"GET", b"STORE") and left >= 1:
                pattern = args[i + 1]
                if word != b"STORE" and b"*" in pattern and pattern != b"#":
                    args[i + 1] = (pattern[len(prefix):] if pattern.startswith(prefix)
                                   else b":" + pattern)
                i += 1
            i += 1


def _value(reply):
    if isinstance(reply, Exception):
        raise reply
    return reply
