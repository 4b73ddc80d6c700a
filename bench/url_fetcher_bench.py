#!/usr/bin/env python3
"""gevent's side of bench/url_fetcher_bench.sh: the seed's patched urlopen fetcher.

usage: url_fetcher_bench.py [--count 100] [--delay 0.2] [--runs 5]

After monkey.patch_all(), --count greenlets each urlopen() a page from a gevent StreamServer
on 127.0.0.1 that answers every request after --delay seconds (the same pages as
examples/url_fetcher's embedded server). Prints one "result gevent_async = S s" line per run.
Without gevent it prints a note and exits 0. Run it from a folder without a greenlet/
subfolder (e.g. `cd /`).
"""
import argparse
import sys
import time

try:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.server import StreamServer
except ImportError as error:  # the baseline is optional
    print(f"gevent: not installed ({error}); apt-get install python3-gevent")
    sys.exit(0)

from urllib.request import urlopen  # noqa: E402 (after patch_all, as gevent requires)


def handle(conn, _address, delay):
    request = b""
    while b"\r\n\r\n" not in request:
        more = conn.recv(4096)
        if not more:
            return
        request += more
    page = int(request.split(b" ")[1].strip(b"/"))
    gevent.sleep(delay)
    body = b"x" * (page * 100)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server = StreamServer(("127.0.0.1", 0), lambda c, a: handle(c, a, args.delay))
    server.start()
    urls = [f"http://127.0.0.1:{server.server_port}/{i}" for i in range(1, args.count + 1)]
    for _ in range(args.runs):
        start = time.perf_counter()
        jobs = [gevent.spawn(lambda u: len(urlopen(u).read()), url) for url in urls]
        gevent.joinall(jobs, raise_error=True)
        assert [j.value for j in jobs] == [i * 100 for i in range(1, args.count + 1)]
        print(f"result gevent_async = {time.perf_counter() - start:.3f} s", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
