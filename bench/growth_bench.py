"""How the cost of one operation grows with the size of its collection, on a standalone node.

One command:

    python bench/growth_bench.py [--sizes 100,1000,10000,100000,1000000] [-n 20000]

For each size it fills a hash, a set, a sorted set and a list of that many elements
(through `redis-cli --pipe`), then runs `redis-benchmark -c 50 -n N` for each operation
below and prints requests/s per size and, per operation, the cost at the largest size
over the cost at 1,000 elements (the target: within 2x for these O(1) and O(log n)
operations):

    HGET  SISMEMBER  ZSCORE  ZRANK  LINDEX (middle)  LRANGE 0 99  ZRANGEBYSCORE (100)
    SCARD  ZCARD  HLEN
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_bench import _benchmark_figure, _command, free_port, zan_server  # noqa: E402


def _fill(port: int, size: int) -> None:
    """h:<size>, s:<size>, z:<size>, l:<size> with `size` elements each (e0..)."""
    batch = 1000
    out = []
    for start in range(0, size, batch):
        ids = range(start, min(size, start + batch))
        out.append(_command(b"hset", b"h:%d" % size, *[w for i in ids for w in (b"f%d" % i, b"v")]))
        out.append(_command(b"sadd", b"s:%d" % size, *[b"m%d" % i for i in ids]))
        out.append(_command(b"zadd", b"z:%d" % size,
                            *[w for i in ids for w in (b"%d" % i, b"m%d" % i)]))
        out.append(_command(b"rpush", b"l:%d" % size, *[b"e%d" % i for i in ids]))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=b"".join(out),
                   capture_output=True, timeout=3600, check=True)


def _operations(size: int) -> dict[str, list[str]]:
    mid = size // 2
    return {
        "hget": ["hget", f"h:{size}", f"f{mid}"],
        "sismember": ["sismember", f"s:{size}", f"m{mid}"],
        "zscore": ["zscore", f"z:{size}", f"m{mid}"],
        "zrank": ["zrank", f"z:{size}", f"m{mid}"],
        "lindex_mid": ["lindex", f"l:{size}", str(mid)],
        "lrange_100": ["lrange", f"l:{size}", "0", "99"],
        "zrangebyscore_100": ["zrangebyscore", f"z:{size}", str(mid), str(mid + 99)],
        "scard": ["scard", f"s:{size}"],
        "zcard": ["zcard", f"z:{size}"],
        "hlen": ["hlen", f"h:{size}"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000,100000,1000000")
    ap.add_argument("-n", type=int, default=20000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="zan-growth-bench-")
    os.makedirs(os.path.join(tmp, "zan"))
    node = zan_server(os.path.join(tmp, "zan"), free_port(), free_port())
    rates: dict[tuple[str, int], float] = {}
    try:
        node.start()
        for size in sizes:
            _fill(node.port, size)
            for op, words in _operations(size).items():
                rates[(op, size)] = _benchmark_figure(words, node.port, args.n)
        ops = list(_operations(sizes[0]))
        base = 1000 if 1000 in sizes else sizes[0]
        print(f"\nrequests/s, redis-benchmark -c 50 -n {args.n}, by collection size\n")
        print(f"{'operation':<18}" + "".join(f"{s:>10}" for s in sizes)
              + f"{'cost ' + str(sizes[-1]) + '/' + str(base):>18}")
        for op in ops:
            row = "".join(f"{rates[(op, s)]:>10.0f}" for s in sizes)
            growth = rates[(op, base)] / rates[(op, sizes[-1])]
            print(f"{op:<18}{row}{growth:>18.2f}")
        print("\ntarget: the cost at the largest size within 2x of the cost at 1,000 elements")
    finally:
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
