"""One test per rule of the Raft paper, §5 (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm"), in the manner of etcd's raft_paper_test.go.
Each test is split into set-up, action and check."""

from __future__ import annotations

import pytest

from zan.raft.core import StateType
from zan.raft.progress import ProgressState
from zan.raft.types import Entry, HardState, Message, MessageType as MT

from tests.raft.sim import Network, SimNode, new_raft, persist, read_messages, storage_with


def _elect(r) -> None:
    """Make `r` leader of its 3-node group and drain its messages."""
    r.become_candidate()
    r.become_leader()
    persist(r)
    read_messages(r)


def _commit_noop(r) -> None:
    """Have followers 2 and 3 ack the leader's no-op entry."""
    li = r.raft_log.last_index()
    for p in sorted(r.voters):
        if p != r.id:
            r.step(Message(MT.APP_RESP, r.id, p, r.term, index=li))
    persist(r)
    read_messages(r)


# --- §5.1: terms ---------------------------------------------------------------------

@pytest.mark.parametrize("role", ["follower", "pre_candidate", "candidate", "leader"])
def test_update_term_from_message(role):
    """§5.1: if a server's current term is smaller than another's, it updates its term;
    a candidate or leader with an out-of-date term reverts to follower."""
    r = new_raft(1, [1, 2, 3])
    if role == "follower":
        r.become_follower(1, 2)
    elif role == "pre_candidate":
        r.become_pre_candidate()
    elif role == "candidate":
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()
    r.step(Message(MT.APP, 1, 2, 2))
    assert r.term == 2
    assert r.state == StateType.FOLLOWER
    assert r.lead == 2


def test_reject_stale_term_message():
    """§5.1: a server ignores a request with a stale term number."""
    r = new_raft(1, [1, 2, 3])
    r.become_follower(2, 2)
    r.step(Message(MT.APP, 1, 3, 1, entries=(Entry(1, 1),)))
    assert r.raft_log.last_index() == 0
    assert r.lead == 2
    assert read_messages(r) == []


# --- §5.2: leader election -----------------------------------------------------------

def test_start_as_follower():
    """§5.2: when servers start up, they begin as followers."""
    assert new_raft(1, [1, 2, 3]).state == StateType.FOLLOWER


def test_leader_bcast_beat():
    """§5.2: leaders send periodic heartbeats to all followers to maintain authority."""
    hb = 1
    r = new_raft(1, [1, 2, 3], election=10, heartbeat=hb)
    _elect(r)
    for _ in range(hb):
        r.tick()
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.frm, m.term) for m in msgs] == [
        (MT.HEARTBEAT, 2, 1, 1), (MT.HEARTBEAT, 3, 1, 1)]


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_start_election_after_timeout(role):
    """§5.2: a follower that hears nothing for an election timeout (and a candidate whose
    election timed out) increments its term, votes for itself and requests votes from
    every other server."""
    et = 10
    r = new_raft(1, [1, 2, 3], election=et)
    if role == "candidate":
        r.become_candidate()
        read_messages(r)
    term0 = r.term
    for _ in range(2 * et):
        r.tick()
    assert r.term == term0 + 1
    assert r.state == StateType.CANDIDATE
    assert r.votes[1] is True and r.vote == 1
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.term) for m in msgs] == [(MT.VOTE, 2, term0 + 1), (MT.VOTE, 3, term0 + 1)]


@pytest.mark.parametrize("size,votes,state", [
    (1, {}, StateType.LEADER),
    (3, {2: True, 3: True}, StateType.LEADER),
    (3, {2: True}, StateType.LEADER),
    (5, {2: True, 3: True, 4: True, 5: True}, StateType.LEADER),
    (5, {2: True, 3: True, 4: True}, StateType.LEADER),
    (5, {2: True, 3: True}, StateType.LEADER),
    (3, {}, StateType.CANDIDATE),
    (5, {2: True}, StateType.CANDIDATE),
    (5, {2: False, 3: False}, StateType.CANDIDATE),
    (3, {2: False, 3: False}, StateType.FOLLOWER),
    (5, {2: False, 3: False, 4: False}, StateType.FOLLOWER),
])
def test_leader_election_in_one_round(size, votes, state):
    """§5.2: a candidate wins with votes from a majority; it returns to follower when a
    majority rejected it; otherwise it stays a candidate."""
    r = new_raft(1, range(1, size + 1))
    r.step(Message(MT.HUP, frm=1))
    for frm, granted in votes.items():
        r.step(Message(MT.VOTE_RESP, 1, frm, r.term, reject=not granted))
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize("vote,nvote,reject", [
    (0, 2, False), (0, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True)])
