"""ZanClient against a real standalone `twistd zan-node`, with an in-process fake PD on a real
port whose map sends every partition to that node."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.web.server import Site

from tests.support.processes import free_port
from zan.client.cluster import ZanClient, txredisapi_connection
from zan.client.pd import DataNode, partition_of
from zan.client.testing import FakePD, make_node, uniform_map
from zan.resp.client import RespClientPool

pytestmark = pytest.mark.integration

NS = "default"          # the standalone node's namespace
PARTITIONS = 8          # its default partition count


@pytest.fixture
def reactor():
    from twisted.internet import reactor
    return reactor


class _SwitchingPD(FakePD):
    """Serves `first` once, then whatever is published."""

    def __init__(self, first, then):
        super().__init__()
        self.publish(first)
        self._then = then

    def render_GET(self, request):
        body = super().render_GET(request)
        if self._then is not None:
            self.publish(self._then)
            self._then = None
        return body


async def _with_pd(reactor, pd, fn):
    port = reactor.listenTCP(0, Site(pd), interface="127.0.0.1")
    try:
        await fn(f"127.0.0.1:{port.getHost().port}")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_on_a_real_node(zan_node, reactor):
    node = make_node("127.0.0.1", zan_node.redis_port)
    pd = FakePD()
    pd.publish(uniform_map(NS, PARTITIONS, node))

    async def body(pd_address):
        client = ZanClient(reactor, [pd_address], NS, command_timeout=10.0)
        try:
            await client.start()
            assert await client.execute("SET", "t:a", "1") == b"OK"
            assert await client.execute("GET", "default:t:a") == b"1"
            assert await client.execute("INCR", "t:a") == 2
            mapping = {f"t:k{i}": f"v{i}" for i in range(50)}
            assert await client.mset(mapping) is None
            keys = ["t:none", *mapping, "t:a"]
            assert await client.mget(*keys) == [None] + [v.encode() for v in mapping.values()] + [b"2"]
            assert await client.exists("t:k1", "t:k1", "t:none") == 2
            assert await client.delete("t:k1", "t:k2", "t:none") == 2
            scanned = [k async for k in client.scan("t", count=7)]
            want = {b"t:a"} | {f"t:k{i}".encode() for i in range(3, 50)} | {b"t:k0"}
            assert sorted(scanned) == sorted(want)
            assert [k async for k in client.scan("t", match="k4*", count=100)] \
                and all(k.startswith(b"t:k4") for k in [k async for k in client.scan("t", match="k4*")])

            # The node files each key under the partition the client computes.
            raw = RespClientPool(reactor, "127.0.0.1", zan_node.redis_port)
            try:
                import base64
                for pid in range(PARTITIONS):
                    cursor = base64.b64encode(b"%d:;" % pid)
                    nxt, got = await raw.execute(b"ADVSCAN", b"default:t:" + cursor, b"KV",
                                                 b"COUNT", b"1000")
                    assert nxt == b""
                    assert {k for k in want if partition_of(k, PARTITIONS) == pid} == set(got)
            finally:
                await raw.close()
        finally:
            await client.close()

    await _with_pd(reactor, pd, body)


@pytest_twisted.ensureDeferred
async def test_unreachable_leader_refreshes_the_map(zan_node, reactor):
    dead = DataNode(node_id="dead", broadcast_address="127.0.0.1", redis_port=free_port())
    good = make_node("127.0.0.1", zan_node.redis_port)
    pd = _SwitchingPD(uniform_map(NS, PARTITIONS, dead, epoch=1),
                      uniform_map(NS, PARTITIONS, good, epoch=2))

    async def body(pd_address):
        client = ZanClient(reactor, [pd_address], NS, refresh_interval=60.0)
        try:
            first = await client.start()
            assert first.epoch == 1
            assert await client.execute("SET", "t:x", "y") == b"OK"
            assert client.partition_map.epoch == 2
            assert await client.execute("GET", "t:x") == b"y"
        finally:
            await client.close()

    await _with_pd(reactor, pd, body)


@pytest_twisted.ensureDeferred
async def test_client_over_txredisapi(zan_node, reactor):
    pd = FakePD()
    pd.publish(uniform_map(NS, PARTITIONS, make_node("127.0.0.1", zan_node.redis_port)))

    async def body(pd_address):
        client = ZanClient(reactor, [pd_address], NS, conn_factory=txredisapi_connection)
        try:
            await client.start()
            assert await client.execute("SET", "t:tx", "123") in (b"OK", "OK")
            assert await client.execute("GET", "t:tx") == b"123"  # bytes, not int 123
            await client.mset({"t:tx1": "a", "t:tx2": "b"})
            assert await client.mget("t:tx2", "t:none", "t:tx1") == [b"b", None, b"a"]
            with pytest.raises(Exception) as e:
                await client.execute("LPUSH", "t:tx", "x")
            assert str(e.value).startswith("WRONGTYPE")
        finally:
            await client.close()

    await _with_pd(reactor, pd, body)
