"""Redis's Lua libraries that lupa's Lua 5.1 lacks, written in Python: ``bit`` (LuaBitOp),
``struct`` (Roberto Ierusalimschy's), ``cmsgpack`` (lua-cmsgpack) and the decoding half
of ``cjson`` (its encoder is Lua, in `zan.scripting.engine`, so that it walks a table in
Lua's own order).

Each function takes and returns what lupa hands across (Lua strings as bytes, numbers as
int or float, tables as lupa tables) and raises `LibError` with the text the Lua library
would raise; the engine's Lua wrappers turn that into a Lua error.  Pure: no Twisted.

Differences from Redis's C libraries: ``struct`` knows the formats ``< > ! = b B h H i I
(with a size) l L T f d s c x`` (no alignment); ``cmsgpack`` has ``pack`` and ``unpack``
(not ``unpack_one``/``unpack_limit``); ``cjson.decode`` reports errors with Python's
positions, and has none of cjson's configuration functions.
"""

from __future__ import annotations

import json
import math
import re
import struct as _struct
from typing import Any, Callable, Iterator

import msgpack

__all__ = ["LibError", "BIT", "STRUCT", "cmsgpack_pack", "cmsgpack_unpack", "cjson_encode",
           "cjson_decode"]


class LibError(Exception):
    """A library's error, raised in Lua with this text."""


# -- bit (LuaBitOp 1.0.2) ------------------------------------------------------------------

def _tobit(x) -> int:
    """LuaBitOp's normalisation: the number rounded to an integer, modulo 2**32, signed."""
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return 0
        x = round(x)
    elif not isinstance(x, int) or isinstance(x, bool):
        raise LibError("bad argument #1 (number expected)")
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def _fold(op: Callable[[int, int], int]) -> Callable[..., int]:
    def f(x, *rest):
        acc = _tobit(x)
        for y in rest:
            acc = _tobit(op(acc, _tobit(y)))
        return acc
    return f


def _tohex(x, n=8) -> bytes:
    x = _tobit(x) & 0xFFFFFFFF
    n = _tobit(n)
    upper = n < 0
    n = min(abs(n), 8) or 8
    text = "%0*x" % (n, x & ((1 << (4 * n)) - 1))
    return (text.upper() if upper else text).encode()


def _shift(x, n) -> tuple[int, int]:
    return _tobit(x) & 0xFFFFFFFF, _tobit(n) & 31


def _rol(x, n) -> int:
    x, n = _shift(x, n)
    return _tobit((x << n) | (x >> (32 - n)))


def _ror(x, n) -> int:
    x, n = _shift(x, n)
    return _tobit((x >> n) | (x << (32 - n)))


BIT: dict[str, Callable[..., Any]] = {
    "tobit": _tobit,
    "tohex": _tohex,
    "bnot": lambda x: _tobit(~_tobit(x)),
    "band": _fold(lambda a, b: a & b),
    "bor": _fold(lambda a, b: a | b),
    "bxor": _fold(lambda a, b: a ^ b),
    "lshift": lambda x, n: _tobit(_shift(x, n)[0] << _shift(x, n)[1]),
    "rshift": lambda x, n: _tobit(_shift(x, n)[0] >> _shift(x, n)[1]),
    "arshift": lambda x, n: _tobit(_tobit(x) >> _shift(x, n)[1]),
    "rol": _rol,
    "ror": _ror,
    "bswap": lambda x: _tobit(int.from_bytes((_tobit(x) & 0xFFFFFFFF).to_bytes(4, "big"),
                                             "little")),
}


# -- struct ----------------------------------------------------------------------------

_FIXED = {"b": ("b", 1), "B": ("B", 1), "h": ("h", 2), "H": ("H", 2), "l": ("q", 8),
          "L": ("Q", 8), "T": ("Q", 8), "f": ("f", 4), "d": ("d", 8)}


