"""Geo commands on a replicated node (a 3-node cluster in one reactor): GEOADD from one
node, searches from every node, answering as one partition does on its own; the STORE
forms within one partition (hash-tagged keys), CROSSSLOT across two."""

import random

import pytest

from zan.errors import ZanError
from tests.support.harness import normalize
from tests.support.inprocess import running_cluster
from tests.support.keys import keys_in


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path / "cluster") as c:
        yield c


def points(seed, n=120):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lon, lat = 13.36 + rng.uniform(-1, 1), 38.11 + rng.uniform(-1, 1)
        out += [repr(lon), repr(lat), f"m{i}"]
    return out


SEARCHES = [
    ("geosearch", "{t}:src", "FROMLONLAT", "13.36", "38.11", "BYRADIUS", "40", "km", "WITHDIST",
     "WITHCOORD", "ASC"),
    ("geosearch", "{t}:src", "FROMMEMBER", "m3", "BYBOX", "80", "50", "km", "WITHHASH"),
    ("geosearch", "{t}:src", "FROMLONLAT", "13.36", "38.11", "BYRADIUS", "100", "km", "COUNT",
     "5", "ANY"),
    ("georadius_ro", "{t}:src", "13.36", "38.11", "30", "mi", "DESC"),
    ("georadius", "{t}:src", "13.36", "38.11", "30", "mi", "WITHDIST", "COUNT", "4"),
    ("georadiusbymember", "{t}:src", "m7", "50000", "m"),
    ("geopos", "{t}:src", "m0", "m1", "nobody"),
    ("geohash", "{t}:src", "m0", "m1", "nobody"),
    ("geodist", "{t}:src", "m0", "m1", "ft"),
]


def test_geoadd_once_then_search_from_every_node(cluster, part):
    batch = points(1)
    assert cluster.call(1, "geoadd", "{t}:src", *batch) == 120
    assert part.call("geoadd", "{t}:src", *batch) == 120
    # The scores a single partition computes are the ones every replica holds.
    expected = normalize(part.call("zrange", "{t}:src", "0", "-1", "withscores"))
    for node in (1, 2, 3):
        assert normalize(cluster.call(node, "zrange", "{t}:src", "0", "-1", "withscores")) \
            == expected
    for argv in SEARCHES:
        want = normalize(part.call(*argv))
        assert want, argv
        for node in (1, 2, 3):
            assert normalize(cluster.call(node, *argv)) == want, (node, argv)


def test_store_forms_within_one_partition(cluster, part):
    batch = points(2)
    cluster.call(2, "geoadd", "{t}:src", *batch)
    part.call("geoadd", "{t}:src", *batch)
    stores = [
        ("geosearchstore", "{t}:dst", "{t}:src", "FROMLONLAT", "13.36", "38.11", "BYRADIUS",
         "60", "km", "STOREDIST"),
        ("geosearchstore", "{t}:dst", "{t}:src", "FROMMEMBER", "m5", "BYBOX", "90", "90", "km",
         "COUNT", "10", "DESC"),
        ("georadius", "{t}:src", "13.36", "38.11", "70", "km", "STORE", "{t}:dst"),
        ("georadiusbymember", "{t}:src", "m9", "40", "km", "COUNT", "3", "STOREDIST", "{t}:dst"),
    ]
    for n, argv in enumerate(stores):
        stored = cluster.call(1 + n % 3, *argv)
        assert stored == part.call(*argv) and stored > 0, argv
        want = normalize(part.call("zrange", "{t}:dst", "0", "-1", "withscores"))
        for node in (1, 2, 3):
            assert normalize(cluster.call(node, "zrange", "{t}:dst", "0", "-1",
                                          "withscores")) == want
    # Nothing found: the destination is deleted everywhere.
    assert cluster.call(3, "geosearchstore", "{t}:dst", "{t}:src", "FROMLONLAT", "0", "0",
                        "BYRADIUS", "1", "m") == 0
    for node in (1, 2, 3):
        assert cluster.call(node, "exists", "{t}:dst") == 0


def test_store_in_another_partition_is_crossslot(cluster):
    (src,), (elsewhere,) = keys_in(0, 1, "g", 2), keys_in(1, 1, "d", 2)
    cluster.call(1, "geoadd", src, "13.36", "38.11", "a")
    for argv in [("geosearchstore", elsewhere, src, "FROMLONLAT", "13.36", "38.11",
                  "BYRADIUS", "1", "km"),
                 ("georadius", src, "13.36", "38.11", "1", "km", "STORE", elsewhere),
                 ("georadiusbymember", src, "a", "1", "km", "STOREDIST", elsewhere)]:
        error = cluster.call(2, *argv)
        assert isinstance(error, ZanError) and "CROSSSLOT" in str(error), argv
    # Without STORE, GEORADIUS names one key only.
    assert cluster.call(3, "georadius", src, "13.36", "38.11", "1", "km") == [b"a"]
