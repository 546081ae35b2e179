"""A command whose keys lie in several partitions of one node, run as one.

Each partition of a node has a database and a log of its own.  A command whose keys
span several of them runs once over all of them (`run_across`): a `RoutedSource` sends
every record the command reads to the partition holding the record's key, and a
`RoutedTxn` splits the changes the command makes the same way.  For a write, each
partition then receives its share as an *effects entry* (`encode_effects_entry`: the
records to put and delete), and the node appends all the shares in one log record: after
a crash every partition has its share or none has.  Applying an effects entry needs
neither the command nor the other partitions, so each partition replays its log alone.

Pure: no clock, no reactor, no disk of its own; the caller gives the partitions' current
states (every earlier write applied) and the entry indexes it reserved in each.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from zan.errors import ZanError
from zan.store.codec import pk_of_record
from zan.store.keyspace import DEFAULT_OPTIONS, KeyspaceOptions, ReadSource, Txn

__all__ = ["RoutedSource", "RoutedTxn", "StagedSource", "run_across"]


class RoutedSource:
    """One read view over several partitions: each record is read from the partition
    `partition_of(pk)` names for its primary key."""

    __slots__ = ("_sources", "_partition_of")

    def __init__(self, sources: Mapping[int, ReadSource], partition_of: Callable[[bytes], int]):
        self._sources = sources
        self._partition_of = partition_of

    def source_of(self, key: bytes) -> ReadSource:
        return self._sources[self._partition_of(pk_of_record(key))]

    def get(self, key: bytes) -> bytes | None:
        return self.source_of(key).get(key)

    def iterator(self, start: bytes | None = None, stop: bytes | None = None, *,
                 reverse: bool = False, include_value: bool = True) -> Iterator:
        # Commands iterate within one key's records (a collection's elements), never
        # across keys: the range's start names the partition.
        if start is None:
            raise ZanError("a scan across partitions is not supported here")
        return self.source_of(start).iterator(start=start, stop=stop, reverse=reverse,
                                              include_value=include_value)


class StagedSource:
    """A writable Txn seen as a read source: its staged writes over what it reads.  A
    transaction keeps one per partition, and each of its commands runs on a Txn over
    these, so a command that fails leaves the others' writes as they were."""

    __slots__ = ("txn",)

    def __init__(self, txn: Txn):
        self.txn = txn

    def get(self, key: bytes) -> bytes | None:
        return self.txn.get(key)

    def iterator(self, start: bytes | None = None, stop: bytes | None = None, *,
                 reverse: bool = False, include_value: bool = True) -> Iterator:
        if not include_value:
            raise ValueError("a staged source always yields (key, value)")
        return self.txn.iterate(start, stop, reverse=reverse)


class RoutedTxn(Txn):
    """A Txn over a `RoutedSource`: a collection created at a key takes its version from
    the entry index reserved in that key's partition."""

    __slots__ = ("_route", "_indexes")

    def __init__(self, source: RoutedSource, partition_of: Callable[[bytes], int],
                 indexes: Mapping[int, int], **kwargs):
        super().__init__(source, **kwargs)
        self._route = partition_of
        self._indexes = indexes

    def version_for(self, pk: bytes) -> int:
        return self._indexes[self._route(pk)]

    def changes_by_partition(self) -> dict[int, dict[bytes, bytes | None]]:
        out: dict[int, dict[bytes, bytes | None]] = {pid: {} for pid in self._indexes}
        for key, value in self.changes.items():
            out[self._route(pk_of_record(key))][key] = value
        return out


def run_across(handler: Callable[[Txn, list[bytes]], Any], args: list[bytes],
               sources: Mapping[int, ReadSource], partition_of: Callable[[bytes], int], *,
               now_ms: int, seed: int, indexes: Mapping[int, int] | None = None,
               options: KeyspaceOptions = DEFAULT_OPTIONS,
               ) -> tuple[Any, dict[int, dict[bytes, bytes | None]]]:
    """Run a command handler over the partitions in `sources` (keyed by partition id).
    For a write, `indexes` gives the entry index reserved in each partition; returns the
    reply and each partition's changes ({} for a read).  An error reply raises."""
    writable = indexes is not None
    txn = RoutedTxn(RoutedSource(sources, partition_of), partition_of, indexes or {},
                    now_ms=now_ms, seed=seed, writable=writable, options=options,
                    index=max(indexes.values()) if writable else 0)
    reply = handler(txn, args)
    return reply, (txn.changes_by_partition() if writable else {})
