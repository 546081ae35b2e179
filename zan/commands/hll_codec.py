"""Redis 7.0's HyperLogLog value (hyperloglog.c), byte for byte: a pure module, no IO.

A HyperLogLog is a string value: a 16-byte header followed by 16384 six-bit registers,
either *dense* (12288 bytes of packed registers) or *sparse* (run-length opcodes).

Header: ``b"HYLL"``, the encoding byte (0 dense, 1 sparse), three unused bytes, and the
cached cardinality as 8 little-endian bytes whose last byte's top bit set means "stale".

Sparse opcodes (one register run each, registers in index order):

* ``00xxxxxx``           ZERO:  1..64 registers at 0
* ``01xxxxxx yyyyyyyy``  XZERO: 1..16384 registers at 0 (14-bit length)
* ``1vvvvvxx``           VAL:   1..4 registers at value 1..32

Redis edits a sparse value in place and only tidies up near the edit, so the same set of
registers can have several sparse spellings; to give the bytes redis-server gives, every
edit here makes the very same choices (`sparse_set`).  Dense and sparse values are
handled as ``bytearray``s holding the whole value, header included.
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "Corrupt", "MAGIC", "HEADER_SIZE", "REGISTERS", "DENSE", "SPARSE", "DENSE_SIZE",
    "murmurhash64a", "pattern", "new_sparse", "is_hll", "encoding_of", "card_cache",
    "set_card_cache", "invalidate_cache", "dense_get", "dense_set", "dense_registers",
    "with_dense_registers", "sparse_to_dense", "sparse_set", "store_registers", "add",
    "merge_into", "histogram", "estimate", "count", "count_registers", "decode_sparse",
    "selftest",
]


class Corrupt(Exception):
    """The value looks like a HyperLogLog but its registers do not add up."""


MAGIC = b"HYLL"
HEADER_SIZE = 16
P = 14                              # register index bits
Q = 64 - P                          # hash bits left for the run of zeroes
REGISTERS = 1 << P
REGISTER_MAX = 63
DENSE = 0
SPARSE = 1
DENSE_SIZE = HEADER_SIZE + REGISTERS * 6 // 8
SEED = 0xADC83B19

_VAL_MAX_VALUE = 32
_VAL_MAX_LEN = 4
_ZERO_MAX_LEN = 64
_XZERO_MAX_LEN = 16384
_STALE = 0x80                       # in the cache's last byte (header byte 15)
_ALPHA_INF = 0.721347520444481703680  # 0.5 / ln 2
_M64 = (1 << 64) - 1
_INT64_LIMIT = 1 << 63
_WORDS = struct.Struct("<Q")


# -- hashing -----------------------------------------------------------------------------

def murmurhash64a(data: bytes, seed: int = SEED) -> int:
    """MurmurHash2, 64-bit version, reading words little-endian as Redis does on every
    architecture."""
    m = 0xC6A4A7935BD1E995
    n = len(data)
    h = (seed ^ (n * m)) & _M64
    whole = n & ~7
    for (k,) in _WORDS.iter_unpack(memoryview(data)[:whole]):
        k = (k * m) & _M64
        k ^= k >> 47
        h ^= (k * m) & _M64
        h = (h * m) & _M64
    if n & 7:
        h ^= int.from_bytes(data[whole:], "little")
        h = (h * m) & _M64
    h ^= h >> 47
    h = (h * m) & _M64
    return h ^ (h >> 47)


def pattern(element: bytes) -> tuple[int, int]:
    """(register index, run length) of an element: the low P bits of its hash pick the
    register; the value is 1 + the number of zero bits that follow, counted from the
    low end (a 1 placed above the 50 remaining bits caps it at Q + 1)."""
    h = murmurhash64a(element)
    rest = (h >> P) | (1 << Q)
    return h & (REGISTERS - 1), (rest & -rest).bit_length()


# -- header ------------------------------------------------------------------------------

def new_sparse() -> bytearray:
    """An empty HyperLogLog as Redis creates one: sparse, a single XZERO run of 16384
    registers, cached cardinality 0 (valid)."""
    value = bytearray(MAGIC + bytes([SPARSE]) + bytes(11))
    value += _xzero(REGISTERS)
    return value


def is_hll(value: bytes) -> bool:
    """Redis's isHLLObjectOrReply test: the header's magic and encoding, and the exact
    length of a dense value.  A sparse value's opcodes are checked only when read."""
    if len(value) < HEADER_SIZE or value[:4] != MAGIC or value[4] > SPARSE:
        return False
    return value[4] != DENSE or len(value) == DENSE_SIZE


