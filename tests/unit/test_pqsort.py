"""Redis's partial quicksort: the ranks asked for hold what a full sort puts there."""

import random

from zan.commands.pqsort import pqsort


def cmp(a, b):
    return (a[0] > b[0]) - (a[0] < b[0])


def test_ranks_in_range_are_sorted():
    rng = random.Random(1)
    for _ in range(500):
        n = rng.randint(0, 120)
        items = [(rng.randint(0, 10 if rng.random() < 0.5 else 1000), i) for i in range(n)]
        lo = rng.randint(0, max(n - 1, 0))
        hi = rng.randint(lo, max(n - 1, 0))
        got = list(items)
        pqsort(got, cmp, lo, hi)
        assert sorted(got) == sorted(items)          # a permutation
        keys = sorted(k for k, _ in items)
        assert [k for k, _ in got[lo:hi + 1]] == keys[lo:hi + 1]


def test_full_range_is_a_full_sort():
    rng = random.Random(2)
    items = [(rng.random(), i) for i in range(300)]
    got = list(items)
    pqsort(got, cmp, 0, len(got) - 1)
    assert got == sorted(items)


def test_descending_comparator():
    items = [(k, i) for i, k in enumerate([5, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9])]
    pqsort(items, lambda a, b: -cmp(a, b), 0, 2)
    assert [k for k, _ in items[:3]] == [9, 9, 9]
