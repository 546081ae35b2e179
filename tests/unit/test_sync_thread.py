"""The node's log-sync thread: runs each job off the caller's thread, in order, and hands
results and failures back through callFromThread."""

import queue
import threading

from zan.node.service import _SyncThread


class _Reactor:
    def __init__(self):
        self.calls: queue.SimpleQueue = queue.SimpleQueue()

    def callFromThread(self, f, *args):
        self.calls.put((f, args))

    def run_one(self):
        f, args = self.calls.get(timeout=10)
        f(*args)


def test_results_and_failures_come_back_in_order():
    reactor = _Reactor()
    runner = _SyncThread(reactor)
    threads = []

    def ok():
        threads.append(threading.current_thread())
        return 42

    def boom():
        raise OSError("disk gone")

    d1, d2, d3 = runner(ok), runner(boom), runner(ok)
    for _ in range(3):
        reactor.run_one()
    assert d1.result == 42 and d3.result == 42
    failures = []
    d2.addErrback(failures.append)
    assert failures[0].check(OSError)
    assert threads and all(t is not threading.current_thread() for t in threads)
    runner.stop()
