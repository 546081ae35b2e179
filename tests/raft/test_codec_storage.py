"""Wire codec round trips and strict rejection; MemoryStorage contract."""

from __future__ import annotations

import msgpack
import pytest

from zan.raft.codec import (
    VERSION, CodecError, decode_conf_change, decode_messages, encode_conf_change, encode_messages,
)
from zan.raft.storage import Compacted, MemoryStorage, SnapshotOutOfDate, Unavailable
from zan.raft.types import (
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType as MT,
    Snapshot, SnapshotMetadata,
)

MSGS = [
    (3, Message(MT.APP, 2, 1, 5, 4, 10, (Entry(5, 11, data=b"a"), Entry(5, 12, EntryType.CONF_CHANGE, b"c")), 9)),
    (1 << 40, Message(MT.APP_RESP, 1, 2, 5, 3, 10, reject=True, reject_hint=7)),
    (0, Message(MT.SNAP, 2, 1, 5, snapshot=Snapshot(SnapshotMetadata(9, 4, ConfState((1, 2), (3,))), b"d"))),
    (7, Message(MT.HEARTBEAT, 2, 1, 5, commit=3, context=b"ctx")),
]


def test_round_trip():
    assert decode_messages(encode_messages(MSGS)) == MSGS


def test_conf_change_round_trip():
    cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 42, b"addr")
    assert decode_conf_change(encode_conf_change(cc)) == cc


def _frame(msg_fields, version=VERSION):
    return msgpack.packb([version, [msg_fields]], use_bin_type=True)


GOOD = [1, int(MT.APP), 2, 1, 5, 4, 10, 9, False, 0, b"", [[5, 11, 0, b"a"]], None]


@pytest.mark.parametrize("pos,bad", [
    (0, -1), (1, 99), (1, "3"), (4, 1.5), (8, 1), (10, "text"), (11, [[5, 11, 7, b""]]),
    (11, [[5, 11, 0, "str"]]), (11, [[5, 11, 0]]), (11, {}), (12, [1, 2]), (12, [1, 2, [1], [], "x"]),
])
def test_rejects_malformed_fields(pos, bad):
    fields = list(GOOD)
    fields[pos] = bad
    with pytest.raises(CodecError):
        decode_messages(_frame(fields))


@pytest.mark.parametrize("raw", [b"", b"\xc1", msgpack.packb([2, []]), msgpack.packb({"a": 1}),
                                 msgpack.packb([1, [[1, 2]]]), msgpack.packb([1, "x"])])
def test_rejects_malformed_frames(raw):
    with pytest.raises(CodecError):
        decode_messages(raw)


def test_good_frame_decodes():
    assert decode_messages(_frame(GOOD))[0][1].entries == (Entry(5, 11, data=b"a"),)


def test_memory_storage_contract():
    s = MemoryStorage(ConfState((1,)))
    assert (s.first_index(), s.last_index()) == (1, 0)
    s.append([Entry(1, i) for i in range(1, 6)])
    assert s.term(0) == 0 and s.term(5) == 1
    with pytest.raises(Unavailable):
        s.term(6)
    assert [e.index for e in s.entries(2, 5)] == [2, 3, 4]
    big = MemoryStorage()
    big.append([Entry(1, i, data=b"x" * 10) for i in range(1, 6)])
    assert len(big.entries(1, 6, max_size=25)) == 2
    assert len(big.entries(1, 6, max_size=1)) == 1
    s.append([Entry(2, 4)])                     # conflicting suffix replaced
    assert s.last_index() == 4 and s.term(4) == 2
    snap = s.create_snapshot(3, ConfState((1, 2)), b"d")
    assert snap.metadata.term == 1
    s.compact(3)
    assert s.first_index() == 4 and s.term(3) == 1
    with pytest.raises(Compacted):
        s.entries(2, 4)
    with pytest.raises(Compacted):
        s.compact(2)
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMetadata(1, 1)))
    s.apply_snapshot(Snapshot(SnapshotMetadata(10, 3, ConfState((1, 2, 3)))))
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 3)
    assert s.initial_state()[1] == ConfState((1, 2, 3))
    s.set_hard_state(HardState(3, 1, 10))
    assert s.initial_state()[0] == HardState(3, 1, 10)
    with pytest.raises(Unavailable):
        s.append([Entry(3, 13)])                # a gap
