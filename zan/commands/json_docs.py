"""JSON documents: RedisJSON 2.x's JSON.* commands and ZanRedisDB's json.* (one family,
since command names are case-insensitive; ZanRedisDB adds json.keyexists and json.mkget).

A document is a key of its own type (TYPE answers ``ReJSON-RL``) whose meta record holds
its compact JSON text, so it has a TTL, is copied and renamed, and is replicated like
any value.  A command parses the text, works on the Python value and writes the text
back when it changed.  Paths and replies follow `zan.commands.jsonpath`: a JSONPath
(``$...``) answers for every match, a legacy path for the first one and fails when
nothing matches.
"""

from __future__ import annotations

from typing import Any, Callable

from zan.commands.jsonpath import (
    Path, dumps, dumps_pretty, is_number, loads, parse_path, type_name,
)
from zan.commands.table import DENYOOM, FAST, READONLY, WRITE, Route, command
from zan.commands.util import parse_int
from zan.errors import SYNTAX, RespError, wrong_arity
from zan.resp.types import OK, SimpleString
from zan.store.codec import T_JSON
from zan.store.keyspace import Meta, Txn, check_value, lookup_as, remove_key, store_meta

__all__: list[str] = []

NO_KEY = "ERR could not perform this operation on a key that doesn't exist"
ROOT_ONLY = "ERR new objects must be created at the root"
ROOT = parse_path(b".")
_JSON = dict(group="module", since="1.0.0")


def _expected(expected: str, value: Any) -> RespError:
    return RespError(f"WRONGTYPE wrong type of path value - expected {expected} but found "
                     f"{type_name(value)}")


def _missing(path: Path) -> RespError:
    return RespError(f"ERR Path '{path.canonical}' does not exist")


class _Doc:
    """A key's document, loaded: `holder[0]` is the value (a list, so the root can be
    replaced like any member)."""

    __slots__ = ("txn", "pk", "meta", "holder")

    def __init__(self, txn: Txn, pk: bytes):
        self.txn = txn
        self.pk = pk
        self.meta = lookup_as(txn, pk, T_JSON)
        self.holder = [loads(self.meta.payload)] if self.meta is not None else None

    @property
    def exists(self) -> bool:
        return self.meta is not None

    def require(self) -> "_Doc":
        if self.meta is None:
            raise RespError(NO_KEY)
        return self

    def values(self, path: Path) -> list[Any]:
        return [c[k] for c, k in path.locate(self.holder)]

    def save(self) -> None:
        text = check_value(dumps(self.holder[0]).encode())
        expire_at = self.meta.expire_at if self.meta is not None else 0
        self.meta = Meta(T_JSON, expire_at, 0, text)
        store_meta(self.txn, self.pk, self.meta)


def _write_doc(txn: Txn, pk: bytes, value: Any, expire_at: int = 0) -> None:
    store_meta(txn, pk, Meta(T_JSON, expire_at, 0, check_value(dumps(value).encode())))


def _update(doc: _Doc, path: Path, apply: Callable[[Any, Any, Any], Any], kind: str,
            legacy_reply: Callable[[Any], Any] = lambda r: r):
    """Run `apply(container, key, value)` on every match, which returns its reply for
    that match, or `_SKIP` when the value is not of the `kind` the command needs.
    JSONPath: the replies, None for skipped matches.  Legacy: the last applied
    match's reply; an error when none applied."""
    replies = []
    applied = []
    wrong = None
    for container, key in path.locate(doc.holder):
        try:
            value = container[key]
        except (IndexError, KeyError):
            # An earlier match's change removed it (ARRPOP of $..*)
            replies.append(None)
            continue
        reply = apply(container, key, value)
        if reply is _SKIP:
            replies.append(None)
            wrong = container[key] if wrong is None else wrong
        else:
            replies.append(reply)
            applied.append(reply)
    if applied:
        doc.save()
    if not path.legacy:
        return replies
    if applied:
        return legacy_reply(applied[-1])
    if wrong is not None:
        raise _expected(kind, wrong)
    raise _missing(path)


