"""The hiredis fast path of RequestParser reads exactly what the pure-Python parser reads.

The fast path reuses one hiredis reader across feeds and knows how many bytes it consumed
without re-measuring the commands when the reader stopped at a command boundary; these
runs throw well-formed, truncated and malformed streams, cut anywhere, at both paths.
"""

from hypothesis import given, settings, strategies as st

from zan.errors import ProtocolError
from zan.resp.encoder import encode_command
from zan.resp.parser import RequestParser

_arg = st.binary(max_size=12) | st.sampled_from([b"", b"\r\n", b"*0\r\n", b"$3\r\n", b"+OK"])
_command = st.lists(_arg, min_size=1, max_size=4).map(encode_command)
_junk = st.sampled_from([
    b"*0\r\n", b"*-1\r\n", b"*1\r\n:1\r\n", b"*1\r\n*1\r\n$1\r\na\r\n", b"*2\r\n$-1\r\n$1\r\na\r\n",
    b"*1\r\n+OK\r\n", b"*1\r\n-ERR x\r\n", b"*1\r\n$01\r\na\r\n", b"*01\r\n$1\r\na\r\n",
    b"PING\r\n", b"\r\n", b"*1\rX$4\r\nPINGZZ", b"*1\r\n$4\r\nPING", b"*2\r\n$3\r\nGET\r\n",
    b"*1\r\n_\r\n", b"*1\r\n#t\r\n", b"*1\r\n,1.5\r\n", b"*abc\r\n", b"*1\r\n$x\r\n",
])
_stream = st.lists(_command | _junk, min_size=1, max_size=10).map(b"".join)


def _run(chunks, fast):
    p = RequestParser(use_hiredis=fast)
    out = []
    try:
        for chunk in chunks:
            p.feed(chunk)
            while (argv := p.pop()) is not None:
                out.append(argv)
    except ProtocolError as e:
        out.append(("error", e.resp_message()))
    return out, p.buffered()


@settings(max_examples=400, deadline=None)
@given(_stream, st.lists(st.integers(0, 400), max_size=5))
def test_fast_path_matches_python_parser(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert _run(chunks, True) == _run(chunks, False)


def test_reader_is_reused_across_whole_commands_and_dropped_mid_command():
    p = RequestParser()
    p.feed(encode_command([b"GET", b"a"]))
    assert p.pop() == [b"GET", b"a"]
    reader = p._reader
    assert reader is not None
    p.feed(encode_command([b"SET", b"b", b"1"]))
    assert p.pop() == [b"SET", b"b", b"1"]
    assert p._reader is reader
    # A command cut after its first element: hiredis has read every byte but holds a
    # half-built command, so the bytes after the complete ones are re-read exactly.
    p.feed(encode_command([b"ECHO", b"x"]) + b"*2\r\n$3\r\nGET\r\n")
    assert p.pop() == [b"ECHO", b"x"]
    assert p.pop() is None
    assert p._reader is not reader
    p.feed(b"$1\r\nk\r\n")
    assert p.pop() == [b"GET", b"k"]
    assert p.pop() is None
    assert p.buffered() == 0
