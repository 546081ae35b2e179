"""The etcd client, watcher and lock against a real etcd 3.4 (v2 API), and FakeEtcd checked
against it: the same operations must give the same actions, nodes, indexes and errors."""

from __future__ import annotations


import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred

from tests.support.etcd_cluster import EtcdServer
from tests.support.processes import free_port
from tests.unit.etcd_support import Env
from zan.etcd.client import EtcdClient
from zan.etcd.errors import EtcdError, KeyNotFound
from zan.etcd.lock import LeaderLock
from zan.etcd.watch import Watcher

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd():
    server = EtcdServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def reactor():
    from twisted.internet import reactor
    return reactor


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


async def outcome(call):
    """What a call did, in a form comparable between etcd and the fake."""
    try:
        r = await call
    except EtcdError as e:
        return ("error", type(e).__name__, e.error_code, e.cause, e.index)

    def node(n):
        if n is None:
            return None
        return (n.key, n.value, n.dir, n.ttl, n.created_index, n.modified_index,
                tuple(node(c) for c in n.nodes))
    return (r.action, node(r.node), node(r.prev_node), r.etcd_index)


def script(c, p):
    """Operations for the differential run; every one is deterministic on a quiet etcd."""
    return [
        lambda: c.set(f"{p}/a", "1"),
        lambda: c.get(f"{p}/a"),
        lambda: c.set(f"{p}/a", "2"),
        lambda: c.create(f"{p}/a", "x"),
        lambda: c.create(f"{p}/b", "b"),
        lambda: c.update(f"{p}/nope", "x"),
        lambda: c.update(f"{p}/b", "b2"),
        lambda: c.get(f"{p}/x/y/z"),
        lambda: c.compare_and_swap(f"{p}/a", "3", prev_value="9"),
        lambda: c.compare_and_swap(f"{p}/a", "3", prev_index=1),
        lambda: c.compare_and_swap(f"{p}/a", "3", prev_value="9", prev_index=1),
        lambda: c.compare_and_swap(f"{p}/a", "3", prev_value="2"),
        lambda: c.set(f"{p}/a/under", "x"),
        lambda: c.mkdir(f"{p}/d"),
        lambda: c.mkdir(f"{p}/d"),
        lambda: c.set(f"{p}/d", "on a dir"),
        lambda: c.compare_and_swap(f"{p}/d", "x", prev_index=1),
        lambda: c.set(f"{p}/d/z", "z"),
        lambda: c.set(f"{p}/d/m/n", "n"),
        lambda: c.get(f"{p}/d", sorted=True),
        lambda: c.get(f"{p}/d", recursive=True, sorted=True),
        lambda: c.delete(f"{p}/d"),
        lambda: c.delete(f"{p}/d", dir=True),
        lambda: c.set(f"{p}/t", "ttl", ttl=100),
        lambda: c.refresh_ttl(f"{p}/t", 100),
        lambda: c.refresh_ttl(f"{p}/t", 100, prev_value="other"),
        lambda: c.refresh_ttl(f"{p}/t", 100, prev_value="ttl"),
        lambda: c.refresh_ttl(f"{p}/missing", 100),
        lambda: c.set(f"{p}/t", "no ttl now"),
        lambda: c.compare_and_delete(f"{p}/b", prev_value="b"),
        lambda: c.compare_and_delete(f"{p}/b", prev_value="b2"),
        lambda: c.compare_and_delete(f"{p}/b", prev_value="b2"),
        lambda: c.delete(f"{p}/d", recursive=True),
        lambda: c.watch(f"{p}", wait_index=1, recursive=True),
        lambda: c.delete("/", recursive=True),
    ]


@pytest_twisted.ensureDeferred
async def test_fake_answers_like_etcd(etcd, reactor):
    real = EtcdClient(reactor, [etcd.url])
    try:
        prefix = "/diff"
        start = (await real.get("/")).etcd_index
        env = Env()
        env.fake.index = start
        # The fake's history starts at our first write, so compare watches from there on.
        ops_real = script(real, prefix)
        ops_fake = script(env.client, prefix)
        first_write = start + 1
        ops_real[-2] = lambda: real.watch(prefix, wait_index=first_write, recursive=True)
        ops_fake[-2] = lambda: env.client.watch(prefix, wait_index=first_write, recursive=True)
        for i, (op_real, op_fake) in enumerate(zip(ops_real, ops_fake)):
            got = await outcome(op_real())
            d = Deferred.fromCoroutine(outcome(op_fake()))
            env.net.flush()
            want = d.result
            assert got == want, f"operation {i}: etcd {got} != fake {want}"
    finally:
        await real.close()


