"""The standalone write path, deterministic: Clock instead of a reactor, a real WAL and
LevelDB in a temp dir."""

import random

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from zan.errors import RespError
from zan.node.config import NamespaceConfig
from zan.node.dispatch import NodeDispatcher
from zan.node.namespaces import KeyRouter
from zan.node.partition import GroupCommitter, LocalPartition
from zan.raft.wal import WalLogStore
from zan.resp.protocol import ClientState
from zan.store.engine import LevelDBEngine
from zan.store.statemachine import PartitionStateMachine


class Node:
    def __init__(self, path, partitions=4):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.path = path
        self.nparts = partitions
        self.open()

    def open(self):
        self.wal = WalLogStore(str(self.path / "wal"))
        self.committer = GroupCommitter(self.clock, self.wal)
        self.parts = {}
        for pid in range(self.nparts):
            sm = PartitionStateMachine(LevelDBEngine(str(self.path / f"default-{pid}")))
            self.parts[("default", pid)] = LocalPartition(
                "default", pid, sm, self.wal.group(pid + 1), self.committer, snap_count=50)
        router = KeyRouter({"default": NamespaceConfig("default", partition_num=self.nparts)},
                           "default")
        self.dispatcher = NodeDispatcher(self.clock, router, self, server=None,
                                         rng=random.Random(1))
        self.dispatcher.local_partitions = True   # as the standalone node sets it

    def partition(self, ns, pid):
        return self.parts.get((ns, pid))

    def partitions(self):
        return list(self.parts.values())

    def close(self, flush=True):
        if flush:
            self.committer.flush()
        self.committer.cancel()
        for p in self.parts.values():
            p.state_machine.engine.close()
        self.wal.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    try:
        n.close()
    except Exception:
        pass


def client(i=1):
    return ClientState(id=i, addr="test", created=0.0)


def run(node, c, *argv):
    return node.dispatcher.dispatch(c, [a.encode() if isinstance(a, str) else a for a in argv])


def test_write_replies_only_after_the_turns_sync(node):
    c = client()
    d = run(node, c, "set", "a", "1")
    assert isinstance(d, Deferred) and not d.called
    node.clock.advance(0)
    assert d.called and d.result == b"OK"
    assert node.committer.syncs == 1


def test_one_sync_for_all_writes_of_a_turn_across_partitions(node):
    ds = [run(node, client(i), "set", f"k{i}", str(i)) for i in range(100)]
    node.clock.advance(0)
    assert node.committer.syncs == 1
    assert all(d.result == b"OK" for d in ds)
    assert len({p.applied_index for p in node.partitions()}) > 1  # several partitions wrote


def test_reads_wait_for_the_connections_earlier_writes(node):
    c, other = client(1), client(2)
    w = run(node, c, "set", "k", "new")
    r = run(node, c, "get", "k")
    r_other = run(node, other, "get", "k")
    assert r_other is None                  # another connection: the write is not done yet
    assert isinstance(r, Deferred) and not r.called
    w2 = run(node, c, "set", "k", "newer")  # queued behind the read: order kept
    node.clock.advance(0)
    assert r.result == b"new"
    node.clock.advance(0)
    assert w.result == b"OK" and w2.result == b"OK"
    assert run(node, c, "get", "k") == b"newer"


def test_errors_and_arity(node):
    c = client()
    with pytest.raises(RespError, match="wrong number of arguments for 'get'"):
        run(node, c, "get")
    with pytest.raises(RespError, match="unknown command 'nope'"):
        run(node, c, "nope", "x")
    run(node, c, "set", "s", "v")
    d = run(node, c, "lpush", "s", "x")
    node.clock.advance(0)
    assert isinstance(d.result, RespError) and d.result.message.startswith("WRONGTYPE")


def test_multi_key_commands_split_by_partition_and_merge(node):
    c = client()
    d = run(node, c, "mset", *[x for i in range(20) for x in (f"k{i}", f"v{i}")])
    node.clock.advance(0)
    assert d.result == b"OK"
    assert run(node, c, "mget", "k3", "nope", "k17").result == [b"v3", None, b"v17"]
    d = run(node, c, "del", "k1", "k2", "nope", "k1")
    node.clock.advance(0)
    assert d.result == 2
    dbsize = run(node, c, "dbsize")
    assert dbsize.result == 18


