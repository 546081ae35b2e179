"""Differential: the geo commands on a standalone `twistd zan-node` and on redis-server
7.0, byte for byte: seeded points all over the globe, at the poles' limits, along the
antimeridian and in dense clusters; every search option combination; STORE results read
back with ZRANGE WITHSCORES; and the error replies."""

import itertools
import random

import pytest

from tests.support.differential import check, node_and_redis

pytestmark = pytest.mark.integration

LAT_MAX = 85.05112878
UNITS = ["m", "km", "mi", "ft", "KM", "Mi"]
# Destinations with different names, so that some fall in another partition of the node.
DESTINATIONS = ["dst", "out", "d1", "d2"]


@pytest.fixture
def pair(zan_node, redis):
    with node_and_redis(zan_node.redis_port, redis) as clients:
        yield clients


def random_point(rng):
    kind = rng.random()
    if kind < 0.25:
        return rng.uniform(-180, 180), rng.uniform(-LAT_MAX, LAT_MAX)
    if kind < 0.4:   # the antimeridian
        return rng.choice([-180.0, 180.0, 179.99, -179.99]) + rng.uniform(-0.01, 0.01) * (
            rng.random() < 0.5), rng.uniform(-80, 80)
    if kind < 0.55:  # the latitude limits
        return rng.uniform(-180, 180), rng.choice([LAT_MAX, -LAT_MAX, 84.9, -84.9, 80.5, -70])
    # Dense clusters: Palermo, the equator at Greenwich, and near the north limit.
    lon, lat = rng.choice([(13.36, 38.11), (0.0, 0.0), (-45.0, 84.0)])
    return lon + rng.uniform(-0.05, 0.05), lat + rng.uniform(-0.05, 0.05)


def clamp(lon, lat):
    return max(-180.0, min(180.0, lon)), max(-LAT_MAX, min(LAT_MAX, lat))


def load(pair, rng, key="g", n=250):
    """GEOADD n seeded points (in batches, with NX/XX/CH now and then); returns them."""
    points = {}
    i = 0
    while i < n:
        batch = []
        for _ in range(rng.randint(1, 6)):
            lon, lat = clamp(*random_point(rng))
            points[f"m{i}"] = (lon, lat)
            batch += [repr(lon), repr(lat), f"m{i}"]
            i += 1
        opts = rng.choice([[], [], ["CH"], ["NX"], ["XX"], ["NX", "CH"], ["xx", "ch"]])
        check(pair, "geoadd", key, *opts, *batch)
    # Members moved, some to where they were (not a change, even with CH).
    for _ in range(20):
        member = f"m{rng.randrange(n)}"
        lon, lat = points[member] if rng.random() < 0.3 else clamp(*random_point(rng))
        opts = rng.choice([[], ["CH"], ["XX", "CH"], ["NX"]])
        check(pair, "geoadd", key, *opts, repr(lon), repr(lat), member)
    check(pair, "geoadd", key, "180", str(LAT_MAX), "corner_ne", "-180", str(-LAT_MAX), "corner_sw",
          "0", "0", "origin")
    check(pair, "zrange", key, "0", "-1", "withscores")
    return points


@pytest.mark.parametrize("seed", [0, 1])
def test_positions_hashes_and_distances(pair, seed):
    rng = random.Random(seed)
    points = load(pair, rng)
    members = list(points) + ["corner_ne", "corner_sw", "origin"]
    check(pair, "geopos", "g", *members, "missing")
    check(pair, "geohash", "g", *members, "missing")
    check(pair, "geopos", "nokey", "a", "b")
    check(pair, "geohash", "nokey", "a")
    for unit in [None, *UNITS]:
        for _ in range(60):
            a, b = rng.choice(members), rng.choice(members)
            check(pair, "geodist", "g", a, b, *([unit] if unit else []))
    check(pair, "geodist", "g", "corner_ne", "corner_sw", "ft")
    check(pair, "geodist", "g", "m0", "missing")
    check(pair, "geodist", "nokey", "m0", "m1")