def test_follower_vote(vote, nvote, reject):
    """§5.2: each server votes for at most one candidate in a term, first-come-first-served."""
    r = new_raft(1, [1, 2, 3])
    r._load_state(HardState(1, vote, 0))
    r.step(Message(MT.VOTE, 1, nvote, 1))
    msgs = read_messages(r)
    assert [(m.type, m.to, m.term, m.reject) for m in msgs] == [(MT.VOTE_RESP, nvote, 1, reject)]


@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term):
    """§5.2: a candidate that receives an AppendEntries from a leader whose term is at
    least its own recognises the leader and returns to follower."""
    r = new_raft(1, [1, 2, 3])
    r.step(Message(MT.HUP, frm=1))
    assert r.state == StateType.CANDIDATE
    r.step(Message(MT.APP, 1, 2, term))
    assert r.state == StateType.FOLLOWER
    assert r.term == term
    assert r.lead == 2


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_election_timeout_randomized(role):
    """§5.2: election timeouts are chosen randomly from a fixed interval, [et, 2et)."""
    et = 10
    r = new_raft(1, [1, 2, 3], election=et)
    seen = set()
    for i in range(50 * et):
        if role == "follower":
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        ticks = 0
        while not read_messages(r):
            r.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= et and max(seen) < 2 * et
    assert len(seen) == et  # every value in the interval occurs


def test_election_timeouts_nonconflicting():
    """§5.2: randomised timeouts make split votes rare: usually one server times out first."""
    et = 10
    rs = [new_raft(i, [1, 2, 3, 4, 5], election=et, seed=100 + i) for i in range(1, 6)]
    conflicts = 0
    rounds = 500
    for _ in range(rounds):
        for r in rs:
            r.become_follower(r.term + 1, 0)
        timeouts = set()
        while not timeouts:
            for r in rs:
                r.tick()
                if read_messages(r):
                    timeouts.add(r.id)
        if len(timeouts) > 1:
            conflicts += 1
    assert conflicts / rounds <= 0.3


# --- §5.3: log replication -----------------------------------------------------------

def test_leader_start_replication():
    """§5.3: the leader appends a command to its log, then issues AppendEntries in
    parallel; each carries the index and term of the entry preceding the new ones."""
    r = new_raft(1, [1, 2, 3])
    _elect(r)
    _commit_noop(r)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"some data"),)))
    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    want_ents = (Entry(1, li + 1, data=b"some data"),)
    assert [(m.type, m.to, m.index, m.log_term, m.entries, m.commit) for m in msgs] == [
        (MT.APP, 2, li, 1, want_ents, li), (MT.APP, 3, li, 1, want_ents, li)]
    assert r.raft_log.unstable_entries() == list(want_ents)


def test_leader_commit_entry():
    """§5.3: once the entry is replicated on a majority the leader commits it, applies
    it, and includes the commit index in later AppendEntries."""
    r = new_raft(1, [1, 2, 3])
    _elect(r)
    _commit_noop(r)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"some data"),)))
    for m in read_messages(r):
        r.step(Message(MT.APP_RESP, 1, m.to, m.term, index=m.index + len(m.entries)))
    assert r.raft_log.committed == li + 1
    assert persist(r) == [Entry(1, li + 1, data=b"some data")]
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.commit) for m in msgs] == [(MT.APP, 2, li + 1), (MT.APP, 3, li + 1)]


