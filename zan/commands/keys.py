"""Key-space commands (Redis db.c, expire.c): DEL, EXISTS, TYPE, the TTL family, the
partition-level SCAN primitive, and ZanRedisDB's type-scoped extensions (``hclear``,
``hexpire``, ``httl``, ``hpersist``, ``hkeyexist`` and their ``l``/``s``/``z``/``b``
twins) and ``advscan``.

Type-scoped commands treat a key of another type as missing; their replies mirror the
generic command's (``<p>clear`` = DEL of one key, ``<p>expire`` = EXPIRE without options,
``<p>ttl`` = TTL, ``<p>persist`` = PERSIST, ``<p>keyexist`` = EXISTS of one key).

Expiration policies (see `zan.commands.ttl`): under ``local_deletion`` TTL/PTTL/
EXPIRETIME answer -1 for every existing key, and a key that already has a TTL refuses
EXPIRE/PERSIST with "ERR change ttl is not supported in current expire policy" (after
the NX/XX/GT/LT checks, which still answer 0 as in Redis).  A key without a TTL can be
given one, and PERSIST of a key without a TTL answers 0.
"""

from __future__ import annotations

from zan.commands.glob import glob_match
from zan.commands.merge import merge_sum
from zan.commands.table import FAST, READONLY, WRITE, Route, command
from zan.commands.ttl import (
    CHANGE_TTL_REFUSED, apply_deadline, is_local_deletion, relative_deadline,
)
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError
from zan.resp.types import SimpleString
from zan.store import codec
from zan.store.codec import (
    META, TYPE_NAMES, T_HASH, T_LIST, T_SET, T_STRING, T_ZSET, decode_meta_header,
    meta_key, prefix_end,
)
from zan.store.keyspace import WAIT_COMPACT, Meta, Txn, lookup, remove_key, store_meta

__all__ = ["scan_keys", "SCAN_START"]

SCAN_START = (b"0", b"")


def _lookup_typed(txn: Txn, pk: bytes, type_: int | None) -> Meta | None:
    meta = lookup(txn, pk)
    if meta is None or (type_ is not None and meta.type != type_):
        return None
    return meta


# -- DEL / EXISTS / TOUCH / TYPE ---------------------------------------------------------

def _delete(txn: Txn, args: list[bytes]):
    deleted = 0
    for pk in args:
        if lookup(txn, pk) is not None:
            remove_key(txn, pk)
            deleted += 1
    return deleted


command("del", -2, (WRITE,), route=Route.MULTI_KEY, first_key=1, last_key=-1,
        merge=merge_sum, summary="Delete a key")(_delete)
command("unlink", -2, (WRITE, FAST), route=Route.MULTI_KEY, first_key=1, last_key=-1,
        merge=merge_sum, since="4.0.0",
        summary="Delete a key asynchronously in another thread")(_delete)


def _count_existing(txn: Txn, args: list[bytes]):
    return sum(1 for pk in args if lookup(txn, pk) is not None)


command("exists", -2, (READONLY, FAST), route=Route.MULTI_KEY, first_key=1, last_key=-1,
        merge=merge_sum, summary="Determine if a key exists")(_count_existing)
command("touch", -2, (READONLY, FAST), route=Route.MULTI_KEY, first_key=1, last_key=-1,
        merge=merge_sum, since="3.2.1",
        summary="Alters the last access time of a key(s). Returns the number of existing "
                "keys specified.")(_count_existing)


@command("type", 2, (READONLY, FAST), summary="Determine the type stored at key")
def type_(txn: Txn, args: list[bytes]):
    meta = lookup(txn, args[0])
    return SimpleString(b"none" if meta is None else TYPE_NAMES[meta.type])


# -- expiry ------------------------------------------------------------------------------

_EXPIRE_OPTS = (b"NX", b"XX", b"GT", b"LT")


def _expire_options(args: list[bytes]) -> set[bytes]:
    opts: set[bytes] = set()
    for raw in args:
        opt = raw.upper()
        if opt not in _EXPIRE_OPTS:
            raise RespError("ERR Unsupported option " + raw.decode("utf-8", "replace"))
        opts.add(opt)
    if b"NX" in opts and len(opts) > 1:
        raise RespError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in opts and b"LT" in opts:
        raise RespError("ERR GT and LT options at the same time are not compatible")
    return opts


def _expire(txn: Txn, args: list[bytes], *, seconds: bool, relative: bool, name: str,
            type_: int | None = None):
    pk = args[0]
    opts = _expire_options(args[2:])
    when = relative_deadline(txn, args[1], seconds=seconds,
                             base=txn.now_ms if relative else 0, name=name)
    meta = _lookup_typed(txn, pk, type_)
    if meta is None:
        return 0
    current = meta.expire_at or -1
    if opts:
        if (b"NX" in opts and current != -1) or (b"XX" in opts and current == -1):
            return 0
        if b"GT" in opts and (current == -1 or when <= current):
            return 0
        if b"LT" in opts and current != -1 and when >= current:
            return 0
    if meta.expire_at and is_local_deletion(txn):
        raise RespError(CHANGE_TTL_REFUSED)
    apply_deadline(txn, pk, meta, when)
    return 1


