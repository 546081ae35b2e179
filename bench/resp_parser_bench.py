"""Request parser throughput: a pipelined stream of `SET key:000123 xxx`, fed in 16 KiB chunks.

Prints commands/s for zan's parser (hiredis fast path and pure Python) and, as the ceiling,
bare hiredis.Reader (no limits, no Redis error texts, no inline).  Interleaved runs, medians.

    python bench/resp_parser_bench.py [--commands 100000] [--rounds 5]
"""

import argparse
import statistics
import time

import hiredis

from zan.resp.encoder import encode_command
from zan.resp.parser import RequestParser


def run_zan(chunks, fast):
    p = RequestParser(use_hiredis=fast)
    n = 0
    for chunk in chunks:
        p.feed(chunk)
        for _ in p:
            n += 1
    return n


def run_hiredis(chunks):
    r = hiredis.Reader()
    n = 0
    for chunk in chunks:
        r.feed(chunk)
        while r.gets() is not False:
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = b"".join(encode_command([b"SET", b"key:%06d" % i, b"xxx"]) for i in range(args.commands))
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    runs = {"zan (hiredis fast path)": lambda: run_zan(chunks, True),
            "zan (pure Python)": lambda: run_zan(chunks, False),
            "bare hiredis.Reader": lambda: run_hiredis(chunks)}
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            assert fn() == args.commands
            rates[name].append(args.commands / (time.perf_counter() - t))
    ref = statistics.median(rates["bare hiredis.Reader"])
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"{name:26s} {m:12,.0f} commands/s   {m / ref:5.2f}x of bare hiredis")


if __name__ == "__main__":
    main()
