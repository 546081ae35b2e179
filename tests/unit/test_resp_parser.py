"""RequestParser: framing, inline splitting and Redis's exact protocol error texts."""

import pytest
from hypothesis import given, settings, strategies as st

from zan.errors import ProtocolError
from zan.resp.encoder import encode_command
from zan.resp.parser import RequestParser, parse_ll, split_args

BOTH = pytest.mark.parametrize("fast", [True, False], ids=["hiredis", "python"])


def parse_all(data, chunks=None, **kw):
    p = RequestParser(**kw)
    out = []
    for piece in chunks or [data]:
        p.feed(piece)
        out.extend(p)
    return out


def error_of(data, **kw):
    p = RequestParser(**kw)
    p.feed(data)
    got = []
    with pytest.raises(ProtocolError) as e:
        for argv in p:
            got.append(argv)
    return e.value.resp_message(), got


PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$10\r\nkey:000123\r\n$3\r\nxxx\r\n"
    b"PING\r\n"
    b"*0\r\n*-1\r\n\r\n"
    b'echo "a\\x41\\n b" \'c\\\'d\'\n'
    b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
    b"*1\rX$4\r\nPINGZZ"
    b"*2\r\n$3\r\nGET\r\n$1\r\n+\r\n"
)
EXPECTED = [
    [b"SET", b"key:000123", b"xxx"],
    [b"PING"],
    [b"echo", b"aA\n b", b"c'd"],
    [b"ECHO", b""],
    [b"PING"],
    [b"GET", b"+"],
]


@BOTH
def test_pipeline_whole(fast):
    assert parse_all(PIPELINE, use_hiredis=fast) == EXPECTED


@BOTH
def test_pipeline_split_at_every_position(fast):
    for i in range(len(PIPELINE) + 1):
        assert parse_all(None, [PIPELINE[:i], PIPELINE[i:]], use_hiredis=fast) == EXPECTED, i


@BOTH
def test_pipeline_byte_by_byte(fast):
    chunks = [PIPELINE[i : i + 1] for i in range(len(PIPELINE))]
    assert parse_all(None, chunks, use_hiredis=fast) == EXPECTED


def test_fast_path_matches_python_on_many_commands():
    data = b"".join(encode_command([b"SET", b"key:%06d" % i, b"v" * (i % 50)]) for i in range(3000))
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    assert parse_all(None, chunks) == parse_all(None, chunks, use_hiredis=False)
    assert len(parse_all(None, chunks)) == 3000


@pytest.mark.parametrize(
    "data, text",
    [
        (b"*x\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$03\r\nabc\r\n", "invalid bulk length"),
        (b"*1\r\n$+3\r\nabc\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*1\r\n\r\n", "expected '$', got ' '"),
        (b"*1\r\n\xff\r\n", "expected '$', got '\udcff'"),
        (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
        (b"*1\r\n+OK\r\n", "expected '$', got '+'"),
        (b"a" * 70000, "too big inline request"),
        (b"*" + b"1" * 70000, "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * 70000, "too big bulk count string"),
        (b"*1\0\r\n" + b"x" * 70000, "too big mbulk count string"),
        (b'GET "abc\r\n', "unbalanced quotes in request"),
        (b'GET "a"b\r\n', "unbalanced quotes in request"),
        (b"GET 'a\r\n", "unbalanced quotes in request"),
    ],
)
@BOTH
def test_error_texts(data, text, fast):
    message, got = error_of(data, use_hiredis=fast)
    assert message == "ERR Protocol error: " + text
    assert got == []


def test_error_comes_after_complete_commands():
    message, got = error_of(b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n*1\r\n")
    assert got == [[b"PING"], [b"PING"]]
    assert "expected '$', got '*'" in message


def test_error_is_sticky():
    p = RequestParser()
    p.feed(b"*x\r\n")
    for _ in range(2):
        with pytest.raises(ProtocolError):
            next(p)


def test_limits_are_configurable():
    assert "invalid bulk length" in error_of(b"*1\r\n$11\r\n", max_bulk_len=10)[0]
    assert "invalid multibulk length" in error_of(b"*4\r\n", max_multibulk_len=3)[0]
    assert parse_all(b"*1\r\n$10\r\n0123456789\r\n", max_bulk_len=10) == [[b"0123456789"]]


def test_unauthenticated_limits_follow_the_flag():
    assert "unauthenticated multibulk length" in error_of(b"*11\r\n", authenticated=False)[0]
    assert "unauthenticated bulk length" in error_of(b"*1\r\n$16385\r\n", authenticated=False)[0]
    p = RequestParser(authenticated=False)
    p.feed(encode_command([b"AUTH", b"pw"]) + encode_command([b"x"] * 11))
    assert next(p) == [b"AUTH", b"pw"]
    p.authenticated = True  # AUTH succeeded: the next command is checked with the normal limits
    assert next(p) == [b"x"] * 11


def test_huge_bulk_header_rejected_before_body_and_big_body_not_preallocated():
    p = RequestParser(max_bulk_len=1 << 20)
    p.feed(b"*1\r\n$1048577\r\n")
    with pytest.raises(ProtocolError):
        next(p)
    p = RequestParser()
    p.feed(b"*2\r\n$3\r\nSET\r\n$500000000\r\nabc")
    assert list(p) == []
    assert p.buffered() < 100


def test_big_value_in_many_chunks():
    value = bytes(range(256)) * 4096  # 1 MiB
    data = encode_command([b"SET", b"k", value])
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert parse_all(None, chunks) == [[b"SET", b"k", value]]


def test_nul_hides_line_end_like_strchr():
    p = RequestParser()
    p.feed(b"PING a\0b\r\n")
    assert list(p) == []


def test_inline_quirks():
    assert split_args(b"  set  a\tb \r c ") == [b"set", b"a", b"b", b"c"]
    assert split_args(b"a\vb \vc") == [b"a\vb", b"c"]
    assert split_args(b'"\\x4a\\x4" "\\t\\q"') == [b"Jx4", b"\tq"]
    assert split_args(b"ab\"cd\" 'x y'") == [b"abcd", b"x y"]
    assert split_args(b'""') == [b""]
    assert split_args(b'"a"x') is None
    assert parse_all(b"\r\n\n  \r\nPING\n") == [[b"PING"]]


def test_parse_ll_is_string2ll():
    assert parse_ll(b"0") == 0 and parse_ll(b"-5") == -5 and parse_ll(b"9223372036854775807") == 2**63 - 1
    for bad in [b"", b"-", b"01", b"-0", b"+1", b" 1", b"1 ", b"9223372036854775808", b"1_0"]:
        assert parse_ll(bad) is None, bad


argvs = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(argvs, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=6), st.booleans())
def test_round_trip_with_random_splits(commands, cuts, fast):
    data = b"".join(encode_command(c) for c in commands)
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert parse_all(None, chunks, use_hiredis=fast) == commands


@pytest.mark.parametrize("data", [b"*10000000\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*10000000\r\n$1\r\na\r\n",
                                  b"*1\r\n$1\r\na\r\n*1\r\n~10000000\r\n"])
def test_huge_counts_allocate_nothing_up_front(data):
    import tracemalloc

    p = RequestParser()
    tracemalloc.start()
    try:
        p.feed(data)
        try:
            list(p)
        except ProtocolError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
