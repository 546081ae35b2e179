"""The linearizability checker on hand-made histories and on simulated ones, intact and mutated."""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading

import pytest

from tests.support.linearizability import FAIL, OK, UNKNOWN, History, Operation, check


def rec(h: History, client, kind, start, end, out=None, *, key="k", value=None,
        expected=None, outcome=OK) -> int:
    """Record one operation over [start, end] with an explicit outcome."""
    op_id = h.invoke(client, key, kind, value, expected, at=start)
    if outcome == OK:
        h.ok(op_id, out, at=end)
    elif outcome == FAIL:
        h.fail(op_id, at=end)
    elif outcome == UNKNOWN:
        h.unknown(op_id, at=end)
    return op_id


def linearizable(h) -> bool:
    result = check(h, timeout_s=10)
    assert not result.timed_out
    if not result.ok:
        assert result.explanation
    return result.ok


# -- recorder ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_recorder_uses_injected_clock_and_numbers_ops():
    h = History(clock=FakeClock())
    a = h.invoke("c1", "k", "write", b"x")
    b = h.invoke("c2", "k", "read")
    h.ok(a, b"OK")
    h.unknown(b)
    assert (a, b) == (0, 1)
    first, second = h.ops
    assert (first.invoke, first.complete, first.outcome) == (1.0, 3.0, OK)
    assert (second.invoke, second.complete, second.outcome) == (2.0, None, UNKNOWN)
    assert len(h) == 2


def test_recorder_rejects_double_completion_and_bad_kinds():
    h = History(clock=FakeClock())
    a = h.invoke("c", "k", "read")
    h.ok(a, None)
    with pytest.raises(ValueError):
        h.fail(a)
    with pytest.raises(ValueError):
        h.invoke("c", "k", "append", b"x")
    with pytest.raises(ValueError):
        h.invoke("c", "k", "cas", b"new")   # no expected value


def test_pending_ops_count_as_unknown():
    h = History()
    h.invoke("c1", "k", "write", b"1", at=0)          # never completed
    rec(h, "c2", "read", 5, 6, b"1")
    assert h.ops[0].outcome == UNKNOWN
    assert linearizable(h)


def test_recorder_from_threads():
    h = History()
    register_lock = threading.Lock()
    register = {}

    def client(n: int) -> None:
        for i in range(200):
            if i % 3 == 0:
                op = h.invoke(n, "k", "write", f"{n}-{i}")
                with register_lock:
                    register["k"] = f"{n}-{i}"
                h.ok(op, b"OK")
            else:
                op = h.invoke(n, "k", "read")
                with register_lock:
                    seen = register.get("k")
                h.ok(op, seen)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(h) == 800
    assert linearizable(h)


# -- hand-made histories: linearizable -----------------------------------------------------

def test_empty_history():
    assert check(History()).ok


def test_read_of_missing_key_is_none():
    h = History()
    rec(h, 1, "read", 0, 1, None)
    assert linearizable(h)
    h2 = History()
    rec(h2, 1, "read", 0, 1, b"x")
    assert not linearizable(h2)


def test_concurrent_writes_reads_may_see_either():
    h = History()
    rec(h, 1, "write", 0, 10, value=b"a")
    rec(h, 2, "write", 0, 10, value=b"b")
    rec(h, 3, "read", 1, 11, b"a")
    rec(h, 4, "read", 1, 11, b"b")
    rec(h, 3, "read", 12, 13, b"b")
    assert linearizable(h)
    # Once b was seen after both writes finished, a can never come back.
    rec(h, 4, "read", 14, 15, b"a")
    assert not linearizable(h)


def test_unknown_write_that_took_effect():
    h = History()
    rec(h, 1, "write", 0, None, value=b"a", outcome=UNKNOWN)
    rec(h, 2, "read", 5, 6, b"a")
    assert linearizable(h)


def test_unknown_write_that_never_took_effect():
    h = History()
    rec(h, 1, "write", 0, None, value=b"a", outcome=UNKNOWN)
    rec(h, 2, "read", 5, 6, None)
    rec(h, 2, "read", 7, 8, None)
    assert linearizable(h)


