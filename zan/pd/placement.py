"""Where replicas live: the pure placement logic of the PD leader.

Every function here takes a `ClusterSnapshot` (what PD read from etcd plus what it
observed: which nodes are alive, since when the others are gone, which removals are in
progress, which partitions are fully in sync) and returns a `Plan`: steps for the
coordinator to apply, each to one ReplicaInfo with a compare-and-swap on the epoch the
step was computed from.  Nothing here reads a clock, the network or etcd, so a plan is a
function of its snapshot and the tests can drive whole cluster histories.

The rules are ZanRedisDB's (`place_driver.go`, `pd_coordinator.go`):

- candidates for new replicas are live, non-learner data nodes that are not being removed
  and carry the namespace's tags, interleaved across data centres (`dc_info`);
- the expected layout of a namespace (V2, the default) keeps every replica that is still on
  a candidate, fills each missing slot with the least-loaded candidate, then moves single
  leaders or replicas from the most to the least loaded node until counts differ by at
  most one; slot 0 of a partition is its desired leader.  V1 is the plain rotation;
- a replica is changed one at a time per partition: a replacement is added first (or a
  dead replica marked Removing first), the extra replica is removed once the partition is
  back in sync, and the Removing entry is forgotten after the raft group let it go.

Zan departs from ZanRedisDB in one way: replicas of a partition are spread across
min(replica, #DCs) data centres as a hard rule, which ZanRedisDB only gets from the
interleaved tie-break.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence, Union

import mmh3

from zan.errors import ClusterError
from zan.pd.model import (
    DC_TAG, NamespaceMeta, NodeInfo, PartitionReplicaInfo, RemovalState,
)

__all__ = [
    "AddReplica", "ClearRemoval", "ClusterSnapshot", "CreatePartition", "ForgetReplica",
    "MarkRemovalState", "MoveLeader", "NamespaceView", "NotEnoughNodes", "PartitionView",
    "Plan", "RemoveReplica", "allocate_namespace", "apply_plan", "apply_step", "balance",
    "candidate_nodes", "drain", "expected_layout", "in_balance_window", "next_stable_node_num",
    "repair", "trim", "BALANCE_V1", "BALANCE_V2", "DEFAULT_GRACE", "DEFAULT_REMOVING_WAIT",
    "DEFAULT_BALANCE_WINDOW",
]

BALANCE_V1 = "v1"
BALANCE_V2 = "v2"
# A replica on a node gone this long is replaced.  Long enough to ride out a restart or a
# rolling upgrade without copying data around (ZanRedisDB's waitMigrateInterval).
DEFAULT_GRACE = 16 * 60.0
# A Removing entry is forgotten this long after it was set, once no peer lists the member.
DEFAULT_REMOVING_WAIT = 5 * 60.0
# Local hours, inclusive, in which balancing may move data (ZanRedisDB's default).
DEFAULT_BALANCE_WINDOW = (2, 4)


class NotEnoughNodes(ClusterError):
    """Fewer candidate data nodes than the replica count asks for."""

    http_status = 400
    text = "no enough data nodes for the namespace replicas"


# --- the snapshot ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PartitionView:
    """One partition as PD sees it.

    `synced` is ZanRedisDB's "full ready": every ISR replica is a raft member and caught
    up.  `lingering` names Removing nodes that some peer still lists as a raft member.
    """

    info: PartitionReplicaInfo
    leader: str = ""
    synced: bool = True
    lingering: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class NamespaceView:
    meta: NamespaceMeta
    partitions: Mapping[int, PartitionView] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything a placement decision may depend on.

    `nodes` are the registered (alive) data nodes.  `lost_since[n]` is when PD first saw
    node `n` missing; a missing node PD has no time for counts as lost just now, so a new
    PD leader waits a full grace period before migrating anything.  `removals` holds the
    operator's node removals in progress.  `stable_node_num` is the largest number of
    nodes the cluster has had (see `next_stable_node_num`).  `now` is Unix seconds.
    """

    nodes: Mapping[str, NodeInfo]
    namespaces: Mapping[str, NamespaceView] = field(default_factory=dict)
    now: float = 0.0
    lost_since: Mapping[str, float] = field(default_factory=dict)
    removals: Mapping[str, RemovalState] = field(default_factory=dict)
    stable_node_num: int = 0

    def alive(self, node: str) -> bool:
        return node in self.nodes

    def lost_for(self, node: str) -> float:
        """Seconds since `node` was last known alive (0 for a live node)."""
        if node in self.nodes:
            return 0.0
        return max(0.0, self.now - self.lost_since.get(node, self.now))

    def data_nodes(self) -> list[str]:
        return sorted(n for n, info in self.nodes.items() if not info.is_learner)


