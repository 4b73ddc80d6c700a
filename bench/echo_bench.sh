#!/usr/bin/env bash
# Echo benchmark (greenev's goal, stated in docs/benchmarks.md: >= 0.95x raw libev round
# trips/s, since the hub runs on libev and should cost it at most 5%).
# Each run starts every server on a loopback port 0 in turn (raw libev callbacks, greenev's
# examples/echo_server when built, gevent's StreamServer when importable), drives it with
# echo_load (closed loop, every echo verified), stops it with SIGTERM and expects exit 0.
# Servers alternate within a run, so machine noise hits them alike; the ratio column is the
# median of the per-run ratios. Server CPU is utime+stime from /proc: softirq time spent on
# loopback TCP is in no process's account, so it is a lower bound, comparable across rows.
# With --sendall it also measures a large blocking sendall over loopback (sendall_baseline).
#
# Run: bench/echo_bench.sh [options], or bench/run.sh --echo to run it after the others.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/echo_bench.sh [--runs N] [--connections N] [--size BYTES] [--seconds S]
                           [--warmup S] [--load-threads N] [--workers N] [--pin]
                           [--no-gevent] [--sendall] [--sendall-mib MIB] [--no-echo]
                           [--build-dir DIR] [--no-build] [--results FILE]

  --runs N          runs of each measure, medians reported (default 3)
  --connections N   concurrent connections (default 100)
  --size BYTES      message size (default 64)
  --seconds S       measured seconds per run (default 3), after --warmup S (default 1)
  --load-threads N  echo_load threads (default 1)
  --workers N       greenev echo_server --workers N (default 1)
  --pin             pin each server to CPU 0 and echo_load to CPU 1 (taskset)
  --no-gevent       skip the gevent server
  --sendall         also measure sendall throughput (--sendall-mib, default 512)
  --no-echo         skip the echo servers (with --sendall: only that)
  --build-dir DIR   build tree (default $GREENEV_BENCH_BUILD or build/bench); configured
                    in Release with GREENEV_BUILD_BENCH=ON unless --no-build
  --no-build        use the binaries already in the build tree
  --results FILE    also write the medians as "NAME VALUE UNIT" lines to FILE (echo_rps_SERVER,
                    echo_cpu_SERVER, echo_ratio_SERVER, sendall_*; for bench/report.sh)

Exits non-zero if a build, a server, or a run fails (mismatch, connection error, a server
that does not exit 0 on SIGTERM). Takes about runs x servers x (seconds + warmup + 1) s.
USAGE
}

runs=3
connections=100
size=64
seconds=3
warmup=1
load_threads=1
workers=1
pin=0
gevent=1
sendall=0
sendall_mib=512
echo=1
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
results_file=""
need_value() { bench_need_value echo_bench.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --connections) need_value "$1" $#; connections=$2; shift 2 ;;
    --size) need_value "$1" $#; size=$2; shift 2 ;;
    --seconds) need_value "$1" $#; seconds=$2; shift 2 ;;
    --warmup) need_value "$1" $#; warmup=$2; shift 2 ;;
    --load-threads) need_value "$1" $#; load_threads=$2; shift 2 ;;
    --workers) need_value "$1" $#; workers=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --no-gevent) gevent=0; shift ;;
    --sendall) sendall=1; shift ;;
    --sendall-mib) need_value "$1" $#; sendall_mib=$2; shift 2 ;;
    --no-echo) echo=0; shift ;;
    --build-dir) need_value "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "echo_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers echo_bench.sh "--runs and --workers" "$runs" "$workers"

root=$bench_root
cd "$root"
if ((do_build)); then
  bench_build "$build" echo_load raw_libev_echo sendall_baseline echo_server
fi

server_prefix=()
load_prefix=()
if ((pin)); then
  server_prefix=(taskset -c 0)
  load_prefix=(taskset -c 1)
fi

servers=(raw_libev)
notes=()
echo_server=$build/examples/echo_server
if [[ -x $echo_server ]]; then
  servers+=(greenev)
else
  notes+=("greenev: skipped, $echo_server is not built yet")
