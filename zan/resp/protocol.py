"""The RESP server: a Twisted protocol between the socket and a command dispatcher.

One `RespServerProtocol` per connection feeds bytes to a `RequestParser`, hands each command to
`Dispatcher.dispatch(client, argv)` and writes the replies, in command order, whatever order the
Deferreds fire in.  It follows Redis's connection semantics:

* replies to a run of commands parsed from one read go out in one write; on a TCP socket that
  write happens at the end of the reactor turn, with every other connection's (Redis writes
  its replies before it sleeps, too);
* malformed input gets its error reply after the replies of the commands before it, then the
  connection is closed; the same happens after a command that set ``close_after_reply`` (QUIT);
* a client that does not read its replies, or that has too many replies outstanding, is not read
  from until it catches up (the protocol is a streaming producer of its transport);
* a client that half-closes its socket (``shutdown(SHUT_WR)``) still gets the replies of every
  command it sent, including those whose Deferreds are pending; then the connection is closed.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol, runtime_checkable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol, IPushProducer, IReactorTime
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from zan.errors import ProtocolError, RespError, ZanError
from zan.netutil import no_delay
from zan.resp.encoder import encode, encode_error
from zan.resp.types import SimpleString
from zan.resp.parser import (
    PROTO_INLINE_MAX_SIZE,
    PROTO_MAX_BULK_LEN,
    PROTO_MAX_MULTIBULK_LEN,
    RequestParser,
)

__all__ = ["ClientState", "Dispatcher", "RespServerProtocol", "RespServerFactory"]

# Transports whose socket may be written directly (TLS or test transports may not).
_PLAIN_TCP = (tcp.Server,)

_INTERNAL_ERROR = encode_error(RespError("ERR internal error"))
# Reply types that are never a Deferred, tested first: Deferred is an ABC, so isinstance
# against it costs an __instancecheck__ call.
_PLAIN_REPLIES = frozenset({bytes, int, type(None), list, SimpleString})


@dataclass(slots=True, eq=False)
class ClientState:
    """What the server knows about one connection; mutable, owned by the dispatcher's commands."""

    id: int
    addr: str
    created: float
    last_interaction: float = 0.0
    name: bytes | None = None
    lib_name: bytes | None = None
    lib_ver: bytes | None = None
    authenticated: bool = True
    protocol_version: int = 2
    close_after_reply: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Dispatcher(TypingProtocol):
    """Executes commands.  May also define ``connection_closed(client)``, called once per close."""

    def dispatch(self, client: ClientState, argv: list[bytes]) -> Any | Deferred:
        """Return a reply value (see `zan.resp.types`) or a Deferred firing with one.

        Raising (or failing with) a `ZanError` replies with its error text; any other exception
        is logged and replied to with ``ERR internal error``.
        """


class _Slot:
    """The place of a reply whose Deferred has not fired yet."""

    __slots__ = ("data", "command")

    def __init__(self, command: bytes) -> None:
        self.data: bytes | None = None
        self.command = command  # argv[0], for the log