def encoding_of(value: bytes) -> int:
    return value[4]


def card_cache(value: bytes) -> int | None:
    """The cached cardinality, or None if it is stale."""
    if value[15] & _STALE:
        return None
    return int.from_bytes(value[8:16], "little")


def set_card_cache(value: bytearray, card: int) -> None:
    # A count of LLONG_MIN (see `estimate`) is stored as Redis stores it: its top bit
    # then marks the cache stale.
    value[8:16] = (card & _M64).to_bytes(8, "little")


def invalidate_cache(value: bytearray) -> None:
    value[15] |= _STALE


# -- dense registers -----------------------------------------------------------------------
# Register i occupies bits 6i .. 6i+5 of the register bytes, counting from each byte's
# least significant bit.  Redis reads and writes one byte past the last register (the
# string's terminating NUL); here a missing byte reads as 0.

def dense_get(value: bytes, index: int) -> int:
    at = HEADER_SIZE + (index * 6 >> 3)
    shift = index * 6 & 7
    high = value[at + 1] if at + 1 < len(value) else 0
    return ((value[at] >> shift) | (high << (8 - shift))) & REGISTER_MAX


def _dense_put(value: bytearray, index: int, reg: int) -> None:
    at = HEADER_SIZE + (index * 6 >> 3)
    shift = index * 6 & 7
    value[at] = (value[at] & ~(REGISTER_MAX << shift) & 0xFF) | ((reg << shift) & 0xFF)
    if at + 1 < len(value):
        value[at + 1] = (value[at + 1] & ~(REGISTER_MAX >> (8 - shift)) & 0xFF) | (reg >> (8 - shift))


def dense_set(value: bytearray, index: int, count: int) -> int:
    """Raise register `index` to `count`; 1 if it changed, else 0."""
    if count > dense_get(value, index):
        _dense_put(value, index, count)
        return 1
    return 0


def with_dense_registers(value: bytes, regs: list[int]) -> bytearray:
    """A dense value with the header of `value` and registers `regs`."""
    out = bytearray(value[:HEADER_SIZE])
    out[4] = DENSE
    for i in range(0, REGISTERS, 4):
        v = regs[i] | regs[i + 1] << 6 | regs[i + 2] << 12 | regs[i + 3] << 18
        out += v.to_bytes(3, "little")
    return out


def dense_registers(value: bytes) -> list[int]:
    """All 16384 registers of a dense value: every 3 bytes hold 4 registers."""
    regs = []
    body = value[HEADER_SIZE:DENSE_SIZE]
    for i in range(0, len(body), 3):
        v = body[i] | body[i + 1] << 8 | body[i + 2] << 16
        regs += (v & 63, v >> 6 & 63, v >> 12 & 63, v >> 18)
    return regs


# -- sparse opcodes ------------------------------------------------------------------------

def _val(value: int, run: int) -> int:
    return 0x80 | (value - 1) << 2 | (run - 1)


def _zero(run: int) -> bytes:
    return bytes([run - 1])


def _xzero(run: int) -> bytes:
    return bytes([0x40 | (run - 1) >> 8, (run - 1) & 0xFF])


def _zeros(run: int) -> bytes:
    """A run of zero registers as Redis spells it when splitting one."""
    return _xzero(run) if run > _ZERO_MAX_LEN else _zero(run)


