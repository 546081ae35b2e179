"""The purge sweep on a real LevelDB engine: dead data found and removed in bounded
slices, live data untouched."""

from tests.support.harness import PartitionHarness
from zan.store import codec
from zan.store.keyspace import LOCAL_DELETION, KeyspaceOptions
from zan.store.sweeper import sweep_expired, sweep_garbage


def _dump(engine):
    return dict(engine.iterator())


def _run_to_end(fn, engine, **kw):
    """Run slices until a pass ends, writing each batch; returns (#slices, deletions)."""
    pos, slices, deleted = None, 0, {}
    while True:
        batch = fn(engine, start=pos, **kw)
        engine.write(batch.deletions)
        deleted.update(batch.deletions)
        slices += 1
        if batch.resume is None:
            return slices, deleted
        pos = batch.resume


def _elements_of(engine, pk):
    return [k for k in engine.iterator(include_value=False)
            if k[:1] >= codec.HASH_ELEM and codec.decode_elem_key(k)[1] == pk]


def test_expired_keys_and_orphans_go_live_data_stays(part):
    # Live data of every type, some with a far TTL.
    part.call("set", "live", "v")
    part.call("set", "live_ttl", "v", "EX", "1000")
    part.call("hset", "lh", "a", "1", "b", "2")
    part.call("rpush", "ll", "x", "y")
    part.call("sadd", "ls", "m")
    part.call("zadd", "lz", "1", "m", "2", "n")
    part.call("pexpire", "lz", "1000000")
    # Dead data: expired keys of each type, a deleted hash, an overwritten set.
    part.call("set", "dead", "v", "PX", "100")
    part.call("hset", "dh", "a", "1")
    part.call("pexpire", "dh", "100")
    part.call("zadd", "dz", "1", "a", "2", "b")
    part.call("pexpire", "dz", "50")
    part.call("hset", "gone", *[x for i in range(30) for x in (b"f%d" % i, b"v")])
    part.call("del", "gone")
    part.call("sadd", "over", "a", "b")
    part.call("set", "over", "now a string")
    part.call("rpush", "again", "old1", "old2")
    part.call("del", "again")
    part.call("rpush", "again", "new")
    part.advance(200)

    live_before = {k: v for k, v in _dump(part.engine).items()}
    slices, deleted = _run_to_end(sweep_expired, part.engine, now_ms=part.now_ms, grace_ms=0,
                                  limit=2)
    assert slices >= 2
    for pk in (b"dead", b"dh", b"dz"):
        assert codec.meta_key(pk) in deleted
        assert part.engine.get(codec.meta_key(pk)) is None
    assert not [k for k in part.engine.iterator(start=codec.EXPIRY, stop=codec.prefix_end(codec.EXPIRY),
                                                include_value=False)
                if codec.decode_expiry_key(k)[1] in (b"dead", b"dh", b"dz")]

    slices, garbage = _run_to_end(sweep_garbage, part.engine, limit=5)
    assert slices >= 2
    for pk in (b"dh", b"dz", b"gone", b"over"):
        assert _elements_of(part.engine, pk) == []
    assert len(_elements_of(part.engine, b"again")) == 1

    after = _dump(part.engine)
    removed = set(live_before) - set(after)
    assert removed == set(deleted) | set(garbage)
    # Everything still visible reads as before.
    assert part.call("get", "live") == b"v"
    assert part.call("ttl", "live_ttl") == 1000
    assert part.call("hgetall", "lh") == [b"a", b"1", b"b", b"2"]
    assert part.call("lrange", "ll", "0", "-1") == [b"x", b"y"]
    assert part.call("smembers", "ls") == [b"m"]
    assert part.call("zrange", "lz", "0", "-1") == [b"m", b"n"]
    assert part.call("lrange", "again", "0", "-1") == [b"new"]
    assert part.call("get", "over") == b"now a string"
    # A second pass finds nothing.
    assert sweep_expired(part.engine, part.now_ms, grace_ms=0).deletions == {}
    assert sweep_garbage(part.engine).deletions == {}


def test_grace_period_holds_back_the_purge(part):
    part.call("set", "k", "v", "PX", "100")
    part.advance(1000)
    assert sweep_expired(part.engine, part.now_ms, grace_ms=5000).deletions == {}
    batch = sweep_expired(part.engine, part.now_ms + 4100, grace_ms=5000)
    assert codec.meta_key(b"k") in batch.deletions


def test_deadline_boundary_is_inclusive(part):
    part.call("set", "k", "v", "PX", "100")
    deadline = part.now_ms + 100
    assert sweep_expired(part.engine, deadline - 1, grace_ms=0).deletions == {}
    assert codec.meta_key(b"k") in sweep_expired(part.engine, deadline, grace_ms=0).deletions


def test_persisted_key_leaves_no_stale_index(part):
    part.call("set", "k", "v", "PX", "100")
    part.call("persist", "k")
    part.call("set", "j", "v", "PX", "100")
    part.call("pexpire", "j", "10000")
    part.advance(500)
    batch = sweep_expired(part.engine, part.now_ms, grace_ms=0)
    assert batch.deletions == {} and batch.keys_purged == 0
    assert part.call("get", "k") == b"v" and part.call("get", "j") == b"v"


def test_local_deletion_expired_key_visible_until_swept(tmp_path):
    h = PartitionHarness(str(tmp_path / "p"), options=KeyspaceOptions(expiration_policy=LOCAL_DELETION))
    try:
        h.call("set", "k", "v", "PX", "100")
        h.call("hset", "h", "a", "1")
        h.call("pexpire", "h", "100")
        h.advance(100)
        assert h.call("get", "k") == b"v"
        assert h.call("hget", "h", "a") == b"1"
        batch = sweep_expired(h.engine, h.now_ms, grace_ms=0)
        h.engine.write(batch.deletions)
        h.engine.write(sweep_garbage(h.engine).deletions)
        assert h.call("get", "k") is None
        assert h.call("exists", "h") == 0
        assert _elements_of(h.engine, b"h") == []
    finally:
        h.close()
