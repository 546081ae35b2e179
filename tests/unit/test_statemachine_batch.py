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