def next_stable_node_num(previous: int, alive: int) -> int:
    """The stable node count only grows on its own; an operator may lower it."""
    return max(previous, alive)


# --- the plan ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CreatePartition:
    """Create `…/<ns>/<pid>/ReplicaInfo` (epoch 0: must not exist) with replica ids 1..n."""

    ns: str
    pid: int
    nodes: tuple[str, ...]
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class AddReplica:
    ns: str
    pid: int
    node: str
    replica_id: int
    epoch: int


@dataclass(frozen=True, slots=True)
class RemoveReplica:
    """Mark the replica Removing; its raft leader then proposes the member's removal."""

    ns: str
    pid: int
    node: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ForgetReplica:
    """Drop a replica whose removal the raft group has completed."""

    ns: str
    pid: int
    node: str
    epoch: int


@dataclass(frozen=True, slots=True)
class MoveLeader:
    """Make `node` the desired leader (slot 0); the current leader hands over to it."""

    ns: str
    pid: int
    node: str
    epoch: int


@dataclass(frozen=True, slots=True)
class MarkRemovalState:
    node: str
    state: RemovalState


@dataclass(frozen=True, slots=True)
class ClearRemoval:
    """Forget a finished removal whose node has stopped."""

    node: str


PartitionStep = Union[CreatePartition, AddReplica, RemoveReplica, ForgetReplica, MoveLeader]
Step = Union[PartitionStep, MarkRemovalState, ClearRemoval]


@dataclass(frozen=True, slots=True)
class Plan:
    """Steps to apply, and why nothing else was done (for logs and the admin API)."""

    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __add__(self, other: "Plan") -> "Plan":
        return Plan(self.steps + other.steps, self.notes + other.notes)


def apply_step(info: PartitionReplicaInfo | None, step: PartitionStep,
               now: float) -> PartitionReplicaInfo:
    """The ReplicaInfo after `step`; what the coordinator CAS-writes.  Idempotent."""
    if isinstance(step, CreatePartition):
        return info if info is not None else PartitionReplicaInfo.initial(step.nodes)
    if info is None:
        raise ValueError(f"{step!r} on a partition that does not exist")
    if isinstance(step, AddReplica):
        return info.with_added(step.node, step.replica_id)
    if isinstance(step, RemoveReplica):
        return info.with_removing(step.node, int(now * 1e9))
    if isinstance(step, ForgetReplica):
        return info.without(step.node)
    if isinstance(step, MoveLeader):
        return info.with_leader(step.node)
    raise TypeError(f"not a partition step: {step!r}")


def apply_plan(snap: ClusterSnapshot, plan: Plan) -> ClusterSnapshot:
    """The snapshot as it would read after the plan were applied (epochs bumped by one).

    Steps whose epoch no longer matches are skipped, as the coordinator's CAS would fail.
    """
    namespaces = dict(snap.namespaces)
    removals = dict(snap.removals)
    for step in plan.steps:
        if isinstance(step, MarkRemovalState):
            removals[step.node] = step.state
            continue
        if isinstance(step, ClearRemoval):
            removals.pop(step.node, None)
            continue
        view = namespaces[step.ns]
        parts = dict(view.partitions)
        old = parts.get(step.pid)
        old_info = old.info if old is not None else None
        if (old_info.epoch if old_info is not None else 0) != step.epoch:
            continue
        new_info = apply_step(old_info, step, snap.now)
        new_info = replace(new_info, epoch=step.epoch + 1)
        parts[step.pid] = replace(old, info=new_info) if old is not None else PartitionView(new_info)
        namespaces[step.ns] = replace(view, partitions=parts)
    return replace(snap, namespaces=namespaces, removals=removals)


