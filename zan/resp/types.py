"""The values a command handler may return, and how they map to RESP2.

Handlers return plain Python values; `zan.resp.encoder` turns them into bytes:

=====================  =======================
handler returns        RESP2 reply
=====================  =======================
``bytes``              bulk string ``$n``
``int`` (not bool)     integer ``:n``
``None``               null bulk ``$-1``
``list`` / ``tuple``   array (elements encoded recursively)
``SimpleString``       status ``+OK``
``RespError``          error ``-ERR ...`` (may also be raised)
``NULL_ARRAY``         null array ``*-1``
=====================  =======================
"""

from __future__ import annotations

__all__ = ["SimpleString", "OK", "PONG", "QUEUED", "NullArray", "NULL_ARRAY"]


class SimpleString(bytes):
    """A status reply; the bytes must not contain CR or LF."""

    __slots__ = ()


OK = SimpleString(b"OK")
PONG = SimpleString(b"PONG")
QUEUED = SimpleString(b"QUEUED")


class NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = NullArray()