def test_unknown_write_may_take_effect_late():
    h = History()
    rec(h, 1, "write", 0, None, value=b"a", outcome=UNKNOWN)
    rec(h, 2, "read", 5, 6, None)
    rec(h, 2, "write", 7, 8, value=b"b")
    rec(h, 2, "read", 9, 10, b"b")
    rec(h, 2, "read", 100, 101, b"a")
    assert linearizable(h)
    # ...but only once.
    rec(h, 3, "read", 102, 103, b"b")
    assert not linearizable(h)


def test_unknown_write_cannot_act_before_invocation():
    h = History()
    rec(h, 2, "read", 0, 1, b"a")
    rec(h, 1, "write", 2, None, value=b"a", outcome=UNKNOWN)
    assert not linearizable(h)


def test_failed_ops_have_no_effect():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a", outcome=FAIL)
    rec(h, 2, "read", 2, 3, None)
    assert linearizable(h)
    rec(h, 2, "read", 4, 5, b"a")
    assert not linearizable(h)


def test_overlapping_cas_only_one_wins_from_the_same_value():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 1, "cas", 2, 5, 1, expected=b"a", value=b"b")
    rec(h, 2, "cas", 2, 5, 0, expected=b"a", value=b"c")
    rec(h, 3, "read", 6, 7, b"b")
    assert linearizable(h)

    both = History()
    rec(both, 1, "write", 0, 1, value=b"a")
    rec(both, 1, "cas", 2, 5, 1, expected=b"a", value=b"b")
    rec(both, 2, "cas", 2, 5, 1, expected=b"a", value=b"c")
    assert not linearizable(both)


def test_overlapping_cas_chain():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 2, "cas", 2, 5, 1, expected=b"b", value=b"c")   # must be ordered second
    rec(h, 1, "cas", 2, 5, 1, expected=b"a", value=b"b")
    rec(h, 3, "read", 3, 4, b"b")
    rec(h, 3, "read", 6, 7, b"c")
    assert linearizable(h)


def test_cas_on_missing_key_fails():
    h = History()
    rec(h, 1, "cas", 0, 1, 1, expected=b"a", value=b"b")
    assert not linearizable(h)
    h2 = History()
    rec(h2, 1, "cas", 0, 1, 0, expected=b"a", value=b"b")
    rec(h2, 1, "read", 2, 3, None)
    assert linearizable(h2)


def test_unknown_cas_swaps_only_when_it_matches():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 2, "cas", 2, None, expected=b"z", value=b"b", outcome=UNKNOWN)
    rec(h, 1, "read", 3, 4, b"b")
    assert not linearizable(h)


def test_delete_outputs_count():
    h = History()
    rec(h, 1, "delete", 0, 1, 0)
    rec(h, 1, "write", 2, 3, value=b"a")
    rec(h, 1, "delete", 4, 5, 1)
    rec(h, 1, "read", 6, 7, None)
    rec(h, 1, "delete", 8, 9, None)       # output unchecked
    assert linearizable(h)
    bad = History()
    rec(bad, 1, "write", 0, 1, value=b"a")
    rec(bad, 1, "delete", 2, 3, 0)
    assert not linearizable(bad)


def test_incr_semantics_match_redis_strings():
    h = History()
    rec(h, 1, "incr", 0, 1, 1)                       # missing counts as 0
    rec(h, 1, "write", 2, 3, value=5)                # ints are stored as their decimal text
    rec(h, 1, "incr", 4, 5, 6)
    rec(h, 1, "read", 6, 7, b"6")
    rec(h, 1, "incr", 8, 9, 16, value=10)            # INCRBY 10
    rec(h, 1, "read", 10, 11, "16")                  # str output compares as UTF-8
    assert linearizable(h)


def test_acknowledged_incr_on_non_integer_is_impossible():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"abc")
    rec(h, 1, "incr", 2, 3, 1)
    assert not linearizable(h)
    h2 = History()
    rec(h2, 1, "write", 0, 1, value=b"007")           # leading zeros: not an integer to Redis
    rec(h2, 1, "incr", 2, None, outcome=UNKNOWN)
    rec(h2, 1, "read", 4, 5, b"007")
    assert linearizable(h2)


def test_touching_intervals_count_as_concurrent():
    h = History()
    rec(h, 1, "write", 0, 2, value=b"a")
    rec(h, 2, "read", 2, 3, None)
    assert linearizable(h)


# -- hand-made histories: not linearizable -------------------------------------------------

