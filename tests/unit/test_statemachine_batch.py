"""`PartitionStateMachine.apply_many`: a run of entries written as one batch gives the
same replies and the same database as applying them one at a time."""

from __future__ import annotations

import random

import pytest

from zan.store.engine import LevelDBEngine
from zan.store.statemachine import PartitionStateMachine, encode_command_entry


def _entries(rng: random.Random, count: int) -> list[tuple[int, bytes]]:
    keys = [b"k%d" % i for i in range(6)]
    out = []
    for index in range(1, count + 1):
        k = rng.choice(keys)
        cmd = rng.choice([
            ("set", [k, b"v%d" % index]),
            ("incr", [k]),
            ("append", [k, b"x"]),
            ("del", [k]),
            ("rpush", [k, b"a", b"b", b"c"]),
            ("lpop", [k]),
            ("ltrim", [k, b"1", b"-1"]),
            ("sadd", [k, b"m%d" % rng.randrange(4)]),
            ("spop", [k]),
            ("hset", [k, b"f", b"v"]),
            ("zadd", [k, b"%d" % rng.randrange(9), b"m%d" % rng.randrange(4)]),
            ("zremrangebyrank", [k, b"0", b"1"]),
            ("pexpire", [k, b"1"]),
            ("set", [k, b"v", b"px", b"5"]),
        ])
        out.append((index, encode_command_entry(1_000 + index, index, *cmd)))
    out.insert(count // 2, (count // 2, b""))  # a replayed entry is skipped
    return out


def _dump(sm: PartitionStateMachine) -> list:
    return list(sm.engine.iterator())


@pytest.mark.parametrize("seed", range(8))
def test_one_batch_equals_one_by_one(tmp_path, seed):
    entries = _entries(random.Random(seed), 120)
    one = PartitionStateMachine(LevelDBEngine(str(tmp_path / "one")))
    many = PartitionStateMachine(LevelDBEngine(str(tmp_path / "many")))
    singly = [one.apply(index, data) for index, data in entries]
    batched = many.apply_many(entries[:40]) + many.apply_many(entries[40:])
    assert [repr(r) for r in batched] == [repr(r) for r in singly]
    assert _dump(many) == _dump(one)
    assert (many.applied_index, many.keys_count, many.expires_count) == \
        (one.applied_index, one.keys_count, one.expires_count)
    reopened = PartitionStateMachine(many.engine)
    assert reopened.applied_index == 120 and reopened.keys_count == one.keys_count


def test_noop_entries_advance_the_applied_index(tmp_path):
    sm = PartitionStateMachine(LevelDBEngine(str(tmp_path / "db")))
    assert sm.apply_many([(1, b""), (2, b"")]) == [None, None]
    assert PartitionStateMachine(sm.engine).applied_index == 2
    assert sm.apply_many([(1, b""), (2, b"")]) == [None, None]


@pytest.mark.parametrize("policy", ["wait_compact", "local_deletion"])
def test_get_read_without_txn_matches_the_handler(tmp_path, policy):
    from zan.commands.registry import REGISTRY
    from zan.errors import ZanError
    from zan.store.keyspace import KeyspaceOptions, Txn

    sm = PartitionStateMachine(LevelDBEngine(str(tmp_path / "db")),
                               KeyspaceOptions(expiration_policy=policy))
    sm.apply_many([
        (1, encode_command_entry(1000, 0, "set", [b"s", b"v"])),
        (2, encode_command_entry(1000, 0, "set", [b"t", b"v", b"px", b"100"])),
        (3, encode_command_entry(1000, 0, "rpush", [b"l", b"a"])),
        (4, encode_command_entry(1000, 0, "set", [b"e", b""])),
    ])

    def outcome(f):
        try:
            return f()
        except ZanError as e:
            return repr(e)
    for now in (1050, 1100, 5000):
        for key in (b"s", b"t", b"l", b"e", b"missing"):
            direct = outcome(lambda: sm.read("get", [key], now))
            handler = outcome(lambda: REGISTRY["get"].handler(
                Txn(sm.engine, now_ms=now, options=sm.options), [key]))
            assert direct == handler, (policy, now, key)


@pytest.mark.parametrize("seed", range(6))
def test_plain_set_shortcut_equals_the_handler(tmp_path, seed, monkeypatch):
    """Plain SET applies without a Txn when the key has no TTL; with the shortcut turned
    off, the same entries (SET over strings, collections, keys with a TTL, expired keys,
    keys of a batch's earlier entries) give the same replies and database."""
    from zan.commands.registry import REGISTRY

    rng = random.Random(seed)
    entries = _entries(rng, 150)
    extra = [("set", [b"k%d" % rng.randrange(6), b"w"]) for _ in range(60)]
    entries += [(200 + i, encode_command_entry(1_000 + 200 + i, i, *cmd))
                for i, cmd in enumerate(extra)]
    fast = PartitionStateMachine(LevelDBEngine(str(tmp_path / "fast")))
    fast_replies = fast.apply_many(entries[:70]) + fast.apply_many(entries[70:])
    monkeypatch.delitem(REGISTRY["set"].extra, "apply")
    slow = PartitionStateMachine(LevelDBEngine(str(tmp_path / "slow")))
    slow_replies = slow.apply_many(entries[:70]) + slow.apply_many(entries[70:])
    assert [repr(r) for r in fast_replies] == [repr(r) for r in slow_replies]
    assert _dump(fast) == _dump(slow)
    assert (fast.keys_count, fast.expires_count) == (slow.keys_count, slow.expires_count)


def test_plain_set_shortcut_refuses_what_the_handler_refuses(tmp_path):
    from zan.store import keyspace

    sm = PartitionStateMachine(LevelDBEngine(str(tmp_path / "db")))
    big = b"x" * (keyspace.MAX_VALUE + 1)
    reply = sm.apply(1, encode_command_entry(1_000, 0, "set", [b"k", big]))
    assert str(reply) == "ERR invalid value size"
    assert sm.keys_count == 0 and sm.applied_index == 1


def test_entry_naming_an_unknown_command_answers_an_error(tmp_path):
    """A log written by a node that knows more commands: the entry is applied (the index
    advances, every replica answers alike) and its reply is an error, not a failed apply."""
    from twisted.logger import Logger

    sm = PartitionStateMachine(LevelDBEngine(str(tmp_path / "db")))
    logged: list[dict] = []
    sm._log = Logger(observer=logged.append)
    replies = sm.apply_many([(1, encode_command_entry(1_000, 0, "nosuchcommand", [b"k"])),
                             (2, encode_command_entry(1_000, 0, "set", [b"k", b"v"]))])
    assert str(replies[0]) == "ERR internal error"
    assert [e["name"] for e in logged] == ["nosuchcommand"]
    assert replies[1] is not None and sm.applied_index == 2 and sm.keys_count == 1
