"""CONFIG GET / SET / RESETSTAT / REWRITE / HELP against a real redis-server 7.0: the same
parameters, values and error texts, byte for byte."""

import pytest
from twisted.internet.task import Clock

from tests.support.harness import normalize
from zan.errors import ZanError
from zan.node.config import load_config
from zan.node.service import NodeService
from zan.resp.protocol import ClientState

# What Zan reports as facts of its own, or Redis as facts of the test's redis-server.
FACTS = {"port", "bind", "dir", "databases", "save", "proto-max-bulk-len", "requirepass",
         "maxclients", "timeout", "syslog-ident", "pidfile", "logfile"}


@pytest.fixture
def node(tmp_path):
    return NodeService(load_config(None, {"data_dir": str(tmp_path)}), Clock())


@pytest.fixture
def redis(redis, redis_defaults):
    """The shared redis-server, its parameters put back as they were after each test."""
    try:
        yield redis
    finally:
        now = as_dict(normalize(redis.call("config", "get", "*")))
        for name, value in redis_defaults.items():
            if now.get(name) != value:
                redis.call("config", "set", name, value)


@pytest.fixture(scope="module")
def redis_defaults(redis_server):
    client = redis_server.client()
    try:
        return as_dict(normalize(client.call("config", "get", "*")))
    finally:
        client.close()


def zan_call(node, *argv):
    client = ClientState(id=1, addr="127.0.0.1:1", created=0.0)
    try:
        return normalize(node.dispatcher.dispatch(client, [a.encode() for a in argv]))
    except ZanError as e:
        return normalize(e)


def as_dict(reply):
    return dict(zip(reply[::2], reply[1::2]))


def both(node, redis, *argv):
    ours = zan_call(node, *argv)
    theirs = normalize(redis.call(*argv))
    return ours, theirs


def test_every_parameter_is_listed_with_redis_defaults(node, redis):
    ours, theirs = both(node, redis, "config", "get", "*")
    ours, theirs = as_dict(ours), as_dict(theirs)
    assert set(ours) == set(theirs)
    differing = {k for k in ours if ours[k] != theirs[k]}
    assert differing <= {k.encode() for k in FACTS}


HIDDEN = ["use-exit-on-panic", "rdb-key-save-delay", "key-load-delay", "watchdog-period",
          "loading-process-events-interval-bytes"]

