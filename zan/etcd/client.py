"""An etcd v2 keys API client on treq.

Every method is a coroutine returning an `EtcdResponse` (the parsed node, the previous node
and the `X-Etcd-Index` header) or raising an `EtcdError` subclass chosen by etcd's
`errorCode`.  Requests go to one endpoint at a time; when an endpoint refuses, resets or
times out, the client moves to the next one and keeps using whichever answered last.

Timeouts run on the injected reactor.  A watch is one long poll: etcd sends the 200
headers at once and the body only when an event happens, so the header wait has the
ordinary request timeout and the body wait has its own (`watch_timeout`).  A watch that
sees no event in that time returns None, which is not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import quote, urlencode

from twisted.internet import error as _ierror
from twisted.internet import ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent, HTTPConnectionPool, ResponseDone, ResponseFailed, ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from zan.etcd.errors import (
    EtcdError, EtcdProtocolError, EtcdUnavailable, error_from_body,
)

__all__ = ["EtcdClient", "EtcdResponse", "Node", "BytesProducer", "tls_policy"]


@dataclass(frozen=True, slots=True)
class Node:
    """One etcd v2 node.  `value` is None for directories and for nodes of delete events."""

    key: str
    value: str | None = None
    dir: bool = False
    ttl: int | None = None
    expiration: str | None = None
    created_index: int = 0
    modified_index: int = 0
    nodes: tuple["Node", ...] = ()

    @classmethod
    def from_json(cls, d: dict) -> "Node":
        return cls(
            key=d.get("key", "/"),
            value=d.get("value"),
            dir=bool(d.get("dir", False)),
            ttl=d.get("ttl"),
            expiration=d.get("expiration"),
            created_index=int(d.get("createdIndex", 0)),
            modified_index=int(d.get("modifiedIndex", 0)),
            nodes=tuple(cls.from_json(c) for c in d.get("nodes") or ()),
        )

    @property
    def name(self) -> str:
        """The last path component of the key."""
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    def walk(self) -> Iterator["Node"]:
        """This node and every node below it (as far as the response included them)."""
        yield self
        for child in self.nodes:
            yield from child.walk()

    def leaves(self) -> Iterator["Node"]:
        """Every non-directory node at or below this one."""
        return (n for n in self.walk() if not n.dir)

    def child(self, name: str) -> "Node | None":
        for c in self.nodes:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True, slots=True)
class EtcdResponse:
    """A successful answer: etcd's action, the node, the previous node, `X-Etcd-Index`."""

    action: str
    node: Node
    prev_node: Node | None
    etcd_index: int


@implementer(IBodyProducer)
class BytesProducer:
    """Writes a request body at once.

    treq's default producer streams through the global cooperator; etcd bodies are a few
    hundred bytes, so writing them in one go keeps the client off global state.
    """

    def __init__(self, body: bytes):
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


@implementer(IPolicyForHTTPS)
class _TLSPolicy:
    def __init__(self, trust_root, client_certificate):
        self._trust_root = trust_root
        self._client_certificate = client_certificate

    def creatorForNetloc(self, hostname: bytes, port: int):
        # optionsForClientTLS checks the certificate's names with service_identity.
        return ssl.optionsForClientTLS(hostname.decode("idna"), trustRoot=self._trust_root,
                                       clientCertificate=self._client_certificate)


def tls_policy(ca_file: str | None = None, cert_file: str | None = None,
               key_file: str | None = None) -> IPolicyForHTTPS:
    """A TLS policy verifying servers against `ca_file` (the platform's roots when None),
    optionally presenting a client certificate (etcd's `--client-cert-auth`)."""
    trust_root = ssl.platformTrust()
    if ca_file is not None:
        with open(ca_file, "rb") as f:
            trust_root = ssl.Certificate.loadPEM(f.read())
    client_certificate = None
    if cert_file is not None:
        with open(cert_file, "rb") as f:
            pem = f.read()
        if key_file is not None:
            with open(key_file, "rb") as f:
                pem += b"\n" + f.read()
        client_certificate = ssl.PrivateCertificate.loadPEM(pem)
    return _TLSPolicy(trust_root, client_certificate)


class _RequestTimeout(Exception):
    pass


# Failures that mean "this endpoint is not answering": try the next one.
_ENDPOINT_FAILURES = (
    _RequestTimeout, _ierror.ConnectError, _ierror.ConnectionLost, _ierror.ConnectionDone,
    ResponseNeverReceived, ResponseFailed, OSError,
)


def _guarded(reactor: IReactorTime, d: Deferred, timeout: float | None) -> Deferred:
    """`d`, failing with `_RequestTimeout` after `timeout` seconds and with `CancelledError`
    when cancelled from outside, whatever error `d`'s own canceller produces (the Agent
    reports a cancel as `ResponseNeverReceived`, which must not look like a dead endpoint)."""
    state = {"why": None}

    def cancel(_):
        state["why"] = state["why"] or "cancelled"
        d.cancel()

    out: Deferred = Deferred(cancel)

    def on_timeout():
        state["why"] = "timeout"
        d.cancel()
        if not out.called:
            out.errback(_RequestTimeout(f"no answer in {timeout} s"))

    call = reactor.callLater(timeout, on_timeout) if timeout is not None else None

    def relay(result):
        if call is not None and call.active():
            call.cancel()
        if state["why"] is None and not out.called:
            if isinstance(result, Failure):
                out.errback(result)
            else:
                out.callback(result)
        return None

    d.addBoth(relay)
    return out