fi
gevent_python=""
if ((gevent)); then
  # /usr/bin/python3 too: a pyenv python3 first on PATH often lacks the Debian package.
  for python in python3 /usr/bin/python3; do
    command -v "$python" >/dev/null || continue
    if (cd / && "$python" -c 'import gevent' 2>/dev/null); then
      gevent_python=$python
      break
    fi
  done
  if [[ -n $gevent_python ]]; then
    servers+=(gevent)
  else
    notes+=("gevent: skipped, not importable (apt-get install python3-gevent, or pip install gevent)")
  fi
else
  notes+=("gevent: skipped (--no-gevent)")
fi

work=$(mktemp -d)
server_pid=""
# A server still running here means the script was interrupted mid-run.
trap 'if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

# start_server NAME LOG: sets server_pid and server_port, or prints why and returns 1.
start_server() {
  local name=$1 log=$2 attempt
  case $name in
    raw_libev) "${server_prefix[@]}" "$build/bench/raw_libev_echo" --host 127.0.0.1 --port 0 >"$log" 2>&1 & ;;
    greenev)
      "${server_prefix[@]}" "$echo_server" --host 127.0.0.1 --port 0 --workers "$workers" >"$log" 2>&1 &
      ;;
    # From /: the repository's greenlet/ folder must not shadow python's greenlet module.
    gevent) (cd / && exec "${server_prefix[@]}" "$gevent_python" "$root/bench/gevent_echo.py" \
      --host 127.0.0.1 --port 0) >"$log" 2>&1 & ;;
  esac
  server_pid=$!
  server_port=""
  for ((attempt = 0; attempt < 100; attempt++)); do
    server_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
    [[ -n $server_port ]] && return 0
    bench_alive "$server_pid" || break
    sleep 0.1
  done
  echo "echo_bench.sh: $name did not print 'listening on HOST:PORT' within 10 s; its output:" >&2
  sed 's/^/  /' "$log" >&2
  stop_server "$name" >/dev/null 2>&1 || true
  return 1
}

# stop_server NAME: SIGTERM, then expects exit status 0 within 5 s.
stop_server() {
  local code=0
  bench_stop_server echo_bench.sh "$1" "$server_pid" || code=$?
  server_pid=""
  return "$code"
}

status=0
# results.txt: "SERVER RUN RPS CPU_US_PER_ROUND_TRIP", one line per successful run.
: >"$work/results.txt"
if ((echo)); then
  for ((run = 1; run <= runs; run++)); do
    for name in "${servers[@]}"; do
      echo "== run $run of $runs: $name"
      log=$work/$name-$run.server.txt
      if ! start_server "$name" "$log"; then
        status=1
        continue
      fi
      failed=0
      "${load_prefix[@]}" "$build/bench/echo_load" --host 127.0.0.1 --port "$server_port" \
        --connections "$connections" --size "$size" --seconds "$seconds" --warmup "$warmup" \
        --threads "$load_threads" --server-pid "$server_pid" | tee "$work/$name-$run.load.txt" || failed=1
      stop_server "$name" || failed=1
      if ((failed)); then
        echo "echo_bench.sh: run $run against $name failed; server output:" >&2
        sed 's/^/  /' "$log" >&2
        status=1
        continue
      fi
      rps=$(sed -n 's/^result rps = \([0-9.]*\) .*/\1/p' "$work/$name-$run.load.txt")
      cpu=$(sed -n 's/^result server_cpu_per_round_trip = \([0-9.]*\) .*/\1/p' "$work/$name-$run.load.txt")
      echo "$name $run ${rps:-0} ${cpu:-0}" >>"$work/results.txt"
    done
  done
fi

: >"$work/sendall.txt"
if ((sendall)); then
  for ((run = 1; run <= runs; run++)); do
    echo "== run $run of $runs: sendall $sendall_mib MiB over loopback TCP"
    "$build/bench/sendall_baseline" --mib "$sendall_mib" --transport tcp | tee "$work/sendall-$run.txt" || status=1
    sed -n "s/^result \([a-z_]*\) = \([0-9.]*\) .*/\1 $run \2/p" "$work/sendall-$run.txt" >>"$work/sendall.txt"
    # greenev's sendall: the same program, only the sending side replaced.
    "$build/bench/sendall_baseline" --mib "$sendall_mib" --transport tcp --sender greenev |
      tee "$work/sendall-greenev-$run.txt" || status=1
    sed -n "s/^result \([a-z_]*\) = \([0-9.]*\) .*/\1 $run \2/p" "$work/sendall-greenev-$run.txt" >>"$work/sendall.txt"
  done
