"""Connection and server commands (Redis server.c, networking.c, config.c).

SERVER-route handlers take ``(server, client, args)``: `server` is the node's
`zan.node.server.ServerContext`, `client` the connection's `zan.resp.protocol.ClientState`.
DBSIZE, FLUSHDB and FLUSHALL run on every partition (ALL_PARTITIONS) and are merged here.
"""

from __future__ import annotations

from zan.commands.table import (
    ADMIN, FAST, LOADING, NO_AUTH, NOSCRIPT, READONLY, REGISTRY, STALE, WRITE, Route, command,
)
from zan.commands.util import check_subcommand, help_reply, parse_int
from zan.errors import SYNTAX, RespError
from zan.resp.types import OK, PONG, SimpleString
from zan.store import codec
from zan.store.codec import KEYS_COUNT_KEY, decode_i64

__all__: list[str] = []

_CONN = dict(route=Route.SERVER, group="connection")
_SRV = dict(route=Route.SERVER, group="server")


@command("ping", -1, (FAST, STALE), summary="Ping the server", **_CONN)
def ping(server, client, args):
    if len(args) > 1:
        raise RespError("ERR wrong number of arguments for 'ping' command")
    return args[0] if args else PONG


@command("echo", 2, (FAST,), summary="Echo the given string", **_CONN)
def echo(server, client, args):
    return args[0]


@command("quit", -1, (NO_AUTH, FAST), summary="Close the connection", **_CONN)
def quit_(server, client, args):
    client.close_after_reply = True
    return OK


@command("select", 2, (LOADING, STALE, FAST), summary="Change the selected database", **_CONN)
def select(server, client, args):
    if parse_int(args[0]) != 0:
        raise RespError("ERR DB index is out of range")
    return OK


@command("auth", -2, (NO_AUTH, NOSCRIPT, LOADING, STALE, FAST), summary="Authenticate",
         **_CONN)
def auth(server, client, args):
    if len(args) > 2:
        raise RespError(SYNTAX)
    user, password = (args[0], args[1]) if len(args) == 2 else (b"default", args[0])
    if not server.requirepass and len(args) == 1:
        raise RespError("ERR AUTH <password> called without any password configured for the "
                        "default user. Are you sure your configuration is correct?")
    if user != b"default" or password != server.requirepass.encode():
        raise RespError("WRONGPASS invalid username-password pair or user is disabled.")
    client.authenticated = True
    return OK


@command("hello", -1, (NO_AUTH, NOSCRIPT, LOADING, STALE, FAST),
         summary="Handshake with the server", **_CONN)
def hello(server, client, args):
    if args:
        try:
            version = parse_int(args[0])
        except RespError:
            raise RespError("ERR Protocol version is not an integer or out of range") from None
        if version < 2 or version > 3:
            raise RespError("NOPROTO unsupported protocol version")
        if version == 3:
            # RESP3 is not spoken: clients fall back to RESP2 on NOPROTO.
            raise RespError("NOPROTO sorry, this protocol version is not supported")
    i = 1
    name = None
    while i < len(args):
        opt = args[i].upper()
        if opt == b"AUTH" and i + 2 < len(args):
            auth(server, client, [args[i + 1], args[i + 2]])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(args):
            name = _check_client_name(args[i + 1])
            i += 2
        else:
            raise RespError(f"ERR Syntax error in HELLO option '{args[i].decode('utf-8', 'replace')}'")
    if server.requirepass and not client.authenticated:
        raise RespError("NOAUTH HELLO must be called with the client already authenticated, "
                        "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                        "authenticate the client and select the RESP protocol version at the "
                        "same time")
    if name is not None:
        client.name = name
    return [b"server", b"redis", b"version", server.redis_version.encode(),
            b"proto", 2, b"id", client.id, b"mode", b"standalone",
            b"role", b"master", b"modules", []]


def _check_client_name(name: bytes) -> bytes:
    if any(c < 33 or c > 126 for c in name):
        raise RespError("ERR Client names cannot contain spaces, newlines or special characters.")
    return name


@command("client", -2, (NOSCRIPT, LOADING, STALE), summary="Connection management", **_CONN)
def client_(server, client, args):
    sub = args[0].upper()
    rest = args[1:]
    if sub == b"SETNAME" and len(rest) == 1:
        client.name = _check_client_name(rest[0])
        return OK
    if sub == b"GETNAME" and not rest:
        return client.name or None
    if sub == b"ID" and not rest:
        return client.id
    if sub == b"SETINFO" and len(rest) == 2:
        attr = rest[0].upper()
        if any(c < 33 or c > 126 for c in rest[1]):
            raise RespError(f"ERR {attr.decode().lower()} cannot contain spaces, newlines or "
                            "special characters.")
        if attr == b"LIB-NAME":
            client.lib_name = rest[1]
        elif attr == b"LIB-VER":
            client.lib_ver = rest[1]
        else:
            raise RespError(f"ERR Unrecognized option '{rest[0].decode('utf-8', 'replace')}'")
        return OK
    if sub == b"INFO" and not rest:
        return server.client_info(client)
    if sub == b"LIST" and not rest:
        return server.client_list()
    if sub in (b"SETNAME", b"GETNAME", b"ID", b"SETINFO", b"INFO", b"LIST"):
        raise RespError(f"ERR wrong number of arguments for 'client|{sub.decode().lower()}' command")
    raise RespError(f"ERR unknown subcommand '{args[0].decode('utf-8', 'replace')}'. "
                    "Try CLIENT HELP.")


