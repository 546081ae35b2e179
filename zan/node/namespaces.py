"""Which namespace and partition a Redis key belongs to, and its key inside them.

A key is ``namespace:table:key``; its partition is the unsigned murmur3_32 (seed 0) of
``table:key`` modulo the namespace's partition count — byte for byte what ZanRedisDB
and its Go SDK compute.  In compat mode a key whose prefix is not a namespace we know
belongs to the default namespace, whole, so plain Redis clients work unchanged.

In the default namespace a key with a Redis Cluster hash tag (``{...}``: the bytes between
the first ``{`` and the next ``}``, if any) is placed by its tag alone, so keys an
application wrote for Redis Cluster (``{user1}:a``, ``{user1}:b``) share a partition, as
they share a slot there.  Keys of other namespaces are placed as ZanRedisDB places them.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmh3

from zan.errors import NamespaceNotFound, RespError
from zan.node.config import NAME_RE, NamespaceConfig
from zan.store.keyspace import MAX_KEY

__all__ = ["KeyRoute", "KeyRouter", "partition_of", "hash_tag"]


_hash = mmh3.hash


def partition_of(pk: bytes, partition_num: int) -> int:
    return mmh3.hash(pk, 0, signed=False) % partition_num


def hash_tag(pk: bytes) -> bytes:
    """What Redis Cluster hashes of a key: its hash tag if it has a non-empty one."""
    start = pk.find(b"{")
    if start >= 0:
        end = pk.find(b"}", start + 1)
        if end > start + 1:
            return pk[start + 1:end]
    return pk


@dataclass(frozen=True, slots=True)
class KeyRoute:
    namespace: str
    partition: int
    pk: bytes


class KeyRouter:
    def __init__(self, namespaces: dict[str, NamespaceConfig], default_namespace: str = ""):
        self._namespaces = {name.encode(): ns for name, ns in namespaces.items()}
        self._default = namespaces.get(default_namespace) if default_namespace else None

    def update(self, namespaces: dict[str, NamespaceConfig], default_namespace: str = "") -> None:
        self.__init__(namespaces, default_namespace)

    def partition_count(self, namespace: str) -> int:
        return self._namespaces[namespace.encode()].partition_num

    def partition_of_pk(self, namespace: str, pk: bytes) -> int:
        """The partition of primary key `pk` of `namespace` (as `locate` places it)."""
        ns = self._namespaces[namespace.encode()]
        if ns is self._default:
            pk = hash_tag(pk)
        return _hash(pk, 0, False) % ns.partition_num

    def route(self, key: bytes) -> KeyRoute:
        return KeyRoute(*self.locate(key))

    def locate(self, key: bytes) -> tuple[str, int, bytes]:
        """`route` as a plain (namespace, partition, pk) tuple, for the hot path."""
        if len(key) > MAX_KEY:
            raise RespError("ERR invalid key size")
        prefix, sep, pk = key.partition(b":")
        ns = self._namespaces.get(prefix) if sep else None
        if ns is not None:
            table, sep2, _ = pk.partition(b":")
            if not sep2 or not NAME_RE.match(table.decode("latin-1")):
                raise RespError("ERR invalid table name")
        elif self._default is not None:
            ns, pk = self._default, key
        elif not sep or not prefix:
            raise RespError("ERR invalid redis key")
        else:
            raise NamespaceNotFound()
        if ns is self._default and b"{" in pk:
            return ns.name, _hash(hash_tag(pk), 0, False) % ns.partition_num, pk
        return ns.name, _hash(pk, 0, False) % ns.partition_num, pk
