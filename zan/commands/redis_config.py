"""Redis 7.0's configuration parameters (src/config.c): names, aliases, types, bounds,
defaults, and the parsing and error texts of CONFIG SET.

`RedisConfig` keeps every parameter's value as CONFIG GET prints it.  Most of them have
no meaning on LevelDB and are only remembered (see conf/README.md, "Redis parameters");
the node overrides the few it honours or reports as facts (`zan.node.server`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from zan.commands.glob import glob_match
from zan.errors import SYNTAX, RespError

__all__ = ["Param", "PARAMS", "RedisConfig", "ConfigError", "parse_value", "memtoull",
           "lookup_param", "setting"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64 = 1 << 64


class ConfigError(Exception):
    """A value CONFIG SET refuses; the text follows Redis's "... - <text>"."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    alias: str | None
    kind: str                 # bool, string, enum, number, special
    default: str              # as CONFIG GET prints it
    immutable: bool = False
    hidden: bool = False      # CONFIG GET answers it only by exact name
    multi_arg: bool = False   # the value is split on spaces
    protected: bool = False   # refused while enable-protected-configs is "no"
    enum: tuple[tuple[str, int], ...] = ()
    unsigned: bool = False    # bounds compared as unsigned (size_t, unsigned int ...)
    lower: int = 0
    upper: int = 0
    memory: bool = False      # "1gb", "10mb" ...
    percent: bool = False     # "10%", kept as -10
    octal: bool = False


