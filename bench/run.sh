#!/usr/bin/env bash
# Builds the benchmarks in Release and runs them N times: greenlet_bench and hub_bench
# (Google Benchmark, same-run ratios against raw Boost.Context, libev and greenlet
# baselines), and hub_soak's 100k sleepers (with background stack prefaulting, then without:
# the library's default); a million greenlets once. Prints every median,
# then python greenlet's and gevent's figures where installed, then a table of each measure
# against greenev's goal for it (the goals and their reasons: docs/benchmarks.md). With
# --echo, bench/echo_bench.sh's echo table after.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/run.sh [--runs N] [--min-time SECONDS] [--check] [--no-soak] [--no-gevent]
                    [--echo] [--results FILE] [-- BENCHMARK_ARGS...]

  --runs N            run each benchmark binary and the 100k-sleepers soak N times (default 5)
  --min-time SECONDS  --benchmark_min_time for each benchmark (default 0.2)
  --check             exit 1 if the median of a measure with a goal misses it
  --no-soak           skip hub_soak (100k sleepers, a million greenlets)
  --no-gevent         skip the python greenlet and gevent baselines
  --echo              then run bench/echo_bench.sh --runs N (echo servers: raw libev,
                      greenev, gevent); its failure fails this script too
  --results FILE      also write every median as a "NAME VALUE UNIT" line to FILE
                      (greenev, python greenlet and gevent figures; for bench/report.sh)
  -- ARGS...          passed to greenlet_bench and hub_bench (e.g. --benchmark_filter=sleep0)

Builds into build/bench (Release). Exits non-zero if the build or a run fails.
Takes about 2-3 minutes with the defaults.
USAGE
}

runs=5
min_time=0.2
check=0
soak=1
gevent=1
echo_bench=0
results_file=""
bench_args=()
while (($#)); do
  case "$1" in
    --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; runs=$2; shift 2 ;;
    --runs=*) runs=${1#*=}; shift ;;
    --min-time) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; min_time=$2; shift 2 ;;
    --min-time=*) min_time=${1#*=}; shift ;;
    --check) check=1; shift ;;
    --no-soak) soak=0; shift ;;
    --no-gevent) gevent=0; shift ;;
    --echo) echo_bench=1; shift ;;
    --results) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --runs needs a positive integer, not '$runs'" >&2
  exit 2
fi

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$bench_root
cd "$root"
build=build/bench
bench_build "$build" greenlet_bench hub_bench hub_soak

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# results.txt: "RUN time|ratio|goal|result NAME = VALUE ...", hub_bench's names prefixed "hub.".
: >"$work/results.txt"
for ((run = 1; run <= runs; run++)); do
  echo "== run $run of $runs"
  "$build/bench/greenlet_bench" --benchmark_min_time="$min_time" "${bench_args[@]}" | tee "$work/greenlet-$run.txt"
  sed -n "s/^\(time\|ratio\) /$run &/p" "$work/greenlet-$run.txt" >>"$work/results.txt"
  "$build/bench/hub_bench" --benchmark_min_time="$min_time" "${bench_args[@]}" | tee "$work/hub-$run.txt"
  sed -n "s/^\(time\|ratio\|goal\) /$run &hub./p" "$work/hub-$run.txt" >>"$work/results.txt"
  if ((soak)); then
    "$build/bench/hub_soak" sleepers 100000 1 | tee "$work/sleepers-$run.txt"
    sed -n "s/^result /$run &/p" "$work/sleepers-$run.txt" >>"$work/results.txt"
    # The same without background prefaulting: the library's default path.
    "$build/bench/hub_soak" --prefault off sleepers 100000 1 | tee "$work/sleepers-no-prefault-$run.txt"
    sed -n "s/^result sleepers_/$run result no_prefault_sleepers_/p" "$work/sleepers-no-prefault-$run.txt" >>"$work/results.txt"
  fi