@command("expire", -3, (WRITE, FAST), summary="Set a key's time to live in seconds")
def expire(txn: Txn, args: list[bytes]):
    return _expire(txn, args, seconds=True, relative=True, name="expire")


@command("pexpire", -3, (WRITE, FAST), since="2.6.0",
         summary="Set a key's time to live in milliseconds")
def pexpire(txn: Txn, args: list[bytes]):
    return _expire(txn, args, seconds=False, relative=True, name="pexpire")


@command("expireat", -3, (WRITE, FAST), since="1.2.0",
         summary="Set the expiration for a key as a UNIX timestamp")
def expireat(txn: Txn, args: list[bytes]):
    return _expire(txn, args, seconds=True, relative=False, name="expireat")


@command("pexpireat", -3, (WRITE, FAST), since="2.6.0",
         summary="Set the expiration for a key as a UNIX timestamp specified in milliseconds")
def pexpireat(txn: Txn, args: list[bytes]):
    return _expire(txn, args, seconds=False, relative=False, name="pexpireat")


def _ttl(txn: Txn, pk: bytes, *, unit_ms: bool, absolute: bool, type_: int | None = None):
    meta = _lookup_typed(txn, pk, type_)
    if meta is None:
        return -2
    if not meta.expire_at or is_local_deletion(txn):
        return -1
    # Redis rounds the absolute EXPIRETIME the same way as TTL.
    left = meta.expire_at if absolute else max(meta.expire_at - txn.now_ms, 0)
    return left if unit_ms else (left + 500) // 1000


@command("ttl", 2, (READONLY, FAST), summary="Get the time to live for a key in seconds")
def ttl(txn: Txn, args: list[bytes]):
    return _ttl(txn, args[0], unit_ms=False, absolute=False)


@command("pttl", 2, (READONLY, FAST), since="2.6.0",
         summary="Get the time to live for a key in milliseconds")
def pttl(txn: Txn, args: list[bytes]):
    return _ttl(txn, args[0], unit_ms=True, absolute=False)


@command("expiretime", 2, (READONLY, FAST), since="7.0.0",
         summary="Get the expiration Unix timestamp for a key")
def expiretime(txn: Txn, args: list[bytes]):
    return _ttl(txn, args[0], unit_ms=False, absolute=True)


@command("pexpiretime", 2, (READONLY, FAST), since="7.0.0",
         summary="Get the expiration Unix timestamp for a key in milliseconds")
def pexpiretime(txn: Txn, args: list[bytes]):
    return _ttl(txn, args[0], unit_ms=True, absolute=True)


def _persist(txn: Txn, pk: bytes, type_: int | None = None):
    meta = _lookup_typed(txn, pk, type_)
    if meta is None or not meta.expire_at:
        return 0
    if is_local_deletion(txn):
        raise RespError(CHANGE_TTL_REFUSED)
    meta.expire_at = 0
    store_meta(txn, pk, meta)
    return 1


@command("persist", 2, (WRITE, FAST), since="2.2.0",
         summary="Remove the expiration from a key")
def persist(txn: Txn, args: list[bytes]):
    return _persist(txn, args[0])


# -- ZanRedisDB's type-scoped extensions -------------------------------------------------

_SCOPED = {b"h": (T_HASH, "hash"), b"l": (T_LIST, "list"), b"s": (T_SET, "set"),
           b"z": (T_ZSET, "zset"), b"b": (T_STRING, "bitmap")}


def _register_scoped(prefix: str, type_: int, group: str) -> None:
    def clear(txn: Txn, args: list[bytes]):
        if _lookup_typed(txn, args[0], type_) is None:
            return 0
        remove_key(txn, args[0])
        return 1

    def expire_(txn: Txn, args: list[bytes]):
        return _expire(txn, args, seconds=True, relative=True, name=f"{prefix}expire",
                       type_=type_)

    def ttl_(txn: Txn, args: list[bytes]):
        return _ttl(txn, args[0], unit_ms=False, absolute=False, type_=type_)

    def persist_(txn: Txn, args: list[bytes]):
        return _persist(txn, args[0], type_)

    def keyexist(txn: Txn, args: list[bytes]):
        return 0 if _lookup_typed(txn, args[0], type_) is None else 1

    command(f"{prefix}clear", 2, (WRITE,), group=group,
            summary=f"Delete a key if it holds a {group}")(clear)
    command(f"{prefix}expire", 3, (WRITE, FAST), group=group,
            summary=f"Set the time to live in seconds of a {group} key")(expire_)
    command(f"{prefix}ttl", 2, (READONLY, FAST), group=group,
            summary=f"Get the time to live in seconds of a {group} key")(ttl_)
    command(f"{prefix}persist", 2, (WRITE, FAST), group=group,
            summary=f"Remove the expiration from a {group} key")(persist_)
    command(f"{prefix}keyexist", 2, (READONLY, FAST), group=group,
            summary=f"Determine if a {group} key exists")(keyexist)
    if prefix == "b":
        # ZanRedisDB's own name for bclear.
        command("bitclear", 2, (WRITE,), group=group,
                summary="Delete a key if it holds a bitmap")(clear)


