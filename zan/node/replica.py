"""A partition replica that is one member of a Raft group.

Writes are proposed to the group and answered with the applied result.  Reads are
linearizable: they wait for a read point from Raft (a CheckQuorum-guarded lease, or a
ReadIndex heartbeat round) and for the replica to have applied up to it.  The reads of
one reactor turn share one read point: every one of them arrived before it was asked
for, so any write acknowledged before any of them is covered.

A replica that does not lead its group sends a write to the leader as a Raft proposal
and answers it once it applies the entry itself (when the node forwards at all).  It
refuses a read, or a write when the node does not forward, with `NotLeader` (carrying the
leader's replica id); the dispatcher forwards a read to the leader's node.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from zan.errors import NoLeader, NotLeader, RespError, Stopping
from zan.raft.codec import decode_conf_change
from zan.raft.types import ConfChangeType, Entry, EntryType, Snapshot
from zan.store.statemachine import PartitionStateMachine

__all__ = ["RaftPartition", "SNAPSHOT_SUFFIX", "recover_snapshot_swap"]

SNAPSHOT_SUFFIX = ".snapshot"     # a fully received snapshot database, not yet swapped in
COMPLETE_MARKER = "SNAPSHOT_COMPLETE"
_OLD_SUFFIX = ".old"


def recover_snapshot_swap(path: str) -> None:
    """Finish or undo a database swap a crash interrupted (see `RaftPartition.restore`)."""
    old = path + _OLD_SUFFIX
    if os.path.isdir(old):
        if os.path.isdir(path):
            shutil.rmtree(old)
        else:
            os.rename(old, path)


class RaftPartition:
    _log = Logger()

    def __init__(self, namespace: str, pid: int, group_id: int, replica_id: int,
                 state_machine: PartitionStateMachine, driver, group_log, *, reactor,
                 options, snap_count: int, snap_catchup: int, stale_reads=lambda: False,
                 max_entry_bytes: int = 32 << 20):
        self.namespace = namespace
        self.pid = pid
        self.name = f"{namespace}-{pid}"
        self.group_id = group_id
        self.replica_id = replica_id
        self.state_machine = state_machine
        self._driver = driver
        self._group_log = group_log
        self._reactor = reactor
        self._options = options
        self._snap_count = snap_count
        self._snap_catchup = snap_catchup
        self._stale_reads = stale_reads
        self._max_entry_bytes = max_entry_bytes
        self._read_batch: list[tuple[str | None, list[bytes], int, int, Deferred]] = []
        self._read_call = None
        self._catching_up: list[tuple[int, Deferred, Any]] = []   # see `caught_up`
        self._compact_call = None
        self.stopped = False
        self.members: dict[int, bytes] = {}      # replica id -> context of its ADD
        self.removed = False                      # applied its own removal from the group
        self.fetching_snapshot = False            # set by the node while one streams in

    # -- the Partition interface of the dispatcher ---------------------------------------

    @property
    def applied_index(self) -> int:
        return self.state_machine.applied_index

    @property
    def is_leader(self) -> bool:
        return self._driver.is_leader(self.group_id)

    @property
    def leader(self) -> int:
        return self._driver.leader(self.group_id)

    def propose(self, data: bytes) -> Deferred:
        if self.stopped:
            raise Stopping()
        if len(data) > self._max_entry_bytes:
            # Refused before the log holds it: an entry no Raft frame can carry would stop
            # its group's replication for good.
            raise RespError(f"ERR this write is {len(data)} bytes in the log, more than "
                            f"max_entry_bytes ({self._max_entry_bytes})")
        driver = self._driver
        if not driver.is_leader(self.group_id):
            # Refused at once, without a failed Deferred (building a Failure per refused
            # write was a good part of a follower's CPU under write load).
            lead = self.leader
            if not lead:
                raise NoLeader()
            if not driver.forward_proposals or self.removed or self.fetching_snapshot:
                # Sent on as a proposal, the write is answered when this replica applies
                # it: never once removed from the group, late while a snapshot streams
                # in.  Then the dispatcher relays it over RESP instead.
                raise NotLeader(leader_hint=lead)
        return driver.propose(self.group_id, data)

    def read(self, name: str, args: list[bytes], now_ms: int, seed: int = 0) -> Any:
        if self.stopped:
            raise Stopping()
        if self._stale_reads():
            return self.state_machine.read(name, args, now_ms, seed)
        return self._at_read_point(name, args, now_ms, seed)

    def stale_read(self, name: str, args: list[bytes], now_ms: int, seed: int = 0) -> Any:
        return self.state_machine.read(name, args, now_ms, seed)

    def read_point(self) -> Deferred:
        """Fires (with None) once this replica, as leader, has applied up to a
        linearizable read point: whoever it calls back reads `view()` then, in the same
        reactor turn, as a read command would (a script on a replicated node)."""
        if self.stopped:
            raise Stopping()
        return self._at_read_point(None, [], 0, 0)

    def _at_read_point(self, name: str | None, args: list[bytes], now_ms: int,
                       seed: int) -> Deferred:
        if not self.is_leader:
            lead = self.leader
            if not lead:
                raise NoLeader()
            raise NotLeader(leader_hint=lead)
        d = Deferred()
        self._read_batch.append((name, args, now_ms, seed, d))
        if self._read_call is None:
            self._read_call = self._reactor.callLater(0, self._request_read_point)
        return d

    def caught_up(self) -> Deferred | None:
        """None if this replica has applied every entry its log holds, else a Deferred
        that fires, in a later reactor turn, once it has applied those (for a leader:
        everything proposed to it so far), or after the proposal timeout at the latest
        (entries a deposed leader held may never be applied)."""
        last = self._driver.raw_node(self.group_id).raft.raft_log.last_index()
        if self.state_machine.applied_index >= last:
            return None
        d: Deferred = Deferred()
        timeout = self._reactor.callLater(self._driver.proposal_timeout, _fire, d)
        self._catching_up.append((last, d, timeout))
        return d

    def _caught_up(self) -> None:
        applied = self.state_machine.applied_index
        waiting = self._catching_up
        if any(index <= applied for index, _, _ in waiting):
            self._catching_up = [w for w in waiting if w[0] > applied]
            for index, d, timeout in waiting:
                if index <= applied and timeout.active():
                    timeout.reset(0)

    def view(self):
        """The applied state, as a read source."""
        return self.state_machine.engine

    def _request_read_point(self) -> None:
        self._read_call = None
        batch, self._read_batch = self._read_batch, []
        if not batch:
            return

        def serve(_):
            read = self.state_machine.read
            for name, args, now_ms, seed, d in batch:
                if name is None:        # a read point (`read_point`)
                    d.callback(None)
                    continue
                try:
                    result = read(name, args, now_ms, seed)
                except Exception as e:  # a RespError: the reply of that command
                    d.errback(e)
                else:
                    d.callback(result)

        def refuse(failure):
            for *_, d in batch:
                d.errback(failure)

        self._driver.read_index(self.group_id).addCallbacks(serve, refuse)

    # -- Raft callbacks ----------------------------------------------------------------

    def apply(self, entries: Sequence[Entry]) -> list:
        batch = []
        member_added = False
        for e in entries:
            if e.type == EntryType.CONF_CHANGE:
                cc = decode_conf_change(e.data)
                if cc.type == ConfChangeType.REMOVE_NODE:
                    self.members.pop(cc.node_id, None)
                    if cc.node_id == self.replica_id:
                        self.removed = True
                        self._log.info("{partition}: replica {replica} removed from the group",
                                       partition=self.name, replica=self.replica_id)
                else:
                    self.members[cc.node_id] = cc.context
                    member_added = True
                batch.append((e.index, b""))  # advances the applied index, nothing else
            else:
                batch.append((e.index, e.data))
        results = self.state_machine.apply_many(batch)
        if self._catching_up:
            self._caught_up()
        # A member added after the last snapshot could not use it: a snapshot names the
        # members it was taken with, and a replica refuses one that does not name it.
        # So the snapshot a new member may need is taken as soon as it is a member.
        self._maybe_compact(now=member_added)
        return results

    def _maybe_compact(self, now: bool = False) -> None:
        if self._compact_call is not None or self.stopped:
            return
        applied = self.state_machine.applied_index
        if now or applied - self._group_log.snapshot().metadata.index >= self._snap_count:
            # After this apply round: the driver counts these entries as applied only
            # once the callback has returned.
            self._compact_call = self._reactor.callLater(0, self._compact)

    def _compact(self) -> None:
        self._compact_call = None
        if self.stopped:
            return
        # The log may only forget entries the database holds on disk.
        self.state_machine.engine.sync()
        # After a restart the database may be ahead of the entries Raft has replayed.
        index = min(self.state_machine.applied_index, self._driver.applied(self.group_id))
        self._driver.compact(self.group_id, index, b"", keep=self._snap_catchup)

    def restore(self, snapshot: Snapshot) -> None:
        """Swap in the database received for `snapshot` (already complete on disk, next to
        ours, before Raft was given the snapshot message)."""
        engine = self.state_machine.engine
        path = engine.path
        incoming = path + SNAPSHOT_SUFFIX
        if not os.path.exists(os.path.join(incoming, COMPLETE_MARKER)):
            raise RuntimeError(f"{self.name}: snapshot {snapshot.metadata.index} has no "
                               "received database")
        engine.close()
        os.rename(path, path + _OLD_SUFFIX)
        os.rename(incoming, path)
        shutil.rmtree(path + _OLD_SUFFIX)
        os.remove(os.path.join(path, COMPLETE_MARKER))
        self.state_machine = PartitionStateMachine(engine.reopened(), self._options,
                                                   name=self.name)
        self._log.info("{partition}: installed snapshot {index}, database at {applied}",
                       partition=self.name, index=snapshot.metadata.index,
                       applied=self.state_machine.applied_index)

    def stop(self) -> None:
        self.stopped = True
        if self._compact_call is not None and self._compact_call.active():
            self._compact_call.cancel()
        self._compact_call = None
        if self._read_call is not None and self._read_call.active():
            self._read_call.cancel()
        self._read_call = None
        batch, self._read_batch = self._read_batch, []
        for *_, d in batch:
            d.errback(Stopping())
        waiting, self._catching_up = self._catching_up, []
        for _, d, timeout in waiting:
            if timeout.active():
                timeout.cancel()
                d.errback(Stopping())


def _fire(d: Deferred) -> None:
    d.callback(None)
