"""The durable Raft log of a data node: one write-ahead log shared by every Raft group.

`WalLogStore(path)` opens (or creates) the log in `path` (the node passes
``data_dir/raft-wal/``) and rebuilds every group; `store.group(gid)` is that group's
`GroupLog` (the `zan.raft.storage` contract, with etcd `MemoryStorage` semantics).
Writes are buffered and visible at once; `store.sync()` writes and fsyncs the buffered
records of all groups with one ``fdatasync`` (group commit; the node calls it once per
reactor turn, before sending the messages that depend on it).

On-disk format
--------------
`path` holds segment files ``%016x.wal`` (consecutive sequence numbers, starting at 1) and
a ``LOCK`` file (flock'd while open).  A segment is a sequence of records framed as in
`zan.raft.wal_format`: ``crc32 u32 | length u32 | type u8 | msgpack body``, the CRC seeded
with the record's position.  Bodies (msgpack arrays):

- ``SEGMENT [b"zanwal", 1, seq]`` opens every segment;
- ``CHECKPOINT [gid, hs_term, hs_vote, hs_commit, snap_index, snap_term, voters, learners,
  snap_data, compact_index, compact_term, flat_entries, [true]]``, one per group, then
  ``CHECKPOINT_END [seq, group_count]``: the live state of every group when the segment was
  started.  `flat_entries` (``[term, type, data] * n`` from compact_index + 1) is empty
  unless the group's live entries were copied forward (below);
- ``BATCH [n]`` opens the data of each later sync() into the same segment and asserts that
  everything before it was fsynced;
- ``CREATE [gid]``, ``REMOVE [gid]``, ``HARD_STATE [gid, term, vote, commit, [true]]``,
  ``ENTRIES [gid, first_index, flat_entries]`` (one record per append call),
  ``SNAPSHOT [gid, index, term, voters, learners, data]`` (apply_snapshot),
  ``SNAPSHOT_META`` (same fields, create_snapshot), ``COMPACT [gid, index, term]``.
  ``ATOMIC [[gid, first_index, flat_entries], ...]`` appends entries to several groups
  in one record (`WalLogStore.append_atomic`): a torn write loses all of them or none.
  The trailing ``true`` of a hard state is there only while the replica is recovering
  (`HardState.recovering`): records written before that flag existed read as not.

A new segment file is preallocated to the segment size (as etcd's WAL does): an
``fdatasync`` that need not also record a grown file size costs about a third less here,
and there is one per write batch.  A sealed segment is trimmed to its records before the
next one is created, so only the last segment can end in preallocated zeros.

Recovery replays the segments in order.  The first surviving segment's checkpoint seeds
the state; checkpoints of later segments only restate what replay already built and are
skipped, except for groups whose entries they copied (then they are the whole state).
Entries whose records were in reclaimed segments are replayed as placeholders; a later
record always discards them (else the segment could not have been reclaimed), and a
placeholder still live after replay raises `StorageError`.  A record that fails its check in a non-last segment, or in the last segment
with a valid BATCH marker after it (so a later sync completed), raises
`zan.errors.StorageError` naming file and offset.  Zeros from there to the end of the
last segment are its unused preallocation: trimmed silently.  Otherwise it is a torn
tail: logged, the segment truncated there and fsynced.  Every open then starts a fresh segment.

Reclaiming space: the segment of a group's oldest live entry pins that segment and every
later one; every older segment is deleted after a sync (in ascending order, then the
directory is fsynced), which is safe because the oldest kept segment's checkpoint restates
all state.  So that an idle group does not pin old segments forever, rolling over to a new
segment copies the live entries of the groups pinning the oldest segment into the new
checkpoint, smallest first, up to an eighth of the segment size.

Memory: entries are not kept.  Per live entry a group holds its term, data size and the
location of its record (20 bytes in three arrays); reads decode records through a small
LRU cache (`cache_size` bytes) that also holds freshly appended entries.

Known limit: damage inside the last sync of the last segment cannot be told from a torn
write, so it is truncated (with a warning) rather than reported.
"""

