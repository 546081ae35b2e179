"""From a parsed command to its reply: Redis's dispatch order on top of partitions.

existence → arity → authentication → routing → read (run now on the partition) or
write (a command entry proposed to the partition, answered once applied) → reply.

Per connection, commands take effect in the order they were sent, as with Redis: a
write is proposed at once (the log orders writes), but a read waits for the connection's
earlier writes to be applied, and once anything waits, everything after it waits too.

On a standalone node a command whose keys lie in several partitions of one namespace
runs as one over all of them (`zan.store.multi`): a write becomes one log record that
gives each partition its share, so it is atomic and durable as a whole.  A replicated
node splits a multi-key command by partition (each part atomic on its own) and answers
CROSSSLOT to a command whose keys must share a partition but do not.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred, DeferredList, FirstError, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from zan.commands.registry import spec_named
from zan.commands.table import NO_AUTH, Route, lookup_command
from zan.errors import NoLeader, NotLeader, PartitionNotFound, RespError, ZanError, wrong_arity
from zan.node.namespaces import KeyRouter
from zan.node.scripts import Scripts
from zan.node.transaction import CONTROL as TXN_CONTROL, Transactions
from zan.store.multi import run_across
from zan.store.statemachine import encode_command_entry

__all__ = ["Partition", "PartitionSet", "NodeDispatcher"]


class Partition(Protocol):
    name: str
    applied_index: int

    def propose(self, data: bytes) -> Deferred: ...

    def read(self, name: str, args: list[bytes], now_ms: int, seed: int = 0) -> Any: ...


class PartitionSet(Protocol):
    """What the dispatcher needs from the node: partitions by (namespace, pid)."""

    def partition(self, namespace: str, pid: int) -> Partition: ...

    def partitions(self) -> list[Partition]: ...


class _Sequencer:
    """Per-connection ordering state (see module docstring)."""

    __slots__ = ("pending_writes", "queue", "unwatched", "barriers")

    def __init__(self):
        self.pending_writes = 0
        # Node-level work under way that everything after it waits for (a replicated
        # WATCH reading its keys' state).
        self.barriers = 0
        self.queue: deque[tuple[bool, Callable[[], Any], Deferred]] = deque()
        # Writes not counted in pending_writes yet, done or not: a write-only connection
        # costs no callback per write; a read counts the unfinished ones (`_watch`).
        self.unwatched: deque[Deferred] = deque()


def _finished(d: Deferred) -> bool:
    return d.called and not d.paused


CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"

# A forwarded command may be forwarded on once more: a node that hosts no replica of a
# partition sends it to one that does, which sends it to the leader if it is not.
_MAX_HOPS = 2
_FORWARDED = (b"ZANFWD", b"zanfwd")
# Bound on the spellings remembered (upper/lower/mixed case of every command name).
_KNOWN_SPELLINGS = 4096


class NodeDispatcher:
    _log = Logger()

    def __init__(self, reactor: IReactorTime, router: KeyRouter, partitions: PartitionSet,
                 server, *, requirepass: str = "", rng: random.Random | None = None):
        self._reactor = reactor
        self.router = router
        self.partitions = partitions
        self.server = server              # context for SERVER-route handlers
        self.requirepass = requirepass
        self._rng = rng or random.Random()
        self._getrandbits = self._rng.getrandbits
        # argv[0] as clients spell it -> (spec, is_write, ...): the command table's lookup
        # (decode, lower case) once per spelling.
        self._known: dict[bytes, tuple] = {}
        self.commands_processed = 0
        # Commands the node runs itself rather than by route (the scans): name -> f(spec, argv).
        self.special: dict[str, Callable[[Any, list[bytes]], Any]] = {}
        self.transactions = Transactions(self)    # MULTI/EXEC/WATCH
        self.scripts = Scripts(self)              # EVAL and SCRIPT
        # Replicated nodes: f(partition, spec_name, args, hops) -> Deferred running a
        # partition-level command on the node that leads `partition` (None: refuse).
        self.forwarder: Callable[..., Deferred] | None = None
        # How long a command may wait for its partition to elect a leader, retrying every
        # `leader_retry` seconds, before it fails with ERR_CLUSTER_CHANGED (0: at once).
        self.leader_wait = 0.0
        self.leader_retry = 0.1
        # Set by a standalone node before it serves: every partition is a `LocalPartition`
        # whose state a read may consult directly (never set for Raft replicas, whose
        # reads wait for a read point).
        self.local_partitions = False

    def wait_for_leaders(self, tick_ms: int, election_tick: int, proposal_timeout_ms: int):
        """Let a command that reaches a partition mid-election wait for the new leader:
        two election timeouts at most, within the proposal timeout, retried every tick."""
        election = tick_ms * election_tick / 1000.0
        self.leader_wait = min(2 * election, proposal_timeout_ms / 1000.0)
        self.leader_retry = tick_ms / 1000.0

    def now_ms(self) -> int:
        return int(self._reactor.seconds() * 1000)

    # -- the dispatcher interface of zan.resp.protocol -----------------------------

    def dispatch(self, client, argv: list[bytes]):
        self.commands_processed += 1
        if "multi" in client.extra and argv[0].lower() not in TXN_CONTROL:
            return self.transactions.queue(client, argv)
        known = self._known.get(argv[0])
        if known is None:
            if argv[0] in _FORWARDED:
                return self._forwarded(client, argv)
            known = self._learn(argv)
        spec, is_write, one_key, arity, record_reader = known
        if (argc := len(argv)) != arity and (arity > 0 or argc < -arity):
            raise wrong_arity(spec.name)
        if self.requirepass and not client.authenticated and NO_AUTH not in spec.flags:
            raise RespError("NOAUTH Authentication required.")
        if one_key is None:
            return spec.handler(self.server, client, argv[1:])
        seq = client.extra.get("seq")
        if seq is None:
            seq = client.extra["seq"] = _Sequencer()
        elif seq.queue or seq.barriers or (not is_write and (
                seq.pending_writes or (seq.unwatched and self._watch(seq)))):
            d = Deferred()
            seq.queue.append((is_write, lambda: self._execute(spec, argv, seq), d))
            return d
        if record_reader is not None:
            # A one-record read (GET) on a local partition: straight from its database.
            partition, pk = self.locate(argv[1])
            sm = partition.state_machine
            return record_reader(sm.engine, pk, int(self._reactor.seconds() * 1000), sm.options)
        if not one_key or spec.name in self.special:
            return self._execute(spec, argv, seq)
        # The common case, _execute for a one-key command without the indirections.
        partition, args = self._key_partition(argv)
        if not is_write:
            if self.forwarder is None and not spec.allow_stale:
                return partition.read(spec.name, args, int(self._reactor.seconds() * 1000),
                                      self._getrandbits(63))
            return self._on(partition, spec, args)
        result = self._on(partition, spec, args)
        if type(result) is Deferred or isinstance(result, Deferred):
            unwatched = seq.unwatched
            unwatched.append(result)
            if len(unwatched) > 64:
                while unwatched and _finished(unwatched[0]):
                    unwatched.popleft()
        return result

    def in_order(self, client, work: Callable[[], Any], *, barrier: bool):
        """Run node-level work on partitions in the connection's order.  A `barrier`
        (a replicated WATCH) waits for the connection's earlier writes to be applied, and
        whatever the connection sends after it waits for it to finish; otherwise (a
        replicated EXEC) it goes like a write: proposed in turn, and later reads wait."""
        seq = client.extra.get("seq")
        if seq is None:
            seq = client.extra["seq"] = _Sequencer()
        if barrier:
            def run():
                seq.barriers += 1
                return maybeDeferred(work).addBoth(self._barrier_done, seq)
        else:
            def run():
                result = work()
                if isinstance(result, Deferred):
                    seq.pending_writes += 1
                    result.addBoth(self._write_done, seq)
                return result
        if seq.queue or seq.barriers or (barrier and (
                seq.pending_writes or (seq.unwatched and self._watch(seq)))):
            d = Deferred()
            seq.queue.append((not barrier, run, d))
            return d
        return run()

    def _barrier_done(self, reply, seq: _Sequencer):
        seq.barriers -= 1
        if seq.queue:
            self._drain(seq)
        return reply

    def _watch(self, seq: _Sequencer) -> bool:
        """Count the connection's unfinished unwatched writes in pending_writes, to hear
        when they end; True if there are any."""
        for d in seq.unwatched:
            if not _finished(d):
                seq.pending_writes += 1
                d.addBoth(self._write_done, seq)
        seq.unwatched.clear()
        return seq.pending_writes > 0

    def random_seed(self) -> int:
        return self._getrandbits(63)

    def log_internal_error(self, name: str) -> None:
        self._log.failure("running {name}", name=name)

    def locate(self, key: bytes) -> tuple[Partition, bytes]:
        """The partition holding `key`, and the key's primary key in it."""
        namespace, pid, pk = self.router.locate(key)
        partition = self.partitions.partition(namespace, pid)
        if partition is None:
            raise PartitionNotFound()
        return partition, pk

    def _key_partition(self, argv: list[bytes]) -> tuple[Partition, list[bytes]]:
        """The partition of a one-key command's key, and its arguments with the key
        replaced by the partition's primary key."""
        partition, pk = self.locate(argv[1])
        args = argv[1:]
        args[0] = pk
        return partition, args

    def _learn(self, argv: list[bytes]) -> tuple:
        """(spec, is_write, one_key, arity, record_reader) of argv[0], remembered under its
        exact spelling (one_key: None for a SERVER command, else whether its route is KEY;
        record_reader: how to read its one record straight from a local partition's
        database, or None); raises Redis's unknown-command error."""
        spec = lookup_command(argv)
        one_key = None if spec.route is Route.SERVER else spec.route is Route.KEY
        record_reader = None
        if self.local_partitions and one_key and not spec.is_write and not spec.allow_stale \
                and spec.name not in self.special:
            record_reader = spec.extra.get("read")
        known = (spec, spec.is_write, one_key, spec.arity, record_reader)
        if len(self._known) < _KNOWN_SPELLINGS:
            self._known[argv[0]] = known
        return known

    def connection_closed(self, client) -> None:
        self.transactions.connection_closed(client)
        seq = client.extra.get("seq")
        if seq is not None:
            seq.queue.clear()
            seq.unwatched.clear()

    # -- execution -----------------------------------------------------------------

    def _execute(self, spec, argv, seq: _Sequencer):
        result = self._run(spec, argv)
        if spec.is_write and isinstance(result, Deferred):
            seq.pending_writes += 1
            result.addBoth(self._write_done, seq)
        return result

    def _write_done(self, reply, seq: _Sequencer):
        seq.pending_writes -= 1
        if seq.queue:
            self._drain(seq)
        return reply

    def _drain(self, seq: _Sequencer) -> None:
        # Queued writes may go as soon as they are first in line; a read waits for every
        # write before it to be applied.
        while seq.queue and not seq.barriers and (seq.queue[0][0] or not seq.pending_writes):
            _, thunk, d = seq.queue.popleft()
            maybeDeferred(thunk).chainDeferred(d)

    def _run(self, spec, argv):
        special = self.special.get(spec.name)
        if special is not None:
            return special(spec, argv)
        route = spec.route
        if route is Route.KEY:
            partition, args = self._key_partition(argv)
            return self._on(partition, spec, args)
        if route is Route.MULTI_KEY:
            return self._multi(spec, argv)
        if route is Route.SAME_PARTITION:
            return self._same_partition(spec, argv)
        if route is Route.ALL_PARTITIONS:
            return self._everywhere(spec, argv)
        raise AssertionError(route)

    def partition_of(self, namespace: str, pid: int) -> Partition:
        partition = self.partitions.partition(namespace, pid)
        if partition is None:
            raise PartitionNotFound()
        return partition

    def run_on(self, partition: Partition, spec, args: list[bytes]):
        """Run one command (args with primary keys) on one partition."""
        return self._on(partition, spec, args)

    def _on(self, partition: Partition, spec, args: list[bytes], hops: int = _MAX_HOPS,
            deadline: float | None = None):
        """Run one command on `partition`: here, or where it can run.  A replica that does
        not lead forwards it to the leader's node (at most `hops` times); a command whose
        partition has no leader waits for one (`_leaderless`)."""
        forwarder = self.forwarder
        try:
            result = self._run_here(partition, spec, args)
        except NotLeader:
            if forwarder is None or hops <= 0:
                raise
            return self._forward(partition, spec, args, hops, deadline)
        except NoLeader:
            if forwarder is None or self.leader_wait <= 0:
                raise
            return self._leaderless(Failure(), partition, spec, args, hops, deadline)
        if forwarder is not None and isinstance(result, Deferred):
            result.addErrback(self._refused, partition, spec, args, hops, deadline)
        return result

    def _run_here(self, partition: Partition, spec, args: list[bytes]):
        seed = self._getrandbits(63)
        now_ms = int(self._reactor.seconds() * 1000)
        if spec.is_write:
            return partition.propose(encode_command_entry(now_ms, seed, spec.name, args))
        if spec.allow_stale:
            # stale.*: this replica's own state, leader or not (ZanRedisDB's follower reads).
            read = getattr(partition, "stale_read", partition.read)
            return read(spec.name, args, now_ms, seed)
        here = spec.extra.get("here")
        if here is not None:
            # Node-level work its partition's leader does (zan.script): f(node, partition, args).
            return here(self, partition, args)
        return partition.read(spec.name, args, now_ms, seed)

    def _forward(self, partition, spec, args, hops, deadline):
        result = self.forwarder(partition, spec.name, args, hops - 1)
        # Only a forwarder that failed at once (no leader known here) leaves the waiting
        # to us: a reply relayed from the leader's node is never NoLeader, that node
        # waited for its own leader.
        if self.leader_wait > 0 and isinstance(result, Deferred) and result.called:
            result.addErrback(self._leaderless, partition, spec, args, hops, deadline)
        return result

    def _refused(self, failure, partition, spec, args, hops, deadline):
        """A command run here failed.  Refused as not leader, it was not proposed (a
        write) or not served (a read), so the leader may run it; any other failure of a
        write (leader changed, timeout) may have taken effect: no retry."""
        if failure.check(NotLeader) and hops > 0:
            return self._forward(partition, spec, args, hops, deadline)
        if failure.check(NoLeader) and self.leader_wait > 0:
            return self._leaderless(failure, partition, spec, args, hops, deadline)
        return failure

    def _leaderless(self, failure, partition, spec, args, hops, deadline):
        """The partition has no leader (an election or a leadership transfer under way):
        the command was not run anywhere, so it waits for one and runs then, as long as
        `leader_wait` allows, instead of failing the client during a routine election."""
        failure.trap(NoLeader)
        now = self._reactor.seconds()
        if deadline is None:
            deadline = now + self.leader_wait
        if now + self.leader_retry > deadline:
            return failure
        # Look the partition up again: where its leader is may be known by then.
        fresh = self.partitions.partition(partition.namespace, partition.pid) or partition
        return deferLater(self._reactor, self.leader_retry, self._on, fresh, spec, args, hops,
                          deadline)

    # -- commands forwarded by another node ----------------------------------------------

    def _forwarded(self, client, argv: list[bytes]):
        """``ZANFWD <hops> <namespace> <pid> <command> <args with primary keys>``: run one
        partition-level command on exactly that partition, as its leader."""
        if self.requirepass and not client.authenticated:
            raise RespError("NOAUTH Authentication required.")
        if len(argv) < 5:
            raise wrong_arity("zanfwd")
        try:
            hops, pid = int(argv[1]), int(argv[3])
            spec = spec_named(argv[4].decode())
            if spec is None:
                raise KeyError(argv[4])
        except (ValueError, KeyError, UnicodeDecodeError):
            raise RespError("ERR invalid forwarded command") from None
        partition = self.partition_of(argv[2].decode("utf-8", "replace"), pid)
        return self._on(partition, spec, list(argv[5:]), hops)

    def _key_groups(self, spec, argv):
        """[(position, route, words of that key group)] for the keys of argv."""
        step = max(spec.key_step, 1)
        groups = []
        for n, pos in enumerate(spec.key_positions_of(argv)):
            r = self.router.route(argv[pos])
            groups.append((n, r, [r.pk, *argv[pos + 1:pos + step]]))
        return groups

    def _multi(self, spec, argv):
        if (len(argv) - spec.first_key) % max(spec.key_step, 1):
            raise wrong_arity(spec.name)
        groups = self._key_groups(spec, argv)
        by_partition: dict[tuple[str, int], tuple[list[int], list[bytes]]] = {}
        for n, r, words in groups:
            positions, args = by_partition.setdefault((r.namespace, r.partition), ([], []))
            positions.append(n)
            args.extend(words)
        head = list(argv[1:spec.first_key])
        namespaces = {ns for ns, _ in by_partition}
        if self.local_partitions and spec.is_write and len(by_partition) > 1 \
                and len(namespaces) == 1:
            args = head + [word for _, _, words in groups for word in words]
            return self.across(spec, namespaces.pop(), [pid for _, pid in by_partition], args)
        if len(by_partition) == 1:
            ((ns, pid), (positions, args)), = by_partition.items()
            reply = self._on(self.partition_of(ns, pid), spec, head + args)
            return _then(reply, lambda r: spec.merge([(positions, r)], len(groups)))
        parts = []
        replies = []
        for (ns, pid), (positions, args) in by_partition.items():
            parts.append(positions)
            replies.append(maybeDeferred(self._on, self.partition_of(ns, pid), spec, head + args))
        return DeferredList(replies, consumeErrors=True).addCallback(
            lambda results: spec.merge(
                [(positions, value if ok else _failure_reply(value))
                 for positions, (ok, value) in zip(parts, results)], len(groups)))

    def _same_partition(self, spec, argv):
        positions = spec.key_positions_of(argv)
        routes = [self.router.route(argv[pos]) for pos in positions]
        targets = {(r.namespace, r.partition) for r in routes}
        args = list(argv[1:])
        for pos, r in zip(positions, routes):
            args[pos - 1] = r.pk
        if len(targets) > 1:
            namespaces = {ns for ns, _ in targets}
            if not self.local_partitions or len(namespaces) > 1:
                raise RespError(CROSSSLOT)
            return self.across(spec, namespaces.pop(), [pid for _, pid in targets], args)
        if not targets:
            # No valid key (a bad key count): any partition's handler reports the error.
            return self._on(self.partitions.partitions()[0], spec, args)
        (ns, pid), = targets
        return self._on(self.partition_of(ns, pid), spec, args)

    def across(self, spec, namespace: str, pids: list[int], args: list[bytes]):
        """Standalone: run a command whose keys lie in partitions `pids` of `namespace`
        as one (args hold primary keys).  A read sees every partition's applied state; a
        write first settles them (every pending write applied), so it sees and follows
        all earlier ones, then gives each changed partition its share in one log record
        and answers once all shares are applied."""
        parts = {pid: self.partition_of(namespace, pid) for pid in pids}

        def route(pk: bytes) -> int:
            return self.router.partition_of_pk(namespace, pk)

        sources = {pid: p.view() for pid, p in parts.items()}
        now_ms, seed = self.now_ms(), self._getrandbits(63)
        options = next(iter(parts.values())).state_machine.options
        if not spec.is_write:
            reply, _ = run_across(spec.handler, args, sources, route, now_ms=now_ms,
                                  seed=seed, options=options)
            return reply
        committer = next(iter(parts.values())).committer
        committer.settle(parts.values())
        indexes = {pid: p.next_index for pid, p in parts.items()}
        reply, changes = run_across(spec.handler, args, sources, route, now_ms=now_ms,
                                    seed=seed, indexes=indexes, options=options)
        shares = [(parts[pid], ch) for pid, ch in changes.items() if ch]
        if not shares:
            return reply
        d = committer.propose_atomic(shares)
        return d.addCallbacks(lambda _: reply, first_failure)

    def _everywhere(self, spec, argv):
        replies = [maybeDeferred(self._on, p, spec, list(argv[1:]))
                   for p in self.partitions.partitions()]
        return DeferredList(replies, consumeErrors=True).addCallback(
            lambda results: spec.merge([v if ok else _failure_reply(v) for ok, v in results]))


def first_failure(failure):
    """The failure of the first share that failed (gatherResults wraps it)."""
    if failure.check(FirstError):
        return failure.value.subFailure
    return failure


def _failure_reply(failure):
    if isinstance(failure.value, ZanError):
        return failure.value
    return RespError("ERR internal error")


def _then(reply, f):
    if isinstance(reply, Deferred):
        return reply.addCallback(f)
    return f(reply)
