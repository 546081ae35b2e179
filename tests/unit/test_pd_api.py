"""The PD HTTP API through treq's StubTreq, on a FakeEtcd."""

import json

import pytest

from tests.unit.pd_support import CID, PDEnv, node_id
from zan.pd import keys
from zan.pd.model import RealLeader
from zan.pd.register import PDRegister


@pytest.fixture
def env():
    e = PDEnv()
    e.a = e.new_pd(18001)
    e.b = e.new_pd(18002)
    for i in (1, 2, 3):
        e.add_node(i, dc_info="dc1" if i < 3 else "dc2")
    e.advance(1)
    assert e.a.is_leader
    e.ha, e.hb = e.http(e.a), e.http(e.b)
    return e


def create(http, **params):
    params = {"namespace": "ns1", "partition_num": "4", "replicator": "2", **params}
    return http.call("POST", "/cluster/namespace/create", **params)


def test_ping_info_datanodes_listpd(env):
    assert env.hb.call("GET", "/ping") == (200, b"OK")
    code, body = env.hb.call("GET", "/info")
    assert code == 200 and "version" in json.loads(body)
    code, body = env.hb.call("GET", "/datanodes")
    nodes = json.loads(body)["nodes"]
    assert [n["node_id"] for n in nodes] == [node_id(1), node_id(2), node_id(3)]
    assert nodes[0] == {"node_id": node_id(1), "broadcast_address": "10.0.0.1", "hostname": "h1",
                        "redis_port": "12381", "http_port": "12380", "grpc_port": "",
                        "version": "0.1", "dc_info": "dc1"}
    code, body = env.hb.call("GET", "/listpd")
    doc = json.loads(body)
    assert code == 200 and doc["pdleader"]["ID"] == env.a.node_info.id
    assert sorted(p["ID"] for p in doc["pdnodes"]) == sorted([env.a.node_info.id, env.b.node_info.id])


def test_create_query_and_304(env):
    assert create(env.ha, tags="dc_info") == (200, b"")
    env.advance(0.5)
    for http in (env.ha, env.hb):
        code, body = http.call("GET", "/query/ns1")
        assert code == 200
        doc = json.loads(body)
        assert doc["partition_num"] == 4 and doc["replicator"] == 2
        assert doc["expire_policy"] == "wait_compact" and doc["fsync_optimized"] is True
        assert doc["eng_type"] == "rockredis" and doc["epoch"] > 0
        assert sorted(doc["partitions"]) == ["0", "1", "2", "3"]
        for part in doc["partitions"].values():
            assert len(part["replicas"]) == 2
            assert part["leader"] == part["replicas"][0]
        assert http.call("GET", "/query/ns1", epoch=str(doc["epoch"])) == (304, b"")
        assert http.call("GET", "/query/ns1", epoch=str(doc["epoch"] - 1))[0] == 200
    code, body = env.hb.call("GET", "/namespaces")
    assert json.loads(body) == {"namespaces": ["ns1"]}
    # The real leader a data node publishes wins over the desired one, and bumps the epoch.
    epoch = json.loads(env.hb.call("GET", "/query/ns1")[1])["epoch"]
    env.run(PDRegister(env.client, CID).write_real_leader("ns1", 0, RealLeader(node_id(3))))
    env.advance(0.5)
    code, body = env.hb.call("GET", "/query/ns1", epoch=str(epoch))
    assert code == 200 and json.loads(body)["partitions"]["0"]["leader"]["node_id"] == node_id(3)
    assert create(env.ha)[0] == 500  # exists
    code, body = env.hb.call("GET", "/query/nope")
    assert code == 404 and json.loads(body) == {"message": "NAMESPACE not found"}


def test_query_serves_cache_when_etcd_is_down_unless_disabled(env):
    create(env.ha)
    env.advance(0.5)
    env.net.refuse("e1:2379")
    assert env.hb.call("GET", "/query/ns1")[0] == 200
    code, body = env.hb.call("GET", "/query/ns1", disable_cache="true")
    assert code == 500 and "message" in json.loads(body)
    env.net.heal()
    assert env.hb.call("GET", "/query/ns1", disable_cache="true")[0] == 200