def test_stale_read_after_completed_write():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 1, "write", 2, 3, value=b"b")
    stale = rec(h, 2, "read", 4, 5, b"a")
    result = check(h)
    assert not result.ok and not result.timed_out
    assert result.key == "k"
    assert result.ops[0] == stale
    assert f"#{stale} client 2: read → b'a'" in result.explanation


def test_read_of_value_never_written():
    h = History()
    rec(h, 1, "write", 0, 10, value=b"a")
    rec(h, 2, "read", 1, 2, None)
    ghost = rec(h, 2, "read", 3, 4, b"zzz")
    rec(h, 2, "read", 5, 6, b"a")
    result = check(h)
    assert not result.ok
    assert result.ops[0] == ghost


def test_two_reads_see_values_in_contradicting_orders():
    h = History()
    rec(h, 1, "write", 0, 10, value=b"a")
    rec(h, 2, "write", 0, 10, value=b"b")
    rec(h, 3, "read", 1, 2, b"a")
    rec(h, 3, "read", 3, 4, b"b")
    rec(h, 4, "read", 1, 2, b"b")
    rec(h, 4, "read", 3, 4, b"a")
    assert not linearizable(h)


def test_lost_acknowledged_write():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 1, "read", 2, 3, b"a")
    rec(h, 2, "write", 4, 5, value=b"b")     # acknowledged...
    lost = rec(h, 3, "read", 6, 7, b"a")     # ...then gone
    result = check(h)
    assert not result.ok
    assert result.ops[0] == lost


def test_duplicated_incr_outputs():
    h = History()
    rec(h, 1, "incr", 0, 2, 1)
    rec(h, 2, "incr", 1, 3, 1)
    result = check(h)
    assert not result.ok
    h2 = History()
    rec(h2, 1, "incr", 0, 2, 1)
    rec(h2, 2, "incr", 1, 3, 2)
    assert linearizable(h2)


def test_keys_are_checked_independently():
    h = History()
    rec(h, 1, "write", 0, 1, key="x", value=b"a")
    rec(h, 1, "write", 0, 1, key=b"y", value=b"b")
    rec(h, 2, "read", 2, 3, b"a", key="x")
    rec(h, 2, "read", 2, 3, None, key=b"z")
    rec(h, 2, "read", 4, 5, b"a", key=b"y")      # a belongs to x, not y
    result = check(h)
    assert not result.ok
    assert result.key == b"y"


def test_smallest_prefix_names_the_first_unexplainable_completion():
    h = History()
    rec(h, 1, "write", 0, 1, value=b"a")
    rec(h, 1, "write", 2, 3, value=b"b")
    first_bad = rec(h, 2, "read", 4, 5, b"a")
    for i in range(20):
        rec(h, 1, "write", 6 + 2 * i, 7 + 2 * i, value=f"v{i}")
        rec(h, 2, "read", 6 + 2 * i, 7 + 2 * i, f"v{i}")
    rec(h, 2, "read", 100, 101, b"nope")
    result = check(h)
    assert result.ops[0] == first_bad


def test_timeout_reports_timed_out_instead_of_hanging():
    h = History()
    # Twenty unknown writes, all concurrent, and a read nothing wrote: refuting it means
    # trying every subset of the writes.
    for i in range(20):
        rec(h, i, "write", 0, None, value=f"w{i}", outcome=UNKNOWN)
    rec(h, 99, "read", 1, 2, b"never")
    rec(h, 98, "write", 0, 1, key="other", value=b"x")
    result = check(h, timeout_s=5, clock=FakeClock())
    assert result.timed_out
    assert not result.ok
    assert result.key == "k"


# -- simulated histories -------------------------------------------------------------------

