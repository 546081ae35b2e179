"""Snapshot transfer between replicas: a consistent LevelDB view streamed over HTTP.

Raft only carries a small SNAP message.  When a follower receives one, it first fetches
the leader's database over HTTP (``GET /cluster/snapshot/<ns-pid>?replica=<id>``) into a
fresh directory next to its own, and only when that copy is complete hands the message
to Raft, whose restore callback swaps the directories (`RaftPartition.restore`).

The stream is a sequence of msgpack values:
``["zan-snapshot", 1, applied_index]``, then ``["kv", [[key, value], ...]]`` batches, then
``["end", count]``.  It is read from one LevelDB snapshot, so it is the state at exactly
`applied_index`, which is at or after the Raft snapshot's index; the follower skips the
entries up to it when Raft replays them.
"""

from __future__ import annotations

import os
import shutil

import msgpack
from twisted.internet.task import cooperate
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from zan.errors import StorageError
from zan.node.replica import COMPLETE_MARKER, SNAPSHOT_SUFFIX
from zan.store.codec import APPLIED_INDEX_KEY, decode_i64
from zan.store.engine import LevelDBEngine

__all__ = ["stream_snapshot", "snapshot_chunks", "SnapshotReceiver"]

_MAGIC = "zan-snapshot"
_VERSION = 1
_BATCH_BYTES = 256 * 1024


@implementer(IPushProducer)
class _TaskProducer:
    """Lets the HTTP transport pause the streaming task when the follower reads slowly."""

    def __init__(self, task):
        self._task = task

    def pauseProducing(self):
        self._task.pause()

    def resumeProducing(self):
        self._task.resume()

    def stopProducing(self):
        self._task.stop()


def snapshot_chunks(snap):
    """The stream of a LevelDB snapshot view, in pieces of about 256 KiB."""
    raw = snap.get(APPLIED_INDEX_KEY)
    applied = decode_i64(raw) if raw is not None else 0
    packer = msgpack.Packer(use_bin_type=True)
    yield packer.pack([_MAGIC, _VERSION, applied])
    batch, size, count = [], 0, 0
    for key, value in snap.iterator():
        batch.append([key, value])
        size += len(key) + len(value) + 8
        count += 1
        if size >= _BATCH_BYTES:
            yield packer.pack(["kv", batch])
            batch, size = [], 0
    if batch:
        yield packer.pack(["kv", batch])
    yield packer.pack(["end", count])


def stream_snapshot(request, engine, on_done) -> None:
    """Write the whole database of `engine` to the twisted.web `request`, from one
    LevelDB snapshot; `on_done(ok)` says whether the follower got all of it."""
    snap = engine.snapshot()
    request.setHeader(b"Content-Type", b"application/octet-stream")

    def produce():
        for chunk in snapshot_chunks(snap):
            request.write(chunk)
            yield None

    task = cooperate(produce())
    request.registerProducer(_TaskProducer(task), True)
    over = []

    def finished(result):
        over.append(True)
        snap.close()
        request.unregisterProducer()
        request.finish()
        on_done(True)

    def failed(failure):
        over.append(True)
        snap.close()
        request.unregisterProducer()
        on_done(False)

    def client_gone(failure):
        if not over:
            task.stop()   # fails whenDone: reported as not delivered

    task.whenDone().addCallbacks(finished, failed)
    request.notifyFinish().addErrback(client_gone)


class SnapshotReceiver:
    """Receives one partition's snapshot stream into ``<db path>.snapshot``."""

    _log = Logger()

    def __init__(self, db_path: str):
        self.path = db_path + SNAPSHOT_SUFFIX
        shutil.rmtree(self.path, ignore_errors=True)
        self._engine = LevelDBEngine(self.path)
        self._unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=64 << 20)
        self._state = "header"
        self.applied_index = None
        self.count = 0

    def feed(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for item in self._unpacker:
            self._item(item)

    def _item(self, item) -> None:
        if self._state == "header":
            if not (isinstance(item, list) and len(item) == 3 and item[0] == _MAGIC
                    and item[1] == _VERSION):
                raise StorageError("snapshot stream: bad header")
            self.applied_index = item[2]
            self._state = "body"
        elif self._state == "body" and isinstance(item, list) and item and item[0] == "kv":
            changes = {bytes(k): bytes(v) for k, v in item[1]}
            self._engine.write(changes)
            self.count += len(changes)
        elif self._state == "body" and isinstance(item, list) and item and item[0] == "end":
            if item[1] != self.count:
                raise StorageError(f"snapshot stream: {self.count} records, expected {item[1]}")
            self._state = "end"
        else:
            raise StorageError("snapshot stream: unexpected record")

    def finish(self) -> None:
        """Make the received database durable and mark it complete."""
        if self._state != "end":
            raise StorageError("snapshot stream ended early")
        self._engine.sync()
        self._engine.close()
        marker = os.path.join(self.path, COMPLETE_MARKER)
        with open(marker, "w") as f:
            f.write(str(self.applied_index))
            f.flush()
            os.fsync(f.fileno())

    def abort(self) -> None:
        self._engine.close()
        shutil.rmtree(self.path, ignore_errors=True)
