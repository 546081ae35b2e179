"""What an etcd-coordinated data node should do about its replicas, as pure functions.

The placement driver writes, per partition, which nodes hold replicas (`RaftNodes`, slot 0
the desired leader), their replica ids and which are being removed.  A data node makes
its local replicas match (`replica_changes`), and where it leads a group it makes the
group's Raft membership and leadership match (`leader_action`).  Both are decided here
from plain values, so they are tested without etcd, Raft or a reactor; the coordinator
only carries the decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

from zan.pd.model import NamespaceMeta, PartitionReplicaInfo

__all__ = [
    "AddVoter", "LocalReplica", "RemoveVoter", "ReplicaChanges", "TransferLeader",
    "WantedReplica", "leader_action", "replica_changes", "wanted_replicas",
]


@dataclass(frozen=True, slots=True)
class WantedReplica:
    """A replica placement asks this node to run.  `peers` founds a new group (this node
    is in the ISR of a partition that never had a leader); None joins an existing group."""

    namespace: str
    pid: int
    group_id: int
    replica_id: int
    meta: NamespaceMeta
    peers: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class LocalReplica:
    group_id: int
    replica_id: int
    removed: bool = False       # it applied its own removal from the group


@dataclass(frozen=True, slots=True)
class ReplicaChanges:
    open: tuple[WantedReplica, ...] = ()
    destroy: tuple[int, ...] = ()          # group ids

    def __bool__(self) -> bool:
        return bool(self.open or self.destroy)


def wanted_replicas(me: str, namespaces: Mapping, local: Mapping[int, LocalReplica]
                    ) -> dict[int, WantedReplica]:
    """{group id: replica} for every partition whose RaftNodes list `me`.

    `namespaces` maps names to records with `meta`, `partitions` (pid → ReplicaInfo) and
    `leaders` (pid → RealLeader), as `zan.pd.register.parse_namespaces` reads them.  A
    replica marked Removing is kept while it runs but never started again.
    """
    out: dict[int, WantedReplica] = {}
    for name, rec in namespaces.items():
        meta = rec.meta
        if meta is None:
            continue
        for pid, info in rec.partitions.items():
            if not 0 <= pid < meta.partition_num or me not in info.raft_nodes:
                continue
            rid = info.raft_ids.get(me)
            if not rid:
                continue
            gid = meta.group_id(pid)
            running = local.get(gid)
            if me in info.removings and (running is None or running.removed
                                         or running.replica_id != rid):
                continue
            peers = None
            if me in info.isr and pid not in rec.leaders:
                # Every member founds, with the same voters: an empty replica founds a
                # group only once all founders are found empty (see zan.raft.core).
                peers = tuple(info.raft_ids[n] for n in info.isr if n in info.raft_ids)
            out[gid] = WantedReplica(name, pid, gid, rid, meta, peers)
    return out


def replica_changes(wanted: Mapping[int, WantedReplica],
                    local: Mapping[int, LocalReplica]) -> ReplicaChanges:
    """Destroy local replicas placement no longer lists (or lists under another replica
    id: a node removed and added back is a new member), open the missing ones.

    A replica that applied its own removal is not recreated under the same id: while the
    placement we hold still lists it under that id (it was read before PD marked the
    replica Removing), it is kept as it is, and it is destroyed once placement drops it
    (`wanted_replicas` no longer wants a removed replica marked Removing).  Destroying it
    earlier would leave the group missing locally, and the next round would open it again,
    empty, under the id the group has just removed.
    """
    destroy = []
    for gid, rep in local.items():
        want = wanted.get(gid)
        if want is None or want.replica_id != rep.replica_id:
            destroy.append(gid)
    gone = set(destroy)
    opened = tuple(w for gid, w in sorted(wanted.items())
                   if gid not in local or gid in gone)
    return ReplicaChanges(opened, tuple(sorted(destroy)))


# --- duties of a group's leader -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AddVoter:
    replica_id: int
    node: str


@dataclass(frozen=True, slots=True)
class RemoveVoter:
    replica_id: int


@dataclass(frozen=True, slots=True)
class TransferLeader:
    replica_id: int


def leader_action(me: int, info: PartitionReplicaInfo, voters: Sequence[int],
                  matches: Mapping[int, int], commit: int, *, conf_change_pending: bool,
                  since_leader_change: float, change_wait: float, lag: int,
                  active: Collection[int] | None = None):
    """The one step the leader (replica `me`) takes now, or None.

    In order: add an in-sync-replica-set member missing from the group; remove a member
    PD marked Removing (or dropped from the record; handing leadership away first when
    it is the leader itself); then move leadership to `RaftNodes[0]` once that replica
    has caught up and leadership has been stable for `change_wait` seconds.  Membership
    changes go one at a time (`conf_change_pending`), as Raft requires.

    Leadership only goes to a replica in `active` (those the leader has heard from within
    the last election timeout; None: every voter), because a transfer to a replica that
    is down never completes, and while one is pending the leader drops every proposal.
    """
    wanted = [(info.raft_ids[n], n) for n in info.isr if n in info.raft_ids]
    voter_set = set(voters)

    def caught_up(rid: int) -> bool:
        return matches.get(rid, 0) + lag >= commit and (active is None or rid in active)

    if not conf_change_pending:
        for rid, node in wanted:
            if rid not in voter_set:
                return AddVoter(rid, node)
        leaving = {r.remove_replica_id or info.raft_ids.get(n, 0)
                   for n, r in info.removings.items()}
        known = set(info.raft_ids.values())
        for rid in sorted(voter_set):
            # A voter the record does not know at all was dropped by PD, unless its id is
            # newer than the record (the record we hold is older than the group).
            dropped = rid not in known and rid <= info.max_raft_id
            if rid in leaving or dropped:
                if rid != me:
                    return RemoveVoter(rid)
                heirs = [r for r, _ in wanted if r != me and r in voter_set and caught_up(r)]
                return TransferLeader(heirs[0]) if heirs else None
    if wanted and wanted[0][0] != me and me in {r for r, _ in wanted}:
        target = wanted[0][0]
        if target in voter_set and caught_up(target) and since_leader_change >= change_wait:
            return TransferLeader(target)
    return None
