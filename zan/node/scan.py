"""Scans as the node runs them: Redis's integer cursors over our per-partition positions.

Partition handlers page from an opaque token (`zan.commands.keys.scan`, the *SCAN
handlers); clients expect integers.  `ScanRunner` keeps the mapping in a bounded
`CursorRegistry` and, for SCAN and ADVSCAN, walks the node's partitions one after the
other, so one cursor covers the whole keyspace.
"""

from __future__ import annotations

import base64
import binascii

from twisted.internet.defer import Deferred

from zan.commands.cursors import INVALID_CURSOR, CursorRegistry
from zan.commands.util import parse_int
from zan.errors import SYNTAX, NamespaceNotFound, PartitionNotFound, RespError

__all__ = ["ScanRunner"]

_PARTITION_START = b""      # token: this partition from its first key
_END = b"0"                 # token: this partition is done


def _count_option(opts: list[bytes]) -> int:
    count = 10
    for i in range(0, len(opts) - 1, 2):
        if opts[i].upper() == b"COUNT":
            count = parse_int(opts[i + 1])
            if count < 1:
                raise RespError(SYNTAX)
    return count


class ScanRunner:
    def __init__(self, dispatcher, node, registry: CursorRegistry):
        self._dispatcher = dispatcher
        self._node = node
        self._cursors = registry

    def install(self) -> None:
        special = self._dispatcher.special
        special["scan"] = self.scan
        for name in ("hscan", "sscan", "zscan"):
            special[name] = self.keyed_scan
        for name in ("advscan", "advrevscan", "fullscan", "revscan"):
            special[name] = self.table_scan

    def _ordered_partitions(self):
        return sorted(self._dispatcher.partitions.partitions(), key=lambda p: (p.namespace, p.pid))

    def _full_key(self, partition, pk: bytes) -> bytes:
        if partition.namespace == self._node.config.default_namespace:
            return pk  # the compat namespace: its keys are spelled without a prefix
        return partition.namespace.encode() + b":" + pk

    # -- SCAN cursor [MATCH p] [COUNT n] [TYPE t] ----------------------------------------

    def scan(self, spec, argv):
        return Deferred.fromCoroutine(self._scan(spec, argv))

    async def _scan(self, spec, argv):
        entry = self._cursors.resolve(argv[1], check_context=False)
        if entry.context is None:
            index, token = 0, _PARTITION_START
        elif isinstance(entry.context, tuple) and entry.context[0] == "scan":
            index, token = entry.context[1], entry.token
        else:
            raise RespError(INVALID_CURSOR)
        opts = list(argv[2:])
        count = _count_option(opts)
        partitions = self._ordered_partitions()
        keys: list[bytes] = []
        while index < len(partitions) and len(keys) < count:
            partition = partitions[index]
            next_token, page = await _value(self._dispatcher.run_on(partition, spec, [token, *opts]))
            keys.extend(self._full_key(partition, pk) for pk in page)
            if next_token == _END:
                index, token = index + 1, _PARTITION_START
            else:
                token = next_token
        if index >= len(partitions):
            return [b"0", keys]
        return [self._cursors.issue(token, ("scan", index)), keys]

    # -- HSCAN / SSCAN / ZSCAN key cursor ... -------------------------------------------

    def keyed_scan(self, spec, argv):
        return Deferred.fromCoroutine(self._keyed_scan(spec, argv))

    async def _keyed_scan(self, spec, argv):
        route = self._dispatcher.router.route(argv[1])
        context = (spec.name, route.namespace, route.pk)
        entry = self._cursors.resolve(argv[2], context)
        partition = self._dispatcher.partitions.partition(route.namespace, route.partition)
        if partition is None:
            raise PartitionNotFound()
        next_token, items = await _value(self._dispatcher.run_on(
            partition, spec, [route.pk, entry.token, *argv[3:]]))
        return [self._cursors.issue(next_token, context), items]

    # -- ZanRedisDB's table scans: ADVSCAN ADVREVSCAN FULLSCAN ns:table:<cursor> TYPE
    # [MATCH p] [COUNT n], and REVSCAN ns:table:<cursor> [MATCH p] [COUNT n] -------------

    def table_scan(self, spec, argv):
        return Deferred.fromCoroutine(self._table_scan(spec, argv))

    async def _table_scan(self, spec, argv):
        """The cursor is ZanRedisDB's: base64 of ``<pid>:<base64 part cursor>;`` for every
        partition still in progress; empty to start, and empty again when all are done.
        COUNT is shared out between those partitions."""
        prefix, sep, rest = argv[1].partition(b":")
        namespace = prefix.decode("utf-8", "replace")
        config = self._node.config.namespace(namespace) if sep else None
        if config is None:
            raise NamespaceNotFound()
        table, sep, cursor = rest.partition(b":")
        if not sep or not table:
            raise RespError("ERR invalid table name")
        states = self._decode_adv_cursor(cursor, config.partition_num)
        typed = spec.name != "revscan"
        head, opts = (list(argv[2:3]), list(argv[3:])) if typed else ([], list(argv[2:]))
        if len(opts) % 2:
            raise RespError(SYNTAX)
        count = _count_option(opts)
        share = max(1, count // max(1, len(states)))
        opts = _with_count(opts, share)
        items: list = []
        remaining: dict[int, bytes] = {}
        for pid, part_cursor in states.items():
            partition = self._dispatcher.partitions.partition(namespace, pid)
            if partition is None:
                raise PartitionNotFound()
            next_cursor, page = await _value(self._dispatcher.run_on(
                partition, spec, [table + b":" + part_cursor, *head, *opts]))
            items.extend(page)
            if next_cursor:
                remaining[pid] = next_cursor
        return [self._encode_adv_cursor(remaining), items]

    @staticmethod
    def _decode_adv_cursor(cursor: bytes, partition_num: int) -> dict[int, bytes]:
        if not cursor:
            return {pid: b"" for pid in range(partition_num)}
        try:
            text = base64.b64decode(cursor, validate=True)
            states = {}
            for item in filter(None, text.split(b";")):
                pid, _, part = item.partition(b":")
                pid_n = int(pid)
                if not 0 <= pid_n < partition_num:
                    raise ValueError(pid_n)
                states[pid_n] = base64.b64decode(part, validate=True)
            return states
        except (binascii.Error, ValueError):
            raise RespError(INVALID_CURSOR) from None

    @staticmethod
    def _encode_adv_cursor(states: dict[int, bytes]) -> bytes:
        if not states:
            return b""
        text = b"".join(b"%d:%s;" % (pid, base64.b64encode(c)) for pid, c in sorted(states.items()))
        return base64.b64encode(text)


async def _value(result):
    """A partition's reply, whether it came at once or (replicated, forwarded) later."""
    if isinstance(result, Deferred):
        result = await result
    if isinstance(result, Exception):
        raise result
    return result


def _with_count(opts: list[bytes], count: int) -> list[bytes]:
    out = []
    i = 0
    while i < len(opts):
        if opts[i].upper() == b"COUNT" and i + 1 < len(opts):
            i += 2
            continue
        out.append(opts[i])
        i += 1
    return out + [b"COUNT", str(count).encode()]
