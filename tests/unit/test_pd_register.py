"""PDRegister: the etcd layout it writes and its epoch guards."""

import json

import pytest

from tests.unit.pd_support import CID, PDEnv, node_id
from zan.pd import keys
from zan.pd.model import NamespaceMeta, PartitionReplicaInfo, RealLeader, RemovalState
from zan.pd.register import EpochConflict, NamespaceExists, PDRegister


@pytest.fixture
def env():
    return PDEnv()


@pytest.fixture
def reg(env):
    return PDRegister(env.client, CID)


def test_key_layout():
    assert keys.cluster_meta("c") == "/ZanRedisDBMetaData/c/ClusterMeta"
    assert keys.pd_leader_session("c") == "/ZanRedisDBMetaData/c/PDInfo/PDLeaderSession"
    assert keys.pd_node("c", "0:1.2.3.4:::18001:pd") == \
        "/ZanRedisDBMetaData/c/PDInfo/PDNodes/Node-0:1.2.3.4:::18001:pd"
    assert keys.data_node("c", "n") == "/ZanRedisDBMetaData/c/DataNodes/Node-n"
    assert keys.replica_info("c", "ns", 3) == "/ZanRedisDBMetaData/c/Namespaces/ns/3/ReplicaInfo"
    assert keys.real_leader("c", "ns", 0) == "/ZanRedisDBMetaData/c/Namespaces/ns/0/RealLeader"
    assert keys.namespace_meta("c", "ns") == "/ZanRedisDBMetaData/c/Namespaces/ns/NamespaceMeta"
    assert keys.removing_nodes("c") == "/ZanRedisDBMetaData/c/PDInfo/RemovingNodes"


def test_create_namespace_reserves_gid_blocks_and_makes_partition_dirs(env, reg):
    m1 = env.run(reg.create_namespace("a", NamespaceMeta(partition_num=2, replica=1)))
    m2 = env.run(reg.create_namespace("b", NamespaceMeta(partition_num=1, replica=1)))
    assert (m1.min_gid, m2.min_gid) == (10000, 20000)
    assert json.loads(env.fake.value(keys.cluster_meta(CID)))["MaxGID"] == 20000
    meta = json.loads(env.fake.value(keys.namespace_meta(CID, "a")))
    assert meta["PartitionNum"] == 2 and meta["MinGID"] == 10000
    namespaces, index = env.run(reg.read_namespaces())
    assert set(namespaces) == {"a", "b"}
    assert namespaces["a"].meta.epoch == m1.epoch and index >= m2.epoch
    with pytest.raises(NamespaceExists):
        env.run(reg.create_namespace("a", NamespaceMeta(partition_num=2, replica=1)))


def test_gid_reservation_retries_a_lost_cas(env, reg):
    env.run(reg.reserve_gid_block())
    real_put = reg._put
    calls = []

    async def racing_put(key, value, epoch):
        if not calls:
            calls.append(1)
            # Another writer bumps ClusterMeta between our read and our CAS.
            await env.client.set(keys.cluster_meta(CID), '{"MaxGID":50000,"MaxRegID":3}')
        return await real_put(key, value, epoch)

    reg._put = racing_put
    block = env.run(reg.reserve_gid_block())
    assert block.max_gid == 60000 and block.max_reg_id == 3


def test_replica_info_create_then_cas(env, reg):
    env.run(reg.create_namespace("a", NamespaceMeta(partition_num=1, replica=2)))
    info = PartitionReplicaInfo.initial([node_id(1), node_id(2)])
    written = env.run(reg.write_replica_info("a", 0, info))
    assert written.epoch > 0
    with pytest.raises(EpochConflict):  # create again: exists
        env.run(reg.write_replica_info("a", 0, info))
    moved = env.run(reg.write_replica_info("a", 0, written.with_leader(node_id(2))))
    with pytest.raises(EpochConflict):  # stale epoch
        env.run(reg.write_replica_info("a", 0, written.with_added(node_id(3))))
    namespaces, _ = env.run(reg.read_namespaces())
    got = namespaces["a"].partitions[0]
    assert got.raft_nodes == (node_id(2), node_id(1)) and got.epoch == moved.epoch
    stored = json.loads(env.fake.value(keys.replica_info(CID, "a", 0)))
    assert stored["RaftNodes"] == [node_id(2), node_id(1)]
    assert stored["RaftIDs"] == {node_id(1): 1, node_id(2): 2} and stored["MaxRaftID"] == 2


def test_real_leader_meta_update_and_delete(env, reg):
    meta = env.run(reg.create_namespace("a", NamespaceMeta(partition_num=2, replica=1)))
    leader = env.run(reg.write_real_leader("a", 1, RealLeader(node_id(1))))
    namespaces, _ = env.run(reg.read_namespaces())
    assert namespaces["a"].leaders[1].leader == node_id(1)
    assert namespaces["a"].leaders[1].epoch == leader.epoch
    from dataclasses import replace
    updated = env.run(reg.update_namespace_meta("a", replace(meta, replica=3)))
    with pytest.raises(EpochConflict):
        env.run(reg.update_namespace_meta("a", replace(meta, replica=2)))
    assert json.loads(env.fake.value(keys.namespace_meta(CID, "a")))["Replica"] == 3
    assert updated.epoch > meta.epoch
    env.run(reg.delete_namespace("a"))
    namespaces, _ = env.run(reg.read_namespaces())
    assert namespaces == {}
    env.run(reg.delete_namespace("a"))  # idempotent


def test_removals_round_trip_with_epoch(env, reg):
    assert env.run(reg.read_removals()) == ({}, 0)
    e1 = env.run(reg.write_removals({"n1": RemovalState.MARKED}, 0))
    with pytest.raises(EpochConflict):
        env.run(reg.write_removals({"n1": RemovalState.PENDING}, 0))
    e2 = env.run(reg.write_removals({"n1": RemovalState.PENDING}, e1))
    assert env.run(reg.read_removals()) == ({"n1": RemovalState.PENDING}, e2)


def test_data_nodes_and_pd_reads(env, reg):
    env.add_node(1, dc_info="a")
    env.add_node(2)
    nodes, _ = env.run(reg.read_data_nodes())
    assert set(nodes) == {node_id(1), node_id(2)} and nodes[node_id(1)].dc == "a"
    assert env.run(reg.read_pd_nodes()) == [] and env.run(reg.read_pd_leader()) is None
