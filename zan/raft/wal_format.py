"""Record framing of the Raft WAL (see `zan.raft.wal` for the whole on-disk format).

A record is a 9-byte header followed by a msgpack body::

    crc32: u32 BE | length: u32 BE | type: u8 | body: `length` bytes (msgpack array)

`crc32` is zlib's CRC-32 of ``length | type | body`` computed from a start value derived
from the record's own position (segment sequence number and byte offset).  Seeding with
the position means a record copied or replayed at another place (an old segment's bytes,
a WAL record stored as a value inside an entry) never passes as valid there, which keeps
the "is there a valid record after this damage?" probe of `find_record` honest.

No crc32c wheel is installed in the venv, so zlib's CRC-32 is used; it catches the same
torn writes and bit flips this format cares about.
"""

from __future__ import annotations

import struct
import zlib
from enum import IntEnum

__all__ = ["RecordType", "HEADER_SIZE", "frame", "parse", "find_record"]

_HEADER = struct.Struct(">IIB")
_SEED = struct.Struct(">QQ")
HEADER_SIZE = _HEADER.size


class RecordType(IntEnum):
    SEGMENT = 1          # [magic, version, seq]: first record of every segment
    CHECKPOINT = 2       # live state of one group, restated at the start of a segment
    CHECKPOINT_END = 3   # [seq, group_count]: the segment's checkpoint is complete
    BATCH = 4            # [sync_no]: everything before this point was fsynced
    CREATE = 5           # [gid]
    ENTRIES = 6          # [gid, first_index, [term, type, data] * n (flat)]
    HARD_STATE = 7       # [gid, term, vote, commit]
    SNAPSHOT = 8         # [gid, index, term, voters, learners, data]: apply, discards entries
    SNAPSHOT_META = 9    # same fields: create_snapshot, keeps entries
    COMPACT = 10         # [gid, index, term]
    REMOVE = 11          # [gid]
    ATOMIC = 12          # [[gid, first_index, flat entries], ...]: ENTRIES of several groups


_KNOWN = frozenset(int(t) for t in RecordType)


def _seed(seq: int, offset: int) -> int:
    return zlib.crc32(_SEED.pack(seq, offset))


def frame(seq: int, offset: int, rtype: int, body: bytes) -> bytes:
    """The bytes of one record that will live at `offset` of segment `seq`."""
    head = _HEADER.pack(0, len(body), rtype)[4:]
    crc = zlib.crc32(body, zlib.crc32(head, _seed(seq, offset)))
    return struct.pack(">I", crc) + head + body


def parse(data, seq: int, offset: int) -> tuple[int, memoryview, int] | None:
    """(type, body, next offset) of a valid record at `offset` of `data` (a whole
    segment's bytes), else None."""
    return parse_at(data, 0, seq, offset)


def parse_at(data, base: int, seq: int, offset: int) -> tuple[int, memoryview, int] | None:
    """Like `parse` for a buffer whose first byte is segment offset `base`."""
    rel = offset - base
    if rel < 0 or len(data) - rel < HEADER_SIZE:
        return None
    crc, length, rtype = _HEADER.unpack_from(data, rel)
    end = rel + HEADER_SIZE + length
    if end > len(data) or rtype not in _KNOWN:
        return None
    view = memoryview(data)
    calc = zlib.crc32(view[rel + 4:rel + HEADER_SIZE], _seed(seq, offset))
    calc = zlib.crc32(view[rel + HEADER_SIZE:end], calc)
    if calc != crc:
        return None
    return rtype, view[rel + HEADER_SIZE:end], offset + HEADER_SIZE + length


def find_record(data, seq: int, start: int, rtype: RecordType) -> int | None:
    """Offset of the first valid record of type `rtype` strictly after `start`, or None."""
    marker = bytes([int(rtype)])
    at = start + HEADER_SIZE      # type byte of a record beginning at start + 1, at the earliest
    while True:
        at = data.find(marker, at)
        if at < 0:
            return None
        offset = at - (HEADER_SIZE - 1)
        if offset > start and parse(data, seq, offset) is not None:
            return offset
        at += 1
