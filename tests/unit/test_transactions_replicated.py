"""MULTI/EXEC/WATCH on a replicated node (a 3-node cluster in one reactor): a transaction
over one partition is one log entry, sent from any node, and WATCH is checked when
every replica applies it, so it holds across a leader change."""

from types import SimpleNamespace

import pytest
from twisted.internet.defer import maybeDeferred

from zan.errors import ZanError
from zan.resp.protocol import ClientState
from zan.resp.types import NULL_ARRAY
from tests.support.inprocess import InProcessCluster
from tests.support.keys import keys_in


@pytest.fixture
def cluster(tmp_path):
    c = InProcessCluster(tmp_path)
    try:
        for node in c.nodes.values():
            node.dispatcher.server = SimpleNamespace(transactions=node.dispatcher.transactions)
        c.wait_leader(0)
        c.wait_leader(1)
        yield c
    finally:
        c.close()


class Connection:
    """One client connection to one node: commands are sent without waiting (pipelined)
    and `replies` runs the cluster until each has answered."""

    _ids = iter(range(5000, 10**6))

    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.node_id = node_id
        self.client = ClientState(id=next(self._ids), addr="test", created=0.0)

    def send(self, *argv):
        argv = [a.encode() if isinstance(a, str) else a for a in argv]
        out = []
        d = maybeDeferred(self.cluster.nodes[self.node_id].dispatcher.dispatch, self.client,
                          argv)
        d.addBoth(out.append)
        return out

    def replies(self, *pending):
        waited = 0.0
        while not all(pending) and waited < 20:
            self.cluster.clock.advance(0.05)
            waited += 0.05
        assert all(pending), "no answer"
        return [_value(p[0]) for p in pending]

    def __call__(self, *argv):
        return self.replies(self.send(*argv))[0]


def _value(result):
    if hasattr(result, "trap"):      # a Failure
        return result.value
    return result




def error_text(reply):
    assert isinstance(reply, ZanError), reply
    return str(reply)


@pytest.mark.parametrize("node_id", [1, 2, 3])
def test_a_transaction_runs_from_any_node(cluster, node_id):
    a, b, lst = keys_in(0, 3, "k", 2)
    conn = Connection(cluster, node_id)
    assert conn("multi") == b"OK"
    assert conn("set", a, "1") == b"QUEUED"
    assert conn("incrby", a, "41") == b"QUEUED"
    assert conn("rpush", lst, "x", "y") == b"QUEUED"
    assert conn("ping") == b"QUEUED"
    assert conn("mget", a, b) == b"QUEUED"
    assert conn("exec") == [b"OK", 42, 2, b"PONG", [b"42", None]]
    assert cluster.call(1 + node_id % 3, "get", a) == b"42"
    assert cluster.call(1 + (node_id + 1) % 3, "lrange", lst, "0", "-1") == [b"x", b"y"]


def test_a_failing_command_fails_alone(cluster):
    a, h = keys_in(1, 2, "w", 2)
    cluster.call(2, "hset", h, "f", "v")
    conn = Connection(cluster, 3)
    conn("multi")
    conn("set", a, "before")
    conn("incr", h)
    conn("append", a, "+after")
    got = conn("exec")
    assert got[0] == b"OK" and got[2] == len(b"before+after")
    assert "WRONGTYPE" in error_text(got[1])
    assert cluster.call(1, "get", a) == b"before+after"


def test_watch_aborts_exec_when_another_client_changed_the_key(cluster):
    counter, = keys_in(0, 1, "c", 2)
    cluster.call(1, "set", counter, "10")
    watcher, other = Connection(cluster, 2), Connection(cluster, 3)
    assert watcher("watch", counter) == b"OK"
    assert other("incr", counter) == 11
    watcher("multi")
    watcher("incr", counter)
    assert watcher("exec") is NULL_ARRAY
    assert cluster.call(1, "get", counter) == b"11"
    # Unchanged since WATCH: it runs.
    assert watcher("watch", counter) == b"OK"
    watcher("multi")
    watcher("incr", counter)
    assert watcher("exec") == [12]
    # Rewriting the same value is a modification too (a string's version is its write time).
    assert watcher("watch", counter) == b"OK"
    cluster.run(0.1)
    assert other("set", counter, "12") == b"OK"
    watcher("multi")
    watcher("incr", counter)
    assert watcher("exec") is NULL_ARRAY


def test_watch_sees_expiry_and_deletion(cluster):
    a, b = keys_in(1, 2, "e", 2)
    cluster.call(1, "set", b, "v")
    cluster.call(1, "set", a, "v", "px", "3000")
    conn = Connection(cluster, 1)
    conn("watch", a)
    assert conn("exists", a) == 1
    cluster.run(3.5)
    conn("multi")
    conn("set", b, "new")
    assert conn("exec") is NULL_ARRAY
    conn("watch", b)
    cluster.call(3, "del", b)
    conn("multi")
    conn("set", b, "again")
    assert conn("exec") is NULL_ARRAY
    assert cluster.call(2, "exists", b) == 0