# --- candidates -----------------------------------------------------------------------

def _fits_tags(node: NodeInfo, tags: Mapping[str, object]) -> bool:
    for key, value in tags.items():
        if key not in node.tags:
            return False
        if key == DC_TAG and isinstance(value, str) and value and node.dc != value:
            return False
    return True


def candidate_nodes(snap: ClusterSnapshot, tags: Mapping[str, object] | None = None) -> list[str]:
    """Nodes that may receive replicas, interleaved across DCs: [a1, b1, a2, b2, ...]."""
    groups: dict[str, list[str]] = {}
    for nid in sorted(snap.nodes):
        node = snap.nodes[nid]
        if node.is_learner or nid in snap.removals or not _fits_tags(node, tags or {}):
            continue
        groups.setdefault(node.dc, []).append(nid)
    ordered = [groups[dc] for dc in sorted(groups)]
    out: list[str] = []
    for i in range(max((len(g) for g in ordered), default=0)):
        out.extend(g[i] for g in ordered if i < len(g))
    return out


# --- the expected layout ----------------------------------------------------------------

def _ns_hash(ns: str) -> int:
    return mmh3.hash(ns.encode(), 0, signed=False)


def _layout_v1(ns: str, partition_num: int, replica: int, cands: Sequence[str]) -> dict[int, list[str]]:
    n = len(cands)
    h = _ns_hash(ns)
    return {pid: [cands[(h + pid + j) % n] for j in range(min(replica, n))]
            for pid in range(partition_num)}