GETS = [
    ("config", "get", "list-max-*"), ("config", "get", "*ziplist*", "*listpack*"),
    ("config", "get", "hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("config", "get", "MAXMEMORY", "maxmemory"), ("config", "get", "nosuch"),
    ("config", "get", "maxmemory", "maxmemory"), ("config", "get", "maxmemory", "max*"),
    ("config", "get", "?z"), ("config", "get", "[hz]z"), ("config", "get", "Hz"),
    ("config", "get", "*slave*"), ("config", "get", "*HASH*"),
    *[("config", "get", h) for h in HIDDEN], ("config", "get", "*delay*"),
]


@pytest.mark.parametrize("argv", GETS, ids=" ".join)
def test_config_get_patterns(node, redis, argv):
    ours, theirs = both(node, redis, *argv)
    assert as_dict(ours) == as_dict(theirs)
    assert len(ours) == len(theirs)


SETS = [
    # integers, bounds, memory units, percentages
    ("hz", "1000"), ("hz", "0"), ("hz", "-1"), ("hz", "20"), ("hz", "abc"), ("hz", " 1"),
    ("hz", "01"), ("hz", "+1"), ("maxmemory", "1gb"), ("maxmemory", "10MB"), ("maxmemory", "3k"),
    ("maxmemory", "-1"), ("maxmemory", "1.5gb"), ("maxmemory", ""), ("maxmemory", "1tb"),
    ("maxmemory", "18446744073709551615"), ("maxmemory", "0"),
    ("maxclients", "-1"), ("maxclients", "0"), ("maxclients", "4294967296"),
    ("hash-max-listpack-entries", "-1"), ("hash-max-ziplist-entries", "3"),
    ("hash-max-listpack-value", "1kb"), ("zset-max-ziplist-value", "x"),
    ("list-max-ziplist-size", "-5"), ("list-max-listpack-size", "2147483648"),
    ("list-max-listpack-size", "-2147483648"), ("set-max-intset-entries", "9223372036854775808"),
    ("maxmemory-clients", "10%"), ("maxmemory-clients", "101%"), ("maxmemory-clients", "-5"),
    ("maxmemory-clients", "1mb"), ("maxmemory-clients", "%"), ("maxmemory-clients", "0"),
    ("repl-backlog-size", "0"), ("active-defrag-cycle-min", "100"), ("slowlog-log-slower-than", "-2"),
    ("proto-max-bulk-len", "1"), ("client-query-buffer-limit", "1kb"),
    # booleans, enums
    ("appendonly", "yes"), ("appendonly", "YES"), ("appendonly", "true"), ("appendonly", "no"),
    ("activedefrag", "yes"), ("activedefrag", "no"), ("lazyfree-lazy-user-del", "1"),
    ("maxmemory-policy", "allkeys-lfu"), ("maxmemory-policy", "ALLKEYS-LRU"),
    ("maxmemory-policy", "lfu"), ("maxmemory-policy", "noeviction"), ("loglevel", "debug verbose"),
    ("oom-score-adj", "relative"), ("oom-score-adj", "absolute"), ("oom-score-adj", "no"),
    ("shutdown-on-sigint", "now save"), ("shutdown-on-sigint", "save nosave"),
    ("shutdown-on-sigterm", ""), ("shutdown-on-sigterm", "force  now"),
    ("shutdown-on-sigterm", "default"), ("appendfsync", "always"),
    # strings, specials
    ("save", "900 1 300 10"), ("save", ""), ("save", "10"), ("save", "0 1"), ("save", "1 -1"),
    ("save", "+5 2"), ("save", "1 x"), ("notify-keyspace-events", "KEA"),
    ("notify-keyspace-events", "Elgxn"), ("notify-keyspace-events", "q"),
    ("notify-keyspace-events", ""), ("client-output-buffer-limit", "normal 1mb 2mb 60"),
    ("client-output-buffer-limit", "replica 1 2 3 pubsub 4 5 6"),
    ("client-output-buffer-limit", "master 1 2 3"), ("client-output-buffer-limit", "normal 1 2"),
    ("client-output-buffer-limit", "normal 1 2 -3"), ("oom-score-adj-values", "1 2 3"),
    ("oom-score-adj-values", "1 2"), ("oom-score-adj-values", "1 2 3000"),
    ("latency-tracking-info-percentiles", "50 99.5 100"),
    ("latency-tracking-info-percentiles", "101"), ("latency-tracking-info-percentiles", "x"),
    ("latency-tracking-info-percentiles", ""), ("proc-title-template", "{title} {port}"),
    ("proc-title-template", "{nope}"), ("proc-title-template", "{title}"),
    ("cluster-announce-hostname", "a_b"), ("cluster-announce-hostname", "host-1.x"),
    ("masteruser", "u"), ("ignore-warnings", "ARM64-COW-BUG"),
    # immutable and protected parameters, unknown names
    ("daemonize", "yes"), ("databases", "3"), ("dir", "/tmp"), ("dbfilename", "x.rdb"),
    ("cluster-enabled", "yes"), ("replicaof", "no one"), ("nosuch", "1"),
]


@pytest.mark.parametrize("name,value", SETS)
def test_config_set_then_get(node, redis, name, value):
    ours, theirs = both(node, redis, "config", "set", name, value)
    assert ours == theirs
    ours, theirs = both(node, redis, "config", "get", name)
    if name not in FACTS:
        assert ours == theirs


MULTI = [
    ("config", "set", "hz", "20", "maxmemory", "1mb"),
    ("config", "set", "hz", "21", "maxmemory", "-1"),               # all or nothing
    ("config", "set", "hz", "22", "hz", "23"),                      # duplicate
    ("config", "set", "maxmemory", "1", "MAXMEMORY", "2"),
    ("config", "set", "list-max-ziplist-size", "5", "list-max-listpack-size", "6"),
    ("config", "set", "nosuch", "1", "daemonize", "yes"),
    ("config", "set", "daemonize", "yes", "nosuch", "1"),
    ("config", "set", "hz", "x", "nosuch", "1"),
    ("config", "set", "hz", "24", "daemonize", "yes", "hz", "25"),
    ("config", "set", "hz"), ("config", "set", "hz", "1", "maxmemory"),
    ("config", "get"), ("config",), ("config", "resetstat", "x"), ("config", "rewrite", "x"),
    ("config", "help", "x"), ("config", "nosuch"), ("config", "help"), ("config", "rewrite"),
    ("config", "resetstat"), ("config", "Get", "hz"),
]


@pytest.mark.parametrize("argv", MULTI, ids=" ".join)
def test_config_commands_and_errors(node, redis, argv):
    ours, theirs = both(node, redis, *argv)
    assert ours == theirs
    ours, theirs = both(node, redis, "config", "get", "hz", "maxmemory", "list-max-*")
    assert as_dict(ours) == as_dict(theirs)
