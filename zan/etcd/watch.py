"""Keep a view of an etcd subtree current: GET, then long-poll for the next change.

A watch event is only a signal that something changed ("rescan"), never a delta to apply:
after every event the watcher GETs the key again and hands the whole node to `on_change`.
Events that happen between two polls are therefore never lost, only merged, and an
`EventIndexCleared` (the history moved past our index) is handled the same way.
"""

from __future__ import annotations

import inspect
from typing import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from zan.etcd.client import EtcdClient, Node
from zan.etcd.errors import EventIndexCleared, KeyNotFound

__all__ = ["Watcher", "Backoff"]

OnChange = Callable[[Node | None, int], "Awaitable[None] | None"]


class Backoff:
    """Exponential delays between failed attempts: `initial`, doubling, at most `maximum`."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0):
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Watcher(Service):
    """Calls `on_change(node, etcd_index)` with the current node at `key` (None when the key
    does not exist) at start and after every change, until stopped.

    `on_change` may return an awaitable; the next GET waits for it.  An exception from it
    is logged and the watch goes on.  `etcd_index` only grows between calls, so it can
    serve as an epoch.
    """

    _log = Logger()

    def __init__(self, client: EtcdClient, key: str, on_change: OnChange, clock: IReactorTime,
                 recursive: bool = True, backoff: Backoff | None = None,
                 watch_timeout: float | None = None, quorum: bool = False):
        self._client = client
        self.key = key
        self._on_change = on_change
        self._clock = clock
        self._recursive = recursive
        self._backoff = backoff or Backoff()
        self._watch_timeout = watch_timeout
        self._quorum = quorum
        self._loop: Deferred | None = None
        self.last_index = 0
        self.scans = 0  # GETs that reached on_change

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self):
        super().stopService()
        self.stop()

    @property
    def active(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(lambda f: f.trap(CancelledError))

    def stop(self) -> None:
        """Stop at once, cancelling the request or the back-off wait in progress."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()

    async def _run(self) -> None:
        while True:
            try:
                index = await self._scan()
                while True:
                    event = await self._client.watch(self.key, wait_index=index + 1,
                                                     recursive=self._recursive,
                                                     timeout=self._watch_timeout)
                    if event is not None:
                        break
                self._backoff.reset()
            except CancelledError:
                raise
            except EventIndexCleared:
                self._log.info("etcd history passed index of watch on {key}; rescanning",
                               key=self.key)
            except Exception as e:
                delay = self._backoff.next_delay()
                self._log.warn("etcd watch on {key} failed ({why}); retrying in {delay} s",
                               key=self.key, why=e, delay=delay)
                await deferLater(self._clock, delay)

    async def _scan(self) -> int:
        """GET the key, tell the owner, and return the index to watch from (exclusive)."""
        try:
            resp = await self._client.get(self.key, recursive=self._recursive,
                                          quorum=self._quorum)
            node, index = resp.node, resp.etcd_index
        except KeyNotFound as e:
            node, index = None, e.index
        self.last_index = max(self.last_index, index)
        self.scans += 1
        try:
            result = self._on_change(node, index)
            if inspect.isawaitable(result):
                await result
        except CancelledError:
            raise
        except Exception:
            self._log.failure("on_change for etcd key {key} failed", key=self.key)
        return index
