"""Redis's glob matching (util.c stringmatchlen) for MATCH options and KEYS-like filters.

Byte-exact semantics: ``*`` any run, ``?`` one byte, ``[abc]`` / ``[^abc]`` / ``[a-z]``
classes (a reversed range matches too), ``\\x`` escapes; case-sensitive.
"""

from __future__ import annotations

__all__ = ["glob_match"]


def glob_match(pattern: bytes, string: bytes) -> bool:
    if pattern == b"*":
        return True
    return _match(pattern, 0, string, 0)


def _match(p: bytes, pi: int, s: bytes, si: int) -> bool:
    plen, slen = len(p), len(s)
    while pi < plen:
        c = p[pi]
        if c == 0x2A:  # '*'
            while pi + 1 < plen and p[pi + 1] == 0x2A:
                pi += 1
            if pi + 1 == plen:
                return True
            for start in range(si, slen + 1):
                if _match(p, pi + 1, s, start):
                    return True
            return False
        if si >= slen:
            return False
        if c == 0x3F:  # '?'
            si += 1
        elif c == 0x5B:  # '['
            pi += 1
            negate = pi < plen and p[pi] == 0x5E
            if negate:
                pi += 1
            matched = False
            while pi < plen and p[pi] != 0x5D:
                if p[pi] == 0x5C and pi + 2 < plen + 1 and pi + 1 < plen:
                    pi += 1
                    if p[pi] == s[si]:
                        matched = True
                elif pi + 2 < plen and p[pi + 1] == 0x2D:  # range a-z
                    lo, hi = p[pi], p[pi + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    if lo <= s[si] <= hi:
                        matched = True
                    pi += 2
                elif p[pi] == s[si]:
                    matched = True
                pi += 1
            if pi >= plen:
                pi = plen - 1  # unterminated class: Redis treats the end as ']'
            if negate:
                matched = not matched
            if not matched:
                return False
            si += 1
        elif c == 0x5C and pi + 1 < plen:  # '\'
            pi += 1
            if p[pi] != s[si]:
                return False
            si += 1
        else:
            if c != s[si]:
                return False
            si += 1
        pi += 1
    return si == slen
