"""A replica whose data directory is wiped comes back under the same id: the leader still
holds its old match index, yet the replica must catch up (by snapshot) and converge."""

import shutil

import pytest

from tests.support.inprocess import InProcessCluster
from zan.node.http_api import data_checksum
from tests.support.keys import keys_in
from zan.raft.types import MessageType


def key_in(pid, prefix="k"):
    return keys_in(pid, 1, prefix, partitions=2)[0]


@pytest.fixture
def cluster(tmp_path):
    """Three nodes compacting their logs early (snapshots needed soon), partition 0 led."""
    c = InProcessCluster(tmp_path, snap_count=50, snap_catchup=5)
    try:
        c.wait_leader(0)
        yield c
    finally:
        c.close()


def leader_and_follower(c):
    leader = c.leader_node(0)
    return leader, next(i for i in (1, 2, 3) if i != leader)


def test_wiped_follower_rejoins_under_an_unchanged_leader(cluster):
    c = cluster
    leader, wiped = leader_and_follower(c)
    k = key_in(0)
    for i in range(30):
        assert c.call(leader, "rpush", k, str(i)) == i + 1
    c.run(1.0)           # the leader records the follower's match past 30
    c.crash(wiped)
    shutil.rmtree(c.configs[wiped].data_dir)
    for i in range(30, 120):
        assert c.call(leader, "rpush", k, str(i)) == i + 1
    c.start(wiped)
    c.run(5.0)
    assert c.leader_node(0) == leader      # no election reset the leader's view
    part = c.nodes[wiped].partition("default", 0)
    assert part.applied_index >= c.nodes[leader].partition("default", 0).applied_index - 1
    now = int(c.clock.seconds() * 1000)
    sums = {i: data_checksum(n.partition("default", 0).state_machine.engine, now)[:2]
            for i, n in c.nodes.items()}
    assert len(set(sums.values())) == 1, sums
    assert c.call(leader, "rpush", k, "last") == 121
    c.run(1.0)
    assert c.nodes[wiped].partition("default", 0).state_machine.read(
        "llen", [k.encode()], now, 0) == 121


def test_a_lost_snapshot_message_is_sent_again(cluster):
    """The follower never learns it was sent a snapshot: the leader does not wait for a
    fetch that never starts longer than the start timeout before sending it again."""
    c = cluster
    leader, wiped = leader_and_follower(c)
    k = key_in(0)
    c.crash(wiped)
    shutil.rmtree(c.configs[wiped].data_dir)
    for i in range(120):
        assert c.call(leader, "rpush", k, str(i)) == i + 1
    lost = []

    def lose_first_snapshot(frm, to, gid, msg):
        if msg.type == MessageType.SNAP and not lost:
            lost.append(msg)
            return True
        return False
    c.net.drop_if = lose_first_snapshot
    c.start(wiped)
    c.run(5.0)
    assert lost
    behind = c.nodes[wiped].partition("default", 0).applied_index
    assert behind < c.nodes[leader].partition("default", 0).applied_index
    c.run(8.0)
    now = int(c.clock.seconds() * 1000)
    assert c.nodes[wiped].partition("default", 0).state_machine.read(
        "llen", [k.encode()], now, 0) == 120
