"""RESP2 encoding of reply values (see `zan.resp.types`) and of client commands.

Pure functions, no I/O.  The common replies (status OK, bulk, integer, null) are tested first
and formatted with one ``%`` each; arrays recurse.  Errors are written from
`ZanError.resp_message()`, with CR/LF blanked as Redis does so a message can never break the
framing, and encoded with ``surrogateescape`` so a raw byte the parser quoted comes back as is.
"""

from __future__ import annotations

from zan.errors import ZanError
from zan.resp.types import NULL_ARRAY, OK, SimpleString

__all__ = ["encode", "encode_error", "encode_command"]

_OK = b"+OK\r\n"
_NULL = b"$-1\r\n"
_NULL_ARRAY = b"*-1\r\n"
_EMPTY_ARRAY = b"*0\r\n"
_CRLF_TO_SPACE = bytes.maketrans(b"\r\n", b"  ")


def encode(value) -> bytes:
    """The RESP2 bytes of one reply value; TypeError for a value outside the model."""
    t = type(value)
    if t is bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if t is SimpleString:
        return _OK if value == OK else b"+%b\r\n" % value
    if t is int:
        return b":%d\r\n" % value
    if value is None:
        return _NULL
    if t is list or t is tuple:
        if not value:
            return _EMPTY_ARRAY
        return b"*%d\r\n" % len(value) + b"".join([encode(v) for v in value])
    if isinstance(value, ZanError):
        return encode_error(value)
    if value is NULL_ARRAY:
        return _NULL_ARRAY
    # Subclasses of the model's types, checked after the exact types so the hot path stays short.
    if isinstance(value, SimpleString):
        return b"+%b\r\n" % bytes(value).translate(_CRLF_TO_SPACE)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b":%d\r\n" % value
    if isinstance(value, (list, tuple)):
        return encode(list(value))
    raise TypeError(f"cannot encode {t.__name__} as a RESP reply")


def encode_error(error: ZanError) -> bytes:
    text = error.resp_message().encode("utf-8", "surrogateescape").translate(_CRLF_TO_SPACE)
    return b"-%b\r\n" % text


def _arg(a) -> bytes:
    if type(a) is bytes:
        return a
    if isinstance(a, str):
        return a.encode("utf-8")
    if isinstance(a, int) and not isinstance(a, bool):
        return b"%d" % a
    if isinstance(a, float):
        return repr(a).encode("ascii")
    if isinstance(a, (bytes, bytearray, memoryview)):
        return bytes(a)
    raise TypeError(f"cannot send {type(a).__name__} as a command argument")


def encode_command(argv) -> bytes:
    """A request in multibulk form; arguments may be bytes, str (UTF-8), int or float."""
    parts = [b"*%d\r\n" % len(argv)]
    for a in argv:
        a = _arg(a)
        parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(parts)
