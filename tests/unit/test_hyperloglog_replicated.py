"""HyperLogLog commands on a replicated namespace (a 3-node cluster in one reactor): every
replica holds the same bytes, PFCOUNT's cached count included, and PFMERGE and
multi-key PFCOUNT work within one partition (hash tags) and answer CROSSSLOT across."""

import pytest

from zan.commands import hll_codec as hll
from zan.errors import ZanError
from zan.node.namespaces import partition_of
from tests.support.inprocess import running_cluster
from tests.support.keys import keys_in


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path) as c:
        yield c


def replica_values(cluster, key):
    """The value of `key` in each node's own replica."""
    cluster.run(1.0)
    return {i: cluster.call(i, "stale.get", key) for i in cluster.nodes}


def test_adds_and_cached_count_replicate(cluster):
    key, = keys_in(0, 1, "h", 2)
    elements = [f"e{i}" for i in range(2000)]
    assert cluster.call(1, "pfadd", key, *elements[:20]) == 1
    assert cluster.call(2, "pfadd", key, *elements[:20]) == 0
    values = replica_values(cluster, key)
    assert len(set(values.values())) == 1
    value = values[1]
    assert hll.encoding_of(value) == hll.SPARSE and hll.card_cache(value) is None

    counts = {i: cluster.call(i, "pfcount", key) for i in cluster.nodes}
    assert set(counts.values()) == {hll.count(value)}
    # PFCOUNT stored its count in the value, on every replica.
    values = replica_values(cluster, key)
    assert len(set(values.values())) == 1
    assert hll.card_cache(values[1]) == counts[1]
    assert {cluster.call(i, "get", key) for i in cluster.nodes} == {values[1]}

    # Enough elements to turn it dense, from another node.
    assert cluster.call(3, "pfadd", key, *elements) == 1
    values = replica_values(cluster, key)
    assert len(set(values.values())) == 1 and hll.encoding_of(values[1]) == hll.DENSE
    assert cluster.call(2, "pfcount", key) == hll.count(values[1])


def test_merge_within_a_partition_and_crossslot_across(cluster):
    a, b, dst = "{t}:a", "{t}:b", "{t}:dst"
    assert cluster.call(1, "pfadd", a, "x", "y", "z") == 1
    assert cluster.call(2, "pfadd", b, "z", "w") == 1
    assert cluster.call(3, "pfcount", a, b) == 4
    assert cluster.call(1, "pfmerge", dst, a, b) == b"OK"
    values = replica_values(cluster, dst)
    assert len(set(values.values())) == 1
    assert hll.count(values[1]) == 4
    assert cluster.call(2, "pfcount", dst) == 4

    other, = keys_in(1 - partition_of(b"t", 2), 1, "o", 2)
    assert cluster.call(1, "pfadd", other, "q") == 1
    for argv in (("pfmerge", dst, other), ("pfcount", a, other)):
        error = cluster.call(2, *argv)
        assert isinstance(error, ZanError) and "CROSSSLOT" in str(error)