def test_a_pipelined_watch_follows_the_connections_own_writes(cluster):
    k, = keys_in(0, 1, "p", 2)
    conn = Connection(cluster, 3)
    pending = [conn.send(*argv) for argv in (
        ("set", k, "1"), ("watch", k), ("multi",), ("incr", k), ("exec",), ("get", k))]
    assert conn.replies(*pending) == [b"OK", b"OK", b"OK", b"QUEUED", [2], b"2"]


def test_keys_of_two_partitions_answer_crossslot(cluster):
    (a,), (b,) = keys_in(0, 1, "x", 2), keys_in(1, 1, "x", 2)
    conn = Connection(cluster, 1)
    conn("multi")
    assert conn("set", a, "1") == b"QUEUED"
    assert "CROSSSLOT" in error_text(conn("set", b, "1"))
    assert "EXECABORT" in error_text(conn("exec"))
    assert cluster.call(2, "exists", a) == 0
    assert "CROSSSLOT" in error_text(conn("watch", a, b))
    assert conn("watch", a) == b"OK"
    conn("multi")
    assert "CROSSSLOT" in error_text(conn("get", b))
    assert "EXECABORT" in error_text(conn("exec"))
    conn("multi")
    assert "ERR DBSIZE" in error_text(conn("dbsize"))
    assert "EXECABORT" in error_text(conn("exec"))


def test_hash_tags_put_a_transaction_in_one_partition(cluster):
    conn = Connection(cluster, 2)
    conn("multi")
    for i in range(10):
        assert conn("set", f"{{user:7}}:{i}", str(i)) == b"QUEUED"
    assert conn("exec") == [b"OK"] * 10
    assert cluster.call(3, "mget", *[f"{{user:7}}:{i}" for i in range(10)]) == [
        str(i).encode() for i in range(10)]


def test_watch_holds_across_a_leader_change(cluster):
    k, = keys_in(0, 1, "l", 2)
    cluster.call(1, "set", k, "v0")
    leader = cluster.leader_node(0)
    origin = next(i for i in (1, 2, 3) if i != leader)
    conn = Connection(cluster, origin)
    assert conn("watch", k) == b"OK"
    cluster.call(leader, "set", k, "v1")
    cluster.crash(leader)
    new_leader = cluster.wait_leader(0, among=[i for i in (1, 2, 3) if i != leader])
    assert new_leader is not None
    conn("multi")
    conn("set", k, "v2")
    assert conn("exec") is NULL_ARRAY
    assert cluster.call(origin, "get", k) == b"v1"


def test_an_open_multi_is_discarded_when_the_connection_closes(cluster):
    k, = keys_in(1, 1, "d", 2)
    conn = Connection(cluster, 1)
    conn("multi")
    conn("set", k, "1")
    cluster.nodes[1].dispatcher.connection_closed(conn.client)
    cluster.run(1.0)
    assert cluster.call(2, "exists", k) == 0


def test_commands_after_a_pipelined_exec_follow_it(cluster):
    k, = keys_in(1, 1, "q", 2)
    conn = Connection(cluster, 2)
    pending = [conn.send(*argv) for argv in (
        ("watch", k), ("multi",), ("incr", k), ("exec",), ("set", k, "100"), ("get", k))]
    assert conn.replies(*pending) == [b"OK", b"OK", b"QUEUED", [1], b"OK", b"100"]


def test_the_internal_commands_are_not_reachable_by_clients(cluster):
    conn = Connection(cluster, 1)
    assert "unknown command" in error_text(conn("zan.exec", "x"))
    assert "unknown command" in error_text(conn("zan.keydigest", "x"))


def test_a_write_too_big_for_one_entry_is_refused_whole(tmp_path):
    c = InProcessCluster(tmp_path, settings={"max_entry_bytes": 1 << 20})
    try:
        for node in c.nodes.values():
            node.dispatcher.server = SimpleNamespace(transactions=node.dispatcher.transactions)
        c.wait_leader(0)
        a, b = keys_in(0, 2, "big", 2)
        conn = Connection(c, 2)
        conn("multi")
        conn("set", a, "x" * 600_000)
        conn("set", b, "y" * 600_000)
        assert "more than max_entry_bytes (1048576)" in error_text(conn("exec"))
        assert c.call(1, "exists", a, b) == 0
        assert "max_entry_bytes" in error_text(c.call(3, "set", a, "z" * (1 << 20)))
        # The group goes on.
        assert c.call(3, "set", a, "x" * 600_000) == b"OK"
        assert c.call(1, "strlen", a) == 600_000
    finally:
        c.close()
