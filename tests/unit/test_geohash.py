"""The pure geohash and distance math of `zan.commands.geohash`, against values
redis-server 7.0 prints (GEOADD's scores, GEOPOS, GEOHASH, GEODIST)."""

import math
import random

import pytest

from zan.commands import geohash
from zan.commands.geohash import HashBits, Shape


# (longitude, latitude) -> the score redis-server stores, GEOPOS and GEOHASH.
POINTS = [
    ((13.361389, 38.115556), 3479099956230698,
     (b"13.36138933897018433", b"38.11555639549629859"), b"sqc8b49rny0"),
    ((15.087269, 37.502669), 3479447370796909, None, b"sqdtr74hyu0"),
    ((0.0, 0.0), 3377699720527872,
     (b"0.00000268220901489", b"0.00000126736058093"), b"s0000000000"),
    # The corners: 180 needs a 54-bit hash, rounded as ZADD parses it.
    ((180.0, 85.05112878), 13510798882111488, (b"180", b"85.0511287799999991"), b"bp05b5048p0"),
    ((-180.0, -85.05112878), 0,
     (b"-179.99999731779098511", b"-85.05112751263942528"), b"00bh0hbj200"),
]


@pytest.mark.parametrize("point,score,position,hash_", POINTS)
def test_scores_positions_and_geohashes_are_redis_s(point, score, position, hash_):
    assert geohash.score_of(*point) == score
    if position is not None:
        lon, lat = geohash.decode_score(score)
        assert (geohash.format_coordinate(lon), geohash.format_coordinate(lat)) == position
    assert geohash.geohash_string(score) == hash_


def test_distances_in_every_unit():
    palermo = geohash.decode_score(3479099956230698)
    catania = geohash.decode_score(3479447370796909)
    d = geohash.distance(*palermo, *catania)
    assert geohash.format_distance(d) == b"166274.1516"
    assert geohash.format_distance(d / 1000) == b"166.2742"
    assert geohash.format_distance(d / 1609.34) == b"103.3182"
    ne, sw = geohash.decode_score(13510798882111488), geohash.decode_score(0)
    assert geohash.format_distance(geohash.distance(*ne, *sw) / 0.3048) == b"62072980.9353"


def test_distance_on_one_meridian_takes_the_latitude_path():
    assert geohash.distance(10, 0, 10, 1) == geohash.lat_distance(0, 1)
    assert geohash.distance(10, 0, 10, 0) == 0.0
    assert geohash.distance(0, 0, 90, 0) == pytest.approx(
        math.pi / 2 * geohash.EARTH_RADIUS_IN_METERS)


def test_distance_past_the_domain_of_asin_is_nan_as_in_c():
    # Whatever the rounding, the distance between antipodes is never an exception.
    d = geohash.distance(0.0, 0.0, 180.0, 0.0)
    assert math.isnan(d) or d == pytest.approx(math.pi * geohash.EARTH_RADIUS_IN_METERS)


def test_format_distance_rounds_half_to_even_and_pads():
    assert geohash.format_distance(0.0) == b"0.0000"
    assert geohash.format_distance(-0.0) == b"0.0000"
    assert geohash.format_distance(0.0005) == b"0.0005"
    assert geohash.format_distance(0.00025) == b"0.0002"     # 2.5 -> 2
    assert geohash.format_distance(0.00035) == b"0.0004"     # 3.5 -> 4
    assert geohash.format_distance(12.5) == b"12.5000"
    assert geohash.format_distance(math.nan) == b"-922337203685477.5808"


def test_format_coordinate_drops_trailing_zeros():
    assert geohash.format_coordinate(180.0) == b"180"
    assert geohash.format_coordinate(-0.0) == b"0"
    assert geohash.format_coordinate(0.5) == b"0.5"
    assert geohash.format_coordinate(1e-20) == b"0"


def test_interleaving_round_trips():
    rng = random.Random(3)
    for _ in range(1000):
        x, y = rng.getrandbits(32), rng.getrandbits(32)
        z = geohash._interleave(x, y)
        assert geohash._deinterleave(z) == (x, y)
        assert all((z >> (2 * k)) & 1 == (x >> k) & 1 for k in range(32))


def test_encode_decode_cell_holds_the_point():
    rng = random.Random(4)
    for _ in range(500):
        lon = rng.uniform(-180, 180)
        lat = rng.uniform(geohash.LAT_MIN, geohash.LAT_MAX)
        step = rng.randint(1, 26)
        area = geohash.decode(geohash.encode(lon, lat, step))
        assert area.long_min <= lon <= area.long_max
        assert area.lat_min <= lat <= area.lat_max


