"""EtcdClient against FakeEtcd: every method, etcd's error codes, failover and timeouts."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError

from tests.unit.etcd_support import Env, pending, result
from zan.etcd.errors import (
    DirNotEmpty, EtcdError, EtcdProtocolError, EtcdUnavailable, EventIndexCleared,
    KeyNotFound, NodeExist, NotDir, NotFile, RootReadOnly, TestFailed,
)


@pytest.fixture
def env():
    return Env()


def test_set_get_and_indexes(env):
    r = env.run(env.client.set("/a/b", "v1"))
    assert (r.action, r.node.key, r.node.value, r.prev_node) == ("set", "/a/b", "v1", None)
    assert r.node.created_index == r.node.modified_index == r.etcd_index == 1
    r2 = env.run(env.client.set("a/b", "v2"))
    assert r2.prev_node.value == "v1" and r2.node.modified_index == 2 == r2.etcd_index
    got = env.run(env.client.get("/a/b"))
    assert (got.action, got.node.value, got.etcd_index) == ("get", "v2", 2)
    assert not got.node.dir and got.node.ttl is None


def test_errors_do_not_consume_an_index(env):
    env.run(env.client.set("/k", "v"))
    with pytest.raises(NodeExist) as e:
        env.run(env.client.create("/k", "w"))
    assert e.value.error_code == 105 and e.value.cause == "/k" and e.value.index == 1
    assert env.fake.index == 1
    assert env.run(env.client.get("/k")).node.value == "v"


def test_create_update(env):
    r = env.run(env.client.create("/c", "1"))
    assert r.action == "create"
    with pytest.raises(KeyNotFound) as e:
        env.run(env.client.update("/missing", "x"))
    assert e.value.cause == "/missing" and isinstance(e.value, EtcdError)
    r = env.run(env.client.update("/c", "2"))
    assert (r.action, r.node.value, r.prev_node.value) == ("update", "2", "1")


def test_key_not_found_names_the_first_missing_component(env):
    with pytest.raises(KeyNotFound) as e:
        env.run(env.client.get("/x/y/z"))
    assert e.value.cause == "/x" and e.value.error_code == 100


def test_compare_and_swap(env):
    idx = env.run(env.client.set("/k", "old")).node.modified_index
    with pytest.raises(TestFailed) as e:
        env.run(env.client.compare_and_swap("/k", "new", prev_value="other"))
    assert e.value.error_code == 101 and e.value.cause == "[other != old]"
    with pytest.raises(TestFailed) as e:
        env.run(env.client.compare_and_swap("/k", "new", prev_index=idx + 7))
    assert e.value.cause == f"[{idx + 7} != {idx}]"
    r = env.run(env.client.compare_and_swap("/k", "new", prev_value="old", prev_index=idx))
    assert (r.action, r.node.value) == ("compareAndSwap", "new")
    with pytest.raises(KeyNotFound):
        env.run(env.client.compare_and_swap("/nope", "x", prev_index=1))
    env.run(env.client.mkdir("/d"))
    with pytest.raises(NotFile):
        env.run(env.client.compare_and_swap("/d", "x", prev_index=1))
    with pytest.raises(ValueError):
        env.run(env.client.compare_and_swap("/k", "x"))


def test_compare_and_delete(env):
    idx = env.run(env.client.set("/k", "v")).node.modified_index
    with pytest.raises(TestFailed):
        env.run(env.client.compare_and_delete("/k", prev_value="w"))
    with pytest.raises(TestFailed):
        env.run(env.client.compare_and_delete("/k", prev_index=idx + 1))
    r = env.run(env.client.compare_and_delete("/k", prev_value="v", prev_index=idx))
    assert r.action == "compareAndDelete" and r.prev_node.value == "v" and r.node.value is None
    with pytest.raises(KeyNotFound):
        env.run(env.client.compare_and_delete("/k", prev_value="v"))


def test_directories(env):
    r = env.run(env.client.mkdir("/d"))
    assert r.node.dir and r.node.value is None
    with pytest.raises(NodeExist):
        env.run(env.client.mkdir("/d"))
    for name in ("z", "a", "m"):
        env.run(env.client.set(f"/d/{name}", name))
    env.run(env.client.set("/d/sub/leaf", "x"))
    top = env.run(env.client.get("/d", sorted=True)).node
    assert [n.name for n in top.nodes] == ["a", "m", "sub", "z"]
    assert top.child("sub").dir and top.child("sub").nodes == ()
    deep = env.run(env.client.get("/d", recursive=True, sorted=True)).node
    assert [n.key for n in deep.leaves()] == ["/d/a", "/d/m", "/d/sub/leaf", "/d/z"]
    with pytest.raises(NotFile) as e:
        env.run(env.client.delete("/d"))
    assert e.value.error_code == 102
    with pytest.raises(DirNotEmpty):
        env.run(env.client.delete("/d", dir=True))
    with pytest.raises(NotFile):
        env.run(env.client.set("/d", "value on a dir"))
    with pytest.raises(NotDir) as e:
        env.run(env.client.set("/d/a/below", "x"))
    assert e.value.cause == "/d/a"
    r = env.run(env.client.delete("/d", recursive=True))
    assert r.action == "delete" and r.node.dir
    with pytest.raises(KeyNotFound):
        env.run(env.client.get("/d/a"))
    env.run(env.client.mkdir("/empty"))
    env.run(env.client.delete("/empty", dir=True))
    with pytest.raises(RootReadOnly):
        env.run(env.client.delete("/", recursive=True))


def test_ttl_expiry_and_refresh(env):
    r = env.run(env.client.set("/t", "v", ttl=10))
    assert r.node.ttl == 10 and r.node.expiration
    env.advance(4.5)
    assert env.run(env.client.get("/t")).node.ttl == 6  # rounded up, as etcd does
    w = env.start(env.client.watch("/t", wait_index=env.fake.index + 1))
    r = env.run(env.client.refresh_ttl("/t", 10))
    assert (r.node.value, r.node.ttl, r.etcd_index) == ("v", 10, 2)
    assert pending(w), "a refresh must not wake watchers"
    env.advance(9.5)
    assert env.run(env.client.get("/t")).node.value == "v"
    env.advance(1.0)
    ev = result(w, env.net)
    assert ev.action == "expire" and ev.prev_node.value == "v" and ev.node.modified_index == 3
    with pytest.raises(KeyNotFound):
        env.run(env.client.get("/t"))
    with pytest.raises(KeyNotFound):
        env.run(env.client.refresh_ttl("/t", 10))


def test_refresh_with_prev_value_and_set_without_ttl_clears_it(env):
    env.run(env.client.set("/t", "mine", ttl=5))
    with pytest.raises(TestFailed):
        env.run(env.client.refresh_ttl("/t", 5, prev_value="theirs"))
    r = env.run(env.client.refresh_ttl("/t", 5, prev_value="mine"))
    assert r.node.value == "mine" and r.action == "compareAndSwap"
    env.run(env.client.set("/t", "mine"))
    env.advance(30)
    assert env.run(env.client.get("/t")).node.ttl is None


def test_watch_history_and_pending(env):
    env.run(env.client.set("/w/a", "1"))
    env.run(env.client.set("/other", "x"))
    env.run(env.client.set("/w/b", "2"))
    ev = env.run(env.client.watch("/w", wait_index=1, recursive=True))
    assert (ev.node.key, ev.node.modified_index, ev.etcd_index) == ("/w/a", 1, 3)
    ev = env.run(env.client.watch("/w", wait_index=2, recursive=True))
    assert ev.node.key == "/w/b"
    flat = env.start(env.client.watch("/w", wait_index=2))  # not recursive: children don't count
    deep = env.start(env.client.watch("/w", wait_index=4, recursive=True))
    assert pending(flat) and pending(deep) and env.fake.watcher_count == 2
    env.run(env.client.set("/w/c", "3"))
    ev = result(deep, env.net)
    assert (ev.action, ev.node.key, ev.node.value, ev.etcd_index) == ("set", "/w/c", "3", 3)
    assert pending(flat)
    env.run(env.client.delete("/w", recursive=True))
    assert result(flat, env.net).action == "delete"


def test_deleting_a_directory_wakes_watchers_inside_it(env):
    env.run(env.client.set("/p/q/r", "1"))
    w = env.start(env.client.watch("/p/q/r", wait_index=2))
    env.run(env.client.delete("/p", recursive=True))
    ev = result(w, env.net)
    assert ev.action == "delete" and ev.node.key == "/p"


def test_event_index_cleared():
    env = Env(history_size=5)
    for i in range(8):
        env.run(env.client.set("/k", str(i)))
    with pytest.raises(EventIndexCleared) as e:
        env.run(env.client.watch("/k", wait_index=2))
    assert e.value.error_code == 401 and e.value.index == 8
    assert env.run(env.client.watch("/k", wait_index=4)).node.value == "3"


def test_default_history_is_about_a_thousand_events(env):
    for i in range(1003):
        env.fake._commit("set", "/k", {"key": "/k", "value": str(i)}, None)
    env.run(env.client.watch("/k", wait_index=4))
    with pytest.raises(EventIndexCleared):
        env.run(env.client.watch("/k", wait_index=3))


def test_idle_watch_outlives_the_request_timeout_then_returns_none(env):
    w = env.start(env.client.watch("/idle", recursive=True))
    env.advance(env.timeout * 3)  # headers came at once: the request timeout does not apply
    assert pending(w) and env.fake.watcher_count == 1
    env.advance(env.watch_timeout)
    assert result(w, env.net) is None
    assert env.fake.watcher_count == 0  # the long poll's connection was closed


def test_cancelling_a_watch_closes_it(env):
    w = env.start(env.client.watch("/x"))
    w.cancel()
    with pytest.raises(CancelledError):
        result(w, env.net)
    assert env.fake.watcher_count == 0


def test_failover_to_the_next_endpoint_and_remember_it():
    env = Env(endpoints=("http://e1:2379", "e2:2379", "http://e3:2379/"))
    env.net.refuse("e1:2379")
    env.run(env.client.set("/k", "v"))
    assert env.client.current_endpoint == "http://e2:2379"
    assert env.net.attempts == ["e1:2379", "e2:2379"]
    env.run(env.client.get("/k"))
    assert env.net.attempts[-1] == "e2:2379" and len(env.net.attempts) == 3
    env.net.refuse("e2:2379")
    assert env.run(env.client.get("/k")).node.value == "v"
    assert env.client.current_endpoint == "http://e3:2379"


def test_all_endpoints_down():
    env = Env(endpoints=("http://e1:2379", "http://e2:2379"))
    env.net.refuse("e1:2379")
    env.net.refuse("e2:2379")
    with pytest.raises(EtcdUnavailable) as e:
        env.run(env.client.get("/k"))
    assert "e1:2379" in str(e.value) and "e2:2379" in str(e.value)


def test_request_timeout_moves_on():
    env = Env(endpoints=("http://e1:2379", "http://e2:2379"))
    env.net.blackhole("e1:2379")
    d = env.start(env.client.set("/k", "v"))
    env.advance(env.timeout - 0.5)
    assert pending(d)
    env.advance(0.5)
    assert result(d, env.net).node.value == "v"
    assert env.client.current_endpoint == "http://e2:2379"
    assert all(h.called for h in env.net.hung)  # the hung request was cancelled


def test_timeout_everywhere_is_unavailable(env):
    env.fake.stalled = True  # accepts the connection, never answers
    d = env.start(env.client.get("/k"))
    env.advance(env.timeout)
    with pytest.raises(EtcdUnavailable):
        result(d, env.net)


def test_answer_that_is_not_etcd_is_a_protocol_error():
    env = Env(endpoints=("http://e1:2379/not-etcd",))
    with pytest.raises(EtcdProtocolError):
        env.run(env.client.get("/k"))


def test_keys_and_values_are_encoded(env):
    key, value = "/ns/a b?c&d=%", "x=1&y=ü\n"
    env.run(env.client.set(key, value))
    assert env.run(env.client.get(key)).node.value == value
    assert env.fake.value(key) == value
