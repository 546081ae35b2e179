"""Socket settings shared by every TCP protocol Zan speaks."""

from __future__ import annotations

__all__ = ["no_delay"]


def no_delay(transport) -> None:
    """Turn Nagle's algorithm off, as Redis does for its clients.  Every protocol here is
    request/response with small frames: with Nagle on, a reply or a Raft append written
    while an earlier segment is unacknowledged waits for the peer's delayed ACK (up to
    40 ms on Linux), which caps a connection at a few dozen round trips a second.
    Transports that are not TCP (test doubles, UNIX sockets) are left alone."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:
            pass