def test_neighbours_are_adjacent_cells_and_wrap_at_the_antimeridian():
    h = geohash.encode(10.0, 20.0, 10)
    area = geohash.decode(h)
    around = geohash.neighbors(h)
    east, north = geohash.decode(around["east"]), geohash.decode(around["north"])
    assert east.long_min == pytest.approx(area.long_max)
    assert north.lat_min == pytest.approx(area.lat_max)
    ne = geohash.decode(around["north_east"])
    assert (ne.long_min, ne.lat_min) == pytest.approx((area.long_max, area.lat_max))
    # The cell west of the westernmost one is the easternmost one.
    edge = geohash.encode(-180.0, 0.0, 5)
    assert geohash.decode(geohash.neighbors(edge)["west"]).long_max == pytest.approx(180.0)


def test_score_range_of_a_cell_covers_its_52_bit_hashes():
    h = HashBits(0b101010, 3)
    lo, hi = geohash.score_range(h)
    assert lo == 0b101010 << 46 and hi == 0b101011 << 46


def test_estimated_steps():
    assert geohash.estimate_steps_by_radius(0, 0) == 26
    assert geohash.estimate_steps_by_radius(1, 0) == 24
    assert geohash.estimate_steps_by_radius(1000, 0) == 14
    assert geohash.estimate_steps_by_radius(1000, 70) == 13
    assert geohash.estimate_steps_by_radius(1000, -85) == 12
    assert geohash.estimate_steps_by_radius(1e9, 0) == 1
    assert geohash.estimate_steps_by_radius(math.inf, 0) == 1


def test_search_areas_cover_the_shape():
    rng = random.Random(5)
    for _ in range(300):
        lon = rng.uniform(-179, 179)
        lat = rng.uniform(-80, 80)
        shape = Shape(lon, lat, 1000.0, radius=rng.choice([0.5, 5, 50, 500]))
        cells = [c for c in geohash.search_areas(shape) if not c.is_zero()]
        # Every point of the circle (sampled on its rim) lies in one of the cells.
        for k in range(16):
            angle = 2 * math.pi * k / 16
            dlat = math.degrees(shape.radius * 1000 * 0.999 * math.sin(angle)
                                / geohash.EARTH_RADIUS_IN_METERS)
            dlon = math.degrees(shape.radius * 1000 * 0.999 * math.cos(angle)
                                / geohash.EARTH_RADIUS_IN_METERS / math.cos(math.radians(lat)))
            p = (lon + dlon, lat + dlat)
            if not -180 <= p[0] <= 180 or not geohash.LAT_MIN <= p[1] <= geohash.LAT_MAX:
                continue
            assert any(geohash.decode(c).long_min <= p[0] <= geohash.decode(c).long_max
                       and geohash.decode(c).lat_min <= p[1] <= geohash.decode(c).lat_max
                       for c in cells), (shape, p)


def test_search_with_an_infinite_radius_does_not_raise():
    cells = geohash.search_areas(Shape(15.0, 37.0, 1000.0, radius=math.inf))
    assert cells[0].step == 1


def test_within_circle_and_box():
    circle = Shape(0.0, 0.0, 1000.0, radius=100.0)
    assert geohash.within(circle, 0.5, 0.5) == pytest.approx(
        geohash.distance(0.0, 0.0, 0.5, 0.5))
    assert geohash.within(circle, 1.0, 0.0) is None     # ~111 km
    box = Shape(0.0, 0.0, 1000.0, width=250.0, height=50.0, is_box=True)
    assert geohash.within(box, 1.0, 0.0) is not None    # 111 km east, inside 125
    assert geohash.within(box, 0.0, 0.3) is None        # 33 km north, outside 25


def test_decode_score_is_decode_at_full_precision():
    import random
    from zan.commands.geohash import LAT_MAX, LAT_MIN, LONG_MAX, LONG_MIN, HashBits, \
        STEP_MAX, decode, decode_score
    rng = random.Random(5)
    for _ in range(2000):
        bits = rng.getrandbits(52)
        area = decode(HashBits(bits, STEP_MAX))
        expected = (min(max((area.long_min + area.long_max) / 2, LONG_MIN), LONG_MAX),
                    min(max((area.lat_min + area.lat_max) / 2, LAT_MIN), LAT_MAX))
        assert decode_score(float(bits)) == expected
