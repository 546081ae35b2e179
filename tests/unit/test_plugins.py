"""The twistd dropins build their services; configuration errors stop the start cleanly."""

import json

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker

from zan.node import tap


def test_zan_node_plugin_is_discoverable():
    names = {p.tapname for p in getPlugins(IServiceMaker)}
    assert "zan-node" in names


def test_make_service_with_defaults(tmp_path):
    options = tap.Options()
    options.parseOptions(["--data-dir", str(tmp_path / "d"), "--redis-addr", "127.0.0.1:0",
                          "--http-addr", "127.0.0.1:0"])
    service = tap.makeService(options, reactor=MemoryReactorClock())
    assert service.config.data_dir == str(tmp_path / "d")
    assert {s.name for s in service} >= {"redis", "http", "sweeper"}
    service.privilegedStartService()
    service.startService()
    assert len(service.partitions()) == 8
    service.stopService()


def test_bad_config_exits_with_the_key_named(tmp_path):
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"server_conf": {"redis_api_prot": 1}}))
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit) as e:
        tap.makeService(options, reactor=MemoryReactorClock())
    assert "redis_api_prot: unknown configuration key" in str(e.value)
    options = tap.Options()
    options.parseOptions(["--redis-addr", "nonsense"])
    with pytest.raises(SystemExit, match="--redis-addr"):
        tap.makeService(options, reactor=MemoryReactorClock())
