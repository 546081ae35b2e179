"""A partition's state machine: applies log entries to its LevelDB, answers reads.

A write command travels as a *command entry*: everything apply needs, and nothing it
would have to invent (the proposer's clock and a random seed are fixed when the command
is proposed).  Applying the entry runs the command's handler on a writable `Txn` and
commits its changes together with the new applied index in one WriteBatch, so the
database and its applied index can never disagree.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import msgpack
from twisted.logger import Logger

from zan.commands.registry import spec_named
from zan.errors import RespError, ZanError
from zan.store.codec import (
    APPLIED_INDEX_KEY, EXPIRES_COUNT_KEY, EXPIRY, KEYS_COUNT_KEY, META, PARTITION_META,
    decode_i64, encode_i64, pk_of_record,
)
from zan.store.keyspace import DEFAULT_OPTIONS, KeyspaceOptions, Txn

__all__ = ["encode_command_entry", "encode_effects_entry", "decode_entry", "count_changes",
           "stage_changes", "PartitionStateMachine", "ENTRY_COMMAND", "ENTRY_NOOP", "ENTRY_EFFECTS"]

_ENTRY_FORMAT = 1
ENTRY_COMMAND = 0
ENTRY_NOOP = 1
ENTRY_EFFECTS = 2   # this partition's share of a command over several (zan.store.multi)


# One Packer for the process: `msgpack.packb` builds a new one per call, and each new Packer
# allocates (and the next frees) a buffer big enough to be mmapped, several times the cost of
# packing a small command.  The reactor thread is the only caller.
_pack = msgpack.Packer(use_bin_type=True).pack
_unpackb = partial(msgpack.unpackb, raw=False, use_list=True)


def encode_command_entry(now_ms: int, seed: int, name: str, args: list[bytes]) -> bytes:
    return _pack((_ENTRY_FORMAT, ENTRY_COMMAND, now_ms, seed, name, args))


def encode_effects_entry(changes: dict[bytes, bytes | None]) -> bytes:
    """The records a command over several partitions puts (value) and deletes (None) in
    one of them: applying them needs neither the command nor the other partitions."""
    flat = []
    for key, value in changes.items():
        flat += (key, value)
    return _pack((_ENTRY_FORMAT, ENTRY_EFFECTS, flat))


def count_changes(changes, get) -> tuple[int, int]:
    """How `changes` ((key, value or None) pairs) move a partition's counts of meta and
    expiry records, given what `get` reads there before them."""
    keys_delta = expires_delta = 0
    for key, value in changes:
        tag = key[:1]
        if tag == META or tag == EXPIRY:
            delta = (value is not None) - (get(key) is not None)
            if tag == META:
                keys_delta += delta
            else:
                expires_delta += delta
    return keys_delta, expires_delta


def stage_changes(target: dict[bytes, bytes | None], get, changes: dict) -> None:
    """Add `changes` to the not-yet-applied writes `target` (read through `get`), with
    the key counts they lead to, for later reads of those writes to see (DBSIZE)."""
    deltas = count_changes(changes.items(), get)
    target.update(changes)
    for counter, delta in zip((KEYS_COUNT_KEY, EXPIRES_COUNT_KEY), deltas):
        if delta:
            raw = get(counter)
            target[counter] = encode_i64((decode_i64(raw) if raw else 0) + delta)


def decode_entry(data: bytes) -> tuple:
    """(kind, *fields) of an entry; an empty entry (Raft's no-op) is ENTRY_NOOP."""
    if not data:
        return (ENTRY_NOOP,)
    fields = _unpackb(data)
    if fields[0] != _ENTRY_FORMAT:
        raise ZanError(f"unknown entry format {fields[0]!r}")
    return tuple(fields[1:])


class PartitionStateMachine:
    _log = Logger()

    def __init__(self, engine, options: KeyspaceOptions = DEFAULT_OPTIONS, name: str = ""):
        self.engine = engine
        self.options = options
        self.name = name
        self.applied_index = self._read_counter(APPLIED_INDEX_KEY)
        # Meta records and keys with a TTL, expired-but-not-purged included (Redis's
        # DBSIZE counts those too).  Kept in the same batches as the data they count.
        self.keys_count = self._read_counter(KEYS_COUNT_KEY)
        self.expires_count = self._read_counter(EXPIRES_COUNT_KEY)
        # Keys some connection WATCHes: pk -> [times modified, watchers].  Only these are
        # followed, so entries cost one test each while nobody watches.
        self.watched: dict[bytes, list[int]] = {}

    # -- WATCH ---------------------------------------------------------------------

    def watch(self, pk: bytes) -> int:
        """Follow `pk` for one more watcher; returns how often it was modified so far."""
        record = self.watched.setdefault(pk, [0, 0])
        record[1] += 1
        return record[0]

    def unwatch(self, pk: bytes) -> None:
        record = self.watched.get(pk)
        if record is not None:
            record[1] -= 1
            if record[1] <= 0:
                del self.watched[pk]

    def modifications(self, pk: bytes) -> int:
        record = self.watched.get(pk)
        return record[0] if record is not None else 0

    def touched(self, keys) -> None:
        """Count a modification of every watched key that owns one of these records."""
        watched = self.watched
        for key in keys:
            if key[:1] != PARTITION_META:
                record = watched.get(pk_of_record(key))
                if record is not None:
                    record[0] += 1

    def _read_counter(self, key: bytes) -> int:
        raw = self.engine.get(key)
        return decode_i64(raw) if raw is not None else 0

    def apply(self, index: int, data: bytes) -> Any:
        """Apply the entry at `index`; returns the command's reply (an error reply is a
        `RespError` value, not an exception: the entry is applied either way)."""
        return self.apply_many(((index, data),))[0]

    def apply_many(self, entries) -> list:
        """Apply a run of ``(index, data)`` entries in order; returns their replies.

        Their changes and the new applied index go to the database in one WriteBatch: each
        entry reads the changes of the ones before it through a `_Pending` view, which
        writes them out first (with the applied index they reach) if a handler iterates."""
        pending = _Pending(self)
        replies = []
        append = replies.append
        for index, data in entries:
            if index <= self.applied_index:
                append(None)  # replayed after a crash: already in the database
                continue
            append(self._apply_one(pending, index, data))
            self.applied_index = index
            pending.index = index
        pending.write()
        return replies

    def _apply_one(self, pending: "_Pending", index: int, data: bytes) -> Any:
        if not data:
            return None  # Raft's no-op
        fields = _unpackb(data)
        if fields[0] != _ENTRY_FORMAT:
            raise ZanError(f"unknown entry format {fields[0]!r}")
        if fields[1] != ENTRY_COMMAND:
            if fields[1] == ENTRY_EFFECTS:
                self._apply_effects(pending, fields[2])
            return None
        _, _, now_ms, seed, name, args = fields
        spec = spec_named(name)
        if spec is None:
            # Written by a node that knows a command this one does not: every replica of
            # this version answers the same, so nobody diverges.
            self._log.error("unknown command {name!r} at {partition}:{index}", name=name,
                            partition=self.name, index=index)
            return RespError("ERR internal error")
        direct = spec.extra.get("apply")
        try:
            if direct is not None:
                # A write that can skip the Txn in its common case (plain SET): it changes
                # the pending view itself; None means the handler must run after all.
                done = direct(pending, args, now_ms)
                if done is not None:
                    if self.watched and args[0] in self.watched:
                        self.watched[args[0]][0] += 1
                    reply, added = done
                    if added:
                        self.keys_count += 1
                        pending.changes[KEYS_COUNT_KEY] = encode_i64(self.keys_count)
                    return reply
            txn = Txn(pending, now_ms=now_ms, index=index, seed=seed, writable=True,
                      options=self.options)
            reply = spec.handler(txn, args)
        except ZanError as e:
            return e
        except Exception:
            # A bug, but a deterministic one: every replica fails the same way, so the
            # entry still counts as applied and nobody diverges.
            self._log.failure("applying {name} at {partition}:{index}", name=name,
                              partition=self.name, index=index)
            return RespError("ERR internal error")
        changes = pending.changes
        changes.update(txn.changes)
        if self.watched:
            self.touched(txn.changes)
        if txn.keys_delta:
            self.keys_count += txn.keys_delta
            changes[KEYS_COUNT_KEY] = encode_i64(self.keys_count)
        if txn.expires_delta:
            self.expires_count += txn.expires_delta
            changes[EXPIRES_COUNT_KEY] = encode_i64(self.expires_count)
        return reply

    def _apply_effects(self, pending: "_Pending", flat: list) -> None:
        """Put and delete the records of an effects entry.  The key counts follow from
        what each meta and expiry record was before, here and now (the sweep may have
        purged a dead record since the effects were computed)."""
        changes = pending.changes
        pairs = list(zip(flat[0::2], flat[1::2]))
        keys_delta, expires_delta = count_changes(pairs, pending.get)
        changes.update(pairs)
        if keys_delta:
            self.keys_count += keys_delta
            changes[KEYS_COUNT_KEY] = encode_i64(self.keys_count)
        if expires_delta:
            self.expires_count += expires_delta
            changes[EXPIRES_COUNT_KEY] = encode_i64(self.expires_count)

    def purge(self, deletions: dict[bytes, None]) -> None:
        """Physically delete what the sweep found dead: expired keys and the elements of
        collections that no longer exist.  Local, not through the log: every replica
        already treats these keys as absent (see `zan.store.sweeper`)."""
        changes: dict[bytes, bytes | None] = dict(deletions)
        metas = sum(1 for k in deletions if k[:1] == META)
        expiries = sum(1 for k in deletions if k[:1] == EXPIRY)
        if metas:
            self.keys_count -= metas
            changes[KEYS_COUNT_KEY] = encode_i64(self.keys_count)
        if expiries:
            self.expires_count -= expiries
            changes[EXPIRES_COUNT_KEY] = encode_i64(self.expires_count)
        self.engine.write(changes)

    def read(self, name: str, args: list[bytes], now_ms: int, seed: int = 0) -> Any:
        """Run a read command on the current state; raises its RespError."""
        spec = spec_named(name)
        direct = spec.extra.get("read")
        if direct is not None:
            # A one-record read that needs no Txn (GET): f(source, pk, now_ms, options).
            return direct(self.engine, args[0], now_ms, self.options)
        txn = Txn(self.engine, now_ms=now_ms, seed=seed, options=self.options)
        reply = spec.handler(txn, args)
        limit = self.options.max_batch_elements
        if limit and isinstance(reply, list) and _elements(name, args, reply) > limit:
            raise RespError("ERR the batch size exceed the limit")
        return reply


# Replies that list each field with its value: a field counts once toward the limit.
_PAIRED_REPLIES = frozenset(("hgetall", "stale.hgetall.expired"))


def _elements(name: str, args: list[bytes], reply: list) -> int:
    """How many elements a read's reply holds, as ZanRedisDB's batch limit counts them
    (a member with its score, a field with its value: one)."""
    if name in _PAIRED_REPLIES or any(a.upper() == b"WITHSCORES" for a in args[1:]):
        return len(reply) // 2
    return len(reply)


class _Pending:
    """The database as the entries of an `apply_many` run see it: what the entries applied
    so far changed (not written yet), over the engine.  Iterating writes those changes
    out first, with the applied index they reach, so an iterator sees them too."""

    __slots__ = ("_sm", "_engine", "changes", "index")

    def __init__(self, sm: PartitionStateMachine):
        self._sm = sm
        self._engine = sm.engine
        self.changes: dict[bytes, bytes | None] = {}
        self.index = 0  # the last entry whose changes are in `changes`

    def get(self, key: bytes) -> bytes | None:
        changes = self.changes
        if key in changes:
            return changes[key]
        return self._engine.get(key)

    def iterator(self, *args, **kwargs):
        self.write()
        return self._engine.iterator(*args, **kwargs)

    def write(self) -> None:
        if self.index:
            changes = self.changes
            changes[APPLIED_INDEX_KEY] = encode_i64(self.index)
            self._engine.write(changes)
            self.changes = {}
            self.index = 0
