#!/usr/bin/env bash
# HTTP hello-world benchmark: greenev's examples/hello_http against the servers people
# pick instead — Go's net/http (GOMAXPROCS=1), nginx (one process, `return 200`) and
# gevent's pywsgi — each on one core (taskset CPU 0), driven by wrk with one thread and
# 100 keep-alive connections on the other core. Servers alternate within a run, so
# machine noise hits them alike; ratio columns are medians of the per-run ratios.
# Server CPU is utime+stime from /proc over the measured seconds, per request: softirq
# time spent on loopback TCP is in no process's account, so it is a lower bound,
# comparable across rows. greenev's goals (docs/benchmarks.md): CPU per request <= 1.3x
# nginx's and <= 0.6x Go's; requests/s >= 20x pywsgi's.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/http_bench.sh [--runs N] [--connections N] [--seconds S] [--warmup S]
                           [--servers LIST] [--build-dir DIR] [--no-build] [--results FILE]

  --runs N          runs of each server, medians reported (default 3)
  --connections N   wrk's keep-alive connections (default 100)
  --seconds S       measured whole seconds per run (default 5), after --warmup S (default 1)
  --servers LIST    comma-separated subset of greenev,go,nginx,gevent (default: all that
                    are installed; each missing one is named and skipped)
  --build-dir DIR   build tree (default $GREENEV_BENCH_BUILD or build/bench); configured
                    in Release with GREENEV_BUILD_BENCH=ON unless --no-build
  --no-build        use the binaries already in the build tree
  --results FILE    also write the medians as "NAME VALUE UNIT" lines to FILE
                    (http_rps_SERVER, http_cpu_SERVER, http_cpu_ratio_nginx, ...)

Needs wrk; the baselines need golang-go, nginx-light and python3-gevent. Exits non-zero
if a build, a server or a run fails (socket errors, non-2xx answers, a server that does
not exit 0 on SIGTERM). Takes about runs x servers x (seconds + warmup + 1) s.
USAGE
}

runs=3
connections=100
seconds=5
warmup=1
wanted="greenev,go,nginx,gevent"
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
results_file=""
need_value() { bench_need_value http_bench.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --connections) need_value "$1" $#; connections=$2; shift 2 ;;
    --seconds) need_value "$1" $#; seconds=$2; shift 2 ;;
    --warmup) need_value "$1" $#; warmup=$2; shift 2 ;;
    --servers) need_value "$1" $#; wanted=$2; shift 2 ;;
    --build-dir) need_value "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "http_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers http_bench.sh "--runs, --connections, --seconds and --warmup (wrk takes whole seconds)" "$runs" "$connections" "$seconds" "$warmup"
