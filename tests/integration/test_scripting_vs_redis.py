"""EVAL and friends on a standalone `twistd zan-node`, side by side with redis-server 7.0:
replies byte for byte for a corpus of scripts (conversions both ways, errors, the
sandbox, Redis's Lua libraries, the script cache), and redis-py's Script objects and
Lock, which run on Lua."""

from __future__ import annotations

import pytest
import redis as redis_py

from tests.support.harness import normalize
from tests.support.node import ZanNode
from tests.support.processes import RawClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node():
    n = ZanNode().start()
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture
def pair(node, redis_server):
    zan, red = RawClient(node.redis_port), redis_server.client()
    for c in (zan, red):
        c.call("FLUSHALL")
        c.call("SCRIPT", "FLUSH")
    try:
        yield zan, red
    finally:
        zan.close()
        red.close()


def E(body, *keys_then_args, numkeys=None):
    """An EVAL call; numkeys defaults to the number of words given as keys (all)."""
    n = len(keys_then_args) if numkeys is None else numkeys
    return ("EVAL", body, str(n), *keys_then_args)


CONVERSIONS = {
    "integer": E("return 42"),
    "float_truncated": E("return 3.99"),
    "negative_float": E("return -2.5"),
    "string": E("return 'hello'"),
    "true_is_one": E("return true"),
    "false_is_nil": E("return false"),
    "nil": E("return nil"),
    "nothing": E("local x = 1"),
    "array_stops_at_nil": E("return {1, 2, nil, 4}"),
    "nested": E("return {1, {2, {3, 'x'}}, 'y', {}}"),
    "status": E("return {ok='FINE'}"),
    "error_table": E("return {err='My Error'}"),
    "error_table_no_code": E("return {err='x'}"),
    "error_reply": E("return redis.error_reply('My Error')"),
    "error_reply_one_word": E("return redis.error_reply('x')"),
    "error_reply_dash": E("return redis.error_reply('-WRONG thing')"),
    "status_reply": E("return redis.status_reply('PONG')"),
    "keys_and_argv": E("return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], #KEYS, #ARGV}",
                       "k1", "k2", "a1", "a2", numkeys=2),
    "table_with_hash_part": E("return {1, 2, a=3}"),
    "boolean_in_array": E("return {1, true, false, 4}"),
    "numbers_as_args": E("redis.call('set', KEYS[1], 3.5) redis.call('set', KEYS[2], 7) "
                         "redis.call('set', KEYS[3], 1e20) "
                         "return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])", "a", "b", "c"),
    "reply_types_in_lua": E("redis.call('set', 'k', 'v') redis.call('rpush', 'l', 'a', 'b') "
                            "return {type(redis.call('get', 'k')), type(redis.call('get', 'nope')), "
                            "tostring(redis.call('get', 'nope')), type(redis.call('incr', 'n')), "
                            "type(redis.call('lrange', 'l', 0, -1)), "
                            "type(redis.call('set', 'k', 'w')), redis.call('set', 'k', 'w').ok, "
                            "type(redis.pcall('incr', 'k')), redis.pcall('incr', 'k').err}"),
    "nil_bulk_inside_array": E("redis.call('set', 'a', '1') return redis.call('mget', 'a', 'b', 'a')"),
    "pcall_error_returned": E("redis.call('set', 'k', 'v') return redis.pcall('incr', 'k')"),
    "integers_roundtrip": E("return redis.call('incrby', KEYS[1], ARGV[1])", "n", "-17", numkeys=1),
}

