#!/usr/bin/env bash
# Runs examples/echo_server on a free port, then echo_clients against it, then stops the
# server with SIGTERM; fails unless the clients verified every echo and the server exited
# with status 0 within 10 s. Usage: echo_demo.sh ECHO_SERVER ECHO_CLIENTS WORKERS CLIENTS MESSAGES
set -euo pipefail
server=$1 clients=$2 workers=$3 count=$4 messages=$5
out=$(mktemp)
trap 'kill -KILL "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
"$server" --port 0 --workers "$workers" >"$out" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$out" && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
[[ -n $port ]] || { echo "no listening line: $(cat "$out")" >&2; exit 1; }
"$clients" --port "$port" --clients "$count" --messages "$messages"
kill -TERM "$pid"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
status=0
wait "$pid" || status=$?
echo "server exit=$status"
[[ $status -eq 0 ]]
