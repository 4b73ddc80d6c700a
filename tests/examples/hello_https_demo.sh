#!/usr/bin/env bash
# Runs examples/hello_http with --cert/--key (a CA and a localhost certificate made here
# with openssl), asks it for two paths over one kept-alive HTTPS connection with curl
# trusting that CA, then stops it with SIGTERM; fails unless both answers were
# "Hello, World!" and the server exited with status 0. Usage: hello_https_demo.sh HELLO_HTTP
set -euo pipefail
server=$1
dir=$(mktemp -d)
on_exit() { rm -rf "$dir"; }
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=greenev demo CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
server_start "$server" --port 0 --cert "$dir/server.pem" --key "$dir/server.key"
curl -sS --max-time 10 --cacert "$dir/ca.pem" -w 'connects=%{num_connects} status=%{http_code}\n' \
  "https://127.0.0.1:$port/" "https://127.0.0.1:$port/secure"
server_stop
