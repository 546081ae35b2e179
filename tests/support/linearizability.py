"""Record client operations against a key-value store and check them for linearizability.

Test clients record what they asked and what they saw in a `History` (thread-safe); `check`
decides whether some total order of the operations, consistent with real time, explains every
reply under a sequential model of a Redis string register.

Outcomes:
- ``ok``: completed with an output the model must reproduce.
- ``fail``: definitely had no effect (an error before proposal, WRONGTYPE); dropped.
- ``unknown``: a timeout, a lost connection, a cluster change after proposal.  It may have taken
  effect at any moment after its invocation, or never; its completion counts as +infinity and its
  output is not checked.  An operation never completed when the history is checked counts as unknown.

The model, one register per key, initially missing (None):

| kind   | arguments              | output checked                                   |
|--------|------------------------|--------------------------------------------------|
| read   |                        | GET: the value, None when missing                |
| write  | value                  | SET: nothing (always OK)                         |
| delete |                        | DEL: 1 if the key existed else 0 (None: unchecked)|
| cas    | expected, value (new)  | ``setifeq key expected new``: 1 if it swapped     |
| incr   | value = amount (def 1) | INCRBY: the new integer; missing counts as 0     |

Values compare as Redis would return them: str is UTF-8 encoded and an int is its decimal text,
so ``write 5`` then ``incr`` then ``read`` expects ``b"6"``.

Keys are independent registers, so the history is split by key (P-compositionality) and each key
is searched on its own with the Wing–Gong algorithm plus Lowe's memoisation, as Porcupine does:
call and return events in a doubly linked list, calls lifted out as they are linearized, a cache of
(linearized set, model state) pairs already explored, and backtracking when a return event is
reached before its call could be linearized.  An unknown operation's return sits after every other
event and every step of it is legal, so "never took effect" is the same as "took effect last".

When a key fails, the explanation names the completion no explored order got past: the history up
to that event is already not linearizable (its smallest such prefix), and every order the search
tried broke there.  The order that got furthest and the operations around that one are listed.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Optional

__all__ = [
    "KINDS",
    "OK",
    "FAIL",
    "UNKNOWN",
    "Operation",
    "History",
    "Result",
    "check",
]

KINDS = ("read", "write", "cas", "delete", "incr")
OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
_PENDING = "pending"

# How many search steps run between two looks at the clock.
_CLOCK_EVERY = 2048


@dataclass(frozen=True, slots=True)
class Operation:
    """One client request and what became of it.

    ``complete`` is None while pending and for unknown outcomes (treated as +infinity).
    """

    id: int
    client: Hashable
    key: Any
    kind: str
    value: Any
    expected: Any
    invoke: float
    complete: Optional[float]
    outcome: str
    output: Any = None

    def describe(self) -> str:
        return _describe(self)


@dataclass(frozen=True, slots=True)
class Result:
    """The verdict on a history.

    ``ok`` is True only when every key was shown linearizable.  ``key`` names the failing (or,
    failing none, the timed-out) key; ``ops`` holds the ids of the operations the explanation
    points at, the unexplainable one first.
    """

    ok: bool
    key: Any = None
    explanation: str = ""
    timed_out: bool = False
    ops: tuple[int, ...] = ()


class History:
    """A thread-safe recorder of operations.

    ``clock`` defaults to ``time.monotonic``; every recording method also takes ``at=`` to set the
    time explicitly, which hand-made histories use.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: list[Operation] = []

    def invoke(self, client: Hashable, key: Any, kind: str, value: Any = None,
               expected: Any = None, *, at: Optional[float] = None) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}; expected one of {KINDS}")
        if kind == "write" and value is None:
            raise ValueError("a write needs a value")
        if kind == "cas" and (value is None or expected is None):
            raise ValueError("a cas needs both expected and value")
        with self._lock:
            now = self._clock() if at is None else at
            op_id = len(self._ops)
            self._ops.append(Operation(op_id, client, key, kind, value, expected,
                                       now, None, _PENDING))
            return op_id

    def ok(self, op_id: int, output: Any = None, *, at: Optional[float] = None) -> None:
        self._complete(op_id, OK, output, at)

    def fail(self, op_id: int, *, at: Optional[float] = None) -> None:
        self._complete(op_id, FAIL, None, at)

    def unknown(self, op_id: int, *, at: Optional[float] = None) -> None:
        self._complete(op_id, UNKNOWN, None, at)

    def _complete(self, op_id: int, outcome: str, output: Any, at: Optional[float]) -> None:
        with self._lock:
            now = self._clock() if at is None else at
            op = self._ops[op_id]
            if op.outcome != _PENDING:
                raise ValueError(f"operation {op_id} already completed ({op.outcome})")
            if now < op.invoke:
                raise ValueError(f"operation {op_id} completes at {now} before its invocation "
                                 f"at {op.invoke}")
            self._ops[op_id] = Operation(op.id, op.client, op.key, op.kind, op.value,
                                         op.expected, op.invoke,
                                         None if outcome == UNKNOWN else now, outcome, output)

    @property
    def ops(self) -> list[Operation]:
        """A snapshot of the operations in invocation order; pending ones read as unknown."""
        with self._lock:
            snapshot = list(self._ops)
        return [_as_unknown(op) if op.outcome == _PENDING else op for op in snapshot]

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)