fi

echo
echo "== echo: $connections connections x $size B, ${seconds} s measured after ${warmup} s warmup, median of $runs run(s)"
for note in "${notes[@]}"; do echo "$note"; done
results_out=${results_file:-/dev/null}
: >"$results_out"
awk -v runs="$runs" -v servers="${servers[*]}" -v echo="$echo" -v workers="$workers" -v results_out="$results_out" "$bench_awk_median"'
  FILENAME ~ /results.txt$/ { rps[$1, $2] = $3; cpu[$1, $2] = $4; next }
  { sendall[$1] = sendall[$1] " " $3; if (!($1 in seen)) { seen[$1] = 1; sendall_order[++sendall_count] = $1 } }
  END {
    if (echo) {
      printf "%-22s %12s %14s %10s %10s  %s\n", "server", "median rps", "CPU us/round", "rps/raw", "CPU/raw", "[rps per run]"
      count = split(servers, names, " ")
      for (s = 1; s <= count; s++) {
        name = names[s]; rps_list = ""; cpu_list = ""; ratio_list = ""; cpu_ratio_list = ""
        for (run = 1; run <= runs; run++) {
          if (!((name, run) in rps)) continue
          rps_list = rps_list " " rps[name, run]; cpu_list = cpu_list " " cpu[name, run]
          if ((("raw_libev", run) in rps) && rps["raw_libev", run] > 0) {
            ratio_list = ratio_list " " rps[name, run] / rps["raw_libev", run]
            if (cpu["raw_libev", run] > 0) cpu_ratio_list = cpu_ratio_list " " cpu[name, run] / cpu["raw_libev", run]
          }
        }
        label = (name == "greenev" && workers > 1) ? "greenev (" workers " workers)" : name
        if (rps_list == "") { printf "%-22s %12s %14s %10s %10s  (every run failed)\n", label, "-", "-", "-", "-"; continue }
        ratio = ratio_list == "" ? "-" : sprintf("%.2fx", median(ratio_list))
        cpu_ratio = cpu_ratio_list == "" ? "-" : sprintf("%.2fx", median(cpu_ratio_list))
        printf "%-22s %12.0f %14.2f %10s %10s  [%s ]\n", label, median(rps_list), median(cpu_list), ratio, cpu_ratio, rps_list
        printf "echo_rps_%s %.0f rps\necho_cpu_%s %.3f us\n", name, median(rps_list), name, median(cpu_list) >results_out
        if (ratio_list != "") printf "echo_ratio_%s %.3f x\n", name, median(ratio_list) >results_out
        if (cpu_ratio_list != "") printf "echo_cpu_ratio_%s %.3f x\n", name, median(cpu_ratio_list) >results_out
        if (name == "greenev" && ratio_list != "")
          goal_line = sprintf("goal: greenev >= 0.95x raw libev rps: %.2fx, %s", median(ratio_list), median(ratio_list) >= 0.95 ? "MET" : "MISSED")
      }
      print goal_line != "" ? goal_line : "goal: greenev >= 0.95x raw libev rps: not measured (no greenev row)"
    }
    if (sendall_count) {
      printf "\n== sendall over loopback TCP, median of %d run(s)\n", runs
      for (i = 1; i <= sendall_count; i++) {
        name = sendall_order[i]
        printf "%-26s %10.1f MiB/s  [%s ]\n", name, median(sendall[name]), sendall[name]
        printf "%s %.1f MiB/s\n", name, median(sendall[name]) >results_out
      }
      if (("sendall_greenev_tcp" in sendall) && ("sendall_baseline_tcp" in sendall))
        printf "ratio greenev/blocking C = %.2f\n", median(sendall["sendall_greenev_tcp"]) / median(sendall["sendall_baseline_tcp"])
      else
        print "greenev sendall: missing from the results (see the run messages above)"
    }
  }
' "$work/results.txt" "$work/sendall.txt"
[[ -z $results_file ]] || echo "medians written to $results_file"
if ((status != 0)); then
  echo "echo_bench.sh: FAILED (see the messages above)" >&2
fi
exit $status
