"""`EtcdCluster.reconcile()` carrying out placement on one node, without etcd or sockets:
the placement is handed in as parsed records, the Raft transport is a stub and time is a
`Clock`.  Checks the incarnation marker `<data_dir>/<ns>-<pid>.replica` that keeps data of
another incarnation (a namespace re-created, a replica re-added under a new id) from
passing for the current one."""

from __future__ import annotations

import json
import os
import random

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from zan.node.config import build_config
from zan.node.coordinator import EtcdCluster
from zan.node.namespaces import KeyRouter
from zan.pd.model import GID_BLOCK, NamespaceMeta, PartitionReplicaInfo, gen_node_id
from zan.pd.register import NamespaceRecord
from zan.raft.wal import WalLogStore

ME = gen_node_id(1, "127.0.0.1", 12381, 12380)
OTHER = gen_node_id(2, "127.0.0.2", 12381, 12380)


class _Transport:
    def __init__(self, *callbacks):
        self.sent = []

    def add_peer(self, node_id, host, port):
        pass

    def send(self, batch):
        self.sent.extend(batch)

    def stop(self):
        return succeed(None)


class _Node:
    def __init__(self):
        self.rng = random.Random(1)
        self.settings = {"stale_read": False}
        self.router = KeyRouter({}, "default")


@pytest.fixture
def host(tmp_path):
    config = build_config({"etcd_cluster_addresses": "http://127.0.0.1:2379",
                           "cluster_id": "test", "data_dir": str(tmp_path), "tick_ms": 100,
                           "election_tick": 10})
    clock = Clock()
    clock.advance(1_700_000_000)
    wal = WalLogStore(os.path.join(str(tmp_path), "raft-wal"))
    cluster = EtcdCluster(_Node(), config, clock, wal, 1, ME, register=None,
                          transport_factory=lambda *callbacks: _Transport())
    try:
        yield cluster
    finally:
        cluster.stop()
        for p in cluster.by_group.values():
            p.state_machine.engine.close()
        wal.close()


def placement(raft_nodes=(ME,), ids=None, magic=7, partition_num=1):
    ids = ids if ids is not None else {n: i + 1 for i, n in enumerate(raft_nodes)}
    meta = NamespaceMeta(partition_num=partition_num, replica=len(raft_nodes),
                         magic_code=magic, min_gid=GID_BLOCK)
    info = PartitionReplicaInfo(tuple(raft_nodes), ids, {}, max(ids.values(), default=0))
    return {"ns": NamespaceRecord("ns", meta, {0: info}, {})}


def data_path(host):
    return os.path.join(host.config.data_dir, "ns-0")


def marker(host):
    with open(data_path(host) + ".replica", encoding="utf-8") as f:
        return json.load(f)


def reconcile(host, namespaces):
    host.set_namespaces(namespaces)
    host.reconcile()


def test_nothing_happens_before_placement_was_read(host):
    host.reconcile()
    assert host.by_group == {}


def test_placed_replica_is_started_and_its_incarnation_recorded(host):
    reconcile(host, placement())
    partition = host.by_group[GID_BLOCK]
    assert (partition.replica_id, host.local[("ns", 0)]) == (1, partition)
    assert marker(host) == {"group_id": GID_BLOCK, "replica_id": 1, "magic_code": 7}
    # Slot 0 of a partition without a RealLeader founds the group: alone, it elects itself.
    host.driver.start()
    for _ in range(40):
        host.reactor.advance(0.1)
    assert partition.is_leader


def test_replica_dropped_from_placement_is_destroyed_with_its_marker(host):
    reconcile(host, placement())
    reconcile(host, placement(raft_nodes=(OTHER,)))
    assert host.by_group == {} and host.local == {}
    assert not os.path.exists(data_path(host))
    assert not os.path.exists(data_path(host) + ".replica")
    assert GID_BLOCK not in host.log_store.group_ids()


def test_replica_re_added_under_a_new_id_starts_from_empty_data(host):
    reconcile(host, placement())
    sentinel = os.path.join(data_path(host), "SENTINEL")
    open(sentinel, "w").close()
    reconcile(host, placement(raft_nodes=(OTHER, ME), ids={OTHER: 2, ME: 3}))
    assert host.by_group[GID_BLOCK].replica_id == 3
    assert marker(host)["replica_id"] == 3
    assert not os.path.exists(sentinel)


def _leave_data(host, found):
    """Data of a replica not running now, with `found` as its marker (None: no marker)."""
    path = data_path(host)
    os.makedirs(path)
    open(os.path.join(path, "SENTINEL"), "w").close()
    if found is not None:
        with open(path + ".replica", "w", encoding="utf-8") as f:
            json.dump(found, f)
    return os.path.join(path, "SENTINEL")


def test_data_of_the_same_incarnation_is_kept(host):
    sentinel = _leave_data(host, {"group_id": GID_BLOCK, "replica_id": 1, "magic_code": 7})
    reconcile(host, placement())
    assert os.path.exists(sentinel)


@pytest.mark.parametrize("found", [
    {"group_id": GID_BLOCK, "replica_id": 1, "magic_code": 6},    # namespace re-created
    {"group_id": GID_BLOCK, "replica_id": 2, "magic_code": 7},    # another replica id
    {"group_id": 3 * GID_BLOCK, "replica_id": 1, "magic_code": 7},  # another group
    None,                                                          # unknown origin
], ids=["magic", "replica", "group", "no-marker"])
def test_data_of_another_incarnation_is_discarded(host, found):
    sentinel = _leave_data(host, found)
    reconcile(host, placement())
    assert not os.path.exists(sentinel)
    assert host.by_group[GID_BLOCK].replica_id == 1
    assert marker(host) == {"group_id": GID_BLOCK, "replica_id": 1, "magic_code": 7}


def test_unparsable_marker_counts_as_another_incarnation(host):
    sentinel = _leave_data(host, None)
    with open(data_path(host) + ".replica", "w", encoding="utf-8") as f:
        f.write("{not json")
    reconcile(host, placement())
    assert not os.path.exists(sentinel)
    assert marker(host)["magic_code"] == 7


def test_self_removed_replica_waits_for_the_removing_mark_then_goes(host):
    reconcile(host, placement(raft_nodes=(ME, OTHER)))
    partition = host.by_group[GID_BLOCK]
    partition.removed = True        # it applied its own removal; our placement is older
    for _ in range(2):
        reconcile(host, placement(raft_nodes=(ME, OTHER)))
        assert host.by_group[GID_BLOCK] is partition
    namespaces = placement(raft_nodes=(ME, OTHER))
    info = namespaces["ns"].partitions[0].with_removing(ME, 1_000)
    namespaces["ns"].partitions[0] = info
    for _ in range(2):
        reconcile(host, namespaces)
        assert host.by_group == {}
