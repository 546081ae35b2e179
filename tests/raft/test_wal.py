"""WalLogStore beyond the shared contract: group commit, restarts, space reclaim, reads
that miss the cache."""

from __future__ import annotations

import os
import random

import pytest

from zan.errors import StorageError
from zan.raft.storage import Unavailable
from zan.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from zan.raft.wal import WalLogStore


def ents(lo, hi, term=1, size=100, tag=0):
    return [Entry(term, i, data=(b"%d:%d:" % (tag, i)).ljust(size, b"x")) for i in range(lo, hi)]


def segments(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".wal"))


@pytest.fixture
def wal_dir(tmp_path):
    return str(tmp_path / "raft-wal")


@pytest.fixture
def fsyncs(monkeypatch):
    """Counts data fsyncs of segment files."""
    calls = []
    real = os.fdatasync

    def counting(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def test_one_fsync_per_sync_for_all_groups(wal_dir, fsyncs):
    store = WalLogStore(wal_dir)
    for gid in range(8):
        store.group(gid)
    store.sync()
    fsyncs.clear()
    for round_ in range(5):
        for gid in range(8):
            g = store.group(gid)
            g.append(ents(g.last_index() + 1, g.last_index() + 13, tag=gid))
            g.set_hard_state(HardState(1, 1, g.last_index()))
        store.sync()
    assert len(fsyncs) == 5
    store.close()


def segment_contents(wal_dir):
    out = []
    for name in segments(wal_dir):
        with open(os.path.join(wal_dir, name), "rb") as f:
            out.append(f.read())
    return out


def test_sync_with_nothing_buffered_writes_nothing(wal_dir, fsyncs):
    store = WalLogStore(wal_dir)
    store.group(1).append(ents(1, 3))
    store.sync()
    before = segment_contents(wal_dir)
    fsyncs.clear()
    store.sync()
    store.group(1).set_hard_state(HardState())        # unchanged: no record
    store.sync()
    assert fsyncs == []
    assert segment_contents(wal_dir) == before
    store.close()


def test_buffered_writes_are_visible_before_sync(wal_dir):
    store = WalLogStore(wal_dir)
    g = store.group(1)
    g.append(ents(1, 4))
    assert g.entries(1, 4) == ents(1, 4)
    store.close()


def test_unsynced_writes_do_not_survive_a_crash(wal_dir):
    store = WalLogStore(wal_dir)
    g = store.group(1)
    g.append(ents(1, 4))
    store.sync()
    g.append(ents(4, 6))
    store._close_files()                  # the process dies: buffers are lost
    store = WalLogStore(wal_dir)
    assert store.group(1).last_index() == 3
    store.close()


def test_second_open_of_the_same_directory_is_refused(wal_dir):
    store = WalLogStore(wal_dir)
    with pytest.raises(StorageError, match="in use"):
        WalLogStore(wal_dir)
    store.close()
    WalLogStore(wal_dir).close()


def test_closed_or_removed_logs_refuse_work(wal_dir):
    store = WalLogStore(wal_dir)
    g = store.group(1)
    store.remove_group(1)
    with pytest.raises(StorageError):
        g.append(ents(1, 2))
    store.close()
    with pytest.raises(StorageError):
        store.group(2)


def _random_history(rng, store, models, steps, max_gid=6):
    """Apply random operations to `store` and to in-memory models of each group."""
    for _ in range(steps):
        gid = rng.randrange(max_gid)
        g = store.group(gid)
        m = models.setdefault(gid, {"ents": {}, "off": 0, "off_term": 0, "hs": HardState(),
                                    "snap": Snapshot()})
        op = rng.random()
        last = g.last_index()
        term = m["hs"].term or 1
        if op < 0.55:
            lo = rng.randint(max(g.first_index(), last - 3), last + 1)
            new = ents(lo, lo + rng.randint(1, 20), term=term, size=rng.randint(0, 200),
                       tag=rng.randrange(1000))
            g.append(new)
            for i in [i for i in m["ents"] if i >= lo]:
                del m["ents"][i]
            m["ents"].update((e.index, e) for e in new)
        elif op < 0.7:
            hs = HardState(term + rng.randint(0, 1), rng.randrange(4), last)
            g.set_hard_state(hs)
            m["hs"] = hs
        elif op < 0.85 and last > g.first_index():
            idx = rng.randint(g.first_index(), last)
            g.compact(idx)
            m["off_term"] = m["ents"][idx].term
            m["off"] = idx
            m["ents"] = {i: e for i, e in m["ents"].items() if i > idx}
        elif op < 0.9 and last >= g.first_index() and last > g.snapshot().metadata.index:
            idx = rng.randint(max(g.first_index(), g.snapshot().metadata.index + 1), last)
            m["snap"] = g.create_snapshot(idx, ConfState(voters=(1, 2, 3)), b"snap-%d" % idx)
        elif op < 0.93:
            idx = max(last, g.snapshot().metadata.index) + rng.randint(1, 50)
            snap = Snapshot(SnapshotMetadata(idx, term, ConfState(voters=(gid,))), b"x")
            g.apply_snapshot(snap)
            m.update(snap=snap, off=idx, off_term=term, ents={})
        elif op < 0.95:
            store.remove_group(gid)
            del models[gid]
        if rng.random() < 0.2:
            store.sync()


def _check(store, models):
    assert store.group_ids() == sorted(models)
    for gid, m in models.items():
        g = store.group(gid)
        assert g.first_index() == m["off"] + 1
        assert g.last_index() == m["off"] + len(m["ents"])
        assert g.term(m["off"]) == m["off_term"]
        assert g.initial_state() == (m["hs"], m["snap"].metadata.conf_state)
        assert g.snapshot() == m["snap"]
        want = [m["ents"][i] for i in sorted(m["ents"])]
        assert g.entries(g.first_index(), g.last_index() + 1) == want
        assert [g.term(e.index) for e in want] == [e.term for e in want]


@pytest.mark.parametrize("seed", range(6))
def test_random_history_survives_restarts(wal_dir, seed):
    rng = random.Random(seed)
    models: dict = {}
    store = WalLogStore(wal_dir, segment_size=16 * 1024, cache_size=8 * 1024)
    for _ in range(8):
        _random_history(rng, store, models, 150)
        _check(store, models)
        store.close()
        store = WalLogStore(wal_dir, segment_size=16 * 1024, cache_size=8 * 1024)
        _check(store, models)
    # Space is reclaimed as groups compact: the log never keeps much more than it needs.
    assert len(segments(wal_dir)) < 30
    store.close()


def test_compaction_deletes_segments_and_survives_restart(wal_dir):
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    for i in range(1, 401):
        for gid in (1, 2):
            store.group(gid).append(ents(i, i + 1, tag=gid))
        if i % 10 == 0:
            store.sync()
    grown = segments(wal_dir)
    assert len(grown) > 10
    store.group(1).compact(390)
    store.sync()
    assert segments(wal_dir) == grown     # group 2 still needs every segment
    store.group(2).compact(395)
    store.sync()
    kept = segments(wal_dir)
    assert len(kept) <= 2
    assert kept[-1] == grown[-1]
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).entries(391, 401) == ents(391, 401, tag=1)
    assert store.group(2).entries(396, 401) == ents(396, 401, tag=2)
    assert store.group(2).term(395) == 1
    store.close()


