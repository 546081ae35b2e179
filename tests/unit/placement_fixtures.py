"""Builders and a tiny simulator for the placement tests: clusters as plain values."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from zan.pd.model import NamespaceMeta, NodeInfo, gen_node_id
from zan.pd.placement import (
    AddReplica, ClusterSnapshot, NamespaceView, Plan, allocate_namespace, apply_plan,
    balance, drain, repair, trim,
)

HOUR_IN_WINDOW = 3


def node(i: int, dc: str = "", **tags) -> NodeInfo:
    all_tags = dict(tags)
    if dc:
        all_tags["dc_info"] = dc
    return NodeInfo(id=gen_node_id(i, f"10.0.0.{i}", 12381, 12380), reg_id=i,
                    node_ip=f"10.0.0.{i}", redis_port="12381", http_port="12380",
                    rpc_port="", tags=all_tags)


def cluster(n: int, dcs: int = 1, start: int = 1) -> dict[str, NodeInfo]:
    nodes = [node(i, f"dc{(i - start) % dcs}" if dcs > 1 else "") for i in range(start, start + n)]
    return {x.id: x for x in nodes}


def with_namespace(snap: ClusterSnapshot, ns: str, partition_num: int, replica: int,
                   tags=None, version: str = "v2") -> ClusterSnapshot:
    meta = NamespaceMeta(partition_num=partition_num, replica=replica, tags=dict(tags or {}))
    namespaces = dict(snap.namespaces)
    namespaces[ns] = NamespaceView(meta, {})
    snap = replace(snap, namespaces=namespaces)
    plan = allocate_namespace(snap, ns, partition_num, replica, tags, version=version)
    return apply_plan(snap, plan)


def layout(snap: ClusterSnapshot, ns: str) -> dict[int, tuple[str, ...]]:
    return {pid: pv.info.isr for pid, pv in snap.namespaces[ns].partitions.items()}


def replica_counts(snap: ClusterSnapshot, ns: str, nodes=None) -> Counter:
    c = Counter({n: 0 for n in (nodes if nodes is not None else snap.nodes)})
    for isr in layout(snap, ns).values():
        c.update(isr)
    return c


def leader_counts(snap: ClusterSnapshot, ns: str, nodes=None) -> Counter:
    c = Counter({n: 0 for n in (nodes if nodes is not None else snap.nodes)})
    for isr in layout(snap, ns).values():
        c[isr[0]] += 1
    return c


def step_once(snap: ClusterSnapshot, hour: int = HOUR_IN_WINDOW, grace: float = 0.0,
              removing_wait: float = 0.0, max_moves=None) -> Plan:
    """One coordinator round: every function on the same snapshot, in order of urgency."""
    plan = repair(snap, grace=grace, removing_wait=removing_wait)
    plan = plan + trim(snap) + drain(snap, max_moves=max_moves)
    if not plan.steps:
        plan = balance(snap, hour, max_moves=max_moves)
    return _dedupe(plan)


def _dedupe(plan: Plan) -> Plan:
    # Two functions may propose a change to the same partition from one snapshot; the
    # coordinator's CAS lets only the first through, so keep the first here too.
    seen = set()
    steps = []
    for s in plan.steps:
        key = (getattr(s, "ns", None), getattr(s, "pid", None)) if hasattr(s, "pid") else ("node", s.node)
        if key in seen:
            continue
        seen.add(key)
        steps.append(s)
    return Plan(tuple(steps), plan.notes)


def settle(snap: ClusterSnapshot, rounds: int = 400, **kw) -> tuple[ClusterSnapshot, int, list[Plan]]:
    """Apply rounds until nothing is left to do; returns (snapshot, replicas added, plans)."""
    added = 0
    plans = []
    for _ in range(rounds):
        plan = step_once(snap, **kw)
        if not plan.steps:
            return snap, added, plans
        plans.append(plan)
        added += sum(isinstance(s, AddReplica) for s in plan.steps)
        snap = replace(apply_plan(snap, plan), now=snap.now + 1)
    raise AssertionError(f"placement did not settle in {rounds} rounds; last plan {plans[-1]}")
