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
