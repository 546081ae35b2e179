"""EVAL on the in-process standalone node: a script's writes over several partitions are
one log record (each partition gets its share), it sees and follows earlier writes, a
crash before the sync loses all of them (`test_scripts_replicated` has a replicated
node's scripts)."""

from twisted.internet.defer import Deferred

from tests.unit.test_node_dispatch import Node, client, run
from tests.unit.test_standalone_across import keys_in_distinct_partitions, settle
from zan.errors import RespError
from zan.resp.types import NULL_ARRAY
from zan.node.namespaces import partition_of
from zan.store.statemachine import ENTRY_EFFECTS, decode_entry

import pytest
from types import SimpleNamespace

WRITE_ALL = b"for i, k in ipairs(KEYS) do redis.call('set', k, ARGV[i]) end " \
            b"return redis.call('mget', unpack(KEYS))"


def with_server(n):
    """The node-level context SERVER commands reach (the harness has none)."""
    d = n.dispatcher
    d.server = SimpleNamespace(scripts=d.scripts, transactions=d.transactions,
                               redis_version="7.0.0")
    return n


@pytest.fixture
def node(tmp_path):  # noqa: F811 (the harness's node, with a server context)
    n = with_server(Node(tmp_path))
    yield n
    try:
        n.close()
    except Exception:
        pass


def spy_atomic(node):
    records = []
    real = node.wal.append_atomic

    def append_atomic(parts):
        records.append(sorted(gid for gid, _ in parts))
        return real(parts)
    node.wal.append_atomic = append_atomic
    return records


def test_a_script_writing_several_partitions_is_one_log_record(node):
    keys = keys_in_distinct_partitions(4, 4)
    records = spy_atomic(node)
    reply = settle(node, run(node, client(), "eval", WRITE_ALL, "4", *keys, "1", "2", "3", "4"))
    assert reply == [b"1", b"2", b"3", b"4"]
    assert records == [[partition_of(k.encode(), 4) + 1 for k in sorted(
        keys, key=lambda k: partition_of(k.encode(), 4))]]
    for key in keys:
        log = node.wal.group(partition_of(key.encode(), 4) + 1)
        (kind, *_), = [decode_entry(e.data) for e in
                       log.entries(log.last_index(), log.last_index() + 1)]
        assert kind == ENTRY_EFFECTS
    assert settle(node, run(node, client(), "mget", *keys)) == [b"1", b"2", b"3", b"4"]
    assert settle(node, run(node, client(), "dbsize")) == 4


def test_a_script_reads_its_own_writes_and_undeclared_keys(node):
    a, b = keys_in_distinct_partitions(4, 2)
    body = b"redis.call('rpush', KEYS[1], 'x', 'y') redis.call('incrby', ARGV[1], 5) " \
           b"return {redis.call('lrange', KEYS[1], 0, -1), redis.call('get', ARGV[1])}"
    assert settle(node, run(node, client(), "eval", body, "1", a, b)) == [[b"x", b"y"], b"5"]


def test_a_script_follows_the_connections_pending_writes(node):
    a, b = keys_in_distinct_partitions(4, 2)
    c = client()
    first = run(node, c, "set", a, "first")
    assert isinstance(first, Deferred) and not first.called
    reply = run(node, c, "eval", b"redis.call('set', KEYS[2], redis.call('get', KEYS[1])) "
                                 b"return redis.call('get', KEYS[2])", "2", a, b)
    assert settle(node, reply) == b"first"
    assert first.result == b"OK"


def test_a_failing_script_keeps_the_writes_before_the_error(node):
    a, b = keys_in_distinct_partitions(4, 2)
    reply = settle(node, run(node, client(), "eval",
                             b"redis.call('set', KEYS[1], 'v') redis.call('lpush', KEYS[1], 'x')",
                             "1", a))
    assert isinstance(reply, RespError) and reply.resp_message().startswith("WRONGTYPE")
    assert settle(node, run(node, client(), "get", a)) == b"v"


def test_a_read_only_script_writes_nothing_and_proposes_nothing(node):
    records = spy_atomic(node)
    reply = run(node, client(), "eval", b"return redis.call('get', KEYS[1])", "1", "k")
    assert reply is None and records == []


def test_a_crash_before_the_sync_loses_every_write_of_the_script(tmp_path):
    n = with_server(Node(tmp_path))
    a, b = keys_in_distinct_partitions(4, 2)
    pending = run(n, client(), "eval", WRITE_ALL, "2", a, b, "1", "2")
    assert isinstance(pending, Deferred) and not pending.called
    n.close(flush=False)
    n2 = with_server(Node(tmp_path))
    assert settle(n2, run(n2, client(), "mget", a, b)) == [None, None]
    assert settle(n2, run(n2, client(), "eval", WRITE_ALL, "2", a, b, "1", "2")) == [b"1", b"2"]
    n2.close()
    n3 = with_server(Node(tmp_path))
    assert settle(n3, run(n3, client(), "mget", a, b)) == [b"1", b"2"]
    n3.close()


def test_the_script_cache_is_per_node_and_volatile(tmp_path):
    n = with_server(Node(tmp_path))
    sha = run(n, client(), "script", "load", "return 1")
    assert run(n, client(), "evalsha", sha, "0") == 1
    n.close()
    n2 = with_server(Node(tmp_path))
    with pytest.raises(RespError, match="^NOSCRIPT"):
        run(n2, client(), "evalsha", sha, "0")
    n2.close()


def test_a_python_failure_inside_a_call_is_an_error_reply(node, monkeypatch):
    from zan.commands import table
    spec = table.REGISTRY["get"]

    def broken(txn, args):
        raise KeyError("boom")
    monkeypatch.setitem(table.REGISTRY, "get", spec.__class__(**{
        **{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "handler": broken}))
    reply = run(node, client(), "eval", b"return redis.pcall('get', 'k')", "0")
    assert isinstance(reply, RespError) and "internal error" in reply.resp_message()


def test_a_script_writing_a_watched_key_aborts_exec(node):
    watcher, writer = client(1), client(2)
    assert settle(node, run(node, watcher, "watch", "w")) == b"OK"
    assert settle(node, run(node, writer, "eval", "redis.call('set', KEYS[1], 'x')", "1", "w")) \
        is None
    run(node, watcher, "multi")
    run(node, watcher, "set", "w", "mine")
    assert settle(node, run(node, watcher, "exec")) is NULL_ARRAY
    assert settle(node, run(node, writer, "get", "w")) == b"x"


def test_a_script_inside_exec_is_part_of_its_record(node):
    a, b = keys_in_distinct_partitions(4, 2)
    records = spy_atomic(node)
    c = client()
    run(node, c, "multi")
    run(node, c, "set", a, "1")
    run(node, c, "eval", "return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])",
        "2", a, b)
    assert settle(node, run(node, c, "exec")) == [b"OK", 3]
    assert len(records) == 1
    assert settle(node, run(node, c, "mget", a, b)) == [b"2", b"1"]
