"""A 3-node static cluster in one reactor: failover, snapshot catch-up, membership
change, leader transfer and forwarding over an in-memory network."""

import pytest
from twisted.internet.defer import Deferred

from zan.errors import ZanError
from zan.node.namespaces import partition_of
from zan.raft.types import ConfChange, ConfChangeType
from tests.support.inprocess import InProcessCluster, running_cluster
from zan.node.http_api import NodeHTTPAPI, data_checksum


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path) as c:
        yield c


def key_in(pid, prefix="k"):
    i = 0
    while partition_of(f"{prefix}{i}".encode(), 2) != pid:
        i += 1
    return f"{prefix}{i}"


def checksums(c, pid):
    out = {}
    for i, node in c.nodes.items():
        p = node.partition("default", pid)
        out[i] = data_checksum(p.state_machine.engine, int(c.clock.seconds() * 1000))[:2]
    return out


def converge(c, pid, timeout=20.0):
    waited = 0.0
    while waited < timeout:
        sums = checksums(c, pid)
        if len(set(sums.values())) == 1:
            return sums
        c.run(0.2)
        waited += 0.2
    raise AssertionError(f"replicas differ: {checksums(c, pid)}")


def resp_hops(node):
    """The commands `node` sends on over RESP from now on (their names, in order)."""
    hops = []
    resp_forward = node.cluster._forward_to

    def forward(node_id, argv):
        hops.append(argv[4])
        return resp_forward(node_id, argv)
    node.cluster._forward_to = forward
    return hops


def test_any_node_answers_any_key(cluster):
    k = key_in(0)
    for node in (1, 2, 3):
        assert cluster.call(node, "set", k, f"v{node}") == b"OK"
        for reader in (1, 2, 3):
            assert cluster.call(reader, "get", k) == f"v{node}".encode()
    assert cluster.call(2, "mset", "a", "1", "b", "2", "c", "3") == b"OK"
    assert cluster.call(3, "mget", "a", "b", "c", "nope") == [b"1", b"2", b"3", None]
    assert cluster.call(1, "dbsize") == 4
    converge(cluster, 0)


def test_a_follower_sends_writes_to_the_leader_by_raft_and_reads_over_resp(cluster):
    k = key_in(0)
    follower = next(i for i in cluster.nodes if i != cluster.leader_node(0))
    node = cluster.nodes[follower]
    hops = resp_hops(node)
    assert cluster.call(follower, "set", k, "v") == b"OK"
    assert cluster.call(follower, "incr", k + "n") == 1
    assert cluster.call(follower, "incr", k + "n") == 2
    assert str(cluster.call(follower, "lpush", k, "x")) == \
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert hops == []   # the writes went as Raft proposals
    assert cluster.call(follower, "get", k) == b"v"
    assert hops == [b"get"]
    converge(cluster, 0)


def test_a_replica_removed_from_its_group_forwards_writes_over_resp(cluster):
    """It no longer receives the group's entries, so it could never answer a write it
    sent the leader as a proposal."""
    k = key_in(0)
    leader = cluster.leader_node(0)
    part = cluster.nodes[leader].partition("default", 0)
    victim = next(i for i in (1, 2, 3) if i != leader)
    d = cluster.nodes[leader].cluster.driver.propose_conf_change(
        part.group_id, ConfChange(ConfChangeType.REMOVE_NODE, victim))
    cluster.run(1.0)
    assert d.called and cluster.nodes[victim].partition("default", 0).removed
    node = cluster.nodes[victim]
    hops = resp_hops(node)
    assert cluster.call(victim, "set", k, "after", settle=1.0) == b"OK"
    assert hops == [b"set"]
    assert cluster.call(leader, "get", k) == b"after"


def test_failover_keeps_acknowledged_writes(cluster):
    k = key_in(0)
    leader = cluster.leader_node(0)
    assert cluster.call(leader, "set", k, "before") == b"OK"
    others = [i for i in (1, 2, 3) if i != leader]
    cluster.net.isolate(leader, [1, 2, 3])
    new = cluster.wait_leader(0, among=others)
    assert cluster.call(others[0], "get", k) == b"before"
    assert cluster.call(others[1], "set", k, "after") == b"OK"
    # The isolated old leader cannot commit: its write fails (never acknowledged).
    stale = cluster.call(leader, "set", k, "lost", settle=6.0)
    assert isinstance(stale, ZanError)
    cluster.net.heal()
    cluster.run(3.0)
    assert cluster.call(leader, "get", k) == b"after"
    assert new != leader
    converge(cluster, 0)