@pytest.mark.parametrize("params,message", [
    ({"namespace": ""}, "MISSING_ARG_NAMESPACE"),
    ({"namespace": "bad-name"}, "INVALID_ARG_NAMESPACE"),
    ({"partition_num": ""}, "MISSING_ARG_NAMESPACE_PARTITION_NUM"),
    ({"partition_num": "1024"}, "INVALID_ARG_NAMESPACE_PARTITION_NUM"),
    ({"partition_num": "0"}, "INVALID_ARG_NAMESPACE_PARTITION_NUM"),
    ({"partition_num": "x"}, "INVALID_ARG_NAMESPACE_PARTITION_NUM"),
    ({"replicator": ""}, "MISSING_ARG_NAMESPACE_REPLICATOR"),
    ({"replicator": "6"}, "INVALID_ARG_NAMESPACE_REPLICATOR"),
    ({"replicator": "0"}, "INVALID_ARG_NAMESPACE_REPLICATOR"),
    ({"data_version": "v9"}, "INVALID_ARG_DATA_VERSION"),
    ({"expiration_policy": "forever"}, "INVALID_ARG_EXPIRATION_POLICY"),
    ({"data_version": "default", "expiration_policy": "wait_compact"},
     "INVALID_ARG_EXPIRATION_POLICY"),
])
def test_create_validation(env, params, message):
    code, body = create(env.ha, **params)
    assert (code, json.loads(body)) == (400, {"message": message})
    assert env.fake.value(keys.namespace_meta(CID, "ns1")) is None


def test_create_needs_enough_nodes_and_leader(env):
    code, body = create(env.ha, replicator="4")
    assert code == 500 and "no enough data nodes" in json.loads(body)["message"]
    code, body = create(env.ha, replicator="2", tags="gpu")
    assert code == 500
    code, body = create(env.hb)
    assert (code, json.loads(body)) == (400, {"message": "E_FAILED_ON_NOT_LEADER"})
    code, body = create(env.ha, partition_num="1023", replicator="1",
                        data_version="default")
    assert code == 200
    meta = json.loads(env.fake.value(keys.namespace_meta(CID, "ns1")))
    assert meta["ExpirationPolicy"] == "local_deletion" and meta["PartitionNum"] == 1023


@pytest.mark.parametrize("method,path,code,message", [
    ("GET", "/cluster/stats", 400, "E_FAILED_ON_NOT_LEADER"),
    ("POST", "/cluster/balance", 400, "E_FAILED_ON_NOT_LEADER"),
    ("POST", "/cluster/namespace/meta/update", 400, "E_FAILED_ON_NOT_LEADER"),
    ("DELETE", "/cluster/namespace/delete", 500, "Not leader"),
    ("POST", "/cluster/node/remove", 500, "Not leader"),
    ("DELETE", "/cluster/partition/remove_node", 500, "Not leader"),
    ("POST", "/cluster/upgrade/begin", 500, "Not leader"),
    ("POST", "/cluster/upgrade/done", 500, "Not leader"),
    ("POST", "/stable/nodenum", 500, "Not leader"),
])
def test_follower_not_leader_errors(env, method, path, code, message):
    got, body = env.hb.call(method, path)
    assert (got, json.loads(body)) == (code, {"message": message})


def test_delete_namespace(env):
    create(env.ha)
    h = env.ha
    assert json.loads(h.call("DELETE", "/cluster/namespace/delete", partition="**")[1]) == \
        {"message": "MISSING_ARG_NAMESPACE"}
    assert h.call("DELETE", "/cluster/namespace/delete", namespace="ns1") == \
        (400, b'{"message": "MISSING_ARG_PARTITION"}')
    assert h.call("DELETE", "/cluster/namespace/delete", namespace="ns1", partition="1") == \
        (400, b'{"message": "REMOVE_SINGLE_PARTITION_NOT_ALLOWED"}')
    assert h.call("DELETE", "/cluster/namespace/delete", namespace="ns1", partition="**") == \
        (200, b"")
    env.advance(0.5)
    assert env.fake.value(keys.namespace_meta(CID, "ns1")) is None
    assert env.hb.call("GET", "/query/ns1")[0] == 404
    assert h.call("DELETE", "/cluster/namespace/delete", namespace="ns1",
                  partition="**")[0] == 404


