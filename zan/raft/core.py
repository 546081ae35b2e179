"""The Raft state machine (etcd's ``raft.go``), pure: no I/O, no clock, no global random.

Inputs are `Raft.step(msg)` and `Raft.tick()`; outputs accumulate in `msgs`, `read_states`
and the log's unstable part, collected by `zan.raft.rawnode.RawNode.ready()`.

Each role is a pair of bound methods swapped in place by the ``become_*`` methods:
``_step`` (`_step_leader`, `_step_candidate`, `_step_follower`) and ``_tick``
(`_tick_election`, `_tick_heartbeat`).  `step` does what every role shares (term
comparison, pre-vote, voting) and hands the rest to ``_step``.

**Replicas that lost their state.**  Raft assumes a replica's votes and log survive its
restarts.  One that comes back empty under its old id has forgotten what it voted and
what it acknowledged: were it to vote, a lagging replica could win with it and overwrite
entries a majority had acknowledged.  So a replica that starts with no state at all is
*recovering* (`recovering`, kept in its hard state until it ends):

- it grants no vote or pre-vote and never campaigns;
- it flags its append and heartbeat responses, and every leader leaves a flagged
  replica's acknowledgements out of its commit quorum, its lease and its ReadIndex
  rounds (so even a stale leader cannot commit or read with it).  CheckQuorum still
  counts it: a replica that votes for nobody cannot help elect another leader, and a
  leader whose followers all lost their disks must stay to bring them back;
- it ends once it holds the entry at a leader's commit index and that entry is of the
  leader's current term: that leader then won its term and committed with a majority
  that does not include this replica, and this replica now holds everything committed.
  It takes that leader as its vote for the term, so it votes for nobody else in it.

An empty replica cannot tell a group not founded yet from one whose data it lost.  Given
the founding voters (`start_empty`), it asks them (STATE_PROBE) and founds the group only
when every other founder answers that it is empty and founding too; any message of a
term above 0 from a peer means the group exists, and it stays recovering.  An empty log
therefore never founds a group that already exists, unless every replica lost its disk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Protocol, Sequence

from zan.errors import ConfigError, NotLeader, ProposalDropped
from zan.raft.codec import encode_conf_change
from zan.raft.log import RaftLog
from zan.raft.progress import NEVER_HEARD, Progress, ProgressState
from zan.raft.quorum import VoteResult, committed_index, vote_result
from zan.raft.read_only import ReadOnly, ReadOnlyOption, ReadState
from zan.raft.storage import Compacted, Storage, Unavailable
from zan.raft.types import (
    NONE, ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
)

__all__ = [
    "StateType", "RaftLogger", "NOOP_LOGGER", "Config", "Raft", "SoftState",
    "CAMPAIGN_TRANSFER",
]

MT = MessageType

CAMPAIGN_PRE_ELECTION = "pre-election"
CAMPAIGN_ELECTION = "election"
CAMPAIGN_TRANSFER_KIND = "transfer"
CAMPAIGN_TRANSFER = b"CampaignTransfer"
"""Context of a vote request sent on a leader's TIMEOUT_NOW: it bypasses the lease check."""

_LOCAL_TYPES = frozenset({MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM})


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3

    def __str__(self) -> str:
        return ("StateFollower", "StateCandidate", "StateLeader", "StatePreCandidate")[self]


class RaftLogger(Protocol):
    """Structured logging: `message` is a PEP 3101 format string over the keyword fields
    (the shape of `twisted.logger.Logger`'s methods)."""

    def debug(self, message: str, **fields: Any) -> None: ...

    def info(self, message: str, **fields: Any) -> None: ...

    def warning(self, message: str, **fields: Any) -> None: ...


class _NoopLogger:
    __slots__ = ()

    def debug(self, message: str, **fields: Any) -> None:
        pass

    info = warning = debug


NOOP_LOGGER: RaftLogger = _NoopLogger()


