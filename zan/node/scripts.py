"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT on a standalone node, as Redis 7.0 has them.

The node keeps one Lua runtime (`zan.scripting.engine`) and a cache of the scripts it
has compiled, by SHA1 of their body: volatile, emptied by SCRIPT FLUSH and by a restart.
A script runs in one go on the reactor thread, like EXEC (`zan.node.transaction`): the
node's partitions are settled (every pending write applied), then each ``redis.call``
runs on the transaction's staged view of the partitions its keys live in, seeing the
script's earlier writes; at the end each changed partition gets its share of the
script's writes, all in one log record, and the script is answered once they are
applied.  The log carries the writes' effects, never the script, so nothing is re-run
at replay.  As in Redis, a script that fails halfway keeps the writes it made before,
and keys it did not declare in KEYS are allowed.

On a replicated node a script runs on the leader of its keys' partition and reaches
the log as its effects: see `zan.node.replicated_scripts`.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel

from zan.commands.table import NOSCRIPT, REGISTRY
from zan.errors import RespError
from zan.node.replicated_scripts import ReplicatedScripts
from zan.resp.types import OK
from zan.scripting.engine import LuaEngine, sha1hex

__all__ = ["Scripts", "split_keys"]

_SHEBANG_FLAGS = frozenset((b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster",
                            b"allow-cross-slot-keys"))
# redis.LOG_DEBUG, LOG_VERBOSE, LOG_NOTICE, LOG_WARNING
_LOG_LEVELS = (LogLevel.debug, LogLevel.info, LogLevel.info, LogLevel.warn)


class _Script:
    __slots__ = ("sha", "body", "function", "flags")

    def __init__(self, sha: str, body: bytes, function, flags: frozenset[bytes] | None):
        self.sha = sha
        self.body = body
        self.function = function
        self.flags = flags        # of its shebang; None without one

    @property
    def no_writes(self) -> bool:
        return self.flags is not None and b"no-writes" in self.flags


class Scripts:
    _log = Logger()

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher
        self._engine: LuaEngine | None = None
        self._cache: dict[str, _Script] = {}
        self._replicated = ReplicatedScripts(self, dispatcher)

    @property
    def engine(self) -> LuaEngine:
        if self._engine is None:     # a node that never runs a script never starts Lua
            version = getattr(self._dispatcher.server, "redis_version", "7.0.0")
            self._engine = LuaEngine(version=version, log=self._lua_log)
        return self._engine

    def _lua_log(self, level: int, text: str) -> None:
        self._log.emit(_LOG_LEVELS[level], "script: {text}", text=text)

    # -- the commands ------------------------------------------------------------------

    def eval(self, client, args: list[bytes], *, read_only: bool, staged=None) -> Any:
        """EVAL / EVAL_RO; inside EXEC, `staged` is the transaction's view."""
        script = self._load(args[0])
        return self._run(client, script, args[1:], read_only, staged)

    def evalsha(self, client, args: list[bytes], *, read_only: bool, staged=None) -> Any:
        sha = args[0].decode("latin-1").lower()
        script = self._cache.get(sha)
        if script is None:
            raise RespError("NOSCRIPT No matching script. Please use EVAL.")
        return self._run(client, script, args[1:], read_only, staged)

    def load(self, body: bytes) -> bytes:
        return self._load(body).sha.encode()

    def exists(self, shas: list[bytes]) -> list[int]:
        return [int(sha.decode("latin-1").lower() in self._cache) for sha in shas]

    def flush(self) -> Any:
        self._cache.clear()
        return OK

    # -- compiling ---------------------------------------------------------------------

    def _load(self, body: bytes) -> _Script:
        sha = sha1hex(body)
        script = self._cache.get(sha)
        if script is None:
            code, flags = _shebang(body)
            script = self._cache[sha] = _Script(sha, body, self.engine.compile(code), flags)
        return script

    def on_leader(self, partition, args: list[bytes]):
        """``zan.script ro|rw body numkeys key ... arg ...`` reaching its partition's
        leader (a replicated node); the leader caches the script too."""
        script = self._load(args[1])
        keys, argv = split_keys(args[2:])
        return self._replicated.on_leader(partition, script, keys, argv, args[0] == b"ro")

    # -- running -----------------------------------------------------------------------

    def _run(self, client, script: _Script, args: list[bytes], read_only: bool,
             staged) -> Any:
        keys, argv = split_keys(args)
        if read_only and script.flags is not None and not script.no_writes:
            raise RespError("ERR Can not execute a script with write flag using *_ro command.")
        d = self._dispatcher
        if not d.local_partitions:
            return self._replicated.run(client, script, keys, argv, read_only)
        own = staged is None
        if own:
            staged = d.transactions.stage({(p.namespace, p.pid): p
                                           for p in d.partitions.partitions()})
        reply = self.run_calls(client, script, keys, argv, read_only, staged)
        if not own:
            return reply
        done = staged.commit()
        if done is None:
            return reply
        return done.addCallback(lambda _: reply)

    def run_calls(self, client, script: _Script, keys: list[bytes], argv: list[bytes],
                  read_only: bool, staged, check=None) -> Any:
        """Run the script once, its calls on `staged` (None: a script that may call no
        keyed command); `check(spec, argv)` may refuse a call (a replicated node's key
        rules).  Its reply: an error reply is a value."""
        d = self._dispatcher
        transactions = d.transactions
        no_writes = read_only or script.no_writes

        def call(cargv: list[bytes]) -> Any:
            spec = _script_command(cargv)
            if spec.name in d.special:
                # Cursors and key listings keep node-level state outside the keyspace.
                raise RespError(f"ERR {spec.name.upper()} is not supported inside scripts")
            if spec.is_write and no_writes:
                raise RespError("ERR Write commands are not allowed from read-only scripts.")
            if check is not None:
                check(spec, cargv)
            plan = transactions.plan(spec, cargv)
            return plan.run(transactions, client, staged,
                            staged.step() if staged is not None else 0)

        return self.engine.run(script.function, script.sha, keys, argv, call)


