"""The gevent baseline for bench/http_bench.sh: gevent.pywsgi answering "Hello, World!"
on every path. Prints "listening on HOST:PORT"; exits 0 on SIGTERM or SIGINT."""
import argparse
import signal
import sys

from gevent import pywsgi
import gevent

BODY = b"Hello, World!"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # log=None: an access-log line per request would measure the logging, not the server.
    server = pywsgi.WSGIServer((args.host, args.port), application, log=None)
    server.start()
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    print(f"listening on {args.host}:{server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
