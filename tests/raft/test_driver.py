"""RaftDriver on a `Clock`: several drivers wired together in memory."""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from zan.errors import LeaderChanged, NotLeader, ProposalDropped, ProposalTimeout, Stopping
from zan.raft.codec import decode_messages, encode_messages
from zan.raft.core import Config
from zan.raft.driver import RaftDriver
from zan.raft.storage import MemoryLogStore
from zan.raft.types import ConfChange, ConfChangeType, EntryType

TICK = 0.1   # seconds (tick_ms=100)
ET = 10


class StateMachine:
    def __init__(self):
        self.applied = []       # (index, data) of normal entries with data

    def apply(self, entries):
        out = []
        for e in entries:
            if e.type == EntryType.NORMAL and e.data:
                self.applied.append((e.index, e.data))
                if e.data.startswith(b"fail"):
                    out.append(ValueError(e.data.decode()))
                    continue
                out.append(b"ok:" + e.data)
            else:
                out.append(None)
        return out


class Cluster:
    def __init__(self, ids=(1, 2, 3), groups=(7,), forward=False, **cfg):
        self.forward = forward
        self.clock = Clock()
        self.ids = list(ids)
        self.stores = {i: MemoryLogStore() for i in ids}
        self.drivers: dict[int, RaftDriver] = {}
        self.sms: dict[tuple[int, int], StateMachine] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.sent = 0
        self.sent_types: list[tuple[int, int, str]] = []   # (from, to, message type)
        for i in ids:
            self.start(i, groups, **cfg)

    def start(self, i, groups, **cfg):
        d = RaftDriver(self.clock, self.stores[i], lambda batch, i=i: self._send(i, batch),
                       tick_ms=int(TICK * 1000), rand=random.Random(i),
                       forward_proposals=self.forward)
        self.drivers[i] = d
        for gid in groups:
            sm = self.sms[(i, gid)] = StateMachine()
            d.add_group(gid, Config(id=i, election_tick=ET, heartbeat_tick=1, **cfg), sm.apply,
                        peers=self.ids)
        d.start()

    def _send(self, frm, batch):
        # Through the wire codec, as the real transport does.
        self.sent += len(batch)
        by_to = {}
        for gid, m in batch:
            self.sent_types.append((frm, m.to, m.type.name))
            by_to.setdefault(m.to, []).append((gid, m))
        for to, items in by_to.items():
            if (frm, to) in self.blocked:
                continue
            frame = encode_messages(items)
            self.clock.callLater(0, self._deliver, frm, to, frame)

    def _deliver(self, frm, to, frame):
        if (frm, to) in self.blocked or to not in self.drivers:
            return
        for gid, m in decode_messages(frame):
            self.drivers[to].step(gid, m)

    def isolate(self, i):
        for j in self.ids:
            if j != i:
                self.blocked.add((i, j))
                self.blocked.add((j, i))

    def heal(self):
        self.blocked.clear()

    def run(self, seconds):
        steps = int(round(seconds / TICK))
        for _ in range(steps):
            self.clock.advance(TICK)
            self.pump()

    def pump(self):
        for _ in range(1000):
            if not any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)

    def leader(self, gid=7):
        leaders = [i for i, d in self.drivers.items() if d.is_leader(gid)]
        return max(leaders, key=lambda i: self.drivers[i].status(gid).term) if leaders else None

    def elect(self, gid=7):
        for _ in range(100):
            self.run(TICK)
            ld = self.leader(gid)
            if ld is not None:
                # Let the leader commit its no-op.
                self.run(3 * TICK)
                return self.leader(gid)
        raise AssertionError("no leader elected")


def result_of(d):
    out = []
    d.addBoth(out.append)
    return out


def test_elects_and_applies_proposal_everywhere():
    c = Cluster()
    ld = c.elect()
    res = result_of(c.drivers[ld].propose(7, b"a"))
    c.pump()
    assert res == [b"ok:a"]
    c.run(3 * TICK)
    for i in c.ids:
        assert [d for _, d in c.sms[(i, 7)].applied] == [b"a"]
    st = c.drivers[ld].status(7).to_dict()
    assert st["raft_state"] == "StateLeader" and st["applied"] == st["commit"]


def test_apply_result_exception_fails_deferred():
    c = Cluster()
    ld = c.elect()
    res = result_of(c.drivers[ld].propose(7, b"fail-me"))
    c.pump()
    assert res[0].check(ValueError)


