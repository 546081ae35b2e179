"""Placement driver configuration: ZanRedisDB placedriver's TOML keys, validated.

Every key has its default here, next to its meaning; `conf/pd.example.toml` lists them
all.  An unknown key, a value of the wrong type or an out-of-range value fails at start
with a `ConfigError` naming the key.  Command-line options override the file.

Departures from placedriver: `http_address` defaults to 127.0.0.1:18001 (placedriver
binds 0.0.0.0), so a PD started without a config is not reachable from the network by
accident; metrics are served on the HTTP port (`metric_address` is accepted and ignored).
The `*_interval` keys below `balance_ver` are Zan's: ZanRedisDB hard-codes them.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from typing import Any

from zan.errors import ConfigError
from zan.node.config import parse_host_port

__all__ = ["PDConfig", "build_config", "load_config", "LOG_LEVELS"]

# placedriver's numeric levels (0 debug .. 4 fatal) and their names.
LOG_LEVELS = {0: "debug", 1: "info", 2: "warn", 3: "error", 4: "fatal"}


@dataclass(frozen=True, slots=True)
class PDConfig:
    # -- placedriver keys --
    http_address: str = "127.0.0.1:18001"
    metric_address: str = ""                 # accepted; metrics are at /metrics on http_address
    broadcast_address: str = ""              # advertised IP; empty: http_address's host, or
                                             # the host name's address when that is 0.0.0.0
    broadcast_interface: str = ""            # accepted; broadcast_address is used instead
    reverse_proxy_port: str = ""             # advertised HTTP port override
    profile_port: int = 0                    # accepted; no pprof in Zan
    cluster_id: str = ""                     # required
    cluster_leadership_addresses: str = ""   # required: etcd endpoints, comma separated
    auto_balance_and_migrate: bool = False   # must be true for failure migration and balancing
    balance_interval: tuple[int, int] = (2, 4)   # local hours, inclusive
    balance_ver: str = "v2"                  # v2 (least-loaded, kept replicas) | v1 (rotation)
    log_level: int = 1
    log_dir: str = ""
    data_dir: str = ""                       # accepted; metadata dumps are not written yet
    learner_role: str = ""                   # only "" is supported
    filter_namespaces: str = ""              # accepted, used by learner PDs only
    # -- etcd client (Zan) --
    etcd_ca_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    etcd_timeout: float = 5.0                # seconds per request (ZanRedisDB: 5 s header)
    # -- timers (Zan; ZanRedisDB's hard-coded values as defaults), in seconds --
    leader_ttl: int = 30                     # PDLeaderSession TTL
    node_ttl: int = 30                       # PDNodes/Node-<id> TTL, refreshed every ttl/10
    check_interval: float = 60.0             # namespace check (repair / trim)
    balance_check_interval: float = 600.0    # balancer
    removing_check_interval: float = 60.0    # node removal progress
    node_grace_period: float = 960.0         # a lost node's replicas move after this long
    removing_wait: float = 300.0             # a Removing replica is forgotten after this long
    check_delay: float = 0.01                # from a data-node change to the triggered check
    sync_timeout: float = 2.0                # asking a data node whether a replica is synced
    sync_recheck: float = 30.0               # how long a partition found in sync stays so

    @property
    def etcd_endpoints(self) -> list[str]:
        return [e.strip() for e in self.cluster_leadership_addresses.split(",") if e.strip()]

    @property
    def http_host_port(self) -> tuple[str, int]:
        return parse_host_port("http_address", self.http_address)


_FIELDS = {f.name: f for f in dataclasses.fields(PDConfig)}


def _coerce(key: str, value: Any, type_: str) -> Any:
    if type_ == "tuple[int, int]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if (not isinstance(value, (list, tuple)) or len(value) != 2):
            raise ConfigError(f"{key}: expected two hours [start, end], got {value!r}")
        try:
            start, end = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected two hours [start, end], got {value!r}") from None
        if not (0 <= start <= 23 and 0 <= end <= 23 and start <= end):
            raise ConfigError(f"{key}: hours must satisfy 0 <= start <= end <= 23, got {value!r}")
        return (start, end)
    if type_ == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if type_ == "int":
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if type_ == "float":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if type_ == "str":
        if isinstance(value, int) and not isinstance(value, bool) and key == "reverse_proxy_port":
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise AssertionError(type_)


def build_config(values: dict, overrides: dict | None = None) -> PDConfig:
    merged = dict(values)
    merged.update(overrides or {})
    out: dict[str, Any] = {}
    for key, value in merged.items():
        if key not in _FIELDS:
            raise ConfigError(f"{key}: unknown configuration key")
        out[key] = _coerce(key, value, _FIELDS[key].type)
    config = PDConfig(**out)
    _validate(config)
    return config


def _validate(c: PDConfig) -> None:
    if not c.cluster_id:
        raise ConfigError("cluster_id: required")
    if "/" in c.cluster_id:
        raise ConfigError(f"cluster_id: must not contain '/', got {c.cluster_id!r}")
    if not c.etcd_endpoints:
        raise ConfigError("cluster_leadership_addresses: required (etcd endpoints)")
    c.http_host_port  # noqa: B018 - validates
    if c.balance_ver not in ("v1", "v2"):
        raise ConfigError(f"balance_ver: must be v1 or v2, got {c.balance_ver!r}")
    if c.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level: must be 0..4, got {c.log_level}")
    if c.learner_role:
        raise ConfigError(f"learner_role: learner PDs are not supported, got {c.learner_role!r}")
    for key in ("leader_ttl", "node_ttl"):
        if getattr(c, key) < 2:
            raise ConfigError(f"{key}: must be at least 2 seconds, got {getattr(c, key)}")
    for key in ("etcd_timeout", "check_interval", "balance_check_interval",
                "removing_check_interval", "sync_timeout"):
        if getattr(c, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {getattr(c, key)}")
    for key in ("node_grace_period", "removing_wait", "check_delay", "sync_recheck"):
        if getattr(c, key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {getattr(c, key)}")


def load_config(path: str | None, overrides: dict | None = None) -> PDConfig:
    """Read a placedriver TOML file (or nothing), apply overrides, validate."""
    values: dict = {}
    if path:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return build_config(values, overrides)
