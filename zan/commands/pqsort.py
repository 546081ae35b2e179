"""Redis's partial quicksort (pqsort.c: Bentley and McIlroy's "Engineering a Sort
Function", as in NetBSD's qsort, recursing only into the parts that overlap the ranks
wanted).

GEORADIUS ... COUNT n sorts only the first n results with it.  The algorithm is not
stable, so among results at equal distances the n kept, and their order, are the ones
this exact sequence of comparisons and swaps leaves; any other sort would answer
differently from redis-server.
"""

from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["pqsort"]

T = TypeVar("T")


def pqsort(items: list[T], cmp: Callable[[T, T], int], lrange: int, rrange: int) -> None:
    """Sort `items` in place far enough that ranks lrange..rrange (inclusive) hold what a
    full sort would put there.  `cmp` answers <0, 0 or >0 as C's comparators do."""
    _pqsort(items, 0, len(items), cmp, lrange, rrange)


def _med3(v, a: int, b: int, c: int, cmp) -> int:
    if cmp(v[a], v[b]) < 0:
        if cmp(v[b], v[c]) < 0:
            return b
        return c if cmp(v[a], v[c]) < 0 else a
    if cmp(v[b], v[c]) > 0:
        return b
    return a if cmp(v[a], v[c]) < 0 else c


def _swap_runs(v, i: int, j: int, n: int) -> None:
    """vecswap: exchange v[i:i+n] and v[j:j+n] element by element."""
    for k in range(n):
        v[i + k], v[j + k] = v[j + k], v[i + k]


def _overlaps(start: int, n: int, lrange: int, rrange: int) -> bool:
    end = start + n - 1
    return not ((lrange < start and rrange < start) or (lrange > end and rrange > end))


def _pqsort(v, a: int, n: int, cmp, lrange: int, rrange: int) -> None:
    # Indexes stand for C's pointers; the element size is 1.
    while True:
        if n < 7:
            # Insertion sort for small runs.
            for pm in range(a + 1, a + n):
                pl = pm
                while pl > a and cmp(v[pl - 1], v[pl]) > 0:
                    v[pl], v[pl - 1] = v[pl - 1], v[pl]
                    pl -= 1
            return
        # The pivot: the median of three, or of three medians of three for long runs.
        pm = a + n // 2
        if n > 7:
            pl, pn = a, a + n - 1
            if n > 40:
                d = n // 8
                pl = _med3(v, pl, pl + d, pl + 2 * d, cmp)
                pm = _med3(v, pm - d, pm, pm + d, cmp)
                pn = _med3(v, pn - 2 * d, pn - d, pn, cmp)
            pm = _med3(v, pl, pm, pn, cmp)
        v[a], v[pm] = v[pm], v[a]
        # Three-way partition: elements equal to the pivot gather at both ends.
        pa = pb = a + 1
        pc = pd = a + n - 1
        while True:
            while pb <= pc:
                c = cmp(v[pb], v[a])
                if c > 0:
                    break
                if c == 0:
                    v[pa], v[pb] = v[pb], v[pa]
                    pa += 1
                pb += 1
            while pb <= pc:
                c = cmp(v[pc], v[a])
                if c < 0:
                    break
                if c == 0:
                    v[pc], v[pd] = v[pd], v[pc]
                    pd -= 1
                pc -= 1
            if pb > pc:
                break
            v[pb], v[pc] = v[pc], v[pb]
            pb += 1
            pc -= 1
        # Move the equal elements from the ends to the middle.
        pn = a + n
        r = min(pa - a, pb - pa)
        if r > 0:
            _swap_runs(v, a, pb - r, r)
        r = min(pd - pc, pn - pd - 1)
        if r > 0:
            _swap_runs(v, pb, pn - r, r)
        r = pb - pa
        if r > 1 and _overlaps(a, r, lrange, rrange):
            _pqsort(v, a, r, cmp, lrange, rrange)
        r = pd - pc
        if r <= 1:
            return
        a, n = pn - r, r
        if not _overlaps(a, n, lrange, rrange):
            return
