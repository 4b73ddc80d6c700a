#!/usr/bin/env bash
# Runs a cart demo (examples/longpoll_cart or examples/websocket_cart) on a free port,
# drives it in headless chromium with cart_test.mjs (two shoppers; one adds and removes,
# the other must see each change within 1 s), then stops the server with SIGTERM; fails
# unless the browser check passed and the server exited with status 0.
# Usage: cart_browser.sh SERVER NODE_DIR SCREENSHOT
#   NODE_DIR holds cart_test.mjs and its node_modules (the browser_npm_ci test fills it).
set -euo pipefail
server=$1 node_dir=$2 screenshot=$3
out=$(mktemp)
pid=""
trap '[[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
"$server" --port 0 >"$out" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$out" && break
  sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
[[ -n $port ]] || { echo "no listening line: $(cat "$out")" >&2; exit 1; }
browser=0
node "$node_dir/cart_test.mjs" --url "http://127.0.0.1:$port/" --screenshot "$screenshot" || browser=$?
kill -TERM "$pid"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
status=0
wait "$pid" || status=$?
pid=""
echo "browser exit=$browser server exit=$status"
if ((browser != 0 || status != 0)); then
  echo "server output:" >&2
  sed 's/^/  /' "$out" >&2
  exit 1
fi
