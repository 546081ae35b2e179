import mmh3
import pytest

from zan.errors import NamespaceNotFound, RespError
from zan.node.config import NamespaceConfig
from zan.node.namespaces import KeyRouter, partition_of


def router(default="default"):
    return KeyRouter({"default": NamespaceConfig("default", partition_num=8),
                      "users": NamespaceConfig("users", partition_num=16)}, default)


def test_partition_is_unsigned_murmur3_of_table_and_key():
    # ZanRedisDB: murmur3_32("table:key", seed 0) as uint32, mod partition count.
    assert partition_of(b"t:k", 16) == (mmh3.hash(b"t:k", 0) & 0xFFFFFFFF) % 16
    r = router().route(b"users:t:k")
    assert (r.namespace, r.pk, r.partition) == ("users", b"t:k", partition_of(b"t:k", 16))


def test_compat_namespace_takes_unknown_prefixes_whole():
    r = router().route(b"foo")
    assert (r.namespace, r.pk) == ("default", b"foo")
    assert router().route(b"nons:t:k").pk == b"nons:t:k"


def test_without_compat_mode_keys_need_a_known_namespace():
    with pytest.raises(RespError, match="invalid redis key"):
        router("").route(b"foo")
    with pytest.raises(NamespaceNotFound):
        router("").route(b"nons:t:k")
    with pytest.raises(RespError, match="invalid table name"):
        router("").route(b"users:notable")
    with pytest.raises(RespError, match="invalid key size"):
        router().route(b"k" * 10241)
