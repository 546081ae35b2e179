import random

import pytest

from tests.support.harness import Err
from zan.commands.cursors import CursorRegistry, parse_cursor
from zan.errors import RespError


def test_issue_and_resolve_round_trip():
    reg = CursorRegistry(rng=random.Random(1))
    c = reg.issue(b"tok", ("hscan", b"k"))
    assert c != b"0" and c.isdigit()
    entry = reg.resolve(c, ("hscan", b"k"))
    assert entry.token == b"tok"
    # Not consumed: the same page can be asked again.
    assert reg.resolve(c, ("hscan", b"k")).token == b"tok"


def test_zero_starts_and_end_token_gives_zero():
    reg = CursorRegistry(rng=random.Random(1))
    assert reg.resolve(b"0", "ctx").token == b"0"
    assert reg.resolve(b"000", "ctx").token == b"0"
    assert reg.issue(b"0", "ctx") == b"0"
    assert len(reg) == 0


@pytest.mark.parametrize("raw", [b"abc", b" 1", b"1 ", b"", b"1.5", b"99999999999999999999999"])
def test_unparsable_cursor_is_invalid(raw):
    with pytest.raises(RespError, match="^ERR invalid cursor$"):
        CursorRegistry().resolve(raw)


def test_strtoul_rules():
    assert parse_cursor(b"+5") == 5
    assert parse_cursor(b"-1") == (1 << 64) - 1


def test_unknown_or_foreign_cursor_is_invalid():
    reg = CursorRegistry(rng=random.Random(2))
    c = reg.issue(b"tok", ("hscan", b"k"))
    with pytest.raises(RespError, match="invalid cursor"):
        reg.resolve(c, ("hscan", b"other"))
    with pytest.raises(RespError, match="invalid cursor"):
        reg.resolve(b"12345", ("hscan", b"k"))
    assert reg.resolve(c, None, check_context=False).token == b"tok"


def test_cursors_are_unique_while_live_even_with_colliding_rng():
    class Repeating(random.Random):
        def __init__(self):
            super().__init__(0)
            self.values = [7, 7, 7, 9]

        def randint(self, a, b):
            return self.values.pop(0)

    reg = CursorRegistry(rng=Repeating())
    assert reg.issue(b"a") == b"7"
    assert reg.issue(b"b") == b"9"


def test_lru_eviction():
    reg = CursorRegistry(max_entries=3, rng=random.Random(3))
    cs = [reg.issue(b"t%d" % i) for i in range(3)]
    reg.resolve(cs[0])                 # touch: now the most recent
    c3 = reg.issue(b"t3")
    assert len(reg) == 3
    with pytest.raises(RespError):
        reg.resolve(cs[1])             # least recently used went first
    assert reg.resolve(cs[0]).token == b"t0"
    assert reg.resolve(c3).token == b"t3"
    reg.forget(c3)
    with pytest.raises(RespError):
        reg.resolve(c3)


def test_harness_translates_scan_cursors(part):
    for i in range(25):
        part.call("set", "key%02d" % i, "v")
    cursor, seen, pages = b"0", [], 0
    while True:
        cursor, keys = part.call("scan", cursor, "COUNT", "10")
        assert cursor.isdigit()
        seen += keys
        pages += 1
        if cursor == b"0":
            break
    assert pages == 3 and sorted(seen) == [b"key%02d" % i for i in range(25)]
    assert part.ncall("scan", "424242") == Err("ERR invalid cursor")
    assert part.ncall("scan", "x") == Err("ERR invalid cursor")
    # The raw form exposes the handler's tokens.
    token, keys = part.call_raw("scan", "0", "COUNT", "10")
    assert token.startswith(b">") and len(keys) == 10