ERRORS = {
    "compile": E("return ("),
    "compile_line_3": E("local a = 1\nlocal b = 2\nreturn +"),
    "runtime": E("error('boom')"),
    "runtime_line_2": E("local x = 1\nerror('boom')"),
    "runtime_arith": E("return 1 + {}"),
    "error_table_raised": E("error({err='FOO bar'})"),
    "call_error": E("redis.call('set', 'k', 'v') return redis.call('incr', 'k')"),
    "call_error_line_3": E("redis.call('set', 'k', 'v')\n\nlocal x = redis.call('incr', 'k')"),
    "call_wrongtype": E("redis.call('set', 'k', 'v') return redis.call('lpush', 'k', 'x')"),
    "pcall_catches": E("redis.call('set', 'k', 'v') local r = redis.pcall('lpush', 'k', 'x') "
                       "return {r.err, type(r)}"),
    "lua_pcall_of_call": E("redis.call('set', 'k', 'v') "
                           "local ok, e = pcall(redis.call, 'incr', 'k') return {tostring(ok), e.err}"),
    "unknown_command": E("return redis.call('nosuch')"),
    "unknown_command_pcall": E("return redis.pcall('nosuch')"),
    "wrong_arity": E("return redis.call('get')"),
    "wrong_arity_pcall": E("return redis.pcall('get')"),
    "no_arguments": E("return redis.call()"),
    "bad_argument_type": E("return redis.call('get', {})"),
    "noscript_multi": E("return redis.call('multi')"),
    "noscript_eval": E("return redis.call('eval', 'return 1', 0)"),
    "noscript_watch": E("return redis.call('watch', 'k')"),
    "numkeys_too_many": ("EVAL", "return 1", "2", "a"),
    "numkeys_negative": ("EVAL", "return 1", "-1"),
    "numkeys_not_integer": ("EVAL", "return 1", "x"),
    "eval_arity": ("EVAL", "return 1"),
    "noscript": ("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"),
    "noscript_ro": ("EVALSHA_RO", "ffffffffffffffffffffffffffffffffffffffff", "0"),
    "eval_ro_refuses_writes": ("EVAL_RO", "return redis.call('set', 'k', 'v')", "0"),
    "eval_ro_reads": ("EVAL_RO", "return redis.call('get', 'k')", "0"),
    "shebang_no_writes": E("#!lua flags=no-writes\nreturn redis.call('set', 'a', 'b')"),
    "shebang_no_writes_reads": E("#!lua flags=no-writes\nreturn redis.call('exists', 'a')"),
    "shebang_plain": E("#!lua\nreturn 1"),
    "shebang_write_flag_eval_ro": ("EVAL_RO", "#!lua\nreturn 1", "0"),
    "shebang_no_writes_eval_ro": ("EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"),
    "shebang_two_flags": E("#!lua flags=no-writes,allow-oom\nreturn redis.call('get', 'x')"),
    "shebang_unknown_option": E("#!lua name=x\nreturn 1"),
    "shebang_engine_prefix": E("#!luax\nreturn 1"),
    "shebang_bad_flag": E("#!lua flags=bogus\nreturn 1"),
    "shebang_bad_engine": E("#!python\nreturn 1"),
    "error_in_nested_function": E("local function f()\n  error('deep')\nend\nf()"),
}

SANDBOX = {
    "write_global": E("x = 1"),
    "read_undefined_global": E("return y"),
    "os": E("return os.time()"),
    "io": E("return io"),
    "require": E("return require('x')"),
    "loadfile": E("return loadfile"),
    "dofile": E("return dofile"),
    "package": E("return package"),
    "modify_library": E("string.rep = nil"),
    "modify_redis": E("redis.call = nil"),
    "local_is_fine": E("local x = 5 return x"),
    "functions_and_closures": E("local function f(n) if n < 2 then return n end "
                                "return f(n-1) + f(n-2) end return f(15)"),
    "string_library": E("return {string.format('%05d|%s', 42, 'x'), string.rep('ab', 3), "
                        "('hello'):upper(), string.len('abc'), string.byte('A'), "
                        "string.sub('hello', 2, 3), (string.gsub('a-b-c', '-', '+'))}"),
    "table_library": E("local t = {3, 1, 2} table.sort(t) table.insert(t, 9) "
                       "return {table.concat(t, ','), #t, table.remove(t)}"),
    "math_library": E("return {math.floor(3.7), math.max(1, 5, 3), math.abs(-4), "
                      "math.fmod(7, 3), math.huge > 1}"),
    "tonumber_tostring": E("return {tonumber('12') + 1, tostring(12), tonumber('x') == nil}"),
    "version": E("return {redis.REDIS_VERSION ~= nil, type(redis.REDIS_VERSION_NUM)}"),
    "constants": E("return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, "
                   "redis.LOG_WARNING, redis.REPL_NONE, redis.REPL_AOF, redis.REPL_REPLICA, "
                   "redis.REPL_ALL}"),
    "log": E("redis.log(redis.LOG_WARNING, 'from a script') return 1"),
    "setresp_2": E("redis.setresp(2) return 1"),
    "set_repl": E("redis.set_repl(redis.REPL_ALL) return 1"),
    "replicate_commands": E("return redis.replicate_commands()"),
    "sha1hex": E("return {redis.sha1hex(''), redis.sha1hex('hello'), redis.sha1hex(ARGV[1])}",
                 "x" * 100, numkeys=0),
    "unpack_select": E("return {select('#', 1, 2, 3), unpack({4, 5})}"),
}

