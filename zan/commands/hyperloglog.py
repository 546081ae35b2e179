"""HyperLogLog commands (Redis hyperloglog.c): PFADD PFCOUNT PFMERGE PFDEBUG PFSELFTEST.

A HyperLogLog is a string value in Redis's own representation (`zan.commands.hll_codec`),
so GET, SET and TYPE see what they see on redis-server, and a value copied from one
counts the same on the other.

PFCOUNT of one key stores the count it computes in the value's header, as Redis does,
so it runs through the log like a write (its spec's ``extra["logged"]``, see
`CommandSpec.is_write`) while COMMAND INFO shows Redis's ``readonly``.  With several
keys it changes nothing, though it takes the same path (one spec serves both forms).

The sparse encoding grows up to ``hll-sparse-max-bytes`` (each node's CONFIG value,
read when a command is applied) before it turns dense, as in Redis.  Replicas whose
values differ may hold different bytes for the same registers, as Redis replicas can
(Redis, too, replicates PFADD rather than its resulting bytes): keep it equal on every
node.
"""

from __future__ import annotations

import random

from zan.commands import hll_codec as hll
from zan.commands.redis_config import setting
from zan.commands.strings import update_string
from zan.commands.table import ADMIN, DENYOOM, FAST, READONLY, REGISTRY, WRITE, Route, command
from zan.errors import RespError
from zan.resp.types import OK, SimpleString
from zan.store.keyspace import T_STRING, Meta, Txn, lookup_as

__all__: list[str] = []

NOT_HLL = "WRONGTYPE Key is not a valid HyperLogLog string value."
INVALID = "INVALIDOBJ Corrupted HLL object detected"
_NO_KEY = "ERR The specified key does not exist"

_HLL = dict(group="hyperloglog", since="2.8.9")


def _load(txn: Txn, pk: bytes) -> tuple[Meta | None, bytearray | None]:
    """The string at `pk` and its value as a HyperLogLog (None, None if absent); another
    type is WRONGTYPE, a string that is no HyperLogLog Redis's HLL-specific WRONGTYPE."""
    meta = lookup_as(txn, pk, T_STRING)
    if meta is None:
        return None, None
    if not hll.is_hll(meta.payload):
        raise RespError(NOT_HLL)
    return meta, bytearray(meta.payload)


def _sparse_max_bytes(txn: Txn) -> int:
    return int(setting(txn.options.redis_config, "hll-sparse-max-bytes"))


def _save(txn: Txn, pk: bytes, meta: Meta | None, value: bytearray) -> None:
    # In place, as Redis edits the string: the key keeps its TTL.
    update_string(txn, pk, meta, bytes(value))


@command("pfadd", -2, (WRITE, DENYOOM, FAST), summary="Adds the specified elements to the "
         "specified HyperLogLog.", **_HLL)
def pfadd(txn: Txn, args: list[bytes]):
    pk = args[0]
    meta, value = _load(txn, pk)
    updated = 0
    if value is None:
        value = hll.new_sparse()
        updated = 1
    before = bytes(value)
    limit = _sparse_max_bytes(txn)
    for element in args[1:]:
        try:
            changed, value = hll.add(value, element, limit)
        except hll.Corrupt:
            # Redis has already edited the value in place for the elements before this
            # one, and keeps those edits.
            if value != before:
                _save(txn, pk, meta, value)
            return RespError(INVALID)
        updated += changed
    if updated:
        hll.invalidate_cache(value)
        _save(txn, pk, meta, value)
    return 1 if updated else 0


def _union(txn: Txn, pks: list[bytes]) -> tuple[list[int], bool]:
    """Register-wise maximum of the HyperLogLogs at `pks` (absent keys count as empty),
    checked in order as Redis does; and whether any of them is dense."""
    regs = [0] * hll.REGISTERS
    any_dense = False
    for pk in pks:
        _, value = _load(txn, pk)
        if value is None:
            continue
        any_dense = any_dense or hll.encoding_of(value) == hll.DENSE
        try:
            hll.merge_into(regs, value)
        except hll.Corrupt:
            raise RespError(INVALID) from None
    return regs, any_dense


@command("pfcount", -2, (READONLY,), route=Route.SAME_PARTITION, first_key=1, last_key=-1,
         summary="Return the approximated cardinality of the set(s) observed by the "
         "HyperLogLog at key(s).", **_HLL)
def pfcount(txn: Txn, args: list[bytes]):
    if len(args) > 1:
        regs, _ = _union(txn, args)
        return hll.count_registers(regs)
    pk = args[0]
    meta, value = _load(txn, pk)
    if value is None:
        return 0
    cached = hll.card_cache(value)
    if cached is not None:
        return cached
    try:
        card = hll.count(value)
    except hll.Corrupt:
        raise RespError(INVALID) from None
    if txn.writable:
        hll.set_card_cache(value, card)
        _save(txn, pk, meta, value)
    return card


REGISTRY["pfcount"].extra["logged"] = True


@command("pfmerge", -2, (WRITE, DENYOOM), route=Route.SAME_PARTITION, first_key=1,
         last_key=-1, summary="Merge N different HyperLogLogs into a single one.", **_HLL)
def pfmerge(txn: Txn, args: list[bytes]):
    pk = args[0]
    # The destination counts among the inputs.
    regs, any_dense = _union(txn, args)
    meta, value = _load(txn, pk)
    if value is None:
        value = hll.new_sparse()
    if any_dense:
        value = hll.sparse_to_dense(value)
    value = hll.store_registers(value, regs, _sparse_max_bytes(txn))
    hll.invalidate_cache(value)
    _save(txn, pk, meta, value)
    return OK


@command("pfdebug", 3, (WRITE, DENYOOM, ADMIN), route=Route.SAME_PARTITION, first_key=2,
         last_key=2, summary="Internal commands for debugging HyperLogLog values", **_HLL)
def pfdebug(txn: Txn, args: list[bytes]):
    sub, pk = args[0], args[1]
    meta, value = _load(txn, pk)
    if value is None:
        raise RespError(_NO_KEY)
    name = sub.lower()
    sparse = hll.encoding_of(value) == hll.SPARSE
    if name in (b"getreg", b"todense"):
        if sparse:
            try:
                value = hll.sparse_to_dense(value)
            except hll.Corrupt:
                raise RespError(INVALID) from None
            _save(txn, pk, meta, value)
        if name == b"todense":
            return 1 if sparse else 0
        return hll.dense_registers(value)
    if name == b"decode":
        if not sparse:
            raise RespError("ERR HLL encoding is not sparse")
        return hll.decode_sparse(value).encode()
    if name == b"encoding":
        return SimpleString(b"sparse" if sparse else b"dense")
    raise RespError(f"ERR Unknown PFDEBUG subcommand '{sub.decode('utf-8', 'replace')}'")


@command("pfselftest", 1, (ADMIN,), route=Route.SERVER, summary="An internal command for "
         "testing HyperLogLog values", **_HLL)
def pfselftest(server, client, args):
    # A fixed seed: the test exercises the code, not the luck of the draw.
    failure = hll.selftest(random.Random(0), int(server.redis_config.value("hll-sparse-max-bytes")))
    return OK if failure is None else RespError(failure)
