"""Whether PD may move a partition's replicas: `zan.pd.sync.judge`, and the coordinator
holding a drain back while the data nodes say a partition is not in sync."""

import json

from twisted.internet.defer import Deferred, succeed

from tests.unit.pd_support import CID, PDEnv
from zan.pd import keys
from zan.pd.model import NamespaceMeta, PartitionReplicaInfo, RemovingInfo
from zan.pd.sync import PartitionSync, judge

A, B, C, D = "a", "b", "c", "d"


def info(nodes=(A, B, C), removing=()):
    ids = {n: i + 1 for i, n in enumerate((A, B, C, D))}
    return PartitionReplicaInfo(
        raft_nodes=tuple(nodes), raft_ids={n: ids[n] for n in nodes},
        removings={n: RemovingInfo(1, ids[n]) for n in removing}, max_raft_id=4)


def test_synced_when_every_live_replica_is_a_caught_up_member():
    assert judge(info(), [A, B, C], [1, 2, 3], {A: True, B: True, C: True}) == \
        PartitionSync(True, frozenset())


def test_a_replica_not_yet_a_member_or_behind_is_not_synced():
    # C was placed but the leader has not added it to the group yet.
    assert not judge(info(), [A, B, C], [1, 2], {A: True, B: True, C: True}).synced
    # C is a member still catching up (a snapshot on its way).
    assert not judge(info(), [A, B, C], [1, 2, 3], {A: True, B: True, C: False}).synced
    # A node that did not answer counts as behind.
    assert not judge(info(), [A, B, C], [1, 2, 3], {A: True, B: True}).synced


def test_dead_replicas_do_not_hold_a_repair_back():
    # C's node is gone: the partition is judged on the live replicas only.
    assert judge(info(), [A, B], [1, 2, 3], {A: True, B: True}).synced
    assert not judge(info(), [], [1, 2, 3], {}).synced


def test_a_removing_replica_lingers_while_a_member_lists_it():
    removing = info(nodes=(A, B, C), removing=(C,))
    assert judge(removing, [A, B], [1, 2, 3], {A: True, B: True}).lingering == {C}
    assert judge(removing, [A, B], [1, 2], {A: True, B: True}) == \
        PartitionSync(True, frozenset())


def test_nobody_answering_is_not_synced_and_every_removing_may_linger():
    removing = info(nodes=(A, B, C), removing=(C,))
    assert judge(removing, [A, B], None, {}) == PartitionSync(False, frozenset({C}))


class ScriptedProbe:
    """Says what the test wants about each partition, and records what was asked."""

    def __init__(self):
        self.synced = True
        self.asked = []

    def __call__(self, ns, pid, info, leader, nodes):
        self.asked.append((ns, pid, info.epoch))
        lingering = frozenset(info.removings) if not self.synced else frozenset()
        return succeed(PartitionSync(self.synced, lingering))


def replica_infos(env, ns, pnum):
    return [json.loads(env.fake.value(keys.replica_info(CID, ns, p))) for p in range(pnum)]


def pd_with_namespace(partitions: int, **config):
    """A leading PD over three data nodes, a scripted probe, namespace ns1 (replica 2)."""
    env = PDEnv(**config)
    probe = env.sync_probe = ScriptedProbe()
    pd = env.new_pd()
    for i in (1, 2, 3):
        env.add_node(i)
    env.advance(1)
    env.wait(Deferred.fromCoroutine(
        pd.create_namespace("ns1", NamespaceMeta(partition_num=partitions, replica=2))))
    return env, probe, pd


def test_drain_waits_for_the_new_replica_to_sync():
    env, probe, pd = pd_with_namespace(1, node_grace_period=60.0, check_interval=5.0,
                                       removing_check_interval=1.0, removing_wait=1.0)
    target = next(n for n in replica_infos(env, "ns1", 1)[0]["RaftNodes"])
    env.wait(Deferred.fromCoroutine(pd.mark_node_removing(target)))
    for _ in range(20):
        env.advance(1)
        if len(replica_infos(env, "ns1", 1)[0]["RaftNodes"]) == 3:
            break
    # The replacement is placed; the data nodes now say it has not caught up.
    probe.synced = False
    env.advance(10)
    [record] = replica_infos(env, "ns1", 1)
    assert len(record["RaftNodes"]) == 3 and target in record["RaftNodes"]
    assert not record["Removings"]
    assert json.loads(env.fake.value(keys.removing_nodes(CID)))[target] == "pending"
    assert probe.asked, "the data nodes were never asked"
    probe.synced = True
    for _ in range(30):
        env.advance(1)
        if json.loads(env.fake.value(keys.removing_nodes(CID)))[target] == "done":
            break
    [record] = replica_infos(env, "ns1", 1)
    assert target not in record["RaftNodes"] and len(record["RaftNodes"]) == 2


def test_a_partition_found_in_sync_is_asked_again_only_after_sync_recheck():
    env, probe, _ = pd_with_namespace(2, check_interval=1.0, sync_recheck=30.0)
    env.advance(5)
    asked = len(probe.asked)
    assert asked >= 2
    env.advance(10)
    assert len(probe.asked) == asked
    env.advance(30)
    assert len(probe.asked) > asked