def simulate(rng: random.Random, n_ops: int, clients: int, keys: list, *,
             counters: frozenset = frozenset(), p_unknown: float = 0.03,
             p_fail: float = 0.02, overlap: float = 1.5, incr_only: bool = False) -> list[Operation]:
    """A history whose operations take effect one by one at increasing instants.

    Each operation takes effect at its own instant inside [invoke, complete], computed by a
    plain dict model, so the result is linearizable by construction.  Registers get unique
    values; counters get INCR.
    """
    h = History()
    store: dict = {}
    free = [0.0] * clients
    now = 0.0
    fresh = itertools.count()
    written: list = []
    for _ in range(n_ops):
        now += rng.uniform(0.01, 0.5)
        idle = [c for c in range(clients) if free[c] < now]
        if not idle:
            now = min(free) + 0.01
            idle = [c for c in range(clients) if free[c] < now]
        client = rng.choice(idle)
        start = rng.uniform(max(free[client], now - overlap), now)
        end = now + rng.uniform(0, overlap)
        free[client] = end
        key = rng.choice(keys)
        current = store.get(key)
        if key in counters:
            kind = "incr" if incr_only else rng.choices(
                ["incr", "read", "write", "delete"], [6, 3, 1, 1])[0]
        else:
            kind = rng.choices(["read", "write", "cas", "delete"], [4, 3, 3, 1])[0]
        value = expected = None
        if kind == "write":
            value = str(rng.randrange(100)).encode() if key in counters else f"v{next(fresh)}".encode()
        elif kind == "cas":
            expected = (current if current is not None and rng.random() < 0.7
                        else rng.choice(written) if written else b"v-none")
            value = f"v{next(fresh)}".encode()
        elif kind == "incr" and rng.random() < 0.2:
            value = rng.randrange(1, 5)

        roll = rng.random()
        outcome = FAIL if roll < p_fail else UNKNOWN if roll < p_fail + p_unknown else OK
        applies = outcome == OK or (outcome == UNKNOWN and rng.random() < 0.5)
        output = None
        if kind == "read":
            output = current
        elif kind == "write":
            if applies:
                store[key] = value
            written.append(value)
        elif kind == "cas":
            output = int(current is not None and current == expected)
            if applies and output:
                store[key] = value
        elif kind == "delete":
            output = int(current is not None)
            if applies:
                store.pop(key, None)
        else:
            output = int(current or 0) + (value or 1)
            if applies:
                store[key] = str(output).encode()
        rec(h, client, kind, start, end, output, key=key, value=value,
            expected=expected, outcome=outcome)
    return h.ops


@pytest.mark.parametrize("seed", range(30))
def test_simulated_histories_are_linearizable(seed):
    rng = random.Random(seed)
    ops = simulate(rng, 150, rng.randint(2, 5), ["r1", "r2", "c1"], counters=frozenset({"c1"}))
    result = check(ops, timeout_s=10)
    assert result.ok, result.explanation


def _writes_value(op: Operation) -> bool:
    return op.outcome == OK and (op.kind == "write" or (op.kind == "cas" and op.output == 1))


def _before(a: Operation, b: Operation) -> bool:
    return a.complete is not None and a.complete < b.invoke


def _ordered_writer_pairs(ops: list[Operation]):
    writers = [op for op in ops if _writes_value(op)]
    for a in writers:
        for b in writers:
            if a.key == b.key and _before(a, b):
                yield a, b


def _mutated(ops: list[Operation], op: Operation, **changes) -> list[Operation]:
    return [dataclasses.replace(o, **changes) if o.id == op.id else o for o in ops]


def _register_history(seed: int) -> list[Operation]:
    rng = random.Random(1000 + seed)
    ops = simulate(rng, 120, rng.randint(2, 4), ["r1", "r2"], p_unknown=0.05, overlap=1.0)
    assert check(ops).ok
    return ops


@pytest.mark.parametrize("seed", range(10))
def test_mutation_read_of_unwritten_value_is_detected(seed):
    ops = _register_history(seed)
    rng = random.Random(seed)
    reads = [op for op in ops if op.kind == "read" and op.outcome == OK]
    victim = rng.choice(reads)
    result = check(_mutated(ops, victim, output=b"never-written"), timeout_s=10)
    assert not result.ok and not result.timed_out
    assert result.key == victim.key


@pytest.mark.parametrize("seed", range(10))
def test_mutation_stale_read_is_detected(seed):
    ops = _register_history(seed)
    rng = random.Random(seed)
    candidates = [(a, r) for a, b in _ordered_writer_pairs(ops) for r in ops
                  if r.kind == "read" and r.outcome == OK and r.key == a.key and _before(b, r)]
    assert candidates
    old, read = rng.choice(candidates)
    result = check(_mutated(ops, read, output=old.value), timeout_s=10)
    assert not result.ok and not result.timed_out
    assert result.key == read.key


