"""Side-by-side runs of a command on a Zan node and on redis-server."""

from contextlib import contextmanager

from tests.support.harness import normalize
from tests.support.processes import RawClient


@contextmanager
def node_and_redis(zan_port: int, redis):
    """(client of the node, `redis`), both emptied first."""
    zan = RawClient(zan_port)
    zan.call("flushall")
    redis.call("flushall")
    try:
        yield zan, redis
    finally:
        zan.close()


def both(pair, *argv):
    zan, redis = pair
    return normalize(zan.call(*argv)), normalize(redis.call(*argv))


def check(pair, *argv, unordered=False):
    """Run argv on both; the replies must be equal (as sorted lists if `unordered`)."""
    mine, theirs = both(pair, *argv)
    if unordered and isinstance(mine, list) and isinstance(theirs, list):
        mine, theirs = sorted(mine), sorted(theirs)
    assert mine == theirs, (argv, mine, theirs)
    return mine


def watch_exec_rounds(zan_a, zan_b, red_a, red_b, rng, keys, writes, rounds: int) -> None:
    """Seeded transactions over two connections to each server: `a` WATCHes some keys,
    reads, queues writes and EXECs (or DISCARDs); `b` writes in between.  `writes` are
    functions key -> argv.  Every reply must match redis-server's."""
    def same(zan, red, *argv):
        check((zan, red), *argv)

    for _ in range(rounds):
        watched = rng.sample(keys, rng.randint(0, 2))
        if watched:
            same(zan_a, red_a, "WATCH", *watched)
        same(zan_a, red_a, "GET", rng.choice(keys))
        if rng.random() < 0.5:
            same(zan_b, red_b, *rng.choice(writes)(rng.choice(keys)))
        same(zan_a, red_a, "MULTI")
        for _ in range(rng.randint(0, 4)):
            same(zan_a, red_a, *rng.choice(writes)(rng.choice(keys)))
        if rng.random() < 0.3:
            same(zan_b, red_b, *rng.choice(writes)(rng.choice(keys)))
        same(zan_a, red_a, "DISCARD" if rng.random() < 0.1 else "EXEC")
