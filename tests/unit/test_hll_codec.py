"""The HyperLogLog representation (zan.commands.hll_codec) against figures taken from
redis-server 7.0: hashes, sparse edits, promotion, dense registers and the estimator."""

import random

import pytest

from zan.commands import hll_codec as hll

# (element, register index, run length), from PFADD + PFDEBUG DECODE on redis-server.
PATTERNS = [
    (b"", 5938, 2), (b"a", 12711, 2), (b"ab", 719, 1), (b"abcdefg", 5634, 2),
    (b"abcdefgh", 1383, 1), (b"abcdefghi", 6903, 1), (b"hello world", 9399, 4),
    (b"0123456789abcdefX", 11257, 1),
]


def filled(elements, max_bytes=3000):
    value = hll.new_sparse()
    for e in elements:
        _, value = hll.add(value, e, max_bytes)
    return value


@pytest.mark.parametrize("element,index,run", PATTERNS)
def test_pattern_matches_redis(element, index, run):
    assert hll.pattern(element) == (index, run)
    value = filled([element])
    assert hll.decode_sparse(value) == f"Z:{index} v:{run},1 Z:{hll.REGISTERS - index - 1}"


def test_murmurhash64a_is_64_bit_and_seeded():
    h = hll.murmurhash64a(b"hello")
    assert 0 <= h < 1 << 64
    assert hll.murmurhash64a(b"hello", seed=0) != h
    assert h & (hll.REGISTERS - 1) == hll.pattern(b"hello")[0]


def test_new_value_is_one_xzero_run():
    value = hll.new_sparse()
    assert bytes(value) == b"HYLL\x01" + bytes(11) + b"\x7f\xff"
    assert hll.is_hll(value) and hll.card_cache(value) == 0 and hll.count(value) == 0


def test_three_elements_give_redis_bytes_and_cache():
    value = filled([b"a", b"b", b"c"])
    hll.invalidate_cache(value)
    assert bytes(value) == (b"HYLL\x01" + bytes(10) + b"\x80"
                            + b"`\xf3\x80P\xb1\x84K\xfb\x80BZ")
    assert hll.card_cache(value) is None
    assert hll.decode_sparse(value) == "Z:8436 v:1,1 Z:4274 v:2,1 Z:3068 v:1,1 Z:603"
    assert hll.count(value) == 3
    hll.set_card_cache(value, 3)
    assert bytes(value[8:16]) == b"\x03" + bytes(7) and hll.card_cache(value) == 3


def test_counts_match_redis_sparse_and_dense():
    value = filled(str(i).encode() for i in range(1, 201))
    assert hll.encoding_of(value) == hll.SPARSE
    assert hll.count(value) == 201
    dense = hll.sparse_to_dense(value)
    assert len(dense) == hll.DENSE_SIZE and hll.count(dense) == 201
    for i in range(1, 20001):
        _, dense = hll.add(dense, str(i).encode(), 3000)
    assert hll.count(dense) == 19891


def test_adjacent_equal_values_fold_into_one_run():
    value = hll.new_sparse()
    for index in (10, 11, 12):
        assert hll.sparse_set(value, index, 3, 3000) == (1, value)
    assert hll.decode_sparse(value) == "z:10 v:3,3 Z:16371"
    assert hll.sparse_set(value, 11, 2, 3000) == (0, value)    # already higher
    hll.sparse_set(value, 11, 5, 3000)
    assert hll.decode_sparse(value) == "z:10 v:3,1 v:5,1 v:3,1 Z:16371"


def test_promotion_on_size_and_on_large_runs():
    value = hll.new_sparse()
    # Splitting the XZERO into XZERO VAL XZERO grows the value by 3 bytes.
    changed, out = hll.sparse_set(value, 1000, 1, len(value) + 2)
    assert changed == 1 and hll.encoding_of(out) == hll.DENSE
    assert hll.dense_get(out, 1000) == 1 and hll.count(out) == 1
    changed, out = hll.sparse_set(hll.new_sparse(), 5, 33, 3000)   # above a VAL's 32
    assert hll.encoding_of(out) == hll.DENSE and hll.dense_get(out, 5) == 33


