"""A 3-node cluster under a random mix of faults while clients write and read; then every
acknowledged write must be there and no read may have been stale.

    python bench/nemesis.py [--seconds 300] [--seed 1] [--keys 8]

Starts a static 3-node cluster of real `twistd -n zan-node` processes on 127.0.0.1, every
peer link through a proxy of the test support (so links can be cut and slowed), and runs
client threads that GET, SET, INCR and SETIFEQ a few registers per partition through every
node, plus SADDs to one set.  Meanwhile, one at a time, a fault chosen at random strikes a
random node (half the time the leader of a partition) for one to three seconds:

- kill: kill -9, then a restart;
- pause: SIGSTOP, then SIGCONT;
- wipe: kill -9, the data directory deleted, a restart (it must catch up from its peers);
  only while every node reports all its replicas in sync (`/node/allready`), as an
  operator replaces one disk at a time: a partition whose replicas lost their disks
  faster than they caught up has only one replica that holds its data, and waits for
  an operator (see the README);
- isolate: every link of the node cut, then healed;
- cut: the links between the node and one peer cut, then healed;
- slow: every link of the node delayed 0.3-1.5 s, then restored.

At the end every fault is undone, the replicas must converge, the register history must
be linearizable (Knossos-style search per key: a read that missed an acknowledged write,
or saw a value no write could have left, is a violation), and every acknowledged SADD
member must be on every node (else it is lost).  It prints the counts and exits 1 on any
violation or loss.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.cluster import StaticClusterProcs  # noqa: E402
from tests.support.linearizability import check  # noqa: E402
from tests.support.registers import RegisterClients  # noqa: E402
from tests.support.keys import keys_in  # noqa: E402

PARTITIONS = 3
FAULTS = ("kill", "pause", "wipe", "isolate", "cut", "slow")


def register_keys(per_partition: int) -> list[str]:
    return [key for pid in range(PARTITIONS)
            for key in keys_in(pid, per_partition, f"reg{pid}-", PARTITIONS)]


class Nemesis:
    """Strikes one node at a time and undoes the fault after a while."""

    def __init__(self, cluster: StaticClusterProcs, rng: random.Random, log=print):
        self.cluster = cluster
        self.rng = rng
        self.log = log
        self.counts: Counter = Counter()
        self.paused: set[int] = set()

    def _target(self):
        nodes = [n for n in self.cluster.nodes if n.alive]
        if self.rng.random() < 0.5:
            leaders = self.cluster.leaders()
            name = f"default-{self.rng.randrange(PARTITIONS)}"
            if name in leaders:
                return leaders[name][0]
        return self.rng.choice(nodes)

    def _all_in_sync(self) -> bool:
        for node in self.cluster.nodes:
            try:
                status, _ = node.http("/node/allready", timeout=2)
            except OSError:
                return False
            if status != 200:
                return False
        return True

    def strike(self, duration: float) -> None:
        kind = self.rng.choice(FAULTS)
        if kind == "wipe" and not self._all_in_sync():
            kind = self.rng.choice([k for k in FAULTS if k != "wipe"])
        node = self._target()
        c = self.cluster
        self.counts[kind] += 1
        self.log(f"  {time.strftime('%H:%M:%S')} {kind} node {node.node_id} "
                 f"for {duration:.1f} s")
        if kind in ("kill", "wipe"):
            c.kill(node)
            if kind == "wipe":
                c.wipe(node)
            time.sleep(duration)
            c.restart(node)
        elif kind == "pause":
            node.proc.send_signal(signal.SIGSTOP)
            self.paused.add(node.node_id)
            time.sleep(duration)
            node.proc.send_signal(signal.SIGCONT)
            self.paused.discard(node.node_id)
        elif kind == "isolate":
            c.isolate(node)
            time.sleep(duration)
            c.heal_all()
        elif kind == "cut":
            peer = self.rng.choice([n for n in c.nodes if n is not node])
            c.cut(node, peer)
            time.sleep(duration)
            c.heal_all()
        else:
            delay = self.rng.uniform(0.3, 1.5)
            for other in c.nodes:
                if other is not node:
                    c.delay(node, other, delay)
            time.sleep(duration)
            c.heal_all()

    def undo_all(self) -> None:
        for node in self.cluster.nodes:
            if node.node_id in self.paused:
                node.proc.send_signal(signal.SIGCONT)
        self.paused.clear()
        self.cluster.heal_all()
        for node in self.cluster.nodes:
            if not node.alive:
                self.cluster.restart(node)


def run(seconds: float, seed: int, keys_per_partition: int, log=print) -> dict:
    """Run the nemesis; returns the figures it prints."""
    rng = random.Random(seed)
    keys = register_keys(keys_per_partition)
    namespaces = [{"name": "default", "partition_num": PARTITIONS, "replicator": 3}]
    started = time.monotonic()
    with StaticClusterProcs(3, namespaces=namespaces, proxies=True, snap_count=200,
                            snap_catchup=20,
                            extra_conf={"proposal_timeout_ms": 2000}) as cluster:
        nemesis = Nemesis(cluster, rng, log)
        log(f"nemesis: 3 nodes, {seconds:.0f} s, seed {seed}, {len(keys)} registers")
        with RegisterClients(cluster, keys, seed=seed) as clients:
            try:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    time.sleep(rng.uniform(0.5, 2.0))
                    nemesis.strike(rng.uniform(1.0, 3.0))
            finally:
                nemesis.undo_all()
            time.sleep(1.0)
        cluster.wait_converged(90)
        ops = clients.history.ops
        outcomes = Counter(op.outcome for op in ops)
        t0 = time.monotonic()
        result = check(clients.history, timeout_s=120)
        check_seconds = time.monotonic() - t0
        lost: set[str] = set()
        for node in cluster.nodes:
            c = node.client()
            held = {m.decode() for m in c.call("SMEMBERS", "lin-set")}
            c.close()
            lost |= clients.members - held
    figures = {
        "faults": dict(nemesis.counts), "fault_count": sum(nemesis.counts.values()),
        "ops": len(ops), "ok": outcomes["ok"], "fail": outcomes["fail"],
        "unknown": outcomes["unknown"], "members": len(clients.members),
        # A search that ran out of time found nothing wrong, nor proved the key right.
        "violations": 0 if result.ok or result.timed_out else 1,
        "timed_out": result.timed_out,
        "explanation": "" if result.ok else result.explanation,
        "lost": len(lost), "check_seconds": check_seconds,
        "seconds": time.monotonic() - started,
    }
    faults = ", ".join(f"{k} {nemesis.counts[k]}" for k in FAULTS)
    log(f"faults: {figures['fault_count']} ({faults})")
    log(f"ops: {figures['ops']} (ok {figures['ok']}, fail {figures['fail']}, "
        f"unknown {figures['unknown']}); set members acknowledged {figures['members']}")
    log(f"violations: {figures['violations']} (linearizability search "
        f"{'timed out, inconclusive' if result.timed_out else 'done'} in {check_seconds:.1f} s)"
        + (f"\n{figures['explanation']}" if figures["explanation"] else ""))
    log(f"lost: {figures['lost']}" + (f" {sorted(lost)[:10]}" if lost else ""))
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="how long faults strike")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keys", type=int, default=32,
                    help="registers per partition (more keep each key's history short "
                         "enough for the linearizability search)")
    args = ap.parse_args()
    figures = run(args.seconds, args.seed, args.keys)
    return 1 if figures["violations"] or figures["lost"] or figures["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
