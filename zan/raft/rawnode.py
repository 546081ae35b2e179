"""`RawNode`: the application's handle on one Raft group (etcd's ``rawnode.go``).

The handshake is ``has_ready()`` / ``ready()`` / ``advance(rd)``.  For each `Ready`, in
this order, the application must:

1. persist ``rd.snapshot`` (if any), append ``rd.entries`` and store ``rd.hard_state`` (if
   any), durably when ``rd.must_sync``;
2. send ``rd.messages`` (only now: they may depend on what was just persisted);
3. apply ``rd.committed_entries`` (calling `apply_conf_change` for CONF_CHANGE entries)
   and serve ``rd.read_states`` once applied reaches their index;
4. call ``advance(rd)``.

Proposal identity: `propose` returns ``(term, index)`` when this node leads (the entry's
place in the log: it was accepted iff the entry later applied at `index` has `term`), and
None when the proposal was forwarded to the leader.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from zan.raft.codec import encode_conf_change
from zan.raft.core import Config, Raft, SoftState, StateType
from zan.raft.read_only import ReadState
from zan.raft.storage import Storage
from zan.raft.types import (
    NONE, ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
)

__all__ = ["Ready", "RawNode", "Status", "ProgressStatus"]

MT = MessageType
_LOCAL = frozenset({MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM})
_EMPTY_HS = HardState()


@dataclass(slots=True)
class Ready:
    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    must_sync: bool = False


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    match: int
    next: int
    state: str
    recovering: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match, "next": self.next, "state": self.state,
                "recovering": self.recovering}


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    raft_state: str
    progress: dict[int, ProgressStatus]
    lead_transferee: int
    recovering: bool = False   # lost its state: no vote, no quorum until caught up

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "term": self.term, "vote": self.vote, "commit": self.commit,
            "applied": self.applied, "lead": self.lead, "raft_state": self.raft_state,
            "progress": {p: s.to_dict() for p, s in self.progress.items()},
            "lead_transferee": self.lead_transferee, "recovering": self.recovering,
        }


class RawNode:
    __slots__ = ("raft", "_prev_lead", "_prev_state", "_prev_hs")

    def __init__(self, config: Config, storage: Storage, rand: random.Random | None = None):
        self.raft = Raft(config, storage, rand)
        self._prev_lead = self.raft.lead
        self._prev_state = self.raft.state
        self._prev_hs = self.raft.hard_state()

    def bootstrap(self, peers: Sequence[int]) -> None:
        """Start a brand-new group with `peers` as voters, the way etcd does: one
        ADD_NODE entry per peer at term 1, committed and applied to the configuration at
        once.  The entries reach the application in the first Ready like any others.
        Every founding member must bootstrap with the same peers."""
        self.raft.bootstrap(peers)

    def start_empty(self, founders: Sequence[int] | None) -> None:
        """Start a replica that holds no state at all.  It may be a founding member of a
        group not created yet (`founders`: the group's first voters), a member just added
        to an existing group, or a member that lost its disk: nobody can tell from here.
        So it starts *recovering* (it neither votes nor counts towards a quorum until a
        leader has brought it up to date) and, given `founders`, asks them whether they
        are all as empty as it is: only then is the group founded (see `Raft`)."""
        self.raft.start_empty(founders)

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MT.HUP, frm=self.raft.id))

    def propose(self, data: bytes) -> tuple[int, int] | None:
        """Propose one normal entry.  Returns (term, index) when this node leads, None when
        the proposal was forwarded.  Raises ProposalDropped / NotLeader."""
        r = self.raft
        if r.state == StateType.LEADER:
            return r.term, r.propose_local((data,))
        r.step(Message(MT.PROP, frm=r.id, entries=(Entry(0, 0, EntryType.NORMAL, data),)))
        return None

    def propose_batch(self, datas: Sequence[bytes]) -> tuple[int, int] | None:
        """Propose several normal entries at once; when leading, returns (term, index of
        the first one): the rest follow at consecutive indexes."""
        if not datas:
            raise ValueError("empty proposal batch")
        r = self.raft
        if r.state == StateType.LEADER:
            last = r.propose_local(datas)
            return r.term, last - len(datas) + 1
        r.step(Message(MT.PROP, frm=r.id,
                       entries=tuple(Entry(0, 0, EntryType.NORMAL, d) for d in datas)))
        return None

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int] | None:
        r = self.raft
        was_leader = r.state == StateType.LEADER
        r.step(Message(MT.PROP, frm=r.id,
                       entries=(Entry(0, 0, EntryType.CONF_CHANGE, encode_conf_change(cc)),)))
        if was_leader:
            return r.term, r.raft_log.last_index()
        return None

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        if m.type in _LOCAL:
            raise ValueError(f"cannot step local message type {m.type.name}")
        self.raft.step(m)

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MT.TRANSFER_LEADER, frm=transferee))

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer arrives as a `ReadState` with
        this `ctx` in a later Ready (or never, if leadership is lost meanwhile)."""
        self.raft.step(Message(MT.READ_INDEX, frm=self.raft.id, context=ctx))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(MT.UNREACHABLE, frm=node_id))

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        self.raft.step(Message(MT.SNAP_STATUS, frm=node_id, reject=not ok))

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        r = self.raft
        log = r.raft_log
        if r.msgs or log.unstable.entries or log.unstable.snapshot is not None or r.read_states:
            return True
        if r.lead != self._prev_lead or r.state != self._prev_state:
            return True
        prev = self._prev_hs
        if (r.term != prev.term or r.vote != prev.vote or log.committed != prev.commit
                or r.recovering != prev.recovering):
            return True
        return log.has_next_committed_ents()

    def ready(self) -> Ready:
        r = self.raft
        log = r.raft_log
        rd = Ready(entries=list(log.unstable.entries), committed_entries=log.next_committed_ents(),
                   messages=r.msgs)
        r.msgs = []
        if r.lead != self._prev_lead or r.state != self._prev_state:
            rd.soft_state = SoftState(r.lead, r.state)
            self._prev_lead = r.lead
            self._prev_state = r.state
        prev = self._prev_hs
        if (r.term != prev.term or r.vote != prev.vote or log.committed != prev.commit
                or r.recovering != prev.recovering):
            hs = HardState(r.term, r.vote, log.committed, r.recovering)
            rd.hard_state = hs
            # Term, vote and whether we may vote must be durable before the messages that
            # depend on them are sent; a commit index alone may be lost and relearned.
            rd.must_sync = (hs.term != prev.term or hs.vote != prev.vote
                            or hs.recovering != prev.recovering)
            self._prev_hs = hs
        if rd.entries:
            rd.must_sync = True
        if log.unstable.snapshot is not None:
            rd.snapshot = log.unstable.snapshot
            rd.must_sync = True
        if r.read_states:
            rd.read_states = r.read_states
            r.read_states = []
        if rd.committed_entries:
            log.accept_applying(rd.committed_entries[-1].index)
        return rd

    def advance(self, rd: Ready) -> None:
        log = self.raft.raft_log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            e = rd.entries[-1]
            log.stable_to(e.index, e.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
        elif rd.snapshot is not None and rd.snapshot.metadata.index > log.applied:
            log.applied_to(rd.snapshot.metadata.index)

    # ------------------------------------------------------------------ status

    def status(self) -> Status:
        r = self.raft
        progress = {}
        if r.state == StateType.LEADER:
            progress = {pid: ProgressStatus(pr.match, pr.next, str(pr.state), pr.recovering)
                        for pid, pr in sorted(r.prs.items())}
        return Status(r.id, r.term, r.vote, r.raft_log.committed, r.raft_log.applied, r.lead,
                      str(r.state), progress, r.lead_transferee, r.recovering)

    @property
    def is_leader(self) -> bool:
        return self.raft.state == StateType.LEADER

    @property
    def lead(self) -> int:
        return self.raft.lead
