#!/usr/bin/env bash
# Runs examples/hello_http on a free port, asks it for two paths with curl over one
# kept-alive connection (and once over HTTP/1.0), then stops it with SIGTERM; fails
# unless every answer was "Hello, World!" and the server exited with status 0 within
# 10 s. Usage: hello_http_demo.sh HELLO_HTTP WORKERS
set -euo pipefail
server=$1 workers=$2
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
server_start "$server" --port 0 --workers "$workers"
curl -sS --max-time 10 -w 'connects=%{num_connects} status=%{http_code}\n' \
  "http://127.0.0.1:$port/" "http://127.0.0.1:$port/any/path?x=1"
curl -sS --max-time 10 --http1.0 -w 'http1.0 status=%{http_code}\n' "http://127.0.0.1:$port/old"
server_stop