class _Skip:
    pass


_SKIP = _Skip()


def _read(doc: _Doc, path: Path, read: Callable[[Any], Any], kind: str):
    """Like `_update` for a read: `read(value)` answers for one match (or `_SKIP`)."""
    replies = [read(v) for v in doc.values(path)]
    if not path.legacy:
        return [None if r is _SKIP else r for r in replies]
    if not replies:
        raise _missing(path)
    if replies[0] is _SKIP:
        raise _expected(kind, doc.values(path)[0])
    return replies[0]


def _path_arg(args: list[bytes], i: int) -> Path:
    return parse_path(args[i]) if len(args) > i else ROOT


# -- JSON.SET / JSON.GET / JSON.MGET / JSON.DEL -----------------------------------------

@command("json.set", -4, (WRITE, DENYOOM), summary="Sets or updates the JSON value at a path",
         **_JSON)
def json_set(txn: Txn, args: list[bytes]):
    pk, path = args[0], parse_path(args[1])
    value = loads(args[2])
    nx = xx = False
    for opt in args[3:]:
        word = opt.upper()
        if word == b"NX" and not xx:
            nx = True
        elif word == b"XX" and not nx:
            xx = True
        else:
            raise RespError(SYNTAX)
    doc = _Doc(txn, pk)
    # ZanRedisDB (sjson) creates the objects a dotted legacy path names, where RedisJSON
    # refuses a new key below the root and a member whose parent is missing.
    dotted = path.member_names() if path.legacy else None
    if not doc.exists:
        if xx:
            return None
        if not path.is_root and not dotted:
            raise RespError(ROOT_ONLY)
        _write_doc(txn, pk, _nest(dotted, value) if dotted else value)
        return OK
    locations = path.locate(doc.holder)
    if locations:
        if nx:
            return None
        for container, key in locations:
            container[key] = value
    else:
        if xx:
            return None
        where = path.creatable(doc.holder)
        if where is not None:
            obj, name = where
            obj[name] = value
        elif not (dotted and _create_along(doc.holder[0], dotted, value)):
            return None
    doc.save()
    return OK


def _nest(names: list[str], value: Any) -> Any:
    for name in reversed(names):
        value = {name: value}
    return value


def _create_along(node: Any, names: list[str], value: Any) -> bool:
    """Set `value` at the dotted `names` below `node`, creating missing objects; False
    when a member on the way exists but is not an object."""
    for i, name in enumerate(names[:-1]):
        if not isinstance(node, dict):
            return False
        if name not in node:
            node[name] = _nest(names[i + 1:], value)
            return True
        node = node[name]
    if not isinstance(node, dict):
        return False
    node[names[-1]] = value
    return True


_FORMAT_OPTIONS = (b"INDENT", b"NEWLINE", b"SPACE")


@command("json.get", -2, (READONLY,), summary="Gets the value at one or more paths in JSON "
         "serialized form", **_JSON)
def json_get(txn: Txn, args: list[bytes]):
    layout = {}
    paths: list[Path] = []
    i = 1
    while i < len(args):
        word = args[i].upper()
        if word in _FORMAT_OPTIONS and i + 1 < len(args):
            layout[word] = args[i + 1].decode("utf-8", "replace")
            i += 2
        elif word == b"NOESCAPE":
            i += 1
        else:
            paths.append(parse_path(args[i]))
            i += 1
    if not layout and (not paths or (len(paths) == 1 and paths[0].is_root)):
        # The whole document, as stored: its text is already the compact form.
        meta = lookup_as(txn, args[0], T_JSON)
        if meta is None:
            return None
        return meta.payload if not paths or paths[0].legacy else b"[" + meta.payload + b"]"
    doc = _Doc(txn, args[0])
    if not doc.exists:
        return None
    if not paths:
        paths = [ROOT]
    if len(paths) == 1:
        reply = _get_one(doc, paths[0])
    elif all(p.legacy for p in paths):
        reply = {p.text: _get_one(doc, p) for p in paths}
    else:
        reply = {p.text: doc.values(p) for p in paths}
    if layout:
        text = dumps_pretty(reply, layout.get(b"INDENT", ""), layout.get(b"NEWLINE", ""),
                            layout.get(b"SPACE", ""))
    else:
        text = dumps(reply)
    return text.encode()


