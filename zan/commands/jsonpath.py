"""JSON documents' text and paths, as RedisJSON 2.x and ZanRedisDB's json.* read them.

Two path languages share one evaluator:

* **JSONPath** (starts with ``$``): ``$``, ``.name``, ``['name']``, ``.*``, ``[*]``,
  ``..name`` (every descendant), ``[n]`` (negative from the end), ``[a:b]`` slices,
  unions (``[0,2]``, ``['a','b']``) and filters (``[?(@.price < 10 && @.tag == "x")]``).
  A command answers for every match.
* **Legacy** (anything else, RedisJSON 1.x and ZanRedisDB): ``.`` is the root, and
  ``a.b``, ``.a.b``, ``a[0]``, ``["a"]`` read as ``$.a.b`` and so on.  A command answers
  for the first match only, and a path that matches nothing is an error.  As in
  ZanRedisDB (gjson), a dotted member that is a number indexes an array (``a.1``).

A location is ``(container, key)``: the root lives in a one-element list, so replacing
the whole document is an assignment like any other.  Documents are plain Python values
(dict, list, str, int, float, bool, None); `dumps` writes them as RedisJSON does
(compact, non-ASCII kept, floats in their shortest form, ``1e20`` not ``1e+20``).

Written here rather than taken from a JSONPath library: the ones available differ
from RedisJSON on the points clients see (legacy paths, creation of a missing member
by JSON.SET, negative indexes, error texts).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from zan.errors import RespError

__all__ = ["Path", "parse_path", "loads", "dumps", "dumps_pretty", "type_name",
           "MAX_DEPTH", "Location"]

# RedisJSON (serde_json) refuses documents nested deeper than this.
MAX_DEPTH = 128

Location = tuple[Any, Any]      # (container, key): container[key] is the value


# -- documents --------------------------------------------------------------------------

def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes) -> Any:
    """A JSON text as a Python value; RespError for anything RedisJSON would refuse."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RespError("ERR invalid JSON: not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise RespError(f"ERR invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        msg = getattr(e, "msg", str(e))
        where = (f" at line {e.lineno} column {e.colno}"
                 if isinstance(e, json.JSONDecodeError) else "")
        raise RespError(f"ERR invalid JSON: {msg}{where}") from None
    if depth(value) > MAX_DEPTH:
        raise RespError(f"ERR invalid JSON: nested deeper than {MAX_DEPTH} levels")
    return value


def depth(value: Any) -> int:
    """How deeply containers nest in `value` (a scalar: 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _float_text(x: float) -> str:
    text = repr(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _encode_str(s: str) -> str:
    return json.encoder.py_encode_basestring(s)


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return _float_text(value)
    return _COMPACT.encode(value)


def _has_exponent_float(value: Any) -> bool:
    """Does a float in `value` print with an exponent?  Python writes 1e+20 where
    RedisJSON writes 1e20; every other float prints the same in both."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if "e" in repr(node):
                return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def dumps(value: Any) -> str:
    """Compact JSON text, as RedisJSON answers and as documents are stored."""
    if not _has_exponent_float(value):
        return _COMPACT.encode(value)       # the C encoder: the common case
    return dumps_pretty(value, "", "", "")


def dumps_pretty(value: Any, indent: str, newline: str, space: str) -> str:
    """JSON.GET's INDENT/NEWLINE/SPACE layout (serde_json's pretty printer, with the
    three strings chosen by the client)."""
    out: list[str] = []

    def write(node: Any, level: int) -> None:
        if isinstance(node, dict):
            if not node:
                out.append("{}")
                return
            out.append("{")
            for i, (k, v) in enumerate(node.items()):
                out.append(("," if i else "") + newline + indent * (level + 1))
                out.append(_encode_str(k) + ":" + space)
                write(v, level + 1)
            out.append(newline + indent * level + "}")
        elif isinstance(node, list):
            if not node:
                out.append("[]")
                return
            out.append("[")
            for i, v in enumerate(node):
                out.append(("," if i else "") + newline + indent * (level + 1))
                write(v, level + 1)
            out.append(newline + indent * level + "]")
        else:
            out.append(_scalar(node))

    write(value, 0)
    return "".join(out)


def type_name(value: Any) -> str:
    """RedisJSON's name for the type of a value (JSON.TYPE, error texts)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# -- paths ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Name:
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Wild:
    pass


@dataclass(frozen=True)
class _Index:
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class _Slice:
    start: int | None
    stop: int | None
    step: int


@dataclass(frozen=True)
class _Descend:
    """``..``: the selector after it applies to every descendant (and the node)."""
    then: Any


@dataclass(frozen=True)
class _Filter:
    test: Callable[[Any], bool]


@dataclass(frozen=True)
class Path:
    text: str                    # as the client wrote it
    legacy: bool
    selectors: tuple
    # The path in JSONPath form, as RedisJSON's error texts spell a legacy path.
    canonical: str

    @property
    def is_root(self) -> bool:
        return not self.selectors

    def locate(self, holder: list) -> list[Location]:
        """Every location the path matches in the document held in `holder[0]`."""
        locations: list[Location] = [(holder, 0)]
        for selector in self.selectors:
            locations = [found for loc in locations
                         for found in _select(selector, loc, self.legacy)]
        return _unique(locations)

    def member_names(self) -> list[str] | None:
        """The member names of a path made of single names only (``a.b.c``), else None."""
        names = []
        for selector in self.selectors:
            if not isinstance(selector, _Name) or len(selector.names) != 1:
                return None
            names.append(selector.names[0])
        return names

    def creatable(self, holder: list) -> Location | None:
        """Where JSON.SET may create a member the path names but that does not exist:
        its last selector names one member, and what comes before it is one object."""
        if not self.selectors:
            return None
        last = self.selectors[-1]
        if not isinstance(last, _Name) or len(last.names) != 1:
            return None
        parents = Path(self.text, self.legacy, self.selectors[:-1], "").locate(holder)
        objects = [loc for loc in parents if isinstance(loc[0][loc[1]], dict)]
        if len(objects) != 1:
            return None
        container, key = objects[0]
        return container[key], last.names[0]


def _unique(locations: list[Location]) -> list[Location]:
    seen = set()
    out = []
    for container, key in locations:
        mark = (id(container), key)
        if mark not in seen:
            seen.add(mark)
            out.append((container, key))
    return out


def _children(value: Any) -> Iterator[Location]:
    if isinstance(value, dict):
        for key in value:
            yield value, key
    elif isinstance(value, list):
        for i in range(len(value)):
            yield value, i


def _select(selector, loc: Location, legacy: bool) -> Iterator[Location]:
    container, key = loc
    value = container[key]
    if isinstance(selector, _Name):
        if isinstance(value, dict):
            for name in selector.names:
                if name in value:
                    yield value, name
        elif legacy and isinstance(value, list) and len(selector.names) == 1:
            # gjson's a.1: a number indexes an array
            name = selector.names[0]
            if re.fullmatch(r"-?\d+", name):
                i = int(name)
                i = i + len(value) if i < 0 else i
                if 0 <= i < len(value):
                    yield value, i
    elif isinstance(selector, _Wild):
        yield from _children(value)
    elif isinstance(selector, _Index):
        if isinstance(value, list):
            for i in selector.indexes:
                i = i + len(value) if i < 0 else i
                if 0 <= i < len(value):
                    yield value, i
    elif isinstance(selector, _Slice):
        if isinstance(value, list):
            for i in range(len(value))[selector.start:selector.stop:selector.step]:
                yield value, i
    elif isinstance(selector, _Filter):
        for child in _children(value):
            if selector.test(child[0][child[1]]):
                yield child
    elif isinstance(selector, _Descend):
        for node in _descendants(loc):
            yield from _select(selector.then, node, legacy)
    else:
        raise AssertionError(selector)


def _descendants(loc: Location) -> Iterator[Location]:
    """`loc` and every location below it, depth first, in document order."""
    stack = [loc]
    while stack:
        current = stack.pop()
        yield current
        value = current[0][current[1]]
        stack.extend(reversed(list(_children(value))))


class _Parser:
    """A recursive-descent reader of one path (see the module docstring)."""

    def __init__(self, text: str, legacy: bool):
        self.text = text
        self.pos = 0
        self.legacy = legacy

    def error(self) -> RespError:
        return RespError(f"ERR invalid JSON path {self.text!r} at position {self.pos}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def selectors(self) -> list:
        out = []
        while not self.at_end():
            if self.peek(2) == "..":
                self.pos += 2
                if self.peek() == "[":
                    out.append(_Descend(self.bracket()))
                else:
                    out.append(_Descend(self.member()))
            elif self.peek() == ".":
                self.pos += 1
                out.append(self.member())
            elif self.peek() == "[":
                out.append(self.bracket())
            elif self.legacy and not out:
                out.append(self.member())      # legacy "a.b": no leading dot
            else:
                raise self.error()
        return out

    def member(self) -> Any:
        if self.peek() == "*":
            self.pos += 1
            return _Wild()
        start = self.pos
        while not self.at_end() and self.peek() not in ".[":
            self.pos += 1
        name = self.text[start:self.pos]
        if not name:
            raise self.error()
        return _Name((name,))

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def bracket(self) -> Any:
        self.pos += 1          # [
        self.skip_spaces()
        if self.peek() == "*":
            self.pos += 1
            selector: Any = _Wild()
        elif self.peek() == "?":
            self.pos += 1
            selector = _Filter(self.filter_expression())
        elif self.peek() in ("'", '"'):
            names = [self.quoted()]
            self.skip_spaces()
            while self.peek() == ",":
                self.pos += 1
                self.skip_spaces()
                names.append(self.quoted())
                self.skip_spaces()
            selector = _Name(tuple(names))
        else:
            selector = self.indexes()
        self.skip_spaces()
        if self.peek() != "]":
            raise self.error()
        self.pos += 1
        return selector

    def quoted(self) -> str:
        quote = self.peek()
        if quote not in ("'", '"'):
            raise self.error()
        self.pos += 1
        out = []
        while not self.at_end() and self.peek() != quote:
            if self.peek() == "\\":
                self.pos += 1
            out.append(self.peek())
            self.pos += 1
        if self.at_end():
            raise self.error()
        self.pos += 1
        return "".join(out)

    def integer(self) -> int | None:
        m = re.compile(r"\s*(-?\d+)\s*").match(self.text, self.pos)
        if not m:
            return None
        self.pos = m.end()
        return int(m.group(1))

    def indexes(self) -> Any:
        first = self.integer()
        if self.peek() == ":":
            self.pos += 1
            stop = self.integer()
            step = 1
            if self.peek() == ":":
                self.pos += 1
                step = self.integer() or 1
            if step <= 0:
                raise self.error()
            return _Slice(first, stop, step)
        if first is None:
            raise self.error()
        indexes = [first]
        while self.peek() == ",":
            self.pos += 1
            n = self.integer()
            if n is None:
                raise self.error()
            indexes.append(n)
        return _Index(tuple(indexes))

    # -- filters: [?( expr )] with @-paths, literals, comparisons, && || ! ----------------

    def filter_expression(self) -> Callable[[Any], bool]:
        self.skip_spaces()
        if self.peek() != "(":
            raise self.error()
        self.pos += 1
        test = self.disjunction()
        self.skip_spaces()
        if self.peek() != ")":
            raise self.error()
        self.pos += 1
        return test

    def disjunction(self):
        terms = [self.conjunction()]
        self.skip_spaces()
        while self.peek(2) == "||":
            self.pos += 2
            terms.append(self.conjunction())
            self.skip_spaces()
        return terms[0] if len(terms) == 1 else (lambda v: any(t(v) for t in terms))

    def conjunction(self):
        terms = [self.comparison()]
        self.skip_spaces()
        while self.peek(2) == "&&":
            self.pos += 2
            terms.append(self.comparison())
            self.skip_spaces()
        return terms[0] if len(terms) == 1 else (lambda v: all(t(v) for t in terms))

    def comparison(self):
        self.skip_spaces()
        if self.peek() == "!" and self.peek(2) != "!=":
            self.pos += 1
            inner = self.comparison()
            return lambda v: not inner(v)
        if self.peek() == "(":
            self.pos += 1
            inner = self.disjunction()
            self.skip_spaces()
            if self.peek() != ")":
                raise self.error()
            self.pos += 1
            return inner
        left = self.operand()
        self.skip_spaces()
        for op in ("==", "!=", "<=", ">=", "<", ">", "=~"):
            if self.peek(len(op)) == op:
                self.pos += len(op)
                right = self.operand()
                return _comparison(op, left, right)
        # A bare @-path: true when it exists.
        return lambda v: bool(left(v, exists=True))

    def operand(self):
        self.skip_spaces()
        if self.peek() == "@":
            self.pos += 1
            start = self.pos
            while not self.at_end() and (self.peek().isalnum() or self.peek() in "._[]'\"*-"):
                if self.peek() == "[":
                    depth_ = 0
                    while not self.at_end():
                        ch = self.peek()
                        depth_ += ch == "["
                        depth_ -= ch == "]"
                        self.pos += 1
                        if depth_ == 0:
                            break
                    continue
                self.pos += 1
            sub = _Parser(self.text[start:self.pos], legacy=False)
            selectors = tuple(sub.selectors())

            def at(value, exists=False):
                found = Path("", False, selectors, "").locate([value])
                if exists:
                    return found
                return [c[k] for c, k in found]
            return at
        m = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)""").match(self.text, self.pos)
        if not m:
            raise self.error()
        self.pos = m.end()
        token = m.group(1)
        if token.startswith("'"):
            token = '"' + token[1:-1].replace('"', '\\"') + '"'
        literal = json.loads(token)
        return lambda value, exists=False: [literal]


