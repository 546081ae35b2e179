"""One partition's LevelDB (plyvel), behind the few operations the store needs.

The Raft log, not LevelDB, is what makes a write durable: applied entries are written
here without sync and the log replays whatever LevelDB lost after a crash.  So `write`
defaults to ``sync=False``; `sync()` is for the rare moments the engine itself must be on
disk (before the log is compacted past what it holds).
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


class LevelDBEngine:
    def __init__(self, path: str, *, block_cache_bytes: int = 8 << 20,
                 write_buffer_bytes: int = 4 << 20):
        self.path = path
        os.makedirs(path, exist_ok=True)
        try:
            self._db = plyvel.DB(
                path, create_if_missing=True, paranoid_checks=True,
                lru_cache_size=block_cache_bytes, write_buffer_size=write_buffer_bytes,
                bloom_filter_bits=10,
            )
        except plyvel.Error as e:
            raise StorageError(f"cannot open LevelDB at {path}: {e}") from e
        self.get = self._db.get  # the hot read, without a method call of its own

    # -- reads ---------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

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

    def sync(self) -> None:
        """Force LevelDB's own log to disk (a synced empty-ish write does exactly that)."""
        self._db.put(b"\x00sync", b"", sync=True)

    # -- maintenance ---------------------------------------------------------------

    def compact_range(self, start: bytes | None = None, stop: bytes | None = None) -> None:
        self._db.compact_range(start=start, stop=stop)

    def approximate_size(self, start: bytes = b"", stop: bytes = b"\xff" * 8) -> int:
        return self._db.approximate_size(start, stop)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
