"""Geo commands (Redis geo.c): a geo index is a sorted set whose scores are 52-bit
geohashes, so GEOADD is a ZADD, every other sorted-set command works on it, and
`ZRANGE key 0 -1 WITHSCORES` shows the same scores as redis-server.

A search scans the score ranges of nine geohash cells around the centre (the math is in
`zan.commands.geohash`) in Redis's order, keeping the members inside the shape; that
order decides which members a COUNT n ANY search returns and the order of an unsorted
reply, so it is kept exactly.  Options are parsed one after the other as Redis does,
so the first bad one is the one reported.
"""

from __future__ import annotations

from zan.commands import geohash
from zan.commands.geohash import Shape
from zan.commands.pqsort import pqsort
from zan.commands.table import (
    DENYOOM, MOVABLEKEYS, READONLY, REGISTRY, WRITE, Route, command,
)
from zan.commands.util import parse_int
from zan.commands.zset_algebra import store_scores
from zan.commands.zset_args import ScoreRange, parse_score
from zan.commands.zsets import ZSetView, zadd
from zan.errors import SYNTAX, RespError
from zan.resp.types import NULL_ARRAY
from zan.store.codec import unsortable_score
from zan.store.keyspace import Txn

__all__: list[str] = []

_UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}   # metres per unit
_BAD_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
_NO_MEMBER = "ERR could not decode requested zset member"
_GEO = dict(group="geo", since="3.2.0")


# -- arguments -----------------------------------------------------------------------

def _double(raw: bytes, error: str | None = None) -> float:
    """Redis's getDoubleFromObjectOrReply, with its optional own error text."""
    try:
        return parse_score(raw)
    except RespError:
        if error is None:
            raise
        raise RespError(error) from None


def _lon_lat(raw_lon: bytes, raw_lat: bytes) -> tuple[float, float]:
    lon, lat = _double(raw_lon), _double(raw_lat)
    if not (geohash.LONG_MIN <= lon <= geohash.LONG_MAX
            and geohash.LAT_MIN <= lat <= geohash.LAT_MAX):
        raise RespError(f"ERR invalid longitude,latitude pair {lon:f},{lat:f}")
    return lon, lat


def _unit(raw: bytes) -> float:
    conversion = _UNITS.get(raw.lower())
    if conversion is None:
        raise RespError(_BAD_UNIT)
    return conversion


def _radius(raw: bytes, raw_unit: bytes) -> tuple[float, float]:
    """(radius, metres per unit) of `<radius> <unit>`."""
    radius = _double(raw, "ERR need numeric radius")
    if radius < 0:
        raise RespError("ERR radius cannot be negative")
    return radius, _unit(raw_unit)


def _box(raw_width: bytes, raw_height: bytes, raw_unit: bytes) -> tuple[float, float, float]:
    """(width, height, metres per unit) of `<width> <height> <unit>`."""
    width = _double(raw_width, "ERR need numeric width")
    height = _double(raw_height, "ERR need numeric height")
    if height < 0 or width < 0:
        raise RespError("ERR height or width cannot be negative")
    return width, height, _unit(raw_unit)


def _member_position(zs: ZSetView, member: bytes) -> tuple[float, float]:
    score = zs.score(member)
    if score is None:
        raise RespError(_NO_MEMBER)
    return geohash.decode_score(score)


# -- GEOADD GEODIST GEOHASH GEOPOS -----------------------------------------------------

@command("geoadd", -5, (WRITE, DENYOOM), summary="Add one or more geospatial items in the "
         "geospatial index represented using a sorted set", **_GEO)
def geoadd(txn: Txn, args: list[bytes]):
    first = 1
    nx = xx = False
    while first < len(args):
        opt = args[first].lower()
        if opt == b"nx":
            nx = True
        elif opt == b"xx":
            xx = True
        elif opt != b"ch":
            break
        first += 1
    if (len(args) - first) % 3 or (nx and xx):
        raise RespError(SYNTAX)
    # As in Redis, the whole command becomes a ZADD once every position is valid.
    zargs = args[:first]
    for i in range(first, len(args), 3):
        lon, lat = _lon_lat(args[i], args[i + 1])
        bits = geohash.align52(geohash.encode(lon, lat))
        zargs += [b"%d" % bits, args[i + 2]]
    return zadd(txn, zargs)


