"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (Redis eval.c, script_lua.c).

Node-level commands: the node's `zan.node.scripts.Scripts` keeps the script cache and
runs scripts (Lua through `zan.scripting`); these rows give them their names, arities
and flags in the command table.
"""

from __future__ import annotations

from functools import partial

from zan.commands.table import MOVABLEKEYS, NOSCRIPT, REGISTRY, STALE, Route, command
from zan.commands.util import check_subcommand, help_reply
from zan.errors import RespError

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

