"""The Lua runtime on its own (no node): the sandbox holds, a script cannot leave state
behind for the next, and no Python failure escapes as anything but an error reply."""

import pytest

from zan.errors import RespError, ZanError
from zan.scripting.engine import LuaEngine, sha1hex


@pytest.fixture(scope="module")
def engine():
    return LuaEngine()


def run(engine, body, keys=(), argv=(), call=lambda argv: b"ok"):
    body = body.encode()
    reply = engine.run(engine.compile(body), sha1hex(body), list(keys), list(argv), call)
    return reply.resp_message() if isinstance(reply, ZanError) else reply


@pytest.mark.parametrize("body", [
    "return redis.call.__class__",
    "return cjson.encode.__globals__",
    "return python.eval('1')",
    "return getfenv(0)",
    "return debug.getinfo(1)",
    "return newproxy(true)",
    "return collectgarbage('count')",
    "return load('return 1')",
    "rawset(_G, 'leak', 1)",
    "rawset(string, 'leak', 1)",
    "setmetatable(_G, {})",
    "getmetatable('').__index = {}",
    "return module('x')",
])
def test_the_sandbox_holds(engine, body):
    reply = run(engine, body)
    assert isinstance(reply, str) and reply.startswith("ERR user_script:1: ")


def test_a_script_leaves_nothing_for_the_next(engine):
    run(engine, "pcall(function() x = 1 end) pcall(rawset, _G, 'y', 1) "
                "pcall(function() string.upper = nil end)")
    assert run(engine, "return {type(rawget(_G, 'x')), type(rawget(_G, 'y')), "
                       "string.upper('a'), ('b'):upper()}") == [b"nil", b"nil", b"A", b"B"]


def test_keys_and_argv_are_the_runs(engine):
    assert run(engine, "return {KEYS[1], ARGV[1]}", [b"k1"], [b"a1"]) == [b"k1", b"a1"]
    assert run(engine, "return {#KEYS, #ARGV}") == [0, 0]


def test_a_python_failure_in_a_call_is_an_error_reply(engine):
    def broken(argv):
        raise ValueError("unexpected")
    assert run(engine, "return redis.pcall('get', 'k')", call=broken).startswith(
        "ERR internal error")
    assert run(engine, "return redis.call('get', 'k')", call=broken).startswith(
        "ERR internal error")


def test_a_reply_the_script_cannot_hold_is_an_error(engine):
    assert run(engine, "return redis.call('x')", call=lambda argv: object()).startswith("ERR ")


def test_a_table_holding_itself_is_an_error_reply(engine):
    assert run(engine, "local t = {} t[1] = t return t") == "ERR reached lua stack limit"


def test_compile_errors_raise(engine):
    with pytest.raises(RespError, match=r"^ERR Error compiling script \(new function\): "
                                        r"user_script:1: "):
        engine.compile(b"return (")


def test_redis_log_reaches_the_node():
    lines = []
    e = LuaEngine(log=lambda level, text: lines.append((level, text)))
    run(e, "redis.log(redis.LOG_WARNING, 'a', 1, true)")
    assert lines == [(3, "a 1 true")]
