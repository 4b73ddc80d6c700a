#!/usr/bin/env bash
# Runs examples/longpoll_cart on a free port and drives it with curl: the page shows 10
# in stock; a held GET /cart/status answers 9 once a POST adds the item, and 10 again
# once another removes it; ?count=N answers at once when N is stale; bad forms get 400.
# Then SIGTERM; fails unless the server exited with status 0. Usage: longpoll_cart_demo.sh SERVER
set -euo pipefail
server=$1
held_out=$(mktemp)
on_exit() { rm -f "$held_out"; }
source "$(dirname "${BASH_SOURCE[0]}")/server.sh"
server_start "$server" --port 0
url=http://127.0.0.1:$port
get() { curl -sS --max-time 10 "$@"; }
page=$(get "$url/")
session=$(sed -n 's/^const session = "\([0-9a-f]*\)";$/\1/p' <<<"$page")
echo "page: $(grep -o '<span id="count">[0-9]*</span>' <<<"$page") session=${#session} hex digits"
post() { get -o /dev/null -w '%{http_code}' -d "$1" "$url/cart"; }
# Each held request says the count it knows (as the page does), so one that reaches the
# server only after the change (a slow curl start on a loaded machine) answers at once.
known=10
for step in add remove; do
  get "$url/cart/status?count=$known" >"$held_out" &
  held=$!
  sleep 0.3
  [[ ! -s $held_out ]] || { echo "status answered before any change" >&2; exit 1; }
  code=$(post "action=$step&session=$session")
  wait "$held"  # here, not inside $(...): a subshell cannot wait for this shell's job
  echo "$step: $code $(cat "$held_out")"
  [[ $step == add ]] && known=9 || known=10
done
echo "stale: $(get "$url/cart/status?count=7")"
echo "no session: $(post 'action=add') unknown action: $(post "action=steal&session=$session")"
server_stop
