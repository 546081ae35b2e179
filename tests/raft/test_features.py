"""Pre-vote, CheckQuorum, snapshots, membership, leader transfer, ReadIndex, lease reads
and flow control, over the simulated network."""

from __future__ import annotations

import pytest

from zan.errors import ConfigError, NotLeader, ProposalDropped
from zan.raft.core import Config, StateType
from zan.raft.progress import Inflights, ProgressState
from zan.raft.read_only import ReadOnlyOption
from zan.raft.types import (
    ConfChange, ConfChangeType as CC, ConfState, Entry, Message, MessageType as MT,
)

from tests.raft.sim import Network, SimNode, entry_datas, new_raft, persist, read_messages


def _applied(net, nid):
    return entry_datas(net.nodes[nid].applied)


# --- elections -------------------------------------------------------------------------

def test_leader_election_and_replication():
    net = Network([1, 2, 3])
    net.campaign(1)
    assert net.raft(1).state == StateType.LEADER
    assert {net.raft(i).lead for i in (1, 2, 3)} == {1}
    net.propose(1, b"a")
    net.propose(2, b"b")       # forwarded
    for i in (1, 2, 3):
        assert _applied(net, i) == [b"a", b"b"]


def test_isolated_candidate_disrupts_without_prevote():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    for _ in range(3):
        net.campaign(3)
    assert net.raft(3).term == 4
    net.recover()
    net.campaign(3)   # its higher term deposes the healthy leader
    assert net.raft(1).term == 5
    assert net.raft(1).state == StateType.FOLLOWER


def test_prevote_prevents_disruption():
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    assert net.raft(1).state == StateType.LEADER
    net.isolate(3)
    for _ in range(3):
        net.campaign(3)
    # A pre-candidate does not bump its term when it cannot win.
    assert net.raft(3).state == StateType.PRE_CANDIDATE
    assert net.raft(3).term == 1
    net.recover()
    net.propose(1, b"x")
    assert net.raft(1).state == StateType.LEADER and net.raft(1).term == 1
    assert _applied(net, 3) == [b"x"]
    assert net.raft(3).state == StateType.FOLLOWER


def test_prevote_wins_then_real_election():
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    assert net.raft(1).state == StateType.LEADER and net.raft(1).term == 1
    net.crash(1)
    net.campaign(2)
    assert net.raft(2).state == StateType.LEADER and net.raft(2).term == 2


