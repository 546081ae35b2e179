"""A replica whose disk is wiped must not help elect a leader that lacks acknowledged writes.

Raft's guarantees assume votes and log entries survive a restart.  A replica that comes
back empty under its old id has forgotten both: if it votes like any other member, a
lagging replica can win an election with it and overwrite entries that a majority had
acknowledged.  These tests replay the two ways operators lost writes that way, on an
in-process cluster (real Raft groups and LevelDB, in-memory network, one `Clock`).
"""

import os
import shutil

import pytest

from tests.support.inprocess import InProcessCluster
from zan.node.http_api import data_checksum
from tests.support.keys import keys_in


def key_in(pid, prefix="k"):
    return keys_in(pid, 1, prefix, partitions=2)[0]


@pytest.fixture
def cluster(tmp_path):
    c = InProcessCluster(tmp_path)
    try:
        c.wait_leader(0)
        yield c
    finally:
        c.close()


def wipe(c, i):
    """kill -9, then the node's data directory is gone, then it starts again."""
    c.crash(i)
    shutil.rmtree(c.configs[i].data_dir)
    c.start(i)


def converged(c, pid=0):
    now = int(c.clock.seconds() * 1000)
    sums = {i: data_checksum(n.partition("default", pid).state_machine.engine, now)[:2]
            for i, n in c.nodes.items()}
    return len(set(sums.values())) == 1, sums


def test_a_wiped_replica_does_not_elect_a_lagging_one(cluster):
    """C is cut off while A (leader) and B acknowledge writes; B loses its disk and
    restarts; A dies.  B must not vote for C, which lacks the writes: the partition has
    no leader until A is back, and then every acknowledged write is there."""
    c = cluster
    a = c.leader_node(0)
    b, lagging = [i for i in (1, 2, 3) if i != a]
    counter = key_in(0, "counter")
    c.net.isolate(lagging, [1, 2, 3])
    for i in range(50):
        assert c.call(a, "incr", counter) == i + 1
    wipe(c, b)
    c.crash(a)
    c.net.heal()
    c.run(10.0)
    # Nobody leads: C cannot win without B's vote, and B waits to catch up.
    assert c.leader_node(0) is None
    gid = c.nodes[b].partition("default", 0).group_id
    assert c.nodes[b].cluster.driver.status(gid).recovering
    c.start(a)
    lead = c.wait_leader(0)
    assert c.call(lead, "get", counter) == b"50"
    assert c.call(lead, "incr", counter) == 51
    c.run(3.0)
    ok, sums = converged(c)
    assert ok, sums
    assert not c.nodes[b].cluster.driver.status(gid).recovering


def test_two_wiped_replicas_of_an_idle_partition_keep_its_data(cluster):
    """Two followers of an idle partition lose their disks 8 s apart; then the leader
    stops answering.  The two empty replicas must not elect one of themselves over the
    leader's log."""
    c = cluster
    a = c.leader_node(0)
    f1, f2 = [i for i in (1, 2, 3) if i != a]
    k = key_in(0)
    for i in range(20):
        assert c.call(a, "rpush", k, str(i)) == i + 1
    c.run(1.0)
    wipe(c, f1)
    c.run(8.0)
    wipe(c, f2)
    c.run(2.0)
    c.net.isolate(a, [1, 2, 3])     # the leader pauses: nothing in, nothing out
    c.run(10.0)
    lead = c.leader_node(0)
    if lead is not None and lead != a:
        assert c.call(lead, "llen", k) == 20
    c.net.heal()
    lead = c.wait_leader(0)
    c.run(3.0)
    lead = c.wait_leader(0)
    assert c.call(lead, "llen", k) == 20
    assert c.call(lead, "rpush", k, "last") == 21
    c.run(3.0)
    ok, sums = converged(c)
    assert ok, sums


def test_a_replica_whose_database_alone_was_lost_starts_over_and_recovers(tmp_path):
    """The partition's LevelDB directory is gone but the node's Raft log is not, and the
    log was compacted past the start: its entries cannot rebuild the database.  The
    replica starts over with an empty log, recovering, and comes back by snapshot."""
    c = InProcessCluster(tmp_path, snap_count=50, snap_catchup=5)
    try:
        a = c.wait_leader(0)
        follower = next(i for i in (1, 2, 3) if i != a)
        k = key_in(0)
        for i in range(120):
            assert c.call(a, "rpush", k, str(i)) == i + 1
        c.run(1.0)
        c.crash(follower)
        shutil.rmtree(os.path.join(c.configs[follower].data_dir, "default-0"))
        c.start(follower)
        part = c.nodes[follower].partition("default", 0)
        assert c.nodes[follower].cluster.driver.status(part.group_id).recovering
        c.run(5.0)
        part = c.nodes[follower].partition("default", 0)
        assert not c.nodes[follower].cluster.driver.status(part.group_id).recovering
        assert c.call(a, "rpush", k, "last") == 121
        c.run(2.0)
        ok, sums = converged(c)
        assert ok, sums
    finally:
        c.close()
