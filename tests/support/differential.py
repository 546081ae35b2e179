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