@dataclass(frozen=True, slots=True)
class Config:
    id: int
    election_tick: int = 10
    """Ticks without hearing from a leader before a follower campaigns (randomised to
    [election_tick, 2*election_tick))."""
    heartbeat_tick: int = 1
    """Ticks between leader heartbeats; must be < election_tick."""
    max_size_per_msg: int = 1 << 20
    """Upper bound on the entry data bytes of one append message (at least one entry is
    always sent)."""
    max_inflight_msgs: int = 256
    """Append messages in flight to one follower in REPLICATE state."""
    max_inflight_bytes: int = 0
    """Entry bytes in flight to one follower (0: unlimited)."""
    check_quorum: bool = False
    """A leader steps down when it has not heard from a majority for an election timeout;
    followers ignore votes while they hear from a leader (the leader lease)."""
    pre_vote: bool = False
    """Run a pre-election before bumping the term (thesis §9.6), so a partitioned node
    does not disrupt the cluster when it comes back."""
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    """Followers refuse proposals with NotLeader instead of forwarding them."""
    applied: int = 0
    """Last index the application applied (on restart)."""
    max_committed_size_per_ready: int | None = None
    logger: RaftLogger = field(default=NOOP_LOGGER, compare=False)

    def validate(self) -> None:
        if self.id == NONE:
            raise ConfigError("raft: id must not be 0")
        if self.heartbeat_tick <= 0:
            raise ConfigError("raft: heartbeat_tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("raft: election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("raft: max_inflight_msgs must be greater than 0")
        if self.max_size_per_msg <= 0:
            raise ConfigError("raft: max_size_per_msg must be greater than 0")
        if self.max_inflight_bytes < 0:
            raise ConfigError("raft: max_inflight_bytes must not be negative")
        if self.applied < 0:
            raise ConfigError("raft: applied must not be negative")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError("raft: read_only_option LEASE_BASED requires check_quorum")


@dataclass(frozen=True, slots=True)
class SoftState:
    lead: int
    raft_state: StateType


class Raft:
    def __init__(self, config: Config, storage: Storage, rand: random.Random | None = None):
        config.validate()
        self.id = config.id
        self.logger = config.logger
        self.rand = rand if rand is not None else random.Random(config.id)
        self.raft_log = RaftLog(storage, config.max_committed_size_per_ready)
        self.max_msg_size = config.max_size_per_msg
        self.max_inflight = config.max_inflight_msgs
        self.max_inflight_bytes = config.max_inflight_bytes
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self.read_only_option = config.read_only_option
        self.disable_proposal_forwarding = config.disable_proposal_forwarding
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        # Ticks since start: the clock of the leader lease (see `_lease_valid`).
        self.ticks = 0
        # When this replica last became leader (ticks): its voters count as heard then.
        self.leader_since = 0

        self.term = 0
        self.vote = NONE
        self.recovering = False
        # While an empty founding replica asks the others: the founders, and those of
        # them heard to be empty and founding too.  None once founded or known to exist.
        self.founders: tuple[int, ...] | None = None
        self.empty_founders: set[int] = set()
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.prs: dict[int, Progress] = {}
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self._peers: list[int] = []        # sorted ids of prs except self: send order
        self.votes: dict[int, bool] = {}
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.pending_read_index_messages: list[Message] = []
        self.read_only = ReadOnly(self.read_only_option)
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout

        hs, cs = storage.initial_state()
        self._restore_conf(cs)
        if not hs.is_empty():
            self._load_state(hs)
        if config.applied > 0:
            self.raft_log.applied_to(config.applied)
        self.become_follower(self.term, NONE)
        self.logger.info(
            "raft {id} started: term {term}, commit {commit}, applied {applied}, "
            "last index {last_index}, voters {voters}, learners {learners}",
            id=self.id, term=self.term, commit=self.raft_log.committed,
            applied=self.raft_log.applied, last_index=self.raft_log.last_index(),
            voters=sorted(self.voters), learners=sorted(self.learners))

    # ------------------------------------------------------------------ state views

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.raft_log.committed, self.recovering)

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def promotable(self) -> bool:
        pr = self.prs.get(self.id)
        return (pr is not None and not pr.is_learner and not self.recovering
                and not self.raft_log.has_pending_snapshot())

    def _load_state(self, hs: HardState) -> None:
        log = self.raft_log
        if hs.commit < log.committed or hs.commit > log.last_index():
            raise AssertionError(
                f"hard state commit {hs.commit} out of range [{log.committed}, {log.last_index()}]")
        log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote
        self.recovering = hs.recovering

    # ------------------------------------------------------------------ sending

    def _send(self, m: Message) -> None:
        if self.recovering and (m.type == MT.APP_RESP or m.type == MT.HEARTBEAT_RESP):
            m = replace(m, recovering=True)
        self.msgs.append(m)

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send `to` the entries it lacks (or a snapshot); False when nothing was sent."""
        pr = self.prs[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
            ents = log.entries(pr.next, self.max_msg_size)
        except (Compacted, Unavailable):
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        if ents:
            nbytes = 0
            for e in ents:
                nbytes += len(e.data)
            pr.sent_entries(ents[-1].index, nbytes)
        else:
            pr.sent_entries(None, 0)
        self.msgs.append(Message(MT.APP, to, self.id, self.term, prev_term, prev_index,
                                 tuple(ents), log.committed))
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            self.logger.debug("{id} skips snapshot to {to}: not recently active", id=self.id, to=to)
            return False
        try:
            snapshot = self.raft_log.snapshot()
        except Unavailable:
            self.logger.debug("{id} failed to send snapshot to {to}: temporarily unavailable",
                              id=self.id, to=to)
            return False
        if snapshot.is_empty():
            raise AssertionError("need a non-empty snapshot")
        self.logger.info("{id} sends snapshot at {index} (term {sterm}) to {to} [{pr}]",
                         id=self.id, index=snapshot.metadata.index, sterm=snapshot.metadata.term,
                         to=to, pr=pr)
        pr.become_snapshot(snapshot.metadata.index)
        self._send(Message(MT.SNAP, to, self.id, self.term, snapshot=snapshot))
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit past what it is known to have: it may not have it.
        commit = min(self.prs[to].match, self.raft_log.committed)
        self.msgs.append(Message(MT.HEARTBEAT, to, self.id, self.term, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for to in self._peers:
            self._maybe_send_append(to, True)

    def _bcast_heartbeat(self) -> None:
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        for to in self._peers:
            self._send_heartbeat(to, ctx)

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(MT.TIMEOUT_NOW, to, self.id, self.term))

    # ------------------------------------------------------------------ commit

    def maybe_commit(self) -> bool:
        prs = self.prs
        mci = committed_index(self.voters,
                              lambda v: 0 if (pr := prs[v]).recovering else pr.match)
        return self.raft_log.maybe_commit(mci, self.term)

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    # ------------------------------------------------------------------ role changes

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.votes = {}
        last = self.raft_log.last_index()
        for pid, pr in self.prs.items():
            npr = Progress(last + 1, 0, self.max_inflight, pr.is_learner, self.max_inflight_bytes)
            if pid == self.id:
                npr.match = last
            self.prs[pid] = npr
        self.pending_conf_index = 0
        self.read_only = ReadOnly(self.read_only_option)

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(self.election_timeout)

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self.logger.info("{id} became follower at term {term}", id=self.id, term=self.term)

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self.logger.info("{id} became candidate at term {term}", id=self.id, term=self.term)

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote.
        self._step = self._step_candidate
        self.votes = {}
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self.logger.info("{id} became pre-candidate at term {term}", id=self.id, term=self.term)

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.prs[self.id]
        pr.become_replicate()
        pr.recent_active = True
        self.leader_since = self.ticks
        # Conservatively assume the uncommitted tail may hold a conf change.
        self.pending_conf_index = self.raft_log.last_index()
        # The no-op entry of the new term: committing it commits everything before it
        # (§5.4.2, §8) and lets ReadIndex work.
        self._append_entries([Entry(self.term, self.raft_log.last_index() + 1)])
        self.logger.info("{id} became leader at term {term}", id=self.id, term=self.term)

    # ------------------------------------------------------------------ ticks

    def tick(self) -> None:
        self.ticks += 1
        self._tick()

    def _lease_valid(self) -> bool:
        """Whether a majority of the voters answered this leader within the last half
        election timeout (by its ticks).  Each of them refuses other candidates for a
        whole election timeout after it last heard the leader, so no other leader can
        exist yet: the half left covers a reply that was slow to arrive and tick clocks
        that run at slightly different rates.  CheckQuorum alone is not enough: it
        looks back over the previous whole election timeout at each timeout, so a leader
        cut off just after one check stays leader up to two timeouts, while the others
        may elect after one."""
        now = self.ticks
        heard = sorted((now if vid == self.id else
                        (pr.last_heard if (pr := self.prs.get(vid)) is not None
                         and not pr.recovering else NEVER_HEARD)
                        for vid in self.voters), reverse=True)
        return now - heard[len(heard) // 2] < max(1, self.election_timeout // 2)

    def _quorum_silent(self) -> bool:
        """Whether a majority of the voters has not answered for a whole election timeout
        (counting from when this leader took office).  Checked every tick, so a leader
        cut off steps down one election timeout after it last heard a majority, when
        the others may start to elect; CheckQuorum's fixed windows alone let it stay up
        to two.  (A recovering replica counts: it votes for nobody else.)"""
        now = self.ticks
        since = self.leader_since
        heard = sorted((now if vid == self.id else
                        max(since, pr.last_heard if (pr := self.prs.get(vid)) is not None
                            else NEVER_HEARD)
                        for vid in self.voters), reverse=True)
        return now - heard[len(heard) // 2] >= self.election_timeout

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _tick_election(self) -> None:
        if self.founders is not None:
            self._probe_founders()
        self.election_elapsed += 1
        if self.promotable() and self._past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.check_quorum and self.state == StateType.LEADER and self._quorum_silent():
            self.logger.warning("{id} stepped down to follower: a majority was silent for "
                                "an election timeout", id=self.id)
            self.become_follower(self.term, NONE)
            return
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, frm=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, frm=self.id))

    # ------------------------------------------------------------------ elections

    def _hup(self, kind: str) -> None:
        if self.state == StateType.LEADER:
            self.logger.debug("{id} ignores HUP: already leader", id=self.id)
            return
        if not self.promotable():
            self.logger.warning("{id} is not promotable and cannot campaign", id=self.id)
            return
        if self._has_unapplied_conf_change():
            self.logger.warning("{id} cannot campaign at term {term}: unapplied conf changes",
                                id=self.id, term=self.term)
            return
        self.logger.info("{id} starts a new election at term {term}", id=self.id, term=self.term)
        self._campaign(kind)

    def _has_unapplied_conf_change(self) -> bool:
        log = self.raft_log
        lo = log.applied + 1
        hi = log.committed + 1
        if lo >= hi or lo < log.first_index():
            return False
        for e in log.slice(lo, hi, None):
            if e.type == EntryType.CONF_CHANGE:
                return True
        return False

    def _campaign(self, kind: str) -> None:
        if kind == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_type = MT.PRE_VOTE
            term = self.term + 1   # the term we would campaign in
        else:
            self.become_candidate()
            vote_type = MT.VOTE
            term = self.term
        resp_type = MT.PRE_VOTE_RESP if vote_type == MT.PRE_VOTE else MT.VOTE_RESP
        if self._poll(self.id, resp_type, True) == VoteResult.WON:
            # A single-voter group wins at once.
            if kind == CAMPAIGN_PRE_ELECTION:
                self._campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == CAMPAIGN_TRANSFER_KIND else b""
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        for vid in sorted(self.voters):
            if vid == self.id:
                continue
            self.logger.info("{id} [term {term}] sent {type} request to {to}",
                             id=self.id, term=term, type=vote_type.name, to=vid)
            self._send(Message(vote_type, vid, self.id, term, last_term, last_index, context=ctx))

    def _poll(self, frm: int, t: MessageType, granted: bool) -> VoteResult:
        if frm not in self.votes:
            self.votes[frm] = granted
        return vote_result(self.voters, self.votes)

    # ------------------------------------------------------------------ step

    def step(self, m: Message) -> None:
        """Feed one message.  Raises ProposalDropped / NotLeader for a proposal that cannot
        be accepted here."""
        term = self.term
        if (m.term > 0 and self.founders is not None and m.frm != self.id
                and m.frm not in self.empty_founders and not _founding_only(m)):
            # (A founder heard empty that now speaks at a term founded the group, with us
            # among its founders: no sign that data was lost.)
            self._group_exists(m)
        if m.term == 0:
            pass  # local message (or a forwarded proposal / read)
        elif m.term > term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    # §6 of the thesis: ignore disruptive candidates while a leader is heard from.
                    self.logger.info(
                        "{id} [term {term}] ignored {type} from {frm} at term {mterm}: lease not expired",
                        id=self.id, term=term, type=m.type.name, frm=m.frm, mterm=m.term)
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change our term for a pre-vote
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # the term is bumped when we win the pre-election
            else:
                self.logger.info("{id} [term {term}] received {type} at higher term {mterm} from {frm}",
                                 id=self.id, term=term, type=m.type.name, mterm=m.term, frm=m.frm)
                if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                    self.become_follower(m.term, m.frm)
                else:
                    self.become_follower(m.term, NONE)
        elif m.term < term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (say, back from a partition) would otherwise never learn
                # of the newer term when we ignore it, since we won't campaign against it.
                self._send(Message(MT.APP_RESP, m.frm, self.id, term))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(MT.PRE_VOTE_RESP, m.frm, self.id, term, reject=True))
            return

        t = m.type
        if t == MT.HUP:
            self._hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == MT.STATE_PROBE or t == MT.STATE_PROBE_RESP:
            self._step_probe(m)
        elif (t == MT.VOTE or t == MT.PRE_VOTE) and self.recovering:
            self.logger.info("{id} [term {term}] rejected {type} from {frm} at term {mterm}: "
                             "recovering", id=self.id, term=self.term, type=t.name, frm=m.frm,
                             mterm=m.term)
            resp = MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP
            self._send(Message(resp, m.frm, self.id, self.term, reject=True))
        elif t == MT.VOTE or t == MT.PRE_VOTE:
            can_vote = (self.vote == m.frm
                        or (self.vote == NONE and self.lead == NONE)
                        or (t == MT.PRE_VOTE and m.term > self.term))
            resp = MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                self.logger.info("{id} [term {term}] cast {type} for {frm} at term {mterm}",
                                 id=self.id, term=self.term, type=t.name, frm=m.frm, mterm=m.term)
                # Reply at the request's term: a pre-candidate counts only answers to its
                # own (future) term.
                self._send(Message(resp, m.frm, self.id, m.term))
                if t == MT.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.frm
            else:
                self.logger.info("{id} [term {term}] rejected {type} from {frm} at term {mterm}",
                                 id=self.id, term=self.term, type=t.name, frm=m.frm, mterm=m.term)
                self._send(Message(resp, m.frm, self.id, self.term, reject=True))
        else:
            self._step(m)

    # --- leader

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            if not self._quorum_active():
                self.logger.warning("{id} stepped down to follower: quorum is not active", id=self.id)
                self.become_follower(self.term, NONE)
            for pid, pr in self.prs.items():
                if pid != self.id:
                    pr.recent_active = False
            return
        if t == MT.PROP:
            if not m.entries:
                raise AssertionError(f"{self.id} stepped an empty proposal")
            self._leader_propose(m.entries)
            return
        if t == MT.READ_INDEX:
            if len(self.voters) == 1 and self.id in self.voters:
                self._respond_read_index(m, self.raft_log.committed)
                return
            if not self._committed_entry_in_current_term():
                # The commit index is only known to be current once an entry of this
                # term is committed; hold the request until then.
                self.pending_read_index_messages.append(m)
                return
            self._send_read_index_response(m)
            return

        pr = self.prs.get(m.frm)
        if pr is None:
            self.logger.debug("{id} has no progress for {frm}", id=self.id, frm=m.frm)
            return
        if (t == MT.APP_RESP or t == MT.HEARTBEAT_RESP) and m.recovering != pr.recovering:
            self._peer_recovering(m.frm, pr, m.recovering)
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.last_heard = self.ticks
            pr.msg_app_flow_paused = False
            if pr.match < self.raft_log.last_index():
                self._send_append(m.frm)
            if not m.context or pr.recovering:   # (a lease read past its lease also makes rounds)
                return
            acks = self.read_only.recv_ack(m.frm, m.context)
            if acks is None or vote_result(self.voters, acks) != VoteResult.WON:
                return
            for rs in self.read_only.advance(m.context):
                self._respond_read_index(rs.req, rs.index)
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                # Retry from scratch: the next append attempt sends a fresh snapshot.
                pr.pending_snapshot = 0
            pr.become_probe()
            self.logger.debug("{id} snapshot to {frm} {outcome}, resumed sending [{pr}]",
                              id=self.id, frm=m.frm, outcome="failed" if m.reject else "succeeded", pr=pr)
            # Wait for the follower's answer (or the next heartbeat) before probing.
            pr.msg_app_flow_paused = True
        elif t == MT.UNREACHABLE:
            # Optimistic streaming to an unreachable peer only piles up lost messages.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self.logger.debug("{id} failed to send to {frm} [{pr}]", id=self.id, frm=m.frm, pr=pr)
        elif t == MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _leader_propose(self, entries: Sequence[Entry]) -> int:
        if self.id not in self.prs:
            # Removed from the group while leading: nobody would count our entries.
            raise ProposalDropped("ERR_CLUSTER_CHANGED: raft proposal dropped: removed from the group")
        if self.lead_transferee != NONE:
            raise ProposalDropped(
                "ERR_CLUSTER_CHANGED: raft proposal dropped: leadership transfer in progress")
        log = self.raft_log
        li = log.last_index()
        term = self.term
        new = []
        for i, e in enumerate(entries):
            if e.type == EntryType.CONF_CHANGE:
                if self.pending_conf_index > log.applied:
                    raise ProposalDropped(
                        "ERR_CLUSTER_CHANGED: raft proposal dropped: a conf change is already pending")
                self.pending_conf_index = li + i + 1
            new.append(Entry(term, li + 1 + i, e.type, e.data))
        last = self._append_entries(new)
        self.bcast_append()
        return last

    def propose_local(self, datas: Sequence[bytes]) -> int:
        """Leader fast path for normal entries: append and replicate; returns the index of
        the last one (the first is that minus len(datas)-1)."""
        if self.id not in self.prs or self.lead_transferee != NONE:
            return self._leader_propose([Entry(0, 0, EntryType.NORMAL, d) for d in datas])
        li = self.raft_log.last_index()
        term = self.term
        last = self._append_entries([Entry(term, li + 1 + i, EntryType.NORMAL, d)
                                     for i, d in enumerate(datas)])
        self.bcast_append()
        return last

    def _append_entries(self, ents: list[Entry]) -> int:
        li = self.raft_log.append(ents)
        # The leader's own append counts towards the quorum; the driver makes it durable
        # before any message depending on it leaves the node.
        self.prs[self.id].maybe_update(li)
        self.maybe_commit()
        return li

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.last_heard = self.ticks
        frm = m.frm
        if m.reject:
            self.logger.debug("{id} received APP rejection (hint {hint}, term {lterm}) from {frm} for index {index}",
                              id=self.id, hint=m.reject_hint, lterm=m.log_term, frm=frm, index=m.index)
            if m.reject_hint < pr.match:
                # The follower holds less than it acknowledged: its disk was replaced (Raft
                # assumes that never happens; etcd panics).  Forget the match and probe it
                # from what it has, which brings it back by entries or by snapshot.  The
                # commit index never moves back, so this only delays new commits that
                # counted on this replica.
                self.logger.warning("{id} replica {frm} lost its log (has {hint}, had "
                                    "acknowledged {match}); probing it again", id=self.id,
                                    frm=frm, hint=m.reject_hint, match=pr.match)
                pr.match = 0
                pr.become_probe()
                pr.next = m.index + 1      # so this rejection counts as the current one
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Fast backtracking: skip every entry of ours whose term is above the
                # follower's term at the hint; they all conflict.
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.raft_log.first_index():
            # The follower caught up past the compaction point: entries work again.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
            pr.msg_app_flow_paused = pr.inflights.full()
        if self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            # The window opened: refill it.
            self._send_append(frm)
        while self._maybe_send_append(frm, False):
            pass
        if frm == self.lead_transferee and pr.match == self.raft_log.last_index():
            self.logger.info("{id} sent TIMEOUT_NOW to {frm}: its log is up to date", id=self.id, frm=frm)
            self._send_timeout_now(frm)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner or pr.recovering:
            self.logger.debug("{id} ignores transfer to learner or recovering {frm}",
                              id=self.id, frm=m.frm)
            return
        transferee = m.frm
        last = self.lead_transferee
        if last != NONE:
            if last == transferee:
                return
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        self.logger.info("{id} starts transferring leadership to {to}", id=self.id, to=transferee)
        # The transfer must finish within an election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def _quorum_active(self) -> bool:
        active = {}
        for vid in self.voters:
            pr = self.prs.get(vid)
            active[vid] = vid == self.id or (pr is not None and pr.recent_active)
        return vote_result(self.voters, active) == VoteResult.WON

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        msgs = self.pending_read_index_messages
        self.pending_read_index_messages = []
        for m in msgs:
            self._send_read_index_response(m)

    def _send_read_index_response(self, m: Message) -> None:
        committed = self.raft_log.committed
        if self.read_only_option == ReadOnlyOption.SAFE or not self._lease_valid():
            self.read_only.add_request(committed, m)
            self.read_only.recv_ack(self.id, m.context)
            self._bcast_heartbeat_with_ctx(m.context)
        else:
            self._respond_read_index(m, committed)

    def _respond_read_index(self, req: Message, read_index: int) -> None:
        if req.frm == NONE or req.frm == self.id:
            self.read_states.append(ReadState(read_index, req.context))
        else:
            self._send(Message(MT.READ_INDEX_RESP, req.frm, self.id, self.term,
                               index=read_index, context=req.context))

    # --- candidate and pre-candidate

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if t == MT.PROP:
            raise ProposalDropped("ERR_CLUSTER_CHANGED: raft proposal dropped: no leader")
        if t == MT.APP:
            self.become_follower(m.term, m.frm)   # always m.term == self.term
            self._handle_append_entries(m)
        elif t == MT.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self._poll(m.frm, t, not m.reject)
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == VoteResult.LOST:
                # A pre-candidate (and a rejected candidate) keeps its term.
                self.become_follower(self.term, NONE)
        elif t == MT.TIMEOUT_NOW:
            self.logger.debug("{id} ignored TIMEOUT_NOW from {frm}: not a follower", id=self.id, frm=m.frm)

    # --- follower

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            if self.lead == NONE:
                raise ProposalDropped("ERR_CLUSTER_CHANGED: raft proposal dropped: no leader")
            if self.disable_proposal_forwarding:
                raise NotLeader(leader_hint=self.lead)
            self._send(replace(m, to=self.lead, frm=self.id, term=0))
        elif t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append_entries(m)
            if self.recovering:
                self._maybe_end_recovery(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
            if self.recovering:
                self._maybe_end_recovery(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
            if self.recovering:
                self._maybe_end_recovery(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead == NONE:
                self.logger.info("{id} dropped leader transfer: no leader", id=self.id)
                return
            self._send(replace(m, to=self.lead, term=0))
        elif t == MT.TIMEOUT_NOW:
            self.logger.info("{id} [term {term}] received TIMEOUT_NOW from {frm}: campaigning",
                             id=self.id, term=self.term, frm=m.frm)
            # Leadership transfer never uses pre-vote: we know the leader wants us.
            self._hup(CAMPAIGN_TRANSFER_KIND)
        elif t == MT.READ_INDEX:
            if self.lead == NONE:
                self.logger.info("{id} dropped read index: no leader", id=self.id)
                return
            self._send(replace(m, to=self.lead, frm=self.id, term=0))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            self._send(Message(MT.APP_RESP, m.frm, self.id, self.term, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(MT.APP_RESP, m.frm, self.id, self.term, index=last_new))
            return
        # §5.3 consistency check failed.  Hint the leader at the largest index whose term
        # is <= the term it probed with, so it can skip a whole conflicting term at once.
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        self.logger.debug("{id} rejected APP (log term {lterm}, index {index}) from {frm}",
                          id=self.id, lterm=m.log_term, index=m.index, frm=m.frm)
        self._send(Message(MT.APP_RESP, m.frm, self.id, self.term, hint_term, m.index,
                           reject=True, reject_hint=hint_index))

    def _handle_heartbeat(self, m: Message) -> None:
        # A leader never sends a commit index past what it knows we hold, unless we lost
        # our log (a replaced disk): then commit only what we have.
        self.raft_log.commit_to(min(m.commit, self.raft_log.last_index()))
        self._send(Message(MT.HEARTBEAT_RESP, m.frm, self.id, self.term, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        s = m.snapshot
        if s is None:
            return
        if self.restore(s):
            self.logger.info("{id} restored snapshot at {index} (term {sterm})",
                             id=self.id, index=s.metadata.index, sterm=s.metadata.term)
            self._send(Message(MT.APP_RESP, m.frm, self.id, self.term, index=self.raft_log.last_index()))
        else:
            self._send(Message(MT.APP_RESP, m.frm, self.id, self.term, index=self.raft_log.committed))

    def restore(self, s: Snapshot) -> bool:
        """Install a snapshot from the leader; False if it brings nothing new."""
        meta = s.metadata
        log = self.raft_log
        if meta.index <= log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a follower installs snapshots; anything else is a bug, but step down to
            # a fresh term rather than risk two leaders.
            self.logger.warning("{id} attempted to restore a snapshot as {state}", id=self.id, state=self.state)
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in cs.voters and self.id not in cs.learners:
            self.logger.warning("{id} ignored a snapshot that does not contain it", id=self.id)
            return False
        if log.match_term(meta.index, meta.term):
            # We already have the entries: just fast-forward the commit index.
            log.commit_to(meta.index)
            return False
        log.restore(s)
        self._restore_conf(cs)
        return True

    # ------------------------------------------------------------------ lost state
    #
    # Only the founding entries are of term 1: the first leader's entries are of term 2
    # or later.  So a peer whose log ends at term 1 has seen nothing committed beyond
    # the founding: founding with it loses nothing.

    def bootstrap(self, peers: Sequence[int]) -> None:
        """Found a new group with `peers` as voters (see `RawNode.bootstrap`)."""
        log = self.raft_log
        if log.last_index() != 0 or (self.term != 0 and self.founders is None):
            raise ValueError("can only bootstrap an empty group")
        if not peers:
            raise ValueError("bootstrap needs at least one peer")
        ents = [Entry(1, i + 1, EntryType.CONF_CHANGE,
                      encode_conf_change(ConfChange(ConfChangeType.ADD_NODE, p)))
                for i, p in enumerate(peers)]
        log.append(ents)
        self.recovering = False
        self.founders = None
        # Term 1 with no vote and no leader: every founder starts equal.  (A founder
        # that another one's election already moved to a later term stays there.)
        self.become_follower(max(1, self.term), NONE)
        log.committed = len(ents)
        for p in peers:
            self.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, p))

    def start_empty(self, founders: Sequence[int] | None) -> None:
        """See `RawNode.start_empty`."""
        log = self.raft_log
        if log.last_index() != 0 or self.term != 0:
            raise ValueError("only an empty replica starts empty")
        self.recovering = True
        if founders is None:
            self.logger.info("{id} starts empty: recovering until a leader brings it up to "
                             "date", id=self.id)
            return
        self.founders = tuple(sorted(set(founders)))
        self.empty_founders = set()
        self.logger.info("{id} starts empty: asking founders {founders} whether the group "
                         "exists", id=self.id, founders=list(self.founders))
        self._maybe_found()
        if self.founders is not None:
            self._probe_founders()

    def _probe_founders(self) -> None:
        for p in self.founders:
            if p != self.id and p not in self.empty_founders:
                self._send(Message(MT.STATE_PROBE, p, self.id))

    def _step_probe(self, m: Message) -> None:
        if m.type == MT.STATE_PROBE:
            # Empty and founding, or founded and holding nothing since: say so.  Anything
            # else (entries of a later term, or empty but not founding) tells the prober
            # not to found: reject, at our term.
            founding = self.founders is not None
            log = self.raft_log
            founded_only = (not founding and not self.recovering and log.last_index() > 0
                            and log.last_term() <= 1)
            self._send(Message(MT.STATE_PROBE_RESP, m.frm, self.id,
                               0 if founding else self.term,
                               reject=not (founding or founded_only)))
            if founding:
                self._empty_founder(m.frm)
        elif self.founders is not None:
            if not m.reject:
                self._empty_founder(m.frm)
            elif m.frm not in self.empty_founders:
                self._group_exists(m)
            # (A founder heard empty that now says otherwise founded the group, with us
            # among its founders, or learned of it from another: founding rests on every
            # founder having been empty, which it was.)

    def _empty_founder(self, frm: int) -> None:
        if frm in self.founders:
            self.empty_founders.add(frm)
            self._maybe_found()

    def _maybe_found(self) -> None:
        if all(p == self.id or p in self.empty_founders for p in self.founders):
            self.logger.info("{id} founds the group: every founder is empty", id=self.id)
            self.bootstrap(self.founders)

    def _group_exists(self, m: Message) -> None:
        self.logger.warning(
            "{id} holds no state but the group exists ({type} from {frm} at term {mterm}): "
            "recovering; it neither votes nor counts towards a quorum until it has caught up",
            id=self.id, type=m.type.name, frm=m.frm, mterm=m.term)
        self.founders = None
        self.empty_founders = set()

    def _maybe_end_recovery(self, m: Message) -> None:
        log = self.raft_log
        if (m.term != self.term or self.lead != m.frm or log.committed == 0
                or log.term_or_zero(log.committed) != self.term):
            return
        self.recovering = False
        if self.vote == NONE:
            self.vote = m.frm
        self.logger.info("{id} caught up with leader {lead} at term {term} (commit "
                         "{commit}): recovered, it votes again", id=self.id, lead=m.frm,
                         term=self.term, commit=log.committed)

    def _peer_recovering(self, frm: int, pr: Progress, recovering: bool) -> None:
        pr.recovering = recovering
        if not recovering:
            self.logger.info("{id} counts replica {frm} again: it caught up", id=self.id, frm=frm)
            # What it already acknowledged may complete a quorum now.
            if self.maybe_commit():
                self._release_pending_read_index_messages()
                self.bcast_append()
            return
        # What it acknowledged before is gone: probe it from what it has, which brings
        # it back by entries or by snapshot even when the group is idle.
        self.logger.warning("{id} replica {frm} is recovering (it lost its state): its "
                            "acknowledgements do not count until it catches up",
                            id=self.id, frm=frm)
        if pr.state != ProgressState.SNAPSHOT:
            pr.match = 0
            pr.become_probe()
            pr.next = max(1, self.raft_log.last_index())
            pr.msg_app_flow_paused = False

    # ------------------------------------------------------------------ membership

    def _restore_conf(self, cs: ConfState) -> None:
        self.prs = {}
        self.voters = set()
        self.learners = set()
        next_index = self.raft_log.last_index() + 1
        for vid in cs.voters:
            self.voters.add(vid)
            self.prs[vid] = Progress(next_index, 0, self.max_inflight, False, self.max_inflight_bytes)
        for lid in cs.learners:
            self.learners.add(lid)
            self.prs[lid] = Progress(next_index, 0, self.max_inflight, True, self.max_inflight_bytes)
        if self.id in self.prs:
            self.prs[self.id].match = next_index - 1
        self._conf_changed()

    def _conf_changed(self) -> None:
        self._peers = sorted(p for p in self.prs if p != self.id)
        pr = self.prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed membership change (called by the application when it applies
        the CONF_CHANGE entry)."""
        nid = cc.node_id
        last = self.raft_log.last_index()
        if cc.type == ConfChangeType.ADD_NODE:
            pr = self.prs.get(nid)
            if pr is None:
                pr = self.prs[nid] = Progress(last + 1, 0, self.max_inflight, False, self.max_inflight_bytes)
                # Give a new member a chance before CheckQuorum counts it as silent.
                pr.recent_active = True
            pr.is_learner = False
            self.learners.discard(nid)
            self.voters.add(nid)
        elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
            if nid in self.voters:
                self.logger.warning("{id} ignored demotion of voter {nid} to learner", id=self.id, nid=nid)
            elif nid not in self.prs:
                pr = self.prs[nid] = Progress(last + 1, 0, self.max_inflight, True, self.max_inflight_bytes)
                pr.recent_active = True
                self.learners.add(nid)
        elif cc.type == ConfChangeType.REMOVE_NODE:
            self.prs.pop(nid, None)
            self.voters.discard(nid)
            self.learners.discard(nid)
            self.votes.pop(nid, None)
        else:
            raise ValueError(f"unknown conf change type {cc.type!r}")
        self._conf_changed()
        self.logger.info("{id} applied conf change {cc}: voters {voters}, learners {learners}",
                         id=self.id, cc=cc, voters=sorted(self.voters), learners=sorted(self.learners))
        if self.state == StateType.LEADER:
            if self.id not in self.voters:
                # Removed (or made a learner): stop leading; the rest elect a new leader.
                self.become_follower(self.term, NONE)
            else:
                if self.lead_transferee != NONE and self.lead_transferee not in self.voters:
                    self.abort_leader_transfer()
                # The quorum changed: a smaller group may commit at once.
                if self.maybe_commit():
                    self.bcast_append()
                else:
                    for pid in self._peers:
                        self._maybe_send_append(pid, False)
        return self.conf_state()


def _founding_only(m: Message) -> bool:
    """Whether `m`, though of a term above 0, shows no more than a group being founded:
    a founder's answer that it founded and holds nothing since, or a founder's
    campaign whose log ends with the founding entries (of term 1)."""
    if m.type == MT.STATE_PROBE_RESP:
        return not m.reject
    return (m.type == MT.PRE_VOTE or m.type == MT.VOTE) and m.log_term <= 1
