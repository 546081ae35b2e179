"""Leadership and liveness through etcd TTL keys.

`LeaderLock` is ZanRedisDB's `PDLeaderSession` election: whoever creates the key
(`prevExist=false`, with a TTL) leads, keeps it alive with compare-and-swap refreshes on its
own value, and gives it up by deleting it with `prevValue`.  The others watch the key and
try again once it is deleted or expires.

`TTLRegistration` is the simpler liveness record (`DataNodes/Node-<id>`): set with a TTL,
refreshed, set again if it vanished.
"""

from __future__ import annotations

from typing import Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from zan.etcd.client import EtcdClient
from zan.etcd.errors import EtcdError, EventIndexCleared, KeyNotFound, NodeExist, TestFailed
from zan.etcd.watch import Backoff

__all__ = ["LeaderLock", "TTLRegistration"]


class LeaderLock(Service):
    """Campaign for `key` with a `value` unique to this contender.

    `on_elected()` runs when this contender becomes leader and `on_lost()` when it stops
    being leader (the key vanished or holds another value, refreshes failed for a whole
    TTL, or `resign()`); each `on_elected` is followed by exactly one `on_lost`.

    The leader considers itself deposed `ttl` seconds after the last refresh it *sent*
    that succeeded: etcd cannot have expired the key before then, so two leaders never
    overlap as long as both clocks run at about the same rate.
    """

    _log = Logger()

    def __init__(self, client: EtcdClient, key: str, value: str, clock: IReactorTime,
                 ttl: int = 30, on_elected: Callable[[], None] | None = None,
                 on_lost: Callable[[], None] | None = None,
                 refresh_interval: float | None = None, retry: Backoff | None = None):
        self._client = client
        self.key = key
        self.value = value
        self._clock = clock
        self.ttl = ttl
        self.on_elected = on_elected
        self.on_lost = on_lost
        self.refresh_interval = refresh_interval if refresh_interval is not None else ttl / 3
        self._retry = retry or Backoff(initial=min(1.0, ttl / 10), maximum=ttl / 3)
        self._loop: Deferred | None = None
        self._lease_call = None
        self.is_leader = False
        self.leader_value: str | None = None  # the holder's value as last seen
        self.modified_index = 0  # of our key while we lead

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self):
        super().stopService()
        return self.resign()

    def start(self) -> None:
        if self._loop is None:
            self._loop = Deferred.fromCoroutine(self._run())
            self._loop.addErrback(lambda f: f.trap(CancelledError))

    def resign(self) -> Deferred:
        """Stop campaigning; if leading, delete the key (only if it is still ours)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
        was_leader = self.is_leader
        self._lose("resigned")
        if not was_leader:
            return Deferred.fromCoroutine(_noop())
        return Deferred.fromCoroutine(self._delete_own())

    async def _delete_own(self) -> None:
        try:
            await self._client.compare_and_delete(self.key, prev_value=self.value)
        except (KeyNotFound, TestFailed):
            pass
        except EtcdError as e:
            self._log.warn("could not delete leader key {key}: {why}", key=self.key, why=e)

    # --- the campaign ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if not self.is_leader:
                    await self._campaign()
                else:
                    await deferLater(self._clock, self.refresh_interval)
                    await self._refresh()
                self._retry.reset()
            except CancelledError:
                raise
            except EventIndexCleared:
                continue
            except EtcdError as e:
                delay = self._retry.next_delay()
                self._log.info("leader lock {key}: {why}; retrying in {delay} s",
                               key=self.key, why=e, delay=delay)
                await deferLater(self._clock, delay)

    async def _campaign(self) -> None:
        sent_at = self._clock.seconds()
        try:
            resp = await self._client.create(self.key, self.value, ttl=self.ttl)
            self._elect(resp.node.modified_index, sent_at)
            return
        except NodeExist:
            pass
        try:
            current = await self._client.get(self.key)
        except KeyNotFound:
            return  # gone between the create and the get: try again at once
        self.leader_value = current.node.value
        if current.node.value == self.value:
            # Our own earlier create that timed out on the way back, or a restart within
            # the TTL: the key is ours, so refresh it now to learn how long we hold it.
            self.modified_index = current.node.modified_index
            await self._refresh(adopting=True)
            return
        # Someone else leads: wait for any change of the key, then try again.
        index = current.etcd_index
        while True:
            event = await self._client.watch(self.key, wait_index=index + 1)
            if event is not None:
                return

    async def _refresh(self, adopting: bool = False) -> None:
        sent_at = self._clock.seconds()
        try:
            resp = await self._client.refresh_ttl(self.key, self.ttl, prev_value=self.value)
        except (KeyNotFound, TestFailed) as e:
            if adopting:
                return
            self._lose(f"refresh refused: {e}")
            return
        if adopting:
            self._elect(resp.node.modified_index, sent_at)
        elif self.is_leader:  # else the lease ran out while this refresh was in flight
            self.modified_index = resp.node.modified_index
            self._arm_lease(sent_at)

    def _elect(self, modified_index: int, sent_at: float) -> None:
        self.modified_index = modified_index
        self.leader_value = self.value
        self._arm_lease(sent_at)
        if self.is_leader:
            return
        self.is_leader = True
        self._log.info("leader lock {key}: elected", key=self.key)
        self._call(self.on_elected)

    def _arm_lease(self, sent_at: float) -> None:
        if self._lease_call is not None and self._lease_call.active():
            self._lease_call.cancel()
        delay = max(0.0, sent_at + self.ttl - self._clock.seconds())
        self._lease_call = self._clock.callLater(delay, self._lease_expired)

    def _lease_expired(self) -> None:
        self._lease_call = None
        self._lose("no successful refresh for a whole TTL")

    def _lose(self, why: str) -> None:
        if self._lease_call is not None and self._lease_call.active():
            self._lease_call.cancel()
        self._lease_call = None
        if not self.is_leader:
            return
        self.is_leader = False
        self._log.info("leader lock {key}: lost ({why})", key=self.key, why=why)
        self._call(self.on_lost)

    def _call(self, callback: Callable[[], None] | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            self._log.failure("leader lock callback failed")


class TTLRegistration(Service):
    """Keep `key` = `value` alive with a TTL: set it, refresh every `refresh_interval`
    (default ttl/10, as ZanRedisDB does), and set it again whenever a refresh finds it
    gone.  `stop(delete=True)` removes the key."""

    _log = Logger()

    def __init__(self, client: EtcdClient, key: str, value: str, clock: IReactorTime,
                 ttl: int = 30, refresh_interval: float | None = None):
        self._client = client
        self.key = key
        self.value = value
        self._clock = clock
        self.ttl = ttl
        self.refresh_interval = refresh_interval if refresh_interval is not None else ttl / 10
        self._loop: Deferred | None = None
        self._needs_set = True
        self.registered = False

    def startService(self) -> None:
        super().startService()
        self.start()

    def stopService(self):
        super().stopService()
        return self.stop(delete=True)

    def start(self) -> None:
        if self._loop is None:
            self._needs_set = True
            self._loop = Deferred.fromCoroutine(self._run())
            self._loop.addErrback(lambda f: f.trap(CancelledError))

    def set_value(self, value: str) -> None:
        """Publish a new value at the next refresh."""
        self.value = value
        self._needs_set = True

    def stop(self, delete: bool = True) -> Deferred:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
        self.registered = False
        return Deferred.fromCoroutine(self._delete() if delete else _noop())

    async def _delete(self) -> None:
        try:
            await self._client.compare_and_delete(self.key, prev_value=self.value)
        except (KeyNotFound, TestFailed):
            pass
        except EtcdError as e:
            self._log.warn("could not delete {key}: {why}", key=self.key, why=e)

    async def _run(self) -> None:
        while True:
            try:
                if self._needs_set:
                    await self._client.set(self.key, self.value, ttl=self.ttl)
                    self._needs_set = False
                else:
                    await self._client.refresh_ttl(self.key, self.ttl)
                self.registered = True
            except CancelledError:
                raise
            except KeyNotFound:
                self._log.info("registration {key} expired; registering again", key=self.key)
                self._needs_set = True
                continue
            except EtcdError as e:
                self._log.warn("registration {key}: {why}", key=self.key, why=e)
            await deferLater(self._clock, self.refresh_interval)


async def _noop() -> None:
    return None
