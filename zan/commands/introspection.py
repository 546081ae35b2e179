"""OBJECT and DEBUG (Redis object.c, debug.c): what Redis would report about a value, and
the debugging switches Redis's own test suite and tools send.

OBJECT runs on the key's partition (its handler is partition-level, ``(txn, args)``, with
the key at argv[2]); it reports the encoding redis-server 7.0 would give the value as it
is stored now, under the node's current CONFIG thresholds, from the stored value alone.
DEBUG is node-level (``(server, client, args)``): the node does what blocks, reloads or
switches (`zan.node.server.ServerContext`).
"""

from __future__ import annotations

import re

from zan.commands.hll_codec import is_hll
from zan.commands.redis_config import memtoull, setting
from zan.commands.table import ADMIN, LOADING, NOSCRIPT, READONLY, STALE, Route, command
from zan.commands.util import check_subcommand, help_reply, parse_int
from zan.errors import RespError
from zan.resp.types import OK, SimpleString
from zan.store import codec
from zan.store.codec import T_JSON
from zan.store.keyspace import T_HASH, T_LIST, T_SET, T_STRING, T_ZSET, Meta, Txn, lookup

__all__ = ["encoding_of"]

# Redis keeps one shared object for each integer below this, with a refcount that never
# changes (OBJ_SHARED_REFCOUNT), unless an LRU/LFU policy needs per-key access data.
_SHARED_INTEGERS = 10000
_SHARED_REFCOUNT = 2147483647
_EMBSTR_LIMIT = 44
# LFU_INIT_VAL: the access counter of a key nothing has read since it was written.
_LFU_INIT = 5

_LFU_SELECTED = ("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note "
                 "that when switching between policies at runtime LRU and LFU data will take "
                 "some time to adjust.")
_LFU_NOT_SELECTED = ("ERR An LFU maxmemory policy is not selected, access frequency not "
                     "tracked. Please note that when switching between policies at runtime LRU "
                     "and LFU data will take some time to adjust.")


def _setting(txn: Txn, name: str) -> str:
    return setting(txn.options.redis_config, name)


def _int_setting(txn: Txn, name: str) -> int:
    return int(_setting(txn, name))


def _as_long(value: bytes) -> int | None:
    """string2l: the value as a 64-bit integer if it is one's canonical spelling."""
    if len(value) > 20:
        return None
    try:
        return parse_int(value)
    except RespError:
        return None


def _elements(txn: Txn, tag: bytes, pk: bytes, meta: Meta):
    prefix = codec.elem_prefix(tag, pk, meta.version)
    n = len(prefix)
    for key, value in txn.iterate(prefix, codec.prefix_end(prefix)):
        yield key[n:], value


def encoding_of(txn: Txn, pk: bytes, meta: Meta) -> bytes:
    """The encoding redis-server 7.0 reports for this value, built by writes under the
    current thresholds.  Collections are read only as far as a threshold needs."""
    if meta.type == T_STRING:
        value = meta.payload
        if _as_long(value) is not None:
            return b"int"
        if is_hll(value):
            # The PF* commands build and edit a HyperLogLog as a raw string, however short
            # (one only SET and never touched by them would still be an embstr).
            return b"raw"
        return b"embstr" if len(value) <= _EMBSTR_LIMIT else b"raw"
    if meta.type == T_JSON:
        return b"raw"       # what Redis reports for a module's value
    if meta.type == T_LIST:
        # Redis 7.0 stores every list as a quicklist (listpack lists came with 7.2).
        return b"quicklist"
    count = meta.count
    if meta.type == T_SET:
        if count <= _int_setting(txn, "set-max-intset-entries") and all(
                _as_long(m) is not None for m, _ in _elements(txn, codec.SET_ELEM, pk, meta)):
            return b"intset"
        return b"hashtable"
    if meta.type == T_HASH:
        limit = _int_setting(txn, "hash-max-listpack-value")
        if count <= _int_setting(txn, "hash-max-listpack-entries") and all(
                len(f) <= limit and len(v) <= limit
                for f, v in _elements(txn, codec.HASH_ELEM, pk, meta)):
            return b"listpack"
        return b"hashtable"
    if meta.type == T_ZSET:
        limit = _int_setting(txn, "zset-max-listpack-value")
        if count <= _int_setting(txn, "zset-max-listpack-entries") and all(
                len(m) <= limit for m, _ in _elements(txn, codec.ZSET_ELEM, pk, meta)):
            return b"listpack"
        return b"skiplist"
    raise AssertionError(meta.type)


def _lfu(txn: Txn) -> bool:
    return "lfu" in _setting(txn, "maxmemory-policy")


def _refcount(txn: Txn, meta: Meta) -> int:
    policy = _setting(txn, "maxmemory-policy")
    shared = _setting(txn, "maxmemory") == "0" or not ("lru" in policy or "lfu" in policy)
    if meta.type == T_STRING and shared:
        n = _as_long(meta.payload)
        if n is not None and 0 <= n < _SHARED_INTEGERS:
            return _SHARED_REFCOUNT
    return 1


