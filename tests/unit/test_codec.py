"""The key layout: round trips, and byte order equal to the order we need."""

import math
import struct

from hypothesis import given, strategies as st

from zan.store import codec
from zan.store.keyspace import Meta, Txn, lookup, new_collection, remove_key, store_meta


finite = st.floats(allow_nan=False)


@given(finite, finite)
def test_sortable_scores_sort_like_numbers(a, b):
    ka, kb = codec.sortable_score(a), codec.sortable_score(b)
    assert (ka < kb) == (a < b) and (ka == kb) == (a == b)
    assert codec.unsortable_score(ka) == (0.0 if a == 0 else a)


def test_zero_signs_share_a_key_and_infinities_bound_everything():
    assert codec.sortable_score(-0.0) == codec.sortable_score(0.0)
    assert codec.sortable_score(-math.inf) < codec.sortable_score(-1e308)
    assert codec.sortable_score(math.inf) > codec.sortable_score(1e308)


@given(st.integers(-(1 << 62), 1 << 62), st.integers(-(1 << 62), 1 << 62))
def test_list_sequences_sort_like_integers(a, b):
    ea, eb = codec.encode_list_seq(a), codec.encode_list_seq(b)
    assert (ea < eb) == (a < b)
    assert codec.decode_list_seq(ea) == a


@given(st.binary(max_size=40), st.integers(0, (1 << 64) - 1), st.binary(max_size=40))
def test_element_keys_round_trip_and_group_by_collection(pk, version, suffix):
    prefix = codec.elem_prefix(codec.HASH_ELEM, pk, version)
    key = prefix + suffix
    assert codec.decode_elem_key(key) == (codec.HASH_ELEM, pk, version, suffix)
    end = codec.prefix_end(prefix)
    assert key.startswith(prefix) and (end is None or key < end)


@given(st.integers(1, 5), st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
       st.binary(max_size=30))
def test_meta_round_trip(type_, expire_at, version, payload):
    raw = codec.encode_meta(type_, expire_at, version, payload)
    assert codec.decode_meta_header(raw) == (type_, expire_at, version)
    assert raw[codec.META_HEADER.size:] == payload


@given(st.integers(0, (1 << 64) - 2), st.binary(max_size=30))
def test_expiry_keys_round_trip_in_deadline_order(when, pk):
    key = codec.expiry_key(when, pk)
    assert codec.decode_expiry_key(key) == (when, pk)
    assert codec.expiry_key(when, pk) < codec.expiry_key(when + 1, b"")


def test_prefix_end():
    assert codec.prefix_end(b"ab") == b"ac"
    assert codec.prefix_end(b"a\xff") == b"b"
    assert codec.prefix_end(b"\xff\xff") is None


class DictSource:
    def __init__(self):
        self.data = {}

    def get(self, key):
        return self.data.get(key)

    def iterator(self, start=None, stop=None, reverse=False, include_value=True):
        keys = sorted(k for k in self.data if (start is None or k >= start)
                      and (stop is None or k < stop))
        for k in (reversed(keys) if reverse else keys):
            yield (k, self.data[k]) if include_value else k


def commit(src, txn):
    for k, v in txn.changes.items():
        if v is None:
            src.data.pop(k, None)
        else:
            src.data[k] = v


def test_keyspace_counts_keys_and_keeps_the_expiry_index_in_step():
    src = DictSource()
    t = Txn(src, now_ms=1000, index=7, writable=True)
    meta = new_collection(t, codec.T_HASH, b"k")
    assert meta.version == 7 and meta.count == 0
    meta.expire_at = 5000
    store_meta(t, b"h", meta)
    store_meta(t, b"s", Meta(codec.T_STRING, 0, 0, b"v"))
    assert (t.keys_delta, t.expires_delta) == (2, 1)
    commit(src, t)
    assert codec.expiry_key(5000, b"h") in src.data
    t = Txn(src, now_ms=6000, index=8, writable=True)
    assert lookup(t, b"h") is None             # expired: invisible
    remove_key(t, b"h")
    assert (t.keys_delta, t.expires_delta) == (-1, -1)
    commit(src, t)
    assert not any(k.startswith(codec.EXPIRY) for k in src.data)
    assert struct.unpack(">q", codec.encode_i64(-5))[0] == -5
