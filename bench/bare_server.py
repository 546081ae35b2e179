"""A bare RESP server on Twisted: GET/SET/DEL/PING on a dict, hiredis for parsing.

The reference the Zan node is measured against: what Twisted + Python cost with no
routing, storage or replication.  Deliberately self-contained (no zan imports).

    python bench/bare_server.py --port 6390
"""

import argparse

import hiredis
from twisted.internet import protocol


def bulk(value):
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


class BareResp(protocol.Protocol):
    def __init__(self, data):
        self.data = data
        self.reader = hiredis.Reader()

    def dataReceived(self, chunk):
        self.reader.feed(chunk)
        out = []
        while True:
            try:
                argv = self.reader.gets()
            except hiredis.ProtocolError:
                out.append(b"-ERR Protocol error\r\n")
                self.transport.write(b"".join(out))
                self.transport.loseConnection()
                return
            if argv is False:
                break
            if not isinstance(argv, list) or not argv:
                continue
            out.append(self.execute(argv))
        if out:
            self.transport.write(b"".join(out))

    def execute(self, argv):
        name = argv[0].lower()
        n = len(argv)
        if name == b"get" and n == 2:
            return bulk(self.data.get(argv[1]))
        if name == b"set" and n >= 3:
            self.data[argv[1]] = argv[2]
            return b"+OK\r\n"
        if name == b"del" and n >= 2:
            return b":%d\r\n" % sum(self.data.pop(k, None) is not None for k in argv[1:])
        if name == b"ping":
            return b"+PONG\r\n" if n == 1 else bulk(argv[1])
        if name == b"config":  # redis-benchmark asks for a few settings at start
            return b"*0\r\n"
        return b"-ERR unknown command '%b'\r\n" % argv[0][:64].replace(b"\r", b" ").replace(b"\n", b" ")


class BareFactory(protocol.Factory):
    def __init__(self):
        self.data = {}

    def buildProtocol(self, addr):
        return BareResp(self.data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6390)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    from twisted.internet import reactor

    port = reactor.listenTCP(args.port, BareFactory(), interface=args.host)
    print(f"bare RESP server on {args.host}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
