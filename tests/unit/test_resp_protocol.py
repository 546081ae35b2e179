"""RespServerProtocol over StringTransport with a fake dispatcher and a Clock."""


from twisted.internet.address import IPv4Address as TwistedIPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from zan.errors import RespError
from zan.resp.encoder import encode_command
from zan.resp.protocol import ClientState, Dispatcher, RespServerFactory
from zan.resp.types import OK


class FakeDispatcher:
    """ECHO replies at once; WAIT returns a Deferred kept in `waiting`; BOOM raises; QUIT closes."""

    def __init__(self):
        self.seen = []
        self.waiting = {}
        self.closed = []

    def dispatch(self, client, argv):
        self.seen.append(argv)
        name = argv[0].upper()
        if name == b"ECHO":
            return argv[1]
        if name == b"WAIT":
            d = Deferred()
            self.waiting[argv[1]] = d
            return d
        if name == b"FAIL":
            raise RespError("WRONGTYPE Operation against a key holding the wrong kind of value")
        if name == b"BOOM":
            raise KeyError("bug")
        if name == b"QUIT":
            client.close_after_reply = True
            return OK
        if name == b"DONE":
            return succeed(b"done")
        return fail(RespError(f"ERR unknown command '{argv[0].decode()}'"))

    def connection_closed(self, client):
        self.closed.append(client.id)


class WriteCountingTransport(StringTransport):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


def connect(dispatcher=None, **kw):
    dispatcher = dispatcher or FakeDispatcher()
    clock = Clock()
    clock.advance(1000)
    factory = RespServerFactory(dispatcher, clock, **kw)
    proto = factory.buildProtocol(TwistedIPv4Address("TCP", "10.0.0.7", 4242))
    transport = WriteCountingTransport()
    proto.makeConnection(transport)
    return proto, transport, dispatcher, clock, factory


def cmds(*argvs):
    return b"".join(encode_command(a) for a in argvs)


def test_client_state_and_dispatcher_protocol():
    proto, transport, dispatcher, clock, factory = connect()
    assert isinstance(dispatcher, Dispatcher)
    c = proto.client
    assert isinstance(c, ClientState)
    assert (c.id, c.addr, c.created, c.protocol_version, c.authenticated) == (1, "10.0.0.7:4242", 1000, 2, True)
    assert factory.connections == {1: proto}
    assert factory.buildProtocol(None).client.id == 2


def test_synchronous_replies_in_one_write():
    proto, transport, *_ = connect()
    proto.dataReceived(cmds([b"ECHO", b"a"], [b"ECHO", b"b"]) + b"ECHO c\r\n")
    assert transport.value() == b"$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    assert transport.writes == 1


def test_out_of_order_deferreds_reply_in_command_order():
    proto, transport, d, clock, _ = connect()
    proto.dataReceived(cmds([b"WAIT", b"1"], [b"ECHO", b"x"], [b"WAIT", b"2"], [b"ECHO", b"y"], [b"DONE"]))
    assert transport.value() == b""
    d.waiting[b"2"].callback(b"second")
    clock.advance(0)
    assert transport.value() == b""
    d.waiting[b"1"].callback(b"first")
    assert transport.value() == b""      # replies completed in a turn go out at its end
    clock.advance(0)
    assert transport.value() == b"$5\r\nfirst\r\n$1\r\nx\r\n$6\r\nsecond\r\n$1\r\ny\r\n$4\r\ndone\r\n"


def test_errors_raised_and_failed():
    proto, transport, *_ = connect()
    proto.dataReceived(cmds([b"FAIL"], [b"nope"]))
    assert transport.value() == (
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n-ERR unknown command 'nope'\r\n"
    )


def test_internal_exception_is_logged_and_connection_survives():
    proto, transport, *_ = connect()
    with capturedLogs() as events:
        proto.dataReceived(cmds([b"BOOM"], [b"ECHO", b"ok"]))
    assert transport.value() == b"-ERR internal error\r\n$2\r\nok\r\n"
    assert any(e.get("log_failure") is not None and e["log_failure"].check(KeyError) for e in events)
    assert transport.connected and not transport.disconnecting


