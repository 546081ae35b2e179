"""ReadIndex bookkeeping (Raft thesis §6.4; etcd's ``read_only.go``).

A read request is stamped with the leader's commit index, then held until a heartbeat
round carrying the request's context is acknowledged by a majority: only then is it
certain that no newer leader existed when the index was taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from zan.raft.types import Message

__all__ = ["ReadOnlyOption", "ReadState", "ReadIndexStatus", "ReadOnly"]


class ReadOnlyOption(IntEnum):
    SAFE = 0
    """Confirm leadership with a heartbeat round per read batch."""
    LEASE_BASED = 1
    """Answer at once while the leader lease holds (a majority answered the leader within
    half an election timeout, by its ticks; see `Raft._lease_valid`), else as SAFE;
    relies on bounded clock drift and CheckQuorum."""


@dataclass(frozen=True, slots=True)
class ReadState:
    """The application may serve the read identified by `request_ctx` once it has applied
    up to `index`."""

    index: int
    request_ctx: bytes


class ReadIndexStatus:
    __slots__ = ("req", "index", "acks")

    def __init__(self, req: Message, index: int):
        self.req = req
        self.index = index
        self.acks: dict[int, bool] = {}


class ReadOnly:
    __slots__ = ("option", "pending_read_index", "read_index_queue")

    def __init__(self, option: ReadOnlyOption):
        self.option = option
        self.pending_read_index: dict[bytes, ReadIndexStatus] = {}
        self.read_index_queue: list[bytes] = []

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.context
        if ctx in self.pending_read_index:
            return
        self.pending_read_index[ctx] = ReadIndexStatus(m, index)
        self.read_index_queue.append(ctx)

    def recv_ack(self, frm: int, context: bytes) -> dict[int, bool] | None:
        rs = self.pending_read_index.get(context)
        if rs is None:
            return None
        rs.acks[frm] = True
        return rs.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Release the request with `context` and every request queued before it: an ack
        for a later heartbeat round confirms the earlier rounds too."""
        queue = self.read_index_queue
        try:
            i = queue.index(context)
        except ValueError:
            return []
        ctxs = queue[:i + 1]
        del queue[:i + 1]
        return [self.pending_read_index.pop(c) for c in ctxs]

    def last_pending_request_ctx(self) -> bytes:
        return self.read_index_queue[-1] if self.read_index_queue else b""