done
if ((soak)); then
  echo "== once: a million greenlets"
  "$build/bench/hub_soak" million 1000000 | tee "$work/million.txt"
  sed -n "s/^result /1 &/p" "$work/million.txt" >>"$work/results.txt"
  echo "== once, for comparison: 100k sleepers on the library's default stacks"
  "$build/bench/hub_soak" --stack-kind guarded --stack-kib 256 --prefault off sleepers 100000 1 | tee "$work/sleepers-guarded.txt"
  sed -n "s/^result sleepers_/1 result default_stacks_sleepers_/p" "$work/sleepers-guarded.txt" >>"$work/results.txt"
fi

# Python baselines, run from / so that this repo's greenlet/ folder is not imported as a
# namespace package: python greenlet's switch round trip (the C extension gevent is built
# on), and gevent's figures for hub_bench's and hub_soak's measures.
python_round_trip_ns=""
python_note="python greenlet: not installed (pip install greenlet, or apt-get install python3-greenlet)"
gevent_note="gevent: not installed (apt-get install python3-gevent, or pip install gevent)"
: >"$work/gevent.txt"
if ((gevent)); then
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
  for python in python3 /usr/bin/python3; do
    command -v "$python" >/dev/null || continue
    (cd / && "$python" -c 'import gevent' 2>/dev/null) || continue
    echo "== once: gevent ($python)"
    (cd / && "$python" "$root/bench/gevent_baseline.py") | tee "$work/gevent.txt"
    gevent_note=$(sed -n 's/^gevent /gevent /p' "$work/gevent.txt" | head -1)" ($python): spawn/sleep0 medians of 5, sleepers once"
    break
  done
else
  python_note="python greenlet: skipped (--no-gevent)"
  gevent_note="gevent: skipped (--no-gevent)"
fi

