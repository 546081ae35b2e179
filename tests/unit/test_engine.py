from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.harness import CountingGets
from zan.store.engine import LevelDBEngine, cached_size


def test_reverse_range_includes_a_lone_start_key(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"))
    e.write({b"b": b"1", b"d": b"2", b"f": b"3"})
    assert list(e.iterator(b"b", b"c", reverse=True)) == [(b"b", b"1")]
    assert list(e.iterator(b"b", b"e", reverse=True)) == [(b"d", b"2"), (b"b", b"1")]
    assert list(e.iterator(b"c", None, reverse=True, include_value=False)) == [b"f", b"d"]
    assert list(e.iterator(b"b", b"e")) == [(b"b", b"1"), (b"d", b"2")]
    e.close()


def test_write_batch_puts_and_deletes(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"))
    e.write({b"a": b"1", b"b": b"2"})
    e.write({b"a": None, b"c": b"3"}, sync=True)
    assert list(e.iterator()) == [(b"b", b"2"), (b"c", b"3")]
    e.close()


# -- the row cache ------------------------------------------------------------------------

def _counting(engine):
    """Count the point reads that reach the engine's LevelDB."""
    engine._db = counting = CountingGets(engine._db)
    return counting


def test_point_reads_are_answered_from_the_row_cache(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"))
    e.write({b"a": b"1"})
    db = _counting(e)
    assert [e.get(b"a") for _ in range(3)] == [b"1"] * 3
    assert [e.get(b"absent") for _ in range(3)] == [None] * 3
    assert db.gets == 2
    e.close()


def test_writes_keep_cached_records_up_to_date(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"))
    e.write({b"a": b"1", b"b": b"2"})
    assert (e.get(b"a"), e.get(b"b"), e.get(b"c")) == (b"1", b"2", None)
    e.write({b"a": None, b"b": b"22", b"c": b"3"})
    db = _counting(e)
    assert (e.get(b"a"), e.get(b"b"), e.get(b"c")) == (None, b"22", b"3")
    assert db.gets == 0
    e.sync()
    assert e.get(b"\x00sync") == b""
    e.close()


def test_the_row_cache_stays_within_its_budget(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"), row_cache_bytes=64 << 10)
    e.write({b"k%05d" % i: b"v" * 10 for i in range(5000)})
    for i in range(5000):
        assert e.get(b"k%05d" % i) == b"v" * 10
    cached = {**e._old, **e._young}
    assert 0 < len(cached) < 5000
    assert sum(cached_size(k, v) for k, v in cached.items()) <= 64 << 10
    # What fell out of the cache is read from LevelDB again, still right.
    assert e.get(b"k00000") == b"v" * 10
    e.close()


def test_records_too_big_for_the_cache_are_read_through(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"), row_cache_bytes=64 << 10)
    small, big = b"s", b"x" * (8 << 10)
    e.write({b"a": small})
    assert e.get(b"a") == small
    e.write({b"a": big})  # a cached record grows past the limit: it leaves the cache
    db = _counting(e)
    assert e.get(b"a") == big and e.get(b"a") == big
    assert db.gets == 2
    e.close()


def test_a_zero_row_cache_reads_leveldb_every_time(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"), row_cache_bytes=0)
    e.write({b"a": b"1"})
    assert e.get(b"a") == b"1" and e.get(b"b") is None
    # Changed behind the engine's back: only a read that reaches LevelDB sees it.
    e._db.put(b"a", b"2")
    e._db.put(b"b", b"3")
    assert e.get(b"a") == b"2" and e.get(b"b") == b"3"
    e.close()


def test_a_write_that_fills_the_young_generation_updates_the_rest_of_its_batch(tmp_path):
    e = LevelDBEngine(str(tmp_path / "db"), row_cache_bytes=2 * 16 * 400)
    e.write({b"a": b"", b"b": b""})
    assert (e.get(b"a"), e.get(b"b")) == (b"", b"")
    e._young_bytes = e._generation_bytes - 100  # as if the young generation were all but full
    # Growing `a` starts a new generation, which makes `b` old: `b` must still change.
    e.write({b"a": b"x" * 150, b"b": b"y"})
    assert (e.get(b"a"), e.get(b"b")) == (b"x" * 150, b"y")
    e.close()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.tuples(st.just("get"), st.integers(0, 40)),
    # A batch of changes: a value's size, or None to delete.
    st.tuples(st.just("write"), st.dictionaries(st.integers(0, 40),
                                               st.none() | st.integers(0, 200), max_size=6)),
), max_size=300))
def test_the_row_cache_never_differs_from_the_database(tmp_path_factory, ops):
    """Random reads and batches of writes and deletes through a cache far smaller than
    the data: every read agrees with a plain dict of what was written."""
    e = LevelDBEngine(str(tmp_path_factory.mktemp("db")), row_cache_bytes=8 << 10)
    model = {}
    for op, arg in ops:
        if op == "get":
            assert e.get(b"k%d" % arg) == model.get(b"k%d" % arg)
            continue
        changes = {b"k%d" % k: None if size is None else bytes([k]) * size
                   for k, size in arg.items()}
        e.write(changes)
        for key, value in changes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    assert all(e.get(b"k%d" % k) == model.get(b"k%d" % k) for k in range(41))
    e.close()
