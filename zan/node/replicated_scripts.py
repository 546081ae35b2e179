"""Scripts on a replicated node: atomic, replicated as their effects, never re-run.

As in Redis Cluster, every key a script touches must be declared in KEYS, and all of
them must lie in one partition: keys of two partitions answer CROSSSLOT, and a
``redis.call`` on a key that KEYS does not name answers ``ERR Script attempted to
access a non local key in a cluster node``.  A script with no keys runs on the node
that receives it and may only call commands that touch no key (PING, TIME, ...).

The node receiving EVAL sends the script, body included, to the leader of its
partition as the internal ``zan.script`` (forwarded like any command, so the leader
need not have it cached; it caches it too).  There, optimistically, as WATCH does:

1. at a linearizable read point, the script runs on a staged view of the leader's
   applied state (`ScriptStaged`), which gives its reply and the records it changed;
   the digests of its declared keys (`key_digest`) are taken first, before it runs;
2. if it changed nothing (or is read-only: EVAL_RO, ``no-writes``) the reply is
   answered now;
3. otherwise one ``zan.effects`` entry carries the digests and the records.  Every
   replica compares each digest with its key's digest when it applies the entry: all
   equal, the records are written (the script's writes happen at that point of the log,
   as if it had run there); one differs (a write came in between), nothing is written,
   and the leader runs the script again from 1, a bounded number of times.

So a script runs once per attempt, on the leader only, and the log holds only its
effects.  The check holds across leader changes (each replica makes it when applying).
As in Redis, a script that fails halfway keeps the writes it made before failing.

Should the leadership move before the script's entry is in the log (its read point
refused, its proposal dropped), the script runs again, on the new leader.  Once the
entry is proposed, a leader change leaves its outcome unknown to the node, as for any
write (``ERR_CLUSTER_CHANGED``); the entry applies at most once.

On one leader, a script waits for the scripts it proposed earlier on the same keys to
be applied before it runs (`_KeyTurns`): scripts do not race one another there, only
plain writes and other leaders' entries can make them run again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from zan.commands.scripting import SCRIPT_VERSION, encode_effects
from zan.commands.table import INTERNAL, Route
from zan.errors import LeaderChanged, NotLeader, ProposalDropped, RespError
from zan.store.keyspace import Txn, key_digest
from zan.store.statemachine import encode_command_entry
from zan.node.transaction import CROSSSLOT, Staged
from zan.resp.protocol import ClientState

__all__ = ["ReplicatedScripts", "ScriptStaged", "MAX_ATTEMPTS"]

# Runs of one script whose effects came too late (its keys changed meanwhile) before it
# gives up with TRYAGAIN.  Each costs a read point and a commit round; only plain writes
# to the script's keys, proposed while it runs, make it run again.
MAX_ATTEMPTS = 100
NON_LOCAL = "ERR Script attempted to access a non local key in a cluster node"
_SCRIPT = INTERNAL["zan.script"]
# Whom a script's server commands (PING, TIME) see as their client on the leader.
_LEADER_CLIENT = ClientState(id=0, addr="script", created=0.0)


class ScriptStaged(Staged):
    """A script's writes over one replica's applied state.  A collection the n-th call
    creates gets the placeholder version ``SCRIPT_VERSION | n``: its entry's index is
    unknown yet, and ``zan.effects`` replaces it with index + (n << 40) when applied, as
    EXEC's n-th command would have it."""

    def _version_base(self, key: tuple[str, int], n: int) -> int:
        return SCRIPT_VERSION | n