@pytest.mark.parametrize("size,acceptors,commit", [
    (1, set(), True), (3, set(), False), (3, {2}, True), (3, {2, 3}, True),
    (5, set(), False), (5, {2}, False), (5, {2, 3}, True), (5, {2, 3, 4}, True),
    (5, {2, 3, 4, 5}, True)])
def test_leader_acknowledge_commit(size, acceptors, commit):
    """§5.3: an entry is committed once the leader that created it has replicated it on
    a majority of the servers."""
    r = new_raft(1, range(1, size + 1))
    _elect(r)
    li = r.raft_log.last_index()
    r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"some data"),)))
    persist(r)
    for m in read_messages(r):
        if m.to in acceptors:
            r.step(Message(MT.APP_RESP, 1, m.to, m.term, index=m.index + len(m.entries)))
    assert (r.raft_log.committed > li) == commit


def test_leader_commit_preceding_entries():
    """§5.3: committing an entry commits all preceding entries, including those created
    by previous leaders."""
    for prev in ([], [2], [1, 2], [1]):
        s = storage_with(prev, term=2)
        r = new_raft(1, [1, 2, 3], storage=s)
        r.become_candidate()
        r.become_leader()
        r.step(Message(MT.PROP, frm=1, entries=(Entry(0, 0, data=b"some data"),)))
        for m in read_messages(r):
            r.step(Message(MT.APP_RESP, 1, m.to, m.term, index=m.index + len(m.entries)))
        li = len(prev)
        want = [Entry(t, i + 1) for i, t in enumerate(prev)] + [
            Entry(3, li + 1), Entry(3, li + 2, data=b"some data")]
        assert persist(r) == want


