#!/usr/bin/env bash
# Web benchmarks beyond hello world (greenev's goals, docs/benchmarks.md):
#   long poll  10,000 held GET /cart/status on examples/longpoll_cart, one POST releases
#              them all: p99 release latency <= 300 ms; server RSS per held connection
#              <= 16 KiB (bench/longpoll_load);
#   TLS        1 GiB sendall over loopback TLS >= 0.8x a blocking C loop over OpenSSL,
#              same receiver, alternating in each run (bench/tls_sendall);
#   WebSocket  100 connections x 64-byte echo >= 0.8x the plain TCP echo server's round
#              trips/s (examples/echo_server), same clients, same run; one broadcast to
#              10,000 websocket clients (which stay connected) delivered in <= 300 ms
#              (bench/ws_bench).
# hello_http against Go, nginx and pywsgi is bench/http_bench.sh.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/web_bench.sh [--runs N] [--connections N] [--mib N] [--build-dir DIR] [--no-build]
                          [--results FILE]

  --runs N          runs of each measure, medians reported (default 3)
  --connections N   held long polls (default 10000; the fd limit must allow it)
  --mib N           MiB sent over TLS per run (default 1024)
  --build-dir DIR   build tree (default $GREENEV_BENCH_BUILD or build/bench)
  --no-build        use the binaries already built there
  --results FILE    also write the medians as "NAME VALUE UNIT" lines to FILE
USAGE
}

runs=3
connections=10000
mib=1024
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
results_file=""
need_value() { bench_need_value web_bench.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --connections) need_value "$1" $#; connections=$2; shift 2 ;;
    --mib) need_value "$1" $#; mib=$2; shift 2 ;;
    --build-dir) need_value "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "web_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers web_bench.sh "--runs, --connections and --mib" "$runs" "$connections" "$mib"
cd "$bench_root"
build=$(realpath -m "$build")
((do_build)) && bench_build "$build" longpoll_load longpoll_cart tls_sendall ws_bench echo_server >/dev/null
ulimit -n "$(ulimit -Hn)"  # both sides hold one fd per connection

work=$(mktemp -d)
# Servers started and not yet stopped: killed if the script ends early.
running=()
trap 'for pid in "${running[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# A CA and a localhost certificate for the TLS runs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

result() { sed -n "s/^result $1 = \\([0-9.]*\\) .*/\\1/p" "$2"; }
# start NAME COMMAND...: starts a server printing "listening on HOST:PORT"; sets server_pid, port.
start() {
  local log=$work/$1.txt
  shift
  "$@" >"$log" 2>&1 &
  server_pid=$!
  running+=("$server_pid")
  for _ in $(seq 100); do
    grep -q '^listening on ' "$log" && break
    sleep 0.1
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log")
  [[ -n $port ]] || { echo "web_bench.sh: $1 did not start: $(cat "$log")" >&2; exit 1; }
}
# stop PID: SIGTERM to a server started here; it must exit 0.
stop() {
  local pid=$1 left=() other
  bench_stop_server web_bench.sh "server $pid" "$pid" || exit 1
  for other in "${running[@]}"; do [[ $other == "$pid" ]] || left+=("$other"); done
  running=("${left[@]}")
}
ws_ratios=() broadcasts=() broadcast_loops=()
p99s=() rss=() baseline=() greenev=() ratios=()
for ((run = 1; run <= runs; run++)); do
  start server "$build/examples/longpoll_cart" --port 0
  "$build/bench/longpoll_load" --port "$port" --connections "$connections" --server-pid "$server_pid" >"$work/load.txt"
  stop "$server_pid"
  p99s+=("$(result release_p99 "$work/load.txt")")
  rss+=("$(result server_rss_per_connection "$work/load.txt")")
  for sender in baseline greenev; do
    "$build/bench/tls_sendall" --cert "$work/server.pem" --key "$work/server.key" --ca "$work/ca.pem" \
      --mib "$mib" --sender "$sender" >"$work/tls-$sender.txt"
  done
  baseline+=("$(result tls_sendall_baseline "$work/tls-baseline.txt")")
  greenev+=("$(result tls_sendall_greenev "$work/tls-greenev.txt")")
  ratios+=("$(awk -v g="${greenev[-1]}" -v b="${baseline[-1]}" 'BEGIN { printf "%.3f", g / b }')")
  start ws "$build/bench/ws_bench" server --port 0
  ws_port=$port ws_pid=$server_pid
  start tcp "$build/examples/echo_server" --port 0
  tcp_port=$port tcp_pid=$server_pid
  "$build/bench/ws_bench" echo --port "$ws_port" --mode ws >"$work/ws-echo.txt"
  "$build/bench/ws_bench" echo --port "$tcp_port" --mode tcp >"$work/tcp-echo.txt"
  stop "$tcp_pid"
  ws_ratios+=("$(awk -v w="$(result ws_echo_rps "$work/ws-echo.txt")" -v t="$(result tcp_echo_rps "$work/tcp-echo.txt")" 'BEGIN { printf "%.3f", w / t }')")
  "$build/bench/ws_bench" broadcast --port "$ws_port" --clients "$connections" >"$work/broadcast.txt"
  broadcasts+=("$(result broadcast_ms "$work/broadcast.txt")")
  broadcast_loops+=("$(result broadcast_server_sends_ms "$work/broadcast.txt")")
  stop "$ws_pid"
  echo "== run $run of $runs: websocket echo ${ws_ratios[-1]}x TCP's, broadcast to $connections in ${broadcasts[-1]} ms"
  echo "== run $run of $runs: long poll p99 ${p99s[-1]} ms, ${rss[-1]} KiB per held connection;" \
    "TLS sendall greenev ${greenev[-1]} MiB/s, blocking C ${baseline[-1]} MiB/s"
