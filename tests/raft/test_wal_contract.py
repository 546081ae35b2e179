"""The `LogStore` / `GroupLog` contract, run against every implementation.

The same assertions hold for the in-memory reference and for the durable WAL; the WAL is
also checked after a reopen, so every answer must survive a restart."""

from __future__ import annotations

import pytest

from zan.raft import storage
from zan.raft.storage import Compacted, SnapshotOutOfDate, Unavailable
from zan.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata
from zan.raft.wal import WalLogStore

HAVE_MEMORY = hasattr(storage, "MemoryLogStore")


class _Wal:
    """A WalLogStore that can be reopened in place (`reopen`), as after a restart."""

    def __init__(self, path):
        self.path = path
        self.store = WalLogStore(path, segment_size=2048)

    def reopen(self):
        self.store.sync()
        self.store.close()
        self.store = WalLogStore(self.path, segment_size=2048)
        return self.store


class _Memory:
    def __init__(self):
        self.store = storage.MemoryLogStore() if HAVE_MEMORY else None

    def reopen(self):
        return self.store


@pytest.fixture(params=[
    pytest.param("memory", marks=pytest.mark.skipif(not HAVE_MEMORY, reason="no MemoryLogStore yet")),
    "wal",
    "wal-reopened",
])
def impl(request, tmp_path):
    holder = _Memory() if request.param == "memory" else _Wal(str(tmp_path / "raft-wal"))
    holder.reopens = request.param == "wal-reopened"
    yield holder
    if isinstance(holder, _Wal):
        holder.store.close()


def _settle(impl, gid=1):
    """The group as seen after a sync (and, for "wal-reopened", a restart)."""
    impl.store.sync()
    if impl.reopens:
        impl.reopen()
    return impl.store.group(gid)


def ents(lo, hi, term=1, size=3):
    return [Entry(term, i, EntryType.NORMAL, bytes([i % 251]) * size) for i in range(lo, hi)]


def test_empty_group(impl):
    g = impl.store.group(1)
    g = _settle(impl)
    assert g.first_index() == 1
    assert g.last_index() == 0
    assert g.term(0) == 0
    assert g.initial_state() == (HardState(), ConfState())
    assert g.snapshot().is_empty()
    assert g.entries(1, 1) == []
    with pytest.raises(Unavailable):
        g.term(1)
    with pytest.raises(Compacted):
        g.entries(0, 1)
    assert impl.store.group_ids() == [1]


def test_append_and_read(impl):
    impl.store.group(1).append(ents(1, 11))
    g = _settle(impl)
    assert (g.first_index(), g.last_index()) == (1, 10)
    assert g.entries(1, 11) == ents(1, 11)
    assert g.entries(4, 7) == ents(4, 7)
    assert [g.term(i) for i in range(0, 11)] == [0] + [1] * 10
    with pytest.raises(Unavailable):
        g.entries(5, 12)
    with pytest.raises(Unavailable):
        g.term(11)


def test_conflicting_suffix_is_replaced(impl):
    g = impl.store.group(1)
    g.append(ents(1, 11, term=1))
    g.append(ents(6, 9, term=2))
    g = _settle(impl)
    assert g.last_index() == 8
    assert g.entries(1, 9) == ents(1, 6, term=1) + ents(6, 9, term=2)
    g.append(ents(9, 12, term=2))
    g = _settle(impl)
    assert g.entries(1, 12) == ents(1, 6, term=1) + ents(6, 12, term=2)


def test_append_below_first_index_is_trimmed(impl):
    g = impl.store.group(1)
    g.append(ents(1, 11))
    g.compact(5)
    g.append(ents(3, 5, term=1))          # entirely compacted: ignored
    g.append(ents(4, 13, term=2))         # overlaps the compaction point
    g = _settle(impl)
    assert (g.first_index(), g.last_index()) == (6, 12)
    assert g.term(5) == 1
    assert g.entries(6, 13) == ents(6, 13, term=2)


def test_append_with_gap_is_refused(impl):
    g = impl.store.group(1)
    g.append(ents(1, 4))
    with pytest.raises(Unavailable):
        g.append(ents(6, 8))
    assert _settle(impl).last_index() == 3


