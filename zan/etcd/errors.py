"""Errors of the etcd v2 keys API, one class per `errorCode`.

etcd answers a failed request with a JSON body ``{"errorCode", "message", "cause", "index"}``;
`error_from_body` turns it into the matching subclass, so callers catch `KeyNotFound` or
`NodeExist` instead of comparing numbers.  Codes without a class of their own stay plain
`EtcdError` with their number in `error_code`.
"""

from __future__ import annotations

from zan.errors import ZanError

__all__ = [
    "EtcdError", "KeyNotFound", "TestFailed", "CompareFailed", "NotFile", "NotDir",
    "NodeExist", "RootReadOnly", "DirNotEmpty", "EventIndexCleared", "EtcdUnavailable",
    "EtcdProtocolError", "error_from_body", "ERROR_CODES",
]


class EtcdError(ZanError):
    """etcd refused a request.  `index` is etcd's index when it answered (0 if unknown)."""

    error_code: int = 0
    http_status = 502

    def __init__(self, message: str = "", cause: str = "", index: int = 0,
                 error_code: int | None = None):
        if error_code is not None:
            self.error_code = error_code
        self.message = message
        self.cause = cause
        self.index = index
        text = f"etcd error {self.error_code}: {message}" if self.error_code else message
        super().__init__(f"{text} ({cause})" if cause else text)


class KeyNotFound(EtcdError):
    error_code = 100
    http_status = 404


class TestFailed(EtcdError):
    """A prevValue / prevIndex comparison failed (HTTP 412)."""

    __test__ = False  # not a pytest test class, despite its name
    error_code = 101
    http_status = 409


CompareFailed = TestFailed


class NotFile(EtcdError):
    error_code = 102


class NotDir(EtcdError):
    error_code = 104


class NodeExist(EtcdError):
    error_code = 105
    http_status = 409


class RootReadOnly(EtcdError):
    error_code = 107


class DirNotEmpty(EtcdError):
    error_code = 108


class EventIndexCleared(EtcdError):
    """The watched index is older than etcd's event history (about 1000 events)."""

    error_code = 401


class EtcdUnavailable(EtcdError):
    """No endpoint answered in time (connection refused, reset, timed out)."""

    http_status = 503


class EtcdProtocolError(EtcdError):
    """An endpoint answered something that is not an etcd v2 response."""


ERROR_CODES: dict[int, type[EtcdError]] = {
    cls.error_code: cls
    for cls in (KeyNotFound, TestFailed, NotFile, NotDir, NodeExist, RootReadOnly,
                DirNotEmpty, EventIndexCleared)
}


def error_from_body(body: dict) -> EtcdError:
    """The exception for an etcd JSON error body (raises nothing itself)."""
    try:
        code = int(body["errorCode"])
    except (KeyError, TypeError, ValueError):
        return EtcdProtocolError(f"not an etcd error body: {body!r}")
    cls = ERROR_CODES.get(code, EtcdError)
    kwargs = {} if cls is not EtcdError else {"error_code": code}
    index = body.get("index") or 0
    return cls(str(body.get("message", "")), str(body.get("cause", "") or ""),
               int(index) if isinstance(index, int) else 0, **kwargs)
