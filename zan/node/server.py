"""What server-level commands (INFO, CONFIG, CLIENT ...) see of the node."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time

from zan import __version__
from twisted.internet.defer import FirstError, gatherResults, maybeDeferred
from twisted.logger import Logger

from zan.commands.introspection import debug_object_line
from zan.commands.redis_config import RedisConfig
from zan.errors import RespError

__all__ = ["ServerContext", "REDIS_VERSION"]

# The Redis version whose behaviour we reproduce; clients use it to pick features.
REDIS_VERSION = "7.0.0"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ServerContext:
    redis_version = REDIS_VERSION
    _log = Logger()

    def __init__(self, node):
        self._node = node
        self.stats_reset_clients = 0
        self.redis_config = self._build_config()

    def seconds(self) -> float:
        """The node's clock (TIME)."""
        return self._node.reactor.seconds()

    @property
    def requirepass(self) -> str:
        return self._node.settings.get("requirepass", "")

    @property
    def transactions(self):
        """MULTI/EXEC/WATCH of the node's connections (`zan.node.transaction`)."""
        return self._node.dispatcher.transactions

    @property
    def scripts(self):
        """EVAL and SCRIPT: the node's script cache and Lua runtime (`zan.node.scripts`)."""
        return self._node.dispatcher.scripts

    # -- CLIENT ----------------------------------------------------------------------

    @property
    def clients(self) -> list:
        factory = self._node.resp_factory
        return [proto.client for proto in factory.connections.values()] if factory else []

    @property
    def connections_received(self) -> int:
        # Client ids are handed out in order from 1, so the newest id counts them.
        factory = self._node.resp_factory
        newest = max((c.id for c in self.clients), default=0)
        return max(newest, getattr(factory, "highest_id", 0)) - self.stats_reset_clients

    def client_info(self, client) -> bytes:
        now = self._node.reactor.seconds()
        fields = [
            ("id", client.id), ("addr", client.addr), ("laddr", self._node.redis_address),
            ("fd", 0), ("name", (client.name or b"").decode("utf-8", "replace")),
            ("age", int(now - client.created)), ("idle", 0), ("flags", "N"), ("db", 0),
            ("sub", 0), ("psub", 0), ("ssub", 0),
            ("multi", len(client.extra["multi"]) if "multi" in client.extra else -1),
            ("cmd", "client|info"),
            ("lib-name", (client.lib_name or b"").decode("utf-8", "replace")),
            ("lib-ver", (client.lib_ver or b"").decode("utf-8", "replace")),
        ]
        return (" ".join(f"{k}={v}" for k, v in fields) + "\n").encode()

    def client_list(self) -> bytes:
        return b"".join(self.client_info(c) for c in self.clients)

    # -- CONFIG ----------------------------------------------------------------------

    def _build_config(self) -> RedisConfig:
        """Redis's parameters: a few read from the node or honoured by it, the others
        remembered only (conf/README.md, "Redis parameters")."""
        node = self._node
        s = node.settings
        readers = {
            "bind": lambda: node.config.redis_api_host,
            "port": lambda: str(node.config.redis_api_port),
            "dir": lambda: os.path.abspath(node.config.data_dir),
            "databases": lambda: "1",
            "enable-debug-command": lambda: "yes",
            "maxclients": lambda: str(s["maxclients"]),
            "timeout": lambda: str(s["timeout"]),
            "requirepass": lambda: s["requirepass"],
            "proto-max-bulk-len": lambda: str(self._max_bulk_len()),
        }
        return RedisConfig(readers, read_only=("bind", "port", "databases"),
                           on_set=self._config_changed)

    def _max_bulk_len(self) -> int:
        factory = self._node.resp_factory
        return factory.max_bulk_len if factory is not None else \
            self._node.config.proto_max_bulk_len

    def _config_changed(self, name: str, value: str) -> None:
        s = self._node.settings
        if name in ("maxclients", "timeout"):
            s[name] = int(value)
            self._node.settings_changed(name)
        elif name == "requirepass":
            s[name] = value
        elif name == "proto-max-bulk-len":
            # Connections opened from now on parse with the new limit.
            self._node.resp_factory.max_bulk_len = int(value)

    def config_get(self, patterns: list[bytes]) -> list[bytes]:
        return self.redis_config.get(patterns)

    def config_set(self, args: list[bytes]) -> None:
        self.redis_config.set(args)

    # -- DEBUG -----------------------------------------------------------------------

    def debug_sleep(self, seconds: float) -> None:
        """DEBUG SLEEP: the whole node stops serving for that long, as Redis does."""
        if seconds > 0:
            self._log.info("DEBUG SLEEP {seconds}s: the node does not serve meanwhile",
                           seconds=seconds)
            time.sleep(seconds)

    def set_active_expire(self, enabled: bool) -> None:
        self._node.active_expire = enabled

    def reload_storage(self):
        return self._node.reload_storage()

    def debug_object(self, client, key: bytes):
        """DEBUG OBJECT: OBJECT ENCODING and REFCOUNT, TYPE and STRLEN, each read through
        the key's partition as a client's command would be."""
        def read(*argv):
            return maybeDeferred(self._node.dispatcher.dispatch, client, list(argv))

        def line(results):
            encoding, refcount, type_ = results
            if encoding is None:
                raise RespError("ERR no such key")
            # Only a string's serialized length is known here: its length.
            length = read(b"STRLEN", key) if bytes(type_) == b"string" else 0
            return maybeDeferred(lambda: length).addCallback(
                lambda n: debug_object_line(encoding, refcount, n))

        replies = [read(b"OBJECT", b"ENCODING", key), read(b"OBJECT", b"REFCOUNT", key),
                   read(b"TYPE", key)]
        return gatherResults(replies, consumeErrors=True).addCallbacks(
            line, lambda f: f.trap(FirstError) and f.value.subFailure)

    def reset_stats(self) -> None:
        self._node.dispatcher.commands_processed = 0
        self.stats_reset_clients += self.connections_received

    # -- INFO ------------------------------------------------------------------------

    def info_text(self, sections: list[str]) -> bytes:
        node = self._node
        now = node.reactor.seconds()
        uptime = int(now - node.started_at)
        keys, expires = node.keyspace_counts()
        all_sections = {
            "server": [
                ("redis_version", REDIS_VERSION), ("zan_version", __version__),
                ("redis_mode", "standalone"), ("os", f"{platform.system()} {platform.release()} "
                                                   f"{platform.machine()}"),
                ("arch_bits", "64" if sys.maxsize > 2**32 else "32"),
                ("multiplexing_api", "epoll"), ("process_id", os.getpid()),
                ("run_id", node.run_id), ("tcp_port", node.config.redis_api_port),
                ("uptime_in_seconds", uptime), ("uptime_in_days", uptime // 86400),
                ("executable", sys.argv[0]),
            ],
            "clients": [("connected_clients", len(self.clients)),
                        ("maxclients", node.settings["maxclients"])],
            "memory": [("used_memory", _rss_bytes()), ("used_memory_rss", _rss_bytes()),
                       ("maxmemory", self.redis_config.value("maxmemory")),
                       ("maxmemory_policy", self.redis_config.value("maxmemory-policy"))],
            "persistence": [("loading", 0), ("aof_enabled", 0), ("rdb_changes_since_last_save", 0)],
            "stats": [("total_connections_received", self.connections_received),
                      ("total_commands_processed", node.dispatcher.commands_processed),
                      ("log_syncs", node.log_syncs())],
            "replication": [("role", "master"), ("connected_slaves", 0)],
            "cpu": [("used_cpu_sys", f"{resource.getrusage(resource.RUSAGE_SELF).ru_stime:.6f}"),
                    ("used_cpu_user", f"{resource.getrusage(resource.RUSAGE_SELF).ru_utime:.6f}")],
            "cluster": [("cluster_enabled", 0)],
            "keyspace": ([("db0", f"keys={keys},expires={expires},avg_ttl=0")] if keys else []),
        }
        wanted = [s for s in sections if s not in ("all", "everything", "default")]
        names = list(all_sections) if not wanted else [s for s in all_sections if s in wanted]
        out = []
        for name in names:
            out.append(f"# {name.capitalize()}")
            out.extend(f"{k}:{v}" for k, v in all_sections[name])
            out.append("")
        return "\r\n".join(out).rstrip("\r\n").encode() + b"\r\n"
