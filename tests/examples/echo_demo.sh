#!/usr/bin/env bash
# Runs examples/echo_server on a free port, then echo_clients against it, then stops the
# server with SIGTERM; fails unless the clients verified every echo and the server exited
# with status 0 within 10 s. Usage: echo_demo.sh ECHO_SERVER ECHO_CLIENTS WORKERS CLIENTS MESSAGES
set -euo pipefail
server=$1 clients=$2 workers=$3 count=$4 messages=$5
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
server_start "$server" --port 0 --workers "$workers"
"$clients" --port "$port" --clients "$count" --messages "$messages"
server_stop
