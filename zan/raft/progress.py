"""What the leader knows about each follower: match/next, the replication state machine
and the in-flight window (etcd's ``tracker`` package).

States::

    PROBE ----(append acked)----> REPLICATE
      ^  <---(rejected / unreachable)---'
      |
    SNAPSHOT (entries it needs were compacted; waits for SNAP_STATUS or an ack)

In PROBE the leader sends one append per heartbeat interval until it learns where the
logs match; in REPLICATE it streams optimistically, bounded by `Inflights`; in SNAPSHOT it
sends nothing until the snapshot is reported applied or failed.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

__all__ = ["ProgressState", "Progress", "Inflights"]


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return ("StateProbe", "StateReplicate", "StateSnapshot")[self]


class Inflights:
    """The last index of each append message in flight to one follower, bounded by a count
    and (optionally) a byte total."""

    __slots__ = ("_q", "size", "max_bytes", "bytes")

    def __init__(self, size: int, max_bytes: int = 0):
        self._q: deque[tuple[int, int]] = deque()
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0

    def add(self, index: int, nbytes: int = 0) -> None:
        # May exceed the limit by the one append a heartbeat response lets through (to
        # recover when every message of a full window was lost).
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        q = self._q
        while q and q[0][0] <= to:
            self.bytes -= q.popleft()[1]

    def full(self) -> bool:
        return len(self._q) >= self.size or (0 < self.max_bytes <= self.bytes)

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0


NEVER_HEARD = -(1 << 62)


class Progress:
    __slots__ = ("match", "next", "state", "msg_app_flow_paused", "pending_snapshot",
                 "recent_active", "last_heard", "inflights", "is_learner", "recovering")

    def __init__(self, next: int, match: int = 0, max_inflight: int = 256,
                 is_learner: bool = False, max_inflight_bytes: int = 0):
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.last_heard = NEVER_HEARD   # the leader's tick count when it last heard this peer
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.is_learner = is_learner
        # The peer said it is recovering (lost its state): its acknowledgements count
        # towards no quorum until it says otherwise.
        self.recovering = False

    def __repr__(self) -> str:
        return (f"Progress({self.state}, match={self.match}, next={self.next}"
                f"{', learner' if self.is_learner else ''}"
                f"{', recovering' if self.recovering else ''}"
                f"{', paused' if self.is_paused() else ''}"
                f"{f', pending_snap={self.pending_snapshot}' if self.state == ProgressState.SNAPSHOT else ''}"
                f", inflight={self.inflights.count()})")

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # Resume after the snapshot: it (or a failed attempt) tells us no more than that.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, last_index: int | None, nbytes: int) -> None:
        """Account for an append carrying entries up to `last_index` (None: no entries)."""
        if self.state == ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index, nbytes)
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            # One probe per round trip: wait for the answer (or the next heartbeat response).
            self.msg_app_flow_paused = True

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged everything up to `n`; False if that is old news."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at `rejected` was refused; the follower's log may match up to
        `match_hint`.  False when the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.SNAPSHOT:
            return True
        # PROBE: one append per round trip.  REPLICATE: the in-flight window is full;
        # a heartbeat response clears the flag so a window of lost messages cannot stall
        # the follower forever.
        return self.msg_app_flow_paused