@command("geodist", -4, (READONLY,), summary="Returns the distance between two members of "
         "a geospatial index", **_GEO)
def geodist(txn: Txn, args: list[bytes]):
    to_meters = 1.0
    if len(args) == 4:
        to_meters = _unit(args[3])
    elif len(args) > 4:
        raise RespError(SYNTAX)
    zs = ZSetView.open(txn, args[0])
    if zs is None:
        return None
    first, second = zs.score(args[1]), zs.score(args[2])
    if first is None or second is None:
        return None
    lon1, lat1 = geohash.decode_score(first)
    lon2, lat2 = geohash.decode_score(second)
    return geohash.format_distance(geohash.distance(lon1, lat1, lon2, lat2) / to_meters)


def _scores(txn: Txn, args: list[bytes]) -> list[float | None]:
    """The score of each member named after the key, or None (no such member or key).
    A key of another type is WRONGTYPE even when no member is named."""
    zs = ZSetView.open(txn, args[0])
    return [None if zs is None else zs.score(member) for member in args[1:]]


@command("geohash", -2, (READONLY,), summary="Returns members of a geospatial index as "
         "standard geohash strings", **_GEO)
def geohash_(txn: Txn, args: list[bytes]):
    return [None if score is None else geohash.geohash_string(score)
            for score in _scores(txn, args)]


@command("geopos", -2, (READONLY,), summary="Returns longitude and latitude of members of "
         "a geospatial index", **_GEO)
def geopos(txn: Txn, args: list[bytes]):
    out = []
    for score in _scores(txn, args):
        if score is None:
            out.append(NULL_ARRAY)
        else:
            lon, lat = geohash.decode_score(score)
            out.append([geohash.format_coordinate(lon), geohash.format_coordinate(lat)])
    return out


# -- searches ----------------------------------------------------------------------------

class _Search:
    """One GEORADIUS* / GEOSEARCH* call, parsed."""

    def __init__(self):
        self.center: tuple[float, float] | None = None
        self.radius: float | None = None
        self.box: tuple[float, float] | None = None
        self.conversion = 1.0
        self.withdist = self.withhash = self.withcoord = False
        self.any = False
        self.sort: str | None = None        # None, "asc" or "desc"
        self.count = 0                      # 0: no limit
        self.store: bytes | None = None
        self.storedist = False

    def shape(self) -> Shape:
        lon, lat = self.center
        if self.box is not None:
            return Shape(lon, lat, self.conversion, width=self.box[0], height=self.box[1],
                         is_box=True)
        return Shape(lon, lat, self.conversion, radius=self.radius)


# Variants, as geo.c's flags.
_COORDS, _MEMBER, _SEARCH, _SEARCHSTORE = "coords", "member", "search", "searchstore"


