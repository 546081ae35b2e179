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
from zan.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata

__all__ = [
    "StorageError", "Compacted", "Unavailable", "SnapshotOutOfDate",
    "Storage", "GroupLog", "LogStore", "MemoryStorage", "MemoryLogStore", "limit_size",
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

    def append_atomic(self, parts: Sequence[tuple[int, Sequence[Entry]]]) -> None:
        """Append entries to several groups at once: after a crash, every group has its
        part or none has."""

    def sync(self) -> None:
        """Make every change handed to any group since the last sync durable (one fsync)."""

    def close(self) -> None: ...


# --- in-memory implementations ------------------------------------------------------

def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of `ents` whose data fits in `max_size` bytes, but never empty."""
    if max_size is None or len(ents) <= 1:
        return ents
    size = len(ents[0].data)
    for i in range(1, len(ents)):
        size += len(ents[i].data)
        if size > max_size:
            return ents[:i]
    return ents


class MemoryStorage:
    """A `GroupLog` held in memory: the reference behaviour and the test double.

    ``_ents[0]`` is a dummy entry standing for the snapshot (its index and term), so index
    arithmetic never needs a special case for an empty log.  Everything written is
    considered durable at once; a test models a crash by building a new core over the same
    object.
    """

    __slots__ = ("_hard_state", "_snapshot", "_ents")

    def __init__(self, conf_state: ConfState | None = None):
        self._hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMetadata(conf_state=conf_state or ConfState()))
        self._ents: list[Entry] = [Entry(0, 0)]

    # Storage (read side)

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise Compacted(f"index {lo} is compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1} requested, last index {self.last_index()}")
        return limit_size(self._ents[lo - offset:hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise Compacted(f"index {index} is compacted")
        if index - offset >= len(self._ents):
            raise Unavailable(f"index {index} is past the last index")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # GroupLog (write side)

    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # entirely below the snapshot
        if entries[0].index < first:
            entries = list(entries)[first - entries[0].index:]
        ents = self._ents
        offset = entries[0].index - ents[0].index
        if offset < len(ents):
            del ents[offset:]
        elif offset > len(ents):
            raise Unavailable(
                f"missing log entry: last index {self.last_index()}, appending at {entries[0].index}")
        ents.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.metadata.index < self._snapshot.metadata.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snapshot.metadata.index} is older than {self._snapshot.metadata.index}")
        self._snapshot = snapshot
        self._ents = [Entry(snapshot.metadata.term, snapshot.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDate(f"snapshot at {index} is not newer than the current one")
        if index > self.last_index():
            raise Unavailable(f"snapshot index {index} is past the last index {self.last_index()}")
        term = self._ents[index - self._ents[0].index].term
        self._snapshot = Snapshot(SnapshotMetadata(index, term, conf_state), data)
        return self._snapshot

    def compact(self, index: int) -> None:
        offset = self._ents[0].index
        if index <= offset:
            raise Compacted(f"index {index} is already compacted")
        if index > self.last_index():
            raise Unavailable(f"compact index {index} is past the last index {self.last_index()}")
        i = index - offset
        self._ents = [Entry(self._ents[i].term, index)] + self._ents[i + 1:]


class MemoryLogStore:
    """A `LogStore` of `MemoryStorage` groups; `sync()` has nothing to do."""

    __slots__ = ("_groups", "sync_count")

    def __init__(self) -> None:
        self._groups: dict[int, MemoryStorage] = {}
        self.sync_count = 0

    def group(self, group_id: int) -> MemoryStorage:
        log = self._groups.get(group_id)
        if log is None:
            log = self._groups[group_id] = MemoryStorage()
        return log

    def group_ids(self) -> list[int]:
        return sorted(self._groups)

    def remove_group(self, group_id: int) -> None:
        self._groups.pop(group_id, None)

    def append_atomic(self, parts: Sequence[tuple[int, Sequence[Entry]]]) -> None:
        for gid, entries in parts:
            self.group(gid).append(entries)

    def sync(self) -> None:
        self.sync_count += 1

    def close(self) -> None:
        pass
