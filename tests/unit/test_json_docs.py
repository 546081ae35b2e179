"""JSON documents through the partition harness: RedisJSON's documented examples (the
JSON.* command pages), its legacy-path replies and errors, ZanRedisDB's json.* forms,
and bad input (malformed JSON, deep nesting, oversized documents)."""

import json

import pytest

from tests.support.harness import Err
from zan.commands.jsonpath import dumps, loads, parse_path

# (setup commands, command, expected reply).  Replies as RedisJSON's documentation gives
# them: serialized JSON is a bulk string, arrays of per-match replies are lists.
DOC_EXAMPLES = [
    ([("json.set", "doc", "$", '{"a":2}')], ("json.set", "doc", "$.a", "3"), b"OK"),
    ([("json.set", "doc", "$", '{"a":2}'), ("json.set", "doc", "$.a", "3")],
     ("json.get", "doc", "$"), b'[{"a":3}]'),
    ([("json.set", "doc", "$", '{"a":2}'), ("json.set", "doc", "$.b", "8")],
     ("json.get", "doc", "$"), b'[{"a":2,"b":8}]'),
    ([("json.set", "doc", "$", '{"f1": {"a":1}, "f2":{"a":2}}'),
      ("json.set", "doc", "$..a", "3")],
     ("json.get", "doc"), b'{"f1":{"a":3},"f2":{"a":3}}'),
    ([("json.set", "doc", "$", '{"a":2, "b": 3, "nested": {"a": 4, "b": null}}')],
     ("json.get", "doc", "$..b"), b"[3,null]"),
    ([("json.set", "doc", "$", '{"a":2, "b": 3, "nested": {"a": 4, "b": null}}')],
     ("json.get", "doc", "..a", "$..b"), b'{"..a":[2,4],"$..b":[3,null]}'),
    ([("json.set", "doc", "$", '{"a":2, "b": 3, "nested": {"a": 4, "b": null}}')],
     ("json.get", "doc", "INDENT", "\t", "NEWLINE", "\n", "SPACE", " ", "$..b"),
     b"[\n\t3,\n\tnull\n]"),
    ([("json.set", "doc", "$", '{"a": 1, "nested": {"a": 2, "b": 3}}')],
     ("json.del", "doc", "$..a"), 2),
    ([("json.set", "doc", "$", '{"a": 1, "nested": {"a": 2, "b": 3}}'),
      ("json.del", "doc", "$..a")],
     ("json.get", "doc", "$"), b'[{"nested":{"b":3}}]'),
    ([("json.set", "doc", ".", '{"a":"b","b":[{"a":2}, {"a":5}, {"a":"c"}]}')],
     ("json.numincrby", "doc", "$.a", "2"), b"[null]"),
    ([("json.set", "doc", ".", '{"a":"b","b":[{"a":2}, {"a":5}, {"a":"c"}]}')],
     ("json.numincrby", "doc", "$..a", "2"), b"[null,4,7,null]"),
    ([("json.set", "doc", ".", '{"a":"b","b":[{"a":2}, {"a":5}, {"a":"c"}]}')],
     ("json.nummultby", "doc", "$..a", "2"), b"[null,4,10,null]"),
    ([("json.set", "doc", "$", '{"a":"foo", "nested": {"a": "hello"}, "nested2": {"a": 31}}')],
     ("json.strappend", "doc", "$..a", '"baz"'), [6, 8, None]),
    ([("json.set", "doc", "$", '{"a":"foo", "nested": {"a": "hello"}, "nested2": {"a": 31}}'),
      ("json.strappend", "doc", "$..a", '"baz"')],
     ("json.get", "doc", "$"),
     b'[{"a":"foobaz","nested":{"a":"hellobaz"},"nested2":{"a":31}}]'),
    ([("json.set", "doc", "$", '{"a":"foo", "nested": {"a": "hello"}, "nested2": {"a": 31}}')],
     ("json.strlen", "doc", "$..a"), [3, 5, None]),
    ([("json.set", "item", "$", '{"name":"headphones","colors":["black","silver"]}')],
     ("json.arrappend", "item", "$.colors", '"blue"'), [3]),
    ([("json.set", "item", "$", '{"colors":["black","silver"]}'),
      ("json.arrappend", "item", "$.colors", '"blue"')],
     ("json.arrindex", "item", "$..colors", '"silver"'), [1]),
    ([("json.set", "item", "$", '{"colors":["black","silver","blue"]}'),
      ("json.arrinsert", "item", "$.colors", "2", '"yellow"', '"gold"')],
     ("json.get", "item", "$.colors"), b'[["black","silver","yellow","gold","blue"]]'),
    ([("json.set", "key", "$", '[[], ["a"], ["a", "b"], ["a", "b", "c"]]')],
     ("json.arrtrim", "key", "$[*]", "0", "1"), [0, 1, 2, 2]),
    ([("json.set", "key", "$", '[[], ["a"], ["a", "b"], ["a", "b", "c"]]'),
      ("json.arrtrim", "key", "$[*]", "0", "1")],
     ("json.get", "key", "$"), b'[[[],["a"],["a","b"],["a","b"]]]'),
    ([("json.set", "doc", "$", '{"a":[3], "nested": {"a": {"b":2, "c": 1}}}')],
     ("json.objkeys", "doc", "$..a"), [None, [b"b", b"c"]]),
    ([("json.set", "doc", "$", '{"a":[3], "nested": {"a": {"b":2, "c": 1}}}')],
     ("json.objlen", "doc", "$..a"), [None, 2]),
    ([("json.set", "doc", "$", '{"a":2, "nested": {"a": true}, "foo": "bar"}')],
     ("json.type", "doc", "$..a"), [b"integer", b"boolean"]),
    ([("json.set", "doc", "$", '{"a":2, "nested": {"a": true}, "foo": "bar"}')],
     ("json.type", "doc", "$..dummy"), []),
    ([("json.set", "doc", "$", '{"obj":{"a":1, "b":2}, "arr":[1,2,3], "str": "foo", '
                             '"bool": true, "int": 42, "float": 3.14}')],
     ("json.clear", "doc", "$.*"), 4),
    ([("json.set", "doc", "$", '{"obj":{"a":1, "b":2}, "arr":[1,2,3], "str": "foo", '
                             '"bool": true, "int": 42, "float": 3.14}'),
      ("json.clear", "doc", "$.*")],
     ("json.get", "doc", "$"),
     b'[{"obj":{},"arr":[],"str":"foo","bool":true,"int":0,"float":0}]'),
    ([("json.set", "doc", "$", '{"bool": true}')], ("json.toggle", "doc", "$.bool"), [0]),
    ([("json.set", "doc", "$", '{"bool": true}'), ("json.toggle", "doc", "$.bool")],
     ("json.get", "doc", "$"), b'[{"bool":false}]'),
    ([("json.set", "doc1", "$", '{"a":1, "b": 2, "nested": {"a": 3}, "c": null}'),
      ("json.set", "doc2", "$", '{"a":4, "b": 5, "nested": {"a": 6}, "c": null}')],
     ("json.mget", "doc1", "doc2", "$..a"), [b"[1,3]", b"[4,6]"]),
    ([("json.set", "doc", "$", '{"a":[1,2,3]}')], ("json.arrpop", "doc", "$.a", "0"), [b"1"]),
    ([("json.set", "doc", "$", '{"a":[1,2,3], "b": {"c": []}, "d": []}')],
     ("json.arrpop", "doc", "$.*"), [b"3", None, None]),
]