def test_proposals_of_one_turn_are_batched_with_one_sync():
    c = Cluster(groups=(7, 8))
    ld7 = c.elect(7)
    c.elect(8)
    d = c.drivers[ld7]
    outs = [result_of(d.propose(7, b"v%d" % i)) for i in range(50)]
    if d.is_leader(8):
        outs += [result_of(d.propose(8, b"w%d" % i)) for i in range(50)]
    before = d.sync_count
    last_index = d.status(7).commit
    c.clock.advance(0)     # exactly one processing turn on the leader
    assert d.sync_count == before + 1
    assert d.raw_node(7).raft.raft_log.last_index() == last_index + 50
    c.pump()
    assert all(o and o[0].startswith(b"ok:") for o in outs)


def test_propose_on_follower_fails_with_leader_hint():
    c = Cluster()
    ld = c.elect()
    f = next(i for i in c.ids if i != ld)
    res = result_of(c.drivers[f].propose(7, b"x"))
    assert res[0].check(NotLeader)
    assert res[0].value.leader_hint == ld


def follower_of(c, ld):
    return next(i for i in c.ids if i != ld)


def test_forwarded_proposals_are_answered_with_the_followers_own_apply_result():
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    c.sent_types.clear()
    results = [result_of(c.drivers[f].propose(7, data)) for data in (b"a", b"b", b"fail-c")]
    c.pump()
    assert results[0] == [b"ok:a"] and results[1] == [b"ok:b"]
    assert results[2][0].check(ValueError)
    # One proposal message for the turn's three, and every replica applied each once.
    assert [t for t in c.sent_types if t[2] == "PROP"] == [(f, ld, "PROP")]
    c.run(3 * TICK)
    for i in c.ids:
        assert [d for _, d in c.sms[(i, 7)].applied] == [b"a", b"b", b"fail-c"]
    assert c.drivers[f]._groups[7].forwarded == {}


def test_forwarded_proposal_fails_as_leader_changed_when_its_leader_goes():
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    res = result_of(c.drivers[f].propose(7, b"x"))
    c.isolate(ld)   # the proposal never reaches it
    c.run(2.5)      # well within the 4 s proposal timeout: the others elect
    assert res and res[0].check(LeaderChanged)
    assert c.leader() not in (None, ld)


def test_forwarded_proposal_survives_the_pass_in_which_its_follower_learns_the_leader():
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    # The driver's own record of the leader lags the core's until the pass's Ready is
    # handled: a proposal forwarded in that pass went to the leader all the same.
    c.drivers[f]._groups[7].lead = 0
    res = result_of(c.drivers[f].propose(7, b"x"))
    c.pump()
    assert res == [b"ok:x"]


def test_a_follower_forwards_one_of_two_proposals_with_the_same_data():
    """It knows its entries by their data: a second proposal with the data of one not
    applied yet is dropped before it is sent, never left unanswered."""
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    first = result_of(c.drivers[f].propose(7, b"same"))
    second = result_of(c.drivers[f].propose(7, b"same"))   # the same turn
    c.pump()
    assert first == [b"ok:same"] and second[0].check(ProposalDropped)
    c.blocked.add((ld, f))                                   # f applies nothing for now
    third = result_of(c.drivers[f].propose(7, b"same"))     # free again once applied
    c.pump()
    fourth = result_of(c.drivers[f].propose(7, b"same"))    # a later turn, third pending
    c.pump()
    assert third == [] and fourth[0].check(ProposalDropped)
    c.heal()
    c.run(3 * TICK)
    assert third == [b"ok:same"]
    assert [d for _, d in c.sms[(ld, 7)].applied] == [b"same", b"same"]


def test_forwarded_proposal_times_out_when_the_leader_never_gets_it():
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    d = c.drivers[f]
    d.proposal_timeout = 1.0
    c.blocked.add((f, ld))   # f still hears the leader, so the leader does not change
    res = result_of(d.propose(7, b"x"))
    c.run(0.9)
    assert res == []
    c.run(0.2)
    assert res[0].check(ProposalTimeout)
    assert d._groups[7].forwarded == {}