from __future__ import annotations

import fcntl
import os
import re
from array import array
from collections import OrderedDict
from typing import Sequence

import msgpack
from twisted.logger import Logger

from zan.errors import StorageError as CorruptLog
from zan.raft.storage import Compacted, SnapshotOutOfDate, Unavailable
from zan.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata
from zan.raft.wal_format import HEADER_SIZE, RecordType as R, find_record, frame, parse_at

__all__ = ["WalLogStore", "DEFAULT_SEGMENT_SIZE", "DEFAULT_CACHE_SIZE"]

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_CACHE_SIZE = 32 * 1024 * 1024

_MAGIC = b"zanwal"
_VERSION = 1
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})\.wal$")
_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_ENTRY_OVERHEAD = 120          # rough bytes of an Entry object beyond its data, for the cache
_TYPES = tuple(EntryType)
_HOLE = (1 << 64) - 1         # term of an entry replay has not seen, see _Group._fill_hole
_packb = msgpack.Packer(use_bin_type=True).pack


def _unpack(body):
    return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False)


def _flat(entries: Sequence[Entry]) -> list:
    flat: list = []
    for e in entries:
        flat += (e.term, int(e.type), e.data)
    return flat


def _unflat(first: int, flat: list) -> list[Entry]:
    return [Entry(flat[k], first + k // 3, _TYPES[flat[k + 1]], flat[k + 2])
            for k in range(0, len(flat), 3)]


def _hard_state_fields(gid: int, hs: HardState) -> list:
    fields = [gid, hs.term, hs.vote, hs.commit]
    if hs.recovering:
        fields.append(True)
    return fields


def _snap_fields(snap: Snapshot) -> list:
    md = snap.metadata
    return [md.index, md.term, list(md.conf_state.voters), list(md.conf_state.learners), snap.data]


def _snap_from(index, term, voters, learners, data) -> Snapshot:
    return Snapshot(SnapshotMetadata(index, term, ConfState(tuple(voters), tuple(learners))), data)


class _Segment:
    __slots__ = ("seq", "path", "size", "pending", "fd", "body")

    def __init__(self, seq: int, path: str, size: int = 0):
        self.seq = seq
        self.path = path
        self.size = size            # bytes on disk (written by a completed sync)
        self.pending = bytearray()  # framed records not written yet
        self.fd: int | None = None
        self.body = 0               # offset just past the checkpoint

    def end(self) -> int:
        return self.size + len(self.pending)


class _Group:
    """One group's view of the shared log (implements `zan.raft.storage.GroupLog`)."""

    __slots__ = ("_store", "group_id", "_hs", "_snap", "_off", "_off_term",
                 "_terms", "_sizes", "_locs", "_removed")

    def __init__(self, store: WalLogStore, group_id: int):
        self._store = store
        self.group_id = group_id
        self._hs = HardState()
        self._snap = Snapshot()
        self._off = 0               # index of the compaction point / snapshot
        self._off_term = 0
        self._terms = array("Q")    # live entries off+1 .. off+len
        self._sizes = array("I")
        self._locs = array("Q")     # seq << 40 | offset of the record holding the entry
        self._removed = False

    # --- Storage (reads) ---------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        self._check()
        return self._hs, self._snap.metadata.conf_state

    def first_index(self) -> int:
        return self._off + 1

    def last_index(self) -> int:
        return self._off + len(self._terms)

    def term(self, index: int) -> int:
        if index < self._off:
            raise Compacted(f"index {index} compacted (first index {self._off + 1})")
        if index > self.last_index():
            raise Unavailable(f"index {index} beyond last index {self.last_index()}")
        if index == self._off:
            return self._off_term
        return self._terms[index - self._off - 1]

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        self._check()
        if lo <= self._off:
            raise Compacted(f"index {lo} compacted (first index {self._off + 1})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"index {hi - 1} beyond last index {self.last_index()}")
        if lo >= hi:
            return []
        base = self._off + 1
        if max_size is not None:
            total = self._sizes[lo - base]
            stop = lo + 1
            while stop < hi:
                total += self._sizes[stop - base]
                if total > max_size:
                    break
                stop += 1
            hi = stop
        out: list[Entry] = []
        loc = -1
        rec_first, rec = 0, ()
        for index in range(lo, hi):
            at = self._locs[index - base]
            if at != loc:
                loc = at
                rec_first, rec = self._store._load(at, self.group_id)
            out.append(rec[index - rec_first])
        return out

    def snapshot(self) -> Snapshot:
        return self._snap

    # --- GroupLog (writes) -------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        entries = self._appendable(entries)
        if not entries:
            return
        e0 = entries[0].index
        loc = self._store._write(R.ENTRIES, [self.group_id, e0, _flat(entries)])
        self._appended(entries, loc)

    def _appendable(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        """The part of `entries` this log does not hold yet (checked to follow it)."""
        self._check()
        if not entries:
            return entries
        first = self._off + 1
        e0 = entries[0].index
        if entries[-1].index != e0 + len(entries) - 1:
            raise ValueError("appended entries must have consecutive indexes")
        if entries[-1].index < first:
            return ()
        if e0 < first:
            entries = entries[first - e0:]
            e0 = first
        if e0 > self.last_index() + 1:
            raise Unavailable(f"missing log entry [last: {self.last_index()}, append at: {e0}]")
        return entries

    def _appended(self, entries: Sequence[Entry], loc: int) -> None:
        e0 = entries[0].index
        self._store._cache_put(loc, self.group_id, e0, list(entries))
        self._apply_append(e0, [e.term for e in entries], [len(e.data) for e in entries], loc)

    def hard_state(self) -> HardState:
        return self._hs

    def set_hard_state(self, hard_state: HardState) -> None:
        self._check()
        if hard_state == self._hs:
            return
        self._store._write(R.HARD_STATE, _hard_state_fields(self.group_id, hard_state))
        self._hs = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._check()
        if snapshot.metadata.index < self._snap.metadata.index:
            raise SnapshotOutOfDate(f"snapshot {snapshot.metadata.index} is older than "
                                    f"{self._snap.metadata.index}")
        self._store._write(R.SNAPSHOT, [self.group_id, *_snap_fields(snapshot)])
        self._apply_snapshot(snapshot)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        self._check()
        if index <= self._snap.metadata.index:
            raise SnapshotOutOfDate(f"snapshot {index} is not newer than "
                                    f"{self._snap.metadata.index}")
        snap = Snapshot(SnapshotMetadata(index, self.term(index), conf_state), data)
        self._store._write(R.SNAPSHOT_META, [self.group_id, *_snap_fields(snap)])
        self._snap = snap
        return snap

    def compact(self, index: int) -> None:
        self._check()
        if index <= self._off:
            raise Compacted(f"index {index} already compacted (first index {self._off + 1})")
        if index > self.last_index():
            raise Unavailable(f"compact {index} beyond last index {self.last_index()}")
        term = self.term(index)
        self._store._write(R.COMPACT, [self.group_id, index, term])
        self._apply_compact(index, term)

    # --- shared by live writes and replay ----------------------------------------------

    def _check(self) -> None:
        if self._removed:
            raise CorruptLog(f"raft group {self.group_id} was removed from the log")
        self._store._check_open()

    def _apply_append(self, e0: int, terms, sizes, loc: int) -> None:
        pos = e0 - self._off - 1
        if pos < 0 or pos > len(self._terms):
            raise ValueError(f"append at {e0} does not fit log {self._off + 1}..{self.last_index()}")
        del self._terms[pos:]
        del self._sizes[pos:]
        del self._locs[pos:]
        self._terms.extend(terms)
        self._sizes.extend(sizes)
        self._locs.extend([loc] * len(terms))

    def _apply_snapshot(self, snap: Snapshot) -> None:
        self._snap = snap
        self._off = snap.metadata.index
        self._off_term = snap.metadata.term
        self._terms = array("Q")
        self._sizes = array("I")
        self._locs = array("Q")

    def _apply_compact(self, index: int, term: int) -> None:
        k = index - self._off
        del self._terms[:k]
        del self._sizes[:k]
        del self._locs[:k]
        self._off = index
        self._off_term = term

    def _fill_hole(self, index: int) -> None:
        """Replay only: entries up to `index` were live when written but their records
        are in deleted segments, so a later record must discard them; stand in for them."""
        missing = index - self.last_index()
        if missing > 0:
            self._terms.extend([_HOLE] * missing)
            self._sizes.extend([0] * missing)
            self._locs.extend([0] * missing)

    def _has_hole(self) -> bool:
        return _HOLE in self._terms

    def _pinned_segment(self) -> int | None:
        return self._locs[0] >> _OFFSET_BITS if self._locs else None

    def _live_bytes(self) -> int:
        return sum(self._sizes) + _ENTRY_OVERHEAD * len(self._sizes)


class WalLogStore:
    """All Raft groups' logs of one node in one directory (`zan.raft.storage.LogStore`)."""

    _log = Logger()

    def __init__(self, path: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE,
                 cache_size: int = DEFAULT_CACHE_SIZE):
        self.path = os.fspath(path)
        self.segment_size = segment_size
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int], tuple[int, list[Entry]]] = OrderedDict()
        self._cache_bytes = 0
        self._groups: dict[int, _Group] = {}
        self._segments: dict[int, _Segment] = {}   # every segment on disk or pending
        self._sealed: list[_Segment] = []           # full segments not flushed yet
        self._active: _Segment | None = None
        self._rolling = False
        self._batches = 0
        self._failed: BaseException | None = None
        self._closed = False
        os.makedirs(self.path, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.path, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            raise CorruptLog(f"raft WAL {self.path} is in use by another process") from e
        try:
            last = self._recover()
            self._start_segment(last + 1)
            self.sync()
        except BaseException:
            self._close_files()
            raise

    # --- LogStore ----------------------------------------------------------------------

    def group(self, group_id: int) -> _Group:
        self._check_open()
        g = self._groups.get(group_id)
        if g is None:
            self._write(R.CREATE, [group_id])
            g = self._groups[group_id] = _Group(self, group_id)
        return g

    def group_ids(self) -> list[int]:
        return sorted(self._groups)

    def append_atomic(self, parts: Sequence[tuple[int, Sequence[Entry]]]) -> None:
        """Append entries to several groups in one record: after a crash either every
        group has its part or none has.  Each part is checked as `GroupLog.append`
        checks its entries, before anything is written."""
        self._check_open()
        checked = []
        for gid, entries in parts:
            g = self.group(gid)
            entries = g._appendable(entries)
            if entries:
                checked.append((g, entries))
        if not checked:
            return
        loc = self._write(R.ATOMIC, [[g.group_id, entries[0].index, _flat(entries)]
                                     for g, entries in checked])
        for g, entries in checked:
            g._appended(entries, loc)

    def remove_group(self, group_id: int) -> None:
        self._check_open()
        if group_id in self._groups:
            # Written before forgetting the group: a segment started by this very write
            # checkpoints the group, and replay then needs the REMOVE after it.
            self._write(R.REMOVE, [group_id])
            self._groups.pop(group_id)._removed = True

    def sync(self) -> None:
        self._check_open()
        active = self._active
        if not self._sealed and not active.pending:
            return
        try:
            for seg in self._sealed:
                self._flush(seg, sealed=True)
            self._sealed.clear()
            self._flush(active)
            self._collect()
        except OSError as e:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing
            # written since the last good sync can be trusted, so refuse further work.
            self._failed = e
            raise CorruptLog(f"raft WAL {self.path}: write failed: {e}") from e

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._failed is None:
                self.sync()
        finally:
            self._closed = True
            self._close_files()

    # --- writing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise CorruptLog(f"raft WAL {self.path} is closed")
        if self._failed is not None:
            raise CorruptLog(f"raft WAL {self.path} failed earlier: {self._failed}")

    def _write(self, rtype: R, fields: list) -> int:
        """Frame a record into the active segment's buffer; returns its location."""
        seg = self._active
        if not self._rolling:
            # A checkpoint alone may outgrow a small segment: roll only past it.
            if seg.end() >= self.segment_size and seg.end() > seg.body:
                self._roll()
                seg = self._active
            elif not seg.pending and seg.size:
                self._batches += 1
                self._frame(seg, R.BATCH, [self._batches])
        return self._frame(seg, rtype, fields)

    @staticmethod
    def _frame(seg: _Segment, rtype: R, fields: list) -> int:
        offset = seg.end()
        seg.pending += frame(seg.seq, offset, rtype, _packb(fields))
        return seg.seq << _OFFSET_BITS | offset

    def _roll(self) -> None:
        self._sealed.append(self._active)
        self._start_segment(self._active.seq + 1)

    def _start_segment(self, seq: int) -> None:
        seg = _Segment(seq, self._segment_path(seq))
        self._segments[seq] = seg
        self._active = seg
        self._rolling = True
        try:
            self._frame(seg, R.SEGMENT, [_MAGIC, _VERSION, seq])
            copy = self._copy_forward_set(seq)
            for gid in sorted(self._groups):
                self._checkpoint(seg, self._groups[gid], gid in copy)
            self._frame(seg, R.CHECKPOINT_END, [seq, len(self._groups)])
            seg.body = seg.end()
        finally:
            self._rolling = False

    def _copy_forward_set(self, new_seq: int) -> set[int]:
        """Groups whose live entries are rewritten into the new segment's checkpoint: those
        pinning the oldest kept segment, smallest first, within an eighth of a segment."""
        pins = {gid: g._pinned_segment() for gid, g in self._groups.items()}
        pinned = [s for s in pins.values() if s is not None]
        if not pinned or min(pinned) >= new_seq - 1:
            return set()
        oldest = min(pinned)
        budget = self.segment_size // 8
        chosen: set[int] = set()
        for size, gid in sorted((self._groups[gid]._live_bytes(), gid)
                                for gid, s in pins.items() if s == oldest):
            if size > budget:
                break
            budget -= size
            chosen.add(gid)
        return chosen

    def _checkpoint(self, seg: _Segment, g: _Group, copy: bool) -> None:
        hs = g._hs
        entries = g.entries(g.first_index(), g.last_index() + 1) if copy else []
        loc = self._frame(seg, R.CHECKPOINT, [
            g.group_id, hs.term, hs.vote, hs.commit, *_snap_fields(g._snap),
            g._off, g._off_term, _flat(entries), *((True,) if hs.recovering else ())])
        if entries:
            g._locs = array("Q", [loc]) * len(entries)
            self._cache_put(loc, g.group_id, entries[0].index, entries)

    def _flush(self, seg: _Segment, sealed: bool = False) -> None:
        created = seg.fd is None
        if created:
            seg.fd = os.open(seg.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            if not sealed:
                self._preallocate(seg)
        data = memoryview(seg.pending)
        written = 0
        while written < len(data):
            written += os.pwrite(seg.fd, data[written:], seg.size + written)
        if sealed:
            # Trimmed before the next segment exists: recovery may then take zeros at the
            # end of the last segment for preallocation, and anywhere else for damage.
            os.ftruncate(seg.fd, seg.size + len(data))
        os.fdatasync(seg.fd)
        if created:
            self._fsync_dir()
        seg.size += len(seg.pending)
        seg.pending = bytearray()

    def _preallocate(self, seg: _Segment) -> None:
        try:
            os.posix_fallocate(seg.fd, 0, self.segment_size)
        except OSError as e:
            # Only a cost: the file then grows with each write, as it would anyway.
            self._log.warn("raft WAL {path}: cannot preallocate {size} bytes: {error}",
                           path=seg.path, size=self.segment_size, error=e)

    def _collect(self) -> None:
        """Delete the segments no live entry needs any more (oldest first)."""
        keep = self._active.seq
        for g in self._groups.values():
            pin = g._pinned_segment()
            if pin is not None and pin < keep:
                keep = pin
        doomed = sorted(seq for seq in self._segments if seq < keep)
        for seq in doomed:
            seg = self._segments.pop(seq)
            if seg.fd is not None:
                os.close(seg.fd)
            os.unlink(seg.path)
        if doomed:
            self._fsync_dir()
            self._log.debug("raft WAL {path}: deleted segments {first}..{last}",
                            path=self.path, first=doomed[0], last=doomed[-1])

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- reading -----------------------------------------------------------------------

    def _cache_put(self, loc: int, gid: int, first: int, entries: list[Entry]) -> None:
        cost = sum(len(e.data) for e in entries) + _ENTRY_OVERHEAD * len(entries)
        key = (loc, gid)        # an ATOMIC record holds entries of several groups
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= self._cost(old[1])
        self._cache[key] = (first, entries)
        self._cache_bytes += cost
        while self._cache_bytes > self._cache_size and len(self._cache) > 1:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._cache_bytes -= self._cost(dropped)

    @staticmethod
    def _cost(entries: list[Entry]) -> int:
        return sum(len(e.data) for e in entries) + _ENTRY_OVERHEAD * len(entries)

    def _load(self, loc: int, gid: int) -> tuple[int, list[Entry]]:
        """(first index, entries) of group `gid` in the record at `loc`."""
        hit = self._cache.get((loc, gid))
        if hit is not None:
            self._cache.move_to_end((loc, gid))
            return hit
        seq, offset = loc >> _OFFSET_BITS, loc & _OFFSET_MASK
        seg = self._segments[seq]
        if offset >= seg.size:
            data, base = seg.pending, seg.size
        else:
            if seg.fd is None:
                seg.fd = os.open(seg.path, os.O_RDONLY)
            head = os.pread(seg.fd, HEADER_SIZE, offset)
            length = int.from_bytes(head[4:8], "big")
            data, base = head + os.pread(seg.fd, length, offset + HEADER_SIZE), offset
        parsed = parse_at(data, base, seq, offset)
        if parsed is None:
            raise CorruptLog(f"corrupt record in {seg.path} at offset {offset}")
        rtype, body, _ = parsed
        fields = _unpack(body)
        if rtype == R.ENTRIES:
            first, flat = fields[1], fields[2]
        elif rtype == R.ATOMIC:
            first, flat = next((part[1], part[2]) for part in fields if part[0] == gid)
        else:                                   # a checkpoint holding copied entries
            first, flat = fields[9] + 1, fields[11]
        entries = _unflat(first, flat)
        self._cache_put(loc, gid, first, entries)
        return first, entries

    # --- recovery ----------------------------------------------------------------------

    def _segment_path(self, seq: int) -> str:
        return os.path.join(self.path, f"{seq:016x}.wal")

    def _recover(self) -> int:
        """Replay every segment; returns the last sequence number seen (0 if none)."""
        seqs = sorted(int(m.group(1), 16) for name in os.listdir(self.path)
                      if (m := _SEGMENT_NAME.match(name)))
        for prev, seq in zip(seqs, seqs[1:]):
            if seq != prev + 1:
                raise CorruptLog(f"raft WAL {self.path}: segment {prev + 1:016x}.wal is missing")
        for n, seq in enumerate(seqs):
            self._replay_segment(seq, first=n == 0, last=n == len(seqs) - 1)
        for g in self._groups.values():
            if g._has_hole():
                raise CorruptLog(f"raft WAL {self.path}: the log of group {g.group_id} "
                                 f"misses entries whose segments were deleted")
        return seqs[-1] if seqs else 0

    def _replay_segment(self, seq: int, *, first: bool, last: bool) -> None:
        path = self._segment_path(seq)
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        checkpointed = False
        while offset < len(data):
            parsed = parse_at(data, 0, seq, offset)
            if parsed is None:
                if last and data.count(0, offset) == len(data) - offset:
                    self._truncate(path, offset)    # the unused preallocation
                else:
                    self._damaged(path, data, seq, offset, last)
                break
            rtype, body, nxt = parsed
            try:
                fields = _unpack(body)
                if offset == 0:
                    if rtype != R.SEGMENT or fields != [_MAGIC, _VERSION, seq]:
                        raise ValueError("bad segment header")
                elif rtype == R.SEGMENT:
                    raise ValueError("segment header in the middle")
                elif rtype == R.CHECKPOINT_END:
                    checkpointed = True
                elif rtype == R.CHECKPOINT:
                    # Later checkpoints restate what replay built, except copied entries:
                    # their original records may be gone, so the copy is authoritative.
                    if first or fields[11]:
                        self._replay_checkpoint(fields, seq << _OFFSET_BITS | offset)
                else:
                    self._replay(rtype, fields, seq << _OFFSET_BITS | offset)
            except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as e:
                raise CorruptLog(f"bad record in {path} at offset {offset}: {e!r}") from e
            offset = nxt
        if offset == 0:
            # Torn before its header: the segment never held anything durable.
            os.unlink(path)
            self._fsync_dir()
            return
        if first and not checkpointed and not last:
            raise CorruptLog(f"raft WAL {path}: first segment has no complete checkpoint")
        self._segments[seq] = _Segment(seq, path, size=offset)

    def _damaged(self, path: str, data: bytes, seq: int, offset: int, last: bool) -> None:
        if not last:
            raise CorruptLog(f"corrupt record in {path} at offset {offset} (not the last segment)")
        later = find_record(data, seq, offset, R.BATCH)
        if later is not None:
            raise CorruptLog(f"corrupt record in {path} at offset {offset} "
                             f"(a later sync begins at offset {later})")
        self._log.warn("raft WAL {path}: torn tail at offset {offset}, dropping {dropped} bytes",
                       path=path, offset=offset, dropped=len(data) - offset)
        self._truncate(path, offset)

    @staticmethod
    def _truncate(path: str, offset: int) -> None:
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())

    def _replay_checkpoint(self, f: list, loc: int) -> None:
        (gid, hs_term, hs_vote, hs_commit, s_index, s_term, voters, learners, s_data,
         off, off_term, flat) = f[:12]
        g = self._groups[gid] = _Group(self, gid)
        g._hs = HardState(hs_term, hs_vote, hs_commit, len(f) > 12 and f[12] is True)
        g._snap = _snap_from(s_index, s_term, voters, learners, s_data)
        g._off, g._off_term = off, off_term
        if flat:
            g._apply_append(off + 1, flat[0::3], [len(d) for d in flat[2::3]], loc)

    def _replay(self, rtype: int, f: list, loc: int) -> None:
        if rtype == R.ATOMIC:
            for gid, e0, flat in f:
                g = self._groups[gid]
                g._fill_hole(e0 - 1)
                g._apply_append(e0, flat[0::3], [len(d) for d in flat[2::3]], loc)
            return
        gid = f[0]
        if rtype == R.BATCH:
            return
        if rtype == R.CREATE:
            self._groups[gid] = _Group(self, gid)
            return
        g = self._groups[gid]
        if rtype == R.ENTRIES:
            flat, e0 = f[2], f[1]
            g._fill_hole(e0 - 1)
            g._apply_append(e0, flat[0::3], [len(d) for d in flat[2::3]], loc)
        elif rtype == R.HARD_STATE:
            g._hs = HardState(f[1], f[2], f[3], len(f) > 4 and f[4] is True)
        elif rtype == R.SNAPSHOT:
            g._apply_snapshot(_snap_from(*f[1:6]))
        elif rtype == R.SNAPSHOT_META:
            g._snap = _snap_from(*f[1:6])
        elif rtype == R.COMPACT:
            index = f[1]
            if index <= g._off:
                raise ValueError(f"compaction to {index} behind {g._off} in group {gid}")
            g._fill_hole(index)
            g._apply_compact(index, f[2])
        elif rtype == R.REMOVE:
            del self._groups[gid]
        else:
            raise ValueError(f"unexpected record type {rtype}")

    def _close_files(self) -> None:
        for seg in self._segments.values():
            if seg.fd is not None:
                os.close(seg.fd)
                seg.fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
