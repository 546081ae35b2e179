"""PDCoordinator on a FakeEtcd: election, cached view, repair, removal across failover."""

import json

import pytest
from twisted.internet.defer import Deferred

from tests.unit.pd_support import CID, PDEnv, node_id
from zan.pd import keys
from zan.pd.coordinator import NotPDLeader
from zan.pd.model import NamespaceMeta, RemovalState


@pytest.fixture
def env():
    return PDEnv(node_grace_period=60.0, check_interval=5.0, removing_check_interval=5.0,
                 removing_wait=10.0)


def create(env, pd, ns="ns1", pnum=4, replica=2):
    return env.wait(Deferred.fromCoroutine(
        pd.create_namespace(ns, NamespaceMeta(partition_num=pnum, replica=replica))))


def replica_infos(env, ns="ns1", pnum=4):
    return [json.loads(env.fake.value(keys.replica_info(CID, ns, p))) for p in range(pnum)]


def test_one_leader_and_failover_within_ttl(env):
    a = env.new_pd(18001)
    b = env.new_pd(18002)
    env.advance(1)
    assert env.leader() is a and not b.is_leader
    leader_value = json.loads(env.fake.value(keys.pd_leader_session(CID)))
    assert leader_value["ID"] == a.node_info.id == "0:127.0.0.1:::18001:pd"
    assert env.fake.value(keys.pd_node(CID, b.node_info.id)) is not None
    env.stop(a, gracefully=False)
    env.advance(a.config.leader_ttl + 1)
    assert env.leader() is b
    # A graceful stop hands over at once.
    c = env.new_pd(18003)
    env.stop(b)
    env.advance(1)
    assert env.leader() is c


def test_followers_keep_the_view_and_refuse_leader_work(env):
    a = env.new_pd(18001)
    b = env.new_pd(18002)
    env.add_node(1)
    env.add_node(2)
    env.advance(1)
    create(env, a, pnum=2)
    env.advance(0.5)
    assert set(b.view.data_nodes) == {node_id(1), node_id(2)}
    assert b.view.namespaces["ns1"].meta.partition_num == 2
    assert b.view.epoch == a.view.epoch > 0
    with pytest.raises(NotPDLeader):
        env.run(b.create_namespace("x", NamespaceMeta(partition_num=1, replica=1)))


def test_create_places_every_partition(env):
    a = env.new_pd()
    for i in (1, 2, 3):
        env.add_node(i)
    env.advance(1)
    create(env, a, pnum=6, replica=2)
    infos = replica_infos(env, pnum=6)
    load = {}
    for info in infos:
        assert len(set(info["RaftNodes"])) == 2 and info["MaxRaftID"] == 2
        for n in info["RaftNodes"]:
            load[n] = load.get(n, 0) + 1
    assert sorted(load.values()) == [4, 4, 4]


def test_repair_after_grace_period_writes_replica_info(env):
    a = env.new_pd()
    for i in (1, 2, 3, 4):
        env.add_node(i)
    env.advance(1)
    create(env, a, pnum=2, replica=3)
    before = replica_infos(env, pnum=2)
    victim = node_id(1)
    affected = [p for p, info in enumerate(before) if victim in info["RaftNodes"]]
    assert affected
    env.drop_node(1)
    env.advance(30)  # within the grace period: nothing moves
    assert replica_infos(env, pnum=2) == before
    waited = 30
    while not any(victim in info["Removings"] for info in replica_infos(env, pnum=2)):
        env.advance(1)
        waited += 1
        assert waited < 80
    assert waited >= 60  # the grace period, then the next check marks it Removing
    during = replica_infos(env, pnum=2)
    for p in affected:
        assert victim in during[p]["Removings"]
        assert during[p]["Removings"][victim]["RemoveReplicaID"] == before[p]["RaftIDs"][victim]
    env.advance(30)  # removing_wait: forgotten, then a live replacement added
    after = replica_infos(env, pnum=2)
    for p in affected:
        assert victim not in after[p]["RaftNodes"] and len(after[p]["RaftNodes"]) == 3
        assert after[p]["MaxRaftID"] == 4 and after[p]["Removings"] == {}
    assert a.steps_applied >= 3 * len(affected)


def test_no_migration_when_auto_balance_is_off():
    env = PDEnv(node_grace_period=1.0, check_interval=1.0, auto_balance_and_migrate=False)
    a = env.new_pd()
    for i in (1, 2, 3):
        env.add_node(i)
    env.advance(1)
    create(env, a, pnum=3, replica=2)
    before = replica_infos(env, pnum=3)
    env.drop_node(1)
    env.advance(20)
    assert replica_infos(env, pnum=3) == before
    assert a.last_notes == ("auto balance and migrate is off",)


def test_node_removal_survives_leader_failover(env):
    a = env.new_pd(18001)
    b = env.new_pd(18002)
    for i in (1, 2, 3):
        env.add_node(i)
    env.advance(1)
    create(env, a, pnum=3, replica=2)
    target = node_id(1)
    env.wait(Deferred.fromCoroutine(a.mark_node_removing(target)))
    assert json.loads(env.fake.value(keys.removing_nodes(CID))) == {target: "marked"}
    env.advance(6)  # one drain round: marked -> pending, maybe a first move
    assert json.loads(env.fake.value(keys.removing_nodes(CID)))[target] in ("pending",)
    env.stop(a, gracefully=False)
    env.advance(a.config.leader_ttl + 1)
    assert env.leader() is b
    assert b.removals.get(target) in (RemovalState.PENDING, RemovalState.DATA_TRANSFERRED,
                                      RemovalState.DONE)
    for _ in range(40):
        env.advance(5)
        if target not in json.loads(env.fake.value(keys.removing_nodes(CID)) or "{}"):
            break
        if json.loads(env.fake.value(keys.removing_nodes(CID)))[target] == "done":
            break
    state = json.loads(env.fake.value(keys.removing_nodes(CID))).get(target)
    assert state == "done"
    for info in replica_infos(env, pnum=3):
        assert target not in info["RaftNodes"] and len(info["RaftNodes"]) == 2
    # Once the operator stops the node, the finished removal is forgotten.
    env.drop_node(1)
    env.advance(6)
    assert json.loads(env.fake.value(keys.removing_nodes(CID))) == {}


def test_deposed_leader_stops_writing(env):
    a = env.new_pd(18001)
    for i in (1, 2):
        env.add_node(i)
    env.advance(1)
    assert a.is_leader
    # etcd loses the session (an operator deleted it): a loses leadership on its next refresh.
    env.run(env.client.delete(keys.pd_leader_session(CID)))
    env.run(env.client.create(keys.pd_leader_session(CID), '{"ID":"other"}', ttl=100))
    env.advance(a.config.leader_ttl)
    assert not a.is_leader and a.removals == {}
    with pytest.raises(NotPDLeader):
        env.run(a.mark_node_removing(node_id(1)))