class _Layout:
    """The V2 fill and rebalance loop over one namespace's expected replica lists."""

    def __init__(self, ns: str, replica: int, cands: Sequence[str], dc_of: Mapping[str, str],
                 outside_load: Mapping[str, int]):
        self.replica = replica
        self.cands = list(cands)
        self.cand_set = set(cands)
        self.dc_of = dc_of
        self.want_dcs = min(replica, len({dc_of[n] for n in cands}))
        h = _ns_hash(ns)
        # The tie-breaker spreads namespaces' leaders over different nodes.
        self.tie = {n: (i + h) % max(1, len(cands)) for i, n in enumerate(cands)}
        self.outside = outside_load
        self.parts: dict[int, list[str]] = {}
        self.rc: Counter[str] = Counter({n: 0 for n in cands})
        self.lc: Counter[str] = Counter({n: 0 for n in cands})

    def _dcs(self, nodes: Iterable[str]) -> int:
        return len({self.dc_of[n] for n in nodes})

    def _spread_ok(self, old: Sequence[str], new: Sequence[str]) -> bool:
        return self._dcs(new) >= min(self._dcs(old), self.want_dcs)

    def keep(self, pid: int, current: Sequence[str]) -> None:
        nodes: list[str] = []
        for n in current:
            if n in self.cand_set and n not in nodes:
                nodes.append(n)
        self.parts[pid] = nodes
        for i, n in enumerate(nodes):
            self.rc[n] += 1
            if i == 0:
                self.lc[n] += 1

    def _drop(self, pid: int, n: str) -> None:
        nodes = self.parts[pid]
        i = nodes.index(n)
        nodes.pop(i)
        self.rc[n] -= 1
        if i == 0:
            self.lc[n] -= 1
            if nodes:
                self.lc[nodes[0]] += 1

    def shed(self, pid: int) -> None:
        """Trim an over-replicated or badly spread list before filling it."""
        nodes = self.parts[pid]
        while len(nodes) > self.replica:
            # The most loaded replica goes; among equals the older one, since a replica is
            # added last precisely to take the place of another (a leader's included).
            victims = [n for n in nodes if self._spread_ok(nodes, [m for m in nodes if m != n])]
            victim = max(victims or nodes,
                         key=lambda n: (self.rc[n], n != nodes[0], -nodes.index(n)))
            self._drop(pid, victim)
        if len(nodes) == self.replica and self._dcs(nodes) < self.want_dcs:
            present = {self.dc_of[n] for n in nodes}
            if any(self.dc_of[c] not in present for c in self.cands):
                seen: Counter[str] = Counter(self.dc_of[n] for n in nodes)
                dup = [n for n in nodes[1:] if seen[self.dc_of[n]] > 1]
                if dup:
                    self._drop(pid, max(dup, key=lambda n: (self.rc[n], nodes.index(n))))

    def fill(self, pid: int) -> None:
        nodes = self.parts[pid]
        while len(nodes) < self.replica:
            pool = [n for n in self.cands if n not in nodes]
            if not pool:
                return
            present = {self.dc_of[n] for n in nodes}
            if nodes:
                key = lambda n: (self.dc_of[n] in present, self.rc[n], self.lc[n],
                                 self.outside.get(n, 0), self.tie[n])
            else:
                key = lambda n: (self.lc[n], self.rc[n], self.outside.get(n, 0), self.tie[n])
            pick = min(pool, key=key)
            nodes.append(pick)
            self.rc[pick] += 1
            if len(nodes) == 1:
                self.lc[pick] += 1

    def _by(self, counter: Counter[str]) -> tuple[list[str], list[str]]:
        asc = sorted(self.cands, key=lambda n: (counter[n], self.tie[n]))
        return list(reversed(asc)), asc

    def _move_leader(self) -> bool:
        desc, asc = self._by(self.lc)
        if not desc or self.lc[desc[0]] - self.lc[asc[0]] <= 1:
            return False
        pairs = [(hi, lo) for hi in desc for lo in asc if self.lc[hi] - self.lc[lo] > 1]
        # A swap inside a partition moves no data; prefer it to a replacement.
        for hi, lo in pairs:
            for pid, nodes in self.parts.items():
                if nodes and nodes[0] == hi and lo in nodes:
                    self._lead(pid, lo)
                    self.lc[hi] -= 1
                    self.lc[lo] += 1
                    return True
        # Two swaps through a third member: hi hands one leadership to mid, mid hands
        # one of its own to lo (mid keeps its count; still no data moves).
        for hi, lo in pairs:
            for mid in self.cands:
                if mid in (hi, lo):
                    continue
                first = next((pid for pid, nodes in self.parts.items()
                              if nodes and nodes[0] == hi and mid in nodes), None)
                if first is None:
                    continue
                second = next((pid for pid, nodes in self.parts.items()
                               if pid != first and nodes and nodes[0] == mid and lo in nodes),
                              None)
                if second is None:
                    continue
                self._lead(first, mid)
                self._lead(second, lo)
                self.lc[hi] -= 1
                self.lc[lo] += 1
                return True
        for hi, lo in pairs:
            if self.rc[lo] >= self.rc[hi]:
                continue
            for pid, nodes in self.parts.items():
                if nodes and nodes[0] == hi and lo not in nodes:
                    new = [lo] + nodes[1:]
                    if self._spread_ok(nodes, new):
                        self.parts[pid] = new
                        self.lc[hi] -= 1
                        self.lc[lo] += 1
                        self.rc[hi] -= 1
                        self.rc[lo] += 1
                        return True
        return False

    def _lead(self, pid: int, member: str) -> None:
        """Swap `member` into slot 0 of partition `pid` (the counts are the caller's)."""
        nodes = self.parts[pid]
        i = nodes.index(member)
        nodes[0], nodes[i] = member, nodes[0]

    def _move_replica(self) -> bool:
        desc, asc = self._by(self.rc)
        if not desc or self.rc[desc[0]] - self.rc[asc[0]] <= 1:
            return False
        for hi in desc:
            for lo in asc:
                if self.rc[hi] - self.rc[lo] <= 1:
                    break
                if self._replace(hi, lo) or self._replace_via(hi, lo):
                    return True
        return False

    def _replacements(self, old: str, new: str):
        """Partitions where follower `old` can give its place to `new`."""
        for pid, nodes in self.parts.items():
            if old in nodes[1:] and new not in nodes:
                moved = [new if n == old else n for n in nodes]
                if self._spread_ok(nodes, moved):
                    yield pid, moved

    def _replace(self, hi: str, lo: str) -> bool:
        for pid, moved in self._replacements(hi, lo):
            self.parts[pid] = moved
            self.rc[hi] -= 1
            self.rc[lo] += 1
            return True
        return False

    def _replace_via(self, hi: str, lo: str) -> bool:
        """`hi` and `lo` share every partition `hi` follows in: pass one replica through a
        third node (hi → mid in one partition, mid → lo in another); mid keeps its count."""
        for mid in self.cands:
            if mid in (hi, lo):
                continue
            first = next(self._replacements(hi, mid), None)
            if first is None:
                continue
            for pid, moved in self._replacements(mid, lo):
                if pid == first[0]:
                    continue
                self.parts[first[0]] = first[1]
                self.parts[pid] = moved
                self.rc[hi] -= 1
                self.rc[lo] += 1
                return True
        return False

    def rebalance(self) -> None:
        for _ in range(self.replica * max(1, len(self.parts)) + 1):
            if not (self._move_leader() or self._move_replica()):
                return