def test_forwarded_proposal_fails_as_leader_changed_when_a_snapshot_replaces_the_log():
    c = Cluster(forward=True)
    ld = c.elect()
    f = follower_of(c, ld)
    c.blocked.add((ld, f))   # the leader gets the proposal, f never hears of its entry
    res = result_of(c.drivers[f].propose(7, b"x"))
    c.pump()
    for i in range(3):
        result_of(c.drivers[ld].propose(7, b"%d" % i))
    c.run(2 * TICK)
    c.drivers[ld].compact(7, c.drivers[ld].status(7).applied, b"descriptor")
    restored = []
    c.drivers[f]._groups[7].restore = restored.append
    c.heal()
    c.run(0.3)
    assert [s.data for s in restored] == [b"descriptor"]
    assert res and res[0].check(LeaderChanged)


def test_forwarding_follower_without_a_leader_refuses_at_once():
    c = Cluster(forward=True)
    assert result_of(c.drivers[1].propose(7, b"x"))[0].check(NotLeader)


def test_a_stalled_leader_ticks_every_interval_it_missed_and_steps_down():
    """The reactor calls the ticker once after a stall of many tick intervals: the lease
    a cut-off leader reads under must still end when the others may elect."""
    c = Cluster(check_quorum=True)
    ld = c.elect()
    c.isolate(ld)
    c.clock.advance(3 * ET * TICK)   # one late call for thirty intervals
    c.pump()
    assert not c.drivers[ld].is_leader(7)
    res = result_of(c.drivers[ld].read_index(7))
    c.pump()
    assert res and res[0].check(NotLeader)


