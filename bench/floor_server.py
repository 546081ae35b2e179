"""The floor under a durable SET on this stack: Twisted, hiredis, LevelDB per partition.

A second reference for bench/node_bench.py, beside the bare server.  The bare server keeps
its data in a dict; this one does the least any server must do to answer SET only once
the write is durable and stored the way Zan stores it, and nothing else:

* a SET is routed by murmur3 to one of 8 LevelDBs and staged; once per reactor turn (group
  commit) the turn's writes are appended to one log file and made durable with one
  ``fdatasync``, then written to their partitions, one WriteBatch each, reading each key's
  old record first (what a key count or a TTL needs), and only then answered;
* a GET reads a dict of the records read or written before (a row cache with no bound),
  else LevelDB.

No command table, no key or size checks, no TTL, no metrics, no error handling worth the
name, no replay of the log after a crash (it pays for durability, it does not use it), and
a GET does not see the SETs of its own reactor turn.  Whatever Zan costs beyond this floor
is its own; what this floor costs beyond the bare server, no design in Python on this
stack avoids.  Deliberately self-contained.

    python bench/floor_server.py --port 6391 --dir /tmp/floor
"""

import argparse
import os
import struct
import zlib

import hiredis
import mmh3
import plyvel
from twisted.internet import protocol

PARTITIONS = 8
_HEADER = struct.Struct("<II")        # record length, crc32
_META = b"\x01"
_STRING = b"\x00" * 17                # the size of Zan's meta record header


class Store:
    def __init__(self, reactor, directory: str):
        self.reactor = reactor
        os.makedirs(directory, exist_ok=True)
        self.dbs = [plyvel.DB(os.path.join(directory, f"p{i}"), create_if_missing=True,
                              write_buffer_size=4 << 20, bloom_filter_bits=10)
                    for i in range(PARTITIONS)]
        self.cache = [{} for _ in range(PARTITIONS)]
        self.counts = [0] * PARTITIONS
        self.log = os.open(os.path.join(directory, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.staged: list[tuple[int, bytes, bytes]] = []
        self.waiting: dict[int, "FloorResp"] = {}
        self.call = None

    def get(self, key: bytes):
        pid = mmh3.hash(key, 0, False) % PARTITIONS
        cache = self.cache[pid]
        record = cache.get(_META + key, False)
        if record is False:
            record = cache[_META + key] = self.dbs[pid].get(_META + key)
        return None if record is None else record[len(_STRING):]

    def stage(self, conn: "FloorResp", key: bytes, value: bytes) -> None:
        self.staged.append((mmh3.hash(key, 0, False) % PARTITIONS, _META + key, _STRING + value))
        self.waiting[id(conn)] = conn
        if self.call is None:
            self.call = self.reactor.callLater(0, self.commit)

    def commit(self) -> None:
        self.call = None
        staged, self.staged = self.staged, []
        waiting, self.waiting = self.waiting, {}
        records = [key + b"\x00" + value for _, key, value in staged]
        os.write(self.log, b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records))
        os.fdatasync(self.log)
        by_partition: dict[int, dict[bytes, bytes]] = {}
        for pid, key, value in staged:
            by_partition.setdefault(pid, {})[key] = value
        for pid, changes in by_partition.items():
            db, cache = self.dbs[pid], self.cache[pid]
            batch = db.write_batch()
            for key, value in changes.items():
                old = cache.get(key, False)
                if old is False:
                    old = db.get(key)
                if old is None:
                    self.counts[pid] += 1
                batch.put(key, value)
                cache[key] = value
            batch.put(b"\x00count", b"%d" % self.counts[pid])
            batch.write()
        for conn in waiting.values():
            conn.release()


class FloorResp(protocol.Protocol):
    def __init__(self, store: Store):
        self.store = store
        self.reader = hiredis.Reader()
        self.out: list[bytes] = []
        self.holding = False   # replies wait behind a SET not yet durable

    def dataReceived(self, chunk):
        self.reader.feed(chunk)
        out = self.out
        while (argv := self.reader.gets()) is not False:
            name = argv[0].lower()
            if name == b"set" and len(argv) == 3:
                self.store.stage(self, argv[1], argv[2])
                self.holding = True
                out.append(b"+OK\r\n")
            elif name == b"get" and len(argv) == 2:
                value = self.store.get(argv[1])
                out.append(b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
            elif name == b"ping":
                out.append(b"+PONG\r\n")
            elif name == b"config":  # redis-benchmark asks for a few settings at start
                out.append(b"*0\r\n")
            else:
                out.append(b"-ERR unknown command\r\n")
        if out and not self.holding:
            self.release()

    def release(self):
        self.holding = False
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out = []


class FloorFactory(protocol.Factory):
    def __init__(self, store: Store):
        self.store = store

    def buildProtocol(self, addr):
        return FloorResp(self.store)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    from twisted.internet import reactor

    port = reactor.listenTCP(args.port, FloorFactory(Store(reactor, args.dir)), interface=args.host)
    print(f"floor RESP server on {args.host}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