def test_idle_group_does_not_pin_old_segments(wal_dir):
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    store.group(1).append(ents(1, 4, tag=1))              # idle from now on
    store.group(1).set_hard_state(HardState(1, 1, 3))
    store.sync()
    busy = store.group(2)
    for i in range(1, 2001):
        busy.append(ents(i, i + 1, tag=2))
        if i % 10 == 0:
            store.sync()
            busy.compact(i - 5)
    assert len(segments(wal_dir)) <= 4
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).entries(1, 4) == ents(1, 4, tag=1)
    assert store.group(1).initial_state()[0] == HardState(1, 1, 3)
    assert store.group(2).entries(1996, 2001) == ents(1996, 2001, tag=2)
    store.close()


def test_remove_group_is_durable_and_frees_space(wal_dir):
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    for i in range(1, 301):
        store.group(7).append(ents(i, i + 1, tag=7))
        if i % 20 == 0:
            store.sync()
    before = len(segments(wal_dir))
    store.remove_group(7)
    store.group(8).append(ents(1, 2))
    store.sync()
    assert len(segments(wal_dir)) < before
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group_ids() == [8]
    assert store.group(7).last_index() == 0
    store.close()


def test_reads_beyond_the_cache_come_from_disk(wal_dir):
    store = WalLogStore(wal_dir, segment_size=64 * 1024, cache_size=4096)
    g = store.group(1)
    for i in range(1, 1001, 10):
        g.append(ents(i, i + 10))
        store.sync()
    assert g.entries(1, 1001) == ents(1, 1001)
    assert g.entries(500, 1001, max_size=350) == ents(500, 503)
    store.close()


