"""A partition replica on this node, and the group commit that makes its writes durable.

`LocalPartition` is a partition with a single replica (a standalone node): its log is the
node's WAL group for the partition, appended to at proposal time; every write of a
reactor turn, across all partitions, becomes durable with one `LogStore.sync()`; only
then are the entries applied and their callers answered.  This is the order a Raft group
follows (persist → apply → reply), and the same interface — `propose`, `read`,
`applied_index` — is what a replicated partition offers the dispatcher.

A write over several partitions (`GroupCommitter.propose_atomic`) gives each of them one
entry, its share, and the committer appends all the shares in one log record before the
partitions' other entries of the turn: after a crash every partition has its share or
none has.  A share is reserved only while its partition has nothing pending
(`GroupCommitter.settle`), so each partition's entries reach the log in index order.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from zan.errors import Stopping, StorageError
from zan.raft.storage import GroupLog, LogStore
from zan.raft.types import Entry
from zan.store.keyspace import Txn
from zan.store.multi import StagedSource
from zan.store.statemachine import PartitionStateMachine, encode_effects_entry, stage_changes

__all__ = ["GroupCommitter", "LocalPartition"]

_TERM = 1  # a single-replica log never changes leader


class GroupCommitter:
    """Coalesces the writes that arrive within `batch_delay` (0: one reactor turn) into one
    sync of the node's log; only then are they applied and answered.

    The fsync runs on the reactor thread, as Redis's ``appendfsync always`` does: on a
    thread of its own it had to win the GIL back from the busy reactor several times per
    sync, and those hand-offs cost more than overlapping the disk's work gained (SET -P 1
    22k/s with a sync thread, 28k/s inline)."""

    _log = Logger()

    def __init__(self, reactor: IReactorTime, log_store: LogStore, *, batch_delay: float = 0.0):
        self._reactor = reactor
        self._log_store = log_store
        self._batch_delay = batch_delay
        self._dirty: dict[int, "LocalPartition"] = {}
        # Writes over several partitions, in order: [(partition, entry), ...] each.
        self._atomic: list[list[tuple["LocalPartition", Entry]]] = []
        self._call = None
        self.syncs = 0

    def schedule(self, partition: "LocalPartition") -> None:
        self._dirty[id(partition)] = partition
        if self._call is None:
            self._call = self._reactor.callLater(self._batch_delay, self.flush)

    def settle(self, partitions) -> None:
        """Make every command pending on `partitions` durable and applied now, so that a
        write over them sees, and follows, all of them: the changes of pending shares
        are known already (`LocalPartition.overlay`)."""
        while any(p.has_pending_commands() for p in partitions):
            self.flush()

    def propose_atomic(self, shares: list[tuple["LocalPartition", dict]]) -> Deferred:
        """Give each partition its share (one entry: the changes it makes there) of a
        write over several: the shares reach the log in one record.  Fires once every
        share is applied.  The partitions must be settled (see `settle`)."""
        parts = []
        applied = []
        for partition, changes in shares:
            data = encode_effects_entry(changes)
            index, d = partition.add_share(data, changes)
            parts.append((partition, Entry(_TERM, index, data=data)))
            applied.append(d)
        self._atomic.append(parts)
        for partition, _ in parts:
            self.schedule(partition)
        return gatherResults(applied, consumeErrors=True)

    def flush(self) -> None:
        """Sync what the dirty partitions handed over, then apply and answer it; a failed
        sync fails those writes and stops the partitions (nothing after it can be made
        durable in order)."""
        self.cancel()
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        atomic, self._atomic = self._atomic, []
        for parts in atomic:
            # Before the partitions' own entries: a share was reserved while its
            # partition had none pending, so it precedes them all.
            self._log_store.append_atomic([(p.group_id, (e,)) for p, e in parts])
        covered = []
        for p in dirty.values():
            p.maybe_compact()   # between syncs: everything the log holds is on disk
            covered.append((p, p.persist_pending()))
        try:
            self._log_store.sync()
        except Exception:
            failure = Failure()
            self._log.failure("syncing the log failed: writes are refused", failure)
            for partition, upto in covered:
                partition.fail_pending(upto, failure)
            return
        self.syncs += 1
        for partition, upto in covered:
            partition.apply_pending(upto)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class LocalPartition:
    _log = Logger()

    def __init__(self, namespace: str, pid: int, state_machine: PartitionStateMachine,
                 group_log: GroupLog, committer: GroupCommitter, snap_count: int = 100000,
                 group_id: int | None = None):
        self.namespace = namespace
        self.pid = pid
        # Of its log in the node's log store (the WAL's group logs know it).
        self.group_id = group_id if group_id is not None else group_log.group_id
        self.committer = committer
        self.name = f"{namespace}-{pid}"
        self.state_machine = state_machine
        self._group_log = group_log
        self._committer = committer
        self._snap_count = snap_count
        self._pending: deque[tuple[int, bytes, Deferred]] = deque()
        self._unpersisted: list[Entry] = []
        # Changes of the shares of writes over several partitions given since the last
        # command entry was applied (a share's changes are known before it is applied, a
        # command's are not), and the indexes of the shares still pending: a write over
        # several partitions reads the database under `overlay`, and must settle only
        # partitions where a command is pending.
        self.overlay: dict[bytes, bytes | None] = {}
        self._pending_shares: deque[int] = deque()
        self._next_index = group_log.last_index() + 1
        self.stopped = False
        # The Partition interface's read(name, args, now_ms, seed): the state machine's own,
        # bound here so the hot read path makes no call of its own.
        self.read = state_machine.read
        self._replay()

    @property
    def applied_index(self) -> int:
        return self.state_machine.applied_index

    @property
    def is_leader(self) -> bool:
        return True

    def _replay(self) -> None:
        """Apply what the log holds beyond the database (lost by a crash before LevelDB
        wrote it out): the log is the truth, the database catches up."""
        log = self._group_log
        first = max(self.state_machine.applied_index + 1, log.first_index())
        last = log.last_index()
        if self.state_machine.applied_index < log.first_index() - 1:
            # The log was compacted past what the database holds: cannot happen unless the
            # database directory was replaced by an older copy.
            raise RuntimeError(f"{self.name}: database at index {self.state_machine.applied_index}"
                               f" is behind the compacted log ({log.first_index() - 1})")
        index = first
        while index <= last:
            entries = log.entries(index, last + 1, 8 << 20)
            self.state_machine.apply_many([(entry.index, entry.data) for entry in entries])
            index = entries[-1].index + 1
        if last >= first:
            self._log.info("{partition}: replayed entries {first}..{last} from the log",
                           partition=self.name, first=first, last=last)

    def propose(self, data: bytes) -> Deferred:
        index, d = self.reserve(data)
        self._unpersisted.append(Entry(_TERM, index, data=data))
        self._committer.schedule(self)
        return d

    def has_pending(self) -> bool:
        return bool(self._pending)

    def has_pending_commands(self) -> bool:
        return len(self._pending) > len(self._pending_shares)

    def view(self):
        """The database as writes over several partitions read it: under `overlay`."""
        return StagedSource(Txn(self.state_machine.engine, now_ms=0, over=self.overlay))

    def add_share(self, data: bytes, changes: dict[bytes, bytes | None]) -> tuple[int, Deferred]:
        """Reserve the next index for a share of a write over several partitions whose
        `changes` are known: later such writes read them in `overlay` until applied.
        Watched keys count the modification now, when the write takes its place."""
        index, d = self.reserve(data)
        self._pending_shares.append(index)
        # With the key counts as they will be (DBSIZE in a later transaction reads them).
        stage_changes(self.overlay, self.view().get, changes)
        if self.state_machine.watched:
            self.state_machine.touched(changes)
        return index, d

    @property
    def next_index(self) -> int:
        """The index the next entry will take."""
        return self._next_index

    def reserve(self, data: bytes) -> tuple[int, Deferred]:
        """The next index for `data`, and a Deferred that fires once the entry is applied.
        `propose` hands the entry to the log itself; the committer writes a share of a
        write over several partitions."""
        if self.stopped:
            raise Stopping()
        index = self._next_index
        self._next_index += 1
        d = Deferred()
        self._pending.append((index, data, d))
        return index, d

    def persist_pending(self) -> int:
        """Hand this turn's entries to the log in one append (synced by the committer);
        returns the last index handed over."""
        if self._unpersisted:
            self._group_log.append(self._unpersisted)
            self._unpersisted = []
        return self._next_index - 1

    def apply_pending(self, upto: int) -> None:
        """Apply and answer the entries up to `upto`, which a sync made durable."""
        pending = self._pending
        batch = []
        while pending and pending[0][0] <= upto:
            batch.append(pending.popleft())
        if batch:
            shares = self._pending_shares
            applied_shares = 0
            while shares and shares[0] <= upto:
                shares.popleft()
                applied_shares += 1
            if applied_shares < len(batch) or not pending:
                # A command's changes are in the database now, under what the overlay
                # holds: drop it (a share after a pending command cannot exist, see
                # GroupCommitter.settle).
                self.overlay = {}
            try:
                replies = self.state_machine.apply_many([(index, data) for index, data, _ in batch])
            except Exception as e:
                for _, _, d in batch:
                    d.errback(StorageError(f"applying the entry failed: {e}"))
                raise
            for (_, _, d), reply in zip(batch, replies):
                d.callback(reply)

    def fail_pending(self, upto: int, failure) -> None:
        self.overlay = {}
        self._pending_shares.clear()
        pending = self._pending
        while pending and pending[0][0] <= upto:
            _, _, d = pending.popleft()
            d.errback(StorageError(f"the log could not be synced: {failure.getErrorMessage()}"))
        self.stopped = True

    def maybe_compact(self) -> None:
        """Drop the log entries the database holds once snap_count of them have piled up
        (called by the committer between syncs)."""
        applied = self.state_machine.applied_index
        if applied - (self._group_log.first_index() - 1) < self._snap_count:
            return
        # Entries may leave the log only once the database holding them is on disk.
        self.state_machine.engine.sync()
        self._group_log.compact(applied)

    def stop(self) -> None:
        self.stopped = True
        while self._pending:
            _, _, d = self._pending.popleft()
            d.errback(Stopping())