def test_meta_update(env):
    create(env.ha)
    h = env.ha
    assert h.call("POST", "/cluster/namespace/meta/update")[1] == \
        b'{"message": "MISSING_ARG_NAMESPACE"}'
    assert h.call("POST", "/cluster/namespace/meta/update", namespace="ns1",
                  replicator="9") == (400, b'{"message": "INVALID_ARG_NAMESPACE_REPLICATOR"}')
    assert h.call("POST", "/cluster/namespace/meta/update", namespace="ns1",
                  optimizefsync="maybe")[0] == 400
    assert h.call("POST", "/cluster/namespace/meta/update", namespace="ns1",
                  snapcount="-1")[0] == 400
    assert h.call("POST", "/cluster/namespace/meta/update", namespace="nope",
                  replicator="3")[0] == 404
    assert h.call("POST", "/cluster/namespace/meta/update", namespace="ns1", replicator="3",
                  optimizefsync="false", snapcount="500") == (200, b"")
    meta = json.loads(env.fake.value(keys.namespace_meta(CID, "ns1")))
    assert (meta["Replica"], meta["OptimizedFsync"], meta["SnapCount"]) == (3, False, 500)
    env.advance(1)  # the check adds the third replica everywhere
    for pid in range(4):
        info = json.loads(env.fake.value(keys.replica_info(CID, "ns1", pid)))
        assert len(info["RaftNodes"]) == 3


def test_node_and_partition_removal(env):
    create(env.ha)
    h = env.ha
    assert h.call("POST", "/cluster/node/remove")[1] == b'{"message": "MISSING_ARG_REMOVE_NODE"}'
    assert h.call("POST", "/cluster/node/remove", remove_node="9:x::1:2:datanode")[0] == 404
    assert h.call("POST", "/cluster/node/remove", remove_node=node_id(3)) == (200, b"")
    assert json.loads(env.fake.value(keys.removing_nodes(CID))) == {node_id(3): "marked"}
    info = json.loads(env.fake.value(keys.replica_info(CID, "ns1", 0)))
    member = info["RaftNodes"][1]
    assert h.call("DELETE", "/cluster/partition/remove_node", namespace="ns1")[1] == \
        b'{"message": "MISSING_ARG_PARTITION"}'
    assert h.call("DELETE", "/cluster/partition/remove_node", namespace="ns1",
                  partition="0")[1] == b'{"message": "MISSING_ARG_NODE"}'
    assert h.call("DELETE", "/cluster/partition/remove_node", namespace="ns1", partition="x",
                  node=member)[1] == b'{"message": "INVALID_ARG_PARTITION"}'
    assert h.call("DELETE", "/cluster/partition/remove_node", namespace="ns1", partition="9",
                  node=member)[0] == 404
    assert h.call("DELETE", "/cluster/partition/remove_node", namespace="ns1", partition="0",
                  node=member) == (200, b"")
    info = json.loads(env.fake.value(keys.replica_info(CID, "ns1", 0)))
    assert member in info["Removings"]


def test_stats_balance_upgrade_stable_loglevel(env):
    h = env.ha
    assert json.loads(h.call("GET", "/cluster/stats")[1]) == {"stable": True}
    assert h.call("POST", "/cluster/upgrade/begin") == (200, b"")
    assert json.loads(h.call("GET", "/cluster/stats")[1]) == {"stable": False}
    assert h.call("POST", "/cluster/upgrade/done") == (200, b"")
    assert json.loads(h.call("GET", "/cluster/stats")[1]) == {"stable": True}
    assert h.call("POST", "/cluster/balance", enable="false") == (200, b"")
    assert env.a.auto_balance is False
    assert h.call("POST", "/cluster/balance", enable="true") == (200, b"")
    assert env.a.auto_balance is True
    assert h.call("POST", "/cluster/balance")[0] == 400
    assert env.a.stable_node_num == 3
    assert h.call("POST", "/stable/nodenum")[1] == b'{"message": "MISSING_ARG_NUMBER"}'
    assert h.call("POST", "/stable/nodenum", number="x")[1] == b'{"message": "INVALID_ARG_NUMBER"}'
    assert h.call("POST", "/stable/nodenum", number="5")[0] == 400
    assert h.call("POST", "/stable/nodenum", number="2") == (200, b"")
    assert env.a.stable_node_num == 2
    assert env.hb.call("POST", "/loglevel/set", loglevel="3") == (200, b"")
    assert env.b.log_level == 3
    assert env.hb.call("POST", "/loglevel/set", loglevel="7")[0] == 400
    assert env.hb.call("POST", "/loglevel/set")[0] == 400


def test_metrics(env):
    code, body = env.ha.call("GET", "/metrics")
    assert code == 200
    assert b"zan_pd_is_leader 1.0" in body and b"zan_pd_data_nodes 3.0" in body
    assert b"zan_pd_is_leader 0.0" in env.hb.call("GET", "/metrics")[1]