def _format(fmt: bytes):
    """(code, size) of each item of a struct format, with the byte order in force."""
    order = "<"
    text = fmt.decode("latin-1")
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        digits = ""
        while i < len(text) and text[i].isdigit():
            digits += text[i]
            i += 1
        if c in " !":
            continue
        if c in "<>=":
            order = {"<": "<", ">": ">", "=": "<"}[c]
        elif c in _FIXED:
            yield order, c, _FIXED[c][1]
        elif c in "iI":
            size = int(digits) if digits else 4
            if not 1 <= size <= 8:
                raise LibError(f"integral size {size} is larger than limit of 8")
            yield order, c, size
        elif c == "c":
            yield order, c, int(digits) if digits else 1
        elif c in "sx":
            yield order, c, 0 if c == "s" else 1
        else:
            raise LibError(f"invalid format option '{c}'")


def _number(v) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LibError("bad argument (number expected)")
    return v


def _struct_pack(fmt: bytes, *values) -> bytes:
    out = bytearray()
    values = list(values)

    def take():
        if not values:
            raise LibError("bad argument to 'pack' (no value)")
        return values.pop(0)
    for order, c, size in _format(fmt):
        if c == "x":
            out += b"\0"
        elif c in _FIXED:
            code = _FIXED[c][0]
            v = _number(take())
            if code not in "fd":
                v = int(v) & ((1 << (8 * size)) - 1)
                code = code.upper()
            out += _struct.pack(order + code, v)
        elif c in "iI":
            v = int(_number(take())) & ((1 << (8 * size)) - 1)
            out += v.to_bytes(size, "little" if order == "<" else "big")
        elif c == "s":
            out += _string(take()) + b"\0"
        else:  # c
            s = _string(take())
            n = size or len(s)
            if len(s) < n:
                raise LibError("bad argument to 'pack' (string too short)")
            out += s[:n]
    return bytes(out)


def _string(v) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (b"%.14g" % v)
    raise LibError("bad argument (string expected)")


def _struct_unpack(fmt: bytes, data: bytes, init=1) -> tuple:
    data = _string(data)
    pos = int(_number(init)) - 1
    out: list[Any] = []

    def need(n):
        if pos + n > len(data):
            raise LibError("bad argument #2 to 'unpack' (data string too short)")
    for order, c, size in _format(fmt):
        if c == "x":
            pos += 1
        elif c in _FIXED:
            need(size)
            out.append(_struct.unpack_from(order + _FIXED[c][0], data, pos)[0])
            pos += size
        elif c in "iI":
            need(size)
            out.append(int.from_bytes(data[pos:pos + size], "little" if order == "<" else "big",
                                      signed=c == "i"))
            pos += size
        elif c == "s":
            end = data.find(b"\0", pos)
            if end < 0:
                raise LibError("unfinished string in data")
            out.append(data[pos:end])
            pos = end + 1
        else:  # c
            n = size
            if n == 0:
                if not out or not isinstance(out[-1], (int, float)):
                    raise LibError("format 'c0' has no previous length")
                n = int(out.pop())
            need(n)
            out.append(data[pos:pos + n])
            pos += n
    out.append(pos + 1)
    return tuple(_lua_number(v) for v in out)


def _struct_size(fmt: bytes) -> int:
    total = 0
    for _, c, size in _format(fmt):
        if c == "s":
            raise LibError("options 's' has no fixed size")
        total += size
    return total


STRUCT = {"pack": _struct_pack, "unpack": _struct_unpack, "size": _struct_size}