def _outside_load(snap: ClusterSnapshot, ns: str) -> Counter[str]:
    load: Counter[str] = Counter()
    for name, view in snap.namespaces.items():
        if name != ns:
            for pv in view.partitions.values():
                load.update(pv.info.isr)
    return load


def _compute_layout(snap: ClusterSnapshot, ns: str, partition_num: int, replica: int,
                    tags: Mapping[str, object] | None, version: str) -> dict[int, list[str]]:
    cands = candidate_nodes(snap, tags)
    if not cands:
        return {pid: [] for pid in range(partition_num)}
    if version == BALANCE_V1:
        return _layout_v1(ns, partition_num, replica, cands)
    if version != BALANCE_V2:
        raise ValueError(f"unknown balance version {version!r}")
    view = snap.namespaces.get(ns)
    current = {pid: pv.info.isr for pid, pv in view.partitions.items()} if view else {}
    lay = _Layout(ns, replica, cands, {n: snap.nodes[n].dc for n in cands},
                  _outside_load(snap, ns))
    for pid in range(partition_num):
        lay.keep(pid, current.get(pid, ()))
    for pid in range(partition_num):
        lay.shed(pid)
    for pid in range(partition_num):
        lay.fill(pid)
    lay.rebalance()
    return lay.parts


def expected_layout(snap: ClusterSnapshot, ns: str, version: str = BALANCE_V2) -> dict[int, list[str]]:
    """pid → the replica list namespace `ns` should converge to; [0] is the desired leader."""
    meta = snap.namespaces[ns].meta
    return _compute_layout(snap, ns, meta.partition_num, meta.replica, meta.tags, version)


# --- namespace creation -------------------------------------------------------------------