done

verdict() { awk -v v="$1" -v goal="$2" -v op="$3" 'BEGIN { ok = op == "<=" ? v <= goal : v >= goal; print ok ? "MET" : "MISSED" }'; }
m_p99=$(median "${p99s[@]}") m_rss=$(median "${rss[@]}") m_ratio=$(median "${ratios[@]}")
echo
echo "== web: median of $runs run(s)"
printf 'long poll, %d held, release p99      %8s ms   (goal <= 300 ms: %s)\n' "$connections" "$m_p99" "$(verdict "$m_p99" 300 "<=")"
printf 'long poll, server RSS per connection %8s KiB  (goal <= 16 KiB: %s)\n' "$m_rss" "$(verdict "$m_rss" 16 "<=")"
printf 'TLS sendall %d MiB: greenev %s MiB/s, blocking C %s MiB/s: %sx  (goal >= 0.8x: %s)\n' "$mib" \
  "$(median "${greenev[@]}")" "$(median "${baseline[@]}")" "$m_ratio" "$(verdict "$m_ratio" 0.8 ">=")"
m_ws=$(median "${ws_ratios[@]}") m_broadcast=$(median "${broadcasts[@]}")
printf 'websocket echo, 100 x 64 B: %sx the TCP echo server  (goal >= 0.8x: %s)\n' "$m_ws" "$(verdict "$m_ws" 0.8 ">=")"
printf 'websocket broadcast to %d clients: %s ms  (goal <= 300 ms: %s); server send loop %s ms\n' \
  "$connections" "$m_broadcast" "$(verdict "$m_broadcast" 300 "<=")" "$(median "${broadcast_loops[@]}")"
if [[ -n $results_file ]]; then
  {
    echo "longpoll_release_p99 $m_p99 ms"
    echo "longpoll_rss_per_connection $m_rss KiB"
    echo "tls_sendall_greenev $(median "${greenev[@]}") MiB/s"
    echo "tls_sendall_baseline $(median "${baseline[@]}") MiB/s"
    echo "tls_sendall_ratio $m_ratio x"
    echo "ws_echo_ratio_tcp $m_ws x"
    echo "ws_broadcast_ms $m_broadcast ms"
    echo "ws_broadcast_server_sends_ms $(median "${broadcast_loops[@]}") ms"
  } >"$results_file"
  echo "medians written to $results_file"
fi
