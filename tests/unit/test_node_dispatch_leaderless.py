"""A command that finds its partition without a leader (an election, a leadership
transfer) waits for one, up to `leader_wait`, instead of failing at once."""

import random

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from zan.errors import NoLeader, NotLeader
from zan.node.config import NamespaceConfig
from zan.node.dispatch import NodeDispatcher
from zan.node.namespaces import KeyRouter
from zan.resp.protocol import ClientState


class Partition:
    """Refuses as follower; which node leads is up to the test."""

    def __init__(self, pid):
        self.namespace, self.pid = "default", pid
        self.reads = 0

    def read(self, name, args, now_ms, seed=0):
        self.reads += 1
        raise NotLeader()

    def propose(self, data):
        return fail(NotLeader())


class Node:
    def __init__(self):
        self.clock = Clock()
        self.parts = {pid: Partition(pid) for pid in range(2)}
        self.leader_after = 0.0          # no leader anywhere until this time
        self.forwarded = []
        router = KeyRouter({"default": NamespaceConfig("default", partition_num=2)}, "default")
        self.dispatcher = NodeDispatcher(self.clock, router, self, server=None,
                                         rng=random.Random(1))
        self.dispatcher.forwarder = self.forward
        self.dispatcher.leader_wait = 1.0
        self.dispatcher.leader_retry = 0.1

    def partition(self, ns, pid):
        return self.parts.get(pid)

    def partitions(self):
        return list(self.parts.values())

    def forward(self, partition, name, args, hops):
        if self.clock.seconds() < self.leader_after:
            return fail(NoLeader())
        self.forwarded.append((name, args))
        return succeed(b"from-leader")


def run(node, *argv):
    """The outcome as a list: empty while pending, then [result or Failure]."""
    c = ClientState(id=1, addr="test", created=0.0)
    out = []
    result = node.dispatcher.dispatch(c, [a.encode() for a in argv])
    if hasattr(result, "addBoth"):
        result.addBoth(out.append)
    else:
        out.append(result)
    return out


def test_a_command_waits_out_an_election():
    node = Node()
    node.leader_after = 0.45
    reads, writes = run(node, "get", "k"), run(node, "set", "k", "v")
    assert reads == [] and writes == []
    for _ in range(10):
        node.clock.advance(0.1)
    assert reads == [b"from-leader"] and writes == [b"from-leader"]
    assert node.forwarded == [("get", [b"k"]), ("set", [b"k", b"v"])]


def test_no_leader_for_longer_than_the_wait_is_the_cluster_changed_error():
    node = Node()
    node.leader_after = 60
    out = run(node, "get", "k")
    for _ in range(9):
        node.clock.advance(0.1)
    assert out == []
    for _ in range(11):
        node.clock.advance(0.1)
    [failure] = out
    assert failure.check(NoLeader)
    assert str(failure.value).startswith("ERR_CLUSTER_CHANGED")


def test_without_a_wait_the_error_is_immediate():
    node = Node()
    node.dispatcher.leader_wait = 0
    node.leader_after = 60
    [failure] = run(node, "get", "k")
    assert failure.check(NoLeader)
