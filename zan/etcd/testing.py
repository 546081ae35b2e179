"""An in-memory etcd v2 server for tests.

`FakeEtcd` is a twisted.web resource that answers the v2 keys API the way etcd 3.4 does for
everything `EtcdClient` uses: one index per write (errors consume none), `X-Etcd-Index`,
directories created on the way to a key, TTLs expiring on an injected clock, `prevExist` /
`prevIndex` / `prevValue` with etcd's status codes and JSON error bodies, TTL refresh that
consumes an index but wakes no watcher, long-poll watches (`wait=true`, `waitIndex`,
`recursive`) over a bounded event history with errorCode 401 beyond it, and `sorted`.

`FakeEtcdNetwork` puts it behind one or more endpoint URLs for a treq `HTTPClient`, with
switches to make an endpoint refuse connections or swallow requests, so failover and
timeouts can be tested without sockets::

    clock = Clock()
    fake = FakeEtcd(clock)
    net = FakeEtcdNetwork(fake)
    client = EtcdClient(clock, ["http://e1:2379", "http://e2:2379"], http_client=net.client)
    net.refuse("e1:2379")
    d = Deferred.fromCoroutine(client.get("/x"))
    net.flush()

Not modelled: hidden (`_`-prefixed) keys, in-order keys (POST), `stream=true`, auth.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

__all__ = ["FakeEtcd", "FakeEtcdNetwork"]

_STATUS = {100: 404, 101: 412, 102: 403, 105: 412, 108: 403, 110: 401, 300: 500, 301: 500}
_MESSAGES = {
    100: "Key not found",
    101: "Compare failed",
    102: "Not a file",
    104: "Not a directory",
    105: "Key already exists",
    107: "Root is read only",
    108: "Directory not empty",
    201: "PrevValue is Required in POST form",
    202: "The given TTL in POST form is not a number",
    203: "The given index in POST form is not a number",
    209: "Invalid field",
    211: "Value provided on refresh",
    212: "A TTL must be provided on refresh",
    401: "The event in requested index is outdated and cleared",
}


class _Error(Exception):
    def __init__(self, code: int, cause: str, index: int):
        super().__init__(code, cause)
        self.code = code
        self.cause = cause
        self.index = index

    def body(self) -> dict:
        return {"errorCode": self.code, "message": _MESSAGES.get(self.code, "error"),
                "cause": self.cause, "index": self.index}


class _Node:
    __slots__ = ("path", "value", "children", "created", "modified", "expire_at")

    def __init__(self, path: str, value: str | None, created: int, expire_at: float | None):
        self.path = path
        self.value = value  # None marks a directory
        self.children: dict[str, _Node] | None = {} if value is None else None
        self.created = created
        self.modified = created
        self.expire_at = expire_at

    @property
    def is_dir(self) -> bool:
        return self.children is not None


@dataclass(frozen=True, slots=True)
class _Event:
    action: str
    index: int
    key: str
    node: dict
    prev: dict | None
    refresh: bool = False

    def matches(self, key: str, recursive: bool) -> bool:
        if self.key == key:
            return True
        if recursive and self.key.startswith(key.rstrip("/") + "/"):
            return True
        # Deleting (or expiring) a directory wakes watchers of anything inside it.
        return (self.action in ("delete", "expire", "compareAndDelete") and self.prev is not None
                and bool(self.prev.get("dir")) and key.startswith(self.key.rstrip("/") + "/"))

    def body(self) -> dict:
        out = {"action": self.action, "node": self.node}
        if self.prev is not None:
            out["prevNode"] = self.prev
        return out


@dataclass(slots=True)
class _Watcher:
    key: str
    recursive: bool
    since: int
    request: object


def _clean(key: str) -> str:
    return posixpath.normpath("/" + key.strip("/")) if key.strip("/") else "/"


def _flag(args: dict, name: str) -> bool | None:
    if name not in args:
        return None
    v = args[name]
    if v in ("true", "1"):
        return True
    if v in ("false", "0", ""):
        return False
    raise _Error(209, f"invalid value for {name}", 0)


class FakeEtcd(Resource):
    """The keyspace and the HTTP face of one etcd member.  `index` is etcd's index."""

    isLeaf = True

    def __init__(self, clock: IReactorTime, history_size: int = 1000, start_index: int = 0):
        super().__init__()
        self._clock = clock
        self._root = _Node("/", None, 0, None)
        self.index = start_index
        self._history: deque[_Event] = deque(maxlen=history_size)
        self._watchers: list[_Watcher] = []
        self._expiry_call = None
        self.stalled = False  # when True, requests get no answer at all
        self.requests: list[tuple[str, str]] = []  # (method, uri) of every request, in order

    # --- inspection helpers for tests -------------------------------------------------

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def value(self, key: str) -> str | None:
        """The value at `key`, None if absent or a directory (expired keys are absent)."""
        self._expire_due()
        node = self._find(_clean(key))
        return None if node is None or node.is_dir else node.value

    def event_count(self) -> int:
        return len(self._history)

    # --- HTTP -------------------------------------------------------------------------

    def render(self, request):
        self.requests.append((request.method.decode(), request.uri.decode()))
        if self.stalled:
            return NOT_DONE_YET
        path = unquote(urlsplit(request.uri.decode()).path)
        request.setHeader(b"Content-Type", b"application/json")
        if path == "/health":
            return b'{"health":"true"}'
        if path != "/v2/keys" and not path.startswith("/v2/keys/"):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        key = _clean(path[len("/v2/keys"):])
        args = {k: v[-1] for k, v in parse_qs(urlsplit(request.uri.decode()).query,
                                               keep_blank_values=True).items()}
        body = request.content.read() if request.content is not None else b""
        if request.method in (b"PUT", b"POST") and body:
            for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items():
                args.setdefault(k, v[-1])
        self._expire_due()
        try:
            method = request.method
            if method == b"GET" and _flag(args, "wait"):
                return self._wait(request, key, args)
            if method == b"GET":
                status, result = 200, self._get(key, args)
            elif method == b"PUT":
                status, result = self._put(key, args)
            elif method == b"DELETE":
                status, result = 200, self._delete(key, args)
            else:
                request.setResponseCode(405)
                return b"Method Not Allowed"
        except _Error as e:
            request.setResponseCode(_STATUS.get(e.code, 400))
            request.setHeader(b"X-Etcd-Index", str(self.index).encode())
            return json.dumps(e.body()).encode()
        request.setResponseCode(status)
        request.setHeader(b"X-Etcd-Index", str(self.index).encode())
        return json.dumps(result).encode()

    # --- reads ------------------------------------------------------------------------

    def _find(self, key: str) -> _Node | None:
        node = self._root
        for part in key.strip("/").split("/") if key != "/" else ():
            if not node.is_dir or part not in node.children:
                return None
            node = node.children[part]
        return node

    def _lookup(self, key: str) -> _Node:
        """The node at `key`, or etcd's error: 100 naming the first missing component,
        104 naming a file met on the way."""
        node = self._root
        if key == "/":
            return node
        walked = ""
        for part in key.strip("/").split("/"):
            if not node.is_dir:
                raise _Error(104, node.path, self.index)
            walked += "/" + part
            if part not in node.children:
                raise _Error(100, walked, self.index)
            node = node.children[part]
        return node

    def _repr(self, node: _Node, recursive: bool = False, sort: bool = False,
              with_children: bool = False) -> dict:
        out: dict = {}
        if node is not self._root:
            out["key"] = node.path
        if node.is_dir:
            out["dir"] = True
        else:
            out["value"] = node.value
        if node.expire_at is not None:
            remaining = node.expire_at - self._clock.seconds()
            out["expiration"] = datetime.fromtimestamp(node.expire_at, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
            out["ttl"] = max(0, math.ceil(remaining))
        if node.is_dir and (with_children or recursive) and node.children:
            kids = list(node.children.values())
            if sort:
                kids.sort(key=lambda n: n.path)
            out["nodes"] = [self._repr(k, recursive, sort, with_children=False) for k in kids]
        if node is not self._root:
            out["modifiedIndex"] = node.modified
            out["createdIndex"] = node.created
        return out

    def _get(self, key: str, args: dict) -> dict:
        node = self._lookup(key)
        return {"action": "get",
                "node": self._repr(node, recursive=bool(_flag(args, "recursive")),
                                   sort=bool(_flag(args, "sorted")), with_children=True)}

    def _wait(self, request, key: str, args: dict):
        recursive = bool(_flag(args, "recursive"))
        try:
            since = int(args.get("waitIndex") or 0)
        except ValueError:
            raise _Error(203, "waitIndex", self.index)
        if since == 0:
            since = self.index + 1
        if since <= self.index:
            start = self._history[0].index if self._history else self.index + 1
            if since < start:
                raise _Error(401, f"the requested history has been cleared [{start}/{since}]",
                             self.index)
            for ev in self._history:
                if ev.index >= since and not ev.refresh and ev.matches(key, recursive):
                    request.setResponseCode(200)
                    request.setHeader(b"X-Etcd-Index", str(self.index).encode())
                    return json.dumps(ev.body()).encode()
        # etcd sends the headers now and the body when the event comes.
        request.setResponseCode(200)
        request.setHeader(b"X-Etcd-Index", str(self.index).encode())
        request.write(b"")
        watcher = _Watcher(key, recursive, since, request)
        self._watchers.append(watcher)
        request.notifyFinish().addBoth(lambda _: self._drop_watcher(watcher))
        return NOT_DONE_YET

    def _drop_watcher(self, watcher: _Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    # --- writes -----------------------------------------------------------------------

    def _ttl(self, args: dict) -> float | None:
        raw = args.get("ttl")
        if raw is None or raw == "":
            return None
        try:
            ttl = int(raw)
        except ValueError:
            raise _Error(202, "ttl", self.index)
        if ttl < 0:
            raise _Error(202, "ttl", self.index)
        return self._clock.seconds() + ttl

    def _put(self, key: str, args: dict) -> tuple[int, dict]:
        if key == "/":
            raise _Error(107, "/", self.index)
        prev_exist = _flag(args, "prevExist")
        prev_value = args.get("prevValue")
        if prev_value == "":
            raise _Error(201, "prevValue", self.index)
        try:
            prev_index = int(args.get("prevIndex") or 0)
        except ValueError:
            raise _Error(203, "prevIndex", self.index)
        refresh = bool(_flag(args, "refresh"))
        is_dir = bool(_flag(args, "dir"))
        value = args.get("value", "")
        expire_at = self._ttl(args)
        if refresh:
            if args.get("value"):
                raise _Error(211, "A value was provided on a refresh", self.index)
            if "ttl" not in args:
                raise _Error(212, "No TTL value set", self.index)
        if prev_exist is True:
            if prev_index or prev_value is not None:
                return 200, self._cas(key, value, prev_value, prev_index, expire_at, refresh)
            return 200, self._update(key, value, expire_at, refresh)
        if prev_exist is False:
            return 201, self._create(key, value, is_dir, expire_at, replace=False)
        if prev_index or prev_value is not None:
            return 200, self._cas(key, value, prev_value, prev_index, expire_at, refresh)
        result = self._create(key, value, is_dir, expire_at, replace=True)
        return (200 if "prevNode" in result else 201), result

    def _parent_for(self, key: str, new_index: int) -> _Node:
        """The directory that will hold `key`, creating missing directories on the way."""
        node = self._root
        parts = key.strip("/").split("/")[:-1]
        for part in parts:
            child = node.children.get(part)
            if child is None:
                child = _Node(posixpath.join(node.path, part), None, new_index, None)
                node.children[part] = child
            elif not child.is_dir:
                raise _Error(104, child.path, self.index)
            node = child
        return node

    def _create(self, key: str, value: str, is_dir: bool, expire_at, replace: bool) -> dict:
        new_index = self.index + 1
        # Check before creating intermediate directories, so a failed write changes nothing.
        self._check_path(key)
        existing = self._find(key)
        prev = None
        if existing is not None:
            if not replace:
                raise _Error(105, key, self.index)
            if existing.is_dir:
                raise _Error(102, key, self.index)
            prev = self._repr(existing)
        parent = self._parent_for(key, new_index)
        node = _Node(key, None if is_dir else value, new_index, expire_at)
        parent.children[key.rsplit("/", 1)[-1]] = node
        action = "set" if replace else "create"
        return self._commit(action, key, self._repr(node), prev)

    def _check_path(self, key: str) -> None:
        node = self._root
        for part in key.strip("/").split("/")[:-1]:
            child = node.children.get(part)
            if child is None:
                return
            if not child.is_dir:
                raise _Error(104, child.path, self.index)
            node = child

    def _update(self, key: str, value: str, expire_at, refresh: bool) -> dict:
        node = self._lookup(key)
        if node.is_dir and value:
            raise _Error(102, key, self.index)
        prev = self._repr(node)
        self._write(node, value, expire_at, refresh)
        return self._commit("update", key, self._repr(node), prev, refresh)

    def _cas(self, key: str, value: str, prev_value, prev_index: int, expire_at,
             refresh: bool) -> dict:
        node = self._lookup(key)
        if node.is_dir:
            raise _Error(102, key, self.index)
        self._compare(node, prev_value, prev_index)
        prev = self._repr(node)
        self._write(node, value, expire_at, refresh)
        return self._commit("compareAndSwap", key, self._repr(node), prev, refresh)

    def _write(self, node: _Node, value: str, expire_at, refresh: bool) -> None:
        if not node.is_dir and not refresh:
            node.value = value
        node.modified = self.index + 1
        node.expire_at = expire_at

    def _compare(self, node: _Node, prev_value, prev_index: int) -> None:
        index_ok = not prev_index or node.modified == prev_index
        value_ok = prev_value is None or node.value == prev_value
        if index_ok and value_ok:
            return
        if index_ok:
            cause = f"[{prev_value} != {node.value}]"
        elif value_ok:
            cause = f"[{prev_index} != {node.modified}]"
        else:
            cause = f"[{prev_value} != {node.value}] [{prev_index} != {node.modified}]"
        raise _Error(101, cause, self.index)

    def _delete(self, key: str, args: dict) -> dict:
        if key == "/":
            raise _Error(107, "/", self.index)
        prev_value = args.get("prevValue")
        try:
            prev_index = int(args.get("prevIndex") or 0)
        except ValueError:
            raise _Error(203, "prevIndex", self.index)
        node = self._lookup(key)
        if prev_value is not None or prev_index:
            if node.is_dir:
                raise _Error(102, key, self.index)
            self._compare(node, prev_value, prev_index)
            action = "compareAndDelete"
        else:
            recursive = bool(_flag(args, "recursive"))
            if node.is_dir:
                if not (recursive or _flag(args, "dir")):
                    raise _Error(102, key, self.index)
                if node.children and not recursive:
                    raise _Error(108, key, self.index)
            action = "delete"
        return self._remove(node, action)

    def _remove(self, node: _Node, action: str) -> dict:
        prev = self._repr(node)
        parent = self._find(posixpath.dirname(node.path))
        del parent.children[node.path.rsplit("/", 1)[-1]]
        gone = {"key": node.path, "modifiedIndex": self.index + 1, "createdIndex": node.created}
        if node.is_dir:
            gone["dir"] = True
        return self._commit(action, node.path, gone, prev)

    def _commit(self, action: str, key: str, node: dict, prev: dict | None,
                refresh: bool = False) -> dict:
        self.index += 1
        event = _Event(action, self.index, key, node, prev, refresh)
        self._history.append(event)
        if not refresh:
            self._notify(event)
        self._schedule_expiry()
        return event.body()

    def _notify(self, event: _Event) -> None:
        woken = [w for w in self._watchers
                 if event.index >= w.since and event.matches(w.key, w.recursive)]
        for w in woken:
            self._watchers.remove(w)
            w.request.write(json.dumps(event.body()).encode())
            w.request.finish()

    # --- TTL --------------------------------------------------------------------------

    def _expiring(self) -> list[_Node]:
        out = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            if node.expire_at is not None:
                out.append(node)
            if node.is_dir:
                stack.extend(node.children.values())
        return out

    def _expire_due(self) -> None:
        now = self._clock.seconds()
        while True:
            due = [n for n in self._expiring() if n.expire_at <= now]
            if not due:
                return
            node = min(due, key=lambda n: (n.expire_at, n.path))
            self._remove(node, "expire")

    def _schedule_expiry(self) -> None:
        if self._expiry_call is not None and self._expiry_call.active():
            self._expiry_call.cancel()
        self._expiry_call = None
        pending = [n.expire_at for n in self._expiring()]
        if pending:
            delay = max(0.0, min(pending) - self._clock.seconds())
            self._expiry_call = self._clock.callLater(delay, self._on_expiry_timer)

    def _on_expiry_timer(self) -> None:
        self._expiry_call = None
        self._expire_due()
        self._schedule_expiry()


@implementer(IAgent)
class FakeEtcdNetwork:
    """Endpoints in front of a `FakeEtcd`, reachable only through `client`.

    Any host:port reaches the fake unless `refuse`d (connection refused at once) or
    `blackhole`d (the request hangs until cancelled, like a partitioned member)."""

    def __init__(self, fake: FakeEtcd):
        from treq.client import HTTPClient
        from treq.testing import RequestTraversalAgent

        from zan.etcd.client import BytesProducer

        self.fake = fake
        self._agent = RequestTraversalAgent(fake)
        self._refused: set[str] = set()
        self._blackholed: set[str] = set()
        self.hung: list[Deferred] = []
        self.attempts: list[str] = []  # netloc of every request, in order
        self.client = HTTPClient(self, data_to_body_producer=BytesProducer)

    def refuse(self, netloc: str) -> None:
        self._refused.add(netloc)

    def blackhole(self, netloc: str) -> None:
        self._blackholed.add(netloc)

    def heal(self, netloc: str | None = None) -> None:
        if netloc is None:
            self._refused.clear()
            self._blackholed.clear()
        else:
            self._refused.discard(netloc)
            self._blackholed.discard(netloc)

    def flush(self) -> None:
        """Move pending bytes between client and server (after the fake answers a watch)."""
        self._agent.flush()

    def request(self, method, uri, headers=None, bodyProducer=None):
        netloc = urlsplit(uri.decode()).netloc
        self.attempts.append(netloc)
        if netloc in self._refused:
            return fail(ConnectionRefusedError(netloc))
        if netloc in self._blackholed:
            d: Deferred = Deferred()
            self.hung.append(d)
            return d
        return self._agent.request(method, uri, headers, bodyProducer)