def test_follower_commit_entry():
    """§5.3: once a follower learns that an entry is committed, it applies it in order."""
    for ents, commit in [([Entry(1, 1, data=b"a")], 1),
                         ([Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b")], 2),
                         ([Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b")], 1)]:
        r = new_raft(1, [1, 2, 3])
        r.become_follower(1, 2)
        r.step(Message(MT.APP, 1, 2, 1, 0, 0, tuple(ents), commit))
        assert r.raft_log.committed == commit
        assert persist(r) == ents[:commit]


@pytest.mark.parametrize("term,index,windex,reject,hint", [
    (0, 0, 1, False, 0),      # match with the committed entries
    (1, 1, 1, False, 0),
    (2, 2, 2, False, 0),      # match with uncommitted entries
    (1, 2, 2, True, 1),       # unmatch with existing entry
    (3, 3, 3, True, 2),       # unexisting entry
])
def test_follower_check_msg_app(term, index, windex, reject, hint):
    """§5.3: a follower refuses an AppendEntries whose preceding (index, term) it does not
    have in its log."""
    s = storage_with([1, 2], term=0, commit=1)
    r = new_raft(1, [1, 2, 3], storage=s)
    r.become_follower(2, 2)
    r.step(Message(MT.APP, 1, 2, 2, term, index, commit=1))
    msgs = read_messages(r)
    assert len(msgs) == 1
    m = msgs[0]
    assert (m.type, m.to, m.reject) == (MT.APP_RESP, 2, reject)
    assert m.index == windex
    if reject:
        assert m.reject_hint == hint


@pytest.mark.parametrize("index,term,ents,want", [
    (2, 2, [(3, 3)], [1, 2, 3]),
    (1, 1, [(3, 2), (4, 3)], [1, 3, 4]),
    (0, 0, [(1, 1)], [1, 2]),
    (0, 0, [(3, 1)], [3]),
])
def test_follower_append_entries(index, term, ents, want):
    """§5.3: if an existing entry conflicts with a new one (same index, different terms),
    the follower deletes it and all that follow, then appends the new entries."""
    s = storage_with([1, 2])
    r = new_raft(1, [1, 2, 3], storage=s)
    r.become_follower(2, 2)
    r.step(Message(MT.APP, 1, 2, 2, term, index,
                   tuple(Entry(t, i) for t, i in ents)))
    assert [e.term for e in r.raft_log.all_entries()] == want


FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = [
    [1, 1, 1, 4, 4, 5, 5, 6, 6],                 # (a)
    [1, 1, 1, 4],                                # (b)
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],           # (c)
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],        # (d)
    [1, 1, 1, 4, 4, 4, 4],                       # (e)
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],           # (f)
]


@pytest.mark.parametrize("follower", FIG7_FOLLOWERS, ids="abcdef")
def test_leader_sync_follower_log(follower):
    """§5.3 (figure 7): the leader brings a follower's log into consistency with its own,
    deleting the follower's conflicting entries and sending the missing ones."""
    term = 8
    net = Network([1, 2, 3])
    net.nodes[1] = SimNode(1, storage=storage_with(FIG7_LEADER, term=term, commit=len(FIG7_LEADER)))
    net.nodes[2] = SimNode(2, storage=storage_with(follower, term=term - 1))
    net.down.add(3)   # 3 only votes, by hand
    net.campaign(1)
    net.send(Message(MT.VOTE_RESP, 1, 3, term + 1))
    lead, foll = net.raft(1), net.raft(2)
    assert lead.state == StateType.LEADER
    net.propose(1, b"x")
    assert [(e.index, e.term) for e in lead.raft_log.all_entries()] == \
        [(e.index, e.term) for e in foll.raft_log.all_entries()]
    assert foll.raft_log.committed == lead.raft_log.committed == lead.raft_log.last_index()


# --- §5.4: safety --------------------------------------------------------------------

def test_vote_request():
    """§5.4.1: a RequestVote carries the candidate's last log index and term."""
    for ents, wterm in [([Entry(1, 1)], 2), ([Entry(1, 1), Entry(2, 2)], 3)]:
        r = new_raft(1, [1, 2, 3])
        r.step(Message(MT.APP, 1, 2, wterm - 1, 0, 0, tuple(ents)))
        read_messages(r)
        for _ in range(2 * r.election_timeout):
            r.tick()
        msgs = sorted(read_messages(r), key=lambda m: m.to)
        assert [(m.type, m.to, m.term, m.index, m.log_term) for m in msgs] == [
            (MT.VOTE, 2, wterm, ents[-1].index, ents[-1].term),
            (MT.VOTE, 3, wterm, ents[-1].index, ents[-1].term)]


@pytest.mark.parametrize("ents,log_term,index,reject", [
    ([1], 1, 1, False), ([1], 1, 2, False), ([1], 1, 0, True),      # same last term
    ([1, 1], 1, 1, True), ([1, 1], 1, 2, False),
    ([1], 2, 1, False), ([1], 2, 0, False), ([1, 1], 2, 1, False),  # later last term
    ([2], 1, 1, True), ([2], 1, 2, True), ([2, 2], 1, 1, True),     # earlier last term
])
def test_voter(ents, log_term, index, reject):
    """§5.4.1: a voter denies its vote if its own log is more up-to-date than the
    candidate's (later last term, or same last term and longer)."""
    r = new_raft(1, [1, 2], storage=storage_with(ents, peers=(1, 2)))
    r.step(Message(MT.VOTE, 1, 2, 3, log_term, index))
    msgs = read_messages(r)
    assert [(m.type, m.reject) for m in msgs] == [(MT.VOTE_RESP, reject)]


@pytest.mark.parametrize("index,wcommit", [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term(index, wcommit):
    """§5.4.2: a leader never commits entries from previous terms by counting replicas;
    only entries of its current term are; earlier ones are then committed indirectly."""
    r = new_raft(1, [1, 2], storage=storage_with([1, 2], peers=(1, 2)))
    r._load_state(HardState(2, 0, 0))
    r.become_candidate()    # term 3
    r.become_leader()       # appends the no-op at index 3, term 3
    read_messages(r)
    r.step(Message(MT.APP_RESP, 1, 2, r.term, index=index))
    assert r.raft_log.committed == wcommit


def test_leader_progress_starts_probe():
    """§5.3: a new leader initialises nextIndex to just after its last entry for every
    follower and probes backwards."""
    r = new_raft(1, [1, 2, 3])
    _elect(r)
    for p in (2, 3):
        assert r.prs[p].state == ProgressState.PROBE
        assert r.prs[p].next == r.raft_log.last_index()
