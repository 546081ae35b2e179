"""Watcher against FakeEtcd: rescans on events, recovers from 401 and from outages."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from tests.unit.etcd_support import Env
from zan.etcd.watch import Backoff, Watcher


class Recorder:
    def __init__(self):
        self.calls = []
        self.gate: Deferred | None = None

    def __call__(self, node, index):
        self.calls.append((node, index))
        return self.gate

    def values(self, i=-1):
        node = self.calls[i][0]
        return None if node is None else {n.key: n.value for n in node.leaves()}


def gets(env):
    return sum(1 for m, uri in env.fake.requests if m == "GET" and "wait=" not in uri)


def test_initial_scan_then_rescan_on_each_change():
    env = Env()
    env.run(env.client.set("/ns/a", "1"))
    rec = Recorder()
    w = Watcher(env.client, "/ns", rec, env.clock)
    w.start()
    env.net.flush()
    assert rec.values() == {"/ns/a": "1"} and rec.calls[-1][1] == 1
    assert env.fake.watcher_count == 1
    env.run(env.client.set("/ns/b/c", "2"))
    env.net.flush()
    assert rec.values() == {"/ns/a": "1", "/ns/b/c": "2"} and rec.calls[-1][1] == 2
    env.run(env.client.set("/elsewhere", "x"))
    env.net.flush()
    assert len(rec.calls) == 2
    env.run(env.client.delete("/ns/a"))
    env.net.flush()
    assert rec.values() == {"/ns/b/c": "2"}
    assert [i for _, i in rec.calls] == sorted(i for _, i in rec.calls)
    w.stop()


def test_changes_during_a_slow_callback_are_merged_not_lost():
    env = Env()
    rec = Recorder()
    rec.gate = Deferred()
    w = Watcher(env.client, "/ns", rec, env.clock)
    w.start()
    env.net.flush()
    assert rec.calls == [(None, 0)]  # a missing key is reported as None
    for i in range(3):
        env.run(env.client.set(f"/ns/k{i}", str(i)))
    gate, rec.gate = rec.gate, None
    gate.callback(None)
    env.net.flush()
    env.net.flush()
    assert rec.values() == {"/ns/k0": "0", "/ns/k1": "1", "/ns/k2": "2"}
    w.stop()


def test_event_index_cleared_rescans_and_continues():
    env = Env(history_size=3)
    env.run(env.client.set("/ns/a", "0"))
    rec = Recorder()
    rec.gate = Deferred()  # hold the watcher between its GET and its watch
    w = Watcher(env.client, "/ns", rec, env.clock)
    w.start()
    env.net.flush()
    for i in range(10):
        env.run(env.client.set("/other", str(i)))  # push the history past our index
    env.run(env.client.set("/ns/a", "late"))
    gate, rec.gate = rec.gate, None
    before = gets(env)
    with capturedLogs() as logs:
        gate.callback(None)
        env.net.flush()
    assert any("rescanning" in e.get("log_format", "") for e in logs)
    assert gets(env) == before + 1
    assert rec.values() == {"/ns/a": "late"} and rec.calls[-1][1] == env.fake.index
    assert env.fake.watcher_count == 1  # watching again, from the new index
    env.run(env.client.set("/ns/b", "b"))
    env.net.flush()
    assert rec.values()["/ns/b"] == "b"
    w.stop()


def test_outage_backs_off_then_recovers():
    env = Env()
    env.run(env.client.set("/ns/a", "1"))
    env.net.refuse("e1:2379")
    rec = Recorder()
    w = Watcher(env.client, "/ns", rec, env.clock, backoff=Backoff(initial=1.0, maximum=4.0))
    w.start()
    env.net.flush()
    times = []
    for _ in range(12):
        before = len(env.net.attempts)
        env.advance(1.0)
        if len(env.net.attempts) > before:
            times.append(env.clock.seconds())
    # attempts at 0, then after 1, 2, 4, 4, ... seconds
    assert times[:4] == [1.0, 3.0, 7.0, 11.0]
    assert rec.calls == []
    env.net.heal()
    env.advance(4.0)
    assert rec.values() == {"/ns/a": "1"}
    env.run(env.client.set("/ns/a", "2"))
    env.net.flush()
    assert rec.values() == {"/ns/a": "2"}
    # success resets the back-off
    assert w._backoff.failures == 0
    w.stop()


def test_idle_watch_is_renewed_from_the_same_index():
    env = Env(watch_timeout=10)
    rec = Recorder()
    w = Watcher(env.client, "/ns", rec, env.clock)
    w.start()
    env.net.flush()
    env.advance(35)
    waits = [uri for m, uri in env.fake.requests if "wait=true" in uri]
    assert len(waits) == 4 and len(set(waits)) == 1 and len(rec.calls) == 1
    env.run(env.client.set("/ns/x", "1"))
    env.net.flush()
    assert rec.values() == {"/ns/x": "1"}
    w.stop()


def test_stop_cancels_the_long_poll():
    env = Env()
    rec = Recorder()
    w = Watcher(env.client, "/ns", rec, env.clock)
    w.startService()
    env.net.flush()
    assert env.fake.watcher_count == 1 and w.active
    w.stopService()
    env.net.flush()
    assert env.fake.watcher_count == 0 and not w.active
    env.run(env.client.set("/ns/x", "1"))
    env.net.flush()
    env.advance(100)
    assert len(rec.calls) == 1


def test_stop_during_backoff():
    env = Env()
    env.net.refuse("e1:2379")
    w = Watcher(env.client, "/ns", Recorder(), env.clock)
    w.start()
    env.net.flush()
    assert env.clock.getDelayedCalls()
    w.stop()
    assert not [c for c in env.clock.getDelayedCalls() if c.active()]


def test_failing_callback_is_logged_and_the_watch_goes_on():
    env = Env()
    seen = []

    def boom(node, index):
        seen.append(index)
        raise RuntimeError("consumer bug")

    w = Watcher(env.client, "/ns", boom, env.clock)
    with capturedLogs() as logs:
        w.start()
        env.net.flush()
        env.run(env.client.set("/ns/x", "1"))
        env.net.flush()
    assert seen == [0, 1]
    assert sum(1 for e in logs if "log_failure" in e) == 2
    w.stop()
