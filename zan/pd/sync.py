"""Whether a partition's replicas are in sync, asked of the data nodes.

PD moves a replica only when the partition is "full ready", as ZanRedisDB's
`IsRaftSynced` says: every live in-sync replica is a Raft member of the group and has
caught up with its leader.  Without that check a drain could drop the old replica of a
partition before the new one holds the data, leaving a bare quorum.  And a `Removing`
entry is forgotten only when no live member still lists that replica (`lingering`),
so the slot is not reused while the group still counts it.

`judge` decides from plain answers (tested without a network); `HttpSyncProbe` collects
them from the nodes' HTTP API: `/cluster/members/<ns>-<pid>` from the partition's leader
(or another live replica) and `/cluster/israftsynced/<ns>-<pid>` from every live replica.
"""

from __future__ import annotations

import json
from typing import Mapping, NamedTuple, Sequence

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults, succeed
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from zan.pd.model import NodeInfo, PartitionReplicaInfo

__all__ = ["HttpSyncProbe", "PartitionSync", "judge"]


class PartitionSync(NamedTuple):
    synced: bool
    lingering: frozenset[str]


def _leaving(info: PartitionReplicaInfo) -> dict[str, int]:
    return {n: r.remove_replica_id or info.raft_ids.get(n, 0)
            for n, r in info.removings.items()}


def judge(info: PartitionReplicaInfo, live: Sequence[str], members: Sequence[int] | None,
          synced_answers: Mapping[str, bool]) -> PartitionSync:
    """`live`: the ISR nodes registered now; `members`: the replica ids a live replica
    lists as voters (None: nobody answered); `synced_answers`: node → its replica says it
    has a leader and has applied close to the commit index."""
    if members is None:
        # Nothing known: not synced, and every Removing replica may still be a member.
        return PartitionSync(False, frozenset(info.removings))
    voters = set(members)
    lingering = frozenset(n for n, rid in _leaving(info).items() if rid in voters)
    synced = bool(live) and all(
        info.raft_ids.get(n) in voters and synced_answers.get(n, False) for n in live)
    return PartitionSync(synced, lingering)


class HttpSyncProbe:
    """Asks data nodes over HTTP; at most `concurrency` requests at a time, each given up
    after `timeout` seconds (a node that does not answer counts as not synced)."""

    _log = Logger()

    def __init__(self, reactor, timeout: float = 2.0, concurrency: int = 32,
                 http_client=None):
        self.timeout = timeout
        self._limit = DeferredSemaphore(concurrency)
        if http_client is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = 4
            self._pool = pool
            http_client = HTTPClient(Agent(reactor, pool=pool))
        else:
            self._pool = None
        self._http = http_client

    def close(self):
        return self._pool.closeCachedConnections() if self._pool is not None else succeed(None)

    async def _get(self, node: NodeInfo, path: str):
        """(status, parsed JSON or None); (0, None) when the node does not answer."""
        url = f"http://{node.node_ip}:{node.http_port}{path}"

        async def fetch():
            response = await self._http.get(url, timeout=self.timeout)
            body = await response.content()
            return response.code, body
        try:
            code, body = await self._limit.run(lambda: Deferred.fromCoroutine(fetch()))
        except Exception as e:   # any transport failure: the node did not answer
            self._log.debug("{url}: {why}", url=url, why=e)
            return 0, None
        try:
            return code, json.loads(body or b"null")
        except ValueError:
            return code, None

    async def __call__(self, ns: str, pid: int, info: PartitionReplicaInfo, leader: str,
                       nodes: Mapping[str, NodeInfo]) -> PartitionSync:
        live = [n for n in info.isr if n in nodes]
        askable = ([leader] if leader in nodes else []) + [n for n in live if n != leader]
        members = None
        name = f"{ns}-{pid}"
        for node in askable[:2]:
            code, doc = await self._get(nodes[node], f"/cluster/members/{name}")
            if code == 200 and isinstance(doc, list):
                members = [m.get("id") for m in doc if isinstance(m, dict)]
                break
        if members is None:
            return judge(info, live, None, {})
        answers = await gatherResults([
            Deferred.fromCoroutine(self._get(nodes[n], f"/cluster/israftsynced/{name}"))
            for n in live])
        return judge(info, live, members,
                     {n: code == 200 for n, (code, _) in zip(live, answers)})