_OBJECT_HELP = [
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
]
_OBJECT_ARITY = {b"ENCODING": 3, b"FREQ": 3, b"IDLETIME": 3, b"REFCOUNT": 3, b"HELP": 2}


@command("object", -2, (READONLY,), route=Route.SAME_PARTITION, first_key=2, last_key=2,
         group="generic", since="2.2.3", summary="Inspect the internals of Redis objects")
def object_(txn: Txn, args: list[bytes]):
    check_subcommand("object", _OBJECT_ARITY, args)
    sub = args[0].upper()
    if sub == b"HELP":
        return help_reply("OBJECT", _OBJECT_HELP)
    meta = lookup(txn, args[1])
    if meta is None:
        return None
    if sub == b"ENCODING":
        return encoding_of(txn, args[1], meta)
    if sub == b"REFCOUNT":
        return _refcount(txn, meta)
    if sub == b"IDLETIME":
        if _lfu(txn):
            raise RespError(_LFU_SELECTED)
        return 0   # access times are not tracked: every key counts as just used
    if not _lfu(txn):
        raise RespError(_LFU_NOT_SELECTED)
    return _LFU_INIT


# -- DEBUG -------------------------------------------------------------------------------

_DEBUG_HELP = [
    'AOF-FLUSH-SLEEP <microsec>',
    '    Server will sleep before flushing the AOF, this is used for testing.',
    'ASSERT',
    '    Crash by assertion failed.',
    'CHANGE-REPL-ID',
    '    Change the replication IDs of the instance.',
    '    Dangerous: should be used only for testing the replication subsystem.',
    'CONFIG-REWRITE-FORCE-ALL',
    '    Like CONFIG REWRITE but writes all configuration options, including',
    '    keywords not listed in original configuration file or default values.',
    'CRASH-AND-RECOVER [<milliseconds>]',
    '    Hard crash and restart after a <milliseconds> delay (default 0).',
    'DIGEST',
    '    Output a hex signature representing the current DB content.',
    'DIGEST-VALUE <key> [<key> ...]',
    '    Output a hex signature of the values of all the specified keys.',
    'ERROR <string>',
    '    Return a Redis protocol error with <string> as message. Useful for clients',
    '    unit tests to simulate Redis errors.',
    'LEAK <string>',
    '    Create a memory leak of the input string.',
    'LOG <message>',
    '    Write <message> to the server log.',
    'HTSTATS <dbid>',
    '    Return hash table statistics of the specified Redis database.',
    'HTSTATS-KEY <key>',
    "    Like HTSTATS but for the hash table stored at <key>'s value.",
    'LOADAOF',
    '    Flush the AOF buffers on disk and reload the AOF in memory.',
    'REPLICATE <string>',
    '    Replicates the provided string to replicas, allowing data divergence.',
    'MALLCTL <key> [<val>]',
    '    Get or set a malloc tuning integer.',
    'MALLCTL-STR <key> [<val>]',
    '    Get or set a malloc tuning string.',
    'OBJECT <key>',
    '    Show low level info about `key` and associated value.',
    'DROP-CLUSTER-PACKET-FILTER <packet-type>',
    '    Drop all packets that match the filtered type. Set to -1 allow all packets.',
    'OOM',
    '    Crash the server simulating an out-of-memory error.',
    'PANIC',
    '    Crash the server simulating a panic.',
    'POPULATE <count> [<prefix>] [<size>]',
    '    Create <count> string keys named key:<num>. If <prefix> is specified then',
    "    it is used instead of the 'key' prefix. These are not propagated to",
    '    replicas. Cluster slots are not respected so keys not belonging to the',
    '    current node can be created in cluster mode.',
    'PROTOCOL <type>',
    '    Reply with a test value of the specified type. <type> can be: string,',
    '    integer, double, bignum, null, array, set, map, attrib, push, verbatim,',
    '    true, false.',
    'RELOAD [option ...]',
    '    Save the RDB on disk and reload it back to memory. Valid <option> values:',
    '    * MERGE: conflicting keys will be loaded from RDB.',
    '    * NOFLUSH: the existing database will not be removed before load, but',
    '      conflicting keys will generate an exception and kill the server.',
    '    * NOSAVE: the database will be loaded from an existing RDB file.',
    '    Examples:',
    '    * DEBUG RELOAD: verify that the server is able to persist, flush and reload',
    '      the database.',
    '    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an',
    '      existing RDB file.',
    '    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB',
    '      file to the database.',
    'RESTART [<milliseconds>]',
    '    Graceful restart: save config, db, restart after a <milliseconds> delay (default 0).',
    'SDSLEN <key>',
    '    Show low level SDS string info representing `key` and value.',
    'SEGFAULT',
    '    Crash the server with sigsegv.',
    'SET-ACTIVE-EXPIRE <0|1>',
    '    Setting it to 0 disables expiring keys in background when they are not',
    '    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the',
    '    default.',
    'QUICKLIST-PACKED-THRESHOLD <size>',
    '    Sets the threshold for elements to be inserted as plain vs packed nodes',
    '    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.',
    'SET-SKIP-CHECKSUM-VALIDATION <0|1>',
    "    Enables or disables checksum checks for RDB files and RESTORE's payload.",
    'SLEEP <seconds>',
    '    Stop the server for <seconds>. Decimals allowed.',
    'STRINGMATCH-TEST',
    '    Run a fuzz tester against the stringmatchlen() function.',
    'STRUCTSIZE',
    '    Return the size of different Redis core C structures.',
    'LISTPACK <key>',
    '    Show low level info about the listpack encoding of <key>.',
    'QUICKLIST <key> [<0|1>]',
    '    Show low level info about the quicklist encoding of <key>.',
    '    The optional argument (0 by default) sets the level of detail',
    'CLIENT-EVICTION',
    '    Show low level client eviction pools info (maxmemory-clients).',
    'PAUSE-CRON <0|1>',
    '    Stop periodic cron job processing.',
    'REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>',
    '    Sets the time (in milliseconds) to wait between client reply buffer peak resets.',
    '    In case NEVER is provided the last observed peak will never be reset',
    '    In case RESET is provided the peak reset time will be restored to the default value',
    'REPLYBUFFER RESIZING <0|1>',
    '    Enable or disable the reply buffer resize cron job',
    'CLUSTERLINK KILL <to|from|all> <node-id>',
    '    Kills the link based on the direction to/from (both) with the provided node.',
]


