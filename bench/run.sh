#!/usr/bin/env bash
# Builds the benchmarks in Release and runs them N times; prints each same-run ratio
# (greenev / baseline) per run and its median, plus python greenlet where installed.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/run.sh [--runs N] [--min-time SECONDS] [--check] [-- BENCHMARK_ARGS...]

  --runs N            run the benchmark binary N times (default 5)
  --min-time SECONDS  --benchmark_min_time for each benchmark (default 0.2)
  --check             exit 1 if the median of a ratio with a goal misses it
  -- ARGS...          passed to greenlet_bench (e.g. --benchmark_filter=round_trip)

Builds into build/bench (Release). Exits non-zero if the build or a run fails.
USAGE
}

runs=5
min_time=0.2
check=0
bench_args=()
while (($#)); do
  case "$1" in
    --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; runs=$2; shift 2 ;;
    --runs=*) runs=${1#*=}; shift ;;
    --min-time) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; min_time=$2; shift 2 ;;
    --min-time=*) min_time=${1#*=}; shift ;;
    --check) check=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --runs needs a positive integer, not '$runs'" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=build/bench
# Install rules are irrelevant here; turning them off keeps the bench independent of them.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGREENEV_BUILD_BENCH=ON \
  -DGREENEV_BUILD_TESTS=OFF -DGREENEV_INSTALL=OFF >/dev/null
cmake --build "$build" --target greenlet_bench

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/results.txt"
for ((run = 1; run <= runs; run++)); do
  echo "== run $run of $runs"
  "$build/bench/greenlet_bench" --benchmark_min_time="$min_time" "${bench_args[@]}" | tee "$work/run-$run.txt"
  # The binary's summary lines, "time NAME = X ns" and "ratio A/B = X [(goal <= G)]".
  sed -n "s/^\(time\|ratio\) /$run &/p" "$work/run-$run.txt" >>"$work/results.txt"
done

# python greenlet's switch round trip (the C extension gevent is built on), if installed.
# Run from / so that this repo's greenlet/ folder is not imported as a namespace package.
python_round_trip_ns=""
python_note="python greenlet: not installed (pip install greenlet, or apt-get install python3-greenlet)"
for python in python3 /usr/bin/python3; do
  command -v "$python" >/dev/null || continue
  if out=$(cd / && "$python" - 2>/dev/null <<'PY'
import time
import greenlet

main = greenlet.getcurrent()

def body():
    while True:
        main.switch()

g = greenlet.greenlet(body)
g.switch()
n, best = 200_000, float("inf")
for _ in range(5):
    start = time.perf_counter()
    for _ in range(n):
        g.switch()
    best = min(best, (time.perf_counter() - start) / n)
print(f"{best * 1e9:.1f} {greenlet.__version__}")
PY
  ); then
    python_round_trip_ns=${out% *}
    python_note="python greenlet ${out#* } ($python): round trip = $python_round_trip_ns ns (best of 5 x 200k, loop included)"
    break
  fi
done

echo
echo "== summary over $runs run(s): median [per-run values]"
echo "$python_note"
status=0
awk -v python_ns="$python_round_trip_ns" -v check="$check" '
  function median(list,    values, n, i, j, t) {
    n = split(list, values, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
    return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
  }
  $2 == "time" { if (!($3 in times)) time_order[++time_count] = $3; times[$3] = times[$3] " " $5 }
  $2 == "ratio" {
    if (!($3 in ratios)) ratio_order[++ratio_count] = $3
    ratios[$3] = ratios[$3] " " $5
    if ($6 == "(goal") { goal = $8; sub(/\)/, "", goal); goals[$3] = goal }
  }
  END {
    for (i = 1; i <= time_count; i++) {
      name = time_order[i]
      printf "time %-36s %9.2f ns  [%s ]\n", name, median(times[name]), times[name]
    }
    missed = 0
    for (i = 1; i <= ratio_count; i++) {
      name = ratio_order[i]
      m = median(ratios[name])
      line = sprintf("ratio %s = %.2f", name, m)
      if (name in goals) {
        line = line sprintf(" (goal <= %s%s)", goals[name], m > goals[name] + 0 ? ", MISSED" : "")
        if (m > goals[name] + 0) missed = 1
      }
      printf "%s  [%s ]\n", line, ratios[name]
    }
    if (python_ns != "" && ("raw_fiber_round_trip" in times))
      printf "ratio python_greenlet_round_trip/raw_fiber_round_trip = %.2f\n", python_ns / median(times["raw_fiber_round_trip"])
    if (python_ns != "" && ("greenlet_round_trip" in times))
      printf "ratio python_greenlet_round_trip/greenlet_round_trip = %.2f\n", python_ns / median(times["greenlet_round_trip"])
    exit check && missed
  }
' "$work/results.txt" || status=$?
exit $status
