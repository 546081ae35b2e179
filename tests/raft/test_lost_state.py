"""Replicas that start with no state: founding a group only when every founder is empty,
and recovering (no vote, no quorum) when the group already exists."""

import random

from tests.raft.sim import Network, SimNode, entry_datas
from zan.raft.codec import decode_messages, encode_messages
from zan.raft.core import StateType
from zan.raft.storage import MemoryStorage
from zan.raft.types import HardState, Message, MessageType as MT

CFG = dict(election_tick=10, heartbeat_tick=1, check_quorum=True, pre_vote=True)


def empty_network(ids, founders=True):
    """A network whose nodes all start empty, as a new group's replicas do."""
    nw = Network(ids, **CFG)
    for i in ids:
        nw.nodes[i] = SimNode(i, storage=MemoryStorage(), rand=random.Random(i), **CFG)
        nw.nodes[i].rn.start_empty(ids if founders else None)
    return nw


def wipe(nw, i, founders=None):
    """Node i comes back with nothing: same id, empty storage."""
    nw.down.discard(i)
    node = nw.nodes[i] = SimNode(i, storage=MemoryStorage(), rand=random.Random(i + 100), **CFG)
    node.rn.start_empty(founders)
    nw.send(*node.process())
    return node


def elect(nw, rounds=60):
    for _ in range(rounds):
        nw.tick_all()
        if nw.leader() is not None:
            return nw.leader()
    raise AssertionError("no leader")


def running_group(ids=(1, 2, 3)):
    nw = empty_network(list(ids))
    lead = elect(nw)
    for i in range(5):
        nw.propose(lead, f"v{i}".encode())
    return nw, lead


def assert_founded_and_working(nw):
    lead = elect(nw)
    nw.propose(lead, b"x")
    for n in nw.nodes.values():
        assert not n.raft.recovering
        assert entry_datas(n.applied) == [b"x"]


def test_empty_founders_found_the_group_together():
    nw = empty_network([1, 2, 3])
    for n in nw.nodes.values():
        assert n.raft.recovering
    nw.tick_all(2)
    for n in nw.nodes.values():
        assert not n.raft.recovering
        assert n.raft.conf_state().voters == (1, 2, 3)
    assert_founded_and_working(nw)


def test_a_founder_that_founded_first_does_not_stop_the_others():
    """1 hears that 2 and 3 are empty and founds the group; its election reaches 2 and 3
    before they hear from each other.  They still found it too, and elect."""
    nw = empty_network([1, 2, 3])
    nw.cut(2, 3)
    nw.tick_all(30)
    assert nw.raft(1).founders is None
    assert nw.raft(2).founders is not None and nw.raft(3).founders is not None
    nw.recover()
    assert_founded_and_working(nw)


def test_a_founder_whose_empty_answers_were_lost_is_still_heard_as_founding():
    """3 founds on the probes of 1 and 2, but its own answers never reached them (the
    connections were not up yet).  Its later answers say it founded and holds nothing
    since: 1 and 2 found too, rather than wait for a leader that cannot be elected."""
    nw = empty_network([1, 2, 3])
    nw.drop(3, 1)
    nw.drop(3, 2)
    nw.tick_all(3)
    assert nw.raft(3).founders is None and not nw.raft(3).recovering
    assert nw.raft(1).founders is not None
    nw.recover()
    assert_founded_and_working(nw)


def test_a_leader_brings_back_a_majority_that_lost_its_disks():
    """Both followers are wiped: the leader stays (CheckQuorum counts them, they vote for
    nobody) and brings them back; it then commits with them again."""
    nw, lead = running_group()
    b, c = [i for i in (1, 2, 3) if i != lead]
    wipe(nw, b, founders=[1, 2, 3])
    wipe(nw, c, founders=[1, 2, 3])
    nw.tick_all(50)
    assert nw.leader() == lead
    for i in (b, c):
        assert not nw.raft(i).recovering
        assert entry_datas(nw.nodes[i].applied) == [f"v{k}".encode() for k in range(5)]
    nw.propose(lead, b"after")
    assert nw.raft(lead).raft_log.committed == nw.raft(lead).raft_log.last_index()


def test_a_survivor_beside_a_wiped_majority_is_not_outvoted():
    """The leader is down while both followers are wiped: they neither found a new group
    nor elect one of themselves.  With the survivor back nobody can win either (the two
    cannot tell what they acknowledged): the group waits, and keeps its data."""
    nw, lead = running_group()
    b, c = [i for i in (1, 2, 3) if i != lead]
    nw.crash(lead)
    wipe(nw, b, founders=[1, 2, 3])
    wipe(nw, c, founders=[1, 2, 3])
    nw.tick_all(50)
    for i in (b, c):
        assert nw.raft(i).recovering and nw.raft(i).raft_log.last_index() == 0
    assert nw.leader() is None
    nw.restart(lead)
    nw.tick_all(100)
    assert nw.leader() is None
    assert entry_datas(nw.nodes[lead].applied) == [f"v{k}".encode() for k in range(5)]