def _as_unknown(op: Operation) -> Operation:
    return Operation(op.id, op.client, op.key, op.kind, op.value, op.expected,
                     op.invoke, None, UNKNOWN, None)


# -- the model -----------------------------------------------------------------------------

_READ, _WRITE, _CAS, _DELETE, _INCR = range(5)
_KIND_CODES = {"read": _READ, "write": _WRITE, "cas": _CAS, "delete": _DELETE, "incr": _INCR}
# Redis's string2ll: optional minus, no plus, no leading zeros, no spaces.
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)\Z")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _canon(value: Any) -> Optional[bytes]:
    """A value as Redis would hand it back."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("booleans are not Redis values")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int):
        return str(value).encode("ascii")
    raise TypeError(f"cannot use {type(value).__name__} as a Redis value")


def _as_int(state: Optional[bytes]) -> Optional[int]:
    """The register as INCR sees it; None when INCR would fail with a non-integer error."""
    if state is None:
        return 0
    if not _INTEGER.match(state):
        return None
    number = int(state)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _flag(output: Any) -> Optional[int]:
    """An integer reply that should be 0 or 1 (True/False and b"1" accepted)."""
    if output is None:
        return None
    if isinstance(output, (bytes, str)):
        output = int(output)
    return int(output)


@dataclass(slots=True)
class _Op:
    """An operation prepared for the search (times already resolved, values canonical)."""

    id: int
    code: int
    value: Optional[bytes]   # write/cas: the new value; incr: unused
    expected: Optional[bytes]
    amount: int
    output: Any              # canonical output when known
    known: bool
    call: float
    ret: float
    source: Operation = field(repr=False)


def _prepare(op: Operation) -> Optional[_Op]:
    if op.outcome == FAIL:
        return None
    known = op.outcome == OK
    code = _KIND_CODES[op.kind]
    if code == _READ and not known:
        return None   # an unanswered read has no effect on the register
    output: Any = None
    amount = 1
    if code == _INCR and op.value is not None:
        amount = int(op.value)
    if known:
        if code == _READ:
            output = _canon(op.output)
        elif code in (_DELETE, _CAS):
            output = _flag(op.output)
        elif code == _INCR:
            output = int(op.output)
    value = _canon(op.value) if code in (_WRITE, _CAS) else None
    expected = _canon(op.expected) if code == _CAS else None
    ret = op.complete if known else math.inf
    return _Op(op.id, code, value, expected, amount, output, known, op.invoke, ret, op)


def _step(op: _Op, state: Optional[bytes]) -> tuple[bool, Optional[bytes]]:
    """Apply `op` to the register; (whether its output is possible, the new state)."""
    code = op.code
    if code == _READ:
        return op.output == state, state
    if code == _WRITE:
        return True, op.value
    if code == _CAS:
        swapped = state is not None and state == op.expected
        new = op.value if swapped else state
        if not op.known:
            return True, new
        return op.output == int(swapped), new
    if code == _DELETE:
        if not op.known or op.output is None:
            return True, None
        return op.output == (0 if state is None else 1), None
    current = _as_int(state)   # _INCR
    if current is None or not _INT64_MIN <= current + op.amount <= _INT64_MAX:
        # Redis refuses: no effect, and an acknowledged result is impossible.
        return not op.known, state
    new_number = current + op.amount
    if op.known and op.output != new_number:
        return False, state
    return True, str(new_number).encode("ascii")


# -- the search ----------------------------------------------------------------------------

class _TimedOut(Exception):
    pass


@dataclass(slots=True)
class _Outcome:
    linearizable: bool
    stuck_at: int = -1              # the op whose completion no explored order got past
    best_order: list[int] = field(default_factory=list)   # the order that got furthest
    best_state: Optional[bytes] = None


def _events(ops: list[_Op]) -> list[tuple[float, int, int]]:
    # At equal times a call sorts before a return: touching intervals count as concurrent,
    # the reading that accuses the system least.
    events = [(op.call, 0, i) for i, op in enumerate(ops)]
    events += [(op.ret, 1, i) for i, op in enumerate(ops)]
    events.sort()
    return events


def _search(ops: list[_Op], deadline: float, clock: Callable[[], float]) -> _Outcome:
    """Wing–Gong with Lowe's cache over `ops`; raises _TimedOut past `deadline`."""
    n = len(ops)
    events = _events(ops)
    size = len(events)
    head = size
    # Event slots 0..size-1 in time order, the head sentinel at `size`; -1 ends the list.
    nxt = [e + 1 for e in range(size)] + [0 if size else -1]
    prv = [e - 1 for e in range(size)] + [-1]
    if size:
        nxt[size - 1] = -1
        prv[0] = head
    event_op = [i for (_, _, i) in events]
    is_call = [kind == 0 for (_, kind, _) in events]
    ret_slot = [0] * n
    for e, (_, kind, i) in enumerate(events):
        if kind == 1:
            ret_slot[i] = e
    match = [ret_slot[event_op[e]] if is_call[e] else -1 for e in range(size)]

    def lift(e: int) -> None:
        p, q = prv[e], nxt[e]
        nxt[p] = q
        if q != -1:
            prv[q] = p
        m = match[e]
        p, q = prv[m], nxt[m]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def unlift(e: int) -> None:
        m = match[e]
        p, q = prv[m], nxt[m]
        nxt[p] = m
        if q != -1:
            prv[q] = m
        p, q = prv[e], nxt[e]
        nxt[p] = e
        if q != -1:
            prv[q] = e

    known = [op.known for op in ops]
    unknown_mask = sum(1 << i for i, op in enumerate(ops) if not op.known)
    cache: set[tuple[int, Optional[bytes]]] = set()
    # Configurations fully explored without success, by (known ops linearized, state): the
    # sets of unknown ops they had used.  Having used more unknown ops never helps, since an
    # unused one can always be taken last, so a superset of a failed set fails too.
    failed: dict[tuple[int, Optional[bytes]], list[int]] = {}
    stack: list[tuple[int, Optional[bytes], bool]] = []   # (call slot, state before, pass)
    linearized = 0
    state: Optional[bytes] = None
    furthest = -1
    best_order: list[int] = []
    best_state: Optional[bytes] = None
    steps = 0
    # Each position is scanned twice, known calls first, then unknown ones, so configurations
    # using few unknown ops fail first and prune their supersets.
    known_pass = True
    entry = nxt[head]
    while nxt[head] != -1:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and clock() > deadline:
            raise _TimedOut
        if is_call[entry]:
            i = event_op[entry]
            if known[i] != known_pass:
                entry = nxt[entry]
                continue
            legal, new_state = _step(ops[i], state)
            if legal:
                new_linearized = linearized | (1 << i)
                if (new_linearized, new_state) not in cache and not _dominated(
                        failed, new_linearized, new_state, unknown_mask):
                    cache.add((new_linearized, new_state))
                    stack.append((entry, state, known_pass))
                    state = new_state
                    linearized = new_linearized
                    lift(entry)
                    known_pass = True
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        elif known_pass:
            known_pass = False
            entry = nxt[head]
        else:
            # A return reached before its call was linearized: undo the latest choice.
            if entry > furthest:
                furthest = entry
                best_order = [event_op[frame[0]] for frame in stack]
                best_state = state
            if not stack:
                return _Outcome(False, event_op[furthest], best_order, best_state)
            failed.setdefault((linearized & ~unknown_mask, state), []).append(
                linearized & unknown_mask)
            entry, state, known_pass = stack.pop()
            linearized &= ~(1 << event_op[entry])
            unlift(entry)
            entry = nxt[entry]
    return _Outcome(True)