@pytest_twisted.ensureDeferred
async def test_failover_watch_ttl_and_refresh(etcd, reactor):
    dead = f"http://127.0.0.1:{free_port()}"
    client = EtcdClient(reactor, [dead, etcd.url], timeout=2.0)
    try:
        r = await client.set("/live/k", "v", ttl=1)
        assert client.current_endpoint == etcd.url and r.node.ttl == 1

        watch = Deferred.fromCoroutine(
            client.watch("/live", wait_index=r.etcd_index + 1, recursive=True, timeout=10))
        await sleep(reactor, 0.6)
        refreshed = await client.refresh_ttl("/live/k", 1)
        assert refreshed.node.value == "v"
        await sleep(reactor, 0.6)  # past the first TTL: alive thanks to the refresh
        assert (await client.get("/live/k")).node.value == "v"
        assert not watch.called, "a refresh fires no watch event"
        event = await watch
        assert event.action == "expire" and event.node.key == "/live/k"
        assert event.prev_node.value == "v"
        with pytest.raises(KeyNotFound):
            await client.get("/live/k")

        # an idle watch outlives the request timeout and ends quietly at its own
        began = reactor.seconds()
        assert await client.watch("/live", recursive=True, timeout=2.5) is None
        assert reactor.seconds() - began >= 2.4
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_watcher_and_leader_lock(etcd, reactor):
    clients = [EtcdClient(reactor, [etcd.url]) for _ in range(3)]
    seen = []
    watcher = Watcher(clients[0], "/lock-test", lambda node, index: seen.append(
        None if node is None else {n.key: n.value for n in node.leaves()}), reactor)
    events = []
    locks = [LeaderLock(clients[i + 1], "/lock-test/leader", name, reactor, ttl=2,
                        on_elected=lambda name=name: events.append(("elected", name)),
                        on_lost=lambda name=name: events.append(("lost", name)))
             for i, name in enumerate(["pd-a", "pd-b"])]
    try:
        watcher.start()
        locks[0].start()
        await wait_for(reactor, lambda: locks[0].is_leader)
        locks[1].start()
        await sleep(reactor, 3.0)  # > one TTL: the leader's refreshes keep it
        assert locks[0].is_leader and not locks[1].is_leader
        assert events == [("elected", "pd-a")]
        assert seen[-1] == {"/lock-test/leader": "pd-a"}
        await locks[0].resign()
        await wait_for(reactor, lambda: locks[1].is_leader)
        assert events == [("elected", "pd-a"), ("lost", "pd-a"), ("elected", "pd-b")]
        await wait_for(reactor, lambda: seen[-1] == {"/lock-test/leader": "pd-b"})
    finally:
        watcher.stop()
        for lock in locks:
            await lock.resign()
        for c in clients:
            await c.close()


async def wait_for(reactor, cond, timeout=10.0):
    deadline = reactor.seconds() + timeout
    while not cond():
        assert reactor.seconds() < deadline, "condition not reached in time"
        await sleep(reactor, 0.02)


def _make_certs(directory: str) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it (ca, cert, key paths)."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zan test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server-key.pem")]
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return paths[0], paths[1], paths[2]


@pytest_twisted.ensureDeferred
async def test_https_is_verified_against_the_ca_file(reactor, tmp_path):
    from zan.etcd.errors import EtcdUnavailable

    ca, cert, key = _make_certs(str(tmp_path))
    server = EtcdServer()
    server.url = server.url.replace("http://", "https://")
    server.extra = ["--cert-file", cert, "--key-file", key]
    try:
        server.start(health_ca=ca)
        good = EtcdClient(reactor, [server.url], ca_file=ca)
        untrusting = EtcdClient(reactor, [server.url], timeout=2.0)
        try:
            assert (await good.set("/tls", "ok")).node.value == "ok"
            with pytest.raises(EtcdUnavailable):
                await untrusting.get("/tls")
        finally:
            await good.close()
            await untrusting.close()
    finally:
        server.stop()
