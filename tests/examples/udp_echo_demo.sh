#!/usr/bin/env bash
# Runs examples/udp_echo on a free port, sends it 100 datagrams from a Python client and
# checks every echo, then stops the server with SIGTERM; fails unless all came back and
# the server exited with status 0. Usage: udp_echo_demo.sh UDP_ECHO
set -euo pipefail
server=$1
out=$(mktemp)
pid=""
trap '[[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
"$server" --port 0 >"$out" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$out" && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
[[ -n $port ]] || { echo "no listening line: $(cat "$out")" >&2; exit 1; }
python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.settimeout(5)
echoed = 0
for i in range(100):
    payload = f"datagram {i}".encode()
    client.sendto(payload, ("127.0.0.1", port))
    if client.recvfrom(65536)[0] == payload:
        echoed += 1
print(f"datagrams=100 echoed={echoed}")
PY
kill -TERM "$pid"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
status=0
wait "$pid" || status=$?
pid=""
echo "server exit=$status"
