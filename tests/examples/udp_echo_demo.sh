#!/usr/bin/env bash
# Runs examples/udp_echo on a free port, sends it 100 datagrams from a Python client and
# checks every echo, then stops the server with SIGTERM; fails unless all came back and
# the server exited with status 0. Usage: udp_echo_demo.sh UDP_ECHO
set -euo pipefail
server=$1
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
server_start "$server" --port 0
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
server_stop