def option_combinations(rng):
    """Every combination of WITHCOORD WITHDIST WITHHASH, COUNT (with and without ANY)
    and ASC/DESC."""
    withs = ["WITHCOORD", "WITHDIST", "WITHHASH"]
    for n in range(4):
        for chosen in itertools.combinations(withs, n):
            for count in ([], ["COUNT", str(rng.choice([1, 3, 10]))],
                          ["COUNT", str(rng.choice([1, 3, 10])), "ANY"]):
                for order in ([], ["ASC"], ["DESC"]):
                    flags = [*chosen, *order]
                    rng.shuffle(flags)   # options may come in any order
                    yield flags + count if rng.random() < 0.5 else count + flags


def store_options(rng):
    for count in ([], ["COUNT", str(rng.choice([1, 4, 20]))],
                  ["COUNT", str(rng.choice([1, 4, 20])), "ANY"]):
        for order in ([], ["ASC"], ["DESC"]):
            yield [*count, *order]


def centre(rng, points):
    if rng.random() < 0.6:
        return points[rng.choice(list(points))]
    return clamp(*random_point(rng))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_searches_with_every_option(pair, seed):
    rng = random.Random(100 + seed)
    points = load(pair, rng)
    members = list(points)
    for opts in option_combinations(rng):
        lon, lat = centre(rng, points)
        radius, unit = rng.choice(["0.5", "3", "20", "150", "1000", "6000"]), rng.choice(UNITS)
        width, height = rng.choice(["1", "8", "100", "2500"]), rng.choice(["1", "6", "300", "4000"])
        member = rng.choice(members)
        check(pair, "georadius", "g", repr(lon), repr(lat), radius, unit, *opts)
        check(pair, "georadius_ro", "g", repr(lon), repr(lat), radius, unit, *opts)
        check(pair, "georadiusbymember", "g", member, radius, unit, *opts)
        check(pair, "georadiusbymember_ro", "g", member, radius, unit, *opts)
        check(pair, "geosearch", "g", "FROMLONLAT", repr(lon), repr(lat),
              "BYRADIUS", radius, unit, *opts)
        check(pair, "geosearch", "g", "FROMMEMBER", member, "BYRADIUS", radius, unit, *opts)
        check(pair, "geosearch", "g", "FROMLONLAT", repr(lon), repr(lat),
              "BYBOX", width, height, unit, *opts)
        check(pair, "geosearch", "g", *opts, "BYBOX", width, height, unit, "FROMMEMBER", member)