def test_prevote_rejects_stale_log():
    net = Network([1, 2, 3], pre_vote=True)
    net.campaign(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.recover()
    net.crash(1)
    net.campaign(3)           # 3 lacks "x": 2 refuses the pre-vote
    assert net.raft(3).state == StateType.PRE_CANDIDATE
    assert net.raft(3).term == 1 and net.raft(2).term == 1
    net.campaign(2)
    assert net.raft(2).state == StateType.LEADER and net.raft(2).term == 2


def test_check_quorum_leader_steps_down():
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    net.isolate(1)
    et = net.raft(1).election_timeout
    net.tick(1, et - 1)
    assert net.raft(1).state == StateType.LEADER
    # One election timeout after it last heard a majority (here: since it took office),
    # not at the end of CheckQuorum's second window.
    net.tick(1, 1)
    assert net.raft(1).state == StateType.FOLLOWER


def test_a_leader_that_hears_a_majority_stays_past_many_timeouts():
    net = Network([1, 2, 3, 4, 5], check_quorum=True)
    net.campaign(1)
    net.isolate(4)
    net.isolate(5)
    for _ in range(5 * net.raft(1).election_timeout):
        net.tick_all()
    assert net.raft(1).state == StateType.LEADER


def test_check_quorum_lease_ignores_votes():
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    # 3 times out while the others still hear from 1: 2 ignores its vote requests.
    net.campaign(3)
    assert net.raft(3).state == StateType.CANDIDATE
    assert net.raft(1).state == StateType.LEADER
    assert net.raft(2).vote == 1


def test_candidate_with_stale_term_rejoins_with_check_quorum():
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    net.isolate(3)
    net.campaign(3)
    net.campaign(3)
    net.recover()
    # 1's heartbeat at a lower term is answered so 1 learns the higher term.
    net.tick(1, 1)
    net.flush()
    # The cluster recovers a leader whose term is >= 3's.
    net.tick_all(3 * net.raft(1).election_timeout)
    ld = net.leader()
    assert ld is not None
    net.propose(ld, b"y")
    assert all(_applied(net, i)[-1:] == [b"y"] for i in (1, 2, 3))


def test_single_node_commits_immediately():
    net = Network([1])
    net.campaign(1)
    net.propose(1, b"a")
    assert _applied(net, 1) == [b"a"]


def test_proposal_without_leader_is_dropped():
    net = Network([1, 2, 3])
    with pytest.raises(ProposalDropped):
        net.nodes[1].rn.propose(b"x")


def test_proposal_forwarding_disabled():
    net = Network([1, 2, 3], disable_proposal_forwarding=True)
    net.campaign(1)
    with pytest.raises(NotLeader) as ei:
        net.nodes[2].rn.propose(b"x")
    assert ei.value.leader_hint == 1


def test_propose_returns_term_and_index():
    net = Network([1, 2, 3])
    net.campaign(1)
    term, index = net.propose(1, b"a")
    assert (term, index) == (1, 2)
    assert net.nodes[1].applied[-1] == Entry(1, 2, data=b"a")
    assert net.propose(2, b"b") is None
    rn = net.nodes[1].rn
    assert rn.propose_batch([b"c", b"d", b"e"]) == (1, 4)


# --- log replication -------------------------------------------------------------------

def test_fast_backtracking_conflicting_follower():
    """Figure 7 (f): one rejection carrying (hint index, hint term) lets the leader skip
    every conflicting term at once instead of probing index by index."""
    from tests.raft.test_paper import FIG7_FOLLOWERS, FIG7_LEADER
    from tests.raft.sim import storage_with
    net = Network([1, 2, 3])
    net.nodes[1] = SimNode(1, storage=storage_with(FIG7_LEADER, term=8, commit=3))
    net.nodes[2] = SimNode(2, storage=storage_with(FIG7_FOLLOWERS[5], term=7, commit=3))
    net.down.add(3)
    seen = []
    net.msg_hook = lambda m: seen.append(m) or True
    net.campaign(1)
    net.send(Message(MT.VOTE_RESP, 1, 3, 9))
    net.propose(1, b"x")
    rejects = [m for m in seen if m.type == MT.APP_RESP and m.reject]
    assert len(rejects) == 1
    assert (rejects[0].reject_hint, rejects[0].log_term) == (10, 3)
    assert [e.term for e in net.raft(2).raft_log.all_entries()] == FIG7_LEADER + [9, 9]


def test_flow_control_max_inflight():
    r = new_raft(1, [1, 2], max_inflight_msgs=3, max_size_per_msg=1)
    r.become_candidate()
    r.become_leader()
    persist(r)
    read_messages(r)
    r.step(Message(MT.APP_RESP, 1, 2, r.term, index=r.raft_log.last_index()))
    read_messages(r)
    assert r.prs[2].state == ProgressState.REPLICATE
    for i in range(10):
        r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"x" * 10),)))
    msgs = read_messages(r)
    apps = [m for m in msgs if m.type == MT.APP and m.entries]
    assert len(apps) == 3
    assert all(len(m.entries) == 1 for m in apps)   # max_size_per_msg
    assert r.prs[2].is_paused()
    # Acking the first frees one slot: exactly one more message goes out.
    r.step(Message(MT.APP_RESP, 1, 2, r.term, index=apps[0].entries[-1].index))
    more = [m for m in read_messages(r) if m.type == MT.APP and m.entries]
    assert len(more) == 1
    assert r.prs[2].is_paused()
    # A heartbeat response lets exactly one more append through a full window, so a
    # window whose messages were all lost cannot stall the follower.
    r.step(Message(MT.HEARTBEAT_RESP, 1, 2, r.term))
    assert len([m for m in read_messages(r) if m.type == MT.APP and m.entries]) == 1
    assert r.prs[2].is_paused()


