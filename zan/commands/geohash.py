"""Redis's geohash arithmetic (geohash.c, geohash_helper.c), pure and bit-exact.

A position is stored as the score of a sorted-set member: a 52-bit geohash (26 bits of
longitude and 26 of latitude, interleaved, longitude in the odd bits) over Redis's
Web-Mercator-safe latitude range -85.05112878..85.05112878.  The score decoded is the
centre of its cell, which is why GEOPOS never answers exactly the coordinates given.

Every float expression below keeps Redis's order of operations: Python floats are IEEE
doubles and `math` calls the same libm, so the results are the same to the last bit
(x86-64 compiles C doubles to SSE, without fused multiply-adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "STEP_MAX", "LONG_MIN", "LONG_MAX", "LAT_MIN", "LAT_MAX", "EARTH_RADIUS_IN_METERS",
    "HashBits", "Area", "encode", "decode", "decode_score", "score_of", "align52",
    "neighbors", "distance", "lat_distance", "estimate_steps_by_radius", "Shape",
    "bounding_box", "search_areas", "score_range", "within", "geohash_string",
    "format_distance", "format_coordinate",
]

STEP_MAX = 26                      # 26 * 2 = 52 bits: all a double holds exactly
LONG_MIN, LONG_MAX = -180.0, 180.0
LAT_MIN, LAT_MAX = -85.05112878, 85.05112878
EARTH_RADIUS_IN_METERS = 6372797.560856   # Earth's quadratic mean radius for WGS-84
MERCATOR_MAX = 20037726.37
_D_R = math.pi / 180.0

_M64 = (1 << 64) - 1
_EVEN = 0x5555555555555555         # latitude bits
_ODD = 0xAAAAAAAAAAAAAAAA          # longitude bits


@dataclass(frozen=True, slots=True)
class HashBits:
    bits: int
    step: int

    def is_zero(self) -> bool:
        """Redis's HASHISZERO: the mark of a neighbour box excluded from the search."""
        return self.bits == 0 and self.step == 0


ZERO = HashBits(0, 0)


@dataclass(frozen=True, slots=True)
class Area:
    long_min: float
    long_max: float
    lat_min: float
    lat_max: float


def _interleave(x: int, y: int) -> int:
    """x's bits on the even positions, y's on the odd ones (32-bit inputs)."""
    x &= 0xFFFFFFFF
    y &= 0xFFFFFFFF
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF),
                        (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333), (1, _EVEN)):
        x = (x | (x << shift)) & mask
        y = (y | (y << shift)) & mask
    return x | (y << 1)


def _split16(v: int) -> tuple[int, int]:
    """(even bits, odd bits) of a 16-bit number, as two 8-bit numbers."""
    even = odd = 0
    for i in range(8):
        even |= ((v >> (2 * i)) & 1) << i
        odd |= ((v >> (2 * i + 1)) & 1) << i
    return even, odd


# Searches decode every candidate's score: a table of 16-bit halves makes that four
# lookups instead of six rounds of shifts and masks.
_SPLIT = [_split16(v) for v in range(1 << 16)]


def _deinterleave(z: int) -> tuple[int, int]:
    """The inverse of `_interleave`: (even bits, odd bits) as two 32-bit numbers."""
    split = _SPLIT
    e0, o0 = split[z & 0xFFFF]
    e1, o1 = split[(z >> 16) & 0xFFFF]
    e2, o2 = split[(z >> 32) & 0xFFFF]
    e3, o3 = split[(z >> 48) & 0xFFFF]
    return e0 | e1 << 8 | e2 << 16 | e3 << 24, o0 | o1 << 8 | o2 << 16 | o3 << 24


def encode(longitude: float, latitude: float, step: int = STEP_MAX,
           long_range: tuple[float, float] = (LONG_MIN, LONG_MAX),
           lat_range: tuple[float, float] = (LAT_MIN, LAT_MAX)) -> HashBits:
    """geohashEncode: the cell of `step` bits per axis holding the point.  Callers have
    checked the point lies in the ranges."""
    lat_offset = (latitude - lat_range[0]) / (lat_range[1] - lat_range[0])
    long_offset = (longitude - long_range[0]) / (long_range[1] - long_range[0])
    lat_offset *= 1 << step
    long_offset *= 1 << step
    # C converts the offsets to uint32_t: truncation toward zero.
    return HashBits(_interleave(int(lat_offset), int(long_offset)), step)


def decode(h: HashBits) -> Area:
    """geohashDecode: the cell `h` names, in degrees."""
    ilat, ilong = _deinterleave(h.bits)
    ilat &= 0xFFFFFFFF
    ilong &= 0xFFFFFFFF
    lat_scale = LAT_MAX - LAT_MIN
    long_scale = LONG_MAX - LONG_MIN
    cells = float(1 << h.step)
    return Area(
        long_min=LONG_MIN + (ilong * 1.0 / cells) * long_scale,
        long_max=LONG_MIN + ((ilong + 1) * 1.0 / cells) * long_scale,
        lat_min=LAT_MIN + (ilat * 1.0 / cells) * lat_scale,
        lat_max=LAT_MIN + ((ilat + 1) * 1.0 / cells) * lat_scale,
    )