def test_missing_segment_is_reported(wal_dir):
    store = WalLogStore(wal_dir, segment_size=4096)
    for i in range(1, 200):
        store.group(1).append(ents(i, i + 1))
        store.sync()
    store.close()
    names = segments(wal_dir)
    os.unlink(os.path.join(wal_dir, names[len(names) // 2]))
    with pytest.raises(StorageError, match="missing"):
        WalLogStore(wal_dir, segment_size=4096)


def test_gap_in_append_is_refused(wal_dir):
    store = WalLogStore(wal_dir)
    with pytest.raises(Unavailable):
        store.group(1).append(ents(2, 3))
    store.close()


def test_a_recovering_hard_state_survives_restarts_and_checkpoints(wal_dir):
    """The flag is restated by the checkpoint at the head of each new segment too."""
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    store.group(1).append(ents(1, 4, tag=1))
    store.group(1).set_hard_state(HardState(2, 0, 3, recovering=True))
    store.group(3).set_hard_state(HardState(2, 1, 0))
    store.sync()
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).initial_state()[0] == HardState(2, 0, 3, recovering=True)
    busy = store.group(2)
    for i in range(1, 401):      # several new segments, each opening with a checkpoint
        busy.append(ents(i, i + 1, tag=2))
        if i % 10 == 0:
            store.sync()
            busy.compact(i - 5)
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).initial_state()[0] == HardState(2, 0, 3, recovering=True)
    assert store.group(3).initial_state()[0] == HardState(2, 1, 0)
    store.group(1).set_hard_state(HardState(2, 2, 3))
    store.sync()
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).initial_state()[0] == HardState(2, 2, 3)
    store.close()


def test_an_atomic_append_gives_every_group_its_part_after_a_restart(wal_dir):
    store = WalLogStore(wal_dir, segment_size=8 * 1024, cache_size=1024)
    store.group(1).append(ents(1, 3, tag=1))
    store.append_atomic([(1, ents(3, 5, tag=1)), (2, ents(1, 4, tag=2)), (3, [])])
    store.group(2).append(ents(4, 5, tag=2))
    store.sync()
    # Read back through the record, not the cache.
    for i in range(1, 60):
        store.group(9).append(ents(i, i + 1, size=200, tag=9))
    assert store.group(1).entries(1, 5) == ents(1, 5, tag=1)
    assert store.group(2).entries(1, 5) == ents(1, 5, tag=2)
    store.sync()
    store.close()
    store = WalLogStore(wal_dir, segment_size=8 * 1024)
    assert store.group(1).entries(1, 5) == ents(1, 5, tag=1)
    assert store.group(2).entries(1, 5) == ents(1, 5, tag=2)
    assert store.group(3).last_index() == 0
    store.close()


def test_a_torn_atomic_record_loses_every_part(wal_dir):
    store = WalLogStore(wal_dir)
    store.group(1).append(ents(1, 2, tag=1))
    store.group(2).append(ents(1, 2, tag=2))
    store.sync()
    seg = os.path.join(wal_dir, segments(wal_dir)[-1])
    store.append_atomic([(1, ents(2, 3, tag=1)), (2, ents(2, 3, tag=2))])
    store.sync()
    store.close()
    with open(seg, "rb") as f:
        data = f.read()
    end = data.rstrip(b"\0")
    # Cut the last record (the atomic one) in its middle, as a crash mid-write would.
    with open(seg, "r+b") as f:
        f.truncate(len(end) - 10)
    store = WalLogStore(wal_dir)
    assert store.group(1).last_index() == 1 and store.group(2).last_index() == 1
    store.close()
