"""The Redis parameter table and its value parsing (zan.commands.redis_config)."""

import pytest

from zan.commands.redis_config import (
    PARAMS, ConfigError, RedisConfig, lookup_param, memtoull, parse_value,
)
from zan.errors import RespError


def test_the_table_has_redis_70s_parameters_and_aliases():
    assert len(PARAMS) == 178
    assert lookup_param("list-max-ziplist-size")[0] is PARAMS["list-max-listpack-size"]
    assert lookup_param("HASH-MAX-ZIPLIST-ENTRIES")[1] == "hash-max-ziplist-entries"
    assert PARAMS["daemonize"].immutable and PARAMS["dir"].protected
    assert PARAMS["watchdog-period"].hidden and PARAMS["save"].multi_arg


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("1gb", 1 << 30), ("1G", 10 ** 9), ("5kb", 5120), ("7b", 7), ("", 0),
    ("-1", None), ("1.5k", None), ("1tb", None), ("99999999999999999999", (1 << 64) - 1)])
def test_memtoull(text, value):
    assert memtoull(text) == value


@pytest.mark.parametrize("name,raw,shown", [
    ("hz", b"1000", "500"), ("appendonly", b"YES", "yes"), ("maxmemory", b"1mb", "1048576"),
    ("maxmemory-clients", b"5%", "5%"), ("oom-score-adj", b"relative", "yes"),
    ("shutdown-on-sigint", b"now save", "save now"), ("notify-keyspace-events", b"KEA", "AKE"),
    ("save", b"", ""), ("latency-tracking-info-percentiles", b"1e1 50.50", "10 50.5")])
def test_values_are_shown_as_redis_shows_them(name, raw, shown):
    assert parse_value(PARAMS[name], raw) == shown


@pytest.mark.parametrize("name,raw,error", [
    ("hz", b"x", "argument couldn't be parsed into an integer"),
    ("maxclients", b"0", "argument must be between 1 and 4294967295 inclusive"),
    ("maxmemory", b"x", "argument must be a memory value"),
    ("appendonly", b"1", "argument must be 'yes' or 'no'"),
    ("loglevel", b"loud", "argument(s) must be one of the following: debug, verbose, notice, "
                          "warning"),
    ("save", b"1", "Invalid save parameters")])
def test_refused_values(name, raw, error):
    with pytest.raises(ConfigError, match=r"^" + error.replace("(", r"\(").replace(")", r"\)")):
        parse_value(PARAMS[name], raw)


def test_set_is_all_or_nothing_and_reports_changes():
    changes = []
    config = RedisConfig(readers={"port": lambda: "1"}, read_only=("port",),
                         on_set=lambda name, value: changes.append((name, value)))
    with pytest.raises(RespError):
        config.set([b"hz", b"20", b"maxmemory", b"x"])
    assert config.value("hz") == "10" and changes == []
    config.set([b"hz", b"20", b"list-max-ziplist-size", b"3"])
    assert changes == [("hz", "20"), ("list-max-listpack-size", "3")]
    with pytest.raises(RespError, match="can't set immutable config"):
        config.set([b"port", b"2"])
    assert config.get([b"port"]) == [b"port", b"1"]
