from tests.support.harness import Err, normalize


def test_set_get_matches_redis(part, redis):
    for argv in [("set", "k", "v"), ("get", "k"), ("set", "k", "v2", "GET"),
                 ("set", "k", "x", "NX"), ("set", "k", "x", "XX", "EX", "10"),
                 ("set", "k", "x", "EX", "0"), ("set", "k", "x", "EX", "abc"),
                 ("set", "k", "x", "NX", "XX"), ("set", "k"), ("get", "nokey"),
                 ("nosuchcommand", "a", "b")]:
        assert part.ncall(*argv) == normalize(redis.call(*argv)), argv


def test_expired_key_is_invisible(part):
    part.call("set", "k", "v", "PX", "100")
    assert part.call("get", "k") == b"v"
    part.advance(100)
    assert part.call("get", "k") is None
    assert isinstance(part.ncall("get"), Err)
