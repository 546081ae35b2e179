"""The command table: every command Zan knows, declared once, as data.

Each family module (`zan.commands.strings`, `hash`, `list`, `set`, `zset`, `keys`,
`server`) declares its commands with the `command` decorator; importing
`zan.commands.registry` loads them all.  Dispatch uses the table in Redis's order:
existence → arity → routing → execute (read) or propose (write) → reply; COMMAND
INFO/DOCS/COUNT are generated from it.

Handler signatures, by `route`:

* ``KEY``, ``MULTI_KEY``, ``SAME_PARTITION``: ``handler(txn, args) -> reply`` where `args`
  is argv without the command name and with every key replaced by its primary key inside
  the namespace.  The handler runs on one partition.  For writes it runs at *apply* time:
  it must not read a clock or a random source other than ``txn.now_ms`` / ``txn.rng``.
* ``ALL_PARTITIONS``: a partition-level handler as above; the node runs it on every
  partition and the spec's ``merge`` combines the replies (see `zan.node.router`).
* ``SERVER``: ``handler(server, client, args) -> reply``: node-level, never replicated.

Arity follows Redis: positive means exactly that many words (the name included),
negative means at least that many.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from zan.errors import RespError, wrong_arity

__all__ = ["Route", "CommandSpec", "command", "REGISTRY", "INTERNAL", "spec_named",
           "lookup_command", "check_arity",
           "WRITE", "READONLY", "FAST", "DENYOOM", "ADMIN", "NOSCRIPT", "LOADING", "STALE",
           "NO_AUTH", "RANDOM", "MOVABLEKEYS"]

# Flags, spelled as COMMAND INFO prints them.
WRITE = "write"
READONLY = "readonly"
FAST = "fast"
DENYOOM = "denyoom"
ADMIN = "admin"
NOSCRIPT = "noscript"
LOADING = "loading"
STALE = "stale"
NO_AUTH = "no_auth"
RANDOM = "random"
MOVABLEKEYS = "movablekeys"


class Route(enum.Enum):
    SERVER = "server"                  # not routed: node-level
    KEY = "key"                        # one key at args[0]
    MULTI_KEY = "multi_key"            # keys split by partition, replies merged
    SAME_PARTITION = "same_partition"  # several keys that must share a partition
    ALL_PARTITIONS = "all_partitions"  # runs on every partition (DBSIZE-like, scans)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    arity: int
    flags: tuple[str, ...]
    handler: Callable[..., Any]
    route: Route = Route.KEY
    first_key: int = 1
    last_key: int = 1
    key_step: int = 1
    group: str = "generic"             # COMMAND DOCS group (string, hash, list, ...)
    summary: str = ""
    since: str = "1.0.0"
    # MULTI_KEY / ALL_PARTITIONS: combine per-partition replies.  For MULTI_KEY it gets
    # [(positions of the key groups sent to that partition, reply), ...] and the number
    # of key groups; for ALL_PARTITIONS the list of replies.
    merge: Callable[..., Any] | None = None
    # The stale.* twin of a read command may be served by a follower.
    allow_stale: bool = False
    # Commands like SINTERCARD name their key count at this argv position; the keys follow it.
    numkeys_at: int = 0
    # "key_positions": f(argv) -> positions of the keys, for commands whose keys
    # options name (SORT ... STORE dst).  "logged": see `is_write`.
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_write(self) -> bool:
        """Does the command run through the log (at apply time, on every replica)?  Every
        `write` command does; so does a `readonly` one whose spec sets
        ``extra["logged"]`` because it may still change its key (PFCOUNT stores the count
        it computes in the value, as Redis does), which keeps Redis's flags in COMMAND
        INFO while ordering and replicating it like a write."""
        return WRITE in self.flags or self.extra.get("logged", False)

    def key_positions_of(self, argv: list[bytes]) -> range | list[int]:
        """Positions in argv (name = 0) of the keys of this call.  With a key count, the
        keys it counts follow a destination key placed before the count, if any
        (ZUNIONSTORE dst numkeys key ...).  An invalid key count yields no counted keys:
        the handler reports it."""
        custom = self.extra.get("key_positions")
        if custom is not None:
            return custom(argv)
        if self.numkeys_at:
            before = [pos for pos in self.key_positions(len(argv)) if pos < self.numkeys_at]
            try:
                n = int(argv[self.numkeys_at])
            except (ValueError, IndexError):
                return before
            start = self.numkeys_at + 1
            if n < 1 or start + n > len(argv):
                return before
            return before + list(range(start, start + n))
        return self.key_positions(len(argv))

    def key_positions(self, argc: int) -> range:
        """Positions in argv (name = 0) of the keys of a call with `argc` words."""
        if self.first_key <= 0:
            return range(0)
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        # A call too short to hold its key (OBJECT HELP) has none.
        return range(self.first_key, min(last, argc - 1) + 1, self.key_step)


REGISTRY: dict[str, CommandSpec] = {}
# Partition-level commands nodes send one another (a transaction as one log entry, the
# state of a watched key): never reachable from a client, absent from COMMAND.
INTERNAL: dict[str, CommandSpec] = {}


def spec_named(name: str) -> CommandSpec | None:
    """The spec a log entry or a forwarded command names: a client command or an
    internal one."""
    return REGISTRY.get(name) or INTERNAL.get(name)


def command(name: str, arity: int, flags: tuple[str, ...] | str = (), *,
            route: Route = Route.KEY, first_key: int = 1, last_key: int = 1,
            key_step: int = 1, group: str = "generic", summary: str = "",
            since: str = "1.0.0", merge=None, allow_stale: bool = False, numkeys_at: int = 0,
            internal: bool = False):
    """Register the decorated function as the handler of `name` (lower case); an
    `internal` command only in `INTERNAL`."""
    if isinstance(flags, str):
        flags = tuple(flags.split())

    def register(handler):
        key = name.lower()
        if key in REGISTRY or key in INTERNAL:
            raise ValueError(f"command {key!r} declared twice")
        if route is Route.SERVER:
            fk, lk, ks = (0, 0, 0) if first_key == 1 and last_key == 1 else (first_key, last_key, key_step)
        else:
            fk, lk, ks = first_key, last_key, key_step
        table = INTERNAL if internal else REGISTRY
        table[key] = CommandSpec(
            name=key, arity=arity, flags=tuple(flags), handler=handler, route=route,
            first_key=fk, last_key=lk, key_step=ks, group=group, summary=summary,
            since=since, merge=merge, allow_stale=allow_stale, numkeys_at=numkeys_at)
        return handler

    return register


def lookup_command(argv: list[bytes]) -> CommandSpec:
    """The spec for argv[0], or Redis's unknown-command error."""
    try:
        name = argv[0].decode("utf-8").lower()
    except UnicodeDecodeError:
        name = None
    spec = REGISTRY.get(name) if name is not None else None
    if spec is None:
        raise RespError(_unknown_command_text(argv))
    return spec


def _unknown_command_text(argv: list[bytes]) -> str:
    # Redis: "ERR unknown command '%.128s', with args beginning with: '%.128s' ..."
    name = argv[0][:128].decode("utf-8", "replace")
    tail = "".join(f"'{a[:128].decode('utf-8', 'replace')}' " for a in argv[1:])
    return f"ERR unknown command '{name}', with args beginning with: {tail}"


def check_arity(spec: CommandSpec, argc: int) -> None:
    if (spec.arity > 0 and argc != spec.arity) or (spec.arity < 0 and argc < -spec.arity):
        raise wrong_arity(spec.name)
