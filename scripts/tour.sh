#!/usr/bin/env bash
# The demo tour: installs what is missing, builds, and runs the examples in the order of
# the original gevent notes, each introduced by one line on what it shows, then a table of
# the sync vs async timings. Offline (everything talks to 127.0.0.1), under a minute once
# built. Safe to run again.
#
# It builds the libraries and the examples only, in build/tour (no GoogleTest, no test
# suite), with one line per step and the output in build/logs/tour-*.log (its end shown
# if a step fails). A step with nothing to do prints nothing: on a built tree the output
# is the demos and their table.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

greenev_install_packages "${GREENEV_TOUR_PACKAGES[@]}"
greenev_use_ccache
build="$GREENEV_ROOT/build/tour"
greenev_stages_init
if [[ ! -f $build/build.ninja ]]; then
  greenev_stage "configure build/tour (Release; examples on, tests off)" tour-configure
  cmake -S "$GREENEV_ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGREENEV_BUILD_TESTS=OFF \
    -DGREENEV_BUILD_EXAMPLES=ON -DGREENEV_BUILD_BENCH=OFF -DGREENEV_INSTALL=OFF
fi
greenev_stage "build the libraries and the examples" tour-build quiet
cmake --build "$build" | greenev_progress quiet
greenev_stage_close passed
trap - EXIT

bin="$build/examples"
out=$(mktemp -d)
server_pid=
trap 'if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi; rm -rf "$out"' EXIT

# demo NAME TITLE COMMAND...: prints the title and the command, runs it, keeps its output.
demo() {
  local name=$1 title=$2
  shift 2
  printf '\n\033[1;36m--- %s\033[0m\n' "$title"
  printf '$ %s\n' "$(basename "$1") ${*:2}"
  "$@" | tee "$out/$name.txt"
}

# last_field FILE KEY: the value of KEY=VALUE on the last line of FILE that has it.
last_field() {
  grep -oE "(^| )$2=[^ ]*" "$out/$1.txt" | tail -1 | cut -d= -f2
}

demo switch "explicit switches between two greenlets (greenlet's func1/func2)" "$bin/greenlet_switch"
demo sleep "two greenlets interleaving on sleep (gevent.sleep)" "$bin/sleep_order" --delay 0.5
demo baozi "a yield-style producer feeding two consumers, on greenlet switches" "$bin/producer_consumer"
demo baozi_queue "the same baozi, with spawned tasks and rendezvous channels" "$bin/producer_consumer" --mode queue
demo tasks "ten tasks sleeping 0.5 s: one after another, then spawned together" \
  "$bin/sync_vs_async" --tasks 10 --delay 0.5
demo urls "unmodified libcurl fetching 10 slow pages (0.2 s each, from an embedded server): in turn, then patched" \
  "$bin/url_fetcher"

demo commands "ten child processes of \`sleep 0.2\`, each waited for by its own greenlet (gevent.subprocess)" \
  "$bin/parallel_commands" --count 10 -- sleep 0.2

# echo_demo NAME TITLE SERVER_ARGS...: starts echo_server on a free loopback port, runs the
# seed's 100 clients against it, then stops it (SIGTERM) and waits for it.
echo_demo() {
  local name=$1 title=$2
  shift 2
  printf '\n\033[1;36m--- %s\033[0m\n' "$title"
  printf '$ echo_server --port 0%s\n' "${*:+ $*}"
  "$bin/echo_server" --port 0 "$@" >"$out/$name-server.txt" &
  server_pid=$!
  for _ in $(seq 50); do
    grep -q '^listening on ' "$out/$name-server.txt" && break
    sleep 0.1
  done
  cat "$out/$name-server.txt"
  local port
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out/$name-server.txt")
  printf '$ echo_clients --port %s --clients 100 --messages 200\n' "$port"
  "$bin/echo_clients" --port "$port" --clients 100 --messages 200 | tee "$out/$name.txt"
  kill -TERM "$server_pid"
  wait "$server_pid"
  server_pid=
}

echo_demo echo "one greenlet per connection: the echo server and the seed's 100 concurrent clients"
echo_demo echo_processes "the same server in two forked processes sharing the listener (gunicorn's -w 2)" \
  --processes 2

demo longpoll "long polling (the Tornado notes' cart): a held GET /cart/status per shopper, answered on every change" \
  "$GREENEV_ROOT/tests/examples/longpoll_cart_demo.sh" "$bin/longpoll_cart"

demo websocket "the same cart over WebSockets: every change pushed to each open socket" \
  python3 "$GREENEV_ROOT/tests/examples/websocket_cart_demo.py" "$bin/websocket_cart"

demo dns "concurrent lookups on c-ares (/etc/hosts and numeric names: no network needed)" \
  "$bin/resolve" localhost 127.0.0.1 ::1
demo monkey "plain POSIX sockets, sleep_for and getaddrinfo in 100 greenlets: unpatched, then after patch_all()" \
  "$bin/monkey_patch"

printf '\n\033[1m%-44s %12s %12s\033[0m\n' "demo" "sync" "async"
printf '%-44s %12s %12s\n' "sync_vs_async: 10 tasks x sleep(0.5 s)" "$(last_field tasks sync)" "$(last_field tasks async)"
printf '%-44s %12s %12s\n' "url_fetcher: 10 pages x 0.2 s, libcurl" "$(last_field urls sync)" "$(last_field urls async)"
printf '%-44s %12s %12s\n' "monkey_patch: 100 plain POSIX clients" "$(last_field monkey unpatched)" "$(last_field monkey patched)"
printf '%-44s %25s\n' "parallel_commands: 10 x sleep 0.2 s" "$(last_field commands wall) in all"
printf '%-44s %25s\n' "echo: 100 clients x 200 round trips" "$(last_field echo rate) round trips"
printf '%-44s %25s\n' "echo, 2 processes: the same clients" "$(last_field echo_processes rate) round trips"
printf '\n\033[1mtour done.\033[0m\n'
