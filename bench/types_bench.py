"""HyperLogLog, geo and JSON throughput of a standalone node against redis-server.

One command:

    python bench/types_bench.py [-n 50000] [--points 100000] [--rounds 1]

Starts a Zan node and a redis-server with `appendonly yes` and `appendfsync always`
(every write fsynced, as Zan's are), loads --points random points into one geo set and
a 1 KiB JSON document on each, then runs `redis-benchmark -c 50 -n N` for each test
against both, alternating which goes first each round, and prints the median requests/s
and the ratio zan/redis:

    pfadd      PFADD of a random element to one key
    pfcount    PFCOUNT of that key
    geoadd     GEOADD of a random member to the set of --points points
    geosearch  GEOSEARCH FROMLONLAT BYRADIUS 200 km COUNT 10 ASC in it, away from there
    json.set   JSON.SET of the 1 KiB document (redis-server: SET of the same bytes)
    json.get   JSON.GET of it (redis-server: GET of the same bytes)

redis-server has no JSON module: its SET/GET of the same text is the reference a JSON
document's cost is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from node_bench import (  # noqa: E402
    Server, _benchmark_figure, _command, _figure, _ratio, free_port, zan_server,
)


def _document() -> str:
    rng = random.Random(3)
    doc = {"id": 1, "name": "headphones", "tags": [], "specs": {}}
    while len(json.dumps(doc)) < 1000:
        doc["tags"].append(f"tag{rng.randrange(1000)}")
        doc["specs"][f"k{len(doc['specs'])}"] = rng.random()
    return json.dumps(doc, separators=(",", ":"))


DOC = _document()

# test -> (zan's command, redis-server's command); None: load only.
TESTS = {
    "pfadd": (["pfadd", "hll", "e__rand_int__"],) * 2,
    "pfcount": (["pfcount", "hll"],) * 2,
    "geoadd": (["geoadd", "geo", "13.361389", "38.115556", "m__rand_int__"],) * 2,
    # Away from where GEOADD piles its members up: ~25 of the random points in reach.
    "geosearch": (["geosearch", "geo", "fromlonlat", "100", "10", "byradius", "200", "km",
                   "count", "10", "asc"],) * 2,
    "json.set": (["json.set", "doc:__rand_int__", "$", DOC], ["set", "doc:__rand_int__", DOC]),
    "json.get": (["json.get", "doc"], ["get", "doc"]),
}


def _load(port: int, points: int, json_doc: bool) -> None:
    rng = random.Random(11)
    lines = [_command(b"geoadd", b"geo", b"%.6f" % rng.uniform(-180, 180),
                      b"%.6f" % rng.uniform(-85, 85), b"p%d" % i) for i in range(points)]
    lines.append(_command(b"pfadd", b"hll", *[b"x%d" % i for i in range(1000)]))
    lines.append(_command(b"json.set", b"doc", b"$", DOC.encode()) if json_doc
                 else _command(b"set", b"doc", DOC.encode()))
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=b"".join(lines),
                   capture_output=True, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=50000)
    ap.add_argument("--points", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="zan-types-bench-")
    aof_port = free_port()
    aof_dir = os.path.join(tmp, "redis-aof")
    os.makedirs(aof_dir)
    zan_dir = os.path.join(tmp, "zan")
    os.makedirs(zan_dir)
    zan = zan_server(zan_dir, free_port(), free_port())
    redis = Server("redis-aof", ["redis-server", "--port", str(aof_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                 "--dir", aof_dir], aof_port)
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        for s in (zan, redis):
            s.start()
            _load(s.port, args.points, json_doc=s is zan)
        for rnd in range(args.rounds):
            for test, (zan_cmd, redis_cmd) in TESTS.items():
                order = (zan, redis) if rnd % 2 == 0 else (redis, zan)
                for s in order:
                    words = zan_cmd if s is zan else redis_cmd
                    try:
                        rate = _benchmark_figure(["-r", "100000", *words], s.port, args.n)
                    except RuntimeError:
                        rate = None
                    figures.setdefault((test, s.name), []).append(rate)
        print(f"\nrequests/s, redis-benchmark -c 50 -n {args.n}, median of {args.rounds} "
              f"round(s); redis-server with appendfsync always\n")
        print(f"{'test':<10} {'zan':>10} {'redis-aof':>10} {'zan/redis':>10}")
        for test in TESTS:
            z = _median(figures[(test, zan.name)])
            r = _median(figures[(test, redis.name)])
            print(f"{test:<10} {_figure(z):>10} {_figure(r):>10} {_ratio(z, r):>10}")
    finally:
        for s in (zan, redis):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


if __name__ == "__main__":
    main()