def _syntax_error(args: list[bytes]) -> RespError:
    # addReplySubcommandSyntaxError
    sub = args[0][:128].decode("utf-8", "replace")
    return RespError(f"ERR unknown subcommand or wrong number of arguments for '{sub}'. "
                     "Try DEBUG HELP.")


def _strtod_prefix(raw: bytes) -> float:
    """strtod(s, NULL): the longest leading number, 0 when there is none."""
    m = re.match(rb"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", raw)
    return float(m.group(0)) if m else 0.0


def _atoi(raw: bytes) -> int:
    m = re.match(rb"\s*[+-]?\d+", raw)
    return int(m.group(0)) if m else 0


# Tuning switches of Redis's internals that mean nothing here: accepted, as Redis does,
# so its test suite runs on.  Name -> the number of words after DEBUG.
_ACCEPTED = {
    b"CHANGE-REPL-ID": (1,), b"SET-DISABLE-DENY-SCRIPTS": (2,), b"PAUSE-CRON": (2,),
    b"SET-SKIP-CHECKSUM-VALIDATION": (2,), b"AOF-FLUSH-SLEEP": (2,), b"JMAP": (1,),
    b"STRINGMATCH-LEN": (1, 2), b"DICT-RESIZING": (2,), b"LISTPACK": (2,),
    b"QUICKLIST": (2, 3),
}


@command("debug", -2, (ADMIN, NOSCRIPT, LOADING, STALE), route=Route.SERVER, group="server",
         summary="A container for debugging commands")
def debug(server, client, args):
    sub = args[0].upper()
    n = len(args)
    if sub == b"HELP" and n == 1:
        return help_reply("DEBUG", _DEBUG_HELP)
    if sub == b"SLEEP" and n == 2:
        server.debug_sleep(_strtod_prefix(args[1]))
        return OK
    if sub == b"SET-ACTIVE-EXPIRE" and n == 2:
        server.set_active_expire(_atoi(args[1]) != 0)
        return OK
    if sub == b"RELOAD":
        for opt in args[1:]:
            if opt.upper() not in (b"MERGE", b"NOFLUSH", b"NOSAVE"):
                raise RespError("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE "
                                "options.")
        return server.reload_storage()
    if sub == b"OBJECT" and n == 2:
        return server.debug_object(client, args[1])
    if sub == b"QUICKLIST-PACKED-THRESHOLD" and n == 2:
        # quicklistisSetPackedThreshold: up to 4gb less 1mb; 0 restores the default.
        size = memtoull(args[1].decode("utf-8", "surrogateescape"))
        if size is None or size > (1 << 32) - (1 << 20):
            raise RespError("ERR argument must be a memory value bigger than 1 and smaller "
                            "than 4gb")
        return OK
    if sub == b"REPLYBUFFER" and n == 3:
        if args[1].upper() not in (b"PEAK-RESET-TIME", b"RESIZING"):
            raise _syntax_error(args)
        return OK
    if sub == b"ERROR" and n == 2:
        raise RespError(args[1].decode("utf-8", "replace"))
    if sub in _ACCEPTED and n in _ACCEPTED[sub]:
        return OK
    raise _syntax_error(args)


def debug_object_line(encoding: bytes, refcount: int, serialized_length: int) -> SimpleString:
    """DEBUG OBJECT's status line, in Redis's format (no address or access clock to show)."""
    return SimpleString(f"Value at:0x0 refcount:{refcount} encoding:{encoding.decode()} "
                        f"serializedlength:{serialized_length} lru:0 lru_seconds_idle:0".encode())