_CELLS = float(1 << STEP_MAX)
_LONG_SCALE = LONG_MAX - LONG_MIN
_LAT_SCALE = LAT_MAX - LAT_MIN


def decode_score(score: float) -> tuple[float, float]:
    """(longitude, latitude) of a stored score: the centre of its cell, clamped to the
    valid ranges (a point added at longitude 180 has a cell reaching past it).  `decode`
    at full precision, inlined (searches call it for every candidate), with the same
    floating-point operations in the same order."""
    ilat, ilong = _deinterleave(int(score) & _M64)
    long_min = LONG_MIN + (ilong * 1.0 / _CELLS) * _LONG_SCALE
    long_max = LONG_MIN + ((ilong + 1) * 1.0 / _CELLS) * _LONG_SCALE
    lat_min = LAT_MIN + (ilat * 1.0 / _CELLS) * _LAT_SCALE
    lat_max = LAT_MIN + ((ilat + 1) * 1.0 / _CELLS) * _LAT_SCALE
    longitude = min(max((long_min + long_max) / 2, LONG_MIN), LONG_MAX)
    latitude = min(max((lat_min + lat_max) / 2, LAT_MIN), LAT_MAX)
    return longitude, latitude


def align52(h: HashBits) -> int:
    """The hash as a 52-bit number: its bits followed by zeros."""
    return (h.bits << (52 - h.step * 2)) & _M64


def score_of(longitude: float, latitude: float) -> float:
    """The sorted-set score GEOADD stores.  Redis passes it to ZADD as a decimal
    string, which the double conversion rounds when the hash needs more than 53 bits
    (longitude 180)."""
    return float(align52(encode(longitude, latitude)))


def _move(h: HashBits, d: int, axis: int) -> HashBits:
    """The cell next to `h` along one axis (`axis`: the mask of its bits, _ODD for
    longitude, _EVEN for latitude): east or north for d > 0, else west or south.  The
    axis's bits are incremented or decremented as one number, carries hopping over the
    other axis's bits (all set, or all clear, for the purpose); longitude wraps around
    the antimeridian."""
    mine = h.bits & axis
    other = h.bits & (axis ^ _M64)
    # The other axis's bit positions within the hash's width.
    gaps = (axis ^ _M64) >> (64 - h.step * 2)
    if d > 0:
        mine = mine + (gaps + 1)
    else:
        mine = (mine | gaps) - (gaps + 1)
    mine &= axis >> (64 - h.step * 2)
    return HashBits((mine | other) & _M64, h.step)


def neighbors(h: HashBits) -> dict[str, HashBits]:
    """The eight cells around `h`, by compass direction."""
    moves = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0),
             "north_east": (1, 1), "north_west": (-1, 1),
             "south_east": (1, -1), "south_west": (-1, -1)}
    out = {}
    for name, (dx, dy) in moves.items():
        cell = _move(h, dx, _ODD) if dx else h
        out[name] = _move(cell, dy, _EVEN) if dy else cell
    return out


# C's libm answers NaN where Python's math raises (cos(inf), asin of a rounding error
# past 1): a search with an infinite radius or a distance between antipodes needs that.
def _cos(x: float) -> float:
    return math.cos(x) if math.isfinite(x) else math.nan


def _asin(x: float) -> float:
    return math.asin(x) if -1.0 <= x <= 1.0 else math.nan


def _deg_rad(angle: float) -> float:
    return angle * _D_R


def _rad_deg(angle: float) -> float:
    return angle / _D_R


def lat_distance(lat1: float, lat2: float) -> float:
    """Metres along a meridian between two latitudes."""
    return EARTH_RADIUS_IN_METERS * abs(_deg_rad(lat2) - _deg_rad(lat1))


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine great-circle distance in metres (geohashGetDistance)."""
    lon1r = _deg_rad(lon1)
    lon2r = _deg_rad(lon2)
    v = math.sin((lon2r - lon1r) / 2)
    if v == 0.0:
        # Same meridian: Redis takes the cheaper path, which rounds differently.
        return lat_distance(lat1, lat2)
    lat1r = _deg_rad(lat1)
    lat2r = _deg_rad(lat2)
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * _asin(math.sqrt(a))


def estimate_steps_by_radius(range_meters: float, lat: float) -> int:
    """Bits per axis of the nine boxes a search of that radius scans: cells about as
    wide as the radius, coarser near the poles where meridians converge."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    return min(max(step, 1), 26)


@dataclass(frozen=True, slots=True)
class Shape:
    """A search area (GeoShape): a circle of `radius`, or a `width` x `height` box,
    around (longitude, latitude); sizes in the unit whose metres are `conversion`."""
    longitude: float
    latitude: float
    conversion: float
    radius: float = 0.0
    width: float = 0.0
    height: float = 0.0
    is_box: bool = False


