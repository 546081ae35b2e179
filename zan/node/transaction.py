"""MULTI, EXEC, DISCARD, WATCH and UNWATCH on a standalone node, as Redis 7.0 has them.

Inside MULTI a connection's commands are checked (existence, arity, authentication) and
queued; an error while queueing makes EXEC answer EXECABORT and run nothing.  EXEC runs
the queued commands in order as one: it settles every partition they touch (their
pending writes synced and applied), runs each command on a Txn over that partition's
writes so far (`zan.store.multi.StagedSource`), so later commands see earlier ones and a
command that fails (WRONGTYPE) leaves the others as they are, then gives each changed
partition its writes as one effects entry, all in one log record: the transaction is
atomic and durable as a whole, and answered once it is applied.

WATCH follows keys in their partitions' state machines, which count every applied write
that changes a watched key (`PartitionStateMachine.watch`); EXEC answers a null array,
and runs nothing, when one was modified since it was watched, by anyone, or expired
since.

A replicated node runs a transaction whose keys (queued and watched) lie in one
partition as one log entry of that partition (``zan.exec``, see
`zan.commands.transactions`), proposed here or forwarded to the partition's leader like
any write.  WATCH reads a digest of each key's state at a linearizable point; the entry
carries those digests and every replica compares them when it applies it, so the check
holds across leader changes.  A command that would bring keys of a second partition into
the transaction answers CROSSSLOT (and EXEC then EXECABORT), as in Redis Cluster; so
does a command that spans every partition (DBSIZE, FLUSHDB).  Unlike Redis, a write that
leaves a watched collection exactly as it was (HSET of a field's current value) does not
abort EXEC there: the digests are equal.  (A string's version is its write time, so any
write to a string counts.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred

from zan.commands.table import INTERNAL, NO_AUTH, Route, lookup_command
from zan.commands.transactions import COMMAND_VERSION_SHIFT, encode_exec
from zan.errors import RespError, ZanError, wrong_arity
from zan.resp.types import NULL_ARRAY, OK, QUEUED
from zan.store.codec import PARTITION_META
from zan.store.keyspace import Txn, lookup
from zan.store.multi import RoutedSource, RoutedTxn, StagedSource
from zan.store.statemachine import stage_changes

__all__ = ["Transactions", "Planned", "Staged", "CONTROL"]

# Commands a connection inside MULTI runs at once instead of queueing (Redis's list).
CONTROL = frozenset((b"exec", b"discard", b"multi", b"watch", b"quit", b"reset"))

_MULTI = "multi"            # client.extra: the queued (spec, argv) while inside MULTI
_FAILED = "multi_failed"    # client.extra: a command failed to queue
_WATCHED = "watched"        # client.extra: [(partition, pk, modifications, expires)]
# Replicated nodes: client.extra entries for the one partition a transaction may touch.
_DIGESTS = "watched_digests"  # ((namespace, pid), [(pk, digest as WATCH read it)])
_GROUP = "multi_partition"    # (namespace, pid) of the keys queued so far

_EXEC_ENTRY = INTERNAL["zan.exec"]
_KEY_DIGEST = INTERNAL["zan.keydigest"]
CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


class Transactions:
    def __init__(self, dispatcher):
        self._dispatcher = dispatcher

    # -- MULTI and queueing ------------------------------------------------------------

    def multi(self, client) -> Any:
        if _MULTI in client.extra:
            raise RespError("ERR MULTI calls can not be nested")
        client.extra[_MULTI] = []
        return OK

    def queue(self, client, argv: list[bytes]) -> Any:
        """Check and queue one command of a connection inside MULTI."""
        try:
            spec = lookup_command(argv)
            argc, arity = len(argv), spec.arity
            if argc != arity and (arity > 0 or argc < -arity):
                raise wrong_arity(spec.name)
            d = self._dispatcher
            if d.requirepass and not client.authenticated and NO_AUTH not in spec.flags:
                raise RespError("NOAUTH Authentication required.")
            if spec.name in d.special:
                # Cursor commands keep per-connection state outside the keyspace.
                raise RespError(f"ERR {spec.name.upper()} is not supported inside MULTI")
            if not d.local_partitions:
                self._claim_partition(client, spec, argv)
        except ZanError:
            client.extra[_FAILED] = True
            raise
        client.extra[_MULTI].append((spec, argv))
        return QUEUED

    def discard(self, client) -> Any:
        if _MULTI not in client.extra:
            raise RespError("ERR DISCARD without MULTI")
        self._end(client)
        return OK

    def connection_closed(self, client) -> None:
        self._end(client)

    def _end(self, client) -> None:
        client.extra.pop(_MULTI, None)
        client.extra.pop(_FAILED, None)
        client.extra.pop(_GROUP, None)
        self.unwatch(client)

    def _claim_partition(self, client, spec, argv) -> None:
        """Replicated: the partition of a command queued inside MULTI, which must be the
        transaction's (that of the keys watched and queued before it)."""
        if spec.route is Route.ALL_PARTITIONS:
            raise RespError(f"ERR {spec.name.upper()} spans every partition and cannot run "
                            "inside a transaction on a replicated node")
        if "staged" in spec.extra:
            # A script runs on its partition's leader, in a log entry of its own.
            raise RespError(f"ERR {spec.name.upper()} cannot run inside a transaction on a "
                            "replicated node")
        plan = self.plan(spec, argv)
        if plan.error is not None and str(plan.error).startswith("CROSSSLOT"):
            raise plan.error
        if not plan.partitions:
            return
        if len(plan.partitions) > 1:
            raise RespError(CROSSSLOT)
        group = plan.partitions[0]
        current = self._group_of(client)
        if current is not None and current != group:
            raise RespError(CROSSSLOT)
        client.extra[_GROUP] = group

    @staticmethod
    def _group_of(client) -> tuple[str, int] | None:
        """The partition a replicated transaction is bound to so far, if any."""
        watched = client.extra.get(_DIGESTS)
        if watched is not None:
            return watched[0]
        return client.extra.get(_GROUP)

    # -- WATCH ---------------------------------------------------------------------

    def watch(self, client, keys: list[bytes]) -> Any:
        if _MULTI in client.extra:
            raise RespError("ERR WATCH inside MULTI is not allowed")
        d = self._dispatcher
        if not d.local_partitions:
            return self._watch_replicated(client, keys)
        located = [d.locate(key) for key in keys]
        parts = {id(p): p for p, _ in located}
        if parts:
            # Writes proposed before WATCH (this connection's too) come before it.
            next(iter(parts.values())).committer.settle(parts.values())
        now_ms = d.now_ms()
        watched = client.extra.setdefault(_WATCHED, [])
        for partition, pk in located:
            watched.append((partition, pk, partition.state_machine.watch(pk),
                            self._alive_until(partition, pk, now_ms)))
        return OK

    def _watch_replicated(self, client, keys: list[bytes]) -> Any:
        d = self._dispatcher
        located = [d.locate(key) for key in keys]
        groups = {(p.namespace, p.pid) for p, _ in located}
        current = self._group_of(client)
        if current is not None:
            groups.add(current)
        if len(groups) > 1:
            raise RespError(CROSSSLOT)
        group, = groups
        # Bound now, filled once read: commands queued meanwhile see the partition, and
        # EXEC (which waits for this read) sees the digests.
        _, watched = client.extra.setdefault(_DIGESTS, (group, []))

        def read_digests():
            # After this connection's earlier writes, and before anything it sends next.
            return gatherResults([maybeDeferred(d.run_on, p, _KEY_DIGEST, [pk])
                                  for p, pk in located], consumeErrors=True)

        def record(digests):
            watched.extend(zip((pk for _, pk in located), digests))
            return OK

        def failed(failure):
            # No digest matches the empty one: an EXEC after a failed WATCH aborts.
            watched.extend((pk, b"") for _, pk in located)
            if failure.check(FirstError):
                return failure.value.subFailure
            return failure
        return d.in_order(client, read_digests, barrier=True).addCallbacks(record, failed)

    def unwatch(self, client) -> Any:
        client.extra.pop(_DIGESTS, None)
        for partition, pk, _, _ in client.extra.pop(_WATCHED, ()):
            partition.state_machine.unwatch(pk)
        return OK

    @staticmethod
    def _alive_until(partition, pk: bytes, now_ms: int) -> int:
        """When a live key expires (0: never, or it does not exist)."""
        options = partition.state_machine.options
        meta = lookup(Txn(partition.view(), now_ms=now_ms, options=options), pk)
        return meta.expire_at if meta is not None else 0

    def _watch_broken(self, client, now_ms: int) -> bool:
        for partition, pk, seen, expires in client.extra.get(_WATCHED, ()):
            sm = partition.state_machine
            if sm.modifications(pk) != seen or (expires and expires <= now_ms):
                return True
        return False

    # -- EXEC ----------------------------------------------------------------------

    def exec(self, client) -> Any:
        extra = client.extra
        if _MULTI not in extra:
            raise RespError("ERR EXEC without MULTI")
        queued = extra.pop(_MULTI)
        failed = extra.pop(_FAILED, False)
        extra.pop(_GROUP, None)
        try:
            if failed:
                raise RespError("EXECABORT Transaction discarded because of previous errors.")
            if not self._dispatcher.local_partitions:
                watched = extra.get(_DIGESTS)
                return self._dispatcher.in_order(
                    client, lambda: self._run_replicated(client, queued, watched),
                    barrier=False)
            return self._run(client, queued)
        finally:
            self.unwatch(client)

    def _run_replicated(self, client, queued, watched) -> Any:
        """One log entry of the transaction's partition holding the watched keys'
        digests and the queued commands; server commands (and commands that fail before
        reaching a key) are answered here, in their places."""
        d = self._dispatcher
        plans = [self.plan(spec, argv) for spec, argv in queued]
        replies: list[Any] = [None] * len(plans)
        keyed = []
        group = watched[0] if watched else None
        for n, plan in enumerate(plans):
            if plan.error is None and plan.partitions:
                keyed.append(n)
                group = plan.partitions[0]
            else:
                replies[n] = plan.run(self, client, None, n)
        if group is None:
            return replies
        entry = encode_exec(watched[1] if watched else [],
                            [(plans[n].spec.name, plans[n].args) for n in keyed])
        result = maybeDeferred(d.run_on, d.partition_of(*group), _EXEC_ENTRY, [entry])

        def place(applied):
            if applied is NULL_ARRAY:
                return NULL_ARRAY
            for n, reply in zip(keyed, applied):
                replies[n] = reply
            return replies
        return result.addCallback(place)

    def _run(self, client, queued) -> Any:
        d = self._dispatcher
        commands = [self.plan(spec, argv) for spec, argv in queued]
        touched: dict[tuple[str, int], Any] = {}
        for partition, _, _, _ in client.extra.get(_WATCHED, ()):
            touched[(partition.namespace, partition.pid)] = partition
        for plan in commands:
            for key in plan.partitions:
                touched[key] = d.partition_of(*key)
            if "staged" in plan.spec.extra:
                # A script names its keys as it runs: any partition may be touched.
                touched.update(((p.namespace, p.pid), p) for p in d.partitions.partitions())
        staged = self.stage(touched)
        if self._watch_broken(client, staged.now_ms):
            return NULL_ARRAY
        replies = []
        for plan in commands:
            replies.append(plan.run(self, client, staged, staged.step()))
        done = staged.commit()
        if done is None:
            return replies
        return done.addCallback(lambda _: replies)

    def stage(self, touched: dict) -> "Staged":
        """Standalone: settle the partitions `touched` ((namespace, pid) -> partition),
        every pending write on them applied, and open one staged view over them, in
        which commands run as one (EXEC's queue, a script's calls)."""
        d = self._dispatcher
        if touched:
            next(iter(touched.values())).committer.settle(touched.values())
        return Staged(touched, d.router, d.now_ms(), d.random_seed())

    def plan(self, spec, argv) -> "Planned":
        """Where a queued command runs: its keys' partitions (with the keys turned into
        primary keys), every partition, or none (a server command)."""
        route = spec.route
        d = self._dispatcher
        if route is Route.SERVER:
            return Planned(spec, argv[1:], None, ())
        if route is Route.ALL_PARTITIONS:
            return Planned(spec, argv[1:], None,
                            tuple((p.namespace, p.pid) for p in d.partitions.partitions()))
        if route is Route.MULTI_KEY and (len(argv) - spec.first_key) % max(spec.key_step, 1):
            return Planned.failing(spec, wrong_arity(spec.name))
        args = list(argv[1:])
        namespaces = set()
        parts = set()
        try:
            for pos in spec.key_positions_of(argv):
                r = d.router.route(argv[pos])
                args[pos - 1] = r.pk
                namespaces.add(r.namespace)
                parts.add((r.namespace, r.partition))
        except ZanError as e:
            return Planned.failing(spec, e)
        if len(namespaces) > 1:
            return Planned.failing(spec, RespError(
                "CROSSSLOT Keys in request don't hash to the same slot"))
        namespace = namespaces.pop() if namespaces else None
        return Planned(spec, args, namespace, tuple(parts))


