"""Commands whose keys lie in several partitions of a standalone node run as one: a write
is one log record giving every partition its share (all of it survives a crash or none
of it), and it sees and follows every earlier write."""

import shutil

from twisted.internet.defer import Deferred

from tests.unit.test_node_dispatch import Node, client, node, run  # noqa: F401 (fixture)
from zan.errors import RespError
from zan.resp.types import NULL_ARRAY
from zan.node.namespaces import partition_of
from zan.store.statemachine import ENTRY_EFFECTS, decode_entry

import pytest


def keys_in_distinct_partitions(n, count=4, prefix="k"):
    """`count` keys, each in another partition (of `n`)."""
    out, seen, i = [], set(), 0
    while len(out) < count:
        key = f"{prefix}{i}"
        pid = partition_of(key.encode(), n)
        if pid not in seen:
            seen.add(pid)
            out.append(key)
        i += 1
    return out


def settle(node, reply):
    """The reply, once the turn's sync has run (a write answered at once is a value)."""
    if not isinstance(reply, Deferred):
        return reply
    node.clock.advance(0)
    assert reply.called
    return reply.result


def test_mset_across_partitions_is_one_share_per_partition(node):
    a, b, c, d = keys_in_distinct_partitions(4)
    assert settle(node, run(node, client(), "mset", a, "1", b, "2", c, "3", d, "4")) == b"OK"
    for key in (a, b, c, d):
        pid = partition_of(key.encode(), 4)
        log = node.wal.group(pid + 1)
        (kind, *_), = [decode_entry(e.data) for e in log.entries(log.last_index(), log.last_index() + 1)]
        assert kind == ENTRY_EFFECTS
    assert settle(node, run(node, client(), "mget", a, b, c, d)) == [b"1", b"2", b"3", b"4"]
    assert settle(node, run(node, client(), "dbsize")) == 4


def test_msetnx_across_partitions_sets_all_or_nothing(node):
    a, b, c = keys_in_distinct_partitions(4, 3)
    assert settle(node, run(node, client(), "set", c, "old")) == b"OK"
    assert settle(node, run(node, client(), "msetnx", a, "1", b, "2", c, "3")) == 0
    assert settle(node, run(node, client(), "mget", a, b, c)) == [None, None, b"old"]
    assert settle(node, run(node, client(), "msetnx", a, "1", b, "2")) == 1
    assert settle(node, run(node, client(), "mget", a, b, c)) == [b"1", b"2", b"old"]


def test_del_across_partitions_counts_every_key_and_keeps_dbsize(node):
    keys = keys_in_distinct_partitions(4, 4)
    settle(node, run(node, client(), "mset", *[x for k in keys for x in (k, "v")]))
    settle(node, run(node, client(), "sadd", "aset", "m"))
    assert settle(node, run(node, client(), "del", *keys, "nope")) == 4
    assert settle(node, run(node, client(), "dbsize")) == 1
    assert settle(node, run(node, client(), "unlink", "aset", keys[0])) == 1
    assert settle(node, run(node, client(), "dbsize")) == 0


def test_a_write_across_partitions_follows_the_writes_before_it(node):
    a, b = keys_in_distinct_partitions(4, 2)
    c = client()
    first = run(node, c, "set", a, "first")        # still pending in this turn
    both = run(node, c, "mset", a, "second", b, "x")
    later = run(node, c, "set", b, "later")
    node.clock.advance(0)
    node.clock.advance(0)
    assert first.result == b"OK" and both.result == b"OK" and later.result == b"OK"
    assert settle(node, run(node, client(2), "mget", a, b)) == [b"second", b"later"]