LIBRARIES = {
    "cjson_encode_array": E("return cjson.encode({1, 2, 'three', true, false})"),
    "cjson_encode_object": E("return cjson.encode({name='zan'})"),
    "cjson_encode_key_order": E("return cjson.encode({a=1, b=2, c=3, long_key='x', [5]='n'})"),
    "cmsgpack_key_order": E("return cmsgpack.pack({a=1, b=2, c=3, long_key='x'})"),
    "cjson_encode_nested": E("return cjson.encode({list={1, 2.5, {x='y'}}})"),
    "cjson_encode_escapes": E("return cjson.encode('a/b\"c\\\\d\\n\\t\\1')"),
    "cjson_encode_empty": E("return cjson.encode({})"),
    "cjson_encode_numbers": E("return cjson.encode({0.1, 1e300, -7, 123456789012345})"),
    "cjson_encode_null": E("return cjson.encode({cjson.null, 1})"),
    "cjson_decode": E("local t = cjson.decode('{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"e\"}') "
                      "return {t.a[1], t.a[2], t.a[3].b, t.d}"),
    "cjson_roundtrip": E("return cjson.encode(cjson.decode(ARGV[1]))",
                         '[1,"two",[3,4],{"k":"v"},true,false,null]', numkeys=0),
    "cjson_decode_null": E("return tostring(cjson.decode('[null]')[1] == cjson.null)"),
    "cjson_decode_unicode": E("return cjson.decode('\"\\\\u00e9\\\\u4e2d\"')"),
    "cmsgpack_roundtrip": E("local t = cmsgpack.unpack(cmsgpack.pack({1, 2, 'three', {4, 5}})) "
                            "return {t[1], t[2], t[3], t[4][1], t[4][2]}"),
    "cmsgpack_pack_bytes": E("return cmsgpack.pack({1, 2, 3}, 'abc', 300, -5, -200, 70000, "
                             "4294967296, 1.5, 0.1, true, false, string.rep('x', 40), "
                             "string.rep('y', 300), {a=1})"),
    "cmsgpack_multi": E("return {cmsgpack.unpack(cmsgpack.pack(1, 'two', 3))}"),
    "cmsgpack_map": E("local t = cmsgpack.unpack(cmsgpack.pack({k='v', n=7})) "
                      "return {t.k, t.n}"),
    "cjson_encode_self_reference": E("local t = {} t[1] = t return cjson.encode(t)"),
    "cjson_encode_function": E("return cjson.encode({f = function() end})"),
    "cjson_encode_sparse": E("return cjson.encode({[1] = 1, [100] = 2})"),
    "cjson_encode_error_line_2": E("local t = {}\nlocal s = cjson.encode({t, math.huge})"),
    "cjson_error_in_pcall": E("return {pcall(cjson.encode, {math.huge})}"),
    "cjson_error_in_function_pcall": E("return {pcall(function() return cjson.encode(0/0) end)}"),
    "cmsgpack_self_reference": E("local t = {} t[1] = t return cmsgpack.pack(t)"),
    "cmsgpack_no_input": E("return cmsgpack.pack()"),
    "deep_recursion": E("local function f() return f() + 1 end return f()"),
    "bit": E("return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.bnot(0), "
             "bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.rol(1, 33), "
             "bit.ror(1, 1), bit.tobit(0xffffffff + 1), bit.tohex(255), bit.tohex(-1, -4), "
             "bit.bswap(0x12345678)}"),
    "struct": E("local s = struct.pack('>I2i4Bc3', 258, -7, 255, 'abc') "
                "return {s, struct.size('>I2i4B'), struct.unpack('>I2i4Bc3', s)}"),
    "struct_little": E("return {struct.unpack('<HhLd', struct.pack('<HhLd', 1, -1, 99, 2.5))}"),
    "struct_string": E("return {struct.unpack('s', struct.pack('s', 'zero'))}"),
}

