"""The Raft log as the core sees it: durable `Storage` plus a not-yet-persisted tail.

Layout (indexes grow to the right)::

    storage.first_index()-1 (snapshot)   storage entries   |  unstable.offset ... unstable entries
                                   applied <= applying <= committed <= last_index()

`Unstable` holds what the core appended (or the snapshot it received) until the application
reports, through `stable_to` / `stable_snap_to`, that it is durable.  Invariant violations
raise `AssertionError`: they mean a bug in the core or a storage that lost synced data.
"""

from __future__ import annotations

from zan.raft.storage import Compacted, Storage, Unavailable, limit_size
from zan.raft.types import Entry, Snapshot

__all__ = ["Unstable", "RaftLog"]


class Unstable:
    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int):
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        offset = self.offset
        if i < offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == i:
                return snap.metadata.term
            return None
        k = i - offset
        if k < len(self.entries):
            return self.entries[k].term
        return None

    def stable_to(self, i: int, t: int) -> None:
        gt = self.maybe_term(i)
        # Only entries that match the persisted term are stable; a newer entry at the same
        # index (written after the Ready was taken) stays unstable.
        if gt is not None and gt == t and i >= self.offset:
            del self.entries[:i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        offset = self.offset
        if after == offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= offset:
            # Replaces the whole unstable tail (and possibly conflicts with storage).
            self.offset = after
            self.entries = list(ents)
        else:
            del self.entries[after - offset:]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset:hi - self.offset]


class RaftLog:
    __slots__ = ("storage", "unstable", "committed", "applying", "applied", "max_next_ents_size")

    def __init__(self, storage: Storage, max_next_ents_size: int | None = None):
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_next_ents_size = max_next_ents_size

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})")

    # --- indexes and terms

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry `i`; raises Compacted / Unavailable out of [first_index()-1, last_index()]."""
        u = self.unstable
        k = i - u.offset
        if 0 <= k < len(u.entries):
            return u.entries[k].term
        t = u.maybe_term(i)
        if t is not None:
            return t
        if i > self.last_index():
            raise Unavailable(f"index {i} is past the last index")
        if i < self.first_index() - 1:
            raise Compacted(f"index {i} is compacted")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """§5.4.1: a candidate's log (last index `lasti`, last term `term`) is at least as
        up-to-date as ours."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    # --- appending

    def maybe_append(self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]) -> int | None:
        """Append `ents` after (index, log_term) if the log matches there (§5.3 consistency
        check); returns the index of the last new entry, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflicts with committed entry (committed {self.committed})")
            self.append(list(ents[ci - index - 1:]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"appending after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry of `ents` that is new or conflicts with ours, or 0."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, with that term (the fast
        backtracking hint: everything above it certainly conflicts)."""
        while index > 0:
            try:
                our = self.term(index)
            except (Compacted, Unavailable):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # --- commit / apply / stable

    def commit_to(self, c: int) -> None:
        if c > self.committed:
            if c > self.last_index():
                raise AssertionError(f"commit {c} is past the last index {self.last_index()}")
            self.committed = c

    def maybe_commit(self, max_index: int, term: int) -> bool:
        # §5.4.2: only an entry of the current term is committed by counting replicas.
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise AssertionError(f"applied {i} out of range [{self.applied}, {self.committed}]")
        self.applied = i
        if self.applying < i:
            self.applying = i

    def accept_applying(self, i: int) -> None:
        self.applying = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, s: Snapshot) -> None:
        self.committed = s.metadata.index
        self.unstable.restore(s)

    # --- reading

    def unstable_entries(self) -> list[Entry]:
        return self.unstable.entries

    def has_next_committed_ents(self) -> bool:
        c = self.committed
        return c > self.applying and c >= self.first_index()

    def next_committed_ents(self) -> list[Entry]:
        lo = max(self.applying + 1, self.first_index())
        hi = self.committed + 1
        if lo >= hi:
            return []
        return self.slice(lo, hi, self.max_next_ents_size)

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries(self, i: int, max_size: int | None) -> list[Entry]:
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index(), None)

    def slice(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise Compacted(f"index {lo} is compacted (first index {fi})")
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice [{lo}, {hi}) out of bound [{fi}, {self.last_index()}]")
        if lo == hi:
            return []
        u = self.unstable
        uoff = u.offset
        if lo >= uoff:
            return limit_size(u.entries[lo - uoff:hi - uoff], max_size)
        stored = self.storage.entries(lo, min(hi, uoff), max_size)
        if hi <= uoff or len(stored) < min(hi, uoff) - lo:
            return stored
        return limit_size(stored + u.entries[:hi - uoff], max_size)
