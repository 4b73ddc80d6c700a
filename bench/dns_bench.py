#!/usr/bin/env python3
"""gevent's side of bench/dns_bench.cpp: 1000 concurrent gethostbyname calls of
distinct names, one greenlet each, on gevent's c-ares resolver (GEVENT_RESOLVER=ares).

usage: dns_bench.py --nameserver IP:PORT [--names N] [--rounds R]
Prints "gevent seconds=S lookups_per_second=R" per round; exits 1 on a wrong answer.
"""
import argparse
import os
import sys
import time


def name_of(i):
    return "host%d.bench.greenev.test" % i


def address_of(i):
    return "10.%d.%d.%d" % (i // 65536, i // 256 % 256, i % 256)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nameserver", required=True, help="IP:PORT of the server holding the names")
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    ip, _, port = args.nameserver.rpartition(":")
    # gevent reads its resolver settings from the environment when the hub makes its resolver.
    os.environ["GEVENT_RESOLVER"] = "ares"
    os.environ["GEVENTARES_SERVERS"] = ip
    os.environ["GEVENTARES_UDP_PORT"] = port
    os.environ["GEVENTARES_TCP_PORT"] = port
    import gevent
    import gevent.socket

    # One lookup first, outside the clock: creates the resolver (as dns_bench.cpp does).
    if gevent.socket.gethostbyname(name_of(0)) != address_of(0):
        sys.exit("dns_bench.py: the nameserver gives wrong answers")
    status = 0
    for _ in range(args.rounds):
        start = time.perf_counter()
        lookups = [gevent.spawn(gevent.socket.gethostbyname, name_of(i)) for i in range(args.names)]
        gevent.joinall(lookups)
        seconds = time.perf_counter() - start
        wrong = sum(1 for i, g in enumerate(lookups) if g.value != address_of(i))
        print("gevent seconds=%.4f lookups_per_second=%.0f" % (seconds, args.names / seconds), flush=True)
        if wrong:
            print("dns_bench.py: %d wrong answers" % wrong, file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
