"""Finding dead data to purge: expired keys and orphaned collection elements.

LevelDB has no compaction filter, so space held by expired keys and by the elements of
deleted or overwritten collections is reclaimed by a sweep.  These are pure functions
over an engine-like object (``get`` and ``iterator``): each call examines a bounded slice
and returns a `SweepBatch` of deletions plus where to resume, so the node can run the
sweep a slice at a time from a timer and write each batch with ``engine.write`` (or the
state machine's ``purge``, which also keeps its key counters).

Why purging locally, outside the Raft log, is safe
--------------------------------------------------
A purge must never change what any replica's future commands see, or replicas diverge.

* Orphaned elements carry a collection version (the log index that created the
  collection) that no live meta record has.  Versions are never reused, so no command
  on any replica can ever read them again; deleting them is invisible.

* An expired key (``wait_compact``) is invisible to every command whose timestamp
  ``now_ms`` is at or after its deadline.  A command's timestamp is the proposing
  leader's clock, fixed in its log entry, so the danger is an entry applied *after* the
  purge whose timestamp is *before* the deadline: on a replica that had not purged, it
  would still see the key.  Two things rule that out: the node passes as ``now_ms`` the
  timestamp of the last entry this replica applied (not its wall clock, so a replica
  replaying an old log never runs ahead of its own state), and the purge waits
  ``grace_ms`` past the deadline, which must exceed the largest step backwards between
  successive leaders' clocks (clock skew).  ZanRedisDB uses 48 hours for the same
  reason.  Compute and write a batch in one reactor turn, with no apply in between, so
  the records examined are the records deleted.

* ``local_deletion`` namespaces (ZanRedisDB's legacy policy) keep an expired key
  readable until this sweep removes it, and the sweep runs with ``grace_ms=0``: each
  replica deletes on its own schedule, exactly ZanRedisDB's documented (non-replicated)
  semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

from zan.store import codec
from zan.store.codec import (
    EXPIRY, HASH_ELEM, LIST_ELEM, SET_ELEM, T_HASH, T_LIST, T_SET, T_ZSET, ZSCORE_ELEM,
    ZSET_ELEM, decode_elem_key, decode_expiry_key, decode_meta_header, expiry_key, meta_key,
    prefix_end,
)

__all__ = ["SweepBatch", "sweep_expired", "sweep_garbage", "DEFAULT_LIMIT",
           "WAIT_COMPACT_GRACE_MS"]

DEFAULT_LIMIT = 1024
WAIT_COMPACT_GRACE_MS = 48 * 3600 * 1000

# Which meta type owns each element space.
_OWNER = {HASH_ELEM: T_HASH, SET_ELEM: T_SET, LIST_ELEM: T_LIST, ZSET_ELEM: T_ZSET,
          ZSCORE_ELEM: T_ZSET}
_ELEM_FIRST = HASH_ELEM
_ELEM_END = prefix_end(ZSCORE_ELEM)


@dataclass(frozen=True, slots=True)
class SweepBatch:
    """Deletions to write (key -> None) and where the next slice starts (None: this
    pass reached the end; start the next pass from the beginning)."""

    deletions: dict
    resume: bytes | None
    keys_purged: int = 0
    elements_purged: int = 0


def sweep_expired(engine, now_ms: int, *, grace_ms: int = WAIT_COMPACT_GRACE_MS,
                  limit: int = DEFAULT_LIMIT, start: bytes | None = None) -> SweepBatch:
    """Expired keys, through the expiry index: every key whose deadline is at or before
    ``now_ms - grace_ms``.  Deletes the meta record and its index entry; a collection's
    elements become orphans for `sweep_garbage`.  Examines at most `limit` index
    entries; index entries that no longer match their meta record are dropped too."""
    cutoff = now_ms - grace_ms
    if cutoff < 1:
        return SweepBatch({}, None)
    lo = start if start is not None else EXPIRY
    hi = expiry_key(cutoff + 1, b"")
    deletions: dict[bytes, None] = {}
    purged = 0
    examined = 0
    for key, _ in engine.iterator(start=lo, stop=hi):
        if examined == limit:
            return SweepBatch(deletions, key, purged)
        examined += 1
        expire_at, pk = decode_expiry_key(key)
        deletions[key] = None
        raw = engine.get(meta_key(pk))
        if raw is not None and decode_meta_header(raw)[1] == expire_at:
            deletions[meta_key(pk)] = None
            purged += 1
    return SweepBatch(deletions, None, purged)


def sweep_garbage(engine, *, limit: int = DEFAULT_LIMIT, start: bytes | None = None
                  ) -> SweepBatch:
    """Collection elements whose (key, type, version) matches no meta record: left over
    after DEL, an overwrite with another type or a new incarnation, or an expiry purge.
    Examines at most `limit` records (a live collection costs one: the scan jumps past
    it), so a slice stays bounded however large the live collections are."""
    pos = start if start is not None else _ELEM_FIRST
    deletions: dict[bytes, None] = {}
    examined = 0
    verdicts: dict[tuple[bytes, bytes, int], bool] = {}
    while True:
        it = engine.iterator(start=pos, stop=_ELEM_END, include_value=False)
        jumped = False
        for key in it:
            if examined == limit:
                _close(it)
                return SweepBatch(deletions, key, 0, len(deletions))
            examined += 1
            tag, pk, version, _ = decode_elem_key(key)
            alive = verdicts.get((tag, pk, version))
            if alive is None:
                alive = _owner_matches(engine, tag, pk, version)
                verdicts[(tag, pk, version)] = alive
            if alive:
                nxt = prefix_end(codec.elem_prefix(tag, pk, version))
                _close(it)
                if nxt is None:
                    return SweepBatch(deletions, None, 0, len(deletions))
                pos = nxt
                jumped = True
                break
            deletions[key] = None
        if not jumped:
            return SweepBatch(deletions, None, 0, len(deletions))


def _owner_matches(engine, tag: bytes, pk: bytes, version: int) -> bool:
    raw = engine.get(meta_key(pk))
    if raw is None:
        return False
    type_, _, meta_version = decode_meta_header(raw)
    return type_ == _OWNER.get(tag) and meta_version == version


def _close(it) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
