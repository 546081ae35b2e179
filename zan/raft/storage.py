"""The storage contract between the Raft core and a log.

`Storage` is what the core reads (etcd raft's ``Storage`` interface); `GroupLog` adds the
write side the driver uses to persist a ``Ready``; `LogStore` is one node's log shared by
every Raft group on it, whose `sync()` makes all groups' buffered changes durable with a
single fsync (group commit).

Implementations: `MemoryStorage` / `MemoryLogStore` here (test doubles and the reference
behaviour) and the durable `zan.raft.wal.WalLogStore`.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from zan.errors import ZanError
from zan.raft.types import ConfState, Entry, HardState, Snapshot

__all__ = [
    "StorageError", "Compacted", "Unavailable", "SnapshotOutOfDate",
    "Storage", "GroupLog", "LogStore",
]


class StorageError(ZanError):
    """Base of the errors a `Storage` reports to the core."""


class Compacted(StorageError):
    """The requested index is below the first index: it was compacted into a snapshot."""


class Unavailable(StorageError):
    """The requested index is above the last index."""


class SnapshotOutOfDate(StorageError):
    """A snapshot older than the current one was offered."""


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi).  At least one entry is returned when any is in range, even if
        it alone exceeds `max_size` (bytes of entry data).  Raises Compacted / Unavailable."""

    def term(self, index: int) -> int:
        """Term of the entry at `index`; valid for first_index()-1 (the snapshot's index)
        through last_index().  Raises Compacted / Unavailable."""

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


class GroupLog(Storage, Protocol):
    """One Raft group's log, readable by the core and written by the driver.

    Writes are visible to reads at once and become durable at the owning `LogStore`'s next
    `sync()`."""

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries; an entry whose index is <= last_index() replaces that entry and
        everything after it (a conflicting suffix from an old leader)."""

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the log by `snapshot`: every entry is discarded, first_index() becomes
        snapshot index + 1.  Raises SnapshotOutOfDate for an older snapshot."""

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record that the application's state at `index` (<= applied) is a snapshot."""

    def compact(self, index: int) -> None:
        """Discard entries up to and including `index` (keeping the term of `index`).
        Raises Compacted if already compacted past it, Unavailable if beyond last_index()."""


class LogStore(Protocol):
    def group(self, group_id: int) -> GroupLog:
        """The log of `group_id`, created empty if the store has none."""

    def group_ids(self) -> list[int]: ...

    def remove_group(self, group_id: int) -> None:
        """Forget a group for good (its replica was destroyed); durable at the next sync()."""

    def sync(self) -> None:
        """Make every change handed to any group since the last sync durable (one fsync)."""

    def close(self) -> None: ...
