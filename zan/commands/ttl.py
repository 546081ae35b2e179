"""Expiry rules shared by the string and key families: Redis's expire-time arithmetic and
the two expiration policies (see `zan.store.keyspace.KeyspaceOptions`).

Under ``wait_compact`` everything is Redis 7.0.  Under ``local_deletion`` (ZanRedisDB's
legacy policy) a key's first TTL is final: later writes keep it, EXPIRE cannot move it,
PERSIST cannot drop it, and TTL answers -1 because the key may outlive its deadline
until the local sweep deletes it.
"""

from __future__ import annotations

from zan.commands.util import INT64_MAX, INT64_MIN, parse_int
from zan.errors import RespError
from zan.store.keyspace import LOCAL_DELETION, Meta, Txn, remove_key, store_meta

__all__ = ["invalid_expire", "set_option_deadline", "is_local_deletion", "kept_expire",
           "CHANGE_TTL_REFUSED", "apply_deadline", "relative_deadline"]

CHANGE_TTL_REFUSED = "ERR change ttl is not supported in current expire policy"


def invalid_expire(name: str) -> RespError:
    return RespError(f"ERR invalid expire time in '{name}' command")


def set_option_deadline(txn: Txn, kind: bytes, raw: bytes, name: str) -> int:
    """The absolute deadline (ms) of an EX/PX/EXAT/PXAT option of SET, GETEX, SETEX...

    Redis's getExpireMillisecondsOrReply: the number must be positive, and a deadline
    that overflows (C wraps it negative) is refused the same way."""
    n = parse_int(raw)
    seconds = kind in (b"EX", b"EXAT")
    if n <= 0 or (seconds and n > INT64_MAX // 1000):
        raise invalid_expire(name)
    ms = n * 1000 if seconds else n
    if kind in (b"EX", b"PX"):
        ms += txn.now_ms
        if ms > INT64_MAX:
            raise invalid_expire(name)
    return ms


def relative_deadline(txn: Txn, raw: bytes, *, seconds: bool, base: int, name: str) -> int:
    """EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT arithmetic: negative values are allowed, only
    overflow is refused."""
    when = parse_int(raw)
    if seconds:
        # C's LLONG_MIN / 1000 truncates toward zero.
        if when > INT64_MAX // 1000 or when < -(-INT64_MIN // 1000):
            raise invalid_expire(name)
        when *= 1000
    if when > INT64_MAX - base:
        raise invalid_expire(name)
    return when + base


def is_local_deletion(txn: Txn) -> bool:
    return txn.options.expiration_policy == LOCAL_DELETION


def kept_expire(txn: Txn, current: Meta | None, requested: int) -> int:
    """The deadline a write that replaces a value ends up with.  Redis: `requested`
    (0 clears any TTL).  local_deletion: a TTL once set is kept."""
    if current is not None and current.expire_at and is_local_deletion(txn):
        return current.expire_at
    return requested


def apply_deadline(txn: Txn, pk: bytes, meta: Meta, when: int) -> None:
    """Give the existing key `pk` the deadline `when`; a deadline already past deletes it,
    as Redis does (checkAlreadyExpired)."""
    if when <= txn.now_ms:
        remove_key(txn, pk)
        return
    meta.expire_at = when
    store_meta(txn, pk, meta)
