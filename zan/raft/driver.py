"""Drive many Raft groups of one node on a Twisted reactor.

One `LoopingCall` ticks every group; any input (tick, step, proposal) schedules a single
``reactor.callLater(0, ...)`` that processes the Ready of every group in one pass:

1. hand each group's snapshot, entries and hard state to its `GroupLog`;
2. ONE ``log_store.sync()`` if any group needs durability (group commit across groups);
3. send every group's messages in one ``transport_send`` call;
4. apply committed entries through each group's apply callback;
5. resolve proposal and read Deferreds;
6. ``advance`` every group.

A leader's proposals are matched to applied entries by ``(term, index)``: the entry's
place in the log is known when it is appended.  A follower, when the driver forwards
proposals, sends them to the leader as Raft proposal messages (as etcd does) and matches
them by their bytes when it applies them itself: the caller's data must be unique among
its pending proposals (a command entry carries a random seed).  Otherwise a proposal made
on a follower fails at once with `NotLeader` carrying the leader hint.  A forwarded
proposal whose leader changes before it is applied fails with `LeaderChanged`: it may
still commit, nobody here can tell.  Proposals are batched per reactor turn: all
proposals of a turn for a group become one append, or one message to the leader.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from zan.errors import (
    ClusterError, LeaderChanged, NotLeader, ProposalDropped, ProposalTimeout, Stopping,
)
from zan.raft.codec import decode_conf_change
from zan.raft.core import NOOP_LOGGER, Config, StateType
from zan.raft.rawnode import RawNode, Ready, Status
from zan.raft.storage import GroupLog, LogStore
from zan.raft.types import NONE, ConfChange, ConfState, Entry, EntryType, Message, Snapshot

__all__ = ["RaftDriver", "ApplyCallback", "RestoreCallback"]

ApplyCallback = Callable[[Sequence[Entry]], Sequence[Any]]
"""Applies committed entries in order (normal, empty and CONF_CHANGE alike) and returns
one result per entry; an exception instance as a result fails that proposal's Deferred."""

RestoreCallback = Callable[[Snapshot], None]
"""Replaces the state machine by a snapshot received from the leader."""


# Ticks run at once after a stall: more than any election timeout needs.
_MAX_CATCH_UP_TICKS = 1000


