import pytest

from tests.support.harness import PartitionHarness
from tests.support.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server 7 for differential tests, shared by the session; DEBUG is
    enabled, as it always is on Zan."""
    server = RedisServer("--enable-debug-command", "yes").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server):
    client = redis_server.client()
    client.call("FLUSHALL")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def part(tmp_path):
    h = PartitionHarness(str(tmp_path / "p0"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def zan_node():
    """A fresh standalone `twistd -n zan-node` process (killed at teardown)."""
    from tests.support.node import ZanNode
    node = ZanNode().start()
    try:
        yield node
    finally:
        node.cleanup()