@pytest.mark.parametrize("seed", range(10))
def test_mutation_reads_in_contradicting_order_are_detected(seed):
    ops = _register_history(seed)
    rng = random.Random(seed)
    pairs = list(_ordered_writer_pairs(ops))
    reads = [op for op in ops if op.kind == "read" and op.outcome == OK]
    candidates = [(a, b, r1, r2) for a, b in pairs for r1 in reads for r2 in reads
                  if r1.key == r2.key == a.key and _before(r1, r2)]
    assert candidates
    a, b, r1, r2 = rng.choice(candidates)
    mutated = _mutated(_mutated(ops, r1, output=b.value), r2, output=a.value)
    result = check(mutated, timeout_s=10)
    assert not result.ok and not result.timed_out


@pytest.mark.parametrize("seed", range(10))
def test_mutation_duplicated_incr_output_is_detected(seed):
    rng = random.Random(2000 + seed)
    ops = simulate(rng, 80, 3, ["c"], counters=frozenset({"c"}), incr_only=True,
                   p_unknown=0, p_fail=0)
    assert check(ops).ok
    a, b = rng.sample([op for op in ops if op.value is None], 2)
    result = check(_mutated(ops, b, output=a.output), timeout_s=10)
    assert not result.ok and not result.timed_out


def test_three_clients_two_thousand_ops_five_keys():
    rng = random.Random(7)
    ops = simulate(rng, 2000, 3, ["a", "b", "c", "d", "e"], counters=frozenset({"e"}),
                   p_unknown=0.01, overlap=1.0)
    result = check(ops, timeout_s=5)
    assert result.ok and not result.timed_out, result.explanation


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200))
def test_many_simulated_histories(seed):
    rng = random.Random(10_000 + seed)
    ops = simulate(rng, 400, rng.randint(2, 6), ["r1", "r2", "c"], counters=frozenset({"c"}),
                   p_unknown=0.03, overlap=rng.uniform(0.2, 3.0))
    assert check(ops, timeout_s=30).ok


# -- against brute force -------------------------------------------------------------------

def _reference_step(op: Operation, state):
    """An independent sequential model: (output it would give, new state)."""
    if op.kind == "read":
        return state, state
    if op.kind == "write":
        return None, op.value
    if op.kind == "delete":
        return int(state is not None), None
    if op.kind == "cas":
        swapped = state is not None and state == op.expected
        return int(swapped), op.value if swapped else state
    if state is not None and not state.isdigit():
        return "ERR not an integer", state
    new = int(state or b"0") + 1
    return new, str(new).encode()


def _brute_force(ops: list[Operation]) -> bool:
    ops = [op for op in ops if op.outcome != FAIL]
    known = [op for op in ops if op.outcome == OK]
    unknown = [op for op in ops if op.outcome == UNKNOWN]
    for r in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, r):
            for order in itertools.permutations(known + list(chosen)):
                if any(_before(b, a) for x, a in enumerate(order) for b in order[x + 1:]):
                    continue
                state = None
                for op in order:
                    out, state = _reference_step(op, state)
                    if op.outcome == OK and op.kind != "write" and out != op.output:
                        break
                else:
                    return True
    return False


@pytest.mark.parametrize("seed", range(300))
def test_agrees_with_brute_force_on_small_histories(seed):
    rng = random.Random(5000 + seed)
    h = History()
    values = [b"a", b"b", b"1"]
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["read", "read", "write", "cas", "delete", "incr"])
        start = rng.uniform(0, 10)
        end = start + rng.uniform(0, 4)
        outcome = rng.choices([OK, UNKNOWN, FAIL], [6, 2, 1])[0]
        value = rng.choice(values) if kind in ("write", "cas") else None
        expected = rng.choice(values) if kind == "cas" else None
        out = {"read": lambda: rng.choice(values + [None]), "write": lambda: None,
               "cas": lambda: rng.randint(0, 1), "delete": lambda: rng.randint(0, 1),
               "incr": lambda: rng.randint(1, 3)}[kind]()
        rec(h, rng.randrange(3), kind, start, end, out, value=value, expected=expected,
            outcome=outcome)
    ops = h.ops
    result = check(ops)
    assert result.ok == _brute_force(ops), [op.describe() for op in ops]