def bounding_box(shape: Shape) -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) holding the shape.  Lines of latitude
    shorten towards the poles, so the wider edge is the one nearer the equator."""
    lon, lat = shape.longitude, shape.latitude
    height = shape.conversion * (shape.height / 2 if shape.is_box else shape.radius)
    width = shape.conversion * (shape.width / 2 if shape.is_box else shape.radius)
    lat_delta = _rad_deg(height / EARTH_RADIUS_IN_METERS)
    long_delta_top = _rad_deg(width / EARTH_RADIUS_IN_METERS / _cos(_deg_rad(lat + lat_delta)))
    long_delta_bottom = _rad_deg(width / EARTH_RADIUS_IN_METERS / _cos(_deg_rad(lat - lat_delta)))
    long_delta = long_delta_bottom if lat < 0 else long_delta_top
    return lon - long_delta, lat - lat_delta, lon + long_delta, lat + lat_delta


# The order Redis scans the boxes in: it decides which members an ANY search returns.
_SCAN_ORDER = ("north", "south", "east", "west",
               "north_east", "north_west", "south_east", "south_west")


def search_areas(shape: Shape) -> list[HashBits]:
    """geohashCalculateAreasByShapeWGS84: the centre cell and its eight neighbours (in
    scan order; ZERO for those the shape cannot reach) covering the shape."""
    min_lon, min_lat, max_lon, max_lat = bounding_box(shape)
    lon, lat = shape.longitude, shape.latitude
    if shape.is_box:
        radius_meters = math.sqrt((shape.width / 2) * (shape.width / 2)
                                  + (shape.height / 2) * (shape.height / 2))
    else:
        radius_meters = shape.radius
    radius_meters *= shape.conversion

    steps = estimate_steps_by_radius(radius_meters, lat)
    center = encode(lon, lat, steps)
    around = neighbors(center)
    # The estimate may leave the shape poking out of the 3x3 block when the centre
    # lies near a cell's edge: then use cells twice as large.
    if steps > 1 and (decode(around["north"]).lat_max < max_lat
                      or decode(around["south"]).lat_min > min_lat
                      or decode(around["east"]).long_max < max_lon
                      or decode(around["west"]).long_min > min_lon):
        steps -= 1
        center = encode(lon, lat, steps)
        around = neighbors(center)
    area = decode(center)
    if steps >= 2:
        # Drop the neighbours on a side the shape does not reach past the centre cell
        # (a corner goes with either of its sides).
        beyond = {"south": area.lat_min < min_lat, "north": area.lat_max > max_lat,
                  "west": area.long_min < min_lon, "east": area.long_max > max_lon}
        for name in around:
            if any(beyond[side] for side in name.split("_")):
                around[name] = ZERO
    return [center] + [around[name] for name in _SCAN_ORDER]


def score_range(h: HashBits) -> tuple[int, int]:
    """Scores [min, max) of the members inside cell `h`: every 52-bit hash with its
    prefix."""
    return align52(h), align52(HashBits(h.bits + 1, h.step))


def within(shape: Shape, lon: float, lat: float) -> float | None:
    """The distance in metres from the shape's centre to the point if the point is
    inside the shape, else None (geoWithinShape)."""
    if not shape.is_box:
        d = distance(shape.longitude, shape.latitude, lon, lat)
        return None if d > shape.radius * shape.conversion else d
    width_m = shape.width * shape.conversion
    height_m = shape.height * shape.conversion
    # The latitude test is the cheaper one, so it goes first.
    if lat_distance(lat, shape.latitude) > height_m / 2:
        return None
    if distance(lon, lat, shape.longitude, lat) > width_m / 2:
        return None
    return distance(shape.longitude, shape.latitude, lon, lat)


_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


def geohash_string(score: float) -> bytes:
    """The standard 11-character geohash of a stored point.  Standard geohashes span
    latitudes -90..90, so the point is decoded and encoded again over that range; the
    eleventh character stands for bits Redis does not have (zero)."""
    lon, lat = decode_score(score)
    bits = encode(lon, lat, STEP_MAX, (-180.0, 180.0), (-90.0, 90.0)).bits
    chars = [_BASE32[(bits >> (52 - (i + 1) * 5)) & 0x1F] for i in range(10)]
    return ("".join(chars) + _BASE32[0]).encode()


def format_distance(d: float) -> bytes:
    """Redis's fixedpoint_d2string with 4 decimals: rounded half to even (llrint)."""
    if d == 0:
        return b"0.0000"
    scaled = d * 10000.0
    # llrint gives x86's "integer indefinite" (LLONG_MIN) for NaN and out-of-range values.
    scaled = round(scaled) if math.isfinite(scaled) and abs(scaled) < 2.0 ** 63 else -(1 << 63)
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(5, "0")
    return f"{sign}{digits[:-4]}.{digits[-4:]}".encode()


def format_coordinate(x: float) -> bytes:
    """addReplyHumanLongDouble: "%.17Lf" without trailing zeros.  A double widened to a
    long double keeps its value, so printing the double gives the same digits."""
    text = "%.17f" % x
    text = text.rstrip("0").rstrip(".")
    return b"0" if text == "-0" else text.encode()
