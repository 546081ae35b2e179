"""A pipelined RESP2 client, for forwarding commands to another node, tools and tests.

`RespClientProtocol` follows twisted.protocols.memcache: each `execute` writes one command and
queues a Deferred; replies arrive in order and fire the queue FIFO.  Replies keep their RESP type
so a forwarder can relay them byte for byte through `zan.resp.encoder.encode`: bulk → bytes,
status → `SimpleString`, integer → int, null bulk → None, null array → `NULL_ARRAY`, array →
list, error → a `ReplyError` failure (inside arrays, a `ReplyError` value) carrying the server's
exact text.

`RespClientPool` keeps a few lazily opened connections to one server and reconnects after loss.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from zan.errors import ProtocolError, RespError
from zan.netutil import no_delay
from zan.resp.encoder import encode_command
from zan.resp.types import NULL_ARRAY, SimpleString

__all__ = ["ReplyError", "ReplyParser", "RespClientProtocol", "RespClientPool"]


class ReplyError(RespError):
    """An error reply received from a server; `resp_message()` is its text exactly as received."""

    def resp_message(self) -> str:
        return self.message


class ReplyParser:
    """Incremental parser of a RESP2 reply stream (sans-IO); iterate for complete replies.

    Raises `zan.errors.ProtocolError` on bytes that are not RESP2.
    """

    __slots__ = ("_buf", "_pos", "_stack", "_need")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._stack: list[tuple[list, int]] = []  # arrays being filled, with their sizes
        self._need = 0

    def feed(self, data: bytes) -> None:
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + data
        else:
            self._buf = data
        self._pos = 0

    def __iter__(self) -> ReplyParser:
        return self

    def __next__(self):
        buf = self._buf
        pos = self._pos
        n = len(buf)
        stack = self._stack
        if n - pos < self._need:
            raise StopIteration
        self._need = 0
        try:
            while True:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    raise StopIteration
                t = buf[pos]
                if t == 0x24:  # $
                    ln = int(buf[pos + 1 : nl])
                    if ln < 0:
                        value = None
                        pos = nl + 2
                    else:
                        end = nl + 2 + ln
                        if end + 2 > n:
                            self._need = end + 2 - pos
                            raise StopIteration
                        value = buf[nl + 2 : end]
                        pos = end + 2
                elif t == 0x2B:  # +
                    value = SimpleString(buf[pos + 1 : nl])
                    pos = nl + 2
                elif t == 0x3A:  # :
                    value = int(buf[pos + 1 : nl])
                    pos = nl + 2
                elif t == 0x2D:  # -
                    value = ReplyError(buf[pos + 1 : nl].decode("utf-8", "surrogateescape"))
                    pos = nl + 2
                elif t == 0x2A:  # *
                    ln = int(buf[pos + 1 : nl])
                    pos = nl + 2
                    if ln > 0:
                        stack.append(([], ln))
                        continue
                    value = [] if ln == 0 else NULL_ARRAY
                else:
                    raise ProtocolError(f"unexpected reply type byte {buf[pos:pos + 1]!r}")
                while stack:
                    items, size = stack[-1]
                    items.append(value)
                    if len(items) < size:
                        break
                    stack.pop()
                    value = items
                else:
                    self._pos = pos
                    return value
        except ValueError:
            raise ProtocolError("invalid length or integer in reply") from None
        finally:
            self._pos = pos


class RespClientProtocol(Protocol):
    """One connection; `execute` may be called many times without waiting (pipelining)."""

    _log = Logger()

    def __init__(self, clock: IReactorTime | None = None, timeout: float | None = None):
        self._clock = clock
        self._timeout = timeout
        self._pending: deque[Deferred] = deque()
        self._parser = ReplyParser()
        self._timer = None
        self._lost: Failure | None = None
        self._connected = False
        self.closed: Deferred = Deferred()  # fires (with None) when the connection is gone

    def usable(self) -> bool:
        """Connected and not failed: new commands can be sent."""
        return self._connected and self._lost is None

    def pending(self) -> int:
        return len(self._pending)

    def connectionMade(self) -> None:
        self._connected = True
        no_delay(self.transport)

    def execute(self, *argv) -> Deferred:
        """Send one command; the Deferred fires with its reply or fails with `ReplyError`."""
        if self._lost is not None:
            return defer.fail(self._lost)
        self.transport.write(encode_command(argv))
        d = Deferred()
        self._pending.append(d)
        if self._timeout is not None and self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._timed_out)
        return d

    def dataReceived(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            for reply in self._parser:
                if not self._pending:
                    raise ProtocolError("reply without a request")
                d = self._pending.popleft()
                if isinstance(reply, ReplyError):
                    d.errback(reply)
                else:
                    d.callback(reply)
        except ProtocolError as e:
            self._log.warn("bad reply stream from {peer}: {error}", peer=self.transport.getPeer(), error=e)
            self._fail_all(Failure(e))
            self.transport.abortConnection()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            if self._pending:
                self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        # Replies are FIFO: a late one would answer the wrong command, so the connection goes.
        self._timer = None
        self._fail_all(Failure(defer.TimeoutError(f"no reply within {self._timeout} s")))
        self.transport.abortConnection()

    def _fail_all(self, failure: Failure) -> None:
        if self._lost is None:
            self._lost = failure
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        for d in pending:
            d.errback(failure)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._fail_all(reason)
        if not self.closed.called:
            self.closed.callback(None)


class RespClientPool:
    """Up to `size` connections to one server, opened on demand and replaced after loss.

    Give either ``host`` and ``port`` (TCP) or ``endpoint_factory`` (a callable returning an
    `IStreamClientEndpoint`, e.g. for TLS or tests).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        host: str | None = None,
        port: int | None = None,
        *,
        endpoint_factory: Callable[[], IStreamClientEndpoint] | None = None,
        size: int = 4,
        timeout: float | None = None,
    ):
        if endpoint_factory is None:
            if host is None or port is None:
                raise ValueError("RespClientPool needs host and port, or endpoint_factory")
            endpoint_factory = lambda: TCP4ClientEndpoint(reactor, host, port)  # noqa: E731
        self._reactor = reactor
        self._endpoint_factory = endpoint_factory
        self._size = size
        self._timeout = timeout
        self._conns: list[RespClientProtocol] = []
        self._connecting: list[list[Deferred]] = []  # waiters of each connection being opened
        self._attempts: list[Deferred] = []
        self._closed = False

    def execute(self, *argv) -> Deferred:
        """Send one command on the least busy connection, connecting first if none is open."""
        if self._closed:
            return defer.fail(ConnectionDone("pool closed"))
        proto = None
        for p in self._conns:
            if p.usable() and (proto is None or p.pending() < proto.pending()):
                proto = p
        if proto is not None:
            if proto.pending() and len(self._conns) + len(self._connecting) < self._size:
                self._connect()  # grow in the background
            return proto.execute(*argv)
        waiters = self._connecting[0] if self._connecting else self._connect()
        d = Deferred()
        waiters.append(d)
        return d.addCallback(lambda p: p.execute(*argv))

    def _connect(self) -> list[Deferred]:
        """Start one connection; returns the list of Deferreds to fire with it."""
        waiters: list[Deferred] = []
        self._connecting.append(waiters)
        proto = RespClientProtocol(self._reactor, self._timeout)
        d = connectProtocol(self._endpoint_factory(), proto)

        def done(result) -> None:
            self._connecting.remove(waiters)
            if isinstance(result, Failure):
                self._log.debug("cannot connect: {error}", error=result.value)
            elif self._closed:
                result.transport.loseConnection()
                result = Failure(ConnectionDone("pool closed"))
            else:
                self._conns.append(result)
                result.closed.addCallback(lambda _: self._conns.remove(result))
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(result)

        d.addBoth(done)
        self._attempts.append(d)
        d.addBoth(lambda _: self._attempts.remove(d))
        return waiters

    def close(self) -> Deferred:
        """Close every connection; fires when all are closed."""
        self._closed = True
        for d in list(self._attempts):
            d.cancel()
        waits = [p.closed for p in self._conns]
        for p in list(self._conns):
            p.transport.loseConnection()
        return defer.gatherResults(waits).addCallback(lambda _: None)