COMMANDS = {
    "several_partitions_then_read_back": [
        E("for i, k in ipairs(KEYS) do redis.call('set', k, ARGV[i]) end "
          "return redis.call('mget', unpack(KEYS))", *[f"key{i}" for i in range(12)],
          *[f"v{i}" for i in range(12)], numkeys=12),
        ("MGET", *[f"key{i}" for i in range(12)]),
        ("DBSIZE",),
    ],
    "collections_across_partitions": [
        E("redis.call('sadd', 's1', 'a', 'b', 'c') redis.call('sadd', 's2', 'b', 'c', 'd') "
          "redis.call('hset', 'h', 'f', 'v', 'g', 'w') redis.call('zadd', 'z', 1, 'x', 2, 'y') "
          "redis.call('rpush', 'l', 1, 2, 3) "
          "return {redis.call('scard', 's1'), redis.call('hget', 'h', 'g'), "
          "redis.call('zrange', 'z', 0, -1, 'withscores'), redis.call('llen', 'l'), "
          "redis.call('exists', 's1', 's2', 'h', 'z', 'l', 'nope')}"),
        ("SCARD", "s2"), ("SISMEMBER", "s2", "d"), ("HGETALL", "h"), ("LRANGE", "l", "0", "-1"),
    ],
    "undeclared_keys": [
        E("redis.call('set', 'undeclared', 'yes') return redis.call('get', 'undeclared')"),
        ("GET", "undeclared"),
    ],
    "failure_keeps_earlier_writes": [
        E("redis.call('set', 'a', '1') redis.call('set', 'b', 'x') redis.call('incr', 'b') "
          "redis.call('set', 'c', '1')"),
        ("MGET", "a", "b", "c"),
    ],
    "expire_inside": [
        E("redis.call('set', 'k', 'v', 'EX', 100) return redis.call('ttl', 'k')"),
        ("TTL", "k"),
    ],
    "del_and_recreate": [
        ("RPUSH", "l", "old"),
        E("redis.call('del', 'l') redis.call('rpush', 'l', 'new') return redis.call('lrange', 'l', 0, -1)"),
        ("LRANGE", "l", "0", "-1"),
    ],
    "script_cache": [
        ("SCRIPT", "LOAD", "return ARGV[1]"),
        ("SCRIPT", "EXISTS", "b8e4e89e3e5fb0b5b7c14e9d1e5bb7e0b1b7e9e5",
         "f4d1f4d0d5d7e4b8d6e8e0c6fd6e4f44ac4a6c0f"),
        ("EVALSHA", "f4d1f4d0d5d7e4b8d6e8e0c6fd6e4f44ac4a6c0f", "0", "hi"),
        ("SCRIPT", "LOAD", "return ("),
        ("EVAL", "return 'cached by eval'", "0"),
        ("SCRIPT", "EXISTS", "1fe4e8ea0e3fb2a30e06c4e1ea9a4f2a5d9c0c0b"),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "FLUSH", "ASYNC"),
        ("SCRIPT", "FLUSH", "BOGUS"),
        ("SCRIPT", "KILL"),
        ("SCRIPT", "NOPE"),
        ("SCRIPT", "LOAD"),
        ("SCRIPT",),
    ],
    "inside_multi_exec": [
        ("SET", "a", "1"),
        ("MULTI",),
        ("INCR", "a"),
        ("EVAL", "redis.call('incr', KEYS[1]) redis.call('set', KEYS[2], 'x') "
                 "return redis.call('get', KEYS[1])", "2", "a", "b"),
        ("EVAL", "return redis.call('nosuch')", "0"),
        ("EVAL_RO", "return redis.call('del', 'a')", "0"),
        ("GET", "b"),
        ("EXEC",),
        ("MGET", "a", "b"),
    ],
    "evalsha_after_load": [
        ("SCRIPT", "LOAD", "return redis.call('incrby', KEYS[1], ARGV[1])"),
        ("EVALSHA", "{sha}", "1", "counter", "5"),
        ("EVALSHA", "{SHA}", "1", "counter", "5"),
        ("EVALSHA_RO", "{sha}", "1", "counter", "5"),
        ("GET", "counter"),
    ],
}