for _p, (_t, _g) in _SCOPED.items():
    _register_scoped(_p.decode(), _t, _g)


# -- scans -------------------------------------------------------------------------------

def _live(txn: Txn, value: bytes) -> tuple[int, int] | None:
    """(type, expire_at) of a raw meta record, or None if it has expired."""
    type_, expire_at, _ = decode_meta_header(value)
    if expire_at and expire_at <= txn.now_ms and txn.options.expiration_policy == WAIT_COMPACT:
        return None
    return type_, expire_at


def scan_keys(txn: Txn, lo: bytes, hi: bytes | None, count: int, accept,
              only_type: int | None = None, reverse: bool = False):
    """Walk live meta records in [lo, hi) (from the top if `reverse`) examining at most
    `count` of them (keys not of `only_type`, when given, are skipped without counting);
    returns (pks accepted by ``accept(pk, type)``, last pk examined or None if the range
    is exhausted)."""
    out: list[bytes] = []
    examined = 0
    last = None
    for key, value in txn.iterate(lo, hi, reverse=reverse):
        info = _live(txn, value)
        if info is None or (only_type is not None and info[0] != only_type):
            continue
        pk = codec.pk_of_meta_key(key)
        if examined == count:
            return out, last      # a live key remains: the scan is not finished
        examined += 1
        last = pk
        if accept(pk, info[0]):
            out.append(pk)
    return out, None


def _scan_options(args: list[bytes], *, allow_type: bool):
    """Redis's scanGenericCommand option loop: (count, pattern or None, type or None)."""
    count, pattern, type_name = 10, None, None
    i = 0
    while i < len(args):
        opt = args[i].upper()
        more = len(args) - i >= 2
        if opt == b"COUNT" and more:
            count = parse_int(args[i + 1])
            if count < 1:
                raise RespError(SYNTAX)
        elif opt == b"MATCH" and more:
            pattern = None if args[i + 1] == b"*" else args[i + 1]
        elif opt == b"TYPE" and allow_type and more:
            type_name = args[i + 1]
        else:
            raise RespError(SYNTAX)
        i += 2
    return count, pattern, type_name


_TOKEN_MARK = b">"


@command("scan", -2, (READONLY,), route=Route.ALL_PARTITIONS, first_key=0, last_key=0,
         key_step=0, since="2.8.0",
         summary="Incrementally iterate the keys space")
def scan(txn: Txn, args: list[bytes]):
    """One partition's page: ``scan token [MATCH p] [COUNT n] [TYPE t]`` ->
    ``[next_token, [pk, ...]]``.  Tokens are opaque: b"0" (or b"") starts, b"0" comes back
    when the partition is done; otherwise the token names the last key examined."""
    token = args[0]
    count, pattern, type_name = _scan_options(args[1:], allow_type=True)
    if token in SCAN_START:
        lo = META
    elif token[:1] == _TOKEN_MARK:
        lo = meta_key(token[1:]) + b"\x00"
    else:
        raise RespError("ERR invalid cursor")
    wanted = type_name.lower() if type_name is not None else None

    def accept(pk: bytes, type_: int) -> bool:
        if wanted is not None and TYPE_NAMES[type_] != wanted:
            return False
        return pattern is None or glob_match(pattern, pk)

    keys, last = scan_keys(txn, lo, prefix_end(META), count, accept)
    return [b"0" if last is None else _TOKEN_MARK + last, keys]


ADVSCAN_TYPES = {b"KV": T_STRING, b"HASH": T_HASH, b"LIST": T_LIST, b"SET": T_SET,
                  b"ZSET": T_ZSET}


@command("advscan", -3, (READONLY,), route=Route.ALL_PARTITIONS, first_key=1, last_key=1,
         summary="Iterate the keys of one type in one table")
def advscan(txn: Txn, args: list[bytes]):
    """ZanRedisDB's per-partition primitive: ``advscan table:<cursor> <KV|HASH|LIST|SET|ZSET>
    [MATCH p] [COUNT n]`` -> ``[next_cursor, [table:key, ...]]``.  The cursor is the last
    key examined (without the table), b"" once the partition's table is exhausted; MATCH
    applies to the key without the table."""
    table, sep, cursor = args[0].partition(b":")
    if not sep or not table:
        raise RespError("ERR invalid table name")
    type_ = ADVSCAN_TYPES.get(args[1].upper())
    if type_ is None:
        raise RespError("ERR invalid scan type")
    count, pattern, _ = _scan_options(args[2:], allow_type=False)
    prefix = meta_key(table + b":")
    lo = prefix + cursor + b"\x00" if cursor else prefix
    strip = len(table) + 1

    def accept(pk: bytes, t: int) -> bool:
        return t == type_ and (pattern is None or glob_match(pattern, pk[strip:]))

    # ZanRedisDB keeps each type in its own key space, so COUNT counts keys of the type.
    keys, last = scan_keys(txn, lo, prefix_end(prefix), count, accept, only_type=type_)
    return [b"" if last is None else last[strip:], keys]
