"""Scripts on a replicated node (a 3-node cluster in one reactor): a script runs on its
partition's leader, from any node, and its writes are one log entry that every replica
applies if the script's keys are as it saw them, else it runs again."""

from types import SimpleNamespace

import pytest

from tests.support.inprocess import InProcessCluster
from tests.unit.test_transactions_replicated import Connection, error_text
from zan.node import replicated_scripts
from zan.store.codec import decode_meta_header, meta_key
from zan.store.statemachine import encode_command_entry

INCR = "return redis.call('incr', KEYS[1])"


@pytest.fixture
def cluster(tmp_path):
    c = InProcessCluster(tmp_path)
    try:
        for node in c.nodes.values():
            d = node.dispatcher
            d.server = SimpleNamespace(transactions=d.transactions, scripts=d.scripts,
                                       redis_version="7.0.0")
        c.wait_leader(0)
        c.wait_leader(1)
        yield c
    finally:
        c.close()


def partition_of(cluster, key: str):
    """(pid, pk) of a key."""
    r = cluster.nodes[1].dispatcher.router.route(key.encode())
    return r.partition, r.pk


def on_leader(cluster, key: str):
    """(pid, pk) of a key, the node leading its partition, and that replica."""
    pid, pk = partition_of(cluster, key)
    leader = cluster.leader_node(pid)
    return pid, pk, leader, cluster.nodes[leader].partition("default", pid)


def states(cluster, pid):
    """Each live replica's (applied index, records) of partition `pid`."""
    out = {}
    for i, node in cluster.nodes.items():
        sm = node.partition("default", pid).state_machine
        records = {k: v for k, v in sm.engine.iterator() if k[:1] != b"\x00"}
        out[i] = (sm.applied_index, records, sm.keys_count)
    return out


def settle(cluster):
    cluster.run(1.0)


@pytest.mark.parametrize("node_id", [1, 2, 3])
def test_a_script_runs_from_any_node_as_one_entry(cluster, node_id):
    keys = ["{user:7}:name", "{user:7}:tags", "{user:7}:count"]
    pid, _ = partition_of(cluster, keys[0])
    settle(cluster)
    before = {i: s[0] for i, s in states(cluster, pid).items()}
    script = ("redis.call('set', KEYS[1], ARGV[1]) "
              "redis.call('sadd', KEYS[2], 'a', 'b') "
              "redis.call('incrby', KEYS[3], 5) "
              "return {redis.call('get', KEYS[1]), redis.call('scard', KEYS[2]), "
              "redis.call('incr', KEYS[3])}")
    assert cluster.call(node_id, "eval", script, "3", *keys, "ann") == [b"ann", 2, 6]
    settle(cluster)
    after = states(cluster, pid)
    assert {i: s[0] - before[i] for i, s in after.items()} == {1: 1, 2: 1, 3: 1}
    assert len({repr(s[1:]) for s in after.values()}) == 1
    assert after[1][2] == 3        # key counts follow the effects
    for other in (1, 2, 3):
        assert sorted(cluster.call(other, "smembers", keys[1])) == [b"a", b"b"]
        assert cluster.call(other, "get", keys[2]) == b"6"


def test_a_collection_a_script_creates_takes_its_entrys_index(cluster):
    key = "{v}:h"
    pid, pk = partition_of(cluster, key)
    script = ("redis.call('hset', KEYS[1], 'f', 'x') redis.call('del', KEYS[1]) "
              "redis.call('hset', KEYS[1], 'g', 'y') return redis.call('hgetall', KEYS[1])")
    assert cluster.call(2, "eval", script, "1", key) == [b"g", b"y"]
    settle(cluster)
    sm = cluster.nodes[1].partition("default", pid).state_machine
    _, _, version = decode_meta_header(sm.engine.get(meta_key(pk)))
    assert version < 1 << 63 and version >> 40 == 2     # the third call created it
    assert cluster.call(3, "hgetall", key) == [b"g", b"y"]


def test_keys_of_two_partitions_answer_crossslot(cluster):
    a = next(f"a{i}" for i in range(100) if partition_of(cluster, f"a{i}")[0] == 0)
    b = next(f"b{i}" for i in range(100) if partition_of(cluster, f"b{i}")[0] == 1)
    reply = cluster.call(1, "eval", "return 1", "2", a, b)
    assert error_text(reply) == "CROSSSLOT Keys in request don't hash to the same slot"