def test_flow_control_probe_sends_one_at_a_time():
    r = new_raft(1, [1, 2])
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    for _ in range(5):
        r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"x"),)))
    apps = [m for m in read_messages(r) if m.type == MT.APP]
    assert len(apps) == 1
    assert r.prs[2].state == ProgressState.PROBE and r.prs[2].is_paused()
    r.step(Message(MT.HEARTBEAT_RESP, 1, 2, r.term))
    assert len([m for m in read_messages(r) if m.type == MT.APP]) == 1


def test_inflights_bytes_limit():
    inf = Inflights(10, max_bytes=100)
    inf.add(1, 60)
    assert not inf.full()
    inf.add(2, 60)
    assert inf.full()
    inf.free_le(1)
    assert not inf.full() and inf.count() == 1


def test_unreachable_moves_replicate_to_probe():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    r = net.raft(1)
    assert r.prs[2].state == ProgressState.REPLICATE
    net.nodes[1].rn.report_unreachable(2)
    assert r.prs[2].state == ProgressState.PROBE


# --- snapshots -------------------------------------------------------------------------

def test_snapshot_sent_to_lagging_follower():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.crash(3)
    for i in range(20):
        net.propose(1, b"v%d" % i)
    net.nodes[1].compact()
    net.nodes[2].compact()
    assert net.nodes[1].storage.first_index() > 2
    net.down.discard(3)
    net.tick(1, 1)
    net.flush()
    n3 = net.nodes[3]
    assert n3.snapshots_installed == 1
    assert net.raft(1).prs[3].state in (ProgressState.REPLICATE, ProgressState.PROBE)
    net.nodes[1].rn.report_snapshot(3, True)
    net.propose(1, b"after")
    assert _applied(net, 3) == [b"after"]
    assert n3.applied_index == net.nodes[1].applied_index
    assert net.raft(1).prs[3].state == ProgressState.REPLICATE


def test_snapshot_failure_retries():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.crash(3)
    for i in range(5):
        net.propose(1, b"v%d" % i)
    net.nodes[1].compact()
    net.down.discard(3)
    net.ignore(MT.SNAP)
    net.nodes[1].raft.prs[3].recent_active = True
    states = []
    real_lost = net.lost
    net.lost = lambda m: states.append(net.raft(1).prs[3].state) or real_lost(m)
    net.tick(1, 1)
    net.flush()
    # The snapshot was sent (SNAPSHOT state) and its loss reported: back to probing.
    assert states == [ProgressState.SNAPSHOT]
    pr = net.raft(1).prs[3]
    assert pr.state == ProgressState.PROBE and pr.pending_snapshot == 0
    net.recover()
    net.tick(1, 1)
    net.flush()
    assert net.nodes[3].snapshots_installed == 1
    assert net.raft(3).raft_log.committed == net.raft(1).raft_log.committed


def test_restore_ignores_old_snapshot_and_fast_forwards():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    r2 = net.raft(2)
    snap = net.nodes[1].storage.create_snapshot(2, net.raft(1).conf_state(), b"")
    assert r2.restore(snap) is False   # already committed


# --- membership ------------------------------------------------------------------------

def _add_node(net, nid, learner=False):
    net.nodes[nid] = SimNode(nid, storage=None)
    net.ids.append(nid)


def test_add_voter_and_replicate():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    net.nodes[4] = SimNode(4, peers=[1, 2, 3, 4])   # an empty log, joins through the leader
    net.ids.append(4)
    rn = net.nodes[1].rn
    rn.propose_conf_change(ConfChange(CC.ADD_NODE, 4))
    net.flush()
    assert net.raft(1).voters == {1, 2, 3, 4}
    net.tick(1, 1)
    net.flush()
    net.propose(1, b"b")
    assert _applied(net, 4) == [b"a", b"b"]
    assert net.raft(4).voters == {1, 2, 3, 4}