def same(zan, red, argv):
    mine, theirs = normalize(zan.call(*argv)), normalize(red.call(*argv))
    assert mine == theirs, (argv, mine, theirs)
    return mine


@pytest.mark.parametrize("name", sorted({**CONVERSIONS, **ERRORS, **SANDBOX, **LIBRARIES}))
def test_one_script(pair, name):
    argv = {**CONVERSIONS, **ERRORS, **SANDBOX, **LIBRARIES}[name]
    same(*pair, argv)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_sequence(pair, name):
    zan, red = pair
    sha = None
    for argv in COMMANDS[name]:
        argv = tuple(a.replace("{sha}", sha or "").replace("{SHA}", (sha or "").upper())
                     for a in argv)
        reply = same(zan, red, argv)
        if argv[:2] == ("SCRIPT", "LOAD") and isinstance(reply, bytes):
            sha = reply.decode()


def test_script_exists_and_sha_are_redis_s(pair):
    zan, red = pair
    body = "return 'x'"
    assert same(zan, red, ("SCRIPT", "LOAD", body)) == same(zan, red, ("SCRIPT", "LOAD", body))
    sha = zan.call("SCRIPT", "LOAD", body).decode()
    assert same(zan, red, ("SCRIPT", "EXISTS", sha, "0" * 40, sha.upper())) == [1, 0, 1]
    same(zan, red, ("SCRIPT", "FLUSH"))
    same(zan, red, ("SCRIPT", "EXISTS", sha))
    same(zan, red, ("EVALSHA", sha, "0"))


# -- redis-py ------------------------------------------------------------------------------

@pytest.fixture
def py_client(node):
    r = redis_py.Redis(port=node.redis_port)
    r.flushall()
    r.script_flush()
    try:
        yield r
    finally:
        r.close()


def test_redis_py_script_objects(py_client):
    r = py_client
    incr_by = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    assert incr_by(keys=["n"], args=[5]) == 5          # EVALSHA, NOSCRIPT, then EVAL
    assert incr_by(keys=["n"], args=[2]) == 7          # EVALSHA
    r.script_flush()
    assert incr_by(keys=["n"], args=[1]) == 8          # reloaded after the flush
    assert r.script_exists(incr_by.sha) == [True]
    pipe = r.pipeline()
    incr_by(keys=["n"], args=[10], client=pipe)
    pipe.get("n")
    assert pipe.execute() == [18, b"18"]
    ro = r.register_script("return redis.call('get', KEYS[1])")
    assert r.evalsha_ro(r.script_load(ro.script), 1, "n") == b"18"
    with pytest.raises(redis_py.ResponseError, match="Write commands are not allowed"):
        r.eval_ro("return redis.call('set', KEYS[1], 'x')", 1, "n")


def test_redis_py_lock(py_client):
    r = py_client
    lock = r.lock("resource", timeout=10)
    assert lock.acquire(blocking=False)
    other = r.lock("resource", timeout=10)
    assert not other.acquire(blocking=False)
    assert lock.locked() and lock.owned() and not other.owned()
    lock.extend(5)
    assert r.pttl("resource") > 10_000
    lock.reacquire()
    assert 9_000 < r.pttl("resource") <= 10_000
    lock.release()
    assert not lock.locked()
    assert other.acquire(blocking=False)
    r.set("resource", "somebody else's token")       # the lock expired and was taken
    with pytest.raises(redis_py.exceptions.LockNotOwnedError):
        other.release()
    assert r.get("resource") == b"somebody else's token"
    r.delete("resource")
    with r.lock("ctx", timeout=5, blocking_timeout=1):
        assert r.exists("ctx") == 1
    assert r.exists("ctx") == 0
