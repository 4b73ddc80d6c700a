#!/usr/bin/env python3
"""gevent's StreamServer echo server, the third row of bench/echo_bench.sh.

usage: gevent_echo.py [--port 8001] [--host 127.0.0.1]

The same command line and output as greenev's examples/echo_server and bench's
raw_libev_echo: prints "listening on HOST:PORT" (the real port for --port 0) and exits 0
on SIGINT or SIGTERM. One greenlet per connection: recv, sendall, until EOF.
"""
import argparse
import signal
import socket
import sys

try:
    import gevent
    from gevent.server import StreamServer
except ImportError as error:
    print(f"gevent_echo: gevent is not installed ({error})", file=sys.stderr)
    sys.exit(2)


def handle(connection, _address):
    # Like raw_libev_echo: replies go out whole, so Nagle must not hold back a partial tail.
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = connection.recv(65536)
            if not data:
                return
            connection.sendall(data)
    except ConnectionError:
        # A client that resets is its own business, not an error of the server's.
        return


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args()

    server = StreamServer((options.host, options.port), handle)
    server.start()
    host = f"[{options.host}]" if ":" in options.host else options.host
    print(f"listening on {host}:{server.server_port}", flush=True)
    # stop() closes the listener, waits a moment for handlers, then kills the rest, after
    # which serve_forever() returns.
    for number in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(number, server.stop, 1)
    server.serve_forever()


if __name__ == "__main__":
    main()
