"""The view a command handler works on: `Txn`, plus the key-level helpers every data type
shares (lookup with type and expiry checks, meta records, the expiry index).

A handler is a pure function of ``(txn, args)``.  For a write, the txn is built from a
log entry: ``now_ms`` is the proposer's clock when the command was proposed and ``seed``
its pre-drawn randomness, so applying the same entry on every replica gives the same
result.  Nothing here reads a clock, a random source or a file.

Writes are staged in the txn and become visible to its own reads at once (`get` and
`iterate` merge them); the state machine commits them as one WriteBatch, or drops them
all if the handler raises.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol

from zan.errors import RespError, wrongtype
from zan.store import codec
from zan.store.codec import (
    EXPIRY, T_HASH, T_LIST, T_SET, T_STRING, T_ZSET, decode_meta_header, encode_meta,
    expiry_key, meta_key,
)

__all__ = [
    "KeyspaceOptions", "DEFAULT_OPTIONS", "ReadSource", "Txn", "Meta",
    "expired", "lookup", "lookup_as", "store_meta", "remove_key", "new_collection",
    "key_digest",
    "check_subkey", "check_value", "MAX_KEY", "MAX_SUBKEY", "MAX_VALUE",
    "WAIT_COMPACT", "LOCAL_DELETION",
]

WAIT_COMPACT = "wait_compact"
LOCAL_DELETION = "local_deletion"

MAX_KEY = 10240
MAX_SUBKEY = 10240
MAX_VALUE = 8 << 20


@dataclass(frozen=True, slots=True)
class KeyspaceOptions:
    """Per-namespace behaviour of the data layer."""

    # wait_compact: an expired key is invisible at once, TTL/PERSIST/re-EXPIRE work and a
    # background sweep reclaims the space.  local_deletion: ZanRedisDB's legacy policy, an
    # expired key stays readable until the local sweep deletes it, TTL answers -1 and the
    # TTL cannot be changed.
    expiration_policy: str = WAIT_COMPACT
    # The node's Redis parameters (CONFIG SET changes them in place), for reads that
    # report what Redis would (OBJECT ENCODING); None: Redis's defaults.
    redis_config: Mapping[str, str] | None = field(default=None, compare=False)
    # ZanRedisDB's batch limit: a read answering (or a multi-key read asking for) more
    # elements than this fails (0: no limit).
    max_batch_elements: int = 0


DEFAULT_OPTIONS = KeyspaceOptions()


class ReadSource(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterator(self, start: bytes | None = None, stop: bytes | None = None, *,
                 reverse: bool = False, include_value: bool = True) -> Iterator: ...


_DELETED = None


class Txn:
    __slots__ = ("_source", "_writes", "now_ms", "index", "_seed", "_rng", "options",
                 "writable", "_disk_expire", "keys_delta", "expires_delta")

    def __init__(self, source: ReadSource, *, now_ms: int, index: int = 0, seed: int = 0,
                 writable: bool = False, options: KeyspaceOptions = DEFAULT_OPTIONS,
                 over: dict[bytes, bytes | None] | None = None):
        """`over`: changes to read over `source` (shared, not copied: a read-only view of
        writes not applied yet); a writable Txn stages its own writes there."""
        self._source = source
        self._writes: dict[bytes, bytes | None] = over if over is not None else {}
        self.now_ms = now_ms
        self.index = index          # log index of the entry being applied; 0 for reads
        self._seed = seed
        self._rng: random.Random | None = None
        self.options = options
        self.writable = writable
        # pk -> expire_at of its stored meta record (-1: no record), for keys seen so far.
        self._disk_expire: dict[bytes, int] = {}
        # How this txn changes the partition's count of meta records and of keys with a
        # TTL (DBSIZE and INFO keyspace, which like Redis count not-yet-purged keys).
        self.keys_delta = 0
        self.expires_delta = 0

    @property
    def rng(self) -> random.Random:
        """Randomness fixed by the entry (SPOP, SRANDMEMBER, ...): same on every replica."""
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return self._rng

    @property
    def changes(self) -> dict[bytes, bytes | None]:
        return self._writes

    def version_for(self, pk: bytes) -> int:
        """The version of a collection created at `pk`: the index of the entry applying
        this txn (a txn over several partitions has one entry, and index, in each)."""
        return self.index

    # -- raw access ----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        writes = self._writes
        if key in writes:
            return writes[key]
        return self._source.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if not self.writable:
            raise AssertionError("write through a read-only txn")
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        if not self.writable:
            raise AssertionError("write through a read-only txn")
        self._writes[key] = _DELETED

    def iterate(self, start: bytes | None, stop: bytes | None, *, reverse: bool = False,
                ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs in [start, stop), own staged writes included."""
        base = self._source.iterator(start=start, stop=stop, reverse=reverse)
        staged = [k for k in self._writes
                  if (start is None or k >= start) and (stop is None or k < stop)]
        if not staged:
            return base
        return self._merge(base, sorted(staged, reverse=reverse), reverse)

    def _merge(self, base, staged: list[bytes], reverse: bool):
        writes = self._writes
        i = 0
        n = len(staged)
        for key, value in base:
            while i < n and ((staged[i] > key) if reverse else (staged[i] < key)):
                v = writes[staged[i]]
                if v is not None:
                    yield staged[i], v
                i += 1
            if i < n and staged[i] == key:
                v = writes[key]
                if v is not None:
                    yield key, v
                i += 1
                continue
            yield key, value
        while i < n:
            v = writes[staged[i]]
            if v is not None:
                yield staged[i], v
            i += 1


