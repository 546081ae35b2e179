"""ZanRedisDB's table scans through `twistd zan-node`: FULLSCAN, REVSCAN and ADVREVSCAN
page through every partition with ZanRedisDB's merged cursor until it comes back empty,
and bad cursors get clear errors."""

import base64

import pytest

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def _all_pages(c, *argv_after_cursor, command, start=b"default:t1:"):
    cursor, seen, pages = b"", [], 0
    while True:
        reply = c.call(command, start + cursor, *argv_after_cursor)
        cursor, items = reply
        seen.extend(items)
        pages += 1
        assert pages < 100
        if not cursor:
            return seen, pages


def test_fullscan_and_reverse_scans_cover_the_table(zan_node):
    c = RawClient(zan_node.redis_port)
    try:
        c.call("flushall")
        for i in range(30):
            c.call("set", f"default:t1:k{i}", f"v{i}")
        c.call("set", "default:t2:other", "x")
        c.call("hset", "default:t1:h", "f", "v")
        items, pages = _all_pages(c, "KV", "COUNT", "8", command="fullscan")
        assert sorted(items) == sorted([[f"k{i}".encode(), f"v{i}".encode()] for i in range(30)])
        assert pages > 1
        keys, _ = _all_pages(c, "COUNT", "8", command="revscan")
        assert sorted(keys) == sorted(f"t1:k{i}".encode() for i in range(30))
        keys, _ = _all_pages(c, "HASH", command="advrevscan")
        assert keys == [b"t1:h"]
        assert c.call("fullscan", "default:t1:", "HASH") == [b"", [[b"h", [b"f", b"v"]]]]
        bad = base64.b64encode(b"99:" + base64.b64encode(b"k1") + b";")
        error = c.call("fullscan", b"default:t1:" + bad, "KV")
        assert "invalid cursor" in str(error).lower(), error
        error = c.call("fullscan", "nosuchns:t1:", "KV")
        assert "namespace" in str(error).lower(), error
        error = c.call("fullscan", "default:t1:", "NOPE")
        assert "invalid scan type" in str(error), error
    finally:
        c.close()