class Planned:
    __slots__ = ("spec", "args", "namespace", "partitions", "error")

    def __init__(self, spec, args, namespace, partitions, error=None):
        self.spec = spec
        self.args = args
        self.namespace = namespace
        self.partitions = partitions
        self.error = error

    @classmethod
    def failing(cls, spec, error: ZanError) -> "Planned":
        return cls(spec, [], None, (), error)

    def run(self, owner: Transactions, client, staged: "Staged", n: int) -> Any:
        if self.error is not None:
            return self.error
        spec = self.spec
        try:
            if spec.route is Route.SERVER:
                return self._server_command(owner, client, staged)
            if spec.route is Route.ALL_PARTITIONS:
                return spec.merge([staged.run_on(pid_key, spec, self.args, n)
                                   for pid_key in self.partitions])
            if not self.partitions:     # no key: the handler reports the bad arguments
                return spec.handler(_scratch(), self.args)
            return staged.run_across(self.namespace, [pid for _, pid in self.partitions],
                                     spec, self.args, n)
        except ZanError as e:
            return e
        except Exception:
            owner._dispatcher.log_internal_error(spec.name)
            return RespError("ERR internal error")

    def _server_command(self, owner: Transactions, client, staged: "Staged | None") -> Any:
        name = self.spec.name
        if name == "unwatch":
            return owner.unwatch(client)
        server = owner._dispatcher.server
        staged_handler = self.spec.extra.get("staged")
        if staged_handler is not None and staged is not None:
            # A command that runs commands of its own (EVAL) runs them on the
            # transaction's view: its writes join the transaction's record.
            return staged_handler(server, client, self.args, staged)
        result = self.spec.handler(server, client, self.args)
        if isinstance(result, Deferred):
            raise RespError(f"ERR {name} cannot run inside a transaction")
        return result


