"""The smart client: PD's partition map, commands routed to partition leaders, retries.

`ZanClient` routes each command by its key's partition (`murmur3_32(b"table:key") %
partition_num`, `zan.client.pd.partition_of`) to that partition's leader, as ZanRedisDB's
Go SDK does.  Keys are written `ns:table:key`; a key given as `table:key` gets the client's
namespace in front.

A command that fails with a "cluster changed" error (text starting with
`ERR_CLUSTER_CHANGED`, equal to `no partition node`, or containing `the node stopped`), or
that cannot reach its node, makes the client ask PD for a fresh map and try again after a
backoff of `5 ms + 5 ms * (2 << n)` (capped), like the SDK: at least `max_tries` tries and
more while less than `retry_timeout` seconds have passed.  Any other error reply fails at
once, with the server's text unchanged.  A lost connection counts as unreachable, so a
write whose reply was lost may be applied twice; a reply timeout is not retried.

Multi-key helpers (`mget`, `mset`, `delete`, `exists`) send one command per partition, in
parallel, and merge the replies in the order of the keys given.  `scan` walks every
partition with ZanRedisDB's `advscan` through the partitions' leaders.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence

from twisted.internet import error as _ierror
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from zan.client.pd import DataNode, PartitionMap, PartitionTracker, PDClient
from zan.errors import ClusterError, ProtocolError

__all__ = ["ZanClient", "NoPartitionNode", "is_cluster_changed", "error_text",
           "txredisapi_connection"]

Address = tuple[str, int]


class NoPartitionNode(ClusterError):
    """The map names no leader for the key's partition (the SDK's own text)."""

    text = "no partition node"


def error_text(error: BaseException) -> str:
    """The text of an error reply however the connection reports it (`ReplyError.message`,
    txredisapi's `ResponseError` string, a `ZanError`)."""
    message = getattr(error, "message", None)
    return message if isinstance(message, str) else str(error)


def is_cluster_changed(text: str) -> bool:
    """The SDK's test for "the map is stale: ask PD again and retry"."""
    return text.startswith("ERR_CLUSTER_CHANGED") or text == "no partition node" \
        or "the node stopped" in text


def _unreachable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [_ierror.ConnectError, _ierror.ConnectionClosed,
                                        ConnectionError]
    try:
        import txredisapi
        types.append(txredisapi.ConnectionError)
    except ImportError:  # pragma: no cover - txredisapi is a dependency
        pass
    return tuple(types)


_UNREACHABLE = _unreachable_types()


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _decode_adv_cursor(cursor: bytes) -> dict[int, bytes]:
    """ZanRedisDB's merged-scan cursor: base64 of `<pid>:<base64 part cursor>;` per partition
    still in progress; empty when all are done."""
    if not cursor:
        return {}
    try:
        states = {}
        for item in filter(None, base64.b64decode(cursor, validate=True).split(b";")):
            pid, _, part = item.partition(b":")
            states[int(pid)] = base64.b64decode(part, validate=True)
        return states
    except (binascii.Error, ValueError):
        raise ProtocolError(f"unreadable advscan cursor {cursor[:64]!r}") from None


def _encode_adv_cursor(states: Mapping[int, bytes]) -> bytes:
    text = b"".join(b"%d:%s;" % (pid, base64.b64encode(c)) for pid, c in sorted(states.items()))
    return base64.b64encode(text)


class _TxRedisConnection:
    """A txredisapi connection pool seen through the `execute(*argv)` seam."""

    def __init__(self, pool):
        self._pool = pool

    def execute(self, *argv) -> Deferred:
        return self._pool.execute_command(*argv)

    def close(self) -> Deferred:
        return self._pool.disconnect()


def txredisapi_connection(host: str, port: int, pool_size: int = 4) -> _TxRedisConnection:
    """A `conn_factory` on txredisapi, returning raw bytes (`charset=None,
    convertNumbers=False`).  txredisapi connects through the global reactor."""
    import txredisapi
    return _TxRedisConnection(txredisapi.lazyConnectionPool(
        host, port, poolsize=pool_size, reconnect=True, charset=None, convertNumbers=False))


class ZanClient:
    """A client of one namespace of a Zan (or ZanRedisDB) cluster.

    `conn_factory(host, port)` returns a connection to a data node: anything with
    `execute(*argv) -> Deferred` (and optionally `close()`), e.g. a
    `zan.resp.client.RespClientPool` (the default) or a txredisapi connection opened with
    `charset=None, convertNumbers=False`.  One connection object per node is kept.

    Call `start()` (or just send commands: the first one fetches the map) and `close()`.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime, pd_addresses: Sequence[str] | str, namespace: str,
                 *, conn_factory: Callable[[str, int], Any] | None = None, http_client=None,
                 refresh_interval: float = 3.0, max_tries: int = 3, retry_timeout: float = 5.0,
                 max_backoff: float = 0.5, pool_size: int = 4,
                 command_timeout: float | None = 5.0, pd_timeout: float = 3.0):
        self._reactor = reactor
        self.namespace = namespace
        self._prefix = namespace.encode("utf-8") + b":"
        self.max_tries = max_tries
        self.retry_timeout = retry_timeout
        self.max_backoff = max_backoff
        if conn_factory is None:
            from zan.resp.client import RespClientPool

            def conn_factory(host: str, port: int):
                return RespClientPool(reactor, host, port, size=pool_size, timeout=command_timeout)
        self._conn_factory = conn_factory
        self.pd = PDClient(reactor, pd_addresses, http_client, timeout=pd_timeout)
        self._tracker = PartitionTracker(reactor, self.pd, namespace, interval=refresh_interval)
        self._tracker.listeners.append(self._map_changed)
        self._conns: dict[Address, Any] = {}
        self._closed = False

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> Deferred:
        """Start the periodic map refresh; fires with the first map."""
        if not self._tracker.running:
            self._tracker.startService()
        return Deferred.fromCoroutine(self._map())

    def close(self) -> Deferred:
        """Stop refreshing and close every node connection."""
        self._closed = True
        if self._tracker.running:
            self._tracker.stopService()
        conns, self._conns = list(self._conns.values()), {}
        return gatherResults([self._close_conn(c) for c in conns] + [self.pd.close()]) \
            .addCallback(lambda _: None)

    @staticmethod
    def _close_conn(conn) -> Deferred:
        closer = getattr(conn, "close", None) or getattr(conn, "disconnect", None)
        if closer is None:
            return succeed(None)
        return maybeDeferred(closer).addErrback(lambda f: None)

    @property
    def partition_map(self) -> PartitionMap | None:
        return self._tracker.current

    def refresh(self) -> Deferred:
        """Ask PD for the map now; fires with the map in force afterwards."""
        return self._tracker.refresh()

    # --- keys and routing -----------------------------------------------------------

    def full_key(self, key: bytes | str) -> bytes:
        """`key` as `ns:table:key`: a key not already starting with `ns:` plus a `table:`
        part gets the namespace in front."""
        key = _as_bytes(key)
        if key.startswith(self._prefix) and b":" in key[len(self._prefix):]:
            return key
        return self._prefix + key

    def partition_of(self, key: bytes | str, pmap: PartitionMap | None = None) -> int:
        pmap = pmap or self._tracker.current
        if pmap is None:
            raise NoPartitionNode()
        return pmap.partition_of(self.full_key(key)[len(self._prefix):])

    async def _map(self) -> PartitionMap:
        if self._tracker.current is not None:
            return self._tracker.current
        return await self._tracker.refresh()

    def _conn(self, node: DataNode):
        address = node.redis_address
        conn = self._conns.get(address)
        if conn is None:
            conn = self._conns[address] = self._conn_factory(*address)
        return conn

    def _map_changed(self, pmap: PartitionMap) -> None:
        live = {n.redis_address for p in pmap.partitions
                for n in ((p.leader,) if p.leader else ()) + p.replicas}
        for address in [a for a in self._conns if a not in live]:
            self._log.info("closing connection to {host}:{port}, gone from the map of {ns}",
                           host=address[0], port=address[1], ns=self.namespace)
            self._close_conn(self._conns.pop(address))

    def _leader_conn(self, pmap: PartitionMap, pid: int):
        node = pmap.leader(pid)
        if node is None:
            raise NoPartitionNode()
        return self._conn(node)

    # --- retries --------------------------------------------------------------------

    def _retryable(self, error: BaseException) -> bool:
        if isinstance(error, _UNREACHABLE):
            return True
        return is_cluster_changed(error_text(error))

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff, 0.005 + 0.005 * (2 << attempt))

    async def _with_retry(self, op: Callable[[PartitionMap], Awaitable[Any]], what: str,
                          failed: BaseException | None = None, started: float | None = None):
        """`op(map)` until it succeeds, fails with an error not worth retrying, or the tries
        are used up; `failed` is the error of a first try already made at `started`."""
        started = self._reactor.seconds() if started is None else started
        attempt = 0
        while True:
            if failed is not None:
                attempt += 1
                if attempt >= self.max_tries and \
                        self._reactor.seconds() - started >= self.retry_timeout:
                    self._log.info("{what}: giving up after {n} tries: {error}",
                                   what=what, n=attempt, error=error_text(failed))
                    raise failed
                self._log.debug("{what}: try {n} failed ({error}); refreshing the map",
                                what=what, n=attempt, error=error_text(failed))
                try:
                    await self._tracker.refresh()
                except Exception as e:
                    # Keep the old map: the command's own error is the one worth reporting.
                    self._log.info("map refresh failed: {error}", error=error_text(e))
                await deferLater(self._reactor, self._backoff(attempt), lambda: None)
                failed = None
            if self._closed:
                raise ClusterError("ERR client closed")
            try:
                return await op(await self._map())
            except Exception as e:
                if not self._retryable(e):
                    raise
                failed = e

    async def _retried_map(self) -> PartitionMap:
        """The map, asking PD (with the usual retries) if there is none yet."""
        if self._tracker.current is not None:
            return self._tracker.current
        return await self._with_retry(succeed, "partition map lookup")

    async def _on_partition(self, pid: int, argv: Sequence[bytes],
                            failed: BaseException | None = None, started: float | None = None):
        def op(pmap: PartitionMap):
            return self._leader_conn(pmap, pid).execute(*argv)
        return await self._with_retry(op, argv[0].decode("utf-8", "replace"), failed, started)

    def _group(self, keys: Iterable[bytes | str], pmap: PartitionMap) -> dict[int, list[int]]:
        """pid -> positions of the keys of that partition, in order."""
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(pmap.partition_of(key[len(self._prefix):]), []).append(i)
        return groups

    async def _fan_out(self, calls: list[Awaitable[Any]]) -> list[Any]:
        """Run `calls` in parallel; their results in order, or the first error once all
        have settled (a retry must not race calls still in flight)."""
        results = await DeferredList([Deferred.fromCoroutine(c) for c in calls],
                                     consumeErrors=True)
        for ok, value in results:
            if not ok:
                value.raiseException()
        return [value for _, value in results]

    # --- commands -------------------------------------------------------------------

    def execute(self, *argv: bytes | str) -> Deferred:
        """Run a single-key command (`argv[1]` is the key) on its partition's leader."""
        if len(argv) < 2:
            raise ValueError("execute needs a command and a key")
        args = [_as_bytes(a) for a in argv]
        args[1] = key = self.full_key(args[1])
        pmap = self._tracker.current
        if pmap is None:
            return Deferred.fromCoroutine(self._execute(args))
        # The common case stays a plain Deferred chain: a coroutine per command costs more
        # than the routing itself.
        pid = pmap.partition_of(key[len(self._prefix):])
        node = pmap.leader(pid)
        if node is None:
            return Deferred.fromCoroutine(self._on_partition(pid, args))
        started = self._reactor.seconds()
        return self._conn(node).execute(*args).addErrback(self._retry_first, pid, args, started)

    def _retry_first(self, failure, pid: int, args: list[bytes], started: float):
        if not self._retryable(failure.value):
            return failure
        return Deferred.fromCoroutine(self._on_partition(pid, args, failure.value, started))

    async def _execute(self, args: list[bytes]):
        pmap = await self._retried_map()
        return await self._on_partition(pmap.partition_of(args[1][len(self._prefix):]), args)

    def mget(self, *keys: bytes | str) -> Deferred:
        """Values of `keys` in order (None where absent)."""
        return Deferred.fromCoroutine(self._mget([self.full_key(k) for k in keys]))

    async def _mget(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        groups = self._group(keys, await self._retried_map())
        replies = await self._fan_out(
            [self._on_partition(pid, [b"MGET", *(keys[i] for i in pos)]) for pid, pos in groups.items()])
        out: list[bytes | None] = [None] * len(keys)
        for pos, values in zip(groups.values(), replies):
            for i, value in zip(pos, values):
                out[i] = value
        return out

    def mset(self, mapping: Mapping[bytes | str, bytes | str]) -> Deferred:
        """Set every key of `mapping` (one MSET per partition: atomic only within a partition);
        fires with None."""
        pairs = [(self.full_key(k), _as_bytes(v)) for k, v in mapping.items()]
        return Deferred.fromCoroutine(self._mset(pairs))

    async def _mset(self, pairs: list[tuple[bytes, bytes]]) -> None:
        if not pairs:
            return None
        groups = self._group([k for k, _ in pairs], await self._retried_map())
        calls = []
        for pid, pos in groups.items():
            argv = [b"MSET"]
            for i in pos:
                argv += pairs[i]
            calls.append(self._on_partition(pid, argv))
        await self._fan_out(calls)
        return None

    def delete(self, *keys: bytes | str) -> Deferred:
        """DEL across partitions; fires with the number of keys removed."""
        return Deferred.fromCoroutine(self._count(b"DEL", [self.full_key(k) for k in keys]))

    def exists(self, *keys: bytes | str) -> Deferred:
        """EXISTS across partitions; fires with how many of `keys` exist (repeats count)."""
        return Deferred.fromCoroutine(self._count(b"EXISTS", [self.full_key(k) for k in keys]))

    async def _count(self, name: bytes, keys: list[bytes]) -> int:
        if not keys:
            return 0
        groups = self._group(keys, await self._retried_map())
        replies = await self._fan_out(
            [self._on_partition(pid, [name, *(keys[i] for i in pos)]) for pid, pos in groups.items()])
        return sum(int(r) for r in replies)

    # --- scan -----------------------------------------------------------------------

    async def scan(self, table: bytes | str, match: bytes | str | None = None, count: int = 100,
                   kind: str = "KV") -> AsyncIterator[bytes]:
        """Every key of `table` (of the ZanRedisDB scan type `kind`: KV, HASH, LIST, SET,
        ZSET), as `table:key` the way the nodes return them; order is kept only within a
        partition.

        Each round sends one `advscan ns:table:<cursor> <type> [MATCH m] COUNT n` to each
        leader, its cursor naming just the partitions that node leads, so a node scanning
        more partitions than it leads never yields a key twice.
        """
        table = _as_bytes(table)
        pmap = await self._retried_map()
        states: dict[int, bytes] = {pid: b"" for pid in range(pmap.partition_num)}
        opts = [b"MATCH", _as_bytes(match)] if match is not None else []
        opts += [b"COUNT", b"%d" % count]
        kind_arg = _as_bytes(kind).upper()
        found: list[bytes] = []

        async def one_node(conn, pids: list[int]) -> None:
            cursor = _encode_adv_cursor({pid: states[pid] for pid in pids})
            reply = await conn.execute(b"ADVSCAN", self._prefix + table + b":" + cursor, kind_arg, *opts)
            next_cursor, keys = reply
            remaining = _decode_adv_cursor(bytes(next_cursor))
            for pid in pids:
                if pid in remaining:
                    states[pid] = remaining[pid]
                else:
                    del states[pid]
            found.extend(keys)

        async def one_round(pmap: PartitionMap) -> None:
            by_node: dict[Address, list[int]] = {}
            conns = {}
            for pid in sorted(states):
                node = pmap.leader(pid)
                if node is None:
                    raise NoPartitionNode()
                by_node.setdefault(node.redis_address, []).append(pid)
                conns[node.redis_address] = self._conn(node)
            # A node that answered keeps its progress even if another fails the round.
            await self._fan_out([one_node(conns[a], pids) for a, pids in by_node.items()])

        while states:
            await self._with_retry(one_round, "advscan")
            batch, found[:] = list(found), []
            for key in batch:
                yield key