def test_commands_whose_keys_must_share_a_partition_run_across_them(node):
    x, y, dst, other = keys_in_distinct_partitions(4, 4, "s")
    c = client()
    settle(node, run(node, c, "sadd", x, "1", "2", "3"))
    settle(node, run(node, c, "sadd", y, "2", "3", "4"))
    assert sorted(settle(node, run(node, c, "sinter", x, y))) == [b"2", b"3"]
    assert settle(node, run(node, c, "sinterstore", dst, x, y)) == 2
    assert sorted(settle(node, run(node, c, "smembers", dst))) == [b"2", b"3"]
    assert settle(node, run(node, c, "smove", x, other, "1")) == 1
    assert settle(node, run(node, c, "smembers", other)) == [b"1"]
    assert sorted(settle(node, run(node, c, "smembers", x))) == [b"2", b"3"]
    settle(node, run(node, c, "set", x + "str", "v"))
    # A runtime error changes nothing anywhere.
    with pytest.raises(RespError, match="^WRONGTYPE"):
        run(node, c, "sinterstore", dst, x, x + "str")
    assert sorted(settle(node, run(node, c, "smembers", dst))) == [b"2", b"3"]


def test_a_crash_before_the_sync_loses_every_share(tmp_path):
    n = Node(tmp_path)
    a, b = keys_in_distinct_partitions(4, 2)
    pending = run(n, client(), "mset", a, "1", b, "2")
    assert not pending.called
    n.close(flush=False)
    n2 = Node(tmp_path)
    assert settle(n2, run(n2, client(), "mget", a, b)) == [None, None]
    n2.close()


def test_shares_are_replayed_from_the_log_into_a_database_that_lost_them(tmp_path):
    n = Node(tmp_path)
    a, b = keys_in_distinct_partitions(4, 2)
    assert settle(n, run(n, client(), "mset", a, "1", b, "2")) == b"OK"
    assert settle(n, run(n, client(), "sadd", a + "set", "m")) == 1
    n.close()
    # One partition's database is gone; its log still has every entry (none compacted).
    pid = partition_of(a.encode(), 4)
    shutil.rmtree(tmp_path / f"default-{pid}")
    n2 = Node(tmp_path)
    assert settle(n2, run(n2, client(), "mget", a, b)) == [b"1", b"2"]
    assert settle(n2, run(n2, client(), "dbsize")) == 3
    n2.close()


def _with_transactions(node):
    from types import SimpleNamespace
    node.dispatcher.server = SimpleNamespace(transactions=node.dispatcher.transactions)


def _transaction(node, c, *commands):
    assert run(node, c, "multi") == b"OK"
    for argv in commands:
        assert run(node, c, *argv) == b"QUEUED"
    return run(node, c, "exec")


def test_transactions_of_one_turn_build_on_each_other_without_extra_syncs(node):
    """Two EXECs over the same partitions in one turn: the second reads the first's
    changes before they are applied, and both share the turn's one sync."""
    _with_transactions(node)
    a, b = keys_in_distinct_partitions(4, 2)
    first = _transaction(node, client(1), ("incr", a), ("incr", b), ("dbsize",))
    second = _transaction(node, client(2), ("incr", a), ("incr", b), ("dbsize",))
    syncs = node.committer.syncs
    node.clock.advance(0)
    assert first.result == [1, 1, 2] and second.result == [2, 2, 2]
    assert node.committer.syncs == syncs + 1
    assert settle(node, run(node, client(), "mget", a, b)) == [b"2", b"2"]


def test_a_watched_key_changed_by_an_unapplied_transaction_aborts_exec(node):
    _with_transactions(node)
    a, b = keys_in_distinct_partitions(4, 2)
    watcher, other = client(1), client(2)
    assert run(node, watcher, "watch", a) == b"OK"
    pending = _transaction(node, other, ("set", a, "theirs"), ("set", b, "x"))
    assert not pending.called
    mine = _transaction(node, watcher, ("set", a, "mine"))
    node.clock.advance(0)
    assert pending.result == [b"OK", b"OK"]
    assert settle(node, mine) is NULL_ARRAY
    assert settle(node, run(node, client(), "get", a)) == b"theirs"


def test_a_command_pending_under_a_transaction_is_settled_first(node):
    _with_transactions(node)
    a, b = keys_in_distinct_partitions(4, 2)
    set_first = run(node, client(1), "set", a, "5")
    both = _transaction(node, client(2), ("incr", a), ("incr", b))
    assert set_first.called                 # the transaction settled its partition
    node.clock.advance(0)
    assert both.result == [6, 1]