@pytest.mark.parametrize("setup,command,expected", DOC_EXAMPLES,
                         ids=[f"{c[0]}-{i}" for i, (_, c, _) in enumerate(DOC_EXAMPLES)])
def test_redisjson_documented_examples(part, setup, command, expected):
    for argv in setup:
        assert not isinstance(part.ncall(*argv), Err), argv
    assert part.ncall(*command) == expected


def test_legacy_paths_answer_one_value_and_fail_when_nothing_matches(part):
    assert part.ncall("json.set", "doc", ".", '{"foo":"bar","n":1,"arr":[1,2]}') == b"OK"
    assert part.ncall("json.get", "doc", ".foo") == b'"bar"'
    assert part.ncall("json.get", "doc", "foo") == b'"bar"'
    assert part.ncall("json.get", "doc", "arr[1]") == b"2"
    assert part.ncall("json.get", "doc", "foo", "n") == b'{"foo":"bar","n":1}'
    assert part.ncall("json.get", "doc", ".nope") == Err("ERR Path '$.nope' does not exist")
    assert part.ncall("json.type", "doc", ".foo") == b"string"
    assert part.ncall("json.type", "doc") == b"object"
    assert part.ncall("json.numincrby", "doc", ".n", "2") == b"3"
    assert part.ncall("json.numincrby", "doc", ".n", "0.5") == b"3.5"
    assert part.ncall("json.numincrby", "doc", ".foo2", "3") == Err(
        "ERR Path '$.foo2' does not exist or does not contains a number")
    assert part.ncall("json.strappend", "doc", ".foo", '"baz"') == 6
    assert part.ncall("json.strlen", "doc", ".foo") == 6
    assert part.ncall("json.arrappend", "doc", ".foo", "1") == Err(
        "WRONGTYPE wrong type of path value - expected array but found string")
    assert part.ncall("json.arrappend", "doc", ".arr", "3", '{"x":1}') == 4
    assert part.ncall("json.arrpop", "doc", ".arr") == b'{"x":1}'
    assert part.ncall("json.arrlen", "doc", ".arr") == 3
    assert part.ncall("json.arrlen", "missing", ".arr") is None
    assert part.ncall("json.arrlen", "missing", "$.arr") == Err(
        "ERR could not perform this operation on a key that doesn't exist")
    assert part.ncall("json.objkeys", "doc") == [b"foo", b"n", b"arr"]
    assert part.ncall("json.objlen", "doc", ".") == 3
    assert part.ncall("json.arrindex", "doc", ".arr", "2") == 1
    assert part.ncall("json.arrindex", "doc", ".arr", "2.0") == -1
    assert part.ncall("json.set", "flag", ".", "true") == b"OK"
    assert part.ncall("json.toggle", "flag", ".") == b"false"
    assert part.ncall("json.del", "doc", ".foo") == 1
    assert part.ncall("json.forget", "doc") == 1
    assert part.ncall("exists", "doc") == 0