class ReplicatedScripts:
    def __init__(self, scripts, dispatcher):
        self._scripts = scripts
        self._dispatcher = dispatcher
        self._turns = _KeyTurns()

    # -- the node receiving EVAL -------------------------------------------------------

    def run(self, client, script, keys: list[bytes], argv: list[bytes], read_only: bool):
        d = self._dispatcher
        groups = set()
        for key in keys:
            r = d.router.route(key)
            groups.add((r.namespace, r.partition))
        if len(groups) > 1:
            raise RespError(CROSSSLOT)
        if not groups:
            # No partition: nothing to read, nothing to write.
            return self._scripts.run_calls(client, script, keys, argv, read_only, None,
                                           _only_keyless)
        group, = groups
        args = [b"ro" if read_only else b"rw", script.body, str(len(keys)).encode(),
                *keys, *argv]
        return d.in_order(client, lambda: d.run_on(d.partition_of(*group), _SCRIPT, args),
                          barrier=True)

    # -- the partition's leader --------------------------------------------------------

    def on_leader(self, partition, script, keys: list[bytes], argv: list[bytes],
                  read_only: bool) -> Deferred:
        return Deferred.fromCoroutine(self._attempts(partition, script, keys, argv, read_only))

    async def _attempts(self, partition, script, keys, argv, read_only: bool) -> Any:
        d = self._dispatcher
        declared = {}
        for key in keys:
            r = d.router.route(key)
            declared[(r.namespace, r.partition, r.pk)] = None
        group = (partition.namespace, partition.pid)
        pks = [pk for _, _, pk in declared]
        attempts = 0
        if read_only or script.no_writes:   # never proposes: a read point is all it needs
            await _read_point(partition, catch_up=False)
            reply, _, _ = self._compute(partition, script, keys, argv, True, declared,
                                        d.now_ms())
            return reply
        while attempts < MAX_ATTEMPTS:
            await self._turns.wait(group, pks)
            await _read_point(partition, catch_up=True)
            if self._turns.busy(group, pks):
                continue   # another script on these keys went first meanwhile
            # From here to the proposal, one reactor turn: nothing is applied meanwhile.
            attempts += 1
            now_ms = d.now_ms()     # the script's clock, and its entry's
            reply, digests, records = self._compute(partition, script, keys, argv,
                                                    read_only, declared, now_ms)
            if not records:
                return reply
            entry = encode_command_entry(now_ms, d.random_seed(), "zan.effects",
                                         [encode_effects(digests, records)])
            applied = partition.propose(entry)
            self._turns.hold(group, pks, applied)
            try:
                if await applied == 1:
                    return reply
            except ProposalDropped:
                pass    # never in the log (a leadership transfer under way): run it again
        raise RespError(f"TRYAGAIN the script's keys kept changing while it ran "
                        f"({MAX_ATTEMPTS} attempts); try again")

    def _compute(self, partition, script, keys, argv, read_only, declared, now_ms: int):
        """Run the script once on the leader's applied state: its reply, its declared
        keys' digests before it ran, and the records it changed."""
        d = self._dispatcher
        group = (partition.namespace, partition.pid)
        staged = ScriptStaged({group: partition}, d.router, now_ms, d.random_seed())
        before = Txn(partition.view(), now_ms=now_ms,
                     options=partition.state_machine.options)
        digests = [(pk, key_digest(before, pk)) for _, _, pk in declared]

        def check(spec, cargv):
            if spec.route is Route.ALL_PARTITIONS:
                raise RespError(f"ERR {spec.name.upper()} spans every partition and cannot "
                                "run in a script on a replicated node")
            for pos in spec.key_positions_of(cargv):
                r = d.router.route(cargv[pos])
                if (r.namespace, r.partition, r.pk) not in declared:
                    raise RespError(NON_LOCAL)

        reply = self._scripts.run_calls(_LEADER_CLIENT, script, keys, argv, read_only,
                                        staged, check)
        shares = staged.shares()
        return reply, digests, (shares[0][1] if shares else {})


async def _read_point(partition, catch_up: bool) -> None:
    """A read point on the leader; with `catch_up`, every entry it holds applied too
    (entries proposed before a script and not applied yet would make it run again).
    Should the leader change meanwhile, the script has written nothing yet: NotLeader
    sends it on to the new leader (`NodeDispatcher._refused`)."""
    try:
        await partition.read_point()
        behind = partition.caught_up() if catch_up else None
        if behind is not None:
            await behind
    except LeaderChanged:
        raise NotLeader(leader_hint=partition.leader) from None


def _only_keyless(spec, cargv) -> None:
    if spec.route is not Route.SERVER:
        raise RespError(NON_LOCAL)


class _KeyTurns:
    """On one leader, the last script proposed on each key and not applied yet: a
    script on that key waits for it, so that it runs on the state after it."""

    def __init__(self):
        self._last: dict[tuple, Deferred] = {}

    async def wait(self, group, pks) -> None:
        for pk in pks:
            pending = self._last.get((group, pk))
            if pending is not None:
                waiter: Deferred = Deferred()
                pending.addCallback(_fire, waiter)
                await waiter

    def busy(self, group, pks) -> bool:
        return any((group, pk) in self._last for pk in pks)

    def hold(self, group, pks, applied: Deferred) -> None:
        done: Deferred = Deferred()
        for pk in pks:
            self._last[(group, pk)] = done

        def release(result):
            for pk in pks:
                if self._last.get((group, pk)) is done:
                    del self._last[(group, pk)]
            done.callback(None)
            return result
        applied.addBoth(release)


def _fire(_, waiter: Deferred) -> None:
    waiter.callback(None)
