"""Plain (compat namespace) keys chosen by the partition they fall in."""

from __future__ import annotations

import itertools

from zan.node.namespaces import partition_of

__all__ = ["keys_in"]


def keys_in(pid: int, count: int, prefix: str = "k", partitions: int = 8) -> list[str]:
    """The first `count` keys `<prefix><n>` that live in partition `pid` of `partitions`."""
    out = []
    for i in itertools.count():
        key = f"{prefix}{i}"
        if partition_of(key.encode(), partitions) == pid:
            out.append(key)
            if len(out) == count:
                return out
