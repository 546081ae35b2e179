"""Raft value types: entries, hard state, snapshots and messages.

These mirror etcd's ``raftpb`` (raft.proto): frozen, slotted dataclasses so they are cheap,
hashable and safe to share between the core, the log storage and the transport codec.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "EntryType", "Entry", "HardState", "ConfState", "SnapshotMetadata", "Snapshot",
    "MessageType", "Message", "ConfChangeType", "ConfChange", "NONE",
]

NONE = 0
"""Replica id meaning "nobody" (no leader, no vote)."""


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: int = NONE
    commit: int = 0
    recovering: bool = False
    """This replica lost its state (or never had any) and has not yet caught up with a
    leader: it neither votes nor counts towards a quorum (see `Raft.recovering`)."""

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0 and not self.recovering


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot as Raft sees it.  `data` is opaque to Raft: the application decides
    what it holds (for the data node: a small descriptor telling the follower where to
    stream the LevelDB checkpoint from, never the data itself)."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


class MessageType(IntEnum):
    HUP = 0                 # local: start an election
    BEAT = 1                # local: leader sends heartbeats
    PROP = 2                # proposal (local, or forwarded by a follower)
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10        # local: the transport could not reach a peer
    SNAP_STATUS = 11        # local: outcome of sending a snapshot
    CHECK_QUORUM = 12       # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18
    STATE_PROBE = 19        # an empty founding replica asks: may the group be founded?
    STATE_PROBE_RESP = 20   # not reject: "I am empty and founding too"; else the group exists


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    frm: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    recovering: bool = False   # on APP_RESP / HEARTBEAT_RESP: the sender is recovering


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    ADD_LEARNER_NODE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change, carried in an `EntryType.CONF_CHANGE` entry.
    Promoting a learner is `ADD_NODE` of an existing learner."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""