def _dominated(failed: dict[tuple[int, Optional[bytes]], list[int]], linearized: int,
               state: Optional[bytes], unknown_mask: int) -> bool:
    earlier_sets = failed.get((linearized & ~unknown_mask, state))
    if not earlier_sets:
        return False
    used = linearized & unknown_mask
    return any(earlier & ~used == 0 for earlier in earlier_sets)


# -- explanation ---------------------------------------------------------------------------

def _fmt_value(value: Any) -> str:
    return "nil" if value is None else repr(value)


def _fmt_time(t: Optional[float]) -> str:
    return "∞" if t is None or t == math.inf else f"{t:.6f}"


def _describe(op: Operation) -> str:
    if op.kind == "read":
        what = "read"
    elif op.kind == "write":
        what = f"write {_fmt_value(op.value)}"
    elif op.kind == "cas":
        what = f"cas {_fmt_value(op.expected)}→{_fmt_value(op.value)}"
    elif op.kind == "delete":
        what = "delete"
    else:
        what = "incr" if op.value in (None, 1) else f"incrby {op.value}"
    if op.outcome == OK:
        tail = "" if op.kind == "write" else f" → {_fmt_value(op.output)}"
    else:
        tail = f" ({op.outcome})"
    return (f"#{op.id} client {op.client}: {what}{tail} "
            f"[{_fmt_time(op.invoke)}, {_fmt_time(op.complete)}]")