def test_second_pending_conf_change_refused():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(1)   # nothing commits
    rn = net.nodes[1].rn
    rn.propose_conf_change(ConfChange(CC.ADD_NODE, 4))
    with pytest.raises(ProposalDropped):
        rn.propose_conf_change(ConfChange(CC.REMOVE_NODE, 3))
    net.recover()
    net.tick(1, 1)
    net.flush()
    rn.propose_conf_change(ConfChange(CC.REMOVE_NODE, 4))   # fine once applied
    net.flush()
    assert net.raft(1).voters == {1, 2, 3}


def test_remove_node_shrinks_quorum():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].rn.propose_conf_change(ConfChange(CC.REMOVE_NODE, 3))
    net.flush()
    assert net.raft(1).voters == {1, 2}
    net.crash(3)
    net.propose(1, b"x")
    assert _applied(net, 2) == [b"x"]


def test_remove_leader_steps_down():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].rn.propose_conf_change(ConfChange(CC.REMOVE_NODE, 1))
    net.flush()
    assert net.raft(1).state == StateType.FOLLOWER
    net.campaign(2)
    net.propose(2, b"x")
    assert _applied(net, 3) == [b"x"]


def test_learner_receives_but_does_not_vote_or_count():
    net = Network([1, 2])
    net.campaign(1)
    net.nodes[3] = SimNode(3)
    net.ids.append(3)
    net.nodes[1].rn.propose_conf_change(ConfChange(CC.ADD_LEARNER_NODE, 3))
    net.flush()
    net.tick(1, 1)
    net.flush()
    net.propose(1, b"a")
    assert _applied(net, 3) == [b"a"]
    assert net.raft(3).is_learner and not net.raft(3).promotable()
    net.tick(3, 100)   # a learner never campaigns
    assert net.raft(3).state == StateType.FOLLOWER and net.raft(1).term == 1
    # The learner does not count toward the commit quorum.
    net.crash(2)
    net.propose(1, b"b")
    assert _applied(net, 1) == [b"a"]
    net.down.discard(2)
    net.tick(1, 1)
    net.flush()
    # Promote.
    net.nodes[1].rn.propose_conf_change(ConfChange(CC.ADD_NODE, 3))
    net.flush()
    assert net.raft(1).voters == {1, 2, 3} and not net.raft(3).is_learner
    net.crash(2)
    net.propose(1, b"c")
    assert _applied(net, 1)[-1] == b"c"


def test_rawnode_apply_conf_change_returns_conf_state():
    net = Network([1, 2, 3])
    cs = net.nodes[1].rn.apply_conf_change(ConfChange(CC.ADD_LEARNER_NODE, 9))
    assert cs == ConfState((1, 2, 3), (9,))


# --- leader transfer -------------------------------------------------------------------

def test_leader_transfer_to_up_to_date_follower():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[1].rn.transfer_leader(2)
    net.flush()
    assert net.raft(2).state == StateType.LEADER and net.raft(2).term == 2
    assert net.raft(1).state == StateType.FOLLOWER


def test_leader_transfer_to_lagging_follower_catches_up_first():
    net = Network([1, 2, 3], check_quorum=True)
    net.campaign(1)
    net.crash(3)
    for i in range(5):
        net.propose(1, b"%d" % i)
    net.down.discard(3)
    net.nodes[1].rn.transfer_leader(3)
    assert net.raft(1).lead_transferee == 3
    with pytest.raises(ProposalDropped):
        net.nodes[1].rn.propose(b"blocked")
    net.flush()
    net.tick(1, 1)
    net.flush()
    assert net.raft(3).state == StateType.LEADER
    assert len(_applied(net, 3)) == 5 or net.raft(3).raft_log.last_index() >= 7


def test_leader_transfer_aborts_after_election_timeout():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.crash(3)
    net.nodes[1].rn.transfer_leader(3)
    assert net.raft(1).lead_transferee == 3
    net.tick(1, net.raft(1).election_timeout)
    assert net.raft(1).lead_transferee == 0
    net.propose(1, b"ok")
    assert _applied(net, 2)[-1] == b"ok"