def _opcode(value: bytes, p: int) -> tuple[int, int, int]:
    """(register value, run length, opcode length) of the opcode at offset p.  An XZERO
    cut short reads its missing byte as 0, as Redis reads the string's NUL."""
    b = value[p]
    if b & 0x80:
        return ((b >> 2) & 0x1F) + 1, (b & 3) + 1, 1
    if b & 0x40:
        low = value[p + 1] if p + 1 < len(value) else 0
        return 0, ((b & 0x3F) << 8 | low) + 1, 2
    return 0, (b & 0x3F) + 1, 1


def _opcodes(value: bytes):
    p, end = HEADER_SIZE, len(value)
    while p < end:
        reg, run, size = _opcode(value, p)
        yield reg, run, size
        p += size


def decode_sparse(value: bytes) -> str:
    """PFDEBUG DECODE's text: ``z:<n>``, ``Z:<n>``, ``v:<value>,<n>`` per opcode."""
    words = []
    for reg, run, size in _opcodes(value):
        if reg:
            words.append(f"v:{reg},{run}")
        else:
            words.append(f"{'Z' if size == 2 else 'z'}:{run}")
    return " ".join(words)


def sparse_to_dense(value: bytes) -> bytearray:
    """The dense form of a sparse value, header kept (cached cardinality included); raises
    Corrupt unless the runs cover exactly 16384 registers.  A dense value is returned as
    is."""
    if value[4] == DENSE:
        return value if isinstance(value, bytearray) else bytearray(value)
    dense = bytearray(value[:HEADER_SIZE]) + bytes(DENSE_SIZE - HEADER_SIZE)
    dense[4] = DENSE
    for first, reg, run in _val_runs(value):
        for i in range(first, first + run):
            _dense_put(dense, i, reg)
    return dense


def _val_runs(value: bytes):
    """(first register, value, length) of each non-zero run of a sparse value; raises
    Corrupt (once the runs before are read, as Redis finds it) if a run crosses the last
    register or the runs do not cover exactly 16384 registers."""
    idx = 0
    for reg, run, _ in _opcodes(value):
        if reg:
            if idx + run > REGISTERS:
                raise Corrupt()
            yield idx, reg, run
        idx += run
    if idx != REGISTERS:
        raise Corrupt()


def sparse_set(value: bytearray, index: int, count: int, max_bytes: int) -> tuple[int, bytearray]:
    """Raise register `index` of a sparse value to `count`, editing it as Redis's
    hllSparseSet does.  Returns (1 if the register changed else 0, the value): the same
    bytearray edited in place, or a new dense one if the value had to be promoted (a
    count above 32, or a value that would grow past `max_bytes`).  Raises Corrupt if the
    opcodes do not reach the register."""
    changed, value, _ = _sparse_set(value, index, count, max_bytes, _FROM_START)
    return changed, value


# Where a scan of the opcodes may start: (offset of an opcode, the first register it
# covers, offset of the opcode before it or None).
_FROM_START = (HEADER_SIZE, 0, None)