@pytest.mark.parametrize("seed", [0, 1])
def test_stored_results(pair, seed):
    rng = random.Random(200 + seed)
    points = load(pair, rng)
    members = list(points)
    for opts in store_options(rng):
        for _ in range(3):
            lon, lat = centre(rng, points)
            radius, unit = rng.choice(["1", "50", "500", "5000"]), rng.choice(UNITS)
            dst = rng.choice(DESTINATIONS)
            store = rng.choice(["STORE", "STOREDIST"])
            check(pair, "georadius", "g", repr(lon), repr(lat), radius, unit, *opts, store, dst)
            check(pair, "zrange", dst, "0", "-1", "withscores")
            check(pair, "georadiusbymember", "g", rng.choice(members), radius, unit, store, dst,
                  *opts)
            check(pair, "zrange", dst, "0", "-1", "withscores")
            by = rng.choice([["BYRADIUS", radius, unit], ["BYBOX", radius, radius, unit]])
            dist = ["STOREDIST"] if rng.random() < 0.5 else []
            check(pair, "geosearchstore", dst, "g", "FROMLONLAT", repr(lon), repr(lat),
                  *by, *opts, *dist)
            check(pair, "zrange", dst, "0", "-1", "withscores")
            check(pair, "geosearchstore", dst, "g", "FROMMEMBER", rng.choice(members), *by,
                  *dist, *opts)
            check(pair, "zrange", dst, "0", "-1", "withscores")
    # An empty result deletes the destination, whatever its type; a missing source too.
    check(pair, "set", "dst", "x")
    check(pair, "georadius", "g", "0", "0", "0", "m", "STORE", "dst")
    check(pair, "exists", "dst")
    check(pair, "set", "dst", "x")
    check(pair, "geosearchstore", "dst", "nokey", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km")
    check(pair, "exists", "dst")
    check(pair, "set", "dst", "x")
    check(pair, "georadiusbymember", "nokey", "nobody", "1", "km", "STOREDIST", "dst")
    check(pair, "exists", "dst")
    # A string destination is replaced.
    check(pair, "set", "dst", "x")
    check(pair, "geosearchstore", "dst", "g", "FROMLONLAT", "13.36", "38.11", "BYRADIUS", "50",
          "km", "COUNT", "5")
    check(pair, "type", "dst")


def test_huge_and_zero_radius(pair):
    rng = random.Random(7)
    load(pair, rng, n=80)
    for radius in ["0", "1e300", "inf", "20000", "40000"]:
        for opts in ([], ["COUNT", "5"], ["COUNT", "5", "ANY"], ["DESC", "WITHDIST"]):
            check(pair, "georadius", "g", "13.36", "38.11", radius, "km", *opts)
            check(pair, "geosearch", "g", "FROMLONLAT", "179.9", "-84", "BYBOX", radius, radius,
                  "km", *opts)


ERRORS = [
    ("geoadd", "g", "200", "10", "x"), ("geoadd", "g", "10", "86", "x"),
    ("geoadd", "g", "inf", "1", "x"), ("geoadd", "g", "-inf", "1", "x"),
    ("geoadd", "g", "nan", "1", "x"), ("geoadd", "g", "abc", "1", "x"),
    ("geoadd", "g", "1", " 1", "x"), ("geoadd", "g", "1", "1e400", "x"),
    ("geoadd", "g", "1", "1", "a", "1"), ("geoadd", "g", "nx", "xx", "1", "1", "a"),
    ("geoadd", "g", "ch", "ch", "ch"), ("geoadd", "g", "gt", "1", "1", "a"),
    ("geoadd", "g", "1", "1", "a", "500", "1", "b"), ("geoadd", "str", "1", "1", "a"),
    ("geoadd", "str", "1", "100", "a"),
    ("geodist", "g", "Palermo", "Catania", "furlong"), ("geodist", "str", "a", "b"),
    ("geodist", "str", "a", "b", "yd"), ("geodist", "g", "Palermo", "Catania", "km", "x"),
    ("geopos", "str", "a"), ("geohash", "str", "a"), ("geopos", "str"), ("geohash", "str"),
    ("geopos", "nokey"), ("geohash", "g"),
    ("georadius", "str", "15", "37", "200", "km"), ("georadius", "str", "500", "37", "200", "km"),
    ("georadius", "g", "15", "37", "200", "km", "WITHDIST", "STORE", "d"),
    ("georadius", "g", "15", "37", "200", "km", "STOREDIST", "d", "WITHHASH"),
    ("georadius", "g", "15", "37", "-1", "km"), ("georadius", "g", "15", "37", "x", "km"),
    ("georadius", "g", "15", "37", "200", "yd"), ("georadius", "g", "15", "37", "200", "km", "COUNT", "0"),
    ("georadius", "g", "15", "37", "200", "km", "COUNT", "-1"),
    ("georadius", "g", "15", "37", "200", "km", "COUNT", "x"),
    ("georadius", "g", "15", "37", "200", "km", "ANY"), ("georadius", "g", "15", "37", "200", "km", "COUNT"),
    ("georadius", "g", "15", "37", "200", "km", "FOO"), ("georadius", "g", "190", "37", "200", "km"),
    ("georadius", "g", "15", "37", "200", "km", "FROMMEMBER", "Palermo"),
    ("georadius", "g", "15", "37", "200", "km", "STORE"),
    ("georadius_ro", "g", "15", "37", "200", "km", "STORE", "d"),
    ("georadiusbymember_ro", "g", "Palermo", "200", "km", "STOREDIST", "d"),
    ("georadiusbymember", "g", "nope", "100", "km"), ("georadiusbymember", "str", "a", "1", "km"),
    ("georadiusbymember", "g", "Palermo", "x", "km"), ("georadiusbymember", "g", "Palermo", "1", "au"),
    ("geosearch", "g", "FROMMEMBER", "Palermo", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "1", "1", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km"),
    ("geosearch", "g", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "WITHDIST", "ASC"),
    ("geosearch", "g", "BYRADIUS", "200", "km", "WITHDIST", "ASC"),
    ("geosearch", "g", "FROMMEMBER", "nope", "BYRADIUS", "200", "km"),
    ("geosearch", "nokey", "FROMMEMBER", "nope", "BYRADIUS", "-1", "km"),
    ("geosearch", "str", "FROMMEMBER", "nope", "BYRADIUS", "200", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYBOX", "-1", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYBOX", "x", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYBOX", "1", "x", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYBOX", "1", "1", "parsec"),
    ("geosearch", "g", "FROMLONLAT", "15", "95", "BYBOX", "1", "1", "km"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STORE", "d"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STOREDIST"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "any"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "COUNT", "1", "COUNT", "x"),
    ("geosearch", "g", "FROMLONLAT", "15", "37", "BYBOX", "1", "1"),
    ("geosearchstore", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHDIST"),
    ("geosearchstore", "d", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STORE", "x"),
    ("geosearchstore", "d", "str", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
    ("geosearchstore", "d", "g", "BYRADIUS", "200", "km", "ASC", "COUNT", "2"),
    ("geosearchstore", "d", "g", "FROMLONLAT", "15", "37", "COUNT", "2", "ASC"),
    # Arity.
    ("geoadd", "g", "1", "1"), ("geoadd", "g"), ("geodist", "g", "a"), ("geohash",), ("geopos",),
    ("georadius", "g", "1", "1", "1"), ("georadius_ro", "g", "1", "1", "1"),
    ("georadiusbymember", "g", "a", "1"), ("georadiusbymember_ro", "g", "a", "1"),
    ("geosearch", "g", "FROMLONLAT", "1", "1", "BYRADIUS"),
    ("geosearchstore", "d", "g", "FROMLONLAT", "1", "1", "BYRADIUS"),
]


def test_errors_match(pair):
    check(pair, "geoadd", "g", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
          "Catania")
    check(pair, "set", "str", "x")
    for argv in ERRORS:
        check(pair, *argv)
    # Nothing was written by the failed GEOADDs.
    check(pair, "zrange", "g", "0", "-1", "withscores")
    check(pair, "get", "str")


def test_missing_key_answers_before_member_lookups(pair):
    check(pair, "georadiusbymember", "nokey", "nobody", "x", "furlong", "WITHDIST")
    check(pair, "geosearch", "nokey", "FROMMEMBER", "nobody", "BYRADIUS", "1", "km")
    check(pair, "georadius", "nokey", "1", "1", "1", "km", "STORE", "d")
    check(pair, "geodist", "nokey", "a", "b", "km")


def test_geoadd_options(pair):
    check(pair, "geoadd", "g", "13.361389", "38.115556", "Palermo")
    check(pair, "geoadd", "g", "NX", "CH", "13.361389", "38.115556", "Palermo", "1", "1", "new")
    check(pair, "geoadd", "g", "XX", "CH", "1", "2", "Palermo", "1", "1", "new2")
    check(pair, "geoadd", "g", "CH", "1", "2", "Palermo", "1", "1", "new", "3", "3", "new3")
    check(pair, "geoadd", "g", "xx", "1", "3", "Palermo")
    check(pair, "zrange", "g", "0", "-1", "withscores")
    check(pair, "geoadd", "g", "1", "1", "")
    check(pair, "geopos", "g", "")
    check(pair, "zscore", "g", "new3")


@pytest.mark.parametrize("where", [(13.36, 38.11), (179.95, 0.0), (-10.0, 84.9)])
def test_scan_order_and_any_cut_off_in_a_dense_cluster(pair, where):
    """Unsorted replies and COUNT n ANY depend on the order Redis scans its nine boxes
    in: many centres and radii over a dense cluster (across the antimeridian for one)."""
    rng = random.Random(hash(where) & 0xFFFF)
    lon0, lat0 = where
    batch = []
    for i in range(400):
        lon, lat = clamp(lon0 + rng.uniform(-0.1, 0.1), lat0 + rng.uniform(-0.1, 0.1))
        if lon == 180.0 and rng.random() < 0.5:
            lon = -180.0 + rng.uniform(0, 0.05)
        batch += [repr(lon), repr(lat), f"p{i}"]
    check(pair, "geoadd", "c", *batch)
    for _ in range(60):
        lon, lat = clamp(lon0 + rng.uniform(-0.1, 0.1), lat0 + rng.uniform(-0.1, 0.1))
        radius = rng.choice(["0.3", "1", "2", "5", "10"])
        count = ["COUNT", str(rng.choice([1, 5, 30])), "ANY"] if rng.random() < 0.5 else []
        check(pair, "georadius", "c", repr(lon), repr(lat), radius, "km", *count)
        check(pair, "geosearch", "c", "FROMLONLAT", repr(lon), repr(lat), "BYBOX", radius,
              radius, "km", *count)
        check(pair, "georadiusbymember", "c", f"p{rng.randrange(400)}", radius, "km", *count)


GEO_COMMANDS = ("geoadd geodist geohash geopos georadius georadius_ro georadiusbymember "
                "georadiusbymember_ro geosearch geosearchstore").split()


def test_command_info_and_getkeys(pair):
    zan, redis = pair
    for name in GEO_COMMANDS:
        # Name, arity, flags and key range, as Redis 7.0 declares them.
        assert zan.call("command", "info", name)[0][:6] == redis.call("command", "info", name)[0][:6]
    for argv in [("georadius", "g", "1", "2", "3", "km", "store", "d"),
                 ("georadius", "g", "1", "2", "3", "km", "STORE", "d", "storedist", "e"),
                 ("georadius", "g", "1", "2", "3", "km", "count", "3"),
                 ("georadius", "g", "1", "2", "3", "km", "storedist", "e", "store", "d"),
                 ("georadius", "g", "1", "2", "3", "km", "store"),
                 ("georadiusbymember", "g", "m", "3", "km", "STOREDIST", "d"),
                 ("georadius_ro", "g", "1", "2", "3", "km"),
                 ("geosearchstore", "d", "g", "FROMMEMBER", "m", "BYRADIUS", "1", "m"),
                 ("geosearch", "g", "FROMMEMBER", "m", "BYRADIUS", "1", "m"),
                 ("geoadd", "g", "1", "1", "m"), ("geopos", "g", "m")]:
        check(pair, "command", "getkeys", *argv)


def test_ties_at_equal_distances(pair):
    """Members sharing a position are at equal distances: which of them COUNT n keeps,
    and in which order, is what Redis's unstable partial sort leaves."""
    rng = random.Random(11)
    spots = [(13.0 + rng.uniform(0, 0.1), 38.0 + rng.uniform(0, 0.1)) for _ in range(8)]
    batch = []
    for i in range(200):
        lon, lat = rng.choice(spots)
        batch += [repr(lon), repr(lat), f"x{i}"]
    check(pair, "geoadd", "t", *batch)
    for _ in range(80):
        lon, lat = rng.choice(spots)
        order = rng.choice(["ASC", "DESC"])
        count = str(rng.choice([1, 2, 7, 8, 30, 41, 120, 199, 250]))
        check(pair, "georadius", "t", repr(lon), repr(lat), "20", "km", "COUNT", count, order)
        check(pair, "geosearch", "t", "FROMLONLAT", repr(lon), repr(lat), "BYBOX", "30", "30",
              "km", order, "COUNT", count, "WITHDIST")
        check(pair, "georadius", "t", repr(lon), repr(lat), "20", "km", order)
        check(pair, "georadius", "t", repr(lon), repr(lat), "20", "km", "COUNT", count,
              "STORE", "dst")
        check(pair, "zrange", "dst", "0", "-1", "withscores")
