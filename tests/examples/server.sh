# shellcheck shell=bash
# Sourced by the example test scripts (and tests/browser/cart_browser.sh): one server
# started on a free port, and stopped, the same way everywhere.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
#   server_start "$server" --port 0     # sets $port, from its "listening on 127.0.0.1:PORT"
#   ... talk to 127.0.0.1:$port ...
#   server_stop                         # SIGTERM; prints "server exit=N"; returns N
#
# The server is killed on every other way out of the script; its output is in
# $server_out. A script with more to clean up defines on_exit().
server_out=$(mktemp)
server_pid=""
server_cleanup() {
  [[ -z $server_pid ]] || kill -KILL "$server_pid" 2>/dev/null || true
  rm -f "$server_out"
  if declare -F on_exit >/dev/null; then on_exit; fi
}
trap server_cleanup EXIT

server_start() {
  "$@" >"$server_out" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening on ' "$server_out" && break
    sleep 0.1
  done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$server_out")
  [[ -n $port ]] || { echo "no listening line: $(cat "$server_out")" >&2; exit 1; }
}

# Waits up to 10 s for the server to exit after SIGTERM.
server_stop() {
  kill -TERM "$server_pid"
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  local status=0
  wait "$server_pid" || status=$?
  server_pid=""
  echo "server exit=$status"
  return "$status"
}
