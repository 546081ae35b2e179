"""Crash and corruption: a log cut at any byte recovers what was synced; damage that a
later sync vouches for is reported, never skipped."""

from __future__ import annotations

import errno
import os
import random
import shutil

import pytest
from twisted.logger import globalLogPublisher

from zan.errors import StorageError
from zan.raft.types import Entry, HardState
from zan.raft.wal import WalLogStore
from zan.raft.wal_format import HEADER_SIZE, parse

SEGMENT_SIZE = 1 << 20


def ents(lo, hi, term, gid):
    return [Entry(term, i, data=b"g%d-i%d-t%d" % (gid, i, term)) for i in range(lo, hi)]


def segment_files(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".wal"))


def records_end(path):
    """Where the records of a segment file end (the rest is preallocated zeros)."""
    return _record_offsets(path)[-1]


@pytest.fixture
def no_fsync(monkeypatch):
    # A crash is simulated by cutting files, so real flushes only cost time here.
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def _build(path):
    """A log written over two runs; returns (history, last segment name).  `history` is
    one (end offset in the last segment, expected state) per sync of the second run,
    preceded by the state the first run left (end offset 0)."""
    model: dict[int, dict] = {}

    def snapshot_model():
        return {gid: (dict(m["ents"]), m["hs"]) for gid, m in model.items()}

    store = WalLogStore(path, segment_size=SEGMENT_SIZE)
    for gid in (1, 2, 3):
        model[gid] = {"ents": {}, "hs": HardState()}
    for round_ in range(3):
        for gid in (1, 2, 3):
            g = store.group(gid)
            new = ents(g.last_index() + 1, g.last_index() + 4, 1, gid)
            g.append(new)
            model[gid]["ents"].update((e.index, e) for e in new)
        store.sync()
    # A leader change rewrites a suffix of group 2 before the crash window.
    g = store.group(2)
    new = ents(6, 8, 2, 2)
    g.append(new)
    model[2]["ents"] = {i: e for i, e in model[2]["ents"].items() if i < 6}
    model[2]["ents"].update((e.index, e) for e in new)
    store.close()

    store = WalLogStore(path, segment_size=SEGMENT_SIZE)
    last = segment_files(path)[-1]
    history = [(0, snapshot_model())]
    rng = random.Random(7)
    for sync_no in range(6):
        for gid in rng.sample([1, 2, 3], rng.randint(1, 3)):
            g = store.group(gid)
            new = ents(g.last_index() + 1, g.last_index() + 1 + rng.randint(1, 4), 2, gid)
            g.append(new)
            model[gid]["ents"].update((e.index, e) for e in new)
            hs = HardState(2, 1, g.last_index())
            g.set_hard_state(hs)
            model[gid]["hs"] = hs
        store.sync()
        history.append((records_end(os.path.join(path, last)), snapshot_model()))
    store.close()
    return history, last


def _check_recovery(src, work, last, cut, history):
    if os.path.exists(work):
        shutil.rmtree(work)
    shutil.copytree(src, work)
    with open(os.path.join(work, last), "r+b") as f:
        f.truncate(cut)
    store = WalLogStore(work, segment_size=SEGMENT_SIZE)
    try:
        synced = [state for end, state in history if end <= cut][-1]
        final = history[-1][1]
        for gid, (want, hs) in synced.items():
            g = store.group(gid)
            got = g.entries(g.first_index(), g.last_index() + 1)
            # Everything from a completed sync is there ...
            assert [e for e in got if e.index in want] == [want[i] for i in sorted(want)], (cut, gid)
            # ... and everything else was really written (at most a prefix of the next sync).
            assert all(final[gid][0].get(e.index) == e for e in got), (cut, gid)
            got_hs = g.initial_state()[0]
            assert hs.commit <= got_hs.commit <= final[gid][1].commit, (cut, gid)
    finally:
        store.close()


def _cut_points(history, size, sample, rng):
    ends = [end for end, _ in history]
    points = {0, size}
    for end in ends:
        points.update(p for p in (end - 1, end, end + 1, end + HEADER_SIZE) if 0 <= p <= size)
    points.update(rng.sample(range(size + 1), min(sample, size + 1)))
    return sorted(points)


def _cut_range(path):
    # Cuts inside the records, and a few into the preallocated zeros after them.
    return min(records_end(path) + 2 * HEADER_SIZE, os.path.getsize(path))


