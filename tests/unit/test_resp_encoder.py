"""Reply and command encoding."""

import pytest
from hypothesis import given, strategies as st

from zan.errors import NotLeader, ProtocolError, RespError, wrong_arity
from zan.resp.client import ReplyError, ReplyParser
from zan.resp.encoder import encode, encode_command, encode_error
from zan.resp.types import NULL_ARRAY, OK, PONG, SimpleString


@pytest.mark.parametrize(
    "value, wire",
    [
        (OK, b"+OK\r\n"),
        (PONG, b"+PONG\r\n"),
        (b"", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n"),
        (0, b":0\r\n"),
        (-(2**63), b":-9223372036854775808\r\n"),
        (None, b"$-1\r\n"),
        (NULL_ARRAY, b"*-1\r\n"),
        ([], b"*0\r\n"),
        ((b"a", 1, None, [OK]), b"*4\r\n$1\r\na\r\n:1\r\n$-1\r\n*1\r\n+OK\r\n"),
        (bytearray(b"xy"), b"$2\r\nxy\r\n"),
        (wrong_arity("get"), b"-ERR wrong number of arguments for 'get' command\r\n"),
        (RespError("WRONGTYPE Operation against a key holding the wrong kind of value"),
         b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (RespError("no prefix here"), b"-ERR no prefix here\r\n"),
        (NotLeader(), b"-ERR_CLUSTER_CHANGED: partition of the namespace is not leader on the node\r\n"),
        (RespError("ERR bad\r\nthing"), b"-ERR bad  thing\r\n"),
        (ProtocolError("expected '$', got '\udcff'"), b"-ERR Protocol error: expected '$', got '\xff'\r\n"),
    ],
)
def test_encode(value, wire):
    assert encode(value) == wire


@pytest.mark.parametrize("bad", [True, "text", 1.5, object(), {b"a": b"b"}])
def test_encode_rejects_values_outside_the_model(bad):
    with pytest.raises(TypeError):
        encode(bad)


def test_encode_command_accepts_str_int_bytes():
    assert encode_command(["SET", b"k\xff", 12]) == b"*3\r\n$3\r\nSET\r\n$2\r\nk\xff\r\n$2\r\n12\r\n"


def test_error_relay_is_byte_identical():
    wire = b"-ERR Protocol error: expected '$', got '\xfe'\r\n-weird lower case\r\n"
    p = ReplyParser()
    p.feed(wire)
    errors = list(p)
    assert all(isinstance(e, ReplyError) for e in errors)
    assert b"".join(encode_error(e) for e in errors) == wire


replies = st.recursive(
    st.one_of(st.binary(max_size=20), st.integers(-(2**63), 2**63 - 1), st.none(),
              st.builds(SimpleString, st.binary(max_size=10).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))),
    lambda children: st.lists(children, max_size=4),
    max_leaves=15,
)


@given(st.lists(replies, min_size=1, max_size=5), st.integers(0, 1000))
def test_reply_parser_round_trip(values, cut):
    wire = b"".join(encode(v) for v in values)
    cut %= len(wire) + 1
    p = ReplyParser()
    p.feed(wire[:cut])
    got = list(p)
    p.feed(wire[cut:])
    got += list(p)
    assert got == values
    assert [type(g) for g in got] == [type(v) for v in values]
    assert b"".join(encode(g) for g in got) == wire