def _get_one(doc: _Doc, path: Path) -> Any:
    values = doc.values(path)
    if not path.legacy:
        return values
    if not values:
        raise _missing(path)
    return values[0]


def _mget(txn: Txn, args: list[bytes]):
    if len(args) < 2:
        raise wrong_arity("json.mget")
    path = parse_path(args[-1])
    out = []
    for pk in args[:-1]:
        meta = _json_meta_or_none(txn, pk)
        if meta is None:
            out.append(None)
            continue
        values = [c[k] for c, k in path.locate([loads(meta.payload)])]
        if path.legacy:
            out.append(dumps(values[0]).encode() if values else None)
        else:
            out.append(dumps(values).encode())
    return out


def _json_meta_or_none(txn: Txn, pk: bytes):
    try:
        return lookup_as(txn, pk, T_JSON)
    except RespError:
        return None     # a key of another type reads as missing, as in RedisJSON


command("json.mget", -3, (READONLY,), route=Route.SAME_PARTITION, first_key=1, last_key=-2,
        summary="Returns the values at a path from one or more keys", **_JSON)(_mget)
command("json.mkget", -3, (READONLY,), route=Route.SAME_PARTITION, first_key=1, last_key=-2,
        summary="ZanRedisDB's JSON.MGET", **_JSON)(_mget)


def _delete(txn: Txn, args: list[bytes]):
    if len(args) > 2:
        raise wrong_arity("json.del")
    doc = _Doc(txn, args[0])
    if not doc.exists:
        return 0
    path = _path_arg(args, 1)
    locations = path.locate(doc.holder)
    if any(container is doc.holder for container, _ in locations):
        remove_key(txn, args[0])
        return 1
    # Array members from the highest index down, so earlier deletions move nothing
    # still to be deleted.
    ordered = sorted(locations, key=lambda loc: loc[1] if isinstance(loc[0], list) else 0,
                     reverse=True)
    for container, key in ordered:
        del container[key]
    if ordered:
        doc.save()
    return len(ordered)


command("json.del", -2, (WRITE,), summary="Deletes a value", **_JSON)(_delete)
command("json.forget", -2, (WRITE,), summary="Deletes a value", **_JSON)(_delete)


@command("json.keyexists", 2, (READONLY, FAST),
         summary="ZanRedisDB: whether a key holds a JSON document", **_JSON)
def json_keyexists(txn: Txn, args: list[bytes]):
    return int(lookup_as(txn, args[0], T_JSON) is not None)


@command("json.type", -2, (READONLY,), summary="Returns the type of the JSON value at path",
         **_JSON)
def json_type(txn: Txn, args: list[bytes]):
    if len(args) > 2:
        raise wrong_arity("json.type")
    doc = _Doc(txn, args[0])
    if not doc.exists:
        return None
    path = _path_arg(args, 1)
    names = [SimpleString(type_name(v).encode()) for v in doc.values(path)]
    if path.legacy:
        return names[0] if names else None
    return names


# -- numbers, strings, booleans ---------------------------------------------------------

def _number_arg(raw: bytes) -> Any:
    value = loads(raw)
    if not is_number(value):
        raise RespError(f"ERR expected a number, got {type_name(value)}")
    return value