def test_set_options_and_creation(part):
    assert part.ncall("json.set", "doc", "$", '{"a":1}', "XX") is None
    assert part.ncall("json.set", "doc", "$", '{"a":1}', "NX") == b"OK"
    assert part.ncall("json.set", "doc", "$", '{"a":2}', "NX") is None
    assert part.ncall("json.set", "doc", "$.a", "5", "XX") == b"OK"
    assert part.ncall("json.set", "doc", "$.b", "5", "XX") is None
    assert part.ncall("json.set", "doc", "$.c.d", "5") is None       # no parent
    assert part.ncall("json.set", "doc", "$", "1", "NX", "XX") == Err("ERR syntax error")
    assert part.ncall("json.set", "new", "$.a", "1") == Err(
        "ERR new objects must be created at the root")
    assert part.ncall("json.get", "doc") == b'{"a":5}'


def test_zanredisdb_dotted_paths_create_what_they_name(part):
    assert part.ncall("json.set", "user", "name", '"Tom"') == b"OK"
    assert part.ncall("json.set", "user", "address.city", '"Hangzhou"') == b"OK"
    assert part.ncall("json.set", "user", "tags", '["a","b"]') == b"OK"
    assert part.ncall("json.get", "user", "address.city") == b'"Hangzhou"'
    assert part.ncall("json.get", "user", "tags.1") == b'"b"'
    assert part.ncall("json.get", "user") == (
        b'{"name":"Tom","address":{"city":"Hangzhou"},"tags":["a","b"]}')
    assert part.ncall("json.keyexists", "user") == 1
    assert part.ncall("json.keyexists", "nobody") == 0
    assert part.ncall("json.set", "other", ".", '{"name":"Ann"}') == b"OK"
    assert part.ncall("json.mkget", "user", "other", "nobody", "name") == [
        b'"Tom"', b'"Ann"', None]
    assert part.ncall("json.arrpop", "user", "tags") == b'"b"'


def test_a_document_is_a_key_of_its_own_type(part):
    part.ncall("json.set", "doc", "$", '{"a":[1,2]}')
    assert part.ncall("type", "doc") == b"ReJSON-RL"
    assert part.ncall("object", "encoding", "doc") == b"raw"
    assert part.ncall("expire", "doc", "100") == 1
    part.ncall("json.arrappend", "doc", "$.a", "3")
    assert part.ncall("ttl", "doc") == 100
    assert part.ncall("get", "doc") == Err(
        "WRONGTYPE Operation against a key holding the wrong kind of value")
    part.ncall("set", "s", "x")
    assert part.ncall("json.get", "s") == Err(
        "WRONGTYPE Operation against a key holding the wrong kind of value")
    assert part.ncall("json.mget", "s", "doc", "$.a") == [None, b"[[1,2,3]]"]
    assert part.ncall("copy", "doc", "doc2") == 1
    assert part.ncall("json.get", "doc2", "$.a[2]") == b"[3]"


