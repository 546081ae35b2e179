"""String commands (Redis t_string.c)."""

from __future__ import annotations

from zan.commands.table import DENYOOM, FAST, READONLY, WRITE, command
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError
from zan.resp.types import OK
from zan.store.keyspace import (
    T_STRING, Meta, Txn, check_value, lookup, lookup_as, store_meta,
)

__all__: list[str] = []


def get_string(txn: Txn, pk: bytes) -> bytes | None:
    meta = lookup_as(txn, pk, T_STRING)
    return None if meta is None else meta.payload


def put_string(txn: Txn, pk: bytes, value: bytes, expire_at: int = 0) -> None:
    store_meta(txn, pk, Meta(T_STRING, expire_at, 0, value))


@command("get", 2, (READONLY, FAST), group="string", summary="Get the value of a key")
def get(txn: Txn, args: list[bytes]):
    return get_string(txn, args[0])


_SET_FLAGS = {b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"PX", b"EXAT", b"PXAT"}


@command("set", -3, (WRITE, DENYOOM), group="string", summary="Set the string value of a key")
def set_(txn: Txn, args: list[bytes]):
    pk, value = args[0], check_value(args[1])
    nx = xx = want_get = keepttl = False
    expire_kind = None
    expire_raw = b""
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            want_get = True
        elif opt == b"KEEPTTL" and expire_kind is None:
            keepttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expire_kind is None and not keepttl \
                and i + 1 < len(args):
            expire_kind = opt
            expire_raw = args[i + 1]
            i += 1
        else:
            raise RespError(SYNTAX)
        i += 1

    expire_at = 0
    if expire_kind is not None:
        n = parse_int(expire_raw)
        if n <= 0:
            raise RespError("ERR invalid expire time in 'set' command")
        if expire_kind == b"EX":
            ms = n * 1000 + txn.now_ms if n <= (2**63 - 1 - txn.now_ms) // 1000 else None
        elif expire_kind == b"PX":
            ms = n + txn.now_ms if n <= 2**63 - 1 - txn.now_ms else None
        elif expire_kind == b"EXAT":
            ms = n * 1000 if n <= (2**63 - 1) // 1000 else None
        else:
            ms = n
        if ms is None:
            raise RespError("ERR invalid expire time in 'set' command")
        expire_at = ms

    current = lookup(txn, pk)
    old_value = None
    if want_get and current is not None:
        if current.type != T_STRING:
            raise RespError("WRONGTYPE Operation against a key holding the wrong kind of value")
        old_value = current.payload
    if (nx and current is not None) or (xx and current is None):
        return old_value if want_get else None
    if keepttl and current is not None:
        expire_at = current.expire_at
    if expire_at and expire_at <= txn.now_ms:
        # Already in the past (EXAT/PXAT): Redis deletes the key.
        from zan.store.keyspace import remove_key
        if current is not None:
            remove_key(txn, pk)
    else:
        put_string(txn, pk, value, expire_at)
    return old_value if want_get else OK
