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


@pytest.mark.parametrize("key,hashed", [
    (b"{user1}:following", b"user1"), (b"{user1}:followers", b"user1"),
    (b"foo{}{bar}", b"foo{}{bar}"), (b"foo{{bar}}zap", b"{bar"),
    (b"foo{bar}{zap}", b"bar"), (b"plain", b"plain"), (b"open{only", b"open{only"),
])
def test_hash_tags_follow_redis_cluster(key, hashed):
    from zan.node.namespaces import hash_tag
    assert hash_tag(key) == hashed
    r = router().route(key)
    assert (r.namespace, r.pk, r.partition) == ("default", key, partition_of(hashed, 8))
    assert router().partition_of_pk("default", key) == r.partition


def test_hash_tags_do_not_move_keys_of_other_namespaces():
    r = router().route(b"users:t:{x}y")
    assert r.partition == partition_of(b"t:{x}y", 16)
    assert router().partition_of_pk("users", b"t:{x}y") == r.partition
