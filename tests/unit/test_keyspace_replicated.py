"""KEYS, RANDOMKEY and SORT on a replicated node (a 3-node cluster in one reactor): SORT
runs on its key's partition, where keys its BY and GET patterns name in another
partition read as missing, and a STORE destination elsewhere is CROSSSLOT."""

import random

import pytest

from zan.errors import ZanError
from zan.node.keyspace_runner import KeyspaceRunner
from zan.node.namespaces import partition_of
from tests.support.inprocess import InProcessCluster
from tests.support.keys import keys_in


@pytest.fixture
def cluster(tmp_path):
    c = InProcessCluster(tmp_path)
    try:
        for node in c.nodes.values():
            KeyspaceRunner(node.dispatcher, node, random.Random(node.node_id)).install()
        c.wait_leader(0)
        c.wait_leader(1)
        yield c
    finally:
        c.close()




def test_sort_reads_its_own_partition_only(cluster):
    (lst, dst), (elsewhere,) = keys_in(0, 2, "l", 2), keys_in(1, 1, "d", 2)
    # Elements whose weight keys w_<e> fall in either partition.
    elements = [str(i) for i in range(8)]
    assert cluster.call(1, "rpush", lst, *elements) == 8
    local = {e for e in elements if partition_of(f"w_{e}".encode(), 2) == 0}
    assert local and len(local) < len(elements)
    for e in elements:
        assert cluster.call(2, "set", f"w_{e}", str(100 - int(e))) == b"OK"
    got = cluster.call(3, "sort", lst, "by", "w_*", "get", "#", "get", "w_*")
    pairs = list(zip(got[::2], got[1::2]))
    # Weights read in the list's partition only; the others are missing (score 0, first).
    assert {e.decode() for e, w in pairs if w is not None} == local
    missing = sorted(e for e in elements if e not in local)
    assert [e.decode() for e, _ in pairs[:len(missing)]] == missing
    assert cluster.call(1, "sort", lst, "store", dst) == 8
    assert cluster.call(2, "lrange", dst, "0", "-1") == [e.encode() for e in elements]
    error = cluster.call(1, "sort", lst, "store", elsewhere)
    assert isinstance(error, ZanError) and "CROSSSLOT" in str(error)


def test_keys_and_randomkey_cover_every_partition(cluster):
    keys = keys_in(0, 3, "k", 2) + keys_in(1, 3, "k", 2)
    for key in keys:
        assert cluster.call(2, "set", key, "v") == b"OK"
    assert sorted(cluster.call(1, "keys", "*")) == sorted(k.encode() for k in keys)
    assert sorted(cluster.call(3, "keys", "k[0-9]")) == sorted(
        k.encode() for k in keys if len(k) == 2)
    assert {cluster.call(1, "randomkey") for _ in range(10)} <= {k.encode() for k in keys}
    error = cluster.call(1, "rename", keys[0], keys[-1])
    assert isinstance(error, ZanError) and "CROSSSLOT" in str(error)