def test_a_single_founder_founds_at_once():
    node = SimNode(1, storage=MemoryStorage(), **CFG)
    node.rn.start_empty([1])
    assert not node.raft.recovering
    assert node.raft.conf_state().voters == (1,)


def test_a_founder_does_not_found_while_another_founder_is_silent():
    nw = empty_network([1, 2, 3])
    nw.crash(3)
    nw.tick_all(50)
    assert nw.leader() is None
    for i in (1, 2):
        assert nw.nodes[i].raft.raft_log.last_index() == 0
        assert nw.nodes[i].raft.recovering


def test_a_wiped_founder_learns_the_group_exists_and_recovers():
    nw, lead = running_group()
    follower = next(i for i in (1, 2, 3) if i != lead)
    node = wipe(nw, follower, founders=[1, 2, 3])
    nw.tick_all(3)
    node = nw.nodes[follower]
    assert node.raft.founders is None
    assert not node.raft.recovering          # caught up from the leader, votes again
    assert node.raft.vote == lead
    assert entry_datas(node.applied) == [f"v{i}".encode() for i in range(5)]


def test_a_recovering_replica_grants_no_vote():
    nw, lead = running_group()
    follower = next(i for i in (1, 2, 3) if i != lead)
    node = wipe(nw, follower)
    r = node.raft
    assert r.recovering
    for t in (MT.PRE_VOTE, MT.VOTE):
        r.step(Message(t, to=follower, frm=lead, term=r.term + 5, log_term=99, index=99))
        resp = [m for m in node.process() if m.type in (MT.PRE_VOTE_RESP, MT.VOTE_RESP)]
        assert resp and all(m.reject for m in resp)
    assert r.vote != lead


def test_acknowledgements_of_a_recovering_replica_commit_nothing():
    """With both followers silent, an entry the leader proposes commits on an
    acknowledgement from a replica, unless that replica says it is recovering."""
    nw, lead = running_group()
    b, c = [i for i in (1, 2, 3) if i != lead]
    nw.crash(b)
    nw.crash(c)
    nw.propose(lead, b"pending")
    leader = nw.raft(lead)
    last, commit = leader.raft_log.last_index(), leader.raft_log.committed
    assert commit < last
    ack = Message(MT.APP_RESP, to=lead, frm=b, term=leader.term, index=last, recovering=True)
    leader.step(ack)
    assert leader.prs[b].recovering
    assert leader.raft_log.committed == commit
    leader.step(Message(MT.HEARTBEAT_RESP, to=lead, frm=b, term=leader.term, recovering=True))
    assert leader.raft_log.committed == commit
    leader.step(Message(MT.APP_RESP, to=lead, frm=b, term=leader.term, index=last))
    assert not leader.prs[b].recovering
    assert leader.raft_log.committed == last


def test_a_recovering_replica_catches_up_on_an_idle_group():
    """Its first heartbeat response tells the leader to send it everything again, though
    the leader had it down as holding the whole log."""
    nw, lead = running_group()
    b = next(i for i in (1, 2, 3) if i != lead)
    node = wipe(nw, b)
    nw.tick_all(3)
    node = nw.nodes[b]
    assert not node.raft.recovering
    assert entry_datas(node.applied) == [f"v{i}".encode() for i in range(5)]


def test_a_lagging_replica_cannot_win_with_a_recovering_one():
    """The first story of lost writes, in the core: 3 lags, 2 is wiped, leader 1 dies."""
    nw, lead = running_group()
    b, c = [i for i in (1, 2, 3) if i != lead]
    nw.cut(lead, c)
    for i in range(5, 10):
        nw.propose(lead, f"v{i}".encode())
    wipe(nw, b)
    nw.crash(lead)
    nw.recover()
    nw.tick_all(100)
    assert nw.leader() is None
    assert nw.raft(b).recovering


def test_recovering_survives_a_restart():
    nw, lead = running_group()
    b = next(i for i in (1, 2, 3) if i != lead)
    nw.cut(lead, b)
    wipe(nw, b)
    nw.tick_all(2)
    assert nw.raft(b).recovering
    nw.crash(b)
    nw.restart(b)
    assert nw.raft(b).recovering
    assert nw.nodes[b].storage.initial_state()[0].recovering


def test_the_recovering_flag_crosses_the_wire():
    m = Message(MT.APP_RESP, to=1, frm=2, term=3, index=4, recovering=True)
    assert decode_messages(encode_messages([(7, m)])) == [(7, m)]


def test_messages_without_the_flag_still_decode():
    import msgpack
    old = msgpack.packb([1, [[7, int(MT.APP_RESP), 1, 2, 3, 0, 4, 0, False, 0, b"", [], None]]],
                        use_bin_type=True)
    [(gid, m)] = decode_messages(old)
    assert gid == 7 and m.index == 4 and not m.recovering


def test_an_empty_hard_state_is_not_a_recovering_one():
    assert HardState().is_empty()
    assert not HardState(recovering=True).is_empty()


def test_a_recovering_leader_candidate_never_campaigns():
    node = SimNode(1, storage=MemoryStorage(), **CFG)
    node.rn.start_empty(None)
    for _ in range(100):
        node.rn.tick()
        node.process()
    assert node.raft.state == StateType.FOLLOWER