def _script_command(argv: list[bytes]):
    """The spec of a command a script calls, checked as Redis checks it there."""
    try:
        name = argv[0].decode("utf-8").lower()
    except UnicodeDecodeError:
        name = ""
    spec = REGISTRY.get(name)
    if spec is None:
        raise RespError("ERR Unknown Redis command called from script")
    argc = len(argv)
    if (spec.arity > 0 and argc != spec.arity) or (spec.arity < 0 and argc < -spec.arity):
        raise RespError("ERR Wrong number of args calling Redis command from script")
    if NOSCRIPT in spec.flags:
        raise RespError("ERR This Redis command is not allowed from script")
    return spec


def split_keys(args: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """KEYS and ARGV from ``numkeys key ... arg ...``."""
    try:
        numkeys = int(args[0])
    except ValueError:
        raise RespError("ERR value is not an integer or out of range") from None
    if numkeys > len(args) - 1:
        raise RespError("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        raise RespError("ERR Number of keys can't be negative")
    return list(args[1:1 + numkeys]), list(args[1 + numkeys:])


def _shebang(body: bytes) -> tuple[bytes, frozenset[bytes] | None]:
    """The code to compile (the shebang line left empty, so line numbers hold) and the
    flags the shebang declares (None: no shebang)."""
    if not body.startswith(b"#!"):
        return body, None
    line, newline, rest = body.partition(b"\n")
    words = line.split()
    engine = words[0]
    if engine != b"#!lua":
        raise RespError(f"ERR Unexpected engine in script shebang: {engine.decode('utf-8', 'replace')}")
    flags: set[bytes] = set()
    for word in words[1:]:
        if not word.startswith(b"flags="):
            raise RespError(f"ERR Unknown lua shebang option: {word.decode('utf-8', 'replace')}")
        for flag in word[len(b"flags="):].split(b","):
            if flag and flag not in _SHEBANG_FLAGS:
                raise RespError(
                    f"ERR Unexpected flag in script shebang: {flag.decode('utf-8', 'replace')}")
            flags.add(flag)
    return newline + rest, frozenset(flags)