def _sparse_set(value: bytearray, index: int, count: int, max_bytes: int, start):
    """`sparse_set` scanning from `start`, which must be an opcode at or before the one
    covering `index` with nothing edited before it since it was found.  Also returns
    such a start for a later call with a higher index (Redis edits a value only from the
    opcode before the one it changes onwards)."""
    if count > _VAL_MAX_VALUE:
        return (*_promote(value, index, count), _FROM_START)

    # Find the opcode covering the register, and the one before it (where tidying starts).
    p, first, prev = start
    before_prev = prev_first = None
    end = len(value)
    run = size = 0
    while p < end:
        b = value[p]
        if b & 0x80:
            run, size = (b & 3) + 1, 1
        elif b & 0x40:
            run, size = ((b & 0x3F) << 8 | (value[p + 1] if p + 1 < end else 0)) + 1, 2
        else:
            run, size = b + 1, 1
        if index < first + run:
            break
        before_prev, prev, prev_first = prev, p, first
        p += size
        first += run
    if run == 0 or p >= end:
        raise Corrupt()
    # A later scan may start at `prev` if this one went past it (its own prev is known):
    # nothing before it changes.
    following = _FROM_START if prev_first is None else (prev, prev_first, before_prev)
    reg = ((value[p] >> 2) & 0x1F) + 1 if value[p] & 0x80 else 0

    if reg and reg >= count:
        return 0, value, start                # the register is already as high
    if run == 1 and size == 1:
        # A one-byte run of one register (VAL or ZERO) is simply rewritten.
        value[p] = _val(count, 1)
    else:
        # Split the run around the register: [before] VAL(count) [after].
        last = first + run - 1
        seq = bytearray()
        if index != first:
            seq += bytes([_val(reg, index - first)]) if reg else _zeros(index - first)
        seq.append(_val(count, 1))
        if index != last:
            seq += bytes([_val(reg, last - index)]) if reg else _zeros(last - index)
        grow = len(seq) - size
        if grow > 0 and len(value) + grow > max_bytes:
            return (*_promote(value, index, count), _FROM_START)
        new_length = len(value) + grow
        value[p:p + size] = seq
        # An XZERO cut short at the end loses seq's last byte, as in Redis.
        del value[new_length:]
    _merge_adjacent_vals(value, prev if prev is not None else HEADER_SIZE)
    invalidate_cache(value)
    return 1, value, following


def store_registers(value: bytearray, regs: list[int], max_bytes: int) -> bytearray:
    """PFMERGE's write: raise every register of `value` to `regs` (a maximum that
    already includes them), register by register as Redis does, so a sparse value gets
    Redis's opcodes and turns dense where Redis's would."""
    if value[4] == DENSE:
        return with_dense_registers(value, regs)
    start = _FROM_START
    for index, reg in enumerate(regs):
        if not reg:
            continue
        _, value, start = _sparse_set(value, index, reg, max_bytes, start)
        if value[4] == DENSE:
            # Promoted: every register left ends up at its maximum.
            return with_dense_registers(value, regs)
    return value


def _merge_adjacent_vals(value: bytearray, p: int) -> None:
    """Redis's local tidy-up after an edit: over at most 5 opcodes from `p`, fold two
    adjacent VALs of the same value into one while the run fits in a VAL."""
    scans = 5
    while p < len(value) and scans:
        scans -= 1
        b = value[p]
        if not b & 0x80:
            p += 2 if b & 0x40 else 1
            continue
        if p + 1 < len(value) and value[p + 1] & 0x80:
            reg, run, _ = _opcode(value, p)
            reg2, run2, _ = _opcode(value, p + 1)
            if reg == reg2 and run + run2 <= _VAL_MAX_LEN:
                value[p + 1] = _val(reg, run + run2)
                del value[p]
                continue                      # try the merged run with its right neighbour
        p += 1


def _promote(value: bytearray, index: int, count: int) -> tuple[int, bytearray]:
    dense = sparse_to_dense(value)
    dense_set(dense, index, count)
    return 1, dense


def add(value: bytearray, element: bytes, max_bytes: int) -> tuple[int, bytearray]:
    """PFADD of one element: (1 if a register changed else 0, the value, maybe promoted)."""
    index, count = pattern(element)
    if value[4] == DENSE:
        return dense_set(value, index, count), value
    return sparse_set(value, index, count, max_bytes)


def merge_into(regs: list[int], value: bytes) -> None:
    """regs[i] = max(regs[i], register i of `value`) (Redis's hllMerge); raises Corrupt
    if a sparse value's runs do not cover exactly 16384 registers."""
    if value[4] == DENSE:
        for i, reg in enumerate(dense_registers(value)):
            if reg > regs[i]:
                regs[i] = reg
        return
    for first, reg, run in _val_runs(value):
        for i in range(first, first + run):
            if reg > regs[i]:
                regs[i] = reg


# -- the estimator ---------------------------------------------------------------------------

