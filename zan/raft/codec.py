"""Wire encoding of Raft messages (msgpack), and of the ConfChange carried in entries.

A frame body is ``[VERSION, [msg, ...]]`` where each ``msg`` is a flat array::

    [group_id, type, to, frm, term, log_term, index, commit, reject, reject_hint,
     context, entries, snapshot, recovering]

(``recovering`` was added later: a message of 13 fields has it false.)

``entries`` is ``[[term, index, type, data], ...]`` and ``snapshot`` is nil or
``[index, term, [voters...], [learners...], data]``.  Positional arrays keep frames small
and decoding cheap.  Input comes from the network, so decoding checks every field's type
and range and raises `CodecError` rather than building a half-valid message.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import msgpack

from zan.errors import ZanError
from zan.raft.types import (
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
    SnapshotMetadata,
)

__all__ = [
    "VERSION", "CodecError", "encode_messages", "decode_messages",
    "encode_conf_change", "decode_conf_change",
]

VERSION = 1
_MAX_U64 = (1 << 64) - 1
_MESSAGE_FIELDS = 14
_OLD_MESSAGE_FIELDS = 13
_MSG_TYPES = {int(t): t for t in MessageType}
_ENTRY_TYPES = {int(t): t for t in EntryType}
_CC_TYPES = {int(t): t for t in ConfChangeType}
_NORMAL = EntryType.NORMAL


class CodecError(ZanError):
    """Bytes from a peer that do not decode to valid Raft messages."""


def _entries_out(ents: tuple[Entry, ...]) -> list:
    return [[e.term, e.index, int(e.type), e.data] for e in ents]


def _snapshot_out(s: Snapshot | None):
    if s is None:
        return None
    m = s.metadata
    return [m.index, m.term, list(m.conf_state.voters), list(m.conf_state.learners), s.data]


def encode_messages(batch: Iterable[tuple[int, Message]]) -> bytes:
    """Encode ``(group_id, message)`` pairs as one frame body."""
    out = []
    for gid, m in batch:
        out.append([gid, int(m.type), m.to, m.frm, m.term, m.log_term, m.index, m.commit,
                    m.reject, m.reject_hint, m.context, _entries_out(m.entries) if m.entries else [],
                    _snapshot_out(m.snapshot), m.recovering])
    return msgpack.packb([VERSION, out], use_bin_type=True)


def _u64(v, what: str) -> int:
    if type(v) is not int or v < 0 or v > _MAX_U64:
        raise CodecError(f"raft codec: {what} must be an unsigned 64-bit integer, got {v!r:.40}")
    return v


def _bytes(v, what: str) -> bytes:
    if type(v) is not bytes:
        raise CodecError(f"raft codec: {what} must be bytes, got {type(v).__name__}")
    return v


def _list(v, what: str) -> list:
    if type(v) is not list:
        raise CodecError(f"raft codec: {what} must be an array, got {type(v).__name__}")
    return v


def _entry_in(raw) -> Entry:
    if type(raw) is not list or len(raw) != 4:
        raise CodecError("raft codec: an entry must be an array of 4")
    term, index, etype, data = raw
    et = _ENTRY_TYPES.get(etype) if type(etype) is int else None
    if et is None:
        raise CodecError(f"raft codec: unknown entry type {etype!r:.40}")
    return Entry(_u64(term, "entry term"), _u64(index, "entry index"), et, _bytes(data, "entry data"))


def _snapshot_in(raw) -> Snapshot | None:
    if raw is None:
        return None
    if type(raw) is not list or len(raw) != 5:
        raise CodecError("raft codec: a snapshot must be an array of 5")
    index, term, voters, learners, data = raw
    cs = ConfState(tuple(_u64(v, "voter") for v in _list(voters, "voters")),
                   tuple(_u64(v, "learner") for v in _list(learners, "learners")))
    return Snapshot(SnapshotMetadata(_u64(index, "snapshot index"), _u64(term, "snapshot term"), cs),
                    _bytes(data, "snapshot data"))


def decode_messages(data: bytes) -> list[tuple[int, Message]]:
    """Decode one frame body; raises CodecError on anything malformed."""
    try:
        top = msgpack.unpackb(data, use_list=True, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated exception types
        raise CodecError(f"raft codec: undecodable frame: {e}") from None
    if type(top) is not list or len(top) != 2:
        raise CodecError("raft codec: a frame must be [version, messages]")
    version, msgs = top
    if version != VERSION:
        raise CodecError(f"raft codec: unsupported version {version!r:.20}")
    out = []
    for raw in _list(msgs, "messages"):
        if type(raw) is not list or len(raw) not in (_MESSAGE_FIELDS, _OLD_MESSAGE_FIELDS):
            raise CodecError(f"raft codec: a message must be an array of {_MESSAGE_FIELDS}")
        if len(raw) == _OLD_MESSAGE_FIELDS:
            raw.append(False)
        (gid, mtype, to, frm, term, log_term, index, commit, reject, reject_hint, context,
         entries, snapshot, recovering) = raw
        mt = _MSG_TYPES.get(mtype) if type(mtype) is int else None
        if mt is None:
            raise CodecError(f"raft codec: unknown message type {mtype!r:.40}")
        if type(reject) is not bool or type(recovering) is not bool:
            raise CodecError("raft codec: reject and recovering must be booleans")
        ents = tuple(_entry_in(e) for e in _list(entries, "entries"))
        out.append((_u64(gid, "group id"), Message(
            mt, _u64(to, "to"), _u64(frm, "frm"), _u64(term, "term"), _u64(log_term, "log term"),
            _u64(index, "index"), ents, _u64(commit, "commit"), _snapshot_in(snapshot), reject,
            _u64(reject_hint, "reject hint"), _bytes(context, "context"), recovering)))
    return out


def encode_conf_change(cc: ConfChange) -> bytes:
    return msgpack.packb([int(cc.type), cc.node_id, cc.context], use_bin_type=True)


def decode_conf_change(data: bytes) -> ConfChange:
    try:
        raw = msgpack.unpackb(data, use_list=True, raw=False)
    except Exception as e:
        raise CodecError(f"raft codec: undecodable conf change: {e}") from None
    if type(raw) is not list or len(raw) != 3:
        raise CodecError("raft codec: a conf change must be [type, node_id, context]")
    ctype, node_id, context = raw
    t = _CC_TYPES.get(ctype) if type(ctype) is int else None
    if t is None:
        raise CodecError(f"raft codec: unknown conf change type {ctype!r:.40}")
    return ConfChange(t, _u64(node_id, "node id"), _bytes(context, "conf change context"))