def test_max_size_returns_at_least_one(impl):
    impl.store.group(1).append(ents(1, 11, size=10))
    g = _settle(impl)
    assert g.entries(1, 11, max_size=0) == ents(1, 2, size=10)
    assert g.entries(1, 11, max_size=25) == ents(1, 3, size=10)
    assert g.entries(1, 11, max_size=30) == ents(1, 4, size=10)
    assert g.entries(1, 11, max_size=None) == ents(1, 11, size=10)


def test_compact_keeps_term_of_compacted_index(impl):
    g = impl.store.group(1)
    g.append(ents(1, 6, term=1) + ents(6, 11, term=3))
    g.compact(7)
    g = _settle(impl)
    assert (g.first_index(), g.last_index()) == (8, 10)
    assert g.term(7) == 3
    with pytest.raises(Compacted):
        g.term(6)
    with pytest.raises(Compacted):
        g.entries(7, 9)
    with pytest.raises(Compacted):
        g.compact(7)
    with pytest.raises(Unavailable):
        g.compact(11)
    g.compact(10)
    g = _settle(impl)
    assert (g.first_index(), g.last_index(), g.term(10)) == (11, 10, 3)
    assert g.entries(11, 11) == []


def test_hard_state(impl):
    g = impl.store.group(1)
    g.set_hard_state(HardState(term=2, vote=3, commit=0))
    g.append(ents(1, 4, term=2))
    g.set_hard_state(HardState(term=2, vote=3, commit=3))
    g = _settle(impl)
    assert g.initial_state()[0] == HardState(term=2, vote=3, commit=3)


def test_create_snapshot_keeps_entries(impl):
    g = impl.store.group(1)
    g.append(ents(1, 6, term=1) + ents(6, 11, term=2))
    cs = ConfState(voters=(1, 2, 3), learners=(4,))
    snap = g.create_snapshot(7, cs, b"descriptor")
    assert snap == Snapshot(SnapshotMetadata(7, 2, cs), b"descriptor")
    g = _settle(impl)
    assert g.snapshot() == snap
    assert g.initial_state()[1] == cs
    assert g.first_index() == 1 and g.last_index() == 10
    with pytest.raises(SnapshotOutOfDate):
        g.create_snapshot(7, cs, b"")
    with pytest.raises(SnapshotOutOfDate):
        g.create_snapshot(5, cs, b"")
    with pytest.raises(Unavailable):
        g.create_snapshot(11, cs, b"")


def test_apply_snapshot_discards_entries(impl):
    g = impl.store.group(1)
    g.append(ents(1, 11))
    cs = ConfState(voters=(1, 2))
    snap = Snapshot(SnapshotMetadata(20, 5, cs), b"where to fetch it")
    g.apply_snapshot(snap)
    g = _settle(impl)
    assert g.snapshot() == snap
    assert (g.first_index(), g.last_index()) == (21, 20)
    assert g.term(20) == 5
    assert g.initial_state()[1] == cs
    with pytest.raises(Compacted):
        g.term(19)
    with pytest.raises(SnapshotOutOfDate):
        g.apply_snapshot(Snapshot(SnapshotMetadata(15, 5, cs)))
    g.append(ents(21, 24, term=5))
    g = _settle(impl)
    assert g.entries(21, 24) == ents(21, 24, term=5)


def test_many_groups_are_independent(impl):
    for gid in (3, 1, 2):
        g = impl.store.group(gid)
        g.append(ents(1, 1 + gid * 2, term=gid))
        g.set_hard_state(HardState(term=gid, vote=gid, commit=gid))
    impl.store.sync()
    if impl.reopens:
        impl.reopen()
    assert impl.store.group_ids() == [1, 2, 3]
    for gid in (1, 2, 3):
        g = impl.store.group(gid)
        assert g.entries(1, g.last_index() + 1) == ents(1, 1 + gid * 2, term=gid)
        assert g.initial_state()[0] == HardState(term=gid, vote=gid, commit=gid)


def test_remove_group(impl):
    impl.store.group(1).append(ents(1, 5))
    impl.store.group(2).append(ents(1, 3))
    impl.store.remove_group(1)
    impl.store.remove_group(9)            # unknown: nothing to do
    impl.store.sync()
    if impl.reopens:
        impl.reopen()
    assert impl.store.group_ids() == [2]
    g = impl.store.group(1)               # a new, empty log
    assert (g.first_index(), g.last_index()) == (1, 0)
    assert impl.store.group(2).last_index() == 2
