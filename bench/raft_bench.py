"""Raft core throughput: 3 in-memory nodes in one process, no disk, no network.

Measures committed entries per second with 1 and with 64 proposals per turn (a "turn" =
propose, then process every node's Ready and deliver every message until quiet), with
MemoryStorage.  Prints core figures only; `run_log_store_bench(make_log_store)` is the hook
for durable log stores (e.g. ``WalLogStore``): it runs the same loop with each node's
group log taken from a LogStore and one ``sync()`` per node per turn.

    python bench/raft_bench.py [--seconds 2] [--payload 100]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zan.raft.core import Config, StateType  # noqa: E402
from zan.raft.rawnode import RawNode  # noqa: E402
from zan.raft.storage import LogStore, MemoryLogStore  # noqa: E402


class _Node:
    __slots__ = ("rn", "log", "store")

    def __init__(self, node_id: int, ids: list[int], store: LogStore):
        self.store = store
        self.log = store.group(1)
        self.rn = RawNode(Config(id=node_id, election_tick=10, heartbeat_tick=1,
                                 max_inflight_msgs=256), self.log, random.Random(node_id))
        self.rn.bootstrap(ids)


def _process(node: _Node, out: list) -> int:
    """One Ready cycle; returns the number of committed entries applied."""
    rn = node.rn
    applied = 0
    while rn.has_ready():
        rd = rn.ready()
        log = node.log
        if rd.snapshot is not None:
            log.apply_snapshot(rd.snapshot)
        if rd.entries:
            log.append(rd.entries)
        if rd.hard_state is not None:
            log.set_hard_state(rd.hard_state)
        if rd.must_sync:
            node.store.sync()
        out.extend(rd.messages)
        applied += len(rd.committed_entries)
        rn.advance(rd)
    return applied


def _cluster(make_store: Callable[[int], LogStore]) -> tuple[dict[int, _Node], int]:
    ids = [1, 2, 3]
    nodes = {i: _Node(i, ids, make_store(i)) for i in ids}
    _settle(nodes)   # apply the bootstrap entries: a node with unapplied conf changes won't campaign
    nodes[1].rn.campaign()
    _settle(nodes)
    assert nodes[1].rn.raft.state == StateType.LEADER
    return nodes, 1


def _settle(nodes: dict[int, _Node]) -> int:
    """Deliver until quiet; returns entries the leader applied."""
    msgs: list = []
    applied = 0
    for n in nodes.values():
        applied_n = _process(n, msgs)
        if n.rn.raft.state == StateType.LEADER:
            applied += applied_n
    while msgs:
        batch, msgs = msgs, []
        for m in batch:
            n = nodes[m.to]
            n.rn.step(m)
        for n in nodes.values():
            applied_n = _process(n, msgs)
            if n.rn.raft.state == StateType.LEADER:
                applied += applied_n
    return applied


def run(per_turn: int, seconds: float, payload: int,
        make_store: Callable[[int], LogStore] = lambda i: MemoryLogStore()) -> float:
    """Committed entries per second with `per_turn` proposals per turn."""
    nodes, lead = _cluster(make_store)
    rn = nodes[lead].rn
    data = b"x" * payload
    datas = [data] * per_turn
    committed = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if per_turn == 1:
            rn.propose(data)
        else:
            rn.propose_batch(datas)
        committed += _settle(nodes)
        now = time.perf_counter()
        if now >= deadline:
            break
    return committed / (now - start)


def run_log_store_bench(make_log_store: Callable[[int], LogStore], seconds: float = 2.0,
                        payload: int = 100) -> dict[str, float]:
    """The same figures over a given LogStore factory (node id -> LogStore)."""
    return {f"{k}/turn": run(k, seconds, payload, make_log_store) for k in (1, 64)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--payload", type=int, default=100)
    args = ap.parse_args(argv)
    print(f"raft core, 3 nodes in memory, {args.payload}-byte entries, {args.seconds:.1f}s per run")
    results = {}
    for k in (1, 64, 1, 64):   # interleaved A B A B
        results.setdefault(k, []).append(run(k, args.seconds, args.payload))
    for k, vals in results.items():
        best = max(vals)
        print(f"  {k:3d} proposal(s)/turn: {best:10,.0f} committed entries/s "
              f"(runs: {', '.join(f'{v:,.0f}' for v in vals)})")
    ratio = max(results[64]) / max(results[1])
    print(f"  batching gain (64 vs 1): {ratio:.1f}x  (target >= 50k/s batched)")
    _durable(args)


def _durable(args) -> None:
    """The same 3 nodes, each on its own WalLogStore on disk: every Ready that needs it
    is fsynced, once per turn for all of a node's groups."""
    import tempfile
    from zan.raft.wal import WalLogStore
    tmp = tempfile.mkdtemp(prefix="zan-raft-bench-")
    counter = iter(range(1 << 30))

    def make(node_id):
        return WalLogStore(os.path.join(tmp, f"n{node_id}-{next(counter)}"))
    try:
        figures = run_log_store_bench(make, args.seconds, args.payload)
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"raft on the durable log (WalLogStore, fsync per turn):")
    for name, value in figures.items():
        print(f"  {name:>7}: {value:10,.0f} committed entries/s")
    print("  (log alone, group commit vs one fsync per entry: python bench/wal_bench.py)")


if __name__ == "__main__":
    main()