def histogram(value: bytes) -> list[int]:
    """How many registers hold each value 0..63; raises Corrupt for a sparse value whose
    runs do not cover exactly 16384 registers."""
    hist = [0] * 64
    if value[4] == DENSE:
        for reg in dense_registers(value):
            hist[reg] += 1
        return hist
    idx = 0
    for reg, run, _ in _opcodes(value):
        hist[reg] += run
        idx += run
    if idx != REGISTERS:
        raise Corrupt()
    return hist


def _sigma(x: float) -> float:
    # Ertl, "New cardinality estimation algorithms for HyperLogLog sketches", eq. for σ.
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if z == before:
            return z


def _tau(x: float) -> float:
    # Ertl's τ, iterated until the double stops changing, as Redis does.
    if x == 0.0 or x == 1.0:
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        before = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == before:
            return z / 3


def estimate(hist: list[int]) -> int:
    """Redis 7.0's hllCount from a register histogram (Ertl's improved estimator, not the
    bias tables of older versions), in the same double arithmetic."""
    m = float(REGISTERS)
    z = m * _tau((m - hist[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += hist[j]
        z *= 0.5
    z += m * _sigma(hist[0] / m)
    if z == 0.0 or _ALPHA_INF * m * m / z >= _INT64_LIMIT:
        # Redis divides by zero (registers all 51 or more) or rounds a value past
        # long long: x86's llroundl then gives LLONG_MIN, which PFCOUNT replies as is.
        return -_INT64_LIMIT
    e = _ALPHA_INF * m * m / z
    # llroundl: halves away from zero (e is never negative).
    whole = math.floor(e)
    return whole + 1 if e - whole >= 0.5 else whole


def count(value: bytes) -> int:
    return estimate(histogram(value))


def count_registers(regs: list[int]) -> int:
    hist = [0] * 64
    for reg in regs:
        hist[reg] += 1
    return estimate(hist)


# -- PFSELFTEST ------------------------------------------------------------------------------

_SELFTEST_CYCLES = 10        # Redis: 1000 (kept short: this runs on the reactor)
_SELFTEST_ELEMENTS = 100000  # Redis: 10,000,000


def selftest(rng, sparse_max_bytes: int) -> str | None:
    """Redis's PFSELFTEST, on fewer cycles and elements: registers keep what is written
    to them without touching their neighbours; and counting the same elements in a dense
    and a sparse HyperLogLog agrees, stays sparse while small, and errs by less than six
    standard errors.  The error text on failure, else None."""
    dense = bytearray(DENSE_SIZE)
    for _ in range(_SELFTEST_CYCLES):
        expected = [rng.getrandbits(6) for _ in range(REGISTERS)]
        for i, reg in enumerate(expected):
            _dense_put(dense, i, reg)
        for i, reg in enumerate(expected):
            got = dense_get(dense, i)
            if got != reg:
                return f"TESTFAILED Register {i} should be {reg} but is {got}"

    dense = bytearray(MAGIC + bytes(DENSE_SIZE - 4))
    sparse = new_sparse()
    relerr = 1.04 / math.sqrt(REGISTERS)
    seed = rng.getrandbits(64)
    checkpoint = 1
    for j in range(1, _SELFTEST_ELEMENTS + 1):
        element = (j ^ seed).to_bytes(8, "little")
        index, run = pattern(element)
        dense_set(dense, index, run)
        _, sparse = add(sparse, element, sparse_max_bytes)
        if j != checkpoint:
            continue
        if j < sparse_max_bytes / 2 and sparse[4] != SPARSE:
            return "TESTFAILED sparse encoding not used"
        card = count(dense)
        if card != count(sparse):
            return "TESTFAILED dense/sparse disagree"
        maxerr = 1 if j == 10 else math.ceil(relerr * 6 * checkpoint)
        if abs(checkpoint - card) > maxerr:
            return f"TESTFAILED Too big error. card:{checkpoint} abserr:{abs(checkpoint - card)}"
        checkpoint *= 10
    return None
