"""Partition lookup from the placement driver (PD), as ZanRedisDB's Go SDK does it.

`PDClient.query(ns, epoch)` asks PD's `GET /query/<ns>?epoch=` for the namespace's partition
map; PD answers 304 when the epoch is current, which `query` reports as None.  Several PD
addresses may be given: a request that cannot reach one (refused, reset, timed out, 5xx)
moves on to the next, and the client keeps using whichever answered last.

`PartitionTracker` holds the current map of one namespace: it refreshes it every `interval`
seconds on the injected clock, and at once when asked (after a "cluster changed" error).
Like the SDK it ignores a map older than the one it has and, when a partition's leader is
missing from a new map, keeps the old leader while it is still one of the replicas.

The partition of a key is `murmur3_32(b"table:key", seed 0) % partition_num`, unsigned, the
namespace excluded (`partition_of`), byte for byte as the data nodes compute it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote, urlencode

import mmh3
from twisted.application.service import Service
from twisted.internet import error as _ierror
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from zan.errors import ClusterError

__all__ = [
    "DataNode", "PartitionInfo", "PartitionMap", "PDClient", "PDError", "PDNamespaceNotFound",
    "PDUnavailable", "PartitionTracker", "partition_of",
]


def partition_of(pk: bytes, partition_num: int) -> int:
    """The partition of primary key `pk` (`table:key`, without the namespace)."""
    return mmh3.hash(pk, 0, signed=False) % partition_num


# --- the map ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DataNode:
    """A data node as PD's `/datanodes` and `/query` describe it."""

    node_id: str
    broadcast_address: str
    redis_port: int
    http_port: int = 0
    hostname: str = ""
    dc_info: str = ""

    @property
    def redis_address(self) -> tuple[str, int]:
        return self.broadcast_address, self.redis_port

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DataNode":
        # ZanRedisDB writes the ports as strings; Zan's PD may write integers.
        return cls(
            node_id=str(d.get("node_id", "")),
            broadcast_address=str(d.get("broadcast_address", "")),
            redis_port=int(d.get("redis_port") or 0),
            http_port=int(d.get("http_port") or 0),
            hostname=str(d.get("hostname", "")),
            dc_info=str(d.get("dc_info", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "broadcast_address": self.broadcast_address,
                "hostname": self.hostname, "redis_port": str(self.redis_port),
                "http_port": str(self.http_port), "grpc_port": "", "version": "",
                "dc_info": self.dc_info}


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    leader: DataNode | None
    replicas: tuple[DataNode, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionMap:
    """One namespace's partitions at one epoch; `partitions[pid]` for pid in range(partition_num)."""

    namespace: str
    epoch: int
    partition_num: int
    partitions: tuple[PartitionInfo, ...]
    replicator: int = 0

    def partition_of(self, pk: bytes) -> int:
        return partition_of(pk, self.partition_num)

    def leader(self, pid: int) -> DataNode | None:
        return self.partitions[pid].leader

    @classmethod
    def from_json(cls, namespace: str, d: Mapping[str, Any]) -> "PartitionMap":
        num = int(d["partition_num"])
        if num < 1:
            raise ValueError(f"partition_num must be positive, got {num}")
        raw = d.get("partitions") or {}
        parts = []
        for pid in range(num):
            p = raw.get(str(pid)) or {}
            leader = p.get("leader")
            leader_node = DataNode.from_json(leader) if leader and leader.get("broadcast_address") else None
            replicas = tuple(DataNode.from_json(r) for r in p.get("replicas") or ())
            parts.append(PartitionInfo(leader_node, replicas))
        return cls(namespace=namespace, epoch=int(d.get("epoch", 0)), partition_num=num,
                   partitions=tuple(parts), replicator=int(d.get("replicator") or 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "partition_num": self.partition_num,
            "replicator": self.replicator,
            "partitions": {
                str(pid): {"leader": p.leader.to_json() if p.leader else {},
                           "replicas": [r.to_json() for r in p.replicas]}
                for pid, p in enumerate(self.partitions)
            },
        }

    def merged_with(self, old: "PartitionMap | None") -> "PartitionMap":
        """This map, keeping `old`'s leader where this one names none but `old`'s is still a
        replica (the SDK's rule: PD may publish a partition between two leaders)."""
        if old is None or old.partition_num != self.partition_num:
            return self
        parts = list(self.partitions)
        for pid, p in enumerate(parts):
            prev = old.partitions[pid].leader
            if p.leader is None and prev is not None and \
                    any(r.redis_address == prev.redis_address for r in p.replicas):
                parts[pid] = replace(p, leader=prev)
        return replace(self, partitions=tuple(parts))


# --- errors -----------------------------------------------------------------------------

class PDError(ClusterError):
    """PD could not give a partition map."""

    text = "ERR_CLUSTER_CHANGED: placement driver lookup failed"


class PDUnavailable(PDError):
    text = "ERR_CLUSTER_CHANGED: no placement driver answered"


class PDNamespaceNotFound(PDError):
    http_status = 404
    text = "namespace not found on the placement driver"


# --- the HTTP client --------------------------------------------------------------------

class _Timeout(Exception):
    pass


_UNREACHABLE = (_Timeout, _ierror.ConnectError, _ierror.ConnectionLost, _ierror.ConnectionDone,
                ResponseNeverReceived, ResponseFailed, OSError)


def _normalize(address: str) -> str:
    address = address.strip().rstrip("/")
    return address if "://" in address else "http://" + address


class PDClient:
    """Lookups against one or more PD addresses (``host:port`` or ``http://host:port``).

    `http_client` is anything with treq's `HTTPClient.get` (a treq `HTTPClient`, or
    `treq.testing.StubTreq`); by default one is built on an `Agent` on `reactor`.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime, pd_addresses: Sequence[str] | str,
                 http_client=None, *, timeout: float = 3.0):
        if isinstance(pd_addresses, str):
            pd_addresses = [a for a in pd_addresses.split(",") if a.strip()]
        if not pd_addresses:
            raise ValueError("at least one PD address is needed")
        self._reactor = reactor
        self._addresses = [_normalize(a) for a in pd_addresses]
        self._current = 0
        self._timeout = timeout
        self._pool = None
        if http_client is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            http_client = HTTPClient(Agent(reactor, pool=self._pool))
        self._http = http_client

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def current_address(self) -> str:
        """The PD the next request goes to first (the last one that answered)."""
        return self._addresses[self._current]

    def close(self) -> Deferred:
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    async def query(self, namespace: str, epoch: int | None = None) -> PartitionMap | None:
        """The partition map of `namespace`, or None if PD says `epoch` is still current (304).

        Raises `PDNamespaceNotFound` on 404, `PDUnavailable` when no PD gave a usable answer.
        """
        path = "/query/" + quote(namespace, safe="")
        if epoch is not None:
            path += "?" + urlencode({"epoch": str(int(epoch))})
        last: str = "no PD address"
        n = len(self._addresses)
        for step in range(n):
            index = (self._current + step) % n
            url = self._addresses[index] + path
            try:
                code, body = await self._get(url)
            except _UNREACHABLE as e:
                last = f"{url}: {e!r}"
                self._log.info("PD {url} unreachable: {error!r}", url=url, error=e)
                continue
            if code >= 500:
                last = f"{url}: HTTP {code} {body[:200]!r}"
                self._log.info("PD {url} answered {code}", url=url, code=code)
                continue
            self._current = index
            if code == 304:
                return None
            if code == 404:
                raise PDNamespaceNotFound(f"namespace {namespace!r} not found on PD {url}")
            if code != 200:
                raise PDError(f"ERR_CLUSTER_CHANGED: PD {url} answered HTTP {code}: {body[:200]!r}")
            try:
                return PartitionMap.from_json(namespace, json.loads(body))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise PDError(f"ERR_CLUSTER_CHANGED: PD {url} sent a bad partition map: {e}") from None
        raise PDUnavailable(f"ERR_CLUSTER_CHANGED: no placement driver answered ({last})")

    async def _get(self, url: str) -> tuple[int, bytes]:
        d = self._http.get(url)
        timed_out = []

        def expire():
            timed_out.append(True)
            d.cancel()

        call = self._reactor.callLater(self._timeout, expire)
        try:
            response = await d
            body = await response.content()
        except CancelledError:
            if timed_out:
                raise _Timeout(f"no answer in {self._timeout} s") from None
            raise
        finally:
            if call.active():
                call.cancel()
        return response.code, body


# --- keeping a map current --------------------------------------------------------------

class PartitionTracker(Service):
    """The current partition map of one namespace, refreshed periodically and on demand.

    As a `Service`, `startService` begins the periodic refresh (the first one at once).
    `listeners` are called with each new map.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime, pd: PDClient, namespace: str, *,
                 interval: float = 3.0):
        self._reactor = reactor
        self._pd = pd
        self.namespace = namespace
        self.interval = interval
        self.current: PartitionMap | None = None
        self.listeners: list[Callable[[PartitionMap], None]] = []
        self._inflight: Deferred | None = None
        self._waiters: list[Deferred] = []
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._inflight is not None:
            self._inflight.cancel()
        return None

    def _tick(self) -> None:
        # Errors are logged and the old map kept: the next tick or a command error retries.
        self.refresh().addErrback(self._log_failure)

    def _log_failure(self, f: Failure) -> None:
        if not f.check(CancelledError):
            self._log.warn("partition map refresh for {ns} failed: {error}",
                           ns=self.namespace, error=f.value)

    def refresh(self) -> Deferred:
        """Ask PD now (with the current epoch); fires with the map in force afterwards.

        Calls made while a request is out share it.
        """
        out: Deferred = Deferred()
        self._waiters.append(out)
        if len(self._waiters) == 1:
            self._inflight = Deferred.fromCoroutine(self._refresh())
            self._inflight.addBoth(self._settle)
        return out

    def _settle(self, result) -> None:
        self._inflight = None
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(result)

    async def _refresh(self) -> PartitionMap:
        epoch = self.current.epoch if self.current is not None else None
        got = await self._pd.query(self.namespace, epoch)
        if got is None:
            if self.current is None:
                raise PDError("ERR_CLUSTER_CHANGED: PD answered 304 before any map was known")
            return self.current
        if self.current is not None and got.epoch < self.current.epoch:
            self._log.info("ignoring map of {ns} at older epoch {got} < {have}",
                           ns=self.namespace, got=got.epoch, have=self.current.epoch)
            return self.current
        new = got.merged_with(self.current)
        if new != self.current:
            self.current = new
            for listener in list(self.listeners):
                listener(new)
        return new