def test_a_cut_off_leader_answers_lease_reads_for_half_an_election_timeout_only():
    """The others may elect a new leader one election timeout after they last heard the
    old one, while CheckQuorum may leave it leader for up to two: past half a timeout
    without a majority's answer, a lease read waits for a ReadIndex round instead."""
    from zan.raft.read_only import ReadOnlyOption

    c = Cluster(check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    ld = c.elect()
    c.run(3 * TICK)
    c.isolate(ld)
    fresh = result_of(c.drivers[ld].read_index(7))
    c.pump()
    assert fresh and isinstance(fresh[0], int)          # on the lease, no round trip
    c.run((ET // 2) * TICK)
    assert c.drivers[ld].is_leader(7)                   # not deposed yet
    late = result_of(c.drivers[ld].read_index(7))
    c.pump()
    assert late == []                                   # a round nobody answers
    c.heal()
    c.run(3 * TICK)
    assert late and isinstance(late[0], int)


def test_propose_unknown_group_dropped():
    c = Cluster()
    assert result_of(c.drivers[1].propose(99, b"x"))[0].check(ProposalDropped)


def test_proposal_times_out_without_quorum():
    c = Cluster()
    ld = c.elect()
    c.isolate(ld)
    res = result_of(c.drivers[ld].propose(7, b"x"))
    c.run(3.9)
    assert res == [] or res[0].check(LeaderChanged)
    c.run(0.2)
    assert res and res[0].check(ProposalTimeout, LeaderChanged)


def test_proposal_timeout_exact():
    c = Cluster(check_quorum=False)
    ld = c.elect()
    c.isolate(ld)
    d = c.drivers[ld]
    d.proposal_timeout = 1.0
    res = result_of(d.propose(7, b"x"))
    c.run(0.9)
    assert res == []
    c.run(0.2)
    assert res[0].check(ProposalTimeout)


def test_leader_changed_when_entry_overwritten():
    c = Cluster()
    old = c.elect()
    c.isolate(old)
    res = result_of(c.drivers[old].propose(7, b"lost"))
    c.pump()
    assert res == []
    # The others elect a new leader and commit something at the same index.
    for _ in range(100):
        c.run(TICK)
        new = [i for i in c.ids if i != old and c.drivers[i].is_leader(7)]
        if new:
            break
    new = new[0]
    r2 = result_of(c.drivers[new].propose(7, b"won"))
    c.run(3 * TICK)
    assert r2 == [b"ok:won"]
    c.heal()
    c.run(1.0)
    assert res and res[0].check(LeaderChanged)
    assert [d for _, d in c.sms[(old, 7)].applied] == [b"won"]


def test_transfer_in_progress_drops_and_status_shows_transferee():
    c = Cluster()
    ld = c.elect()
    f = next(i for i in c.ids if i != ld)
    c.isolate(f)
    c.drivers[ld].transfer_leader(7, f)
    assert c.drivers[ld].status(7).lead_transferee == f
    assert result_of(c.drivers[ld].propose(7, b"x"))[0].check(ProposalDropped)
    c.heal()
    c.run(1.0)
    assert c.leader() == f


def test_read_index_on_leader_and_follower():
    c = Cluster()
    ld = c.elect()
    result_of(c.drivers[ld].propose(7, b"a"))
    c.pump()
    commit = c.drivers[ld].status(7).commit
    r1 = result_of(c.drivers[ld].read_index(7))
    c.pump()
    assert r1 == [commit]
    f = next(i for i in c.ids if i != ld)
    r2 = result_of(c.drivers[f].read_index(7))
    c.pump()
    assert r2 == [commit]
    assert c.drivers[f].status(7).applied >= commit


def test_read_index_waits_for_apply_on_lagging_follower():
    c = Cluster()
    ld = c.elect()
    f = next(i for i in c.ids if i != ld)
    # f receives no appends (only heartbeats would tell it the commit index).
    c.blocked.add((ld, f))
    result_of(c.drivers[ld].propose(7, b"a"))
    c.pump()
    commit = c.drivers[ld].status(7).commit
    c.blocked.discard((ld, f))
    r = result_of(c.drivers[f].read_index(7))
    c.pump()
    assert r == [commit]
    assert (commit, b"a") in c.sms[(f, 7)].applied


def test_read_index_on_isolated_leader_does_not_answer():
    c = Cluster()
    ld = c.elect()
    c.isolate(ld)
    r = result_of(c.drivers[ld].read_index(7))
    c.run(0.5)
    assert r == []
    c.run(4.0)
    assert r[0].check(ProposalTimeout, LeaderChanged)


def test_conf_change_through_driver():
    c = Cluster()
    ld = c.elect()
    f = next(i for i in c.ids if i != ld)
    res = result_of(c.drivers[ld].propose_conf_change(7, ConfChange(ConfChangeType.REMOVE_NODE, f)))
    c.run(3 * TICK)
    assert res == [None]
    assert f not in c.drivers[ld].conf_state(7).voters
    c.drivers[f].stop()
    del c.drivers[f]
    r2 = result_of(c.drivers[ld].propose(7, b"two"))
    c.run(3 * TICK)
    assert r2 == [b"ok:two"]
    other = next(i for i in c.ids if i not in (ld, f))
    assert [d for _, d in c.sms[(other, 7)].applied] == [b"two"]


def test_compact_and_snapshot_catch_up():
    c = Cluster()
    ld = c.elect()
    f = next(i for i in c.ids if i != ld)
    c.isolate(f)
    c.run(3 * TICK)
    for i in range(10):
        result_of(c.drivers[ld].propose(7, b"%d" % i))
    c.run(3 * TICK)
    applied = c.drivers[ld].status(7).applied
    snap = c.drivers[ld].compact(7, applied, b"descriptor")
    assert snap.metadata.index == applied
    restored = []
    c.drivers[f]._groups[7].restore = restored.append
    c.heal()
    c.run(0.5)
    c.drivers[ld].report_snapshot(7, f, True)
    c.run(0.5)
    assert [s.data for s in restored] == [b"descriptor"]
    assert c.drivers[f].status(7).applied == c.drivers[ld].status(7).applied


def test_restart_recovers_from_log_store():
    c = Cluster()
    ld = c.elect()
    result_of(c.drivers[ld].propose(7, b"a"))
    c.run(3 * TICK)
    f = next(i for i in c.ids if i != ld)
    c.drivers[f].stop()
    c.start(f, (7,))       # same MemoryLogStore, fresh state machine
    c.run(3 * TICK)
    assert [d for _, d in c.sms[(f, 7)].applied] == [b"a"]
    assert c.drivers[f].status(7).term == c.drivers[ld].status(7).term


def test_stop_fails_pending():
    c = Cluster()
    ld = c.elect()
    c.isolate(ld)
    res = result_of(c.drivers[ld].propose(7, b"x"))
    c.pump()
    c.drivers[ld].stop()
    assert res[0].check(Stopping)


def test_remove_group_destroys_log():
    c = Cluster()
    c.drivers[1].remove_group(7, destroy=True)
    assert c.stores[1].group_ids() == []
    with pytest.raises(ValueError):
        c.drivers[2].add_group(7, Config(id=2), lambda es: [None] * len(es))