def test_deferred_internal_failure():
    proto, transport, d, clock, _ = connect()
    proto.dataReceived(cmds([b"WAIT", b"1"]))
    with capturedLogs() as events:
        d.waiting[b"1"].errback(ValueError("bug"))
    clock.advance(0)
    assert transport.value() == b"-ERR internal error\r\n"
    assert events


def test_protocol_error_after_preceding_replies_then_close():
    proto, transport, d, clock, _ = connect()
    proto.dataReceived(cmds([b"ECHO", b"a"], [b"WAIT", b"1"]) + b"*1\r\n*1\r\n" + cmds([b"ECHO", b"never"]))
    assert transport.value() == b"$1\r\na\r\n"
    assert not transport.disconnecting
    d.waiting[b"1"].callback(b"late")
    clock.advance(0)
    assert transport.value() == b"$1\r\na\r\n$4\r\nlate\r\n-ERR Protocol error: expected '$', got '*'\r\n"
    assert transport.disconnecting
    assert [a[0] for a in d.seen] == [b"ECHO", b"WAIT"]


def test_quit_closes_after_its_reply_and_ignores_the_rest():
    proto, transport, d, *_ = connect()
    proto.dataReceived(cmds([b"ECHO", b"a"], [b"QUIT"], [b"ECHO", b"b"]))
    assert transport.value() == b"$1\r\na\r\n+OK\r\n"
    assert transport.disconnecting
    assert len(d.seen) == 2


def test_transport_back_pressure_pauses_reading_and_commands():
    proto, transport, d, *_ = connect()
    proto.pauseProducing()
    assert transport.producerState == "paused"
    proto.dataReceived(cmds([b"ECHO", b"a"]))
    assert d.seen == [] and transport.value() == b""
    proto.resumeProducing()
    assert transport.producerState == "producing"
    assert transport.value() == b"$1\r\na\r\n"


def test_too_many_pending_replies_pause_reading():
    proto, transport, d, clock, _ = connect(max_pending=2)
    proto.dataReceived(cmds([b"WAIT", b"1"], [b"WAIT", b"2"], [b"ECHO", b"x"], [b"WAIT", b"3"]))
    assert len(d.seen) == 2
    assert transport.producerState == "paused"
    d.waiting[b"1"].callback(b"one")
    clock.advance(0)
    assert transport.value() == b"$3\r\none\r\n"
    assert [a[0] for a in d.seen] == [b"WAIT", b"WAIT", b"ECHO"]
    d.waiting[b"2"].callback(b"two")
    clock.advance(0)
    assert len(d.seen) == 4
    assert transport.producerState == "producing"
    d.waiting[b"3"].callback(b"three")
    clock.advance(0)
    assert transport.value() == b"$3\r\none\r\n$3\r\ntwo\r\n$1\r\nx\r\n$5\r\nthree\r\n"


def test_connection_lost_drops_pending_results_quietly():
    proto, transport, d, clock, factory = connect()
    proto.dataReceived(cmds([b"WAIT", b"1"], [b"WAIT", b"2"]))
    proto.connectionLost(None)
    assert d.closed == [1] and factory.connections == {}
    with capturedLogs() as events:
        d.waiting[b"1"].callback(b"x")
        d.waiting[b"2"].errback(RespError("ERR gone"))
    assert transport.value() == b""
    assert not [e for e in events if e.get("log_level") and e["log_level"].name in ("error", "critical")]
    assert d.waiting[b"2"].called and d.waiting[b"2"].result is None  # failure consumed


def test_idle_timeout_uses_injected_clock():
    proto, transport, d, clock, _ = connect(idle_timeout=300)
    clock.advance(200)
    proto.dataReceived(cmds([b"ECHO", b"a"]))
    clock.advance(200)
    assert not transport.disconnecting
    clock.advance(100)
    assert transport.disconnecting


def test_auth_required_sets_unauthenticated_limits():
    proto, transport, d, *_ = connect(auth_required=True)
    assert proto.client.authenticated is False
    proto.dataReceived(b"*11\r\n")
    assert transport.value() == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    assert transport.disconnecting
