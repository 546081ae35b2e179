"""PD configuration and the zan-pd twistd plugin."""

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins

from zan.errors import ConfigError
from zan.pd import tap
from zan.pd.config import build_config, load_config

REQUIRED = {"cluster_id": "c", "cluster_leadership_addresses": "127.0.0.1:2379"}


def test_example_config_loads_with_documented_defaults():
    c = load_config("conf/pd.example.toml")
    assert c == build_config({"cluster_id": "test-cluster",
                              "cluster_leadership_addresses": "http://127.0.0.1:2379"})
    assert c.http_address == "127.0.0.1:18001" and c.balance_interval == (2, 4)
    assert c.node_grace_period == 960.0 and c.leader_ttl == 30
    assert c.auto_balance_and_migrate is False and c.balance_ver == "v2"


def test_every_field_is_documented_in_the_example():
    import dataclasses
    from zan.pd.config import PDConfig
    text = open("conf/pd.example.toml").read()
    for f in dataclasses.fields(PDConfig):
        assert f"\n{f.name} = " in text, f.name


@pytest.mark.parametrize("values,key", [
    ({"cluster_id": ""}, "cluster_id"),
    ({"cluster_leadership_addresses": ""}, "cluster_leadership_addresses"),
    ({"http_addres": "x"}, "http_addres: unknown configuration key"),
    ({"http_address": "nope"}, "http_address"),
    ({"balance_ver": "v3"}, "balance_ver"),
    ({"balance_interval": [5, 2]}, "balance_interval"),
    ({"balance_interval": "1"}, "balance_interval"),
    ({"log_level": 9}, "log_level"),
    ({"leader_ttl": "x"}, "leader_ttl"),
    ({"auto_balance_and_migrate": 1}, "auto_balance_and_migrate"),
    ({"check_interval": 0}, "check_interval"),
    ({"node_grace_period": -1}, "node_grace_period"),
    ({"learner_role": "role_log_syncer"}, "learner_role"),
])
def test_invalid_values_name_the_key(values, key):
    with pytest.raises(ConfigError, match=key):
        build_config({**REQUIRED, **values})


def test_string_forms_accepted():
    c = build_config({**REQUIRED, "balance_interval": "1,23", "auto_balance_and_migrate": "true",
                      "leader_ttl": "5", "check_interval": "0.5"})
    assert c.balance_interval == (1, 23) and c.auto_balance_and_migrate and c.leader_ttl == 5
    assert c.etcd_endpoints == ["127.0.0.1:2379"]


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "pd.toml"
    bad.write_text("cluster_id = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "none.toml"))


def test_plugin_is_discoverable():
    assert "zan-pd" in {p.tapname for p in getPlugins(IServiceMaker)}


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "pd.toml"
    path.write_text('cluster_id = "file"\ncluster_leadership_addresses = "a:1"\n')
    options = tap.Options()
    options.parseOptions(["--config", str(path), "--cluster-id", "flag",
                          "--http-address", "127.0.0.1:0", "--data-dir", str(tmp_path)])
    service = tap.makeService(options, reactor=MemoryReactorClock())
    assert service.config.cluster_id == "flag" and service.config.data_dir == str(tmp_path)
    assert service.config.cluster_leadership_addresses == "a:1"
    assert {s.name for s in service} == {"coordinator", "http"}


def test_config_errors_exit_naming_the_key(tmp_path):
    options = tap.Options()
    options.parseOptions(["--cluster-id", "c"])
    with pytest.raises(SystemExit, match="cluster_leadership_addresses"):
        tap.makeService(options, reactor=MemoryReactorClock())
