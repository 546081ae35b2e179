"""JSON codecs of the etcd metadata records, against documents shaped like ZanRedisDB's."""

import json

import pytest

from zan.errors import StorageError
from zan.pd.model import (
    ClusterMeta, NamespaceMeta, NodeInfo, PartitionReplicaInfo, RealLeader, RemovalState,
    RemovingInfo, decode_removals, encode_removals, gen_node_id, parse_node_id,
)

NODE_JSON = ('{"RegID":3,"ID":"3:10.0.0.5::12381:12380:datanode","NodeIP":"10.0.0.5",'
             '"Hostname":"db5","RedisPort":"12381","HttpPort":"12380","RpcPort":"",'
             '"RaftTransportAddr":"10.0.0.5:12379","Version":"0.9.0",'
             '"Tags":{"dc_info":"bj","ssd":true},"DataRoot":"/data","RsyncModule":"zanredisdb",'
             '"LearnerRole":""}')

META_JSON = ('{"PartitionNum":16,"Replica":3,"MagicCode":1600000000000000000,"MinGID":20000,'
             '"EngType":"rocksdb","OptimizedFsync":true,"SnapCount":400000,"Tags":{"ssd":true},'
             '"ExpirationPolicy":"wait_compact","DataVersion":"value_header_v1"}')

REPLICA_JSON = ('{"RaftNodes":["1:10.0.0.1::12381:12380:datanode","2:10.0.0.2::12381:12380:datanode",'
                '"4:10.0.0.4::12381:12380:datanode"],'
                '"RaftIDs":{"1:10.0.0.1::12381:12380:datanode":1,"2:10.0.0.2::12381:12380:datanode":2,'
                '"4:10.0.0.4::12381:12380:datanode":4},'
                '"Removings":{"2:10.0.0.2::12381:12380:datanode":'
                '{"RemoveTime":1600000000123456789,"RemoveReplicaID":2}},'
                '"MaxRaftID":4,"LearnerNodes":{"role_log_syncer":["9:10.0.1.9::12381:12380:datanode-learner-role_log_syncer"]}}')


def test_node_info_round_trip():
    n = NodeInfo.from_json(NODE_JSON, epoch=42)
    assert n.id == "3:10.0.0.5::12381:12380:datanode"
    assert (n.reg_id, n.node_ip, n.redis_port, n.http_port) == (3, "10.0.0.5", "12381", "12380")
    assert n.dc == "bj" and n.tags["ssd"] is True and n.epoch == 42 and not n.is_learner
    assert json.loads(n.to_json()) == json.loads(NODE_JSON)
    assert NodeInfo.from_json(n.to_json(), epoch=42) == n


def test_namespace_meta_round_trip_and_group_ids():
    m = NamespaceMeta.from_json(META_JSON, epoch=7)
    assert (m.partition_num, m.replica, m.min_gid, m.engine_type) == (16, 3, 20000, "rocksdb")
    assert m.optimized_fsync and m.snap_count == 400000 and m.tags == {"ssd": True}
    assert (m.expiration_policy, m.data_version) == ("wait_compact", "value_header_v1")
    assert m.group_id(5) == 20005
    assert json.loads(m.to_json()) == json.loads(META_JSON)


def test_replica_info_round_trip_and_isr():
    r = PartitionReplicaInfo.from_json(REPLICA_JSON, epoch=99)
    assert r.raft_nodes[0].startswith("1:") and r.max_raft_id == 4 and r.epoch == 99
    assert r.removings["2:10.0.0.2::12381:12380:datanode"] == RemovingInfo(1600000000123456789, 2)
    assert r.isr == ("1:10.0.0.1::12381:12380:datanode", "4:10.0.0.4::12381:12380:datanode")
    assert r.learner_nodes["role_log_syncer"][0].endswith("learner-role_log_syncer")
    assert json.loads(r.to_json()) == json.loads(REPLICA_JSON)
    assert PartitionReplicaInfo.from_json(r.to_json(), epoch=99) == r


def test_go_null_collections_decode_empty():
    r = PartitionReplicaInfo.from_json('{"RaftNodes":["a"],"RaftIDs":{"a":1},"Removings":null,'
                                       '"MaxRaftID":1,"LearnerNodes":null,"Unknown":5}')
    assert r.removings == {} and r.learner_nodes == {} and r.isr == ("a",)
    assert NamespaceMeta.from_json('{"PartitionNum":2,"Replica":1,"Tags":null}').tags == {}


def test_replica_info_edits():
    r = PartitionReplicaInfo.initial(["a", "b", "c"])
    assert r.raft_ids == {"a": 1, "b": 2, "c": 3} and r.max_raft_id == 3
    r2 = r.with_added("d")
    assert r2.raft_nodes == ("a", "b", "c", "d") and r2.raft_ids["d"] == 4 and r2.max_raft_id == 4
    assert r2.with_added("d") is r2
    r3 = r2.with_removing("b", 5)
    assert r3.isr == ("a", "c", "d") and r3.removings["b"] == RemovingInfo(5, 2)
    assert r3.with_removing("b", 9) is r3
    r4 = r3.without("b")
    assert r4.raft_nodes == ("a", "c", "d") and "b" not in r4.raft_ids and not r4.removings
    assert r4.max_raft_id == 4  # replica ids are never reused
    assert r4.with_leader("d").raft_nodes == ("d", "c", "a")


def test_cluster_meta_and_leader():
    c = ClusterMeta.from_json('{"MaxGID":20000,"MaxRegID":7}', epoch=3)
    assert (c.max_gid, c.max_reg_id, c.epoch) == (20000, 7, 3)
    assert c.reserve_gids().max_gid == 30000 and c.next_reg_id().max_reg_id == 8
    assert json.loads(c.to_json()) == {"MaxGID": 20000, "MaxRegID": 7}
    assert RealLeader.from_json('{"Leader":"x"}').leader == "x"
    assert json.loads(RealLeader("y").to_json()) == {"Leader": "y"}


def test_node_ids():
    nid = gen_node_id(3, "10.0.0.5", 12381, 12380)
    assert nid == "3:10.0.0.5::12381:12380:datanode"
    assert parse_node_id(nid) == (3, "10.0.0.5", "", "12381", "12380", "datanode")
    assert parse_node_id("0:::1:::18001:pd") == (0, "::1", "", "", "18001", "pd")
    with pytest.raises(ValueError):
        parse_node_id("nonsense")


def test_removal_states():
    text = encode_removals({"b": RemovalState.PENDING, "a": RemovalState.MARKED})
    assert json.loads(text) == {"a": "marked", "b": "pending"}
    assert decode_removals(text) == {"a": RemovalState.MARKED, "b": RemovalState.PENDING}
    assert [s.value for s in RemovalState] == ["marked", "pending", "data_transferred", "done"]
    with pytest.raises(StorageError):
        decode_removals('{"a":"gone"}')


@pytest.mark.parametrize("bad", ["[1]", "{", "null"])
def test_bad_json_is_a_storage_error(bad):
    with pytest.raises(StorageError):
        PartitionReplicaInfo.from_json(bad)
