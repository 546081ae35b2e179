"""Zan's smart client: asks PD for a namespace's partition map and sends each command to the
leader of its key's partition, re-asking PD and retrying when the cluster changes.

`zan.client.cluster.ZanClient` is the client; `zan.client.pd` holds the PD lookup
(`PDClient`, `PartitionTracker`, `PartitionMap`, `partition_of`); `zan.client.testing` has
an in-memory PD for tests.
"""

__all__ = ["cluster", "pd", "testing"]
