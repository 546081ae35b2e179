"""No acknowledged write is lost when the node is killed with SIGKILL mid-load."""

import threading
import time

import pytest

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def _writer(port, wid, acked, stop):
    try:
        c = RawClient(port, timeout=5)
    except OSError:
        return
    i = 0
    try:
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
    except (OSError, ConnectionError):
        return
    finally:
        c.close()


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