def test_crashed_node_restarts_from_its_log(cluster):
    k = key_in(1)
    for i in range(20):
        assert cluster.call(1, "incr", k) == i + 1
    cluster.crash(3)
    for i in range(20, 30):
        assert cluster.call(2, "incr", k) == i + 1
    cluster.start(3)
    cluster.run(3.0)
    assert cluster.call(3, "get", k) == b"30"
    converge(cluster, 1)


def lag_behind_the_compacted_log(c):
    """Cut a follower of partition 0 off while its leader appends 120 entries (past
    snap_count): (leader, lagging follower, the key written)."""
    c.wait_leader(0)
    leader = c.leader_node(0)
    lagging = next(i for i in (1, 2, 3) if i != leader)
    c.net.isolate(lagging, [1, 2, 3])
    k = key_in(0)
    for i in range(120):
        assert c.call(leader, "rpush", k, str(i)) == i + 1
    return leader, lagging, k


def test_lagging_follower_catches_up_by_snapshot(tmp_path):
    c = InProcessCluster(tmp_path, snap_count=50, snap_catchup=5, settings={"row_cache_mb": 1})
    try:
        leader, lagging, k = lag_behind_the_compacted_log(c)
        engine = c.nodes[lagging].partition("default", 0).state_machine.engine
        assert engine.row_cache_bytes == 1 << 20
        gid = c.nodes[leader].partition("default", 0).group_id
        assert c.nodes[leader].wal.group(gid).first_index() > 10   # compacted
        c.net.heal()
        c.run(5.0)
        assert c.call(lagging, "llen", k) == 120
        # It got there through a snapshot: its log starts after one.
        assert c.nodes[lagging].wal.group(gid).snapshot().metadata.index > 0
        # The received database was opened as the replaced one was.
        restored = c.nodes[lagging].partition("default", 0).state_machine.engine
        assert restored is not engine and restored.row_cache_bytes == 1 << 20
        sums = converge(c, 0)
        assert len(set(sums.values())) == 1
    finally:
        c.close()


def test_a_replica_fetching_a_snapshot_forwards_writes_over_resp(tmp_path):
    c = InProcessCluster(tmp_path, snap_count=50, snap_catchup=5)
    try:
        leader, lagging, k = lag_behind_the_compacted_log(c)
        node = c.nodes[lagging]
        node.cluster._snapshot_source = lambda *a: Deferred()   # a stream still going on
        hops = resp_hops(node)
        c.net.heal()
        c.run(2.0)
        part = node.partition("default", 0)
        assert part.fetching_snapshot
        assert not NodeHTTPAPI(node)._synced(node.cluster, part)   # /cluster/israftsynced
        assert c.call(lagging, "rpush", k, "during", settle=1.0) == 121
        assert hops == [b"rpush"]
    finally:
        c.close()


def test_membership_change_and_leader_transfer(cluster):
    k = key_in(0)
    assert cluster.call(1, "set", k, "x") == b"OK"
    leader = cluster.leader_node(0)
    part = cluster.nodes[leader].partition("default", 0)
    target = next(i for i in (1, 2, 3) if i != leader)
    cluster.nodes[leader].cluster.driver.transfer_leader(part.group_id, target)
    cluster.run(2.0)
    assert cluster.leader_node(0) == target
    # Remove a follower: two voters keep serving.
    victim = next(i for i in (1, 2, 3) if i != target)
    d = cluster.nodes[target].cluster.driver.propose_conf_change(
        part.group_id, ConfChange(ConfChangeType.REMOVE_NODE, victim))
    cluster.run(1.0)
    assert d.called
    voters = cluster.nodes[target].cluster.driver.conf_state(part.group_id).voters
    assert sorted(voters) == sorted(i for i in (1, 2, 3) if i != victim)
    assert cluster.call(target, "set", k, "y") == b"OK"
    # Add it back as a learner, then promote it.
    for kind in (ConfChangeType.ADD_LEARNER_NODE, ConfChangeType.ADD_NODE):
        d = cluster.nodes[target].cluster.driver.propose_conf_change(
            part.group_id, ConfChange(kind, victim))
        cluster.run(1.0)
        assert d.called
    cluster.run(2.0)
    assert victim in cluster.nodes[target].cluster.driver.conf_state(part.group_id).voters
    assert cluster.call(victim, "get", k) == b"y"


