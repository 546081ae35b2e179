"""LCS (Redis 7.0 t_string.c): the longest common subsequence of two strings, its
length, or the matching ranges (IDX, MINMATCHLEN, WITHMATCHLEN)."""

from __future__ import annotations

from zan.commands.table import READONLY, Route, command
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError
from zan.store.keyspace import T_STRING, Txn, lookup

__all__ = []


def _strings(txn: Txn, keys: list[bytes]) -> list[bytes]:
    values = []
    for pk in keys:
        meta = lookup(txn, pk)
        if meta is not None and meta.type != T_STRING:
            raise RespError("ERR The specified keys must contain string values")
        values.append(meta.payload if meta is not None else b"")
    return values


def _table(a: bytes, b: bytes) -> list[list[int]]:
    """table[i][j]: length of the LCS of a[:i] and b[:j]."""
    table = [[0] * (len(b) + 1)]
    for i in range(1, len(a) + 1):
        above = table[i - 1]
        row = [0]
        char = a[i - 1]
        for j in range(1, len(b) + 1):
            if char == b[j - 1]:
                row.append(above[j - 1] + 1)
            else:
                row.append(above[j] if above[j] > row[j - 1] else row[j - 1])
        table.append(row)
    return table


@command("lcs", -3, (READONLY,), route=Route.SAME_PARTITION, first_key=1, last_key=2,
         group="string", since="7.0.0", summary="Find longest common substring")
def lcs(txn: Txn, args: list[bytes]):
    a, b = _strings(txn, args[:2])
    want_idx = want_len = with_match_len = False
    min_match_len = 0
    i = 2
    while i < len(args):
        opt = args[i].upper()
        if opt == b"IDX":
            want_idx = True
        elif opt == b"LEN":
            want_len = True
        elif opt == b"WITHMATCHLEN":
            with_match_len = True
        elif opt == b"MINMATCHLEN" and i + 1 < len(args):
            min_match_len = max(parse_int(args[i + 1]), 0)
            i += 1
        else:
            raise RespError(SYNTAX)
        i += 1
    if want_idx and want_len:
        raise RespError("ERR If you want both the length and indexes, please just use IDX.")
    table = _table(a, b)
    length = table[len(a)][len(b)]
    if want_len:
        return length
    # Walk back from the end as Redis does, collecting the common bytes and, for IDX,
    # the ranges of contiguous matches (latest first).
    result = bytearray(length)
    matches = []
    unset = len(a)
    a_end = b_start = b_end = 0
    a_start = unset      # no range open
    i, j, k = len(a), len(b), length
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[k - 1] = a[i - 1]
            if a_start == unset:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            k, i, j = k - 1, i - 1, j - 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            if a_start != unset:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if min_match_len == 0 or match_len >= min_match_len:
                match = [[a_start, a_end], [b_start, b_end]]
                if with_match_len:
                    match.append(match_len)
                matches.append(match)
            a_start = unset
    if want_idx:
        return [b"matches", matches, b"len", length]
    return bytes(result)
