"""MULTI, EXEC, DISCARD, WATCH and UNWATCH (Redis multi.c).

Node-level commands: the node's `zan.node.transaction.Transactions` keeps each
connection's queue and watched keys and runs EXEC; these rows give them their names,
arities and flags in the command table.
"""

from __future__ import annotations

from zan.commands.table import FAST, LOADING, NOSCRIPT, STALE, Route, command

_TXN = dict(route=Route.SERVER, group="transactions")


@command("multi", 1, (NOSCRIPT, LOADING, STALE, FAST), summary="Start a transaction block",
         since="1.2.0", **_TXN)
def multi(server, client, args):
    return server.transactions.multi(client)


@command("exec", 1, (NOSCRIPT, LOADING, STALE), summary="Execute all commands issued after MULTI",
         since="1.2.0", **_TXN)
def exec_(server, client, args):
    return server.transactions.exec(client)


@command("discard", 1, (NOSCRIPT, LOADING, STALE, FAST),
         summary="Discard all commands issued after MULTI", since="2.0.0", **_TXN)
def discard(server, client, args):
    return server.transactions.discard(client)


@command("watch", -2, (NOSCRIPT, LOADING, STALE, FAST),
         summary="Watch the given keys to determine execution of the MULTI/EXEC block",
         since="2.2.0", first_key=1, last_key=-1, key_step=1, **_TXN)
def watch(server, client, args):
    return server.transactions.watch(client, args)


@command("unwatch", 1, (NOSCRIPT, LOADING, STALE, FAST),
         summary="Forget about all watched keys", since="2.2.0", **_TXN)
def unwatch(server, client, args):
    return server.transactions.unwatch(client)