def _comparison(op: str, left, right):
    def compare(a, b) -> bool:
        numeric = (isinstance(a, (int, float)) and not isinstance(a, bool)
                   and isinstance(b, (int, float)) and not isinstance(b, bool))
        if op == "==":
            return compare_eq(a, b)
        if op == "!=":
            return not compare_eq(a, b)
        if op == "=~":
            return isinstance(a, str) and isinstance(b, str) and re.search(b, a) is not None
        if not (numeric or (isinstance(a, str) and isinstance(b, str))):
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    def compare_eq(a, b) -> bool:
        numeric = (isinstance(a, (int, float)) and not isinstance(a, bool)
                   and isinstance(b, (int, float)) and not isinstance(b, bool))
        return (numeric and a == b) or (type_name(a) == type_name(b) and a == b)

    def test(value) -> bool:
        lefts, rights = left(value), right(value)
        return any(compare(a, b) for a in lefts for b in rights)
    return test


def parse_path(raw: bytes) -> Path:
    """A path as a command argument gives it (see the module docstring)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RespError("ERR invalid JSON path: not UTF-8") from None
    if text.startswith("$") and (len(text) == 1 or text[1] in ".["):
        parser = _Parser(text[1:], legacy=False)
        return Path(text, False, tuple(parser.selectors()), text)
    if text == ".":
        return Path(text, True, (), "$")
    if text.startswith(".."):
        body, canonical = text, "$" + text
    else:
        body = text[1:] if text.startswith(".") else text
        canonical = "$" + ("" if body.startswith("[") else ".") + body
    selectors = tuple(_Parser(body, legacy=True).selectors())
    return Path(text, True, selectors, canonical)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))
