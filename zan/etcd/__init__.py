"""etcd v2 keys API for cluster metadata.

`client` (EtcdClient, Node, EtcdResponse), `errors` (one class per etcd errorCode),
`watch` (Watcher: GET then long-poll, rescan on every change), `lock` (LeaderLock for the
PD leader session, TTLRegistration for node liveness keys) and `testing` (FakeEtcd, an
in-memory etcd for StubTreq-style tests).
"""

__all__: list[str] = []