def allocate_namespace(snap: ClusterSnapshot, ns: str, partition_num: int, replica: int,
                       tags: Mapping[str, object] | None = None,
                       version: str = BALANCE_V2) -> Plan:
    """Create the partitions of `ns` that do not exist yet; existing ones are left alone."""
    if partition_num < 1 or replica < 1:
        raise ValueError("partition_num and replica must be positive")
    cands = candidate_nodes(snap, tags)
    if len(cands) < replica:
        raise NotEnoughNodes(f"{NotEnoughNodes.text}: need {replica}, have {len(cands)}")
    layout = _compute_layout(snap, ns, partition_num, replica, tags, version)
    view = snap.namespaces.get(ns)
    existing = view.partitions if view else {}
    steps = tuple(CreatePartition(ns, pid, tuple(layout[pid]))
                  for pid in range(partition_num) if pid not in existing)
    return Plan(steps)


# --- shared helpers -------------------------------------------------------------------------

def _live_quorum(snap: ClusterSnapshot, members: Sequence[str]) -> bool:
    """Can a raft group with these members still commit with only its live ones?"""
    return sum(1 for n in members if snap.alive(n)) * 2 > len(members)


def _partitions(snap: ClusterSnapshot):
    for ns in sorted(snap.namespaces):
        view = snap.namespaces[ns]
        for pid in sorted(view.partitions):
            yield ns, view, pid, view.partitions[pid]


class _Layouts:
    """Expected layouts computed on first use, once per namespace per call."""

    def __init__(self, snap: ClusterSnapshot, version: str):
        self._snap = snap
        self._version = version
        self._cache: dict[str, dict[int, list[str]]] = {}

    def __call__(self, ns: str) -> dict[int, list[str]]:
        if ns not in self._cache:
            self._cache[ns] = expected_layout(self._snap, ns, self._version)
        return self._cache[ns]


def _add(layout: Mapping[int, Sequence[str]], ns: str, pid: int,
         info: PartitionReplicaInfo) -> AddReplica | str:
    """Add the first expected node the partition lacks (or say why there is none)."""
    for node in layout.get(pid, ()):
        if node not in info.raft_nodes:
            return AddReplica(ns, pid, node, info.max_raft_id + 1, info.epoch)
    return f"{ns}-{pid}: no candidate node for a new replica"


# --- failure handling ----------------------------------------------------------------------

def repair(snap: ClusterSnapshot, grace: float = DEFAULT_GRACE,
           removing_wait: float = DEFAULT_REMOVING_WAIT, limit: int | None = None,
           version: str = BALANCE_V2) -> Plan:
    """Restore replication after failures, one replica change per partition.

    A replica on a node lost for `grace` seconds is marked Removing, if the partition keeps
    more than replica/2 ISR members and a live quorum; a partition short of replicas with
    no dead member gets one new replica; a Removing entry older than `removing_wait` that
    no peer still lists is forgotten.  Nothing moves when no more than half of the stable
    node count is alive: that looks like a network partition, not failed nodes.  `limit`
    caps the number of partitions changed.
    """
    alive = snap.data_nodes()
    if snap.stable_node_num and len(alive) <= snap.stable_node_num // 2:
        return Plan(notes=(f"only {len(alive)} of {snap.stable_node_num} stable nodes alive: "
                           "no migration",))
    layouts = _Layouts(snap, version)
    steps: list[Step] = []
    notes: list[str] = []
    for ns, view, pid, pv in _partitions(snap):
        if limit is not None and len(steps) >= limit:
            break
        info, replica = pv.info, view.meta.replica
        isr = info.isr
        if info.removings:
            for node in sorted(info.removings, key=lambda n: info.removings[n].remove_time):
                since = snap.now - info.removings[node].remove_time / 1e9
                if since >= removing_wait and node not in pv.lingering:
                    steps.append(ForgetReplica(ns, pid, node, info.epoch))
                    break
            continue
        dead = [n for n in isr if not snap.alive(n)]
        if not dead and len(isr) >= replica:
            continue
        if not pv.synced:
            notes.append(f"{ns}-{pid}: waiting for replicas to sync")
            continue
        if not _live_quorum(snap, isr):
            notes.append(f"{ns}-{pid}: no live quorum, needs an operator")
            continue
        if dead:
            expired = sorted((n for n in dead if snap.lost_for(n) >= grace),
                             key=lambda n: (-snap.lost_for(n), n))
            if not expired:
                notes.append(f"{ns}-{pid}: waiting out the grace period of {dead}")
            elif len(isr) - 1 > replica // 2:
                steps.append(RemoveReplica(ns, pid, expired[0], info.epoch))
            else:
                notes.append(f"{ns}-{pid}: removing {expired[0]} would leave no quorum")
            continue
        if len(isr) <= replica // 2:
            notes.append(f"{ns}-{pid}: ISR below quorum, not adding replicas")
            continue
        step = _add(layouts(ns), ns, pid, info)
        (steps if isinstance(step, AddReplica) else notes).append(step)
    return Plan(tuple(steps), tuple(notes))


