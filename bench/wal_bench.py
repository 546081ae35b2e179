"""Raft WAL throughput and memory.

    python bench/wal_bench.py [--dir DIR] [--rounds N]

Measures, in one run and interleaved (A B A B ...), 100-byte entries/s written through
`WalLogStore` with group commit (100 entries per sync() spread over 8 groups, one append
per group per sync, as the Raft driver does per reactor turn) against one sync() per
entry, and prints medians and their ratio.  Then the RSS growth per 1M live entries held
(100-byte entries across 100 groups, default cache).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zan.raft.types import Entry, HardState  # noqa: E402
from zan.raft.wal import WalLogStore  # noqa: E402

PAYLOAD = b"v" * 100


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def group_commit(path: str, entries: int, groups: int = 8, per_sync: int = 100) -> float:
    store = WalLogStore(path)
    logs = [store.group(g) for g in range(groups)]
    per_group = per_sync // groups
    start = time.perf_counter()
    written = 0
    while written < entries:
        for g in logs:
            first = g.last_index() + 1
            g.append([Entry(1, i, data=PAYLOAD) for i in range(first, first + per_group)])
            g.set_hard_state(HardState(1, 1, first - 1))
        store.sync()
        written += per_group * groups
    elapsed = time.perf_counter() - start
    store.close()
    return written / elapsed


def sync_per_entry(path: str, entries: int) -> float:
    store = WalLogStore(path)
    g = store.group(0)
    start = time.perf_counter()
    for i in range(1, entries + 1):
        g.append([Entry(1, i, data=PAYLOAD)])
        store.sync()
    elapsed = time.perf_counter() - start
    store.close()
    return entries / elapsed


def rss_per_million(path: str, entries: int = 1_000_000, groups: int = 100) -> tuple[float, float, float]:
    before = _rss()
    store = WalLogStore(path)
    logs = [store.group(g) for g in range(groups)]
    per_append = 10
    start = time.perf_counter()
    for n in range(entries // (groups * per_append)):
        for g in logs:
            first = g.last_index() + 1
            g.append([Entry(1, i, data=PAYLOAD) for i in range(first, first + per_append)])
        store.sync()
    write_s = time.perf_counter() - start
    grown = _rss() - before
    store.close()
    start = time.perf_counter()
    store = WalLogStore(path)
    open_s = time.perf_counter() - start
    reopened = _rss() - before
    assert sum(store.group(g).last_index() for g in range(groups)) == entries
    store.close()
    return grown * 1_000_000 / entries, reopened * 1_000_000 / entries, open_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="directory to write in (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--entries", type=int, default=50_000, help="entries per group-commit run")
    parser.add_argument("--single", type=int, default=1_000, help="entries per one-sync-each run")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir)
    try:
        batched, single = [], []
        for r in range(args.rounds):
            batched.append(group_commit(os.path.join(base, f"gc{r}"), args.entries))
            single.append(sync_per_entry(os.path.join(base, f"one{r}"), args.single))
            print(f"round {r + 1}: group commit {batched[-1]:,.0f} entries/s, "
                  f"one sync per entry {single[-1]:,.0f} entries/s", flush=True)
        gc, one = statistics.median(batched), statistics.median(single)
        print(f"median group commit (100 entries/sync, 8 groups): {gc:,.0f} entries/s")
        print(f"median one fsync per entry:                       {one:,.0f} entries/s")
        print(f"ratio: {gc / one:.1f}x")
        per_m, reopened, open_s = rss_per_million(os.path.join(base, "rss"))
        print(f"RSS growth per 1M live 100-byte entries: {per_m / 2**20:.1f} MiB while writing, "
              f"{reopened / 2**20:.1f} MiB after reopen (reopen took {open_s:.2f} s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
