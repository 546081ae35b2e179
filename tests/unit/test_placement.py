"""Table-driven tests of the placement functions on small hand-built clusters."""

from dataclasses import replace

import pytest

from zan.pd.model import NamespaceMeta, PartitionReplicaInfo, RemovalState, RemovingInfo
from zan.pd.placement import (
    AddReplica, ClearRemoval, ClusterSnapshot, CreatePartition, ForgetReplica, MarkRemovalState,
    MoveLeader, NamespaceView, NotEnoughNodes, PartitionView, Plan, RemoveReplica,
    allocate_namespace, apply_plan, apply_step, balance, candidate_nodes, drain,
    expected_layout, in_balance_window, next_stable_node_num, repair, trim,
)

from tests.unit.placement_fixtures import (
    cluster, layout, leader_counts, node, replica_counts, settle, with_namespace,
)

NOW = 1_000_000.0


def snap_of(nodes, **kw) -> ClusterSnapshot:
    return ClusterSnapshot(nodes=nodes, now=kw.pop("now", NOW), **kw)


def one_partition(nodes, raft_nodes, replica=3, removings=None, synced=True, **kw):
    """A snapshot with namespace "ns" holding a single partition 0."""
    info = PartitionReplicaInfo.initial(raft_nodes)
    if removings:
        info = replace(info, removings=removings)
    info = replace(info, epoch=10)
    view = NamespaceView(NamespaceMeta(partition_num=1, replica=replica),
                         {0: PartitionView(info, synced=synced)})
    return snap_of(nodes, namespaces={"ns": view}, **kw)


def ids(nodes):
    return sorted(nodes)


# --- candidates ---------------------------------------------------------------------

def test_candidates_interleave_dcs_and_filter():
    a1, a2, b1 = node(1, "a"), node(2, "a"), node(3, "b")
    learner = replace(node(4, "b"), learner_role="role_log_syncer")
    leaving = node(5, "b")
    ssd = node(6, "c", ssd=True)
    nodes = {n.id: n for n in (a1, a2, b1, learner, leaving, ssd)}
    snap = snap_of(nodes, removals={leaving.id: RemovalState.MARKED})
    assert candidate_nodes(snap) == [a1.id, b1.id, ssd.id, a2.id]
    assert candidate_nodes(snap, {"ssd": True}) == [ssd.id]
    assert candidate_nodes(snap, {"dc_info": "a"}) == [a1.id, a2.id]
    # A namespace tag created through the API is `true`: only presence is checked.
    assert candidate_nodes(snap, {"dc_info": True}) == [a1.id, b1.id, ssd.id, a2.id]


# --- allocation -----------------------------------------------------------------------

@pytest.mark.parametrize("n,dcs,partitions,replica", [
    (3, 1, 8, 3), (4, 2, 16, 2), (6, 3, 32, 3), (5, 1, 7, 1), (9, 3, 64, 2),
])
def test_allocate_v2_is_balanced_and_spread(n, dcs, partitions, replica):
    snap = with_namespace(snap_of(cluster(n, dcs)), "ns", partitions, replica)
    lay = layout(snap, "ns")
    assert sorted(lay) == list(range(partitions))
    for nodes in lay.values():
        assert len(nodes) == replica == len(set(nodes))
        assert len({snap.nodes[x].dc for x in nodes}) == min(replica, dcs)
    for counts in (replica_counts(snap, "ns"), leader_counts(snap, "ns")):
        assert max(counts.values()) - min(counts.values()) <= 1
    info = snap.namespaces["ns"].partitions[0].info
    assert info.raft_ids == {x: i + 1 for i, x in enumerate(info.raft_nodes)}
    assert info.max_raft_id == replica


def test_allocate_keeps_existing_partitions_and_creates_missing_ones():
    snap = with_namespace(snap_of(cluster(4)), "ns", 4, 2)
    view = snap.namespaces["ns"]
    partial = replace(snap, namespaces={"ns": replace(
        view, partitions={p: v for p, v in view.partitions.items() if p != 2})})
    plan = allocate_namespace(partial, "ns", 4, 2)
    assert [type(s) for s in plan.steps] == [CreatePartition] and plan.steps[0].pid == 2


def test_allocate_needs_enough_nodes():
    with pytest.raises(NotEnoughNodes):
        allocate_namespace(snap_of(cluster(2)), "ns", 4, 3)
    with pytest.raises(NotEnoughNodes):
        allocate_namespace(snap_of(cluster(5)), "ns", 4, 1, tags={"ssd": True})


def test_allocate_v1_rotates_the_sorted_node_list():
    snap = snap_of(cluster(4))
    plan = allocate_namespace(snap, "ns", 4, 3, version="v1")
    names = candidate_nodes(snap)
    firsts = [names.index(s.nodes[0]) for s in plan.steps]
    assert [(f - firsts[0]) % 4 for f in firsts] == [0, 1, 2, 3]
    for s in plan.steps:
        i = names.index(s.nodes[0])
        assert list(s.nodes) == [names[(i + j) % 4] for j in range(3)]
    with pytest.raises(ValueError):
        allocate_namespace(snap, "ns", 4, 3, version="v3")