# --- over-replication ---------------------------------------------------------------------

def trim(snap: ClusterSnapshot, version: str = BALANCE_V2) -> Plan:
    """Mark one extra replica Removing in each partition with more ISR members than wanted.

    The victim is a dead node first, then a node being removed, then a node outside the
    expected layout, then the most loaded one; the desired leader goes only when no other
    member qualifies.
    """
    layouts = _Layouts(snap, version)
    load: Counter[str] = Counter()
    for _, _, _, pv in _partitions(snap):
        load.update(pv.info.isr)
    steps: list[Step] = []
    notes: list[str] = []
    for ns, view, pid, pv in _partitions(snap):
        info = pv.info
        isr = info.isr
        if info.removings or len(isr) <= view.meta.replica:
            continue
        if not pv.synced:
            notes.append(f"{ns}-{pid}: over-replicated, waiting for replicas to sync")
            continue
        expected = set(layouts(ns).get(pid, ()))
        key = lambda n: (snap.alive(n), n not in snap.removals, n in expected,
                         n == isr[0], -load[n], n)
        victim = min(isr, key=key)
        if snap.alive(victim) and victim not in snap.removals:
            # Among healthy members, drop the one whose absence leaves the namespace with
            # the fewest further moves; otherwise balancing could re-add it next round.
            victim = min(isr, key=lambda n: (_moves_without(snap, ns, pid, n, version), key(n)))
        rest = [n for n in isr if n != victim]
        if not _live_quorum(snap, rest):
            notes.append(f"{ns}-{pid}: removing {victim} would leave no live quorum")
            continue
        steps.append(RemoveReplica(ns, pid, victim, info.epoch))
    return Plan(tuple(steps), tuple(notes))


def _moves_without(snap: ClusterSnapshot, ns: str, pid: int, node: str, version: str) -> int:
    view = snap.namespaces[ns]
    pv = view.partitions[pid]
    parts = dict(view.partitions)
    parts[pid] = replace(pv, info=pv.info.without(node))
    trial = replace(snap, namespaces={**snap.namespaces, ns: replace(view, partitions=parts)})
    want = expected_layout(trial, ns, version)
    return sum(len(set(want.get(p, ())) - set(v.info.isr)) for p, v in parts.items())


# --- balancing ------------------------------------------------------------------------------

def in_balance_window(hour: int, window: tuple[int, int] = DEFAULT_BALANCE_WINDOW) -> bool:
    start, end = window
    return start <= hour <= end


def _unsettled(snap: ClusterSnapshot) -> str | None:
    for ns, view, pid, pv in _partitions(snap):
        isr = pv.info.isr
        if pv.info.removings:
            return f"{ns}-{pid} has replicas being removed"
        if len(isr) != view.meta.replica:
            return f"{ns}-{pid} has {len(isr)} of {view.meta.replica} replicas"
        if any(not snap.alive(n) for n in isr):
            return f"{ns}-{pid} has a replica on a lost node"
        if not pv.synced:
            return f"{ns}-{pid} is not in sync"
    return None