class _BodyReader(Protocol):
    def __init__(self, finished: Deferred):
        self._parts: list[bytes] = []
        self._finished = finished

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)

    def connectionLost(self, reason=None) -> None:
        if self._finished.called:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


def _read_body(response) -> Deferred:
    reader: list[_BodyReader] = []

    def cancel(_):
        # Abandoning a body means closing its connection: it cannot be reused mid-response.
        if reader and reader[0].transport is not None:
            reader[0].transport.stopProducing()

    d: Deferred = Deferred(cancel)
    reader.append(_BodyReader(d))
    response.deliverBody(reader[0])
    return d


def _normalize_endpoint(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def _key_path(key: str) -> str:
    key = "/" + key.strip("/")
    return "/v2/keys" + quote(key, safe="/")


def _flag(value: bool) -> str:
    return "true" if value else "false"


class EtcdClient:
    """etcd v2 keys API over one or more endpoints.

    `http_client` is anything with treq's `HTTPClient.request` signature (a treq
    `HTTPClient`, or `treq.testing.StubTreq`); by default one is built on an `Agent` with a
    persistent connection pool and, for https endpoints, `tls_policy(ca_file, ...)`.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime, endpoints: Sequence[str], http_client=None,
                 timeout: float = 5.0, watch_timeout: float = 60.0,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None):
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._reactor = reactor
        self._endpoints = [_normalize_endpoint(e) for e in endpoints]
        self._current = 0
        self.timeout = timeout
        self.watch_timeout = watch_timeout
        self._pool = None
        if http_client is None:
            from treq.client import HTTPClient
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            agent = Agent(reactor, contextFactory=tls_policy(ca_file, cert_file, key_file),
                          pool=self._pool)
            http_client = HTTPClient(agent, data_to_body_producer=BytesProducer)
        self._http = http_client

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next request goes to first (the last one that answered)."""
        return self._endpoints[self._current]

    def close(self) -> Deferred:
        """Close idle pooled connections (only those of a pool this client built)."""
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    # --- the keys API -----------------------------------------------------------------

    async def get(self, key: str, recursive: bool = False, sorted: bool = False,
                  quorum: bool = False) -> EtcdResponse:
        query = {}
        if recursive:
            query["recursive"] = "true"
        if sorted:
            query["sorted"] = "true"
        if quorum:
            query["quorum"] = "true"
        return await self._call("GET", key, query)

    async def set(self, key: str, value: str, ttl: int | None = None,
                  prev_index: int | None = None, prev_value: str | None = None,
                  prev_exist: bool | None = None) -> EtcdResponse:
        """PUT a value.  Without `ttl` the key becomes permanent (etcd clears an old TTL)."""
        query: dict[str, str] = {}
        if prev_index is not None:
            query["prevIndex"] = str(int(prev_index))
        if prev_value is not None:
            query["prevValue"] = prev_value
        if prev_exist is not None:
            query["prevExist"] = _flag(prev_exist)
        form = {"value": value}
        if ttl is not None:
            form["ttl"] = str(int(ttl))
        return await self._call("PUT", key, query, form)

    async def create(self, key: str, value: str, ttl: int | None = None) -> EtcdResponse:
        """Create if absent; `NodeExist` otherwise."""
        return await self.set(key, value, ttl=ttl, prev_exist=False)

    async def update(self, key: str, value: str, ttl: int | None = None) -> EtcdResponse:
        """Replace an existing key; `KeyNotFound` otherwise."""
        return await self.set(key, value, ttl=ttl, prev_exist=True)

    async def compare_and_swap(self, key: str, value: str, prev_value: str | None = None,
                               prev_index: int | None = None,
                               ttl: int | None = None) -> EtcdResponse:
        if prev_value is None and prev_index is None:
            raise ValueError("compare_and_swap needs prev_value or prev_index")
        return await self.set(key, value, ttl=ttl, prev_index=prev_index,
                              prev_value=prev_value)

    async def refresh_ttl(self, key: str, ttl: int, prev_value: str | None = None,
                          prev_index: int | None = None) -> EtcdResponse:
        """Reset an existing key's TTL without changing its value and without a watch event.

        With `prev_value`/`prev_index` the refresh is a compare-and-swap (a lock holder
        refreshing only while the key is still its own)."""
        query = {"prevExist": "true"}
        if prev_index is not None:
            query["prevIndex"] = str(int(prev_index))
        if prev_value is not None:
            query["prevValue"] = prev_value
        return await self._call("PUT", key, query, {"ttl": str(int(ttl)), "refresh": "true"})

    async def compare_and_delete(self, key: str, prev_value: str | None = None,
                                 prev_index: int | None = None) -> EtcdResponse:
        if prev_value is None and prev_index is None:
            raise ValueError("compare_and_delete needs prev_value or prev_index")
        query = {}
        if prev_index is not None:
            query["prevIndex"] = str(int(prev_index))
        if prev_value is not None:
            query["prevValue"] = prev_value
        return await self._call("DELETE", key, query)

    async def delete(self, key: str, recursive: bool = False, dir: bool = False) -> EtcdResponse:
        query = {}
        if recursive:
            query["recursive"] = "true"
        if dir:
            query["dir"] = "true"
        return await self._call("DELETE", key, query)

    async def mkdir(self, key: str, ttl: int | None = None) -> EtcdResponse:
        """Create a directory; `NodeExist` if anything is there already."""
        query = {"dir": "true", "prevExist": "false"}
        form = {} if ttl is None else {"ttl": str(int(ttl))}
        return await self._call("PUT", key, query, form)

    async def watch(self, key: str, wait_index: int | None = None, recursive: bool = False,
                    timeout: float | None = None) -> EtcdResponse | None:
        """Wait for the first change at `key` (or below it, if recursive) with an index
        >= `wait_index`.  Returns None when nothing happened within `timeout` (default
        `watch_timeout`).  The response's `etcd_index` is etcd's index when the watch
        began; continue from `node.modified_index + 1`.  Raises `EventIndexCleared` when
        `wait_index` is older than etcd's history."""
        query = {"wait": "true"}
        if wait_index is not None:
            query["waitIndex"] = str(int(wait_index))
        if recursive:
            query["recursive"] = "true"
        body_timeout = self.watch_timeout if timeout is None else timeout
        return await self._call("GET", key, query, body_timeout=body_timeout, idle_ok=True)

    # --- transport --------------------------------------------------------------------

    async def _call(self, method: str, key: str, query: dict[str, str],
                    form: dict[str, str] | None = None, body_timeout: float | None = None,
                    idle_ok: bool = False) -> Any:
        path = _key_path(key)
        if query:
            path += "?" + urlencode(query)
        headers = {b"Accept": [b"application/json"]}
        body = None
        if form is not None:
            body = urlencode(form).encode("utf-8")
            headers[b"Content-Type"] = [b"application/x-www-form-urlencoded"]
        failures = []
        n = len(self._endpoints)
        start = self._current
        for attempt in range(n):
            i = (start + attempt) % n
            endpoint = self._endpoints[i]
            try:
                response = await _guarded(
                    self._reactor,
                    self._http.request(method, endpoint + path, headers=headers, data=body,
                                       allow_redirects=False, unbuffered=True),
                    self.timeout)
                try:
                    raw = await _guarded(self._reactor, _read_body(response),
                                         body_timeout if body_timeout is not None else self.timeout)
                except _RequestTimeout:
                    if idle_ok:
                        self._current = i
                        return None
                    raise
            except _ENDPOINT_FAILURES as e:
                failures.append(f"{endpoint}: {_describe(e)}")
                self._log.info("etcd endpoint {endpoint} failed ({why}); {next}",
                               endpoint=endpoint, why=_describe(e),
                               next="trying the next" if attempt + 1 < n else "giving up")
                continue
            result = self._parse(endpoint, response, raw)
            if result is None:  # a 5xx that is not from etcd itself: a proxy or a dying member
                failures.append(f"{endpoint}: HTTP {response.code}")
                continue
            self._current = i
            if isinstance(result, EtcdError):
                raise result
            return result
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _parse(self, endpoint: str, response, raw: bytes) -> EtcdResponse | EtcdError | None:
        index_header = response.headers.getRawHeaders(b"X-Etcd-Index") or [b"0"]
        try:
            etcd_index = int(index_header[0])
        except ValueError:
            etcd_index = 0
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.code >= 500:
                return None
            return EtcdProtocolError(
                f"{endpoint} answered HTTP {response.code} with a body that is not etcd JSON: "
                f"{raw[:200]!r}")
        if "errorCode" in body:
            err = error_from_body(body)
            if not err.index:
                err.index = etcd_index
            return err
        if response.code in (200, 201) and isinstance(body.get("node"), dict):
            prev = body.get("prevNode")
            return EtcdResponse(
                action=str(body.get("action", "")),
                node=Node.from_json(body["node"]),
                prev_node=Node.from_json(prev) if isinstance(prev, dict) else None,
                etcd_index=etcd_index)
        if response.code >= 500:
            return None
        return EtcdProtocolError(f"{endpoint} answered HTTP {response.code}: {raw[:200]!r}")


def _describe(e: BaseException) -> str:
    if isinstance(e, (ResponseNeverReceived, ResponseFailed)) and getattr(e, "reasons", None):
        return "; ".join(r.getErrorMessage() for r in e.reasons)
    return f"{type(e).__name__}: {e}"