def _arith(name: str, op: Callable[[Any, Any], Any]):
    def handler(txn: Txn, args: list[bytes]):
        path, operand = parse_path(args[1]), _number_arg(args[2])
        doc = _Doc(txn, args[0]).require()

        def apply(container, key, value):
            if not is_number(value):
                return _SKIP
            result = op(value, operand)
            if isinstance(result, float) and (result != result or result in (
                    float("inf"), float("-inf"))):
                raise RespError("ERR result is not a number")
            container[key] = result
            return result
        try:
            reply = _update(doc, path, apply, "number")
        except RespError as e:
            if path.legacy and str(e).startswith("ERR Path"):
                raise RespError(f"ERR Path '{path.canonical}' does not exist or does not "
                                "contains a number") from None
            raise
        return dumps(reply).encode()
    command(name, 4, (WRITE,), summary=f"{name.upper()}", **_JSON)(handler)


def _add(a, b):
    return a + b


def _mul(a, b):
    return a * b


_arith("json.numincrby", _add)
_arith("json.nummultby", _mul)


@command("json.strappend", -3, (WRITE, DENYOOM), summary="Appends a string to a JSON string",
         **_JSON)
def json_strappend(txn: Txn, args: list[bytes]):
    if len(args) > 3:
        raise wrong_arity("json.strappend")
    path = parse_path(args[1]) if len(args) == 3 else ROOT
    suffix = loads(args[-1])
    if not isinstance(suffix, str):
        raise _expected("string", suffix)
    doc = _Doc(txn, args[0]).require()

    def apply(container, key, value):
        if not isinstance(value, str):
            return _SKIP
        container[key] = value + suffix
        return len(container[key].encode("utf-8"))
    return _update(doc, path, apply, "string")


def _str_length(value):
    return len(value.encode("utf-8")) if isinstance(value, str) else _SKIP


def _sized(name: str, measure: Callable[[Any], Any], kind: str, summary: str):
    """ARRLEN, OBJLEN, OBJKEYS, STRLEN: a missing key is nil for a legacy path and an
    error for a JSONPath, as in RedisJSON."""
    def handler(txn: Txn, args: list[bytes]):
        if len(args) > 2:
            raise wrong_arity(name)
        path = _path_arg(args, 1)
        doc = _Doc(txn, args[0])
        if not doc.exists:
            if path.legacy:
                return None
            raise RespError(NO_KEY)
        return _read(doc, path, measure, kind)
    command(name, -2, (READONLY,), summary=summary, **_JSON)(handler)


_sized("json.strlen", _str_length, "string", "Returns the length of a JSON string")
_sized("json.arrlen", lambda v: len(v) if isinstance(v, list) else _SKIP, "array",
       "Returns the length of an array")
_sized("json.objlen", lambda v: len(v) if isinstance(v, dict) else _SKIP, "object",
       "Returns the number of keys of an object")
_sized("json.objkeys", lambda v: [k.encode() for k in v] if isinstance(v, dict) else _SKIP,
       "object", "Returns the keys of an object")


@command("json.toggle", 3, (WRITE,), summary="Toggles a boolean value", **_JSON)
def json_toggle(txn: Txn, args: list[bytes]):
    path = parse_path(args[1])
    doc = _Doc(txn, args[0]).require()

    def apply(container, key, value):
        if not isinstance(value, bool):
            return _SKIP
        container[key] = not value
        return int(not value)
    return _update(doc, path, apply, "bool",
                   legacy_reply=lambda r: b"true" if r else b"false")


@command("json.clear", -2, (WRITE,), summary="Clears arrays and objects, zeroes numbers",
         **_JSON)
def json_clear(txn: Txn, args: list[bytes]):
    if len(args) > 2:
        raise wrong_arity("json.clear")
    doc = _Doc(txn, args[0])
    if not doc.exists:
        raise RespError(NO_KEY)
    cleared = 0
    for container, key in _path_arg(args, 1).locate(doc.holder):
        value = container[key]
        if isinstance(value, (dict, list)) and value:
            value.clear()
        elif is_number(value) and value != 0:
            container[key] = 0
        else:
            continue
        cleared += 1
    if cleared:
        doc.save()
    return cleared


