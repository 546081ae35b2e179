"""A synchronous in-memory network of Raft nodes (etcd's ``network`` in raft_test.go).

Each `SimNode` wraps a `RawNode` over a `MemoryStorage` and processes every Ready the way
a real driver does (persist, collect messages, apply, advance).  `Network.send` delivers
until the network is quiet; faults are filters (drop, cut, isolate, partition) plus, for
randomised schedules, explicit delivery of chosen in-flight messages (delay, reorder,
duplicate).  No threads, no sleeps.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable, Iterable

from zan.raft.codec import decode_conf_change
from zan.raft.core import Config, StateType
from zan.raft.rawnode import RawNode
from zan.raft.storage import MemoryStorage
from zan.raft.types import ConfState, Entry, EntryType, Message, MessageType

MT = MessageType


class SimNode:
    def __init__(self, node_id: int, peers: Iterable[int] = (), storage: MemoryStorage | None = None,
                 rand: random.Random | None = None, learners: Iterable[int] = (), **cfg):
        self.id = node_id
        self.storage = storage if storage is not None else MemoryStorage(
            ConfState(tuple(peers), tuple(learners)))
        self.cfg = cfg
        # What the state machine holds: restored from the snapshot, then rebuilt by
        # re-applying the committed entries Raft hands out again after a restart.
        snap = self.storage.snapshot()
        self.applied_index = snap.metadata.index
        self.applied: list[Entry] = []
        self.read_states = []
        self.snapshots_installed = 0
        self.rn = RawNode(Config(id=node_id, applied=self.applied_index, **cfg), self.storage,
                          rand or random.Random(node_id))
        self.on_apply: Callable[[SimNode, Entry], None] | None = None

    @property
    def raft(self):
        return self.rn.raft

    def restart(self, rand: random.Random | None = None) -> "SimNode":
        """A new node over what this one made durable (everything handed to storage)."""
        n = SimNode(self.id, storage=self.storage, rand=rand, **self.cfg)
        n.on_apply = self.on_apply
        return n

    def process(self) -> list[Message]:
        out: list[Message] = []
        rn = self.rn
        while rn.has_ready():
            rd = rn.ready()
            if rd.snapshot is not None:
                self.storage.apply_snapshot(rd.snapshot)
                self.applied_index = rd.snapshot.metadata.index
                self.snapshots_installed += 1
            if rd.entries:
                self.storage.append(rd.entries)
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            out.extend(rd.messages)
            for e in rd.committed_entries:
                if e.index != self.applied_index + 1:
                    raise AssertionError(f"node {self.id} applies {e.index} after {self.applied_index}")
                self.applied_index = e.index
                self.applied.append(e)
                if e.type == EntryType.CONF_CHANGE:
                    rn.apply_conf_change(decode_conf_change(e.data))
                if self.on_apply is not None:
                    self.on_apply(self, e)
            self.read_states.extend(rd.read_states)
            rn.advance(rd)
        return out

    def compact(self, keep: int = 0) -> None:
        """Snapshot at the applied index and drop the log up to `keep` entries before it."""
        idx = self.applied_index
        snap = self.storage.snapshot().metadata.index
        if idx <= snap:
            return
        self.storage.create_snapshot(idx, self.raft.conf_state(), b"")
        if idx - keep > self.storage.first_index() - 1:
            self.storage.compact(idx - keep)


class Network:
    def __init__(self, ids: Iterable[int], seed: int = 0, **cfg):
        ids = list(ids)
        self.ids = ids
        self.rand = random.Random(seed)
        self.nodes: dict[int, SimNode] = {
            i: SimNode(i, ids, rand=random.Random(self.rand.random()), **cfg) for i in ids}
        self.down: set[int] = set()
        self.dropped: dict[tuple[int, int], float] = {}
        self.ignored: set[MessageType] = set()
        self.msg_hook: Callable[[Message], bool] | None = None
        self.queue: list[Message] = []

    # --- faults

    def drop(self, frm: int, to: int, prob: float = 1.0) -> None:
        self.dropped[(frm, to)] = prob

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, node_id: int) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[int]) -> None:
        where = {n: gi for gi, g in enumerate(groups) for n in g}
        for a in self.ids:
            for b in self.ids:
                if a != b and where.get(a) != where.get(b):
                    self.drop(a, b)

    def ignore(self, t: MessageType) -> None:
        self.ignored.add(t)

    def recover(self) -> None:
        self.dropped.clear()
        self.ignored.clear()

    # --- delivery

    def _filter(self, msgs: Iterable[Message]) -> list[Message]:
        out = []
        for m in msgs:
            if m.type in self.ignored or m.to in self.down:
                continue
            prob = self.dropped.get((m.frm, m.to), 0.0)
            if prob and self.rand.random() < prob:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    def lost(self, m: Message) -> list[Message]:
        """`m` will never arrive.  A snapshot's sender learns of it, as from a real
        transport whose snapshot stream failed."""
        sender = self.nodes.get(m.frm)
        if m.type != MT.SNAP or sender is None or m.frm in self.down:
            return []
        sender.rn.report_snapshot(m.to, False)
        return sender.process()

    def deliver(self, m: Message) -> list[Message]:
        """Step `m` into its target and return what the target sent in reply."""
        node = self.nodes.get(m.to)
        if node is None or m.to in self.down:
            return self.lost(m)
        try:
            node.rn.step(m)
        except Exception as e:  # a dropped forwarded proposal
            from zan.errors import ClusterError
            if not isinstance(e, ClusterError):
                raise
        out = node.process()
        sender = self.nodes.get(m.frm)
        if m.type == MT.SNAP and sender is not None and m.frm not in self.down:
            sender.rn.report_snapshot(m.to, True)
            out.extend(sender.process())
        return out

    def send(self, *msgs: Message) -> None:
        """Deliver `msgs` and everything they cause until the network is quiet."""
        queue = list(msgs)
        while queue:
            m = queue.pop(0)
            if not self._filter([m]):
                queue.extend(self.lost(m))
                continue
            queue.extend(self.deliver(m))

    def flush(self) -> None:
        msgs = []
        for i, n in self.nodes.items():
            if i not in self.down:
                msgs.extend(n.process())
        self.send(*msgs)

    def campaign(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.rn.campaign()
        self.send(*node.process())

    def propose(self, node_id: int, data: bytes):
        node = self.nodes[node_id]
        res = node.rn.propose(data)
        self.send(*node.process())
        return res

    def tick(self, node_id: int, n: int = 1) -> None:
        node = self.nodes[node_id]
        for _ in range(n):
            node.rn.tick()
            self.send(*node.process())

    def tick_all(self, rounds: int = 1) -> None:
        """Tick every live node once per round, delivering after each round."""
        for _ in range(rounds):
            msgs = []
            for i, n in self.nodes.items():
                if i not in self.down:
                    n.rn.tick()
                    msgs.extend(n.process())
            self.send(*msgs)

    def leader(self) -> int | None:
        leaders = [i for i, n in self.nodes.items()
                   if i not in self.down and n.raft.state == StateType.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda i: self.nodes[i].raft.term)

    def crash(self, node_id: int) -> None:
        self.down.add(node_id)

    def restart(self, node_id: int) -> None:
        self.down.discard(node_id)
        self.nodes[node_id] = self.nodes[node_id].restart(random.Random(self.rand.random()))
        self.send(*self.nodes[node_id].process())

    def raft(self, node_id: int):
        return self.nodes[node_id].raft


def entry_datas(entries: Iterable[Entry]) -> list[bytes]:
    return [e.data for e in entries if e.type == EntryType.NORMAL and e.data]


def msg(t: MessageType, frm: int = 0, to: int = 0, **kw) -> Message:
    return Message(t, to=to, frm=frm, **kw)


__all__ = ["SimNode", "Network", "entry_datas", "msg", "replace"]


def new_raft(node_id: int, peers: Iterable[int], election: int = 10, heartbeat: int = 1,
             storage: MemoryStorage | None = None, learners: Iterable[int] = (), seed: int | None = None,
             **cfg):
    """A bare `Raft` for white-box tests (etcd's newTestRaft)."""
    from zan.raft.core import Raft
    if storage is None:
        storage = MemoryStorage(ConfState(tuple(peers), tuple(learners)))
    return Raft(Config(id=node_id, election_tick=election, heartbeat_tick=heartbeat, **cfg), storage,
                random.Random(node_id if seed is None else seed))


def read_messages(r) -> list[Message]:
    msgs = r.msgs
    r.msgs = []
    return msgs


def persist(r) -> None:
    """Make `r`'s unstable entries durable and mark committed entries applied, as a driver
    would after a Ready (etcd's nextEnts)."""
    log = r.raft_log
    st = log.storage
    if log.unstable.snapshot is not None:
        st.apply_snapshot(log.unstable.snapshot)
        log.stable_snap_to(log.unstable.snapshot.metadata.index)
    ents = log.unstable_entries()
    if ents:
        st.append(list(ents))
        log.stable_to(ents[-1].index, ents[-1].term)
    ents = log.next_committed_ents()
    if ents:
        log.applied_to(ents[-1].index)
    return ents


def storage_with(entries: Iterable[tuple[int, int]] | Iterable[int], peers=(1, 2, 3), term: int = 0,
                 vote: int = 0, commit: int = 0) -> MemoryStorage:
    """A storage holding entries given as terms (index 1, 2, ...)."""
    from zan.raft.types import HardState
    s = MemoryStorage(ConfState(tuple(peers)))
    s.append([Entry(t, i + 1) for i, t in enumerate(entries)])
    s.set_hard_state(HardState(term, vote, commit))
    return s