def _parse_options(search: _Search, zs: ZSetView | None, args: list[bytes], first: int,
                   variant: str, nostore: bool, name: str) -> None:
    geosearch = variant in (_SEARCH, _SEARCHSTORE)
    can_store = not nostore and not geosearch
    frommember = fromlonlat = byradius = bybox = False
    i = first
    while i < len(args):
        opt = args[i].lower()
        left = len(args) - i - 1        # words after this one
        if opt == b"withdist":
            search.withdist = True
        elif opt == b"withhash":
            search.withhash = True
        elif opt == b"withcoord":
            search.withcoord = True
        elif opt == b"any":
            search.any = True
        elif opt in (b"asc", b"desc"):
            search.sort = opt.decode()
        elif opt == b"count" and left >= 1:
            search.count = parse_int(args[i + 1])
            if search.count <= 0:
                raise RespError("ERR COUNT must be > 0")
            i += 1
        elif opt in (b"store", b"storedist") and left >= 1 and can_store:
            search.store = args[i + 1]
            search.storedist = opt == b"storedist"
            i += 1
        elif opt == b"storedist" and variant == _SEARCHSTORE:
            search.storedist = True
        elif opt == b"frommember" and left >= 1 and geosearch and not fromlonlat:
            # Without the key the member cannot be looked up; the reply is empty anyway.
            if zs is not None:
                search.center = _member_position(zs, args[i + 1])
            frommember = True
            i += 1
        elif opt == b"fromlonlat" and left >= 2 and geosearch and not frommember:
            search.center = _lon_lat(args[i + 1], args[i + 2])
            fromlonlat = True
            i += 2
        elif opt == b"byradius" and left >= 2 and geosearch and not bybox:
            search.radius, search.conversion = _radius(args[i + 1], args[i + 2])
            byradius = True
            i += 2
        elif opt == b"bybox" and left >= 3 and geosearch and not byradius:
            width, height, search.conversion = _box(args[i + 1], args[i + 2], args[i + 3])
            search.box = (width, height)
            bybox = True
            i += 3
        else:
            raise RespError(SYNTAX)
        i += 1

    if search.store is not None and (search.withdist or search.withhash or search.withcoord):
        what = "GEOSEARCHSTORE" if variant == _SEARCHSTORE else "STORE option in GEORADIUS"
        raise RespError(f"ERR {what} is not compatible with WITHDIST, WITHHASH and "
                        "WITHCOORD options")
    if geosearch and not (frommember or fromlonlat):
        raise RespError(f"ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}")
    if geosearch and not (byradius or bybox):
        raise RespError(f"ERR exactly one of BYRADIUS and BYBOX can be specified for {name}")
    if search.any and not search.count:
        raise RespError("ERR the ANY argument requires COUNT argument")


def _points_in_shape(zs: ZSetView, shape: Shape, limit: int) -> list[tuple]:
    """(member, distance in metres, score, longitude, latitude) of the members inside the
    shape, in Redis's scan order; with a `limit`, the first `limit` found."""
    found: list[tuple] = []
    cells = geohash.search_areas(shape)
    last = 0
    for i, cell in enumerate(cells):
        if cell.is_zero():
            continue
        # A huge radius can make neighbours coincide; Redis skips one equal to the last
        # box scanned (never comparing with the centre box, as its index 0 reads "none").
        if last and cell == cells[last]:
            continue
        if limit and len(found) >= limit:
            break
        lo, hi = geohash.score_range(cell)
        for raw, member in zs.in_score_range(ScoreRange(float(lo), float(hi), False, True)):
            score = unsortable_score(raw)
            lon, lat = geohash.decode_score(score)
            dist = geohash.within(shape, lon, lat)
            if dist is not None:
                found.append((member, dist, score, lon, lat))
                if limit and len(found) >= limit:
                    break
        last = i
    return found


def _by_distance(p, q) -> int:
    """Redis's sort_gp_asc (a NaN distance compares as smaller)."""
    if p[1] > q[1]:
        return 1
    return 0 if p[1] == q[1] else -1


def _by_distance_desc(p, q) -> int:
    return -_by_distance(p, q)


def _search(txn: Txn, args: list[bytes], variant: str, nostore: bool, name: str):
    search = _Search()
    src = 1 if variant == _SEARCHSTORE else 0
    zs = ZSetView.open(txn, args[src])
    if variant == _COORDS:
        search.center = _lon_lat(args[1], args[2])
        search.radius, search.conversion = _radius(args[3], args[4])
        first = 5
    elif variant == _MEMBER:
        if zs is not None:
            search.center = _member_position(zs, args[1])
            search.radius, search.conversion = _radius(args[2], args[3])
        first = 4
    else:
        first = src + 1
        if variant == _SEARCHSTORE:
            search.store = args[0]
    _parse_options(search, zs, args, first, variant, nostore, name)

    if zs is None:
        return store_scores(txn, search.store, {}) if search.store is not None else []
    if search.count and search.sort is None and not search.any:
        search.sort = "asc"   # the nearest n, not any n
    points = _points_in_shape(zs, search.shape(), search.count if search.any else 0)
    returned = min(search.count, len(points)) if search.count else len(points)
    if search.sort is not None:
        desc = search.sort == "desc"
        if returned == len(points):
            # Stable, as glibc's qsort (a merge sort) is: equal distances keep scan order.
            points.sort(key=lambda p: p[1], reverse=desc)
        else:
            pqsort(points, _by_distance_desc if desc else _by_distance, 0, returned - 1)
    del points[returned:]

    conversion = search.conversion
    if search.store is not None:
        return store_scores(txn, search.store, {
            member: dist / conversion if search.storedist else score
            for member, dist, score, _, _ in points})
    out = []
    for member, dist, score, lon, lat in points:
        if not (search.withdist or search.withhash or search.withcoord):
            out.append(member)
            continue
        item = [member]
        if search.withdist:
            item.append(geohash.format_distance(dist / conversion))
        if search.withhash:
            item.append(int(score))
        if search.withcoord:
            item.append([geohash.format_coordinate(lon), geohash.format_coordinate(lat)])
        out.append(item)
    return out