command -v wrk >/dev/null || { echo "http_bench.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

root=$bench_root
cd "$root"
build=$(realpath -m "$build")
if ((do_build)); then
  bench_build "$build" hello_http
fi

work=$(mktemp -d)
server_pid=""
# A server still running here means the script was interrupted mid-run.
trap 'if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

servers=()
notes=()
wants() { [[ ",$wanted," == *",$1,"* ]]; }
gevent_python=""
nginx=""
if wants greenev; then
  if [[ -x $build/examples/hello_http ]]; then servers+=(greenev); else notes+=("greenev: skipped, $build/examples/hello_http is not built"); fi
fi
if wants go; then
  if command -v go >/dev/null; then
    # The Go cache stays in the build tree: nothing is fetched, net/http is the standard library.
    if (cd "$root/bench/go_hello" && GOCACHE=$build/go-cache GOPATH=$build/go-path GO111MODULE=off \
      go build -o "$build/bench/go_hello" main.go) >"$work/go-build.txt" 2>&1; then
      servers+=(go)
    else
      echo "http_bench.sh: building bench/go_hello failed:" >&2
      sed 's/^/  /' "$work/go-build.txt" >&2
      exit 1
    fi
  else
    notes+=("go: skipped, no go on PATH (apt-get install golang-go)")
  fi
fi
if wants nginx; then
  for candidate in /usr/sbin/nginx nginx; do
    if command -v "$candidate" >/dev/null; then nginx=$(command -v "$candidate"); break; fi
  done
  if [[ -n $nginx ]]; then servers+=(nginx); else notes+=("nginx: skipped, not installed (apt-get install nginx-light)"); fi
fi
if wants gevent; then
  # /usr/bin/python3 too: a pyenv python3 first on PATH often lacks the Debian package.
  for python in python3 /usr/bin/python3; do
    command -v "$python" >/dev/null || continue
    if (cd / && "$python" -c 'import gevent.pywsgi' 2>/dev/null); then
      gevent_python=$python
      break
    fi
  done
  if [[ -n $gevent_python ]]; then servers+=(gevent); else notes+=("gevent: skipped, not importable (apt-get install python3-gevent)"); fi
fi
((${#servers[@]})) || { echo "http_bench.sh: no server to measure" >&2; for n in "${notes[@]}"; do echo "  $n" >&2; done; exit 1; }

# A free loopback port for nginx, which cannot report the one port 0 gave it.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME LOG: sets server_pid and server_port, or prints why and returns 1.
start_server() {
  local name=$1 log=$2 attempt
  server_port=""
  case $name in
    greenev) taskset -c 0 "$build/examples/hello_http" --host 127.0.0.1 --port 0 >"$log" 2>&1 & ;;
    go) GOMAXPROCS=1 taskset -c 0 "$build/bench/go_hello" --host 127.0.0.1 --port 0 >"$log" 2>&1 & ;;
    nginx)
      local port dir=$work/nginx
      port=$(free_port)
      mkdir -p "$dir"
      # One process (master_process off), no access log: nginx at its leanest.
      cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir;
  proxy_temp_path $dir;
  fastcgi_temp_path $dir;
  uwsgi_temp_path $dir;
  scgi_temp_path $dir;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
NGINX
      taskset -c 0 "$nginx" -p "$dir" -e stderr -c "$dir/nginx.conf" >"$log" 2>&1 &
      server_port=$port
      ;;
    # From /: the repository's greenlet/ folder must not shadow python's greenlet module.
    gevent) (cd / && exec taskset -c 0 "$gevent_python" "$root/bench/gevent_hello.py" \
      --host 127.0.0.1 --port 0) >"$log" 2>&1 & ;;
  esac
  server_pid=$!
  for ((attempt = 0; attempt < 100; attempt++)); do
    if [[ $name != nginx ]]; then
      server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
    fi
    if [[ -n $server_port ]] && curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$server_port/" 2>/dev/null; then
      return 0
    fi
    bench_alive "$server_pid" || break
    sleep 0.1
  done
  echo "http_bench.sh: $name did not answer on 127.0.0.1:${server_port:-?} within 10 s; its output:" >&2
  sed 's/^/  /' "$log" >&2
  stop_server "$name" >/dev/null 2>&1 || true
  return 1
}

# stop_server NAME: SIGTERM (nginx: SIGQUIT, its graceful stop), then expects exit 0 in 5 s.
stop_server() {
  local code=0
  bench_stop_server http_bench.sh "$1" "$server_pid" "$([[ $1 == nginx ]] && echo QUIT || echo TERM)" || code=$?
  server_pid=""
  return "$code"
}

# CPU time (utime + stime, in clock ticks) of PID.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

status=0
# results.txt: "SERVER RUN RPS CPU_US_PER_REQUEST", one line per successful run.
: >"$work/results.txt"
for ((run = 1; run <= runs; run++)); do
  for name in "${servers[@]}"; do
    echo "== run $run of $runs: $name"
    log=$work/$name-$run.server.txt
    if ! start_server "$name" "$log"; then
      status=1
      continue
    fi
    failed=0
    url="http://127.0.0.1:$server_port/"
    taskset -c 1 wrk -t1 -c "$connections" -d "${warmup}s" "$url" >/dev/null 2>&1 || failed=1
    before=$(cpu_ticks "$server_pid")
    taskset -c 1 wrk -t1 -c "$connections" -d "${seconds}s" "$url" >"$work/$name-$run.wrk.txt" 2>&1 || failed=1
    after=$(cpu_ticks "$server_pid")
    stop_server "$name" || failed=1
    out=$work/$name-$run.wrk.txt
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$out")
    requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$out")
    if grep -qE 'Socket errors|Non-2xx' "$out" || [[ -z $rps || -z $requests || $requests -eq 0 ]]; then failed=1; fi
    if ((failed)); then
      echo "http_bench.sh: run $run against $name failed; wrk said:" >&2
      sed 's/^/  /' "$out" >&2
      echo "  server output:" >&2
      sed 's/^/  /' "$log" >&2
      status=1
      continue
    fi
    cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v n="$requests" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }')
    printf '   %.0f requests/s, server CPU %s us/request\n' "$rps" "$cpu"
    echo "$name $run $rps $cpu" >>"$work/results.txt"
  done
