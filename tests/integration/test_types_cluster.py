"""HyperLogLog, geo, JSON and ZanRedisDB's table scans on a 3-node replicated cluster of
`twistd zan-node` processes: written through one node, read through every node (each
forwards to the partition's leader), and every replica ends with the same bytes."""

import pytest
import redis

from tests.support.cluster import StaticClusterProcs
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    with StaticClusterProcs(3) as c:
        yield c


def clients(cluster):
    return [redis.Redis(port=n.redis_port, protocol=2, socket_timeout=15) for n in cluster.nodes]


def test_hyperloglog_from_every_node(cluster):
    a, b, c = clients(cluster)
    assert a.pfadd("{h}:x", *[f"e{i}" for i in range(500)]) == 1
    assert b.pfadd("{h}:y", *[f"e{i}" for i in range(250, 1000)]) == 1
    counts = {r.pfcount("{h}:x") for r in (a, b, c)}
    assert len(counts) == 1 and abs(counts.pop() - 500) < 25
    assert c.pfmerge("{h}:all", "{h}:x", "{h}:y")
    assert len({r.pfcount("{h}:all") for r in (a, b, c)}) == 1
    assert len({r.get("{h}:all") for r in (a, b, c)}) == 1


def test_geo_from_every_node(cluster):
    a, b, c = clients(cluster)
    assert a.geoadd("{g}:cities", [13.361389, 38.115556, "Palermo",
                                   15.087269, 37.502669, "Catania",
                                   2.3522, 48.8566, "Paris"]) == 3
    replies = [r.geosearch("{g}:cities", longitude=13.361389, latitude=38.115556, radius=200,
                           unit="km", withdist=True, sort="ASC") for r in (a, b, c)]
    assert [name for name, _ in replies[0]] == [b"Palermo", b"Catania"]
    assert replies[0][1][1] == 166.2742
    assert replies[1] == replies[0] and replies[2] == replies[0]
    assert b.geosearchstore("{g}:near", "{g}:cities", longitude=13.36, latitude=38.11,
                            radius=200, unit="km") == 2
    for r in (a, b, c):
        assert r.zrange("{g}:near", 0, -1) == [b"Palermo", b"Catania"]


def test_json_from_every_node(cluster):
    a, b, c = clients(cluster)
    assert c.json().set("{j}:doc", "$", {"n": 1, "tags": ["x"]})
    assert a.json().arrappend("{j}:doc", "$.tags", "y") == [2]
    assert b.json().numincrby("{j}:doc", "$.n", 41) == [42]
    for r in (a, b, c):
        assert r.json().get("{j}:doc") == {"n": 42, "tags": ["x", "y"]}
        assert r.type("{j}:doc") == b"ReJSON-RL"


def test_fullscan_through_every_node(cluster):
    c = RawClient(cluster.nodes[0].redis_port)
    try:
        for i in range(20):
            assert c.call("set", f"default:tb:k{i}", f"v{i}") == b"OK"
    finally:
        c.close()
    expected = sorted([f"k{i}".encode(), f"v{i}".encode()] for i in range(20))
    for node in cluster.nodes:
        r = RawClient(node.redis_port)
        try:
            cursor, seen = b"", []
            for _ in range(50):
                cursor, items = r.call("fullscan", b"default:tb:" + cursor, "KV", "COUNT", "6")
                seen.extend(items)
                if not cursor:
                    break
            assert sorted(seen) == expected
        finally:
            r.close()