@pytest.mark.parametrize("bad,error", [
    (b"{", "ERR invalid JSON"),
    (b"{'a':1}", "ERR invalid JSON"),
    (b"NaN", "ERR invalid JSON"),
    (b"\xff", "ERR invalid JSON: not UTF-8"),
    (b"[" * 10000 + b"]" * 10000, "ERR invalid JSON: nested deeper than 128 levels"),
    (b"[" * 129 + b"]" * 129, "ERR invalid JSON: nested deeper than 128 levels"),
])
def test_malformed_json_is_refused_and_nothing_changes(part, bad, error):
    part.ncall("json.set", "doc", "$", '{"a":1}')
    reply = part.ncall("json.set", "doc", "$.a", bad)
    assert isinstance(reply, Err) and reply.startswith(error), reply
    assert part.ncall("json.get", "doc") == b'{"a":1}'


def test_paths_into_non_objects_and_bad_paths(part):
    part.ncall("json.set", "doc", "$", '{"a":1,"s":"x"}')
    assert part.ncall("json.get", "doc", "$.a.b") == b"[]"
    assert part.ncall("json.get", "doc", ".a.b") == Err("ERR Path '$.a.b' does not exist")
    assert part.ncall("json.set", "doc", "$.a.b", "1") is None
    reply = part.ncall("json.get", "doc", "$[")
    assert isinstance(reply, Err) and "invalid JSON path" in reply
    assert part.ncall("json.numincrby", "doc", "$.a", "x") == Err(
        "ERR invalid JSON: Expecting value at line 1 column 1")


def test_an_oversized_document_is_refused(part):
    big = json.dumps({"a": "x" * (8 << 20)})
    reply = part.ncall("json.set", "doc", "$", big)
    assert isinstance(reply, Err), reply
    assert part.ncall("exists", "doc") == 0


def test_filters_and_selectors():
    doc = loads(b'{"books":[{"t":"a","p":8},{"t":"b","p":12},{"t":"c","p":5,"x":true}]}')

    def get(path):
        return [c[k] for c, k in parse_path(path.encode()).locate([doc])]
    assert get("$.books[?(@.p < 10)].t") == ["a", "c"]
    assert get("$.books[?(@.p > 6 && @.t != 'b')].t") == ["a"]
    assert get("$.books[?(@.x)].t") == ["c"]
    assert get("$.books[-1:].t") == ["c"]
    assert get("$.books[0,2].p") == [8, 5]
    assert get("$..p") == [8, 12, 5]
    assert get("$.books[*]['t','p']") == ["a", 8, "b", 12, "c", 5]
    assert dumps({"f": 1e20, "g": 1.5e-7, "h": 3.0, "s": "é\n"}) == (
        '{"f":1e20,"g":1.5e-7,"h":3.0,"s":"é\\n"}')


def test_documents_are_replicated_and_read_from_every_node(tmp_path):
    from tests.support.inprocess import InProcessCluster
    c = InProcessCluster(tmp_path)
    try:
        c.wait_leader(0)
        c.wait_leader(1)
        assert c.call(1, "json.set", "{u}:1", "$", '{"n":1,"tags":[]}') == b"OK"
        assert c.call(2, "json.arrappend", "{u}:1", "$.tags", '"x"') == [1]
        assert c.call(3, "json.numincrby", "{u}:1", ".n", "4") == b"5"
        assert c.call(1, "json.set", "{u}:2", ".", '{"n":2}') == b"OK"
        for node in (1, 2, 3):
            assert c.call(node, "json.get", "{u}:1") == b'{"n":5,"tags":["x"]}'
            assert c.call(node, "json.mget", "{u}:1", "{u}:2", "$.n") == [b"[5]", b"[2]"]
            assert c.call(node, "type", "{u}:1") == b"ReJSON-RL"
    finally:
        c.close()


@pytest.mark.parametrize("text", [
    '{"a":[1,2.5,{"b":1e20}],"c":"é\\n\\u0001","d":null,"e":true,"f":-0.0,"g":1.5e-7}',
    '[[],{},"",0,123456789012345678901234567890]',
    '"just a string"',
])
def test_the_stored_text_is_what_a_parse_would_answer(part, text):
    """JSON.GET of a whole document answers its stored text without parsing it: that
    text must be what serializing the parsed document gives."""
    stored = dumps(loads(text.encode()))
    assert dumps(loads(stored.encode())) == stored
    part.ncall("json.set", "doc", "$", text)
    assert part.ncall("json.get", "doc") == stored.encode()
    assert part.ncall("json.get", "doc", "$") == b"[" + stored.encode() + b"]"
    assert part.ncall("json.get", "doc", "$.*") is not None