def _lua_number(v):
    """A Python int that a Lua 5.1 number holds as it is (lupa refuses larger ones)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 1 << 53:
        return float(v)
    return v


# -- cmsgpack (lua-cmsgpack 0.4) ------------------------------------------------------------

_MAX_NESTING = 16


def _mp_int(n: int) -> bytes:
    if n >= 0:
        if n <= 0x7F:
            return bytes((n,))
        for code, fmt, top in ((0xCC, ">B", 0xFF), (0xCD, ">H", 0xFFFF),
                               (0xCE, ">I", 0xFFFFFFFF)):
            if n <= top:
                return bytes((code,)) + _struct.pack(fmt, n)
        return b"\xcf" + _struct.pack(">Q", n & 0xFFFFFFFFFFFFFFFF)
    if n >= -32:
        return _struct.pack(">b", n)
    for code, fmt, low in ((0xD0, ">b", -128), (0xD1, ">h", -32768), (0xD2, ">i", -(1 << 31))):
        if n >= low:
            return bytes((code,)) + _struct.pack(fmt, n)
    return b"\xd3" + _struct.pack(">q", max(n, -(1 << 63)))


def _mp_bytes(s: bytes) -> bytes:
    n = len(s)
    if n < 32:
        return bytes((0xA0 | n,)) + s
    if n <= 0xFF:
        return b"\xd9" + bytes((n,)) + s
    if n <= 0xFFFF:
        return b"\xda" + _struct.pack(">H", n) + s
    return b"\xdb" + _struct.pack(">I", n) + s


def _mp_header(n: int, small: int, b16: int) -> bytes:
    if n <= 15:
        return bytes((small | n,))
    if n <= 0xFFFF:
        return bytes((b16,)) + _struct.pack(">H", n)
    return bytes((b16 + 1,)) + _struct.pack(">I", n)


def _mp_number(v) -> bytes:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer()
                              and -(1 << 63) <= v < (1 << 64)):
        return _mp_int(int(v))
    f32 = _struct.unpack(">f", _struct.pack(">f", v))[0] if abs(v) < 3.5e38 or \
        math.isinf(v) or math.isnan(v) else None
    if f32 is not None and (f32 == v or (math.isnan(v) and math.isnan(f32))):
        return b"\xca" + _struct.pack(">f", v)
    return b"\xcb" + _struct.pack(">d", v)


def _mp_encode(v, lua_type: Callable[[Any], str | None], depth: int) -> bytes:
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, bytes):
        return _mp_bytes(v)
    if isinstance(v, (int, float)):
        return _mp_number(v)
    if lua_type(v) != "table" or depth >= _MAX_NESTING:
        return b"\xc0"
    items = list(v.items())
    keys = [k for k, _ in items]
    if all(isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0
           and float(k).is_integer() for k in keys) and max(keys, default=0) == len(keys):
        n = len(keys)
        return _mp_header(n, 0x90, 0xDC) + b"".join(
            _mp_encode(v[i], lua_type, depth + 1) for i in range(1, n + 1))
    return _mp_header(len(items), 0x80, 0xDE) + b"".join(
        _mp_encode(k, lua_type, depth + 1) + _mp_encode(x, lua_type, depth + 1)
        for k, x in items)


def cmsgpack_pack(values: tuple, lua_type: Callable[[Any], str | None]) -> bytes:
    """cmsgpack.pack(...): each value's MessagePack, concatenated."""
    if not values:
        raise LibError("bad argument #0 to 'pack' (MessagePack pack needs input.)")
    return b"".join(_mp_encode(v, lua_type, 0) for v in values)


def cmsgpack_unpack(data, to_lua: Callable[[Any], Any]) -> tuple:
    """cmsgpack.unpack(s): every object in `s`, as Lua values (`to_lua`)."""
    data = _string(data)
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, use_list=True,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    out = []
    try:
        for obj in unpacker:
            out.append(to_lua(obj))
    except (msgpack.ExtraData, ValueError, msgpack.FormatError, msgpack.StackError):
        raise LibError("Bad data format in input.") from None
    if unpacker.tell() != len(data):
        raise LibError("Missing bytes in input.")
    return tuple(out)


# -- cjson ----------------------------------------------------------------------------------

_JSON_ESCAPES = {i: b"\\u%04x" % i for i in range(32)}
_JSON_ESCAPES.update({ord('"'): b'\\"', ord("\\"): b"\\\\", ord("/"): b"\\/",
                      8: b"\\b", 12: b"\\f", 10: b"\\n", 13: b"\\r", 9: b"\\t",
                      127: b"\\u007f"})