def test_leaders_of_two_namespaces_do_not_pile_up():
    snap = with_namespace(snap_of(cluster(3)), "a", 1, 1)
    snap = with_namespace(snap, "b", 1, 1)
    snap = with_namespace(snap, "c", 1, 1)
    leaders = {layout(snap, ns)[0][0] for ns in "abc"}
    assert len(leaders) == 3


# --- steps --------------------------------------------------------------------------

def test_apply_step_semantics():
    info = apply_step(None, CreatePartition("ns", 0, ("a", "b")), NOW)
    assert info.raft_nodes == ("a", "b") and info.max_raft_id == 2
    info = apply_step(info, AddReplica("ns", 0, "c", 3, 0), NOW)
    info = apply_step(info, MoveLeader("ns", 0, "c", 0), NOW)
    assert info.raft_nodes == ("c", "b", "a")
    info = apply_step(info, RemoveReplica("ns", 0, "b", 0), NOW)
    assert info.removings == {"b": RemovingInfo(int(NOW * 1e9), 2)} and info.isr == ("c", "a")
    info = apply_step(info, ForgetReplica("ns", 0, "b", 0), NOW)
    assert info.raft_nodes == ("c", "a") and info.raft_ids == {"a": 1, "c": 3}
    with pytest.raises(ValueError):
        apply_step(None, AddReplica("ns", 0, "c", 3, 0), NOW)


def test_apply_plan_skips_steps_with_a_stale_epoch():
    nodes = cluster(4)
    a, b, c, d = ids(nodes)
    snap = one_partition(nodes, [a, b, c])
    plan = Plan((MoveLeader("ns", 0, b, 9), MoveLeader("ns", 0, c, 10)))
    after = apply_plan(snap, plan)
    assert after.namespaces["ns"].partitions[0].info.raft_nodes[0] == c


# --- repair -----------------------------------------------------------------------------

def test_repair_waits_out_the_grace_period_then_marks_the_dead_replica():
    nodes = cluster(4)
    a, b, c, d = ids(nodes)
    alive = {k: v for k, v in nodes.items() if k != c}
    early = one_partition(alive, [a, b, c], lost_since={c: NOW - 60})
    assert not repair(early, grace=16 * 60).steps
    assert "grace" in repair(early, grace=16 * 60).notes[0]
    # No lost time known (a fresh PD leader): the clock starts now.
    assert not repair(one_partition(alive, [a, b, c]), grace=16 * 60).steps
    late = one_partition(alive, [a, b, c], lost_since={c: NOW - 16 * 60})
    assert repair(late, grace=16 * 60).steps == (RemoveReplica("ns", 0, c, 10),)


def test_repair_forgets_removed_replicas_after_the_wait_then_adds_one():
    nodes = cluster(4)
    a, b, c, d = ids(nodes)
    alive = {k: v for k, v in nodes.items() if k != c}
    removing = {c: RemovingInfo(int((NOW - 100) * 1e9), 3)}
    snap = one_partition(alive, [a, b, c], removings=removing)
    assert not repair(snap, removing_wait=300).steps
    lingering = replace(snap, now=NOW + 300, namespaces={"ns": replace(
        snap.namespaces["ns"], partitions={0: replace(
            snap.namespaces["ns"].partitions[0], lingering=frozenset({c}))})})
    assert not repair(lingering, removing_wait=300).steps
    ripe = replace(snap, now=NOW + 300)
    assert repair(ripe, removing_wait=300).steps == (ForgetReplica("ns", 0, c, 10),)
    after = apply_plan(ripe, repair(ripe, removing_wait=300))
    assert repair(after).steps == (AddReplica("ns", 0, d, 4, 11),)


@pytest.mark.parametrize("replica,members,dead,expect", [
    (3, 3, 1, RemoveReplica),  # 2 left > 3/2
    (3, 3, 2, None),           # no live quorum: an operator's job
    (2, 2, 1, None),           # 1 left is not > 2/2
    (1, 1, 1, None),
    (5, 5, 2, RemoveReplica),
])
def test_repair_quorum_guards(replica, members, dead, expect):
    nodes = cluster(members + 2)
    names = ids(nodes)
    part = names[:members]
    gone = set(part[-dead:])
    alive = {k: v for k, v in nodes.items() if k not in gone}
    snap = one_partition(alive, part, replica=replica, lost_since={g: 0.0 for g in gone})
    steps = repair(snap, grace=60).steps
    assert [type(s) for s in steps] == ([expect] if expect else [])


def test_repair_stops_when_too_many_nodes_vanish_at_once():
    nodes = cluster(6)
    names = ids(nodes)
    alive = {k: nodes[k] for k in names[:3]}
    snap = one_partition(alive, [names[0], names[1], names[4]], stable_node_num=6,
                         lost_since={n: 0.0 for n in names[3:]})
    plan = repair(snap, grace=60)
    assert not plan.steps and "stable" in plan.notes[0]
    assert repair(replace(snap, stable_node_num=5), grace=60).steps
    assert next_stable_node_num(6, 3) == 6 and next_stable_node_num(6, 8) == 8


