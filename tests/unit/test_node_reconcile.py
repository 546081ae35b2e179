"""The pure decisions of an etcd-mode data node (`zan.node.reconcile`).

Records are built the way PD writes them: `RaftNodes` in slot order (slot 0 the desired
leader), `RaftIDs` per node, `Removings` for replicas on their way out, `MaxRaftID` the
highest replica id ever handed out, and `RealLeader` once a group's leader published it.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from zan.node.reconcile import (
    AddVoter, LocalReplica, RemoveVoter, ReplicaChanges, TransferLeader, WantedReplica,
    leader_action, replica_changes, wanted_replicas,
)
from zan.pd.model import (
    GID_BLOCK, NamespaceMeta, PartitionReplicaInfo, RealLeader, RemovingInfo, gen_node_id,
)
from zan.pd.register import NamespaceRecord


# --- builders ---------------------------------------------------------------------------

def node(i: int) -> str:
    return gen_node_id(i, f"10.0.0.{i}", 12381, 12380)


A, B, C, D, E = (node(i) for i in range(1, 6))
META = NamespaceMeta(partition_num=4, replica=3, min_gid=GID_BLOCK)


def info(raft_nodes=(A, B, C), ids=None, removing=(), max_id=None,
         remove_ids=None) -> PartitionReplicaInfo:
    """A ReplicaInfo; replica ids default to 1..n in RaftNodes order.  `removing` names
    the nodes marked Removing (their RemoveReplicaID is their RaftID unless `remove_ids`
    says otherwise)."""
    raft_nodes = tuple(raft_nodes)
    ids = dict(ids) if ids is not None else {n: i + 1 for i, n in enumerate(raft_nodes)}
    remove_ids = remove_ids or {}
    removings = {n: RemovingInfo(1_000, remove_ids.get(n, ids.get(n, 0))) for n in removing}
    return PartitionReplicaInfo(raft_nodes, ids, removings,
                                max(ids.values(), default=0) if max_id is None else max_id)


def record(partitions, leaders=(), meta=META, name="ns") -> NamespaceRecord:
    """A namespace as `parse_namespaces` reads it; `leaders` lists the pids that have a
    RealLeader record."""
    return NamespaceRecord(name, meta, dict(partitions),
                           {pid: RealLeader(A) for pid in leaders})


def gid(pid: int, meta=META) -> int:
    return meta.group_id(pid)


def running(pid: int, replica_id: int, removed=False, meta=META) -> dict[int, LocalReplica]:
    return {gid(pid, meta): LocalReplica(gid(pid, meta), replica_id, removed)}


def want(pid: int, replica_id: int, peers=None, meta=META, name="ns") -> WantedReplica:
    return WantedReplica(name, pid, meta.group_id(pid), replica_id, meta, peers)


# --- wanted_replicas ----------------------------------------------------------------------

def test_listed_node_wants_its_replica_under_the_partitions_group_id():
    namespaces = {"ns": record({2: info()}, leaders=[2])}
    assert wanted_replicas(B, namespaces, {}) == {GID_BLOCK + 2: want(2, 2)}


def test_node_not_in_raft_nodes_wants_nothing():
    namespaces = {"ns": record({0: info((A, B, C))}, leaders=[0])}
    assert wanted_replicas(D, namespaces, {}) == {}


def test_node_listed_without_a_replica_id_wants_nothing():
    namespaces = {"ns": record({0: info((A, B, C), ids={A: 1, B: 2})}, leaders=[0])}
    assert wanted_replicas(C, namespaces, {}) == {}


def test_partition_outside_partition_num_is_ignored():
    # A leftover partition directory of a namespace re-created with fewer partitions.
    namespaces = {"ns": record({3: info(), 4: info(), -1: info()}, leaders=[3, 4, -1])}
    assert set(wanted_replicas(A, namespaces, {})) == {gid(3)}


def test_namespace_without_meta_is_ignored():
    # A tree being created or deleted: partitions without a NamespaceMeta.
    namespaces = {"ns": record({0: info()}, meta=None)}
    assert wanted_replicas(A, namespaces, {}) == {}


def test_each_namespace_uses_its_own_group_id_block():
    other = NamespaceMeta(partition_num=2, replica=3, min_gid=2 * GID_BLOCK)
    namespaces = {"ns": record({0: info()}, leaders=[0]),
                  "other": record({0: info()}, leaders=[0], meta=other, name="other")}
    assert wanted_replicas(A, namespaces, {}) == {
        GID_BLOCK: want(0, 1), 2 * GID_BLOCK: want(0, 1, meta=other, name="other")}


def test_removing_replica_is_kept_while_it_runs_under_the_same_id():
    # It still serves until the leader has removed it from the group.
    namespaces = {"ns": record({0: info(removing=[C])}, leaders=[0])}
    assert wanted_replicas(C, namespaces, running(0, 3)) == {gid(0): want(0, 3)}


def test_removing_replica_is_not_started_when_not_running():
    namespaces = {"ns": record({0: info(removing=[C])}, leaders=[0])}
    assert wanted_replicas(C, namespaces, {}) == {}


def test_removing_replica_is_dropped_once_it_applied_its_removal():
    namespaces = {"ns": record({0: info(removing=[C])}, leaders=[0])}
    assert wanted_replicas(C, namespaces, running(0, 3, removed=True)) == {}


def test_removing_replica_running_under_another_id_is_not_kept():
    namespaces = {"ns": record({0: info(removing=[C])}, leaders=[0])}
    assert wanted_replicas(C, namespaces, running(0, 7)) == {}


def test_first_isr_member_of_a_leaderless_partition_founds_the_group():
    # ZanRedisDB starts a new group on every replica with the full member list, the
    # first node of the ISR being the one expected to win the first election.
    namespaces = {"ns": record({0: info((B, A, C), ids={A: 1, B: 2, C: 3})})}
    assert wanted_replicas(B, namespaces, {})[gid(0)].peers == (2, 1, 3)


def test_founding_peers_are_the_isr_in_isr_order():
    namespaces = {"ns": record({0: info((A, B, C, D), ids={A: 4, B: 1, C: 3, D: 2})})}
    assert wanted_replicas(A, namespaces, {})[gid(0)].peers == (4, 1, 3, 2)


def test_founding_peers_leave_out_removing_members_and_members_without_an_id():
    namespaces = {"ns": record({0: info((A, B, C, D), ids={A: 1, B: 2, C: 3})},
                               leaders=[])}
    assert wanted_replicas(A, namespaces, {})[gid(0)].peers == (1, 2, 3)
    namespaces = {"ns": record({0: info((A, B, C), removing=[C])})}
    assert wanted_replicas(A, namespaces, {})[gid(0)].peers == (1, 2)


def test_when_slot_zero_is_removing_the_next_isr_member_founds():
    # `isr` is RaftNodes minus Removings: slot 0 leaving makes slot 1 the first of the ISR.
    namespaces = {"ns": record({0: info((A, B, C), removing=[A])})}
    assert wanted_replicas(B, namespaces, {})[gid(0)].peers == (2, 3)
    assert wanted_replicas(A, namespaces, running(0, 1))[gid(0)].peers is None


def test_every_isr_member_of_a_leaderless_partition_founds_with_the_same_peers():
    # An empty replica founds only when every founder is found empty: all of them must
    # be founders (a joiner would tell the others the group exists).
    namespaces = {"ns": record({0: info()})}
    assert wanted_replicas(B, namespaces, {})[gid(0)].peers == (1, 2, 3)
    assert wanted_replicas(C, namespaces, {})[gid(0)].peers == (1, 2, 3)


def test_partition_with_a_real_leader_is_joined_even_by_slot_zero():
    # Once a leader published itself the group exists: founding again would split it.
    namespaces = {"ns": record({0: info(), 1: info()}, leaders=[1])}
    wanted = wanted_replicas(A, namespaces, {})
    assert wanted[gid(0)].peers == (1, 2, 3)
    assert wanted[gid(1)].peers is None


# --- replica_changes ------------------------------------------------------------------------

def test_nothing_to_do_when_local_matches_wanted():
    changes = replica_changes({gid(0): want(0, 1)}, running(0, 1))
    assert changes == ReplicaChanges()
    assert not changes


def test_replica_no_longer_wanted_is_destroyed():
    changes = replica_changes({}, {**running(0, 1), **running(1, 2)})
    assert changes == ReplicaChanges(destroy=(gid(0), gid(1)))
    assert changes


def test_missing_replica_is_opened():
    wanted = {gid(1): want(1, 2), gid(0): want(0, 1, peers=(1, 2, 3))}
    changes = replica_changes(wanted, {})
    assert changes == ReplicaChanges(open=(want(0, 1, peers=(1, 2, 3)), want(1, 2)))
    assert changes


def test_replica_wanted_under_another_id_is_destroyed_and_reopened_with_the_new_id():
    # A node removed and added back is a new member with a new replica id (as in
    # ZanRedisDB, where a re-added node gets MaxRaftID + 1 and starts from empty data).
    changes = replica_changes({gid(0): want(0, 5)}, running(0, 2))
    assert changes == ReplicaChanges(open=(want(0, 5),), destroy=(gid(0),))


def test_removed_replica_no_longer_wanted_is_destroyed():
    changes = replica_changes({}, running(0, 3, removed=True))
    assert changes == ReplicaChanges(destroy=(gid(0),))


def test_removed_replica_still_listed_under_its_id_is_kept_not_reopened():
    # Our placement predates the Removing mark.  Destroying the replica now would make
    # the next round open it again, empty, under the id the group just removed.
    local = running(0, 3, removed=True)
    assert replica_changes({gid(0): want(0, 3)}, local) == ReplicaChanges()


def test_removed_replica_is_destroyed_once_the_removing_mark_arrives():
    local = running(0, 3, removed=True)
    namespaces = {"ns": record({0: info()}, leaders=[0])}
    assert not replica_changes(wanted_replicas(C, namespaces, local), local)
    namespaces = {"ns": record({0: info(removing=[C])}, leaders=[0])}
    changes = replica_changes(wanted_replicas(C, namespaces, local), local)
    assert changes == ReplicaChanges(destroy=(gid(0),))
    after = {}
    assert not replica_changes(wanted_replicas(C, namespaces, after), after)


def test_removed_replica_wanted_under_a_new_id_is_replaced():
    changes = replica_changes({gid(0): want(0, 6)}, running(0, 3, removed=True))
    assert changes == ReplicaChanges(open=(want(0, 6),), destroy=(gid(0),))


def test_changes_touch_only_the_groups_that_differ():
    wanted = {gid(0): want(0, 1), gid(1): want(1, 4), gid(3): want(3, 1)}
    local = {**running(0, 1), **running(1, 2), **running(2, 3)}
    assert replica_changes(wanted, local) == ReplicaChanges(
        open=(want(1, 4), want(3, 1)), destroy=(gid(1), gid(2)))


# --- leader_action --------------------------------------------------------------------------

def act(me, rec, voters, matches=None, commit=100, *, pending=False, since=60.0,
        wait=30.0, lag=10):
    """leader_action with everyone caught up and leadership long stable by default."""
    if matches is None:
        matches = {v: commit for v in voters}
    return leader_action(me, rec, voters, matches, commit, conf_change_pending=pending,
                         since_leader_change=since, change_wait=wait, lag=lag)


def test_nothing_to_do_when_the_group_matches_the_record():
    assert act(1, info(), [1, 2, 3]) is None


def test_isr_member_missing_from_the_voters_is_added():
    assert act(1, info(), [1, 2]) == AddVoter(3, C)


def test_missing_isr_members_are_added_in_isr_order():
    rec = info((A, D, B, C), ids={A: 1, B: 2, C: 3, D: 4})
    assert act(1, rec, [1]) == AddVoter(4, D)


def test_removing_member_is_not_added():
    assert act(1, info(removing=[C]), [1, 2]) is None


def test_no_member_is_added_while_a_conf_change_is_pending():
    # Raft applies membership changes one at a time.
    assert act(1, info(), [1, 2], pending=True) is None


def test_voter_marked_removing_is_removed():
    assert act(1, info(removing=[C]), [1, 2, 3]) == RemoveVoter(3)


def test_removal_uses_the_remove_replica_id_of_the_mark():
    rec = info(removing=[C], remove_ids={C: 7}, max_id=7)
    assert act(1, rec, [1, 2, 7]) == RemoveVoter(7)


def test_removal_falls_back_to_the_raft_id_when_the_mark_has_no_replica_id():
    rec = info(removing=[C], remove_ids={C: 0})
    assert act(1, rec, [1, 2, 3]) == RemoveVoter(3)


def test_voter_dropped_from_the_record_is_removed():
    # PD forgot the node entirely (RaftNodes, RaftIDs and Removings); its id is old.
    rec = info((A, B, C), max_id=4)
    assert act(1, rec, [1, 2, 3, 4]) == RemoveVoter(4)


def test_voter_newer_than_the_record_is_never_removed():
    # The record we hold is older than the group: a newer leader added replica 5.
    rec = info((A, B, C), max_id=4)
    assert act(1, rec, [1, 2, 3, 5]) is None


def test_new_member_is_added_before_the_leaving_one_is_removed():
    # A replacement: ZanRedisDB adds the new replica before removing the old one, so
    # the group never drops below its replica count.
    rec = info((A, B, C, D), removing=[C])
    assert act(1, rec, [1, 2, 3]) == AddVoter(4, D)
    assert act(1, rec, [1, 2, 3, 4]) == RemoveVoter(3)


def test_no_member_is_removed_while_a_conf_change_is_pending():
    assert act(1, info(removing=[C]), [1, 2, 3], pending=True) is None
    assert act(1, info(max_id=4), [1, 2, 3, 4], pending=True) is None


def test_leaving_leader_hands_leadership_to_the_first_caught_up_isr_voter():
    rec = info((A, B, C), removing=[A])
    assert act(1, rec, [1, 2, 3], {1: 100, 2: 95, 3: 100}) == TransferLeader(2)
    assert act(1, rec, [1, 2, 3], {1: 100, 2: 50, 3: 100}) == TransferLeader(3)


def test_leaving_leader_waits_when_no_voter_has_caught_up():
    rec = info((A, B, C), removing=[A])
    assert act(1, rec, [1, 2, 3], {1: 100, 2: 50, 3: 89}) is None


def test_leaving_leader_does_not_hand_over_to_another_leaving_voter():
    rec = info((A, B, C), removing=[A, B])
    assert act(1, rec, [1, 2, 3], {1: 100, 2: 100, 3: 100}) == TransferLeader(3)
    assert act(1, rec, [1, 2, 3], {1: 100, 2: 100, 3: 40}) is None


def test_leaving_leader_does_nothing_while_a_conf_change_is_pending():
    rec = info((A, B, C), removing=[A])
    assert act(1, rec, [1, 2, 3], pending=True) is None


def test_leadership_moves_to_raft_nodes_slot_zero_once_it_caught_up():
    # ZanRedisDB keeps RaftNodes[0] the leader (PD balances leaders by ordering the list).
    assert act(2, info(), [1, 2, 3], {1: 95, 2: 100, 3: 100}) == TransferLeader(1)


def test_caught_up_means_match_plus_lag_reaches_commit():
    assert act(2, info(), [1, 2, 3], {1: 90, 2: 100, 3: 100}) == TransferLeader(1)
    assert act(2, info(), [1, 2, 3], {1: 89, 2: 100, 3: 100}) is None
    assert act(2, info(), [1, 2, 3], {2: 100, 3: 100}) is None     # no progress known


def test_leadership_stays_until_it_has_been_stable_for_the_change_wait():
    assert act(2, info(), [1, 2, 3], since=29.9, wait=30.0) is None
    assert act(2, info(), [1, 2, 3], since=30.0, wait=30.0) == TransferLeader(1)


def test_leadership_moves_to_the_first_isr_member_when_slot_zero_is_removing():
    # The desired leader is the first of the ISR; slot 0 is first removed (by us).
    rec = info((A, B, C), removing=[A])
    assert act(3, rec, [1, 2, 3]) == RemoveVoter(1)
    assert act(3, rec, [2, 3]) == TransferLeader(2)


def test_no_transfer_to_slot_zero_before_it_is_a_voter():
    assert act(2, info(), [2, 3], pending=True) is None


def test_pending_conf_change_does_not_hold_back_the_transfer_to_slot_zero():
    # Membership steps wait, but handing leadership to RaftNodes[0] does not.  That is
    # safe: the raft leader sends MsgTimeoutNow only once the target's log matches its
    # last index, and a new leader treats its whole log as possibly holding a pending
    # conf change (pending_conf_index = last index), so the change is neither lost nor
    # doubled.
    rec = info((A, B, C, D), removing=[D])
    assert act(2, rec, [1, 2, 3, 4], pending=True) == TransferLeader(1)


# --- properties on generated placements -------------------------------------------------------

NODES = (A, B, C, D, E)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@st.composite
def partition_records(draw):
    """A ReplicaInfo over up to five nodes: ids distinct, some nodes possibly without one,
    some marked Removing (with their own id or an older one), MaxRaftID at least the ids."""
    members = draw(st.lists(st.sampled_from(NODES), unique=True, max_size=5))
    ids = draw(st.lists(st.integers(1, 8), unique=True, min_size=len(members),
                        max_size=len(members)))
    raft_ids = {n: rid for n, rid in zip(members, ids) if draw(st.integers(0, 9))}
    removing = [n for n in members if draw(st.integers(0, 3)) == 0]
    remove_ids = {n: draw(st.sampled_from([raft_ids.get(n, 0), 0, 1, 2])) for n in removing}
    max_id = max(raft_ids.values(), default=0) + draw(st.integers(0, 2))
    return info(members, ids=raft_ids, removing=removing, max_id=max_id,
                remove_ids=remove_ids)


@st.composite
def placements(draw):
    """(me, namespaces, local): one or two namespaces, partition records for pids in and
    just outside range, and local replicas for any of those groups (or stale ones), some
    of which applied their own removal."""
    me = draw(st.sampled_from(NODES))
    namespaces = {}
    gids = [9 * GID_BLOCK]                       # a group no namespace knows any more
    my_ids = {}                                  # gid -> my replica id in the record
    for n in range(draw(st.integers(1, 2))):
        name = f"ns{n}"
        meta = NamespaceMeta(partition_num=draw(st.integers(1, 3)), replica=3,
                             min_gid=(n + 1) * GID_BLOCK)
        pids = draw(st.lists(st.integers(0, meta.partition_num), unique=True))
        parts = {pid: draw(partition_records()) for pid in pids}
        leaders = [pid for pid in pids if draw(st.booleans())]
        namespaces[name] = record(parts, leaders, meta=meta, name=name)
        gids += [meta.group_id(pid) for pid in range(meta.partition_num + 1)]
        my_ids.update({meta.group_id(pid): p.raft_ids[me] for pid, p in parts.items()
                       if me in p.raft_ids})
    local = {}
    for g in draw(st.lists(st.sampled_from(gids), unique=True)):
        # Mostly the id the record gives this node, else any (an older incarnation).
        rid = my_ids.get(g) if g in my_ids and draw(st.integers(0, 3)) else None
        local[g] = LocalReplica(g, rid or draw(st.integers(1, 8)), draw(st.booleans()))
    return me, namespaces, local


def applied(local, changes):
    """The local replicas after carrying `changes` out, as the coordinator does."""
    after = {g: rep for g, rep in local.items() if g not in changes.destroy}
    for w in changes.open:
        after[w.group_id] = LocalReplica(w.group_id, w.replica_id)
    return after


@PROPERTY_SETTINGS
@given(placements())
def test_one_round_of_changes_converges(placement):
    me, namespaces, local = placement
    changes = replica_changes(wanted_replicas(me, namespaces, local), local)
    after = applied(local, changes)
    assert replica_changes(wanted_replicas(me, namespaces, after), after) == ReplicaChanges()


@PROPERTY_SETTINGS
@given(placements())
def test_opened_replicas_are_wanted_and_never_opened_over_a_running_one(placement):
    me, namespaces, local = placement
    wanted = wanted_replicas(me, namespaces, local)
    changes = replica_changes(wanted, local)
    opened = [w.group_id for w in changes.open]
    assert len(opened) == len(set(opened))
    assert len(changes.destroy) == len(set(changes.destroy))
    for w in changes.open:
        assert wanted[w.group_id] == w
        # The replica running in that group (if any) is destroyed first.
        assert w.group_id not in local or w.group_id in changes.destroy
    assert set(changes.destroy) <= set(local)


@PROPERTY_SETTINGS
@given(placements())
def test_after_one_round_every_wanted_replica_runs_and_nothing_else(placement):
    me, namespaces, local = placement
    wanted = wanted_replicas(me, namespaces, local)
    after = applied(local, replica_changes(wanted, local))
    assert set(after) <= set(wanted)
    for g, rep in after.items():
        assert rep.replica_id == wanted[g].replica_id