_JSON_SPECIAL = re.compile(rb'[\x00-\x1f"\\/\x7f]')
_MAX_JSON_DEPTH = 1000


def _json_string(s: bytes) -> bytes:
    return b'"' + _JSON_SPECIAL.sub(lambda m: _JSON_ESCAPES[m.group()[0]], s) + b'"'


def _json_number(v) -> bytes:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        raise LibError("Cannot serialise number: must not be NaN or Inf")
    return b"%.14g" % v


def cjson_encode(value, lua_type: Callable[[Any], str | None]) -> bytes:
    """cjson.encode: tables walked in Lua's order (as lua-cjson does); a table whose keys
    are 1..n (not too sparse) is an array, any other (the empty one too) an object.
    Iterative, so that nesting is bounded by cjson's limit, not Python's stack."""
    out: list[bytes] = []
    # Each frame: the (text before, value) pairs of one container still to write, and
    # the text that closes it.
    stack: list[tuple[Iterator, bytes]] = [(iter(((b"", value),)), b"")]
    while stack:
        pairs, closer = stack[-1]
        item = next(pairs, None)
        if item is None:
            out.append(closer)
            stack.pop()
            continue
        before, v = item
        out.append(before)
        if isinstance(v, bytes):
            out.append(_json_string(v))
        elif v is True or v is False:
            out.append(b"true" if v else b"false")
        elif isinstance(v, (int, float)):
            out.append(_json_number(v))
        elif v is None:
            out.append(b"null")
        else:
            kind = lua_type(v)
            if kind == "userdata":          # cjson.null
                out.append(b"null")
            elif kind == "table":
                if len(stack) > _MAX_JSON_DEPTH:
                    raise LibError(f"Cannot serialise, excessive nesting ({len(stack)})")
                stack.append(_json_container(v, lua_type))
            else:
                raise LibError(f"Cannot serialise {kind or 'function'}: type not supported")
    return b"".join(out)


def _json_container(t, lua_type) -> tuple[Iterator, bytes]:
    items = list(t.items())
    length = _array_length(items)
    if length > 0:
        return (((b"[" if i == 1 else b",", t[i]) for i in range(1, length + 1)), b"]")
    if not items:
        return iter(()), b"{}"
    pairs = (((b"{" if n == 0 else b",") + _json_key(k, lua_type) + b":", x)
             for n, (k, x) in enumerate(items))
    return pairs, b"}"


def _json_key(k, lua_type) -> bytes:
    if isinstance(k, bytes):
        return _json_string(k)
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        return b'"' + _json_number(k) + b'"'
    kind = "boolean" if isinstance(k, bool) else (lua_type(k) or "function")
    raise LibError(f"Cannot serialise {kind}: table key must be a number or string")


def _array_length(items) -> int:
    """lua-cjson's lua_array_length: n for keys 1..n, -1 for any other key."""
    top = 0
    for k, _ in items:
        if isinstance(k, (int, float)) and not isinstance(k, bool) and k >= 1 \
                and float(k).is_integer():
            top = max(top, int(k))
        else:
            return -1
    if top > 10 and top > len(items) * 2:
        raise LibError("Cannot serialise table: excessively sparse array")
    return top


def cjson_decode(data, null, to_table: Callable[[Any], Any]):
    """JSON text -> Lua values: objects and arrays as tables, null as `null`."""
    text = _string(data).decode("utf-8", "surrogateescape")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise LibError(f"Expected value but found invalid token at character {e.pos + 1}") \
            from None
    except RecursionError:
        raise LibError("Found too many nested data structures") from None

    def lua(v):
        if v is None:
            return null
        if isinstance(v, str):
            try:
                return v.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return v.encode("utf-8", "surrogatepass")
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return _lua_number(v) if abs(v) < 1 << 53 else float(v)
        if isinstance(v, float):
            return v
        if isinstance(v, list):
            return to_table([lua(x) for x in v])
        return to_table({lua(k): lua(x) for k, x in v.items()})
    return lua(value)
