"""A client that half-closes its socket still gets every reply, then the connection closes."""

from twisted.internet.interfaces import IHalfCloseableProtocol

from tests.unit.test_resp_protocol import cmds, connect


def test_protocol_is_half_closeable():
    proto, *_ = connect()
    assert IHalfCloseableProtocol.providedBy(proto)


def test_synchronous_replies_are_written_before_closing():
    proto, transport, dispatcher, clock, factory = connect()
    proto.dataReceived(b"ECHO a\r\n" + cmds(["ECHO", "b"]))
    proto.readConnectionLost()
    assert transport.value() == b"$1\r\na\r\n$1\r\nb\r\n"
    assert transport.disconnecting


def test_pending_replies_are_awaited_then_the_connection_closes():
    proto, transport, dispatcher, clock, factory = connect()
    proto.dataReceived(cmds(["ECHO", "a"], ["WAIT", "w"], ["ECHO", "b"]))
    proto.readConnectionLost()
    assert transport.value() == b"$1\r\na\r\n"
    assert not transport.disconnecting
    dispatcher.waiting[b"w"].callback(b"late")
    clock.advance(0)
    assert transport.value() == b"$1\r\na\r\n$4\r\nlate\r\n$1\r\nb\r\n"
    assert transport.disconnecting


def test_commands_held_back_by_the_pending_limit_still_run():
    proto, transport, dispatcher, clock, factory = connect(max_pending=2)
    proto.dataReceived(cmds(["WAIT", "1"], ["WAIT", "2"], ["ECHO", "after"]))
    proto.readConnectionLost()
    assert [a[0] for a in dispatcher.seen] == [b"WAIT", b"WAIT"]
    dispatcher.waiting[b"1"].callback(b"one")
    dispatcher.waiting[b"2"].callback(b"two")
    clock.advance(0)
    assert dispatcher.seen[-1] == [b"ECHO", b"after"]
    assert transport.value() == b"$3\r\none\r\n$3\r\ntwo\r\n$5\r\nafter\r\n"
    assert transport.disconnecting


def test_a_partial_command_at_eof_is_dropped_silently():
    proto, transport, dispatcher, clock, factory = connect()
    proto.dataReceived(cmds(["ECHO", "a"]) + b"*2\r\n$4\r\nECHO\r\n$3\r\nfo")
    proto.readConnectionLost()
    assert transport.value() == b"$1\r\na\r\n"
    assert transport.disconnecting
    assert [a[0] for a in dispatcher.seen] == [b"ECHO"]


def test_protocol_error_before_eof_is_still_reported():
    proto, transport, dispatcher, clock, factory = connect()
    proto.dataReceived(cmds(["ECHO", "a"]) + b"*abc\r\n")
    proto.readConnectionLost()
    assert transport.value() == b"$1\r\na\r\n-ERR Protocol error: invalid multibulk length\r\n"
    assert transport.disconnecting


def test_eof_with_nothing_sent_closes():
    proto, transport, dispatcher, clock, factory = connect()
    proto.readConnectionLost()
    assert transport.value() == b""
    assert transport.disconnecting
