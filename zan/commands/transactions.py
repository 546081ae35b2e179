"""MULTI, EXEC, DISCARD, WATCH and UNWATCH (Redis multi.c).

Node-level commands: the node's `zan.node.transaction.Transactions` keeps each
connection's queue and watched keys and runs EXEC; these rows give them their names,
arities and flags in the command table.

On a replicated node a transaction over one partition travels as one log entry, the
internal ``zan.exec``: the watched keys' digests as WATCH saw them, and the queued
commands.  Every replica applies it the same way: if a watched key's digest differs
now, nothing runs and the reply is a null array; otherwise each command runs in turn on
a Txn over the writes of those before it, so a command that fails (WRONGTYPE) leaves the
others' writes as they are.  ``zan.keydigest`` is WATCH's read of a key's digest.
"""

from __future__ import annotations

from typing import Any

import msgpack

from zan.commands.table import (
    FAST, LOADING, NOSCRIPT, READONLY, STALE, WRITE, Route, command, spec_named,
)
from zan.errors import RespError, ZanError
from zan.resp.types import NULL_ARRAY
from zan.store.keyspace import Txn, key_digest
from zan.store.multi import StagedSource

# A collection created by the n-th command of a transaction takes the entry's index plus
# n << 40: still unique in its partition (indexes stay far below 2**40), and distinct
# for a key deleted and created again within one transaction.
COMMAND_VERSION_SHIFT = 40

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


# -- a transaction as one log entry (replicated nodes) ----------------------------------

def encode_exec(watches: list[tuple[bytes, bytes]], commands: list[tuple[str, list[bytes]]],
                ) -> bytes:
    """The argument of ``zan.exec``: (pk, digest) of each watched key, and the queued
    commands as (name, args with primary keys)."""
    return msgpack.packb([[list(w) for w in watches], [[n, a] for n, a in commands]],
                         use_bin_type=True)


def checked_entry(txn: Txn, data: bytes, what: str) -> tuple[bool, Any]:
    """Decode an entry of ``[[(pk, digest), ...], payload]`` (``zan.exec``,
    ``zan.effects``): whether every key's digest is still the one it carries here, and
    the payload."""
    try:
        digests, payload = msgpack.unpackb(data, raw=False)
    except Exception:
        raise RespError(f"ERR invalid {what} entry") from None
    return all(key_digest(txn, pk) == digest for pk, digest in digests), payload


@command("zan.exec", 2, (WRITE,), internal=True, summary="A transaction over one partition")
def apply_exec(txn: Txn, args: list[bytes]):
    unchanged, commands = checked_entry(txn, args[0], "transaction")
    if not unchanged:
        return NULL_ARRAY
    replies = []
    for n, (name, cargs) in enumerate(commands):
        spec = spec_named(name)
        if spec is None:
            replies.append(RespError("ERR internal error"))
            continue
        step = Txn(StagedSource(txn), now_ms=txn.now_ms,
                   index=txn.index + (n << COMMAND_VERSION_SHIFT),
                   seed=txn.rng.getrandbits(63), writable=spec.is_write, options=txn.options)
        try:
            reply = spec.handler(step, cargs)
        except ZanError as e:
            replies.append(e)
            continue
        replies.append(reply)
        if spec.is_write:
            txn.changes.update(step.changes)
            txn.keys_delta += step.keys_delta
            txn.expires_delta += step.expires_delta
    return replies


@command("zan.keydigest", 2, (READONLY, FAST), internal=True,
         summary="The digest of a key's state, for WATCH")
def read_key_digest(txn: Txn, args: list[bytes]):
    return key_digest(txn, args[0])