def _explain(key: Any, ops: list[_Op], outcome: _Outcome) -> tuple[str, tuple[int, ...]]:
    culprit = ops[outcome.stuck_at]
    lines = [f"key {_fmt_value(key)} is not linearizable: no order of the ops completed by the "
             "time this one completed explains them all:",
             f"  {_describe(culprit.source)}"]
    # Ops whose place relative to the culprit is open, and the last few fixed before it.
    related = [op for op in ops
               if op is not culprit and op.call <= culprit.ret and op.ret >= culprit.call]
    before = sorted((op for op in ops if op.ret < culprit.call), key=lambda op: op.ret)[-4:]
    shown = sorted(before + related, key=lambda op: (op.call, op.id))[:12]
    if shown:
        lines.append("Ops concurrent with it or just before it:")
        lines += [f"  {_describe(op.source)}" for op in shown]
    order = [ops[i] for i in outcome.best_order]
    if order:
        lines.append(f"The order that got furthest ({len(order)} ops"
                     f"{', last 8 shown' if len(order) > 8 else ''}) leaves the value "
                     f"{_fmt_value(outcome.best_state)}:")
        lines += [f"  {_describe(op.source)}" for op in order[-8:]]
    return "\n".join(lines), (culprit.id,) + tuple(op.id for op in shown)


# -- entry point ---------------------------------------------------------------------------

def check(history: History | Iterable[Operation], timeout_s: float = 10.0,
          clock: Callable[[], float] = time.monotonic) -> Result:
    """Check every key of `history`; each key's search gets at most `timeout_s` seconds."""
    ops = history.ops if isinstance(history, History) else [
        _as_unknown(op) if op.outcome == _PENDING else op for op in history]
    by_key: dict[Optional[bytes], tuple[Any, list[_Op]]] = {}
    for op in ops:
        prepared = _prepare(op)
        if prepared is None:
            continue
        by_key.setdefault(_canon(op.key), (op.key, []))[1].append(prepared)

    timed_out_key: Any = None
    any_timed_out = False
    for key, key_ops in by_key.values():
        try:
            outcome = _search(key_ops, clock() + timeout_s, clock)
        except _TimedOut:
            if not any_timed_out:
                timed_out_key, any_timed_out = key, True
            continue
        if not outcome.linearizable:
            explanation, culprits = _explain(key, key_ops, outcome)
            return Result(False, key, explanation, False, culprits)
    if any_timed_out:
        return Result(False, timed_out_key,
                      f"key {_fmt_value(timed_out_key)}: search exceeded {timeout_s} s",
                      timed_out=True)
    return Result(True)