def _format_addr(addr: IAddress | None) -> str:
    host = getattr(addr, "host", None)
    port = getattr(addr, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(addr)


@implementer(IPushProducer, IHalfCloseableProtocol)
class RespServerProtocol(Protocol):
    _log = Logger()

    def __init__(self, factory: RespServerFactory, client: ClientState):
        self.factory = factory
        self.client = client
        self._dispatcher = factory.dispatcher
        self._parser = RequestParser(
            max_bulk_len=factory.max_bulk_len,
            max_multibulk_len=factory.max_multibulk_len,
            max_inline_len=factory.max_inline_len,
            authenticated=client.authenticated,
        )
        # Replies in command order: bytes (ready) or _Slot (waiting for a Deferred).  Ready
        # replies with nothing waiting ahead of them go straight to _out, written per batch.
        self._queue: deque[bytes | _Slot] = deque()
        self._out: list[bytes] = []
        self._processing = False
        self._closing = False  # no more commands are read; close once the queue is written
        self._eof = False  # the client half-closed: run what is buffered, then close
        self._lost = False
        self._transport_paused = False  # the transport asked us to stop (client not reading)
        self._reading_paused = False
        self._idle_call = None
        self._end_of_turn = False

    # --- connection ------------------------------------------------------------------

    def connectionMade(self) -> None:
        no_delay(self.transport)
        # On a TCP socket, replies are written at the end of the reactor turn, every
        # connection's together, as Redis does before it sleeps: the client is woken by the
        # first one and is still running when the next arrive, where a write per read
        # would wake it (a costly cross-CPU wake-up) for each.
        self._end_of_turn = type(self.transport) in _PLAIN_TCP
        self.transport.registerProducer(self, True)
        self.factory._connected(self)
        if self.factory.idle_timeout:
            self._idle_call = self.factory.clock.callLater(self.factory.idle_timeout, self._check_idle)

    def connectionLost(self, reason: Failure = None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        # Replies still waiting are dropped; their Deferreds' callbacks consume any failure.
        self._queue.clear()
        self._out = []
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        self.factory._disconnected(self)
        hook = getattr(self._dispatcher, "connection_closed", None)
        if hook is not None:
            try:
                hook(self.client)
            except Exception:
                self._log.failure("connection_closed hook failed for client {id}", id=self.client.id)

    def readConnectionLost(self) -> None:
        """The client shut down its sending side: like Redis, answer every command received
        (commands held back by back-pressure and replies still waiting included), then close."""
        if self._lost or self._closing:
            return
        self._eof = True
        if not self._reading_paused:
            self._process()

    def writeConnectionLost(self) -> None:
        self.close()

    def close(self) -> None:
        """Close now, dropping unsent replies (CLIENT KILL)."""
        self._closing = True
        self.transport.loseConnection()

    def pending_replies(self) -> int:
        return len(self._queue)

    # --- input -----------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.client.last_interaction = self.factory.clock.seconds()
        self._parser.feed(data)
        if not self._reading_paused:
            self._process()

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            self._run_commands()
        finally:
            self._processing = False
        if self._end_of_turn:
            if self._out or self._queue or self._closing:
                self.factory.flush_soon(self)
        else:
            self._flush()

    def _run_commands(self) -> None:
        parser = self._parser
        client = self.client
        queue = self._queue
        out = self._out
        dispatch = self._dispatcher.dispatch
        pop = parser.pop
        max_pending = self.factory.max_pending
        on_result = self._deferred_result
        on_failure = self._deferred_failure
        while not self._closing:
            if self._transport_paused or len(queue) >= max_pending:
                self._set_reading_paused(True)
                return
            parser.authenticated = client.authenticated
            try:
                argv = pop()
            except ProtocolError as e:
                self._closing = True
                self._append(encode_error(e))
                return
            if argv is None:
                if self._eof:
                    self._closing = True  # a partial command is dropped, as Redis does
                break
            try:
                result = dispatch(client, argv)
            except ZanError as e:
                data = encode_error(e)
            except Exception:
                self._log.failure("command {command!r} failed", command=argv[0][:64])
                data = _INTERNAL_ERROR
            else:
                if type(result) not in _PLAIN_REPLIES and isinstance(result, Deferred):
                    slot = _Slot(argv[0])
                    queue.append(slot)
                    result.addCallbacks(on_result, on_failure, (slot,), None, (slot,))
                    if client.close_after_reply:
                        self._closing = True
                    continue
                try:
                    data = encode(result)
                except Exception:
                    self._log.failure("cannot encode the reply to {command!r}", command=argv[0][:64])
                    data = _INTERNAL_ERROR
            if queue:
                queue.append(data)
            else:
                out.append(data)
            if client.close_after_reply:
                self._closing = True
        self._set_reading_paused(False)

    def _append(self, data: bytes) -> None:
        if self._queue:
            self._queue.append(data)
        else:
            self._out.append(data)

    # --- replies from Deferreds ------------------------------------------------------

    def _deferred_result(self, result, slot: _Slot) -> None:
        try:
            slot.data = encode(result)
        except ZanError as e:
            slot.data = encode_error(e)
        except Exception:
            self._log.failure("cannot encode the reply to {command!r}", command=slot.command[:64])
            slot.data = _INTERNAL_ERROR
        self._slot_done()

    def _deferred_failure(self, failure: Failure, slot: _Slot) -> None:
        if failure.check(ZanError):
            slot.data = encode_error(failure.value)
        else:
            self._log.failure("command {command!r} failed", failure, command=slot.command[:64])
            slot.data = _INTERNAL_ERROR
        self._slot_done()

    def _slot_done(self) -> None:
        if self._lost or self._processing:
            return  # dropped, or _process flushes when it returns
        # Replies completed together (a group commit answers a whole pipeline at once) go
        # out in one write at the end of this reactor turn, not one write each.
        self.factory.flush_soon(self)

    def _deferred_flush(self) -> None:
        if self._lost:
            return
        self._flush()
        if self._reading_paused and not self._transport_paused and len(self._queue) < self.factory.max_pending:
            self._process()

    # --- output ----------------------------------------------------------------------

    def _flush(self) -> None:
        if self._lost:
            return
        queue = self._queue
        out = self._out
        while queue:
            head = queue[0]
            if type(head) is bytes:
                out.append(head)
            elif head.data is not None:
                out.append(head.data)
            else:
                break
            queue.popleft()
        if out:
            self._out = []
            self._write(out[0] if len(out) == 1 else b"".join(out))
        if self._closing and not queue:
            self.transport.loseConnection()

    def _write(self, data: bytes) -> None:
        """Send at once when the transport has nothing queued, as Redis does: most replies
        fit the socket buffer, and skipping the transport's buffer saves registering for
        writability and a reactor round trip per reply.  Whatever the socket does not
        take goes through the transport as usual (it keeps order and back-pressure)."""
        t = self.transport
        sock = getattr(t, "socket", None)
        if sock is None or t.dataBuffer or t._tempDataBuffer or t.disconnecting \
                or type(t) not in _PLAIN_TCP:
            t.write(data)
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            t.write(data)  # let the transport see and report the error
            return
        if sent < len(data):
            t.write(data[sent:])

    # --- back-pressure (IPushProducer, driven by the transport) ----------------------

    def pauseProducing(self) -> None:
        self._transport_paused = True
        self._set_reading_paused(True)

    def resumeProducing(self) -> None:
        self._transport_paused = False
        if not self._lost and len(self._queue) < self.factory.max_pending:
            self._set_reading_paused(False)
            self._process()

    def stopProducing(self) -> None:
        self._closing = True

    def _set_reading_paused(self, paused: bool) -> None:
        if paused == self._reading_paused or self._lost:
            return
        self._reading_paused = paused
        if self._eof:
            return  # the transport reads no more anyway
        if paused:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    # --- idle timeout ----------------------------------------------------------------

    def _check_idle(self) -> None:
        self._idle_call = None
        if self._lost:
            return
        timeout = self.factory.idle_timeout
        idle = self.factory.clock.seconds() - self.client.last_interaction
        if idle >= timeout and not self._queue:
            self._log.debug("closing idle client {id}", id=self.client.id)
            self.close()
            return
        self._idle_call = self.factory.clock.callLater(max(timeout - idle, 0.001), self._check_idle)


class RespServerFactory(Factory):
    """Builds one `RespServerProtocol` per connection; ``connections`` maps client id to it."""

    protocol = RespServerProtocol

    def __init__(
        self,
        dispatcher: Dispatcher,
        clock: IReactorTime,
        *,
        max_pending: int = 1024,
        idle_timeout: float | None = None,
        max_bulk_len: int = PROTO_MAX_BULK_LEN,
        max_multibulk_len: int = PROTO_MAX_MULTIBULK_LEN,
        max_inline_len: int = PROTO_INLINE_MAX_SIZE,
        auth_required: bool = False,
    ):
        self.dispatcher = dispatcher
        self.clock = clock
        self.max_pending = max_pending
        self.idle_timeout = idle_timeout
        self.max_bulk_len = max_bulk_len
        self.max_multibulk_len = max_multibulk_len
        self.max_inline_len = max_inline_len
        self.auth_required = auth_required
        self.connections: dict[int, RespServerProtocol] = {}
        self._ids = itertools.count(1)
        self._to_flush: dict[int, RespServerProtocol] = {}
        self._flush_call = None

    def flush_soon(self, proto: RespServerProtocol) -> None:
        self._to_flush[proto.client.id] = proto
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_all)

    def _flush_all(self) -> None:
        self._flush_call = None
        protos, self._to_flush = self._to_flush, {}
        for proto in protos.values():
            proto._deferred_flush()

    def buildProtocol(self, addr: IAddress) -> RespServerProtocol:
        now = self.clock.seconds()
        client = ClientState(
            id=next(self._ids),
            addr=_format_addr(addr),
            created=now,
            last_interaction=now,
            authenticated=not self.auth_required,
        )
        return self.protocol(self, client)

    def _connected(self, proto: RespServerProtocol) -> None:
        self.connections[proto.client.id] = proto

    def _disconnected(self, proto: RespServerProtocol) -> None:
        self.connections.pop(proto.client.id, None)