def test_an_undeclared_key_is_refused(cluster):
    reply = cluster.call(2, "eval", "return redis.call('set', '{t}:other', 1)", "1", "{t}:k")
    assert error_text(reply).startswith(
        "ERR Script attempted to access a non local key in a cluster node script: ")
    assert cluster.call(1, "exists", "{t}:other") == 0
    # pcall sees the error as a value; the writes before an error are kept.
    script = ("redis.call('set', KEYS[1], 'kept') "
              "return redis.call('get', 'elsewhere')")
    assert "non local key" in error_text(cluster.call(3, "eval", script, "1", "{t}:k"))
    assert cluster.call(1, "get", "{t}:k") == b"kept"


def test_a_script_without_keys_runs_where_it_arrives(cluster):
    assert cluster.call(3, "eval", "return redis.call('ping')", "0") == b"PONG"
    assert "non local key" in error_text(
        cluster.call(3, "eval", "return redis.call('get', 'x')", "0"))


def test_evalsha_and_read_only_scripts(cluster):
    pid, _ = partition_of(cluster, "{e}:n")
    leader = cluster.leader_node(pid)
    origin, other = [i for i in (1, 2, 3) if i != leader]
    sha = cluster.call(origin, "script", "load", INCR)
    assert cluster.call(origin, "evalsha", sha, "1", "{e}:n") == 1
    # Known where it was loaded, and on the leader that ran it.
    assert error_text(cluster.call(other, "evalsha", sha, "1", "{e}:n")).startswith("NOSCRIPT")
    assert cluster.call(leader, "script", "exists", sha) == [1]
    settle(cluster)
    before = states(cluster, pid)
    assert cluster.call(2, "eval_ro", "return redis.call('get', KEYS[1])", "1",
                        "{e}:n") == b"1"
    assert "not allowed from read-only" in error_text(
        cluster.call(3, "eval_ro", INCR, "1", "{e}:n"))
    assert cluster.call(3, "eval", "return redis.call('get', KEYS[1])", "1", "{e}:n") == b"1"
    settle(cluster)
    assert states(cluster, pid) == before     # nothing proposed


def test_a_write_between_the_read_and_the_entry_makes_the_script_run_again(cluster,
                                                                           monkeypatch):
    key = "{c}:n"
    pid, pk, leader, partition = on_leader(cluster, key)
    real = partition.read_point
    injected = []

    def read_point():
        def sneak_in(result):
            if not injected:    # a plain INCR, proposed after the state the script sees
                injected.append(partition.propose(encode_command_entry(
                    cluster.nodes[leader].dispatcher.now_ms(), 0, "incr", [pk])))
            return result
        return real().addCallback(sneak_in)
    partition.read_point = read_point
    runs = []
    compute = replicated_scripts.ReplicatedScripts._compute

    def counting(self, *args):
        runs.append(1)
        return compute(self, *args)
    monkeypatch.setattr(replicated_scripts.ReplicatedScripts, "_compute", counting)
    assert cluster.call(1 + leader % 3, "eval", INCR, "1", key) == 2
    assert len(runs) == 2 and injected
    assert cluster.call(leader, "get", key) == b"2"


def test_a_script_that_keeps_conflicting_gives_up(cluster, monkeypatch):
    monkeypatch.setattr(replicated_scripts, "MAX_ATTEMPTS", 3)
    key = "{g}:n"
    pid, pk, leader, partition = on_leader(cluster, key)
    real = partition.read_point

    def read_point():
        def sneak_in(result):
            partition.propose(encode_command_entry(0, 0, "incr", [pk]))
            return result
        return real().addCallback(sneak_in)
    partition.read_point = read_point
    assert error_text(cluster.call(leader, "eval", INCR, "1", key)).startswith("TRYAGAIN")
    settle(cluster)
    assert cluster.call(leader, "get", key) == b"3"


def test_scripts_and_plain_writes_interleaved_from_every_node_add_up(cluster):
    key = "{sum}:n"
    conns = [Connection(cluster, i) for i in (1, 2, 3)]
    pending = []
    for n in range(50):
        conn = conns[n % 3]
        pending.append(conn.send("eval", INCR, "1", key))
        pending.append(conns[(n + 1) % 3].send("incr", key))
    replies = conns[0].replies(*pending)
    assert all(isinstance(r, int) for r in replies), replies
    assert sorted(replies) == list(range(1, 101))
    assert cluster.call(2, "get", key) == b"100"
    pid, _ = partition_of(cluster, key)
    settle(cluster)
    assert len({repr(s[1:]) for s in states(cluster, pid).values()}) == 1


