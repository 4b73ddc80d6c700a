#!/usr/bin/env bash
# Interposition echo benchmark (greenev's goal, stated in docs/benchmarks.md: hooked POSIX
# echo >= 0.9x greenev-socket echo, same run, so that unmodified blocking code loses at most
# 10% to code written for greenev). bench/patched_echo serves either with plain blocking
# POSIX calls under patch_all() or with greenev::stream_server; bench/echo_load drives each
# in turn (closed loop, every echo verified). Servers alternate within a run, so noise hits
# both alike; the ratio reported is the median of the per-run ratios posix/greenev.
#
# usage: bench/patched_echo_bench.sh [--runs N] [--connections N] [--size B] [--seconds S]
#                                    [--warmup S] [--build-dir DIR] [--no-build]
#   --build-dir defaults to $GREENEV_BENCH_BUILD or build/bench (bench/lib.sh).
set -euo pipefail

runs=5
connections=100
size=64
seconds=3
warmup=1
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
while (($#)); do
  case "$1" in
    --runs) bench_need_value patched_echo_bench.sh "$1" $#; runs=$2; shift 2 ;;
    --connections) bench_need_value patched_echo_bench.sh "$1" $#; connections=$2; shift 2 ;;
    --size) bench_need_value patched_echo_bench.sh "$1" $#; size=$2; shift 2 ;;
    --seconds) bench_need_value patched_echo_bench.sh "$1" $#; seconds=$2; shift 2 ;;
    --warmup) bench_need_value patched_echo_bench.sh "$1" $#; warmup=$2; shift 2 ;;
    --build-dir) bench_need_value patched_echo_bench.sh "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    *) echo "usage: bench/patched_echo_bench.sh [--runs N] [--connections N] [--size B] [--seconds S] [--warmup S] [--build-dir DIR] [--no-build]" >&2
       exit 2 ;;
  esac
done
bench_positive_integers patched_echo_bench.sh "--runs, --connections and --size" "$runs" "$connections" "$size"
root=$bench_root
cd "$root"
if ((do_build)); then
  bench_build "$build" patched_echo echo_load >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure MODE RUN: prints round trips per second.
measure() {
  local mode=$1 log=$work/$1-$2.server.txt pid port="" attempt rps cpu
  : >"$log"  # here, not in the background job: sed must not read the last run's port
  "$build/bench/patched_echo" --mode "$mode" --port 0 >"$log" 2>&1 &
  pid=$!
  for ((attempt = 0; attempt < 100; attempt++)); do
    port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$log")
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { echo "patched_echo_bench.sh: $mode server did not start" >&2; cat "$log" >&2; kill "$pid"; return 1; }
  rps=$("$build/bench/echo_load" --host 127.0.0.1 --port "$port" --connections "$connections" --size "$size" \
    --seconds "$seconds" --warmup "$warmup" --server-pid "$pid" | tee "$work/$mode-$2.load.txt" |
    sed -n 's/^result rps = \([0-9.]*\) .*/\1/p')
  kill -TERM "$pid"
  wait "$pid" || { echo "patched_echo_bench.sh: $mode server exited non-zero" >&2; return 1; }
  grep -q '^result errors = 0 ' "$work/$mode-$2.load.txt" || { echo "patched_echo_bench.sh: echo errors" >&2; return 1; }
  cpu=$(sed -n 's/^result server_cpu_per_round_trip = \([0-9.]*\) .*/\1/p' "$work/$mode-$2.load.txt")
  echo "$rps ${cpu:-0}"
}

posix=()
native=()
ratios=()
cpu_ratios=()
for ((run = 1; run <= runs; run++)); do
  read -r p p_cpu < <(measure posix "$run")
  read -r g g_cpu < <(measure greenev "$run")
  [[ -n ${p:-} && -n ${g:-} ]] || exit 1
  posix+=("$p")
  native+=("$g")
  ratios+=("$(awk -v p="$p" -v g="$g" 'BEGIN {printf "%.3f", p / g}')")
  cpu_ratios+=("$(awk -v p="$p_cpu" -v g="$g_cpu" 'BEGIN {printf "%.3f", (p > 0) ? g / p : 0}')")
  echo "run $run: posix under patch_all() $p round_trips/s ($p_cpu us CPU each)," \
    "greenev sockets $g round_trips/s ($g_cpu us CPU each), ratio ${ratios[-1]}"
done

echo
echo "== echo: $connections connections x $size B, ${seconds} s after ${warmup} s warmup, median of $runs run(s)"
printf 'result patched_posix_rps = %s round_trips/s\n' "$(median "${posix[@]}")"
printf 'result greenev_socket_rps = %s round_trips/s\n' "$(median "${native[@]}")"
printf 'result patched_over_greenev = %s (round trips/s; goal >= 0.9)\n' "$(median "${ratios[@]}")"
printf 'result patched_over_greenev_cpu = %s (greenev CPU / patched CPU per round trip)\n' "$(median "${cpu_ratios[@]}")"