class _RaftLogger:
    """Adapts `twisted.logger.Logger` to the core's logger protocol."""

    __slots__ = ("_log", "_group")

    def __init__(self, log: Logger, group: int):
        self._log = log
        self._group = group

    def debug(self, message: str, **fields: Any) -> None:
        self._log.debug("[group {group}] " + message, group=self._group, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log.info("[group {group}] " + message, group=self._group, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log.warn("[group {group}] " + message, group=self._group, **fields)


class _Pending:
    __slots__ = ("d", "deadline", "term", "index", "lead", "data", "done")

    def __init__(self, d: Deferred, deadline: float, data: bytes | None = None):
        self.d = d
        self.deadline = deadline  # reactor seconds after which it fails with ProposalTimeout
        self.term = 0
        self.index = 0
        self.lead = NONE          # forwarded: the leader (of `term`) it was sent to
        self.data = data
        self.done = False


class _Group:
    __slots__ = ("id", "rn", "log", "apply", "restore", "queued", "proposals", "forwarded",
                 "reads", "waiting_reads", "conf_state", "term", "lead", "applied")

    def __init__(self, group_id: int, rn: RawNode, log: GroupLog, apply: ApplyCallback,
                 restore: RestoreCallback | None, conf_state: ConfState):
        self.id = group_id
        self.rn = rn
        self.log = log
        self.apply = apply
        self.restore = restore
        self.queued: list[_Pending] = []
        self.proposals: dict[int, _Pending] = {}
        # Proposals sent to the leader, by their data, until this replica applies them.
        self.forwarded: dict[bytes, _Pending] = {}
        self.reads: dict[bytes, _Pending] = {}
        self.waiting_reads: list[tuple[int, _Pending]] = []
        self.conf_state = conf_state
        self.term = rn.raft.term
        self.lead = rn.raft.lead
        self.applied = rn.raft.raft_log.applied


class RaftDriver:
    _log = Logger()

    def __init__(self, reactor, log_store: LogStore,
                 transport_send: Callable[[list[tuple[int, Message]]], None],
                 tick_ms: int = 200, proposal_timeout: float = 4.0,
                 rand: random.Random | None = None, batch_delay: float = 0.0,
                 forward_proposals: bool = False):
        self._reactor = reactor
        self._store = log_store
        self._transport_send = transport_send
        self._tick_seconds = tick_ms / 1000.0
        # How long input may gather before a pass: proposals and messages arriving within
        # it share one Ready per group, one log write and one fsync (0: the next turn).
        self._batch_delay = batch_delay
        self.proposal_timeout = proposal_timeout
        # Whether a follower sends proposals on to its leader (else: NotLeader at once).
        self.forward_proposals = forward_proposals
        self._rand = rand if rand is not None else random.Random()
        self._groups: dict[int, _Group] = {}
        self._scheduled = None
        self._read_seq = 0
        self._ticker = LoopingCall.withCount(self._tick_all)
        self._ticker.clock = reactor
        self.sync_count = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self._ticker.running:
            self._ticker.start(self._tick_seconds, now=False)

    def stop(self) -> None:
        if self._ticker.running:
            self._ticker.stop()
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        for g in list(self._groups.values()):
            self._fail_all(g, Stopping())

    def add_group(self, group_id: int, config: Config, apply_callback: ApplyCallback,
                  peers: Sequence[int] | None = None,
                  restore_callback: RestoreCallback | None = None) -> None:
        """Start the local replica of `group_id`.  A replica whose log holds no state
        starts recovering (see `zan.raft.core`): `peers`, the group's founding voters,
        found a brand-new group once every one of them is found empty too; without them
        (a replica added to an existing group, or one whose disk was lost) the leader
        brings it up to date.  `config.applied` is the last index the application's state
        machine holds."""
        if group_id in self._groups:
            raise ValueError(f"raft group {group_id} already exists")
        log = self._store.group(group_id)
        if config.logger is NOOP_LOGGER:
            config = replace(config, logger=_RaftLogger(self._log, group_id))
        hs, cs = log.initial_state()
        fresh = hs.is_empty() and log.last_index() == 0 and log.snapshot().is_empty()
        rn = RawNode(config, log, random.Random(self._rand.random()))
        if fresh:
            rn.start_empty(peers or None)
            cs = rn.raft.conf_state()
        self._groups[group_id] = _Group(group_id, rn, log, apply_callback, restore_callback, cs)
        self._schedule()

    def remove_group(self, group_id: int, destroy: bool = False) -> None:
        """Stop the local replica; `destroy` also deletes its log."""
        g = self._groups.pop(group_id, None)
        if g is None:
            return
        self._fail_all(g, Stopping())
        if destroy:
            self._store.remove_group(group_id)

    def group_ids(self) -> list[int]:
        return sorted(self._groups)

    # ------------------------------------------------------------------ inputs

    def step(self, group_id: int, msg: Message) -> None:
        """An inbound message from a peer."""
        g = self._groups.get(group_id)
        if g is None:
            self._log.debug("message {type} for unknown raft group {group}",
                            type=msg.type.name, group=group_id)
            return
        try:
            g.rn.step(msg)
        except ClusterError as e:
            # A proposal forwarded by a follower that we cannot accept; the follower's
            # caller learns of it by timeout.
            self._log.debug("[group {group}] dropped {type} from {frm}: {err}",
                            group=group_id, type=msg.type.name, frm=msg.frm, err=e)
        self._schedule()

    def propose(self, group_id: int, data: bytes) -> Deferred:
        """Replicate `data`; fires with the apply callback's result for its entry."""
        g = self._groups.get(group_id)
        if g is None:
            return fail(ProposalDropped(f"ERR_CLUSTER_CHANGED: raft group {group_id} is not here"))
        r = g.rn.raft
        if r.state != StateType.LEADER:
            if not self.forward_proposals or r.lead == NONE:
                return fail(NotLeader(leader_hint=r.lead or None))
        elif r.lead_transferee != NONE:
            return fail(ProposalDropped(
                "ERR_CLUSTER_CHANGED: raft proposal dropped: leadership transfer in progress"))
        p = _Pending(Deferred(), self._reactor.seconds() + self.proposal_timeout, data)
        g.queued.append(p)
        self._schedule()
        return p.d

    def propose_conf_change(self, group_id: int, cc: ConfChange) -> Deferred:
        """Replicate a membership change; fires with the apply callback's result for the
        entry once it is applied (the group's configuration has then changed)."""
        g = self._groups.get(group_id)
        if g is None:
            return fail(ProposalDropped(f"ERR_CLUSTER_CHANGED: raft group {group_id} is not here"))
        r = g.rn.raft
        if r.state != StateType.LEADER:
            return fail(NotLeader(leader_hint=r.lead or None))
        self._flush_group(g)   # keep proposal order
        try:
            term, index = g.rn.propose_conf_change(cc)
        except ClusterError as e:
            return fail(e)
        p = _Pending(Deferred(), self._reactor.seconds() + self.proposal_timeout)
        p.term, p.index = term, index
        g.proposals[index] = p
        self._schedule()
        return p.d

    def read_index(self, group_id: int) -> Deferred:
        """A linearizable read point: fires with the read index once this replica has
        applied up to it; the caller then reads its local state."""
        g = self._groups.get(group_id)
        if g is None:
            return fail(ProposalDropped(f"ERR_CLUSTER_CHANGED: raft group {group_id} is not here"))
        r = g.rn.raft
        if r.lead == NONE:
            return fail(NotLeader(leader_hint=None))
        self._read_seq += 1
        ctx = self._read_seq.to_bytes(8, "big")
        p = _Pending(Deferred(), self._reactor.seconds() + self.proposal_timeout)
        g.reads[ctx] = p
        g.rn.read_index(ctx)
        self._schedule()
        return p.d

    def campaign(self, group_id: int) -> None:
        self._groups[group_id].rn.campaign()
        self._schedule()

    def transfer_leader(self, group_id: int, to: int) -> None:
        self._groups[group_id].rn.transfer_leader(to)
        self._schedule()

    def report_unreachable(self, group_id: int, peer: int) -> None:
        g = self._groups.get(group_id)
        if g is not None:
            g.rn.report_unreachable(peer)
            self._schedule()

    def report_snapshot(self, group_id: int, peer: int, ok: bool) -> None:
        g = self._groups.get(group_id)
        if g is not None:
            g.rn.report_snapshot(peer, ok)
            self._schedule()

    def compact(self, group_id: int, index: int, data: bytes, keep: int = 0) -> Snapshot:
        """Record the application's state at `index` (its applied index) as a snapshot
        described by `data`, and drop the log up to `index - keep`."""
        g = self._groups[group_id]
        if index > g.applied:
            raise ValueError(f"cannot snapshot at {index}: applied is {g.applied}")
        snap = g.log.create_snapshot(index, g.conf_state, data)
        if index - keep >= g.log.first_index():
            g.log.compact(index - keep)
        return snap

    # ------------------------------------------------------------------ views

    def status(self, group_id: int) -> Status:
        return self._groups[group_id].rn.status()

    def is_leader(self, group_id: int) -> bool:
        g = self._groups.get(group_id)
        return g is not None and g.rn.raft.state == StateType.LEADER

    def leader(self, group_id: int) -> int:
        return self._groups[group_id].rn.raft.lead

    def applied(self, group_id: int) -> int:
        """The last index the group's apply callback has returned for."""
        return self._groups[group_id].applied

    def conf_state(self, group_id: int) -> ConfState:
        return self._groups[group_id].conf_state

    def raw_node(self, group_id: int) -> RawNode:
        return self._groups[group_id].rn

    # ------------------------------------------------------------------ machinery

    def _tick_all(self, intervals: int = 1) -> None:
        # A reactor that ran late (a busy or paused process) calls once for every tick
        # interval that passed.  Each is ticked: Raft time must keep up with the other
        # nodes' clocks, or a leader cut off while this process stalled would go on
        # serving lease reads past the moment the others may elect a new leader.
        for _ in range(min(intervals, _MAX_CATCH_UP_TICKS)):
            for g in self._groups.values():
                g.rn.tick()
        self._expire_overdue()
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled is None:
            self._scheduled = self._reactor.callLater(self._batch_delay, self._process)

    def _expire_overdue(self) -> None:
        """Fail the proposals and reads older than proposal_timeout: checked every tick
        (a timeout fires up to one tick late) rather than by a reactor timer per
        proposal: scheduling and cancelling one per write showed in the write path."""
        now = self._reactor.seconds()
        for g in self._groups.values():
            overdue = [p for p in g.queued if p.deadline <= now]
            if overdue:
                g.queued = [p for p in g.queued if p.deadline > now]
            overdue += [p for p in g.proposals.values() if p.deadline <= now]
            for p in overdue:
                if p.index and g.proposals.get(p.index) is p:
                    del g.proposals[p.index]
            if g.forwarded:
                # A leader change seen without a Ready of this group is noticed here.
                self._forwarded_to_old_leader(g)
                for data, p in list(g.forwarded.items()):
                    if p.deadline <= now:
                        del g.forwarded[data]
                        overdue.append(p)
            for ctx, p in list(g.reads.items()):
                if p.deadline <= now:
                    del g.reads[ctx]
                    overdue.append(p)
            if any(p.deadline <= now for _, p in g.waiting_reads):
                overdue += [p for _, p in g.waiting_reads if p.deadline <= now]
                g.waiting_reads = [(i, p) for i, p in g.waiting_reads if p.deadline > now]
            for p in overdue:
                self._settle(p, ProposalTimeout())

    def _settle(self, p: _Pending, result: Any) -> None:
        if p.done:
            return
        p.done = True
        if isinstance(result, (BaseException, Failure)):
            p.d.errback(result)
        else:
            p.d.callback(result)

    def _fail_all(self, g: _Group, err: Exception) -> None:
        pending = g.queued + list(g.proposals.values()) + list(g.forwarded.values()) + \
            list(g.reads.values()) + [p for _, p in g.waiting_reads]
        g.queued = []
        g.proposals = {}
        g.forwarded = {}
        g.reads = {}
        g.waiting_reads = []
        for p in pending:
            self._settle(p, err)

    def _flush_group(self, g: _Group) -> None:
        batch = [p for p in g.queued if not p.done]
        g.queued = []
        if not batch:
            return
        r = g.rn.raft
        if r.state != StateType.LEADER:
            if not (self.forward_proposals and r.lead != NONE):
                err = NotLeader(leader_hint=r.lead or None)
                for p in batch:
                    self._settle(p, err)
                return
            batch = self._unique_forwards(g, batch)
            if not batch:
                return
        try:
            res = g.rn.propose_batch([p.data for p in batch])
        except ClusterError as e:
            for p in batch:
                self._settle(p, e)
            return
        if res is None:
            # Sent to the leader: this replica will apply them like any other entries.
            for p in batch:
                p.term, p.lead = r.term, r.lead
                g.forwarded[p.data] = p
            return
        term, first = res
        for i, p in enumerate(batch):
            p.term = term
            p.index = first + i
            p.data = None
            g.proposals[p.index] = p

    def _unique_forwards(self, g: _Group, batch: list[_Pending]) -> list[_Pending]:
        """The proposals of `batch` whose data no other forwarded proposal has: a follower
        knows its entries by their data, so a second one would never be answered."""
        forwarded = g.forwarded
        seen: set[bytes] = set()
        unique = []
        for p in batch:
            if p.data in forwarded or p.data in seen:
                self._settle(p, ProposalDropped(
                    "ERR_CLUSTER_CHANGED: raft proposal dropped: the same data is pending"))
            else:
                seen.add(p.data)
                unique.append(p)
        return unique

    def _process(self) -> None:
        self._scheduled = None
        groups = list(self._groups.values())
        for g in groups:
            if g.queued:
                self._flush_group(g)
        readies: list[tuple[_Group, Ready]] = []
        must_sync = False
        # 1. persist
        for g in groups:
            if not g.rn.has_ready():
                continue
            rd = g.rn.ready()
            readies.append((g, rd))
            log = g.log
            if rd.snapshot is not None:
                log.apply_snapshot(rd.snapshot)
            if rd.entries:
                log.append(rd.entries)
            if rd.hard_state is not None:
                log.set_hard_state(rd.hard_state)
            must_sync = must_sync or rd.must_sync
        if not readies:
            return
        # 2. one fsync for everything
        if must_sync:
            self._store.sync()
            self.sync_count += 1
        # 3. send
        out = [(g.id, m) for g, rd in readies for m in rd.messages]
        if out:
            try:
                self._transport_send(out)
            except Exception:
                self._log.failure("raft transport failed to send {count} messages", count=len(out))
        # 4. apply, 5. resolve
        for g, rd in readies:
            try:
                self._apply(g, rd)
            except Exception:
                self._log.failure("[group {group}] apply failed", group=g.id)
                raise
        # 6. advance
        for g, rd in readies:
            g.rn.advance(rd)
        if any(g.rn.has_ready() for g in groups):
            self._schedule()

    def _apply(self, g: _Group, rd: Ready) -> None:
        rn = g.rn
        if rd.snapshot is not None:
            # Whether the snapshot covers them is not knowable from here.
            self._fail_forwarded(g, lambda p: True)
            if g.restore is not None:
                g.restore(rd.snapshot)
            g.conf_state = rd.snapshot.metadata.conf_state
            g.applied = max(g.applied, rd.snapshot.metadata.index)
        ents = rd.committed_entries
        if ents:
            results = g.apply(ents)
            if len(results) != len(ents):
                raise AssertionError(
                    f"apply callback returned {len(results)} results for {len(ents)} entries")
            proposals = g.proposals
            forwarded = g.forwarded
            for e, res in zip(ents, results):
                if e.type == EntryType.CONF_CHANGE:
                    g.conf_state = rn.apply_conf_change(decode_conf_change(e.data))
                if proposals:
                    p = proposals.pop(e.index, None)
                    if p is not None:
                        # Another leader's entry took our index: ours is gone for good.
                        self._settle(p, res if p.term == e.term else LeaderChanged())
                if forwarded and e.type == EntryType.NORMAL:
                    p = forwarded.pop(e.data, None)
                    if p is not None:
                        self._settle(p, res)
            g.applied = ents[-1].index
        for rs in rd.read_states:
            p = g.reads.pop(rs.request_ctx, None)
            if p is not None and not p.done:
                g.waiting_reads.append((rs.index, p))
        if g.waiting_reads:
            ready_now = [p for i, p in g.waiting_reads if i <= g.applied]
            if ready_now:
                g.waiting_reads = [(i, p) for i, p in g.waiting_reads if i > g.applied]
                for p in ready_now:
                    self._settle(p, g.applied)
        r = rn.raft
        if r.term != g.term or r.lead != g.lead:
            self._leadership_changed(g)

    def _leadership_changed(self, g: _Group) -> None:
        r = g.rn.raft
        g.term = r.term
        g.lead = r.lead
        # An entry proposed in an earlier term may still commit under the new leader, but
        # nobody here can promise it: tell the caller its outcome is unknown.
        stale = [p for p in g.proposals.values() if p.term != r.term]
        for p in stale:
            del g.proposals[p.index]
            self._settle(p, LeaderChanged())
        self._forwarded_to_old_leader(g)
        if r.state != StateType.LEADER:
            # A read request forwarded to (or held by) a deposed leader is never answered.
            reads = list(g.reads.values())
            g.reads = {}
            for p in reads:
                self._settle(p, LeaderChanged())

    def _forwarded_to_old_leader(self, g: _Group) -> None:
        """Fail the proposals sent to a leader that is no longer: it may have lost them
        or passed them on, nobody here can tell."""
        r = g.rn.raft
        self._fail_forwarded(g, lambda p: p.term != r.term or p.lead != r.lead)

    def _fail_forwarded(self, g: _Group, which: Callable[[_Pending], bool]) -> None:
        """Fail the forwarded proposals `which` selects as of unknown outcome."""
        gone = [data for data, p in g.forwarded.items() if which(p)]
        for data in gone:
            self._settle(g.forwarded.pop(data), LeaderChanged())
