"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis eval.c, script_lua.c).

Node-level commands: the node's `zan.node.scripts.Scripts` keeps the script cache and
runs scripts (Lua through `zan.scripting`); these rows give them their names, arities
and flags in the command table.

On a replicated node a script travels to the leader of its keys' partition as the
internal ``zan.script`` (run there by `zan.node.replicated_scripts`, never through the
log), and its writes come back to the log as one ``zan.effects`` entry: the digests of
its keys before it ran and the records it changed.  Every replica applies that entry
the same way: if a key's digest differs now (a write came in between), nothing changes
and the reply is 0, and the leader runs the script again; otherwise the records are
written and the reply is 1.  A collection the script created carries a placeholder
version (`SCRIPT_VERSION` plus the ordinal of the call that created it), which the
entry replaces by its own index, as any command entry's versions are made.
"""

from __future__ import annotations

from functools import partial

import msgpack

from zan.commands.table import (
    INTERNAL, MOVABLEKEYS, NOSCRIPT, READONLY, REGISTRY, STALE, WRITE, Route, command,
)
from zan.commands.transactions import COMMAND_VERSION_SHIFT, checked_entry
from zan.commands.util import check_subcommand, help_reply
from zan.errors import RespError
from zan.store.codec import (
    HASH_ELEM, META, META_HEADER, decode_elem_key, decode_meta_header, elem_prefix, encode_meta,
)
from zan.store.keyspace import Txn

_SCRIPTING = dict(route=Route.SERVER, group="scripting")
_EVAL_FLAGS = (NOSCRIPT, STALE, MOVABLEKEYS)


@command("eval", -3, _EVAL_FLAGS, summary="Execute a Lua script server side", since="2.6.0",
         **_SCRIPTING)
def eval_(server, client, args):
    return server.scripts.eval(client, args, read_only=False)


@command("eval_ro", -3, _EVAL_FLAGS, summary="Execute a read-only Lua script server side",
         since="7.0.0", **_SCRIPTING)
def eval_ro(server, client, args):
    return server.scripts.eval(client, args, read_only=True)


@command("evalsha", -3, _EVAL_FLAGS, summary="Execute a Lua script server side",
         since="2.6.0", **_SCRIPTING)
def evalsha(server, client, args):
    return server.scripts.evalsha(client, args, read_only=False)


@command("evalsha_ro", -3, _EVAL_FLAGS, summary="Execute a read-only Lua script server side",
         since="7.0.0", **_SCRIPTING)
def evalsha_ro(server, client, args):
    return server.scripts.evalsha(client, args, read_only=True)


def _in_exec(method: str, read_only: bool, server, client, args, staged):
    """The command inside EXEC: the script runs on the transaction's staged view, its
    writes part of the transaction's record (`zan.node.transaction`)."""
    return getattr(server.scripts, method)(client, args, read_only=read_only, staged=staged)


for _name, _method, _read_only in (("eval", "eval", False), ("eval_ro", "eval", True),
                                   ("evalsha", "evalsha", False),
                                   ("evalsha_ro", "evalsha", True)):
    REGISTRY[_name].extra["staged"] = partial(_in_exec, _method, _read_only)


# SCRIPT's subcommands and their arities in Redis (the command and subcommand counted).
_SCRIPT_ARITY = {b"LOAD": 3, b"EXISTS": -3, b"FLUSH": -2, b"KILL": 2, b"HELP": 2}
_SCRIPT_HELP = [
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
]


@command("script", -2, (NOSCRIPT,), summary="A container for Lua scripts management commands",
         since="2.6.0", **_SCRIPTING)
def script(server, client, args):
    check_subcommand("script", _SCRIPT_ARITY, args)
    sub = args[0].upper()
    scripts = server.scripts
    if sub == b"LOAD":
        return scripts.load(args[1])
    if sub == b"EXISTS":
        return scripts.exists(args[1:])
    if sub == b"FLUSH":
        if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
            raise RespError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
        return scripts.flush()
    if sub == b"KILL":
        raise RespError("NOTBUSY No scripts in execution right now.")
    return help_reply("SCRIPT", _SCRIPT_HELP)


# -- a script on a replicated node ------------------------------------------------------

# The versions a script gives the collections it creates, before its entry has an index:
# this bit plus the ordinal of the call that created one.  No version in a database
# has it (an index is far below 2**63, a string's write time in nanoseconds too).
SCRIPT_VERSION = 1 << 63


@command("zan.script", -4, (READONLY,), internal=True,
         summary="Run a script as the leader of its keys' partition")
def run_script(txn: Txn, args: list[bytes]):
    # Never run as a partition read: the dispatcher hands it to the node's scripts
    # (extra["here"]), which run it at a read point and propose its effects.
    raise RespError("ERR zan.script runs on a partition leader only")


def encode_effects(digests: list[tuple[bytes, bytes]], records: dict[bytes, bytes | None],
                   ) -> bytes:
    """The argument of ``zan.effects``: (pk, digest before the script) of each key the
    script declared, and the records it put (value) and deleted (None)."""
    flat: list = []
    for key, value in records.items():
        flat += (key, value)
    return msgpack.packb([[list(d) for d in digests], flat], use_bin_type=True)


def _settled(version: int, index: int) -> int:
    return index + ((version ^ SCRIPT_VERSION) << COMMAND_VERSION_SHIFT)


def _with_index(key: bytes, value: bytes | None, index: int) -> tuple[bytes, bytes | None]:
    """A record of a script's effects with its placeholder versions made real."""
    tag = key[:1]
    if tag >= HASH_ELEM:
        tag, pk, version, suffix = decode_elem_key(key)
        if version & SCRIPT_VERSION:
            key = elem_prefix(tag, pk, _settled(version, index)) + suffix
    elif tag == META and value is not None:
        type_, expire_at, version = decode_meta_header(value)
        if version & SCRIPT_VERSION:
            value = encode_meta(type_, expire_at, _settled(version, index),
                                value[META_HEADER.size:])
    return key, value


@command("zan.effects", 2, (WRITE,), internal=True,
         summary="A script's writes, applied if its keys are as it saw them")
def apply_effects(txn: Txn, args: list[bytes]):
    from zan.store.statemachine import count_changes   # (it imports the command table)
    unchanged, flat = checked_entry(txn, args[0], "script effects")
    if not unchanged:
        return 0
    pairs = [_with_index(key, value, txn.index) for key, value in zip(flat[0::2], flat[1::2])]
    keys_delta, expires_delta = count_changes(pairs, txn.get)
    txn.changes.update(pairs)
    txn.keys_delta += keys_delta
    txn.expires_delta += expires_delta
    return 1


def _on_leader(node, partition, args):
    return node.scripts.on_leader(partition, args)


INTERNAL["zan.script"].extra["here"] = _on_leader