def test_repair_waits_for_sync_and_tops_up_short_partitions():
    nodes = cluster(3)
    a, b, c = ids(nodes)
    short = one_partition(nodes, [a, b])
    assert repair(short).steps == (AddReplica("ns", 0, c, 3, 10),)
    assert not repair(one_partition(nodes, [a, b], synced=False)).steps


# --- trim -----------------------------------------------------------------------------------

def test_trim_prefers_dead_then_removed_then_unwanted_never_the_leader():
    nodes = cluster(5)
    a, b, c, d, e = ids(nodes)
    alive = {k: v for k, v in nodes.items() if k != c}
    snap = one_partition(alive, [a, b, c, d])
    assert trim(snap).steps == (RemoveReplica("ns", 0, c, 10),)
    snap = one_partition(nodes, [a, b, c, d], removals={b: RemovalState.PENDING})
    assert trim(snap).steps == (RemoveReplica("ns", 0, b, 10),)
    snap = one_partition(nodes, [a, b, c, d])
    (step,) = trim(snap).steps
    assert step.node != a
    assert not trim(one_partition(nodes, [a, b, c])).steps
    assert not trim(one_partition(nodes, [a, b, c, d], synced=False)).steps


# --- balance ----------------------------------------------------------------------------------

def test_balance_window_and_guards():
    assert in_balance_window(2) and in_balance_window(4) and not in_balance_window(5)
    snap = with_namespace(snap_of(cluster(3)), "ns", 8, 3)
    snap = replace(snap, nodes={**snap.nodes, **cluster(1, start=9)})
    assert balance(snap, 3, max_moves=None).steps
    assert not balance(snap, 12).steps
    removing = replace(snap, removals={ids(snap.nodes)[0]: RemovalState.PENDING})
    assert not balance(removing, 3).steps
    dead = replace(snap, nodes={k: v for k, v in snap.nodes.items() if k != ids(snap.nodes)[0]})
    assert "not stable" in balance(dead, 3).notes[0]


def test_balance_moves_leaders_without_moving_data():
    nodes = cluster(3)
    a, b, c = ids(nodes)
    view = NamespaceView(NamespaceMeta(partition_num=3, replica=3), {
        p: PartitionView(replace(PartitionReplicaInfo.initial([a, b, c]), epoch=5)) for p in range(3)})
    snap = snap_of(nodes, namespaces={"ns": view})
    plan = balance(snap, 3)
    assert all(isinstance(s, MoveLeader) for s in plan.steps) and len(plan.steps) == 2
    after = apply_plan(snap, plan)
    assert sorted(leader_counts(after, "ns").values()) == [1, 1, 1]


def test_node_join_moves_only_what_balancing_needs():
    snap = with_namespace(snap_of(cluster(4)), "ns", 32, 3)
    before = layout(snap, "ns")
    joined = replace(snap, nodes={**snap.nodes, **cluster(1, start=9)})
    new = ids(cluster(1, start=9))[0]
    after, added, _ = settle(joined)
    counts = replica_counts(after, "ns")
    assert max(counts.values()) - min(counts.values()) <= 1
    # Every replica that moved went to the new node.
    assert added == counts[new] == 32 * 3 // 5
    for pid, nodes in layout(after, "ns").items():
        assert len(set(nodes) - set(before[pid]) - {new}) == 0


# --- drain --------------------------------------------------------------------------------------

def test_drain_state_machine():
    snap = with_namespace(snap_of(cluster(4)), "ns", 4, 3)
    victim = ids(snap.nodes)[0]
    snap = replace(snap, removals={victim: RemovalState.MARKED})
    assert drain(snap).steps == (MarkRemovalState(victim, RemovalState.PENDING),)
    states = []
    for _ in range(100):
        plan = drain(snap, max_moves=1) + repair(snap, removing_wait=0) + trim(snap)
        states += [s.state for s in plan.steps if isinstance(s, MarkRemovalState)]
        if any(isinstance(s, ClearRemoval) for s in plan.steps):
            break
        snap = apply_plan(snap, plan)
        if snap.removals.get(victim) == RemovalState.DONE:
            # The operator stops the node once its data is gone.
            snap = replace(snap, nodes={k: v for k, v in snap.nodes.items() if k != victim})
    else:
        pytest.fail("drain did not finish")
    assert states == [RemovalState.PENDING, RemovalState.DATA_TRANSFERRED, RemovalState.DONE]
    for nodes in layout(snap, "ns").values():
        assert victim not in nodes and len(nodes) == 3


def test_drain_waits_when_no_replacement_exists():
    snap = with_namespace(snap_of(cluster(3)), "ns", 2, 3)
    victim = ids(snap.nodes)[0]
    snap = replace(snap, removals={victim: RemovalState.PENDING})
    plan = drain(snap)
    assert not plan.steps and plan.notes