done

echo
echo "== HTTP hello world: wrk -t1 -c$connections, ${seconds} s after ${warmup} s warmup, server on one core, median of $runs run(s)"
for note in "${notes[@]}"; do echo "$note"; done
results_out=${results_file:-/dev/null}
: >"$results_out"
awk -v servers="${servers[*]}" -v results_out="$results_out" "$bench_awk_median"'
  { rps[$1, $2] = $3; cpu[$1, $2] = $4; if ($2 > runs) runs = $2 }
  END {
    printf "%-10s %12s %16s %12s %12s %12s  %s\n", "server", "median rps", "CPU us/request", "CPU/nginx", "CPU/go", "rps/gevent", "[rps per run]"
    count = split(servers, names, " ")
    for (s = 1; s <= count; s++) {
      name = names[s]
      rps_list = ""; cpu_list = ""; vs_nginx = ""; vs_go = ""; vs_gevent = ""
      for (r = 1; r <= runs; r++) {
        if (!((name, r) in rps)) continue
        rps_list = rps_list " " rps[name, r]; cpu_list = cpu_list " " cpu[name, r]
        if (("nginx", r) in cpu && cpu["nginx", r] > 0) vs_nginx = vs_nginx " " cpu[name, r] / cpu["nginx", r]
        if (("go", r) in cpu && cpu["go", r] > 0) vs_go = vs_go " " cpu[name, r] / cpu["go", r]
        if (("gevent", r) in rps && rps["gevent", r] > 0) vs_gevent = vs_gevent " " rps[name, r] / rps["gevent", r]
      }
      if (rps_list == "") continue
      m_nginx = vs_nginx == "" ? "-" : sprintf("%.2fx", median(vs_nginx))
      m_go = vs_go == "" ? "-" : sprintf("%.2fx", median(vs_go))
      m_gevent = vs_gevent == "" ? "-" : sprintf("%.1fx", median(vs_gevent))
      printf "%-10s %12.0f %16.2f %12s %12s %12s  [%s ]\n", name, median(rps_list), median(cpu_list), m_nginx, m_go, m_gevent, rps_list
      printf "http_rps_%s %.0f rps\nhttp_cpu_%s %.3f us\n", name, median(rps_list), name, median(cpu_list) >results_out
      if (name == "greenev") {
        if (vs_nginx != "") { printf "http_cpu_ratio_nginx %.3f x\n", median(vs_nginx) >results_out; goals = goals sprintf("  CPU/request <= 1.3x nginx: %.2fx %s\n", median(vs_nginx), median(vs_nginx) <= 1.3 ? "MET" : "MISSED") }
        if (vs_go != "") { printf "http_cpu_ratio_go %.3f x\n", median(vs_go) >results_out; goals = goals sprintf("  CPU/request <= 0.6x Go: %.2fx %s\n", median(vs_go), median(vs_go) <= 0.6 ? "MET" : "MISSED") }
        if (vs_gevent != "") { printf "http_rps_ratio_gevent %.3f x\n", median(vs_gevent) >results_out; goals = goals sprintf("  requests/s >= 20x pywsgi: %.1fx %s\n", median(vs_gevent), median(vs_gevent) >= 20 ? "MET" : "MISSED") }
      }
    }
    if (goals != "") printf "goals (greenev):\n%s", goals
  }' "$work/results.txt"
[[ -z $results_file ]] || echo "medians written to $results_file"
exit "$status"
