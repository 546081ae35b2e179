"""No acknowledged write is lost when the node is killed with SIGKILL mid-load."""

import threading
import time

import pytest

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def _with_client(port, body) -> None:
    """Run body(client) until it returns or the node goes away (it is being killed)."""
    try:
        c = RawClient(port, timeout=5)
    except OSError:
        return
    try:
        body(c)
    except (OSError, ConnectionError):
        return
    finally:
        c.close()


def _writer(port, wid, acked, stop):
    def load(c):
        i = 0
        while not stop.is_set():
            # A small pipeline per round trip, so the load spans several log syncs per turn.
            batch = [(f"w{wid}:k{i + j}", f"v{i + j}") for j in range(8)]
            for k, v in batch:
                c.send_raw(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                           % (len(k), k.encode(), len(v), v.encode()))
            for k, v in batch:
                if c.read_reply() != b"OK":
                    return
                acked.append((k, v))
            c.call("rpush", f"w{wid}:list", str(i))
            acked.append((f"w{wid}:list", i))
            i += 8
    _with_client(port, load)


@pytest.mark.parametrize("round_", range(2))
def test_kill_9_mid_load_keeps_acknowledged_writes(zan_node, round_):
    acked: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(zan_node.redis_port, w, acked, stop))
               for w in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.5 + round_)
    zan_node.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 500, "the load did not get going"
    zan_node.start()
    c = RawClient(zan_node.redis_port)
    lists = {}
    for k, v in acked:
        if k.endswith(":list"):
            lists[k] = max(lists.get(k, -1), v)
            continue
        assert c.call("get", k) == v.encode(), k
    for k, last in lists.items():
        items = c.call("lrange", k, "0", "-1")
        assert [int(x) for x in items[:len(items)]] == sorted(int(x) for x in items)
        assert int(items[-1]) >= last, k
    c.close()


def _pair_writer(port, wid, pairs, last, stop):
    """MSETs of pairs whose two keys lie in different partitions, one at a time; records
    the value of the last acknowledged MSET of each pair and the one in flight."""
    def load(c):
        i = 0
        while not stop.is_set():
            a, b = pairs[i % len(pairs)]
            value = f"w{wid}:{i}"
            last.setdefault((a, b), [None, None])[1] = value      # in flight
            if c.call("mset", a, value, b, value) != b"OK":
                return
            last[(a, b)] = [value, None]
            i += 1
    _with_client(port, load)


def test_kill_9_never_leaves_half_of_a_cross_partition_mset():
    """Cross-partition MSETs of key pairs under kill -9, three times: after each restart
    both keys of every pair hold the same value, the last acknowledged one or the one
    that was in flight."""
    from zan.node.namespaces import partition_of
    from tests.support.node import ZanNode

    pairs = []
    i = 0
    while len(pairs) < 40:
        a, b = f"pair{i}:a", f"pair{i}:b"
        if partition_of(a.encode(), 8) != partition_of(b.encode(), 8):
            pairs.append((a, b))
        i += 1
    last: dict = {}

    def writers(stop):
        last.clear()
        return [threading.Thread(target=_pair_writer,
                                 args=(node.redis_port, w, pairs[w::4], last, stop))
                for w in range(4)]

    def check():
        assert sum(1 for v in last.values() if v[0]) > 20, "the load did not get going"
        c = RawClient(node.redis_port)
        for (a, b), (acked, in_flight) in last.items():
            va, vb = c.call("get", a), c.call("get", b)
            assert va == vb, (a, va, b, vb)
            # Never acknowledged yet: the pair may also not exist.
            allowed = {v.encode() for v in (acked, in_flight) if v}
            if acked is None:
                allowed.add(None)
            assert va in allowed, (a, va, allowed)
        c.close()

    node = ZanNode().start()
    try:
        _kill_9_rounds(node, writers, check)
    finally:
        node.cleanup()


def _kill_9_rounds(node, make_threads, check, rounds: int = 3) -> None:
    """`rounds` times: run the client threads `make_threads(stop)` gives, kill -9 the
    node under their load, start it again and `check()` what it kept."""
    for round_ in range(rounds):
        stop = threading.Event()
        threads = make_threads(stop)
        for t in threads:
            t.start()
        time.sleep(1.0 + 0.5 * round_)
        node.kill()
        stop.set()
        for t in threads:
            t.join(10)
        node.start()
        check()


def _multi_exec_transfer(c, src, dst, amount) -> bool:
    c.call("multi")
    c.call("decrby", src, amount)
    c.call("incrby", dst, amount)
    return isinstance(c.call("exec"), list)


_TRANSFER_SCRIPT = ("redis.call('decrby', KEYS[1], ARGV[1]) "
                    "return redis.call('incrby', KEYS[2], ARGV[1])")


def _script_transfer(c, src, dst, amount) -> bool:
    return isinstance(c.call("eval", _TRANSFER_SCRIPT, "2", src, dst, amount), int)


def _transferer(port, wid, counters, stop, done, transfer):
    """Transfers between counters of different partitions, each one `transfer` call."""
    import random

    def load(c):
        rng = random.Random(wid)
        while not stop.is_set():
            src, dst = rng.sample(counters, 2)
            if not transfer(c, src, dst, str(rng.randint(1, 5))):
                return
            done.append(1)
    _with_client(port, load)


@pytest.mark.parametrize("transfer", [_multi_exec_transfer, _script_transfer],
                         ids=["multi_exec", "script"])
def test_kill_9_never_breaks_a_transfer(transfer):
    """Transfers between counters, with MULTI/EXEC or a script, under kill -9, three
    times: after each restart the counters still sum to what they started with."""
    from tests.support.node import ZanNode

    counters = [f"counter{i}" for i in range(10)]
    node = ZanNode().start()
    try:
        c = RawClient(node.redis_port)
        c.call("mset", *[x for k in counters for x in (k, "100")])
        c.close()
        done: list = []

        def transferers(stop):
            done.clear()
            return [threading.Thread(target=_transferer,
                                     args=(node.redis_port, w, counters, stop, done,
                                           transfer))
                    for w in range(4)]

        def check():
            assert len(done) > 20, "the load did not get going"
            c = RawClient(node.redis_port)
            values = [int(v) for v in c.call("mget", *counters)]
            c.close()
            assert sum(values) == 1000, values

        _kill_9_rounds(node, transferers, check)
    finally:
        node.cleanup()
