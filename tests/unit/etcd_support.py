"""Shared set-up for the etcd unit tests: a FakeEtcd behind fake endpoints, on a Clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from zan.etcd.client import EtcdClient
from zan.etcd.testing import FakeEtcd, FakeEtcdNetwork


class Env:
    def __init__(self, endpoints=("http://e1:2379",), history_size=1000, timeout=5.0,
                 watch_timeout=60.0):
        self.clock = Clock()
        self.fake = FakeEtcd(self.clock, history_size=history_size)
        self.net = FakeEtcdNetwork(self.fake)
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.watch_timeout = watch_timeout
        self.client = self.new_client()

    def new_client(self) -> EtcdClient:
        return EtcdClient(self.clock, self.endpoints, http_client=self.net.client,
                          timeout=self.timeout, watch_timeout=self.watch_timeout)

    def start(self, coro) -> Deferred:
        d = Deferred.fromCoroutine(coro)
        self.net.flush()
        return d

    def advance(self, seconds: float, step: float = 0.5) -> None:
        while seconds > 1e-9:
            s = min(step, seconds)
            self.clock.advance(s)
            self.net.flush()
            seconds -= s

    def run(self, coro):
        """Run a client call to completion and return its result (or raise its error)."""
        return result(self.start(coro), self.net)


def result(d: Deferred, net=None):
    if net is not None:
        net.flush()
    box = []
    d.addBoth(box.append)
    assert box, "the call has not completed"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def pending(d: Deferred) -> bool:
    return not d.called