def _georadius_keys(first_option: int):
    """Positions in argv (name = 0) of a GEORADIUS[BYMEMBER] call's keys: the index,
    then what Redis 7.0's key specs name (the word after the first STORE, then after the
    first STOREDIST, from the options on), then the destination the command really
    writes if that is another (the last one given, as georadiusGetKeys finds it)."""
    def keys_of(argv: list[bytes]) -> list[int]:
        positions = [1]
        for keyword in (b"store", b"storedist"):
            for i in range(first_option, len(argv) - 1):
                if argv[i].lower() == keyword:
                    positions.append(i + 1)
                    break
        last = None
        i = 5
        while i < len(argv):
            if argv[i].lower() in (b"store", b"storedist") and i + 1 < len(argv):
                last = i + 1
                i += 1
            i += 1
        if last is not None and last not in positions:
            positions.append(last)
        return positions
    return keys_of


_DEPRECATED = "Query a sorted set representing a geospatial index to fetch members matching " \
              "a given maximum distance from a "


@command("georadius", -6, (WRITE, DENYOOM, MOVABLEKEYS), route=Route.SAME_PARTITION,
         summary=_DEPRECATED + "point", **_GEO)
def georadius(txn: Txn, args: list[bytes]):
    return _search(txn, args, _COORDS, False, "georadius")


@command("georadius_ro", -6, (READONLY,), summary="A read-only variant for GEORADIUS",
         **dict(_GEO, since="3.2.10"))
def georadius_ro(txn: Txn, args: list[bytes]):
    return _search(txn, args, _COORDS, True, "georadius_ro")


@command("georadiusbymember", -5, (WRITE, DENYOOM, MOVABLEKEYS), route=Route.SAME_PARTITION,
         summary=_DEPRECATED + "member", **_GEO)
def georadiusbymember(txn: Txn, args: list[bytes]):
    return _search(txn, args, _MEMBER, False, "georadiusbymember")


@command("georadiusbymember_ro", -5, (READONLY,),
         summary="A read-only variant for GEORADIUSBYMEMBER", **dict(_GEO, since="3.2.10"))
def georadiusbymember_ro(txn: Txn, args: list[bytes]):
    return _search(txn, args, _MEMBER, True, "georadiusbymember_ro")


@command("geosearch", -7, (READONLY,), summary="Query a sorted set representing a "
         "geospatial index to fetch members inside an area of a box or a circle.",
         **dict(_GEO, since="6.2.0"))
def geosearch(txn: Txn, args: list[bytes]):
    return _search(txn, args, _SEARCH, True, "geosearch")


@command("geosearchstore", -8, (WRITE, DENYOOM), route=Route.SAME_PARTITION, last_key=2,
         summary="Query a sorted set representing a geospatial index to fetch members "
         "inside an area of a box or a circle, and store the result in another key.",
         **dict(_GEO, since="6.2.0"))
def geosearchstore(txn: Txn, args: list[bytes]):
    return _search(txn, args, _SEARCHSTORE, False, "geosearchstore")


REGISTRY["georadius"].extra["key_positions"] = _georadius_keys(6)
REGISTRY["georadiusbymember"].extra["key_positions"] = _georadius_keys(5)