def test_cut_at_sampled_offsets_recovers_synced_entries(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    history, last = _build(src)
    size = _cut_range(os.path.join(src, last))
    for cut in _cut_points(history, size, 120, random.Random(1)):
        _check_recovery(src, str(tmp_path / "work"), last, cut, history)


@pytest.mark.slow
def test_cut_at_every_offset_recovers_synced_entries(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    history, last = _build(src)
    size = _cut_range(os.path.join(src, last))
    for cut in range(size + 1):
        _check_recovery(src, str(tmp_path / "work"), last, cut, history)


def _record_offsets(path):
    """The offset of every record of a segment file, then where the last one ends."""
    seq = int(os.path.basename(path).split(".")[0], 16)
    with open(path, "rb") as f:
        data = f.read()
    offsets, at = [], 0
    while (parsed := parse(data, seq, at)) is not None:
        offsets.append(at)
        at = parsed[2]
    return offsets + [at]


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_flipped_byte_before_a_later_sync_is_reported(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    history, last = _build(src)
    path = os.path.join(src, last)
    second_sync_end = history[2][0]
    victims = [o for o in _record_offsets(path) if o < second_sync_end]
    for victim in victims[1:]:
        for delta in (0, 5, HEADER_SIZE + 1):
            work = str(tmp_path / "work")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(src, work)
            _flip(os.path.join(work, last), victim + delta)
            with pytest.raises(StorageError) as info:
                WalLogStore(work, segment_size=SEGMENT_SIZE)
            assert last in str(info.value)
            assert f"offset {victim}" in str(info.value)


def test_flipped_byte_in_an_earlier_segment_is_reported(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    _build(src)
    first = segment_files(src)[0]
    size = os.path.getsize(os.path.join(src, first))
    _flip(os.path.join(src, first), size - 3)
    with pytest.raises(StorageError, match=first):
        WalLogStore(src, segment_size=SEGMENT_SIZE)


def test_torn_tail_is_logged_and_truncated(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    history, last = _build(src)
    path = os.path.join(src, last)
    with open(path, "ab") as f:
        f.write(b"\x00\x01garbage")
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        store = WalLogStore(src, segment_size=SEGMENT_SIZE)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("torn tail" in e.get("log_format", "") for e in events)
    final = history[-1][1]
    for gid, (want, hs) in final.items():
        g = store.group(gid)
        assert g.entries(g.first_index(), g.last_index() + 1) == [want[i] for i in sorted(want)]
        assert g.initial_state()[0] == hs
    store.close()
    WalLogStore(src, segment_size=SEGMENT_SIZE).close()   # the truncated file reads clean


def _warnings_while(action):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        result = action()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return result, [e for e in events if e.get("log_level") is not None
                    and e["log_level"].name in ("warn", "error", "critical")]


def test_new_segments_are_preallocated_and_sealed_ones_trimmed(tmp_path, no_fsync):
    path = str(tmp_path / "wal")
    store = WalLogStore(path, segment_size=SEGMENT_SIZE)
    g = store.group(1)
    while len(segment_files(path)) < 3:
        g.append([Entry(1, i, data=bytes(4000)) for i in range(g.last_index() + 1, g.last_index() + 21)])
        store.sync()
    *sealed, active = [os.path.join(path, n) for n in segment_files(path)]
    for seg in sealed:
        assert os.path.getsize(seg) == records_end(seg)
    assert os.path.getsize(active) == SEGMENT_SIZE > records_end(active)
    store.close()


def test_the_preallocated_tail_is_trimmed_without_a_warning(tmp_path, no_fsync):
    src = str(tmp_path / "src")
    history, last = _build(src)
    path = os.path.join(src, last)
    assert os.path.getsize(path) == SEGMENT_SIZE > records_end(path)
    store, warnings = _warnings_while(lambda: WalLogStore(src, segment_size=SEGMENT_SIZE))
    assert warnings == []
    *older, newest = [os.path.join(src, n) for n in segment_files(src)]
    assert newest != path
    for seg in older:                        # trimmed (or deleted, if nothing pins it)
        assert os.path.getsize(seg) == records_end(seg)
    final = history[-1][1]
    for gid, (want, hs) in final.items():
        g = store.group(gid)
        assert g.entries(g.first_index(), g.last_index() + 1) == [want[i] for i in sorted(want)]
    store.close()
    _, warnings = _warnings_while(lambda: WalLogStore(src, segment_size=SEGMENT_SIZE).close())
    assert warnings == []


def test_a_log_that_cannot_be_preallocated_still_works(tmp_path, no_fsync, monkeypatch):
    def refuse(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    path = str(tmp_path / "wal")
    store, warnings = _warnings_while(lambda: WalLogStore(path, segment_size=SEGMENT_SIZE))
    assert any("cannot preallocate" in e["log_format"] for e in warnings)
    store.group(1).append(ents(1, 4, 1, 1))
    store.sync()
    store.close()
    (last,) = segment_files(path)
    assert os.path.getsize(os.path.join(path, last)) == records_end(os.path.join(path, last))
    store = WalLogStore(path, segment_size=SEGMENT_SIZE)
    assert store.group(1).entries(1, 4) == ents(1, 4, 1, 1)
    store.close()