def test_every_replica_takes_a_snapshot_naming_a_member_once_it_is_added(cluster):
    """A new member whose log the leader compacted away can only start from a snapshot
    that names it (a replica refuses one that does not): the snapshot is taken when the
    member is added, not at the next snap_count entries, which may be long in coming."""
    k = key_in(0)
    assert cluster.call(1, "set", k, "x") == b"OK"
    leader = cluster.leader_node(0)
    part = cluster.nodes[leader].partition("default", 0)
    driver = cluster.nodes[leader].cluster.driver
    victim = next(i for i in (1, 2, 3) if i != leader)
    for kind in (ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER_NODE):
        d = driver.propose_conf_change(part.group_id, ConfChange(kind, victim))
        cluster.run(1.0)
        assert d.called
    for i, node in cluster.nodes.items():
        snap = node.wal.group(part.group_id).snapshot()
        assert list(snap.metadata.conf_state.learners) == [victim], i
        assert snap.metadata.index == node.partition("default", 0).applied_index, i


def test_database_ahead_of_the_remembered_commit_index(cluster):
    """A kill -9 loses the lazily written commit index while the database already applied
    the entries: the replica must restart and converge, not refuse to start."""
    k = key_in(0)
    for i in range(10):
        assert cluster.call(1, "incr", k) == i + 1
    node = cluster.nodes[3]
    part = node.partition("default", 0)
    hs, _ = node.wal.group(part.group_id).initial_state()
    assert part.applied_index >= hs.commit
    cluster.crash(3)
    cluster.start(3)
    cluster.run(3.0)
    assert cluster.call(3, "get", k) == b"10"
    converge(cluster, 0)


def test_whole_cluster_restart_elects_again(cluster):
    """Voters are rebuilt from the log on restart: a restarted node can lead."""
    k = key_in(0)
    assert cluster.call(1, "set", k, "v") == b"OK"
    for i in (1, 2, 3):
        cluster.crash(i)
    for i in (1, 2, 3):
        cluster.start(i)
    for pid in (0, 1):
        cluster.wait_leader(pid)
    for i in (1, 2, 3):
        assert cluster.nodes[i].cluster.driver.conf_state(
            cluster.nodes[i].partition("default", 0).group_id).voters
    lead = cluster.leader_node(0)
    cluster.net.isolate(lead, [1, 2, 3])
    cluster.wait_leader(0, among=[i for i in (1, 2, 3) if i != lead])
    assert cluster.call(next(i for i in (1, 2, 3) if i != lead), "get", k) == b"v"


def test_stale_reads_are_served_by_followers_and_normal_reads_are_not(cluster):
    k = key_in(0)
    assert cluster.call(1, "set", k, "v1") == b"OK"
    cluster.run(1.0)
    leader = cluster.leader_node(0)
    follower = next(i for i in (1, 2, 3) if i != leader)
    cluster.net.isolate(follower, [1, 2, 3])
    assert cluster.call(leader, "set", k, "v2") == b"OK"
    # The isolated follower answers stale.get from its own (old) state...
    assert cluster.call(follower, "stale.get", k) == b"v1"
    # ...but a linearizable GET cannot be served there.
    assert isinstance(cluster.call(follower, "get", k, settle=6.0), ZanError)
    cluster.net.heal()
    cluster.run(2.0)
    assert cluster.call(follower, "stale.get", k) == b"v2"


def test_hash_tagged_keys_share_a_partition_for_commands_that_need_one(tmp_path):
    """Keys written for Redis Cluster ({tag}) run multi-key commands on a replicated
    node, where keys of different partitions answer CROSSSLOT."""
    from tests.support.inprocess import InProcessCluster
    c = InProcessCluster(tmp_path, partition_num=8)
    try:
        for pid in range(8):
            c.wait_leader(pid)
        assert c.call(1, "sadd", "{u1}:a", "x", "y") == 2
        assert c.call(2, "sadd", "{u1}:b", "y", "z") == 2
        assert c.call(3, "sinterstore", "{u1}:both", "{u1}:a", "{u1}:b") == 1
        assert c.call(1, "smembers", "{u1}:both") == [b"y"]
        assert c.call(2, "smove", "{u1}:a", "{u1}:b", "x") == 1
    finally:
        c.close()