class _Nothing:
    @staticmethod
    def get(key: bytes) -> None:
        return None

    @staticmethod
    def iterator(*args, **kwargs):
        return iter(())


def _scratch() -> Txn:
    """A Txn over nothing, for a command with no key to report its arguments."""
    return Txn(_Nothing(), now_ms=0)


class Staged:
    """A transaction's writes so far, one writable Txn per partition it touches."""

    def __init__(self, partitions: dict, router, now_ms: int, seed: int):
        self._partitions = partitions
        self._router = router
        self.now_ms = now_ms
        self._now_ms = now_ms
        self._seed = seed
        self._txns: dict[tuple[str, int], Txn] = {}
        self._steps = 0

    def step(self) -> int:
        """The ordinal of the next command run here (its seed and versions derive
        from it)."""
        n = self._steps
        self._steps += 1
        return n

    def _base(self, key: tuple[str, int]) -> Txn:
        txn = self._txns.get(key)
        if txn is None:
            partition = self._partitions[key]
            # Over the shares given before and not applied yet.
            txn = self._txns[key] = Txn(partition.view(), now_ms=self._now_ms, writable=True,
                                        options=partition.state_machine.options)
        return txn

    def _version_base(self, key: tuple[str, int], n: int) -> int:
        return self._partitions[key].next_index + (n << COMMAND_VERSION_SHIFT)

    def run_across(self, namespace: str, pids: list[int], spec, args, n: int) -> Any:
        def route(pk: bytes) -> int:
            return self._router.partition_of_pk(namespace, pk)

        keys = {pid: (namespace, pid) for pid in pids}
        sources = {pid: StagedSource(self._base(key)) for pid, key in keys.items()}
        indexes = {pid: self._version_base(key, n) for pid, key in keys.items()}
        sm = self._partitions[keys[pids[0]]].state_machine
        txn = RoutedTxn(RoutedSource(sources, route), route, indexes, now_ms=self._now_ms,
                        seed=self._seed + n, writable=spec.is_write, options=sm.options,
                        index=max(indexes.values()))
        reply = spec.handler(txn, args)
        if spec.is_write:
            for pid, changes in txn.changes_by_partition().items():
                self._stage(keys[pid], changes)
        return reply

    def _stage(self, key: tuple[str, int], changes: dict) -> None:
        """Add a command's changes to the partition's, keeping its key counts current for
        the commands after it (DBSIZE); the counts are left out of the share, whose
        application derives them anew."""
        base = self._base(key)
        stage_changes(base.changes, base.get, changes)

    def run_on(self, key: tuple[str, int], spec, args, n: int) -> Any:
        """An every-partition command's part on one partition."""
        sm = self._partitions[key].state_machine
        txn = Txn(StagedSource(self._base(key)), now_ms=self._now_ms, seed=self._seed + n,
                  index=self._version_base(key, n), writable=spec.is_write,
                  options=sm.options)
        reply = spec.handler(txn, args)
        if spec.is_write:
            self._stage(key, txn.changes)
        return reply

    def commit(self) -> Deferred | None:
        """Give each changed partition its share, all in one log record: a Deferred
        that fires once they are applied, or None when nothing changed."""
        shares = self.shares()
        if not shares:
            return None
        return shares[0][0].committer.propose_atomic(shares)

    def shares(self) -> list[tuple[Any, dict]]:
        out = []
        for key, txn in self._txns.items():
            records = {k: v for k, v in txn.changes.items() if k[:1] != PARTITION_META}
            if records:
                out.append((self._partitions[key], records))
        return out