class Meta:
    """A decoded key meta record (mutable: handlers update and `store_meta` it)."""

    __slots__ = ("type", "expire_at", "version", "payload")

    def __init__(self, type_: int, expire_at: int, version: int, payload: bytes):
        self.type = type_
        self.expire_at = expire_at
        self.version = version
        self.payload = payload

    # Collections keep their element count (list: head and size) in the payload.
    @property
    def count(self) -> int:
        if self.type == T_LIST:
            return codec.decode_i64(self.payload, 8)
        return codec.decode_i64(self.payload)

    def __repr__(self) -> str:
        return f"Meta({self.type}, exp={self.expire_at}, ver={self.version}, {self.payload[:32]!r})"


def expired(expire_at: int, now_ms: int, options: KeyspaceOptions) -> bool:
    """Is a record with this deadline gone for readers?  Under wait_compact an expired
    record is invisible at once; under local_deletion it lives until it is deleted."""
    return expire_at != 0 and expire_at <= now_ms and options.expiration_policy == WAIT_COMPACT


def lookup(txn: Txn, pk: bytes) -> Meta | None:
    """The live meta record of `pk`, or None if it does not exist or has expired."""
    raw = txn.get(meta_key(pk))
    if raw is None:
        txn._disk_expire[pk] = -1
        return None
    type_, expire_at, version = decode_meta_header(raw)
    txn._disk_expire[pk] = expire_at
    if expire_at and expired(expire_at, txn.now_ms, txn.options):
        return None
    return Meta(type_, expire_at, version, raw[codec.META_HEADER.size:])


def lookup_as(txn: Txn, pk: bytes, type_: int) -> Meta | None:
    """Like `lookup`, but a key of another type raises WRONGTYPE."""
    meta = lookup(txn, pk)
    if meta is not None and meta.type != type_:
        raise wrongtype()
    return meta


def _stored_expire(txn: Txn, pk: bytes) -> int:
    """expire_at of the record of `pk` as the txn sees it; -1 if there is no record."""
    cached = txn._disk_expire.get(pk)
    if cached is not None:
        return cached
    raw = txn.get(meta_key(pk))
    return decode_meta_header(raw)[1] if raw is not None else -1


def store_meta(txn: Txn, pk: bytes, meta: Meta) -> None:
    """Write `meta` as the record of `pk`, keeping the expiry index in step."""
    old_expire = _stored_expire(txn, pk)
    if old_expire < 0:
        txn.keys_delta += 1
        old_expire = 0
    if old_expire != meta.expire_at:
        if old_expire:
            txn.delete(expiry_key(old_expire, pk))
            txn.expires_delta -= 1
        if meta.expire_at:
            txn.put(expiry_key(meta.expire_at, pk), b"")
            txn.expires_delta += 1
    txn._disk_expire[pk] = meta.expire_at
    txn.put(meta_key(pk), encode_meta(meta.type, meta.expire_at, meta.version, meta.payload))


def remove_key(txn: Txn, pk: bytes) -> None:
    """Delete `pk` whatever its type.  A collection's elements are left to the sweep:
    they carry a version no live meta record has any more, so they are already invisible."""
    old_expire = _stored_expire(txn, pk)
    if old_expire < 0:
        return
    txn.keys_delta -= 1
    if old_expire:
        txn.delete(expiry_key(old_expire, pk))
        txn.expires_delta -= 1
    txn._disk_expire[pk] = -1
    txn.delete(meta_key(pk))


def new_collection(txn: Txn, type_: int, pk: bytes) -> Meta:
    """A fresh, empty collection record for `pk`.  Its version is the log index of the
    entry creating it in pk's partition (`Txn.version_for`), unique per partition, so
    elements of an older incarnation of the same key never reappear."""
    payload = codec.encode_i64(0) * (2 if type_ == T_LIST else 1)
    return Meta(type_, 0, txn.version_for(pk), payload)


# The records that hold a collection's elements, by type (a sorted set's score index
# only mirrors its members' records, so they suffice).
_ELEMENT_TAGS = {T_HASH: codec.HASH_ELEM, T_SET: codec.SET_ELEM, T_LIST: codec.LIST_ELEM,
                 T_ZSET: codec.ZSET_ELEM}
_ABSENT_DIGEST = b"\x00" * 16


def key_digest(txn: Txn, pk: bytes) -> bytes:
    """A 16-byte digest of everything a reader of `pk` can see: type, deadline,
    incarnation (a collection's version) and contents; the same for every absent or
    expired key.  Two states of a key differ in their digests (but for a collision),
    so a replicated WATCH compares digests taken when it watched and when EXEC applies."""
    meta = lookup(txn, pk)
    if meta is None:
        return _ABSENT_DIGEST
    h = hashlib.blake2b(digest_size=16)
    h.update(encode_meta(meta.type, meta.expire_at, meta.version, meta.payload))
    tag = _ELEMENT_TAGS.get(meta.type)
    if tag is not None:
        prefix = codec.elem_prefix(tag, pk, meta.version)
        for key, value in txn.iterate(prefix, codec.prefix_end(prefix)):
            # Lengths first, so that no two (key, value) sequences hash alike.
            h.update(len(key).to_bytes(4, "big") + len(value).to_bytes(4, "big"))
            h.update(key)
            h.update(value)
    return h.digest()


def check_subkey(value: bytes) -> bytes:
    if len(value) > MAX_SUBKEY:
        raise RespError("ERR invalid sub key size")
    return value


def check_value(value: bytes) -> bytes:
    if len(value) > MAX_VALUE:
        raise RespError("ERR invalid value size")
    return value


# Re-exported for handlers.
__all__ += ["T_STRING", "T_HASH", "T_LIST", "T_SET", "T_ZSET", "EXPIRY"]