def test_sparse_and_dense_agree_and_promotion_keeps_registers():
    rng = random.Random(1)
    elements = [rng.randbytes(rng.randrange(1, 20)) for _ in range(3000)]
    sparse = hll.new_sparse()
    dense = hll.sparse_to_dense(hll.new_sparse())
    for n, e in enumerate(elements, 1):
        _, sparse = hll.add(sparse, e, 3000)
        _, dense = hll.add(dense, e, 3000)
        if n % 250 == 0:
            assert hll.count(sparse) == hll.count(dense)
    assert hll.encoding_of(sparse) == hll.DENSE
    assert hll.dense_registers(sparse) == hll.dense_registers(dense)


def test_dense_registers_round_trip():
    rng = random.Random(2)
    regs = [rng.randrange(64) for _ in range(hll.REGISTERS)]
    value = hll.with_dense_registers(hll.new_sparse()[:16], regs)
    assert len(value) == hll.DENSE_SIZE
    assert hll.dense_registers(value) == regs
    assert [hll.dense_get(value, i) for i in range(0, hll.REGISTERS, 97)] == regs[::97]
    merged = [0] * hll.REGISTERS
    hll.merge_into(merged, value)
    assert merged == regs


HEADER = b"HYLL\x01" + bytes(11)


@pytest.mark.parametrize("value", [
    HEADER + b"\x7f\xff\x83",          # runs over 16384 registers
    HEADER + b"\x7f\xfe",              # runs short of 16384
    HEADER + b"\x7f\xfd\x83",          # a VAL crossing the end
    HEADER,                            # no runs at all
])
def test_corrupt_sparse_values_are_detected(value):
    assert hll.is_hll(value)
    with pytest.raises(hll.Corrupt):
        hll.count(value)
    with pytest.raises(hll.Corrupt):
        hll.merge_into([0] * hll.REGISTERS, value)
    with pytest.raises(hll.Corrupt):
        hll.sparse_to_dense(value)


def test_header_checks():
    assert not hll.is_hll(b"HYLL\x01")
    assert not hll.is_hll(b"HYLX\x01" + bytes(13))
    assert not hll.is_hll(b"HYLL\x02" + bytes(13))
    assert not hll.is_hll(b"HYLL\x00" + bytes(13))             # dense of the wrong size
    assert hll.is_hll(b"HYLL\x00" + bytes(hll.DENSE_SIZE - 5))


def test_estimator_edges():
    assert hll.count_registers([0] * hll.REGISTERS) == 0
    assert hll.count_registers([1] + [0] * (hll.REGISTERS - 1)) == 1
    # Registers all at 51 or more: redis-server answers LLONG_MIN.
    assert hll.count_registers([51] * hll.REGISTERS) == -(1 << 63)
    assert hll.count_registers([63] * hll.REGISTERS) == -(1 << 63)
    assert hll.count_registers([40] * hll.REGISTERS) == 12994641697113596


def test_selftest_passes():
    assert hll.selftest(random.Random(0), 3000) is None


@pytest.mark.parametrize("seed,limit", [(0, 3000), (1, 3000), (2, 12000), (3, 300)])
def test_store_registers_edits_as_one_set_per_register(seed, limit):
    # PFMERGE's write resumes each scan where the last edit left off; the bytes must be
    # those of setting every register with a scan from the start, as Redis does.
    rng = random.Random(seed)
    dest = filled([rng.randbytes(6) for _ in range(rng.randrange(0, 200))], limit)
    source = filled([rng.randbytes(6) for _ in range(rng.randrange(0, 2000))], 10 ** 6)
    regs = [0] * hll.REGISTERS
    hll.merge_into(regs, dest)
    hll.merge_into(regs, source)
    expected = bytearray(dest)
    for index, reg in enumerate(regs):
        if reg:
            if hll.encoding_of(expected) == hll.DENSE:
                hll.dense_set(expected, index, reg)
            else:
                _, expected = hll.sparse_set(expected, index, reg, limit)
    assert hll.store_registers(bytearray(dest), regs, limit) == expected
