"""LeaderLock and TTLRegistration against FakeEtcd, two contenders on one keyspace."""

from __future__ import annotations

from tests.unit.etcd_support import Env, result
from zan.etcd.client import EtcdClient
from zan.etcd.lock import LeaderLock, TTLRegistration

KEY = "/ZanRedisDBMetaData/c1/PDInfo/PDLeaderSession"


class Contender:
    def __init__(self, env: Env, name: str, endpoint: str, ttl: int = 30):
        self.env = env
        self.events = []
        self.client = EtcdClient(env.clock, [endpoint], http_client=env.net.client,
                                 timeout=env.timeout)
        self.lock = LeaderLock(self.client, KEY, name, env.clock, ttl=ttl,
                               on_elected=lambda: self.events.append(("elected", env.clock.seconds())),
                               on_lost=lambda: self.events.append(("lost", env.clock.seconds())))

    @property
    def kinds(self):
        return [k for k, _ in self.events]


def setup(ttl=30):
    env = Env()
    a = Contender(env, "pd-a", "http://a:2379", ttl)
    b = Contender(env, "pd-b", "http://b:2379", ttl)
    return env, a, b


def test_one_leader_refreshes_the_other_waits():
    env, a, b = setup()
    a.lock.start()
    env.net.flush()
    b.lock.start()
    env.net.flush()
    assert a.lock.is_leader and a.kinds == ["elected"]
    assert not b.lock.is_leader and b.lock.leader_value == "pd-a" and b.kinds == []
    assert env.fake.watcher_count == 1
    writes = env.fake.index
    env.advance(95)  # > 3 TTLs: only refreshes keep the key
    assert env.fake.value(KEY) == "pd-a"
    assert env.fake.index - writes == 9  # one refresh every ttl/3
    assert a.kinds == ["elected"] and b.kinds == []
    assert env.fake.watcher_count == 1, "refreshes must not wake the waiting contender"


def test_resign_hands_over():
    env, a, b = setup()
    a.lock.start()
    env.net.flush()
    b.lock.start()
    env.net.flush()
    result(a.lock.resign(), env.net)
    env.net.flush()
    assert a.kinds == ["elected", "lost"] and not a.lock.is_leader
    assert b.lock.is_leader and b.kinds == ["elected"] and env.fake.value(KEY) == "pd-b"
    result(b.lock.resign(), env.net)
    assert env.fake.value(KEY) is None


def test_loss_when_the_key_changes_hands_and_reacquire():
    env, a, b = setup()
    a.lock.start()
    env.net.flush()
    env.run(env.client.set(KEY, "intruder", ttl=30))  # e.g. an operator's hand
    env.advance(10)  # a's next refresh (CAS on its value) fails
    assert a.kinds == ["elected", "lost"] and a.lock.leader_value == "intruder"
    env.run(env.client.delete(KEY))
    env.net.flush()
    assert a.lock.is_leader and a.kinds == ["elected", "lost", "elected"]


def test_partitioned_leader_steps_down_before_the_other_takes_over():
    env, a, b = setup()
    a.lock.start()
    env.net.flush()
    b.lock.start()
    env.net.flush()
    env.net.refuse("a:2379")  # a can no longer refresh
    env.advance(60)
    assert a.kinds == ["elected", "lost"] and b.kinds == ["elected"]
    lost_at = a.events[1][1]
    elected_at = b.events[0][1]
    assert lost_at <= elected_at and lost_at <= 30 + 0.5
    env.net.heal("a:2379")
    env.advance(30)
    assert not a.lock.is_leader and b.lock.is_leader
    assert env.fake.value(KEY) == "pd-b"


def test_adopts_its_own_key_after_a_restart():
    env, a, _ = setup()
    env.run(env.client.create(KEY, "pd-a", ttl=30))
    a.lock.start()
    env.net.flush()
    assert a.lock.is_leader and a.kinds == ["elected"]
    assert env.run(env.client.get(KEY)).node.ttl == 30  # adopted by refreshing


def test_expiry_elects_the_waiting_contender():
    env, a, b = setup(ttl=9)
    env.run(env.client.create(KEY, "pd-dead", ttl=9))
    b.lock.start()
    env.net.flush()
    assert not b.lock.is_leader
    env.advance(8.5)
    assert not b.lock.is_leader
    env.advance(1)
    assert b.lock.is_leader and env.fake.value(KEY) == "pd-b"


def test_ttl_registration_refreshes_and_comes_back():
    env = Env()
    reg = TTLRegistration(env.client, "/c/DataNodes/Node-1", "info", env.clock, ttl=10,
                          refresh_interval=3)
    reg.start()
    env.net.flush()
    assert env.fake.value("/c/DataNodes/Node-1") == "info" and reg.registered
    env.advance(30)
    assert env.fake.value("/c/DataNodes/Node-1") == "info"
    env.run(env.client.delete("/c/DataNodes/Node-1"))
    env.advance(3)
    assert env.fake.value("/c/DataNodes/Node-1") == "info"
    reg.set_value("info2")
    env.advance(3)
    assert env.fake.value("/c/DataNodes/Node-1") == "info2"
    result(reg.stop(), env.net)
    assert env.fake.value("/c/DataNodes/Node-1") is None
    env.advance(30)
    assert env.fake.value("/c/DataNodes/Node-1") is None
