"""JSON documents through `twistd zan-node` with redis-py's JSON helper (`Redis.json()`,
which speaks RedisJSON's JSON.* commands), and ZanRedisDB's json.* forms over RESP."""

import pytest
import redis
from redis.commands.json.path import Path

from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


def test_redis_py_json_helper(zan_node):
    r = redis.Redis(port=zan_node.redis_port, protocol=2)
    r.flushall()
    j = r.json()
    doc = {"name": "headphones", "price": 99.5, "stock": 3, "colors": ["black", "silver"],
           "specs": {"wireless": True, "weight": 250}}
    assert j.set("item:1", Path.root_path(), doc)
    assert j.get("item:1") == doc
    assert j.get("item:1", "$.colors[0]") == ["black"]
    assert j.get("item:1", ".specs.weight") == 250
    assert j.arrappend("item:1", "$.colors", "blue") == [3]
    assert j.arrinsert("item:1", "$.colors", 0, "red") == [4]
    assert j.arrindex("item:1", "$.colors", "blue") == [3]
    assert j.arrlen("item:1", "$.colors") == [4]
    # redis-py leaves a JSONPath ARRPOP's replies serialized (as with RedisJSON)
    assert j.arrpop("item:1", "$.colors") == ['"blue"']
    assert j.arrpop("item:1", ".colors", 0) == "red"
    assert j.arrinsert("item:1", "$.colors", 0, "red") == [3]
    assert j.arrtrim("item:1", "$.colors", 0, 1) == [2]
    assert j.numincrby("item:1", "$.stock", 2) == [5]
    assert r.execute_command("JSON.NUMMULTBY", "item:1", "$.price", 2) == [199.0]
    assert j.strappend("item:1", "!", "$.name") == [11]
    assert j.strlen("item:1", "$.name") == [11]
    assert j.toggle("item:1", "$.specs.wireless") == [0]
    assert sorted(j.objkeys("item:1", "$.specs")[0]) == [b"weight", b"wireless"]
    assert j.objlen("item:1", "$.specs") == [2]
    assert j.type("item:1", "$.price") == [b"number"]
    assert j.set("item:2", "$", {"name": "cable", "stock": 10})
    assert j.mget(["item:1", "item:2", "nope"], "$.stock") == [[5], [10], None]
    assert j.clear("item:2", "$.stock") == 1
    assert j.delete("item:1", "$.specs") == 1
    assert j.get("item:1") == {"name": "headphones!", "price": 199.0, "stock": 5,
                               "colors": ["red", "black"]}
    assert r.type("item:1") == b"ReJSON-RL"
    assert j.delete("item:1") == 1
    assert r.exists("item:1") == 0
    r.close()


def test_zanredisdb_json_commands(zan_node):
    c = RawClient(zan_node.redis_port)
    try:
        assert c.call("json.set", "u1", "name", '"Tom"') == b"OK"
        assert c.call("json.set", "u1", "age", "30") == b"OK"
        assert c.call("json.set", "u2", ".", '{"name":"Ann","age":7}') == b"OK"
        assert c.call("json.get", "u1", "name") == b'"Tom"'
        assert c.call("json.keyexists", "u1") == 1
        assert c.call("json.mkget", "u1", "u2", "u3", "age") == [b"30", b"7", None]
        assert c.call("json.type", "u1", "age") == b"integer"
        assert str(c.call("json.arrappend", "u1", "tags", '"a"')) == \
            "ERR Path '$.tags' does not exist"
        assert c.call("json.set", "u1", "tags", "[]") == b"OK"
        assert c.call("json.arrappend", "u1", "tags", '"a"') == 1
    finally:
        c.close()
