"""The Lua side of EVAL: a sandboxed Lua 5.1 runtime (lupa's ``lupa.lua51``) and the
conversions between Lua values and replies, as Redis 7.0 has them.

A `LuaEngine` compiles a script body into a function and runs it with KEYS and ARGV;
each ``redis.call``/``redis.pcall`` goes to the `call` given for that run, which takes
the argv (bytes) and returns a reply in `zan.resp.types`' model, or a `ZanError`
(returned or raised).  Nothing here knows the node: no reactor, no socket, no disk.

The sandbox is Redis's: the base library without ``dofile loadfile load loadstring
require module package os io debug print``; ``string table math coroutine`` and Redis's
``cjson cmsgpack bit struct`` and ``redis``; the global table is read-only (assigning a
global answers ``Attempt to modify a readonly table``; reading an undefined one
``Script attempted to access nonexistent global variable '<name>'``), and so is each
library table.  A Python callable reaches Lua only inside a Lua function, and no Python
attribute is reachable from Lua.

Conversions (Redis's "Conversion between Lua and Redis data types"): a reply becomes,
in Lua, an integer → number, bulk → string, null bulk or null array → false, array →
table (nested), status → ``{ok=...}``, error → ``{err=...}`` (raised by redis.call,
returned by redis.pcall).  A value a script returns becomes: number → integer
(truncated), string → bulk, true → 1, false and nil → null bulk, a table with ``err`` →
error, with ``ok`` → status, any other table → array up to its first nil.

Errors carry Redis's texts: ``ERR Error compiling script (new function):
user_script:1: ...``, ``ERR user_script:1: <msg> script: <sha>, on @user_script:1.``,
and a command's error raised by redis.call with `` script: <sha>, on
@user_script:<line>.`` appended.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import lupa.lua51 as lua51

from zan.errors import RespError, ZanError
from zan.resp.types import NULL_ARRAY, SimpleString
from zan.scripting import libs

__all__ = ["LuaEngine", "ScriptReply", "sha1hex", "to_reply"]

CallFn = Callable[[list[bytes]], Any]


def sha1hex(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()


class ScriptReply(RespError):
    """An error reply a script produced, sent exactly as written (``{err='x'}`` answers
    ``-x``, with no ``ERR`` added)."""

    def resp_message(self) -> str:
        return self.message


class _CallError(Exception):
    """redis.call's error, raised through Lua: the command's error text (bytes)."""


def _error_info(err) -> tuple[bytes, bytes] | None:
    """What a Python callable raised into Lua: (b"call", redis.call's error text) or
    (b"lib", a library's message); None for a Lua value."""
    if isinstance(err, _CallError):
        return b"call", err.args[0]
    if isinstance(err, Exception):
        return b"lib", str(err).encode("utf-8", "surrogateescape")
    return None


def _error_bytes(error: ZanError) -> bytes:
    return error.resp_message().encode("utf-8", "surrogateescape")


_PRELUDE = r"""
local py = ...
local G = _G
local dbg = debug
local env = {}

local protected = setmetatable({}, {__mode = 'k'})
local function refuse() error('Attempt to modify a readonly table', 3) end
local function readonly(t)
  local proxy = setmetatable({}, {
    __index = t,
    __newindex = function() error('Attempt to modify a readonly table', 2) end,
    __metatable = false,
  })
  protected[proxy] = true
  return proxy
end

for _, name in ipairs({'assert', 'error', 'ipairs', 'next', 'pairs', 'rawequal',
    'rawget', 'select', 'setmetatable', 'getmetatable', 'tonumber', 'tostring',
    'type', 'unpack', 'gcinfo', '_VERSION'}) do
  env[name] = G[name]
end

-- The Python callables below (redis.call, the libraries) are C functions to Lua: a
-- call in a script's tail position ("return redis.call(...)") keeps the script's frame,
-- so an error reports its line.  What they raise reaches Lua as the Python exception;
-- `lua_error` makes it Redis's error value: redis.call's a table {err=...}, a
-- library's its message, prefixed with the script's position when the script called
-- it (as luaL_error does).  `level`: of the function that raised, from lua_error.
local function lua_error(err, level)
  if type(err) ~= 'userdata' then return err end
  local kind, text = py.error_info(err)
  if kind == 'call' then return {err = text} end
  if kind ~= 'lib' then return err end
  local caller = dbg.getinfo(level + 1, 'Sl')
  if caller and caller.source == '@user_script' then
    return 'user_script:' .. caller.currentline .. ': ' .. text
  end
  return text
end
-- From a handler h(err): level 1 is lua_error, 2 is h, 3 the function that raised.
local function translated(err) return lua_error(err, 3) end

-- Redis's pcall: an error table with an err field is caught as that string.
local function caught(ok, ...)
  if ok then return ok, ... end
  local err = ...
  if type(err) == 'table' and type(err.err) == 'string' then err = err.err end
  return ok, err
end
env.pcall = function(f, ...)
  if type(f) ~= 'function' and type(f) ~= 'userdata' then return G.pcall(f, ...) end
  local n, args = select('#', ...), {...}
  return caught(G.xpcall(function() return f(unpack(args, 1, n)) end, translated))
end
env.xpcall = function(f, h)
  return G.xpcall(f, function(err) return h(lua_error(err, 3)) end)
end
env.rawset = function(t, k, v)
  if protected[t] then refuse() end
  return G.rawset(t, k, v)
end
local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end
env.string = readonly(copy(string))
-- ("x"):rep(2) reads the read-only copy; the strings' metatable is out of reach.
local string_mt = getmetatable('')
string_mt.__index = env.string
string_mt.__metatable = false
env.table = readonly(copy(table))
env.math = readonly(copy(math))
env.coroutine = readonly(copy(coroutine))

-- redis
local redis = {}
-- Python callables, not Lua functions: a call in a script's tail position ("return
-- redis.call(...)") then keeps the script's frame, whose line an error reports.
redis.call = py.call
redis.pcall = py.pcall
redis.error_reply = function(s)
  if type(s) ~= 'string' then error('wrong number or type of arguments', 2) end
  if s:sub(1, 1) ~= '-' then s = '-' .. s end
  local space = s:find(' ', 1, true)
  local code, msg
  if space then
    code, msg = s:sub(2, space - 1), s:sub(space + 1)
  else
    code, msg = 'ERR', s:sub(2)
  end
  msg = msg:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. msg}
end
redis.status_reply = function(s)
  if type(s) ~= 'string' then error('wrong number or type of arguments', 2) end
  return {ok = s}
end
redis.sha1hex = function(...)
  if select('#', ...) ~= 1 then error('wrong number of arguments', 2) end
  local s = ...
  return py.sha1hex(tostring(s))
end
redis.log = function(level, ...)
  if select('#', ...) < 1 then error('redis.log() requires two arguments or more.', 2) end
  if type(level) ~= 'number' then error('First argument must be a number (log level).', 2) end
  if level < 0 or level > 3 then error('Invalid debug level.', 2) end
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  py.log(level, table.concat(parts, ' '))
end
redis.setresp = function(...)
  if select('#', ...) ~= 1 then error('redis.setresp() requires one argument.', 2) end
  local v = ...
  if v == 3 then error('RESP3 is not supported by scripts yet', 2) end
  if v ~= 2 then error('RESP version must be 2 or 3.', 2) end
end
redis.set_repl = function(...)
  if select('#', ...) ~= 1 then error('redis.set_repl() requires one argument.', 2) end
  local v = ...
  if type(v) ~= 'number' or v < 0 or v > 3 then
    error('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.', 2)
  end
end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.REDIS_VERSION = py.version
redis.REDIS_VERSION_NUM = py.version_num
env.redis = readonly(redis)

-- bit, struct, cmsgpack, cjson: Python (zan.scripting.libs)
local function library(fs)
  local t = {}
  for name, f in pairs(fs) do t[name] = f end
  return readonly(t)
end
env.bit = library(py.bit)
env.struct = library(py.struct)
env.cmsgpack = library(py.cmsgpack)
local cjson = py.cjson
cjson.null = newproxy(false)
env.cjson = readonly(cjson)

-- The global table scripts see: read-only, and reading an undefined name is an error.
local globals = setmetatable({}, {
  __index = function(_, name)
    local v = env[name]
    if v == nil and name ~= 'loadstring' then
      error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end
    return v
  end,
  __newindex = function() error('Attempt to modify a readonly table', 2) end,
  __metatable = false,
})
env._G = globals
protected[globals] = true

-- A script error as Redis reports it: {err=..., line=...} of the script's innermost line.
local function handler(err)
  err = lua_error(err, 3)
  local line
  for level = 2, 50 do
    local info = dbg.getinfo(level, 'Sl')
    if not info then break end
    if info.source == '@user_script' then line = info.currentline break end
  end
  local msg
  if type(err) == 'table' then
    msg = err.err
    if type(msg) ~= 'string' then msg = 'ERR unknown error' end
  else
    msg = 'ERR ' .. tostring(err)
  end
  return {err = msg, line = line}
end

local function compile(body)
  local f, msg = G.loadstring(body, '@user_script')
  if not f then return nil, msg end
  setfenv(f, globals)
  return f
end

local function run(f, keys, argv)
  env.KEYS, env.ARGV = keys, argv
  return xpcall(f, handler)
end

return compile, run
"""


class LuaEngine:
    """One Lua runtime, for every script of a node (scripts run one at a time)."""

    def __init__(self, *, version: str = "7.0.0",
                 log: Callable[[int, str], None] | None = None):
        self._lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=True,
                                     register_eval=False, register_builtins=False,
                                     attribute_filter=_no_attributes)
        self._table = self._lua.table_from
        self._call: CallFn | None = None
        self._log = log or (lambda level, text: None)
        major, minor, patch = (int(x) for x in version.split("."))
        lua_type = lua51.lua_type
        self._cjson = self._table({
            b"encode": _lib(lambda v: libs.cjson_encode(v, lua_type)),
            b"decode": _lib(lambda s: libs.cjson_decode(s, self._cjson[b"null"], self._table)),
        })
        bridge = self._table({
            b"call": self._raising_call,
            b"pcall": self._protected_call,
            b"error_info": _error_info,
            b"sha1hex": lambda s: sha1hex(s).encode(),
            b"log": lambda level, text: self._log(int(level), text.decode("utf-8", "replace")),
            b"version": version.encode(),
            b"version_num": (major << 16) | (minor << 8) | patch,
            b"bit": self._table({k.encode(): _lib(f) for k, f in libs.BIT.items()}),
            b"struct": self._table({k.encode(): _lib(f) for k, f in libs.STRUCT.items()}),
            b"cmsgpack": self._table({
                b"pack": _lib(lambda *values: libs.cmsgpack_pack(values, lua_type)),
                b"unpack": _lib(lambda s: libs.cmsgpack_unpack(s, self._from_python)),
            }),
            b"cjson": self._cjson,
        })
        self._compile, self._run = self._lua.execute(_PRELUDE, bridge)

    # -- compiling and running -------------------------------------------------------

    def compile(self, body: bytes):
        """The script's function, or RespError with Redis's compile error."""
        result = self._compile(body)
        f, msg = result if isinstance(result, tuple) else (result, None)
        if f is None:
            text = msg.decode("utf-8", "surrogateescape") if isinstance(msg, bytes) else str(msg)
            raise RespError(f"ERR Error compiling script (new function): {text}")
        return f

    def run(self, function, sha: str, keys: list[bytes], argv: list[bytes], call: CallFn) -> Any:
        """Run a compiled script; its reply (errors as RespError values)."""
        self._call = call
        try:
            result = self._run(function, self._table(keys), self._table(argv))
        except Exception as e:   # a failure of the runtime itself: an error reply
            return RespError(f"ERR Error running script: {e}")
        finally:
            self._call = None
        ok, value = (result[0], result[1] if len(result) > 1 else None) \
            if isinstance(result, tuple) else (result, None)
        if ok:
            try:
                return to_reply(value)
            except RespError as e:
                return e
            except Exception as e:
                return RespError(f"ERR Error running script: {e}")
        msg = _text(value[b"err"]) if lua51.lua_type(value) == "table" else "ERR unknown error"
        line = value[b"line"] if lua51.lua_type(value) == "table" else None
        if line is not None:
            msg += f" script: {sha}, on @user_script:{int(line)}."
        return ScriptReply(msg)

    # -- redis.call ------------------------------------------------------------------

    def _raising_call(self, *args):
        reply = self._redis_call(args)
        if isinstance(reply, ZanError):
            raise _CallError(_error_bytes(reply))
        return self._from_reply(reply)

    def _protected_call(self, *args):
        return self._from_reply(self._redis_call(args))

    def _redis_call(self, args) -> Any:
        """The reply to one redis.call/pcall: a value, or a ZanError."""
        try:
            if not args:
                raise RespError("ERR Please specify at least one argument for this redis lib call")
            argv = []
            for a in args:
                if isinstance(a, bytes):
                    argv.append(a)
                elif isinstance(a, (int, float)) and not isinstance(a, bool):
                    argv.append(_number_text(a))
                else:
                    raise RespError("ERR Lua redis lib command arguments must be strings or integers")
            return self._call(argv)
        except ZanError as e:
            return e
        except Exception as e:   # never let a failure escape into Lua as a Python object
            return RespError(f"ERR internal error: {e}")

    def _from_reply(self, reply):
        if isinstance(reply, SimpleString):
            return self._table({b"ok": bytes(reply)})
        if isinstance(reply, (bytes, bytearray, memoryview)):
            return bytes(reply)
        if isinstance(reply, bool):
            return int(reply)
        if isinstance(reply, int):
            return libs._lua_number(reply)
        if reply is None or reply is NULL_ARRAY:
            return False
        if isinstance(reply, (list, tuple)):
            return self._table([self._from_reply(r) for r in reply])
        if isinstance(reply, ZanError):
            return self._table({b"err": _error_bytes(reply)})
        if isinstance(reply, str):
            return reply.encode()
        raise RespError(f"ERR reply of type {type(reply).__name__} cannot reach a script")

    def _from_python(self, v):
        """A decoded MessagePack value as a Lua value."""
        if isinstance(v, list):
            return self._table([self._from_python(x) for x in v])
        if isinstance(v, dict):
            return self._table({self._from_python(k): self._from_python(x)
                                for k, x in v.items() if k is not None})
        return libs._lua_number(v)


# Nesting of a returned table beyond which the reply is an error (a table that holds
# itself would never end; Redis stops at Lua's stack limit, deeper than any client reads).
_MAX_DEPTH = 200


def to_reply(value, depth: int = 0) -> Any:
    """A value a script returns, as a reply."""
    kind = lua51.lua_type(value)
    if kind == "table":
        if depth >= _MAX_DEPTH:
            raise RespError("ERR reached lua stack limit")
        err = value[b"err"]
        if isinstance(err, bytes):
            return ScriptReply(_text(err))
        ok = value[b"ok"]
        if isinstance(ok, bytes):
            return SimpleString(ok.replace(b"\r", b" ").replace(b"\n", b" "))
        out = []
        i = 1
        while True:
            item = value[i]
            if item is None:
                return out
            out.append(to_reply(item, depth + 1))
            i += 1
    if value is True:
        return 1
    if value is False or value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, (int, float)):
        try:
            return int(value)
        except (OverflowError, ValueError):
            return -(1 << 63)
    return None


def _text(b) -> str:
    return b.decode("utf-8", "surrogateescape") if isinstance(b, bytes) else str(b)


def _number_text(n) -> bytes:
    """A number as Lua turns it into a string (``%.14g``), as redis.call sends it."""
    if isinstance(n, int) and abs(n) < 10 ** 14:
        return b"%d" % n
    return b"%.14g" % n


def _lib(f):
    """A library function for Lua: any failure raised as the library's error."""
    def call(*args):
        try:
            return f(*args)
        except libs.LibError:
            raise
        except RecursionError:
            raise libs.LibError("too many nested data structures") from None
        except Exception as e:
            raise libs.LibError(f"internal error: {e}") from None
    return call


def _no_attributes(obj, name, is_setting):
    raise AttributeError("Python attributes are not reachable from scripts")