_ENUMS = {
    "maxmemory_policy_enum": (("volatile-lru", 0), ("volatile-lfu", 1), ("volatile-random", 2),
                              ("volatile-ttl", 3), ("allkeys-lru", 4), ("allkeys-lfu", 5),
                              ("allkeys-random", 6), ("noeviction", 7)),
    "syslog_facility_enum": tuple((n, i) for i, n in enumerate(
        ("user", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"))),
    "loglevel_enum": (("debug", 0), ("verbose", 1), ("notice", 2), ("warning", 3)),
    "supervised_mode_enum": (("upstart", 1), ("systemd", 2), ("auto", 3), ("no", 0)),
    "aof_fsync_enum": (("everysec", 2), ("always", 1), ("no", 0)),
    "shutdown_on_sig_enum": (("default", 0), ("save", 1), ("nosave", 2), ("now", 4),
                             ("force", 8)),
    "repl_diskless_load_enum": (("disabled", 0), ("on-empty-db", 1), ("swapdb", 2)),
    "tls_auth_clients_enum": (("no", 0), ("yes", 1), ("optional", 2)),
    # "yes" and "relative" are one value: CONFIG GET prints the first name, "yes".
    "oom_score_adj_enum": (("no", 0), ("yes", 1), ("relative", 1), ("absolute", 2)),
    "acl_pubsub_default_enum": (("allchannels", 1), ("resetchannels", 0)),
    "sanitize_dump_payload_enum": (("no", 0), ("yes", 1), ("clients", 2)),
    "protected_action_enum": (("no", 0), ("yes", 1), ("local", 2)),
    "cluster_preferred_endpoint_type_enum": (("ip", 0), ("hostname", 1),
                                             ("unknown-endpoint", 2)),
    "propagation_error_behavior_enum": (("ignore", 0), ("panic", 1), ("panic-on-replicas", 2)),
}

# Numeric C types whose bounds Redis checks as unsigned.
_UNSIGNED_TYPES = {"UInt", "ULongLong", "SizeT"}


def _flags(flags):
    return dict(immutable="IMMUTABLE" in flags, hidden="HIDDEN" in flags,
                multi_arg="MULTI_ARG" in flags, protected="PROTECTED" in flags)


def _bool(name, alias, default, flags):
    return Param(name, alias, "bool", "yes" if default == "1" else "no", **_flags(flags))


def _string(name, alias, default, flags):
    return Param(name, alias, "string", default, **_flags(flags))


def _enum(name, alias, enum, default, flags):
    return Param(name, alias, "enum", default, enum=_ENUMS[enum], **_flags(flags))


def _special(name, alias, default, flags):
    return Param(name, alias, "special", default, **_flags(flags))


def _number(name, alias, ctype, lower, upper, default, numflags, flags):
    return Param(name, alias, "number", default, unsigned=ctype in _UNSIGNED_TYPES,
                 lower=lower, upper=upper, memory="memory" in numflags,
                 percent="percent" in numflags, octal="octal" in numflags, **_flags(flags))


# Redis 7.0's static_configs, in its order.  Defaults are those of a redis-server started
# without a config file (the TLS parameters included, as in a build with TLS).
_TABLE = (
    _bool('rdbchecksum', None, '1', ['IMMUTABLE']),
    _bool('daemonize', None, '0', ['IMMUTABLE']),
    _bool('io-threads-do-reads', None, '0', ['IMMUTABLE']),
    _bool('always-show-logo', None, '0', ['IMMUTABLE']),
    _bool('protected-mode', None, '1', []),
    _bool('rdbcompression', None, '1', []),
    _bool('rdb-del-sync-files', None, '0', []),
    _bool('activerehashing', None, '1', []),
    _bool('stop-writes-on-bgsave-error', None, '1', []),
    _bool('set-proc-title', None, '1', ['IMMUTABLE']),
    _bool('dynamic-hz', None, '1', []),
    _bool('lazyfree-lazy-eviction', None, '0', []),
    _bool('lazyfree-lazy-expire', None, '0', []),
    _bool('lazyfree-lazy-server-del', None, '0', []),
    _bool('lazyfree-lazy-user-del', None, '0', []),
    _bool('lazyfree-lazy-user-flush', None, '0', []),
    _bool('repl-disable-tcp-nodelay', None, '0', []),
    _bool('repl-diskless-sync', None, '1', []),
    _bool('aof-rewrite-incremental-fsync', None, '1', []),
    _bool('no-appendfsync-on-rewrite', None, '0', []),
    _bool('cluster-require-full-coverage', None, '1', []),
    _bool('rdb-save-incremental-fsync', None, '1', []),
    _bool('aof-load-truncated', None, '1', []),
    _bool('aof-use-rdb-preamble', None, '1', []),
    _bool('aof-timestamp-enabled', None, '0', []),
    _bool('cluster-replica-no-failover', 'cluster-slave-no-failover', '0', []),
    _bool('replica-lazy-flush', 'slave-lazy-flush', '0', []),
    _bool('replica-serve-stale-data', 'slave-serve-stale-data', '1', []),
    _bool('replica-read-only', 'slave-read-only', '1', []),
    _bool('replica-ignore-maxmemory', 'slave-ignore-maxmemory', '1', []),
    _bool('jemalloc-bg-thread', None, '1', []),
    _bool('activedefrag', None, '0', []),
    _bool('syslog-enabled', None, '0', ['IMMUTABLE']),
    _bool('cluster-enabled', None, '0', ['IMMUTABLE']),
    _bool('appendonly', None, '0', []),
    _bool('cluster-allow-reads-when-down', None, '0', []),
    _bool('cluster-allow-pubsubshard-when-down', None, '1', []),
    _bool('crash-log-enabled', None, '1', []),
    _bool('crash-memcheck-enabled', None, '1', []),
    _bool('use-exit-on-panic', None, '0', ['HIDDEN']),
    _bool('disable-thp', None, '1', ['IMMUTABLE']),
    _bool('cluster-allow-replica-migration', None, '1', []),
    _bool('replica-announced', None, '1', []),
    _bool('latency-tracking', None, '1', []),
    _bool('aof-disable-auto-gc', None, '0', []),
    _bool('replica-ignore-disk-write-errors', None, '0', []),
    _string('aclfile', None, '', ['IMMUTABLE']),
    _string('unixsocket', None, '', ['IMMUTABLE']),
    _string('pidfile', None, '', ['IMMUTABLE']),
    _string('replica-announce-ip', 'slave-announce-ip', '', []),
    _string('masteruser', None, '', ['SENSITIVE']),
    _string('cluster-announce-ip', None, '', []),
    _string('cluster-config-file', None, 'nodes.conf', ['IMMUTABLE']),
    _string('cluster-announce-hostname', None, '', []),
    _string('syslog-ident', None, 'redis', ['IMMUTABLE']),
    _string('dbfilename', None, 'dump.rdb', ['PROTECTED']),
    _string('appendfilename', None, 'appendonly.aof', ['IMMUTABLE']),
    _string('appenddirname', None, 'appendonlydir', ['IMMUTABLE']),
    _string('server_cpulist', None, '', ['IMMUTABLE']),
    _string('bio_cpulist', None, '', ['IMMUTABLE']),
    _string('aof_rewrite_cpulist', None, '', ['IMMUTABLE']),
    _string('bgsave_cpulist', None, '', ['IMMUTABLE']),
    _string('ignore-warnings', None, '', []),
    _string('proc-title-template', None, '{title} {listen-addr} {server-mode}', []),
    _string('bind-source-addr', None, '', []),
    _string('logfile', None, '', ['IMMUTABLE']),
    _string('masterauth', None, '', ['SENSITIVE']),
    _string('requirepass', None, '', ['SENSITIVE']),
    _enum('supervised', None, 'supervised_mode_enum', 'no', ['IMMUTABLE']),
    _enum('syslog-facility', None, 'syslog_facility_enum', 'local0', ['IMMUTABLE']),
    _enum('repl-diskless-load', None, 'repl_diskless_load_enum', 'disabled', []),
    _enum('loglevel', None, 'loglevel_enum', 'notice', []),
    _enum('maxmemory-policy', None, 'maxmemory_policy_enum', 'noeviction', []),
    _enum('appendfsync', None, 'aof_fsync_enum', 'everysec', []),
    _enum('oom-score-adj', None, 'oom_score_adj_enum', 'no', []),
    _enum('acl-pubsub-default', None, 'acl_pubsub_default_enum', 'resetchannels', []),
    _enum('sanitize-dump-payload', None, 'sanitize_dump_payload_enum', 'no', []),
    _enum('enable-protected-configs', None, 'protected_action_enum', 'no', ['IMMUTABLE']),
    _enum('enable-debug-command', None, 'protected_action_enum', 'no', ['IMMUTABLE']),
    _enum('enable-module-command', None, 'protected_action_enum', 'no', ['IMMUTABLE']),
    _enum('cluster-preferred-endpoint-type', None, 'cluster_preferred_endpoint_type_enum', 'ip', []),
    _enum('propagation-error-behavior', None, 'propagation_error_behavior_enum', 'ignore', []),
    _enum('shutdown-on-sigint', None, 'shutdown_on_sig_enum', 'default', ['MULTI_ARG']),
    _enum('shutdown-on-sigterm', None, 'shutdown_on_sig_enum', 'default', ['MULTI_ARG']),
    _number('databases', None, 'Int', 1, 2147483647, '16', '', ['IMMUTABLE']),
    _number('port', None, 'Int', 0, 65535, '6379', '', []),
    _number('io-threads', None, 'Int', 1, 128, '1', '', ['IMMUTABLE']),
    _number('auto-aof-rewrite-percentage', None, 'Int', 0, 2147483647, '100', '', []),
    _number('cluster-replica-validity-factor', 'cluster-slave-validity-factor', 'Int', 0, 2147483647, '10', '', []),
    _number('list-max-listpack-size', 'list-max-ziplist-size', 'Int', -2147483648, 2147483647, '-2', '', []),
    _number('tcp-keepalive', None, 'Int', 0, 2147483647, '300', '', []),
    _number('cluster-migration-barrier', None, 'Int', 0, 2147483647, '1', '', []),
    _number('active-defrag-cycle-min', None, 'Int', 1, 99, '1', '', []),
    _number('active-defrag-cycle-max', None, 'Int', 1, 99, '25', '', []),
    _number('active-defrag-threshold-lower', None, 'Int', 0, 1000, '10', '', []),
    _number('active-defrag-threshold-upper', None, 'Int', 0, 1000, '100', '', []),
    _number('lfu-log-factor', None, 'Int', 0, 2147483647, '10', '', []),
    _number('lfu-decay-time', None, 'Int', 0, 2147483647, '1', '', []),
    _number('replica-priority', 'slave-priority', 'Int', 0, 2147483647, '100', '', []),
    _number('repl-diskless-sync-delay', None, 'Int', 0, 2147483647, '5', '', []),
    _number('maxmemory-samples', None, 'Int', 1, 2147483647, '5', '', []),
    _number('maxmemory-eviction-tenacity', None, 'Int', 0, 100, '10', '', []),
    _number('timeout', None, 'Int', 0, 2147483647, '0', '', []),
    _number('replica-announce-port', 'slave-announce-port', 'Int', 0, 65535, '0', '', []),
    _number('tcp-backlog', None, 'Int', 0, 2147483647, '511', '', ['IMMUTABLE']),
    _number('cluster-port', None, 'Int', 0, 65535, '0', '', ['IMMUTABLE']),
    _number('cluster-announce-bus-port', None, 'Int', 0, 65535, '0', '', []),
    _number('cluster-announce-port', None, 'Int', 0, 65535, '0', '', []),
    _number('cluster-announce-tls-port', None, 'Int', 0, 65535, '0', '', []),
    _number('repl-timeout', None, 'Int', 1, 2147483647, '60', '', []),
    _number('repl-ping-replica-period', 'repl-ping-slave-period', 'Int', 1, 2147483647, '10', '', []),
    _number('list-compress-depth', None, 'Int', 0, 2147483647, '0', '', []),
    _number('rdb-key-save-delay', None, 'Int', -2147483648, 2147483647, '0', '', ['HIDDEN']),
    _number('key-load-delay', None, 'Int', -2147483648, 2147483647, '0', '', ['HIDDEN']),
    _number('active-expire-effort', None, 'Int', 1, 10, '1', '', []),
    _number('hz', None, 'Int', 0, 2147483647, '10', '', []),
    _number('min-replicas-to-write', 'min-slaves-to-write', 'Int', 0, 2147483647, '0', '', []),
    _number('min-replicas-max-lag', 'min-slaves-max-lag', 'Int', 0, 2147483647, '10', '', []),
    _number('watchdog-period', None, 'Int', 0, 2147483647, '0', '', ['HIDDEN']),
    _number('shutdown-timeout', None, 'Int', 0, 2147483647, '10', '', []),
    _number('repl-diskless-sync-max-replicas', None, 'Int', 0, 2147483647, '0', '', []),
    _number('maxclients', None, 'UInt', 1, 4294967295, '10000', '', []),
    _number('unixsocketperm', None, 'UInt', 0, 511, '0', 'octal', ['IMMUTABLE']),
    _number('socket-mark-id', None, 'UInt', 0, 4294967295, '0', '', ['IMMUTABLE']),
    _number('active-defrag-max-scan-fields', None, 'ULong', 1, 9223372036854775807, '1000', '', []),
    _number('slowlog-max-len', None, 'ULong', 0, 9223372036854775807, '128', '', []),
    _number('acllog-max-len', None, 'ULong', 0, 9223372036854775807, '128', '', []),
    _number('busy-reply-threshold', 'lua-time-limit', 'LongLong', 0, 9223372036854775807, '5000', '', []),
    _number('cluster-node-timeout', None, 'LongLong', 0, 9223372036854775807, '15000', '', []),
    _number('slowlog-log-slower-than', None, 'LongLong', -1, 9223372036854775807, '10000', '', []),
    _number('latency-monitor-threshold', None, 'LongLong', 0, 9223372036854775807, '0', '', []),
    _number('proto-max-bulk-len', None, 'LongLong', 1048576, 9223372036854775807, '536870912', 'memory', []),
    _number('stream-node-max-entries', None, 'LongLong', 0, 9223372036854775807, '100', '', []),
    _number('repl-backlog-size', None, 'LongLong', 1, 9223372036854775807, '1048576', 'memory', []),
    _number('maxmemory', None, 'ULongLong', 0, 18446744073709551615, '0', 'memory', []),
    _number('cluster-link-sendbuf-limit', None, 'ULongLong', 0, 18446744073709551615, '0', 'memory', []),
    _number('hash-max-listpack-entries', 'hash-max-ziplist-entries', 'SizeT', 0, 9223372036854775807, '512', '', []),
    _number('set-max-intset-entries', None, 'SizeT', 0, 9223372036854775807, '512', '', []),
    _number('zset-max-listpack-entries', 'zset-max-ziplist-entries', 'SizeT', 0, 9223372036854775807, '128', '', []),
    _number('active-defrag-ignore-bytes', None, 'SizeT', 1, 9223372036854775807, '104857600', 'memory', []),
    _number('hash-max-listpack-value', 'hash-max-ziplist-value', 'SizeT', 0, 9223372036854775807, '64', 'memory', []),
    _number('stream-node-max-bytes', None, 'SizeT', 0, 9223372036854775807, '4096', 'memory', []),
    _number('zset-max-listpack-value', 'zset-max-ziplist-value', 'SizeT', 0, 9223372036854775807, '64', 'memory', []),
    _number('hll-sparse-max-bytes', None, 'SizeT', 0, 9223372036854775807, '3000', 'memory', []),
    _number('tracking-table-max-keys', None, 'SizeT', 0, 9223372036854775807, '1000000', '', []),
    _number('client-query-buffer-limit', None, 'SizeT', 1048576, 9223372036854775807, '1073741824', 'memory', []),
    _number('maxmemory-clients', None, 'SSizeT', -100, 9223372036854775807, '0', 'memory percent', []),
    _number('repl-backlog-ttl', None, 'TimeT', 0, 9223372036854775807, '3600', '', []),
    _number('auto-aof-rewrite-min-size', None, 'OffT', 0, 9223372036854775807, '67108864', 'memory', []),
    _number('loading-process-events-interval-bytes', None, 'OffT', 1024, 2147483647, '2097152', '', ['HIDDEN']),
    _number('tls-port', None, 'Int', 0, 65535, '0', '', []),
    _number('tls-session-cache-size', None, 'Int', 0, 2147483647, '20480', '', []),
    _number('tls-session-cache-timeout', None, 'Int', 0, 2147483647, '300', '', []),
    _bool('tls-cluster', None, '0', []),
    _bool('tls-replication', None, '0', []),
    _enum('tls-auth-clients', None, 'tls_auth_clients_enum', 'yes', []),
    _bool('tls-prefer-server-ciphers', None, '0', []),
    _bool('tls-session-caching', None, '1', []),
    _string('tls-cert-file', None, '', []),
    _string('tls-key-file', None, '', []),
    _string('tls-key-file-pass', None, '', []),
    _string('tls-client-cert-file', None, '', []),
    _string('tls-client-key-file', None, '', []),
    _string('tls-client-key-file-pass', None, '', []),
    _string('tls-dh-params-file', None, '', []),
    _string('tls-ca-cert-file', None, '', []),
    _string('tls-ca-cert-dir', None, '', []),
    _string('tls-protocols', None, '', []),
    _string('tls-ciphers', None, '', []),
    _string('tls-ciphersuites', None, '', []),
    _special('dir', None, '', ['PROTECTED']),
    _special('save', None, '3600 1 300 100 60 10000', ['MULTI_ARG']),
    _special('client-output-buffer-limit', None, 'normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60', ['MULTI_ARG']),
    _special('oom-score-adj-values', None, '0 200 800', ['MULTI_ARG']),
    _special('notify-keyspace-events', None, '', []),
    _special('bind', None, '* -::*', ['MULTI_ARG']),
    _special('replicaof', 'slaveof', '', ['IMMUTABLE', 'MULTI_ARG']),
    _special('latency-tracking-info-percentiles', None, '50 99 99.9', ['MULTI_ARG']),)

PARAMS: dict[str, Param] = {p.name: p for p in _TABLE}
# Every name CONFIG knows, primary or alias, lower case -> (param, the name as listed).
_NAMES: dict[str, tuple[Param, str]] = {}
for _p in _TABLE:
    _NAMES[_p.name] = (_p, _p.name)
    if _p.alias:
        _NAMES[_p.alias] = (_p, _p.alias)


def lookup_param(name: str) -> tuple[Param, str] | None:
    """(param, listed name) for a parameter name in any case, primary or alias."""
    return _NAMES.get(name.lower())


# -- value parsing, as config.c does it -------------------------------------------------

_STRING2LL = re.compile(r"(?:0|-?[1-9][0-9]*)\Z")
_STRTOLL = re.compile(r"(?:[+-]?[0-9]+)?\Z")
_STRING2D = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def _string2ll(text: str) -> int | None:
    if len(text) > 20 or not _STRING2LL.match(text):
        return None
    n = int(text)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def _strtoll_whole(text: str) -> int | None:
    """strtoll() that must consume the whole token ("" reads as 0, overflow saturates)."""
    if not _STRTOLL.match(text):
        return None
    n = int(text) if text else 0
    return max(_INT64_MIN, min(_INT64_MAX, n))


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2,
          "g": 1000 ** 3, "gb": 1024 ** 3}


def memtoull(text: str) -> int | None:
    """Redis's memtoull: digits and an optional unit (k kb m mb g gb, any case); None on
    error.  Like the C code it wraps on overflow rather than refusing."""
    digits = re.match(r"[0-9]*", text).group(0)
    unit = text[len(digits):].lower()
    if text.startswith("-") or unit not in _UNITS or len(digits) >= 128:
        return None
    value = min(int(digits) if digits else 0, _UINT64 - 1)
    return value * _UNITS[unit] % _UINT64


def _as_signed(value: int) -> int:
    return value - _UINT64 if value > _INT64_MAX else value


def _parse_number(p: Param, text: str) -> int:
    value = None
    if p.memory:
        raw = memtoull(text)
        if raw is not None:
            value = _as_signed(raw)
    if value is None and p.percent and len(text) > 1 and text.endswith("%"):
        n = _string2ll(text[:-1])
        if n is not None and n >= 0:
            value = -n
    if value is None and p.octal and re.fullmatch(r"[+-]?[0-7]+", text):
        value = int(text, 8)
    if value is None and not (p.memory or p.percent or p.octal):
        value = _string2ll(text)
    if value is None:
        if p.memory and p.percent:
            raise ConfigError("argument must be a memory or percent value")
        if p.memory:
            raise ConfigError("argument must be a memory value")
        if p.octal:
            raise ConfigError("argument couldn't be parsed as an octal number")
        raise ConfigError("argument couldn't be parsed into an integer")
    if p.unsigned:
        if not p.lower <= value % _UINT64 <= p.upper:
            fmt = "o" if p.octal else "d"
            raise ConfigError(f"argument must be between {p.lower:{fmt}} and {p.upper:{fmt}} "
                              "inclusive")
        value %= _UINT64
    elif p.percent and value < 0:
        if value < p.lower:
            raise ConfigError(f"percentage argument must be less or equal to {-p.lower}")
    elif not p.lower <= value <= p.upper:
        raise ConfigError(f"argument must be between {p.lower} and {p.upper} inclusive")
    if p.name == "hz":
        value = max(1, min(500, value))   # updateHZ: out-of-range values are capped
    if p.percent and value < 0:
        return f"{-value}%"
    return format(value, "o") if p.octal else str(value)


def _parse_enum(p: Param, words: list[str]) -> str:
    values = 0
    if not words or (not p.multi_arg and len(words) != 1):
        values = None
    else:
        for word in words:
            matched = [v for n, v in p.enum if n == word.lower()]
            if not matched:
                values = None
                break
            values |= matched[0]
    if values is None:
        raise ConfigError("argument(s) must be one of the following: "
                          + ", ".join(n for n, _ in p.enum))
    if p.name.startswith("shutdown-on-sig") and values & 1 and values & 2:
        raise ConfigError("shutdown options SAVE and NOSAVE can't be used simultaneously")
    for name, v in p.enum:
        if v == values:
            return name
    # Flags: named from the enum's order, as configEnumGetName does.
    names, unmatched = [], values
    for name, v in p.enum:
        if v and v == unmatched & v:
            names.append(name)
            unmatched &= ~v
    return " ".join(names) if names and not unmatched else "unknown"


_PROC_TITLE_VARS = {"title": "", "listen-addr": "*:6379", "server-mode": "", "config-file": "-",
                    "port": "6379", "tls-port": "0", "unixsocket": ""}


def _valid_proc_title(template: str) -> bool:
    """sdstemplate over the known variables with an empty title: a valid template has
    balanced braces, known variables, and expands to something besides spaces."""
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if c == "{" and template[i + 1:i + 2] == "{" or c == "}" and template[i + 1:i + 2] == "}":
            out.append(c)
            i += 2
        elif c == "{":
            end = template.find("}", i)
            if end < 0 or template[i + 1:end] not in _PROC_TITLE_VARS:
                return False
            out.append(_PROC_TITLE_VARS[template[i + 1:end]])
            i = end + 1
        elif c == "}":
            return False
        else:
            out.append(c)
            i += 1
    return bool("".join(out).strip(" "))


def _parse_string(p: Param, text: str) -> str:
    if p.name == "cluster-announce-hostname" and text:
        if len(text) >= 256:
            raise ConfigError("Hostnames must be less than NET_HOST_STR_LEN characters")
        if not re.fullmatch(r"[A-Za-z0-9.-]*", text):
            raise ConfigError("Hostnames may only contain alphanumeric characters, hyphens or dots")
    if p.name == "proc-title-template" and not _valid_proc_title(text):
        raise ConfigError("template format is invalid or contains unknown variables")
    if p.name == "dbfilename" and "/" in text:
        raise ConfigError("dbfilename can't be a path, just a filename")
    return text


_KEYSPACE_EVENTS = {"g": 1 << 2, "$": 1 << 3, "l": 1 << 4, "s": 1 << 5, "h": 1 << 6,
                    "z": 1 << 7, "x": 1 << 8, "e": 1 << 9, "t": 1 << 10, "d": 1 << 13,
                    "n": 1 << 14, "K": 1 << 0, "E": 1 << 1, "m": 1 << 12}
_NOTIFY_ALL = sum(_KEYSPACE_EVENTS[c] for c in "g$lshzxetd")


def _parse_keyspace_events(text: str) -> str:
    flags = 0
    for c in text:
        if c == "A":
            flags |= _NOTIFY_ALL
        elif c in _KEYSPACE_EVENTS:
            flags |= _KEYSPACE_EVENTS[c]
        else:
            raise ConfigError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    out = "A" if flags & _NOTIFY_ALL == _NOTIFY_ALL else "".join(
        c for c in "g$lshzxetdn" if flags & _KEYSPACE_EVENTS[c])
    return out + "".join(c for c in "KEm" if flags & _KEYSPACE_EVENTS[c])


_OBUF_CLASSES = {"normal": "normal", "slave": "slave", "replica": "slave", "pubsub": "pubsub"}


def _parse_obuf_limits(words: list[str], current: str) -> str:
    if len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    cur = current.split(" ")
    limits = {cur[i]: cur[i + 1:i + 4] for i in range(0, len(cur), 4)}
    for i in range(0, len(words), 4):
        cls = _OBUF_CLASSES.get(words[i].lower())
        if cls is None:
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        hard, soft = memtoull(words[i + 1]), memtoull(words[i + 2])
        seconds = _strtoll_whole(words[i + 3])
        if hard is None or soft is None or seconds is None or seconds < 0:
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit "
                              "configuration.")
        limits[cls] = [str(hard), str(soft), str(seconds)]
    return " ".join(" ".join([cls] + limits[cls]) for cls in ("normal", "slave", "pubsub"))


def _format_percentile(x: float) -> str:
    text = f"{x:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _parse_special(p: Param, text: str, words: list[str], current: str) -> str:
    if p.name == "save":
        if len(words) % 2 or any(
                (n := _strtoll_whole(w)) is None or n < (1 if i % 2 == 0 else 0)
                for i, w in enumerate(words)):
            raise ConfigError("Invalid save parameters")
        # The number of changes is a C int.
        pairs = [(_strtoll_whole(words[i]), (_strtoll_whole(words[i + 1]) + 2**31) % 2**32 - 2**31)
                 for i in range(0, len(words), 2)]
        return " ".join(f"{s} {c}" for s, c in pairs)
    if p.name == "client-output-buffer-limit":
        return _parse_obuf_limits(words, current)
    if p.name == "oom-score-adj-values":
        if len(words) != 3:
            raise ConfigError("wrong number of arguments")
        values = [_strtoll_whole(w) for w in words]
        if any(v is None or not -2000 <= v <= 2000 for v in values) or "" in words:
            raise ConfigError("Invalid oom-score-adj-values, elements must be between -2000 "
                              "and 2000.")
        return " ".join(map(str, values))
    if p.name == "notify-keyspace-events":
        return _parse_keyspace_events(text)
    if p.name == "bind":
        if len(words) > 16:
            raise ConfigError("Too many bind addresses specified.")
        return " ".join(words)
    if p.name == "latency-tracking-info-percentiles":
        out = []
        for w in words:
            if not _STRING2D.match(w):
                raise ConfigError("Invalid latency-tracking-info-percentiles parameters")
            x = float(w)
            if not 0.0 <= x <= 100.0:
                raise ConfigError("latency-tracking-info-percentiles parameters should sit "
                                  "between [0.0,100.0]")
            out.append(_format_percentile(x))
        return " ".join(out)
    return text


def parse_value(p: Param, raw: bytes, current: str | None = None) -> str:
    """The value CONFIG GET will print after `CONFIG SET <p> raw`; ConfigError if Redis
    refuses it."""
    text = raw.decode("utf-8", "surrogateescape")
    # sdssplitlen: single spaces separate words, "" is no word at all.
    words = text.split(" ") if text else []
    if p.kind == "bool":
        if text.lower() not in ("yes", "no"):
            raise ConfigError("argument must be 'yes' or 'no'")
        if p.name == "activedefrag" and text.lower() == "yes":
            raise ConfigError("Active defragmentation cannot be enabled: it requires a Redis "
                              "server compiled with a modified Jemalloc like the one shipped "
                              "by default with the Redis source distribution")
        return text.lower()
    if p.kind == "number":
        return _parse_number(p, text)
    if p.kind == "enum":
        return _parse_enum(p, words if p.multi_arg else [text])
    if p.kind == "string":
        return _parse_string(p, text)
    return _parse_special(p, text, words, current if current is not None else p.default)


# -- CONFIG GET / SET over a set of values ------------------------------------------------

def setting(values: Mapping[str, str] | None, name: str) -> str:
    """A parameter's value in `values` (a node's, as CONFIG GET prints it), or Redis's
    default when there are none."""
    return values[name] if values is not None else PARAMS[name].default


class RedisConfig:
    """Every parameter's current value.

    `readers` give the value of the parameters the node itself holds (a callable giving
    the text); CONFIG SET refuses those in `read_only` as immutable, and calls
    `on_set(name, value)` for every parameter it changed once all of them were accepted."""

    def __init__(self, readers: dict[str, Callable[[], str]] | None = None,
                 read_only: Iterable[str] = (),
                 on_set: Callable[[str, str], None] | None = None):
        self.values: dict[str, str] = {p.name: p.default for p in _TABLE}
        self.readers = readers or {}
        self.read_only = frozenset(read_only)
        self.on_set = on_set

    def value(self, name: str) -> str:
        reader = self.readers.get(name)
        return reader() if reader is not None else self.values[name]

    def int_value(self, name: str) -> int:
        return int(self.value(name))

    def get(self, patterns: Iterable[bytes]) -> list[bytes]:
        """CONFIG GET: (name, value) pairs, flattened, each parameter once."""
        matches: dict[str, tuple[str, Param]] = {}   # lower-case listed name -> (as shown, p)
        for raw in patterns:
            pattern = raw.decode("utf-8", "surrogateescape")
            if not any(c in pattern for c in "[*?"):
                found = _NAMES.get(pattern.lower())
                if found is not None and pattern.lower() not in matches:
                    matches[pattern.lower()] = (pattern, found[0])
                continue
            for listed, (p, shown) in _NAMES.items():
                if p.hidden or listed in matches:
                    continue
                if glob_match(raw.lower(), shown.encode()):
                    matches[listed] = (shown, p)
        reply = []
        for shown, p in matches.values():
            reply += [shown.encode("utf-8", "surrogateescape"), self.value(p.name).encode(
                "utf-8", "surrogateescape")]
        return reply

    def set(self, args: list[bytes]) -> None:
        """CONFIG SET name value [name value ...]: all or nothing, with Redis's errors."""
        if len(args) % 2:
            raise RespError(SYNTAX)
        chosen: list[tuple[Param, str, bytes]] = []
        error = None
        for i in range(0, len(args), 2):
            name = args[i].decode("utf-8", "surrogateescape")
            found = _NAMES.get(name.lower())
            if found is None:
                if error is None:
                    raise RespError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                                    f"'{name}'")
                continue
            if error is not None:
                continue
            p, shown = found
            if p.immutable or p.name in self.read_only:
                error = (name, "can't set immutable config")
            elif p.protected:
                error = (name, "can't set protected config")
            elif any(shown == s for _, s, _ in chosen):
                error = (name, "duplicate parameter")
            chosen.append((p, shown, args[i + 1]))
        if error is not None:
            raise RespError(f"ERR CONFIG SET failed (possibly related to argument '{error[0]}') "
                            f"- {error[1]}")
        staged = dict(self.values)
        staged.update((p.name, self.value(p.name)) for p, _, _ in chosen)
        changed = []
        for p, shown, raw in chosen:
            try:
                staged[p.name] = parse_value(p, raw, staged[p.name])
            except ConfigError as e:
                raise RespError(f"ERR CONFIG SET failed (possibly related to argument '{shown}') "
                                f"- {e}") from None
            changed.append(p.name)
        # In place: partitions' KeyspaceOptions refer to this mapping.
        self.values.update(staged)
        if self.on_set is not None:
            for name in dict.fromkeys(changed):
                self.on_set(name, staged[name])
