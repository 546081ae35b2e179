"""RespClientProtocol and RespClientPool over in-memory transports."""

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from zan.resp.client import ReplyError, RespClientPool, RespClientProtocol
from zan.resp.protocol import RespServerFactory
from zan.resp.types import NULL_ARRAY, OK, SimpleString


def client(timeout=None):
    clock = Clock()
    proto = RespClientProtocol(clock, timeout)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def results(d):
    out = []
    d.addBoth(out.append)
    return out


def test_pipelined_fifo_and_reply_types():
    proto, transport, _ = client()
    ds = [proto.execute(b"GET", "k"), proto.execute("SET", "k", 1), proto.execute("X"), proto.execute("L")]
    assert transport.value() == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*1\r\n$1\r\nX\r\n*1\r\n$1\r\nL\r\n"
    got = [results(d) for d in ds]
    proto.dataReceived(b"$-1\r\n+OK\r\n-WRONGTYPE Operation against a key\r")
    assert got[0] == [None] and got[1] == [OK] and type(got[1][0]) is SimpleString
    assert got[2] == []
    proto.dataReceived(b"\n*3\r\n:1\r\n*-1\r\n-ERR inner\r\n")
    assert isinstance(got[2][0], Failure) and got[2][0].check(ReplyError)
    assert got[2][0].value.resp_message() == "WRONGTYPE Operation against a key"
    value = got[3][0]
    assert value[:2] == [1, NULL_ARRAY] and isinstance(value[2], ReplyError)


def test_connection_lost_fails_all_pending_and_later_calls():
    proto, transport, _ = client()
    got = [results(proto.execute("PING")) for _ in range(3)]
    proto.connectionLost(Failure(ConnectionLost()))
    assert all(g[0].check(ConnectionLost) for g in got)
    assert results(proto.execute("PING"))[0].check(ConnectionLost)
    assert proto.closed.called


def test_timeout_fails_pending_and_aborts():
    proto, transport, clock = client(timeout=5)
    a = results(proto.execute("PING"))
    clock.advance(3)
    proto.dataReceived(b"+PONG\r\n")
    b = results(proto.execute("PING"))
    clock.advance(4)
    assert b == []
    clock.advance(1.5)
    assert a == [SimpleString(b"PONG")]
    assert b[0].check(defer.TimeoutError)
    assert transport.disconnecting or getattr(transport, "aborted", False) or not transport.connected


def test_against_the_server_protocol_in_memory():
    class Echo:
        def dispatch(self, client, argv):
            return argv if argv[0] != b"OK" else OK

    server_factory = RespServerFactory(Echo(), Clock())
    client_proto, _server, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: RespClientProtocol(Clock())
    )
    got = [results(client_proto.execute("a", b"\x00\xff", 3)), results(client_proto.execute("OK")), results(client_proto.execute(b"*1\r\n"))]
    pump.flush()
    assert got == [[[b"a", b"\x00\xff", b"3"]], [OK], [[b"*1\r\n"]]]


def test_pool_connects_lazily_and_reconnects():
    reactor = MemoryReactorClock()
    pool = RespClientPool(reactor, "127.0.0.1", 6379, size=2)
    assert reactor.tcpClients == []
    d = pool.execute("PING")
    assert len(reactor.tcpClients) == 1
    host, port, factory, *_ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 6379)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.value() == b"*1\r\n$4\r\nPING\r\n"
    proto.dataReceived(b"+PONG\r\n")
    assert results(d) == [SimpleString(b"PONG")]
    pool.execute("GET", "k")  # reuses the open connection
    assert len(reactor.tcpClients) == 1
    proto.connectionLost(Failure(ConnectionLost()))
    pool.execute("PING")
    assert len(reactor.tcpClients) == 2


def test_pool_connect_failure_fails_waiters():
    reactor = MemoryReactorClock()
    pool = RespClientPool(reactor, "127.0.0.1", 1, size=1)
    a, b = results(pool.execute("PING")), results(pool.execute("PING"))
    assert len(reactor.tcpClients) == 1
    from twisted.internet.error import ConnectionRefusedError

    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert a[0].check(ConnectionRefusedError) and b[0].check(ConnectionRefusedError)