def test_unsynced_writes_are_replayed_or_absent_after_crash(tmp_path):
    n = Node(tmp_path)
    c = client()
    acked = run(n, c, "set", "acked", "1")
    n.clock.advance(0)
    assert acked.result == b"OK"
    pending = run(n, c, "set", "pending", "1")   # never synced: the client has no reply
    assert not pending.called
    n.close(flush=False)
    n2 = Node(tmp_path)
    assert run(n2, client(), "get", "acked") == b"1"
    assert run(n2, client(), "get", "pending") is None
    n2.close()


def test_log_is_compacted_and_restart_keeps_data(tmp_path):
    n = Node(tmp_path, partitions=1)
    c = client()
    for i in range(200):
        run(n, c, "incr", "counter")
        n.clock.advance(0)
    log = n.wal.group(1)
    assert log.first_index() > 100             # compacted after snap_count (50) entries
    n.close()
    n2 = Node(tmp_path, partitions=1)
    assert run(n2, client(), "get", "counter") == b"200"
    n2.close()


def test_a_failed_sync_fails_the_writes_it_covered_and_refuses_more(node, monkeypatch):
    """Nothing is acknowledged that the log did not make durable: the writes of a failed
    sync get an error, are not applied, and the partitions refuse writes from then on."""
    from twisted.logger import Logger

    from zan.errors import Stopping, StorageError

    logged: list[dict] = []
    node.committer._log = Logger(observer=logged.append)
    c = client()
    run(node, c, "set", "kept", "1")
    node.clock.advance(0)

    def broken_sync():
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(node.wal, "sync", broken_sync)
    d = run(node, c, "set", "lost", "2")
    failures = []
    d.addErrback(failures.append)
    node.clock.advance(0)
    assert failures and failures[0].check(StorageError)
    assert [e["log_failure"].check(OSError) for e in logged] == [OSError]
    assert "could not be synced" in failures[0].getErrorMessage()
    assert run(node, client(2), "get", "lost") is None
    assert run(node, client(2), "get", "kept") == b"1"
    with pytest.raises(Stopping):
        run(node, client(2), "set", "lost", "3")
    monkeypatch.undo()


def test_a_read_waits_for_every_unfinished_write_of_a_long_write_run(node):
    c = client()
    for i in range(100):
        run(node, c, "set", f"k{i % 7}", str(i))
    r = run(node, c, "get", "k1")              # 99 % 7 == 1: the last write of k1
    assert isinstance(r, Deferred) and not r.called
    node.clock.advance(0)
    node.clock.advance(0)
    assert r.result == b"99"
    for i in range(70):                         # finished writes are forgotten
        run(node, c, "set", "k", str(i))
        node.clock.advance(0)
    last = run(node, c, "set", "k", "last")
    r = run(node, c, "get", "k")
    assert not r.called                         # waits for the one still unfinished
    node.clock.advance(0)
    node.clock.advance(0)
    assert last.result == b"OK" and r.result == b"last"
    assert run(node, c, "get", "k") == b"last"  # nothing pending: answered at once


def test_get_reads_a_local_partition_directly_in_connection_order(node):
    """GET on a standalone node reads the partition's database without a Txn, after the
    connection's earlier writes, with GET's replies and errors."""
    c = client()
    d = run(node, c, "set", "k", "v")
    get = run(node, c, "get", "k")           # waits for the SET before it
    assert isinstance(get, Deferred) and not get.called
    node.clock.advance(0)
    assert d.result == b"OK" and get.result == b"v"
    assert run(node, c, "get", "k") == b"v"  # nothing pending: answered at once
    assert run(node, c, "get", "missing") is None
    run(node, c, "hset", "h", "f", "v")
    run(node, c, "set", "t", "v", "px", "100")
    node.clock.advance(0)
    with pytest.raises(RespError, match="WRONGTYPE"):
        run(node, c, "get", "h")
    assert run(node, c, "get", "t") == b"v"
    node.clock.advance(0.2)
    assert run(node, c, "get", "t") is None   # expired: gone for readers at once
    with pytest.raises(RespError, match="invalid key size"):
        run(node, c, "get", b"x" * 10241)