# -- arrays -----------------------------------------------------------------------------

@command("json.arrappend", -4, (WRITE, DENYOOM), summary="Appends values to an array",
         **_JSON)
def json_arrappend(txn: Txn, args: list[bytes]):
    path = parse_path(args[1])
    values = [loads(raw) for raw in args[2:]]
    doc = _Doc(txn, args[0]).require()

    def apply(container, key, value):
        if not isinstance(value, list):
            return _SKIP
        value.extend(values)
        return len(value)
    return _update(doc, path, apply, "array")


@command("json.arrinsert", -5, (WRITE, DENYOOM), summary="Inserts values into an array",
         **_JSON)
def json_arrinsert(txn: Txn, args: list[bytes]):
    path = parse_path(args[1])
    index = parse_int(args[2])
    values = [loads(raw) for raw in args[3:]]
    doc = _Doc(txn, args[0]).require()

    def apply(container, key, value):
        if not isinstance(value, list):
            return _SKIP
        at = index + len(value) if index < 0 else index
        if not 0 <= at <= len(value):
            raise RespError("ERR index out of bounds")
        value[at:at] = values
        return len(value)
    return _update(doc, path, apply, "array")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0, or 1 and true, are different values."""
    if type_name(a) != type_name(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@command("json.arrindex", -4, (READONLY,), summary="Returns the index of a value in an array",
         **_JSON)
def json_arrindex(txn: Txn, args: list[bytes]):
    if len(args) > 5:
        raise wrong_arity("json.arrindex")
    path = parse_path(args[1])
    wanted = loads(args[2])
    start = parse_int(args[3]) if len(args) > 3 else 0
    stop = parse_int(args[4]) if len(args) > 4 else 0
    doc = _Doc(txn, args[0]).require()

    def find(value):
        if not isinstance(value, list):
            return _SKIP
        n = len(value)
        lo = max(0, start + n if start < 0 else start)
        hi = n if stop == 0 else (stop + n if stop < 0 else min(stop, n))
        for i in range(lo, hi):
            if _same(value[i], wanted):
                return i
        return -1
    return _read(doc, path, find, "array")


@command("json.arrpop", -2, (WRITE,), summary="Removes and returns an element of an array",
         **_JSON)
def json_arrpop(txn: Txn, args: list[bytes]):
    if len(args) > 3:
        raise wrong_arity("json.arrpop")
    path = _path_arg(args, 1)
    index = parse_int(args[2]) if len(args) > 2 else -1
    doc = _Doc(txn, args[0])
    if not doc.exists:
        if path.legacy:
            return None
        raise RespError(NO_KEY)

    def apply(container, key, value):
        if not isinstance(value, list):
            return _SKIP
        if not value:
            return _EMPTY
        at = index + len(value) if index < 0 else index
        at = min(max(at, 0), len(value) - 1)   # out of range: the nearest end
        return dumps(value.pop(at)).encode()
    reply = _update(doc, path, apply, "array")
    if isinstance(reply, list):
        return [None if r is _EMPTY else r for r in reply]
    return None if reply is _EMPTY else reply


_EMPTY = _Skip()


@command("json.arrtrim", 5, (WRITE,), summary="Trims an array to a range", **_JSON)
def json_arrtrim(txn: Txn, args: list[bytes]):
    path = parse_path(args[1])
    start, stop = parse_int(args[2]), parse_int(args[3])
    doc = _Doc(txn, args[0]).require()

    def apply(container, key, value):
        if not isinstance(value, list):
            return _SKIP
        n = len(value)
        lo = max(0, start + n if start < 0 else start)
        hi = min(n - 1, stop + n if stop < 0 else stop)
        value[:] = value[lo:hi + 1] if lo < n and lo <= hi else []
        return len(value)
    return _update(doc, path, apply, "array")