def test_leader_transfer_via_follower_and_to_self():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.nodes[3].rn.transfer_leader(3)   # asked of a follower: forwarded
    net.flush()
    assert net.raft(3).state == StateType.LEADER
    net.nodes[3].rn.transfer_leader(3)
    net.flush()
    assert net.raft(3).state == StateType.LEADER and net.raft(3).lead_transferee == 0


# --- ReadIndex -------------------------------------------------------------------------

def test_read_index_on_leader_and_follower():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    n1, n2 = net.nodes[1], net.nodes[2]
    n1.rn.read_index(b"r1")
    net.flush()
    assert [(rs.index, rs.request_ctx) for rs in n1.read_states] == [(2, b"r1")]
    n2.rn.read_index(b"r2")
    net.flush()
    assert [(rs.index, rs.request_ctx) for rs in n2.read_states] == [(2, b"r2")]


def test_read_index_needs_quorum_heartbeat():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(1)
    net.nodes[1].rn.read_index(b"r")
    net.flush()
    assert net.nodes[1].read_states == []     # a deposed leader must not answer
    net.recover()
    net.tick(1, 1)
    net.flush()
    assert [rs.request_ctx for rs in net.nodes[1].read_states] == [b"r"]


def test_read_index_waits_for_current_term_commit():
    r = new_raft(1, [1, 2, 3])
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    r.step(Message(MT.READ_INDEX, frm=1, context=b"q"))
    assert r.read_states == [] and len(r.pending_read_index_messages) == 1
    li = r.raft_log.last_index()
    r.step(Message(MT.APP_RESP, 1, 2, r.term, index=li))   # commits the no-op
    hbs = [m for m in read_messages(r) if m.type == MT.HEARTBEAT]
    assert hbs and all(m.context == b"q" for m in hbs)
    r.step(Message(MT.HEARTBEAT_RESP, 1, 2, r.term, context=b"q"))
    assert [(rs.index, rs.request_ctx) for rs in r.read_states] == [(li, b"q")]


def test_read_index_single_node():
    net = Network([1])
    net.campaign(1)
    net.nodes[1].rn.read_index(b"x")
    net.flush()
    assert [(rs.index, rs.request_ctx) for rs in net.nodes[1].read_states] == [(1, b"x")]


def test_lease_read_answers_without_heartbeat_round():
    net = Network([1, 2, 3], check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    net.campaign(1)
    net.isolate(1)
    net.nodes[1].rn.read_index(b"l")
    net.flush()
    assert [rs.request_ctx for rs in net.nodes[1].read_states] == [b"l"]


def test_lease_read_requires_check_quorum():
    with pytest.raises(ConfigError):
        Config(id=1, read_only_option=ReadOnlyOption.LEASE_BASED).validate()


@pytest.mark.parametrize("kw", [dict(id=0), dict(id=1, heartbeat_tick=0), dict(id=1, election_tick=1),
                                dict(id=1, max_inflight_msgs=0), dict(id=1, max_size_per_msg=0)])
def test_config_validate(kw):
    with pytest.raises(ConfigError):
        Config(**kw).validate()


# --- restart and status ----------------------------------------------------------------

def test_restart_keeps_term_vote_and_log():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    net.crash(2)
    net.restart(2)
    r2 = net.raft(2)
    assert r2.term == 1 and r2.vote == 1 and r2.raft_log.last_index() == 2
    # Re-applies what was committed.
    assert _applied(net, 2) == [b"a"]


def test_status():
    net = Network([1, 2, 3])
    net.campaign(1)
    net.propose(1, b"a")
    st = net.nodes[1].rn.status().to_dict()
    assert st["raft_state"] == "StateLeader" and st["lead"] == 1 and st["term"] == 1
    assert st["commit"] == 2 and st["applied"] == 2
    assert st["progress"][2] == {"match": 2, "next": 3, "state": "StateReplicate",
                                 "recovering": False}
    assert net.nodes[2].rn.status().to_dict()["raft_state"] == "StateFollower"
