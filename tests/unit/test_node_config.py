import json

import pytest

from zan.errors import ConfigError
from zan.node.config import build_config, load_config, parse_host_port


def test_defaults_are_a_standalone_node_with_compat_namespace():
    c = load_config(None)
    assert c.standalone and c.redis_api_port == 12381 and c.http_api_port == 12380
    assert c.default_namespace == "default"
    assert c.namespace("default").partition_num == 8


@pytest.mark.parametrize("conf, key", [
    ({"bogus": 1}, "bogus"),
    ({"redis_api_port": "abc"}, "redis_api_port"),
    ({"redis_api_port": 70000}, "redis_api_port"),
    ({"tick_ms": 0}, "tick_ms"),
    ({"tick_ms": True}, "tick_ms"),
    ({"namespaces": [{"name": "a-b"}]}, "namespaces[0].name"),
    ({"namespaces": [{"name": "a", "partition_num": 0}]}, "namespaces[0].partition_num"),
    ({"namespaces": [{"name": "a", "nope": 1}]}, "namespaces[0].nope"),
    ({"namespaces": [{"name": "a", "expiration_policy": "x"}]}, "namespaces[0].expiration_policy"),
    ({"default_namespace": "missing"}, "default_namespace"),
    ({"etcd_node_ttl": 0}, "etcd_node_ttl"),
    ({"row_cache_mb": -1}, "row_cache_mb"),
    ({"max_entry_bytes": 1000}, "max_entry_bytes"),
    ({"max_batch_elements": -1}, "max_batch_elements"),
    ({"max_entry_bytes": 64 << 20}, "max_entry_bytes"),
    ({"row_cache_mb": "4M"}, "row_cache_mb"),
    ({"coordinator_interval_ms": 0}, "coordinator_interval_ms"),
    ({"leader_change_wait_ms": -1}, "leader_change_wait_ms"),
    ({"leader_transfer_lag": -1}, "leader_transfer_lag"),
    ({"etcd_cluster_addresses": "http://127.0.0.1:2379", "namespaces": []}, "namespaces"),
    ({"etcd_cluster_addresses": "http://127.0.0.1:2379", "local_raft_addr": "nope"},
     "local_raft_addr"),
    ({"etcd_cluster_addresses": "http://127.0.0.1:2379", "node_id": 1, "cluster_nodes": [
        {"node_id": 1, "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2",
         "redis_addr": "127.0.0.1:3"}]}, "cluster_nodes"),
])
def test_invalid_keys_are_named(conf, key):
    with pytest.raises(ConfigError) as e:
        build_config(conf)
    assert str(e.value).startswith(key + ":")


def test_file_shape_and_overrides(tmp_path):
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"server_conf": {"redis_api_port": 7000, "namespaces": [
        {"name": "default", "partition_num": 4}, {"name": "other"}]}}))
    c = load_config(str(path), {"redis_api_port": 7001})
    assert c.redis_api_port == 7001 and c.namespace("default").partition_num == 4
    path.write_text(json.dumps({"other_conf": {}}))
    with pytest.raises(ConfigError, match="other_conf"):
        load_config(str(path))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.json"))


def test_host_port():
    assert parse_host_port("--x", "127.0.0.1:80") == ("127.0.0.1", 80)
    with pytest.raises(ConfigError, match="--x"):
        parse_host_port("--x", "nohost")


def test_every_key_has_a_documented_default():
    """conf/node.example.json lists every key with its default; conf/README.md explains it."""
    import dataclasses
    from pathlib import Path

    from zan.node.config import NodeConfig
    conf = Path(__file__).resolve().parents[2] / "conf"
    example = json.loads((conf / "node.example.json").read_text())["server_conf"]
    doc = (conf / "README.md").read_text()
    defaults = build_config({})
    for f in dataclasses.fields(NodeConfig):
        assert f"`{f.name}`" in doc, f.name
        assert f.name in example, f.name
        if f.name not in ("namespaces", "cluster_nodes", "tags"):
            assert example[f.name] == getattr(defaults, f.name), f.name
    assert build_config(example) == defaults


@pytest.mark.parametrize("row_cache_mb", [0, 1])
def test_the_row_cache_setting_reaches_every_partition(tmp_path, row_cache_mb):
    from twisted.internet.task import Clock

    from zan.node.service import NodeService
    node = NodeService(load_config(None, {"data_dir": str(tmp_path),
                                          "row_cache_mb": row_cache_mb}), Clock())
    node.open_storage()
    try:
        engines = [p.state_machine.engine for p in node.partitions()]
        assert len(engines) == 8
        assert {e.row_cache_bytes for e in engines} == {row_cache_mb << 20}
    finally:
        node.close_storage()
