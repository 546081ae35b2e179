"""One partition's LevelDB (plyvel), behind the few operations the store needs.

The Raft log, not LevelDB, is what makes a write durable: applied entries are written
here without sync and the log replays whatever LevelDB lost after a crash.  So `write`
defaults to ``sync=False``; `sync()` is for the rare moments the engine itself must be on
disk (before the log is compacted past what it holds).

Point reads go through a row cache (as RocksDB's ``row_cache``): the records read
recently, absent ones included, kept up to date by `write`.  Nearly every command reads
its key's meta record first, a SET included (the old record decides the key count and
the TTL), and LevelDB answers that from a memtable skip list or an SSTable block at a
few microseconds per lookup, most of it cache misses; the dict takes a few tenths of one.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator, Mapping

import plyvel

from zan.errors import StorageError

__all__ = ["LevelDBEngine"]


def _take_from(iterator, start: bytes, include_value: bool):
    """Items of a reverse iterator down to and including `start`."""
    try:
        for item in iterator:
            if (item[0] if include_value else item) < start:
                return
            yield item
    finally:
        iterator.close()


_MISSING = object()
# What a cached record costs beyond its key's and value's bytes: two bytes objects'
# headers and a dict slot, roughly.
_ENTRY_OVERHEAD = 120


def cached_size(key: bytes, value: bytes | None) -> int:
    """What a record is counted for against the row cache's budget."""
    return _ENTRY_OVERHEAD + len(key) + (len(value) if value is not None else 0)


class LevelDBEngine:
    """`get` answers from the row cache, which holds at most about `row_cache_bytes` in
    two generations: records are read into the young one; when it is full it becomes the
    old one (the previous old one is dropped), and a record found in the old one moves
    back to the young.  Records too big for a sixteenth of a generation are not cached.
    Every write goes through `write`, which updates the records the cache holds: the cache
    never differs from the database.  ``row_cache_bytes=0`` turns it off."""

    def __init__(self, path: str, *, block_cache_bytes: int = 8 << 20,
                 write_buffer_bytes: int = 4 << 20, row_cache_bytes: int = 4 << 20):
        self.path = path
        self._settings = dict(block_cache_bytes=block_cache_bytes,
                              write_buffer_bytes=write_buffer_bytes,
                              row_cache_bytes=row_cache_bytes)
        os.makedirs(path, exist_ok=True)
        try:
            self._db = plyvel.DB(
                path, create_if_missing=True, paranoid_checks=True,
                lru_cache_size=block_cache_bytes, write_buffer_size=write_buffer_bytes,
                bloom_filter_bits=10,
            )
        except plyvel.Error as e:
            raise StorageError(f"cannot open LevelDB at {path}: {e}") from e
        self._young: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}
        self._young_bytes = 0
        self._generation_bytes = row_cache_bytes // 2
        self._max_entry_bytes = self._generation_bytes // 16
        if not row_cache_bytes:
            self.get = self._db.get  # the hot read, without a method call of its own

    # -- reads ---------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value = self._young.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = self._old.pop(key, _MISSING)
        if value is _MISSING:
            value = self._db.get(key)
        self._remember(key, value)
        return value

    def _remember(self, key: bytes, value: bytes | None) -> None:
        """Put a record the young generation does not hold into it."""
        size = cached_size(key, value)
        if size > self._max_entry_bytes:
            return
        if self._young_bytes + size > self._generation_bytes:
            self._old = self._young
            self._young = {}
            self._young_bytes = 0
        self._young[key] = value
        self._young_bytes += size

    def _update_cache(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Bring the cached records among `changes` up to date (written, or deleted)."""
        young = self._young
        old = self._old
        for key, value in changes.items():
            if key in young:
                self._young_bytes -= cached_size(key, young.pop(key))
            elif key in old:
                del old[key]
            else:
                continue
            self._remember(key, value)
            young = self._young  # _remember may have started a new generation
            old = self._old

    def iterator(self, start: bytes | None = None, stop: bytes | None = None, *,
                 reverse: bool = False, include_value: bool = True,
                 snapshot=None) -> Iterator:
        """Keys in [start, stop), as (key, value) pairs or bare keys."""
        source = snapshot if snapshot is not None else self._db
        if reverse and start is not None:
            # plyvel 1.5 returns nothing for a reverse range whose only key equals `start`;
            # bound the low end by hand instead.
            return _take_from(source.iterator(stop=stop, reverse=True,
                                              include_value=include_value),
                              start, include_value)
        return source.iterator(start=start, stop=stop, reverse=reverse,
                               include_value=include_value)

    def snapshot(self):
        """A consistent read view (plyvel Snapshot with get/iterator); release with .close()."""
        return self._db.snapshot()

    # -- writes --------------------------------------------------------------------

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool = False) -> None:
        """Apply puts (bytes) and deletes (None) atomically in one WriteBatch."""
        # Not the batch's context manager: it costs a fifth of a small write, and on an
        # exception it would write the half-built batch.
        batch = self._db.write_batch(sync=sync)
        put = batch.put
        delete = batch.delete
        for key, value in changes.items():
            if value is None:
                delete(key)
            else:
                put(key, value)
        batch.write()
        if self._young or self._old:
            self._update_cache(changes)

    def sync(self) -> None:
        """Force LevelDB's own log to disk (a synced empty-ish write does exactly that)."""
        self.write({b"\x00sync": b""}, sync=True)

    # -- maintenance ---------------------------------------------------------------

    def compact_range(self, start: bytes | None = None, stop: bytes | None = None) -> None:
        self._db.compact_range(start=start, stop=stop)

    def approximate_size(self, start: bytes = b"", stop: bytes = b"\xff" * 8) -> int:
        return self._db.approximate_size(start, stop)

    @property
    def row_cache_bytes(self) -> int:
        return self._settings["row_cache_bytes"]

    def reopened(self) -> "LevelDBEngine":
        """A new engine on the same path, with the same settings (after the database
        there was replaced); this one must be closed."""
        return LevelDBEngine(self.path, **self._settings)

    def close(self) -> None:
        self._young = {}
        self._old = {}
        self._young_bytes = 0
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
