from zan.store.engine import LevelDBEngine


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