def test_a_leader_change_before_the_script_ran_sends_it_to_the_new_leader(cluster):
    key = "{l}:n"
    assert cluster.call(1, "eval", INCR, "1", key) == 1
    pid, _, leader, partition = on_leader(cluster, key)
    target = next(i for i in (1, 2, 3) if i != leader)
    real = partition.read_point

    def read_point():     # asked for, then the leadership moves away
        d = real()
        cluster.nodes[leader].cluster.driver.transfer_leader(partition.group_id, target)
        return d
    partition.read_point = read_point
    origin = next(i for i in (1, 2, 3) if i not in (leader, target))
    assert cluster.call(origin, "eval", INCR, "1", key) == 2
    assert cluster.leader_node(pid) == target
    settle(cluster)
    replicas = states(cluster, pid)
    assert replicas[leader][1:] == replicas[target][1:]
    assert cluster.call(leader, "get", key) == b"2"


def test_a_leader_lost_after_proposing_leaves_the_script_done_at_most_once(cluster):
    key = "{x}:n"
    assert cluster.call(1, "eval", INCR, "1", key) == 1
    pid, _, leader, partition = on_leader(cluster, key)
    real = partition.propose

    def propose(data):    # the effects entry never leaves the leader
        cluster.net.isolate(leader, (1, 2, 3))
        return real(data)
    partition.propose = propose
    origin = next(i for i in (1, 2, 3) if i != leader)
    conn = Connection(cluster, origin)
    pending = conn.send("eval", INCR, "1", key)
    cluster.run(0.5)
    cluster.crash(leader)
    cluster.net.heal()
    cluster.wait_leader(pid, among=[i for i in (1, 2, 3) if i != leader])
    got, = conn.replies(pending)
    assert isinstance(got, Exception)     # its outcome was unknown to the node
    assert cluster.call(origin, "get", key) == b"1"
    assert cluster.call(origin, "eval", INCR, "1", key) == 2
    settle(cluster)
    survivors = states(cluster, pid)
    assert len({repr(s[1:]) for s in survivors.values()}) == 1


def test_the_internal_commands_are_not_reachable_by_clients(cluster):
    for name in ("zan.script", "zan.effects"):
        assert "unknown command" in error_text(cluster.call(1, name, "a", "b", "c"))


def test_a_script_inside_multi_is_refused_when_queued(cluster):
    conn = Connection(cluster, 1)
    conn("multi")
    assert "ERR EVAL cannot run inside a transaction" in error_text(
        conn("eval", INCR, "1", "{m}:n"))
    assert "EXECABORT" in error_text(conn("exec"))
    assert cluster.call(2, "exists", "{m}:n") == 0


def test_a_no_writes_script_reads_at_a_read_point(cluster):
    assert cluster.call(1, "set", "{r}:k", "v") == b"OK"
    script = "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])"
    for node_id in (1, 2, 3):
        assert cluster.call(node_id, "eval", script, "1", "{r}:k") == b"v"
    script = "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'w')"
    assert "not allowed from read-only" in error_text(cluster.call(2, "eval", script, "1",
                                                                   "{r}:k"))


def test_entries_that_never_apply_delay_a_script_no_longer_than_a_proposal(cluster,
                                                                          monkeypatch):
    key = "{t}:n"
    pid, _, leader, partition = on_leader(cluster, key)
    driver = cluster.nodes[leader].cluster.driver
    log = driver.raw_node(partition.group_id).raft.raft_log
    # Entries beyond the applied ones that will not apply soon, as a deposed leader has.
    ahead = SimpleNamespace(last_index=lambda: log.last_index() + 1000)
    monkeypatch.setattr(driver, "raw_node", lambda gid: SimpleNamespace(
        raft=SimpleNamespace(raft_log=ahead)))
    start = cluster.clock.seconds()
    assert cluster.call(leader, "eval", INCR, "1", key) == 1
    assert 4.0 <= cluster.clock.seconds() - start < 6.0