echo
echo "== summary over $runs run(s): median [per-run values]"
echo "$python_note"
echo "$gevent_note"
status=0
awk -v python_ns="$python_round_trip_ns" -v check="$check" -v runs="$runs" '
  function median(list,    values, n, i, j, t) {
    n = split(list, values, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
    return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
  }
  # One row of the final table: a measure, its greenev median, gevent, the goal.
  function row(label, key, gevent_key, goal, unit, format,    have, m, g, verdict, speedup) {
    have = key in values
    m = have ? median(values[key]) : 0
    g = gevent_key != "" && (gevent_key in gevent) ? gevent[gevent_key] : ""
    verdict = ""
    if (goal != "" && have) {
      verdict = m <= goal + 0 ? "MET" : "MISSED"
      if (verdict == "MISSED") missed = 1
    }
    speedup = have && g != "" && m > 0 ? sprintf("%.1fx", g / m) : "-"
    printf "%-38s %11s %11s %9s %10s  %-4s %s\n", label, have ? sprintf(format, m) : "-",
           g != "" ? sprintf(format, g) : "-", speedup, goal == "" ? "-" : "<= " goal, unit, verdict
  }
  FILENAME ~ /gevent.txt$/ { if ($1 == "result") gevent[$2] = $4; next }
  $2 == "time" { if (!($3 in values)) time_order[++time_count] = $3; values[$3] = values[$3] " " $5 }
  $2 == "ratio" {
    if (!($3 in values)) ratio_order[++ratio_count] = $3
    values[$3] = values[$3] " " $5
    if ($6 == "(goal") { goal = $8; sub(/\)/, "", goal); goals[$3] = goal }
  }
  $2 == "result" { if (!($3 in values)) result_order[++result_count] = $3; values[$3] = values[$3] " " $5; units[$3] = $6 }
  END {
    for (i = 1; i <= time_count; i++) {
      name = time_order[i]
      printf "time %-40s %9.2f ns  [%s ]\n", name, median(values[name]), values[name]
    }
    for (i = 1; i <= ratio_count; i++) {
      name = ratio_order[i]
      m = median(values[name])
      line = sprintf("ratio %s = %.2f", name, m)
      if (name in goals) {
        line = line sprintf(" (goal <= %s%s)", goals[name], m > goals[name] + 0 ? ", MISSED" : "")
        if (m > goals[name] + 0) missed = 1
      }
      printf "%s  [%s ]\n", line, values[name]
    }
    for (i = 1; i <= result_count; i++) {
      name = result_order[i]
      printf "result %-36s %9.4g %s  [%s ]\n", name, median(values[name]), units[name], values[name]
    }
    if (python_ns != "" && ("raw_fiber_round_trip" in values))
      printf "ratio python_greenlet_round_trip/raw_fiber_round_trip = %.2f\n", python_ns / median(values["raw_fiber_round_trip"])
    if (python_ns != "" && ("greenlet_round_trip" in values))
      printf "ratio python_greenlet_round_trip/greenlet_round_trip = %.2f\n", python_ns / median(values["greenlet_round_trip"])

    printf "\n%-38s %11s %11s %9s %10s  %-4s\n", "measure (goals: docs/benchmarks.md)", "greenev", "gevent",
           "gevent/gv", "goal", "unit"
    row("switch round trip / raw fiber", "greenlet_round_trip/raw_fiber_round_trip", "", "1.30", "x", "%.2f")
    row("spawn + run + join", "hub.spawn_run_join", "gevent_spawn_run_join", "150", "ns", "%.1f")
    row("spawn 1000, joinall (per task)", "hub.spawn_run_join_batch", "gevent_spawn_run_join_batch", "150", "ns", "%.1f")
    row("sleep(0) yield", "hub.sleep0", "gevent_sleep0", "60", "ns", "%.1f")
    row("sleep(0), two greenlets (per yield)", "hub.sleep0_two_greenlets", "gevent_sleep0_two_greenlets", "60", "ns", "%.1f")
    row("100k x sleep(1 s): wall", "sleepers_wall", "gevent_sleepers_wall", "1.15", "s", "%.3f")
    row("  same, prefault off (library default)", "no_prefault_sleepers_wall", "gevent_sleepers_wall", "", "s", "%.3f")
    row("  floor: 1 s + first write to 100k pages", "no_prefault_sleepers_page_floor_wall", "", "", "s", "%.3f")
    row("100k x sleep(1 s): RSS per greenlet", "sleepers_rss_per_greenlet", "gevent_sleepers_rss_per_greenlet", "8", "KiB", "%.2f")
    row("1M greenlets on one event: peak RSS", "million_rss", "", "6", "GiB", "%.2f")
    row("1M greenlets on one event: wall", "million_wall", "", "", "s", "%.3f")
    printf "(greenev: median of %d runs; 1M greenlets: one run; hub_soak uses compact 32 KiB stacks and\n", runs
    printf " stack_prefault::background, a helper thread that faults stacks in ahead of use)\n"
    exit check && missed
  }
' "$work/results.txt" "$work/gevent.txt" || status=$?
if [[ -n $results_file ]]; then
  # The medians again, one "NAME VALUE UNIT" line each, in the order first seen.
  awk -v python_ns="$python_round_trip_ns" '
    function median(list,    values, n, i, j, t) {
      n = split(list, values, " ")
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
      return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    FILENAME ~ /gevent.txt$/ { if ($1 == "result") print $2, $4, $5; next }
    $2 == "time" || $2 == "ratio" || $2 == "result" {
      if (!($3 in values)) { order[++count] = $3; units[$3] = $2 == "time" ? "ns" : $2 == "ratio" ? "x" : $6 }
      values[$3] = values[$3] " " $5
    }
    END {
      for (i = 1; i <= count; i++) print order[i], median(values[order[i]]), units[order[i]]
      if (python_ns != "") print "python_greenlet_round_trip", python_ns, "ns"
    }
  ' "$work/results.txt" "$work/gevent.txt" >"$results_file"
  echo "medians written to $results_file"
fi
if ((echo_bench)); then
  echo
  echo_args=(--runs "$runs" --build-dir "$build")
  ((gevent)) || echo_args+=(--no-gevent)
  bench/echo_bench.sh "${echo_args[@]}" || status=1
fi
exit $status