def balance(snap: ClusterSnapshot, now_hour: int,
            window: tuple[int, int] = DEFAULT_BALANCE_WINDOW, max_moves: int | None = 1,
            version: str = BALANCE_V2) -> Plan:
    """Move replicas and desired leaders toward the expected layout of one namespace.

    Runs only inside the balance window, with two or more nodes, no removal in progress and
    every partition healthy.  A replica moves by adding the expected node (at most
    `max_moves` per call); `trim` removes the replaced one once the partition is in sync.
    A partition whose replicas are already right gets its expected leader in slot 0.
    """
    if not in_balance_window(now_hour, window):
        return Plan(notes=(f"hour {now_hour} outside balance window {window}",))
    if len(snap.data_nodes()) < 2:
        return Plan(notes=("fewer than 2 data nodes",))
    if any(state != RemovalState.DONE for state in snap.removals.values()):
        return Plan(notes=("a node removal is in progress",))
    why = _unsettled(snap)
    if why is not None:
        return Plan(notes=(f"cluster not stable: {why}",))
    for ns in sorted(snap.namespaces):
        view = snap.namespaces[ns]
        layout = expected_layout(snap, ns, version)
        steps: list[Step] = []
        moves = 0
        for pid in sorted(view.partitions):
            info = view.partitions[pid].info
            want = layout.get(pid, [])
            if len(want) < view.meta.replica:
                continue
            if set(info.isr) != set(want):
                if max_moves is not None and moves >= max_moves:
                    continue
                step = _add(layout, ns, pid, info)
                if isinstance(step, AddReplica):
                    steps.append(step)
                    moves += 1
            elif info.raft_nodes[0] != want[0]:
                steps.append(MoveLeader(ns, pid, want[0], info.epoch))
        if steps:
            # One namespace per run, as ZanRedisDB does: the next run sees the result.
            return Plan(tuple(steps))
    return Plan()


# --- node removal ---------------------------------------------------------------------------

def drain(snap: ClusterSnapshot, max_moves: int | None = 1, version: str = BALANCE_V2) -> Plan:
    """Advance each node removal: marked → pending → data_transferred → done → cleared.

    While pending, one partition at a time (`max_moves` per call) first gets a replacement
    replica, then, once it is in sync, the removed node's replica is marked Removing.  The
    node leaves state pending when no partition lists it any more.
    """
    layouts = _Layouts(snap, version)
    steps: list[Step] = []
    notes: list[str] = []
    moves = 0
    for node in sorted(snap.removals):
        state = snap.removals[node]
        if state == RemovalState.MARKED:
            steps.append(MarkRemovalState(node, RemovalState.PENDING))
            continue
        if state == RemovalState.DATA_TRANSFERRED:
            steps.append(MarkRemovalState(node, RemovalState.DONE))
            continue
        if state == RemovalState.DONE:
            if not snap.alive(node):
                steps.append(ClearRemoval(node))
            continue
        holding = [(ns, view, pid, pv) for ns, view, pid, pv in _partitions(snap)
                   if node in pv.info.raft_nodes]
        if not holding:
            steps.append(MarkRemovalState(node, RemovalState.DATA_TRANSFERRED))
            continue
        if any(node in pv.info.removings for _, _, _, pv in holding):
            notes.append(f"{node}: waiting for its removing replicas to leave")
            continue
        for ns, view, pid, pv in holding:
            if max_moves is not None and moves >= max_moves:
                break
            info = pv.info
            isr = info.isr
            if info.removings or not pv.synced or any(
                    not snap.alive(n) for n in isr if n != node):
                continue
            if len(isr) <= view.meta.replica:
                step = _add(layouts(ns), ns, pid, info)
                if not isinstance(step, AddReplica):
                    notes.append(step)
                    continue
            else:
                rest = [n for n in isr if n != node]
                if not _live_quorum(snap, rest):
                    continue
                step = RemoveReplica(ns, pid, node, info.epoch)
            steps.append(step)
            moves += 1
            break
        else:
            notes.append(f"{node}: no partition can move now")
    return Plan(tuple(steps), tuple(notes))