@command("info", -1, (LOADING, STALE), summary="Server information and statistics", **_SRV)
def info(server, client, args):
    return server.info_text([a.decode("utf-8", "replace").lower() for a in args])


# -- the keyspace as a whole -----------------------------------------------------------

@command("dbsize", 1, (READONLY, FAST), route=Route.ALL_PARTITIONS, first_key=0, last_key=0,
         key_step=0, group="server", summary="Number of keys",
         merge=lambda replies: _sum(replies))
def dbsize(txn, args):
    raw = txn.get(KEYS_COUNT_KEY)
    return decode_i64(raw) if raw is not None else 0


def _sum(replies):
    total = 0
    for r in replies:
        if isinstance(r, Exception):
            return r
        total += r
    return total


def _all_ok(replies):
    for r in replies:
        if isinstance(r, Exception):
            return r
    return OK


def _flush(txn, args):
    if len(args) > 1 or (args and args[0].upper() not in (b"ASYNC", b"SYNC")):
        raise RespError(SYNTAX)
    # Everything but the partition's own metadata goes; the counters start again at 0.
    for key, _ in txn.iterate(codec.META, None):
        txn.delete(key)
    txn.keys_delta = -(decode_i64(txn.get(KEYS_COUNT_KEY) or codec.encode_i64(0)))
    txn.expires_delta = -(decode_i64(txn.get(codec.EXPIRES_COUNT_KEY) or codec.encode_i64(0)))
    return OK


command("flushdb", -1, (WRITE,), route=Route.ALL_PARTITIONS, first_key=0, last_key=0,
        key_step=0, group="server", summary="Remove all keys", merge=_all_ok)(_flush)
command("flushall", -1, (WRITE,), route=Route.ALL_PARTITIONS, first_key=0, last_key=0,
        key_step=0, group="server", summary="Remove all keys", merge=_all_ok)(_flush)


# -- CONFIG ------------------------------------------------------------------------------

_CONFIG_HELP = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]

# CONFIG's subcommands and their arities in Redis (the command and subcommand counted).
_CONFIG_ARITY = {b"GET": -3, b"SET": -4, b"RESETSTAT": 2, b"REWRITE": 2, b"HELP": 2}


@command("config", -2, (ADMIN, NOSCRIPT, LOADING, STALE), summary="Server configuration",
         **_SRV)
def config(server, client, args):
    sub = args[0].upper()
    check_subcommand("config", _CONFIG_ARITY, args)
    if sub == b"GET":
        return server.config_get(args[1:])
    if sub == b"SET":
        server.config_set(args[1:])
        return OK
    if sub == b"RESETSTAT":
        server.reset_stats()
        return OK
    if sub == b"REWRITE":
        # Zan's configuration file is JSON in ZanRedisDB's shape: never rewritten.
        raise RespError("ERR The server is running without a config file")
    return help_reply("CONFIG", _CONFIG_HELP)


# -- COMMAND -----------------------------------------------------------------------------

def _info_reply(spec):
    acl = [b"@" + spec.group.replace("-", "").encode()]
    acl.insert(0, b"@write" if WRITE in spec.flags else b"@read" if READONLY in spec.flags else b"@connection")
    if FAST in spec.flags:
        acl.append(b"@fast")
    return [spec.name.encode(), spec.arity, [SimpleString(f.encode()) for f in spec.flags],
            spec.first_key, spec.last_key, spec.key_step, acl, [], [], []]


def _docs_reply(spec):
    return [b"summary", spec.summary.encode(), b"since", spec.since.encode(),
            b"group", spec.group.encode(), b"complexity", b"", b"arguments", []]


@command("command", -1, (LOADING, STALE), summary="Details about all commands", **_SRV)
def command_(server, client, args):
    if not args:
        return [_info_reply(s) for s in sorted(REGISTRY.values(), key=lambda s: s.name)]
    sub = args[0].upper()
    if sub == b"COUNT" and len(args) == 1:
        return len(REGISTRY)
    if sub == b"INFO":
        names = args[1:] or [s.name.encode() for s in REGISTRY.values()]
        return [_info_reply(REGISTRY[n.decode("utf-8", "replace").lower()])
                if n.decode("utf-8", "replace").lower() in REGISTRY else None for n in names]
    if sub == b"DOCS":
        names = [n.decode("utf-8", "replace").lower() for n in args[1:]] or sorted(REGISTRY)
        reply = []
        for n in names:
            if n in REGISTRY:
                reply += [n.encode(), _docs_reply(REGISTRY[n])]
        return reply
    if sub == b"LIST" and len(args) == 1:
        return [n.encode() for n in sorted(REGISTRY)]
    if sub == b"GETKEYS" and len(args) >= 2:
        argv = args[1:]
        name = argv[0].decode("utf-8", "replace").lower()
        spec = REGISTRY.get(name)
        if spec is None:
            raise RespError("ERR Invalid command specified")
        if (spec.arity > 0 and len(argv) != spec.arity) or (spec.arity < 0 and len(argv) < -spec.arity):
            raise RespError("ERR Invalid number of arguments specified for command")
        keys = [argv[p] for p in spec.key_positions_of(argv)]
        if not keys:
            raise RespError("ERR The command has no key arguments")
        return keys
    if sub in (b"COUNT", b"LIST", b"GETKEYS"):
        raise RespError(f"ERR wrong number of arguments for 'command|{sub.decode().lower()}' command")
    raise RespError(f"ERR unknown subcommand '{args[0].decode('utf-8', 'replace')}'. "
                    "Try COMMAND HELP.")
