#!/usr/bin/env bash
# Runs a cart demo (examples/longpoll_cart or examples/websocket_cart) on a free port,
# drives it in headless chromium with cart_test.mjs (two shoppers; one adds and removes,
# the other must see each change within 1 s), then stops the server with SIGTERM; fails
# unless the browser check passed and the server exited with status 0.
# Usage: cart_browser.sh SERVER NODE_DIR SCREENSHOT
#   NODE_DIR holds cart_test.mjs and its node_modules (the browser_npm_ci test fills it).
set -euo pipefail
server=$1 node_dir=$2 screenshot=$3
source "$(dirname "${BASH_SOURCE[0]}")/../examples/server.sh"
server_start "$server" --port 0
browser=0
node "$node_dir/cart_test.mjs" --url "http://127.0.0.1:$port/" --screenshot "$screenshot" || browser=$?
status=0
server_stop >/dev/null || status=$?
echo "browser exit=$browser server exit=$status"
if ((browser != 0 || status != 0)); then
  echo "server output:" >&2
  sed 's/^/  /' "$server_out" >&2
  exit 1
fi
