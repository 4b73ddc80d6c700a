#!/usr/bin/env bash
# Subprocess benchmark: (1) 100 x `sleep 0.2` started at once and waited for, by
# examples/parallel_commands — greenev's goal is <= 0.3 s wall (docs/benchmarks.md): the
# waits overlap, the cost is the start-up of 100 processes; (2) 1,000 x /bin/true started
# and waited for, per process: greenev (parallel_commands, all at once), gevent.subprocess
# (all at once) and Python's subprocess (one after another), alternating within each run.
# Both carry the floor beside them, bench/spawn_baseline: plain C posix_spawnp of every copy,
# then waitpid. No program starts processes faster than that loop on the same machine, so
# its figure says what the machine allows (process start-up is slow on some VMs).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/subprocess_bench.sh [--runs N] [--no-gevent] [--build-dir DIR] [--no-build]
                                 [--results FILE]

  --runs N         runs of each measure, medians reported (default 5)
  --no-gevent      skip the Python baselines (also skipped when python3-gevent is missing)
  --build-dir DIR  build tree (default $GREENEV_BENCH_BUILD or build/bench)
  --no-build       use the parallel_commands already built there
  --results FILE   also write the medians as "NAME VALUE UNIT" lines to FILE
USAGE
}

runs=5
gevent=1
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
results_file=""
need_value() { bench_need_value subprocess_bench.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --no-gevent) gevent=0; shift ;;
    --build-dir) need_value "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "subprocess_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers subprocess_bench.sh "--runs" "$runs"
cd "$bench_root"
((do_build)) && bench_build "$build" parallel_commands spawn_baseline >/dev/null
program=$build/examples/parallel_commands
baseline=$build/bench/spawn_baseline
python=""
if ((gevent)); then
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && (cd / && "$candidate" -c 'import gevent.subprocess' 2>/dev/null); then
      python=$candidate
      break
    fi
  done
fi

sleeps=()
baseline_sleeps=()
gevent_sleeps=()
declare -A per_process=()
baseline_wall() {
  "$baseline" "$@" | sed -n 's/^result spawn_baseline_wall = \([0-9.]*\).*/\1/p'
}
for ((run = 1; run <= runs; run++)); do
  out=$("$program" --count 100 -- sleep 0.2 | tail -n 1)
  wall=$(sed -n 's/.* wall=\([0-9.]*\)s$/\1/p' <<<"$out")
  [[ $out == *"failed=0"* && -n $wall ]] || { echo "subprocess_bench.sh: $out" >&2; exit 1; }
  sleeps+=("$wall")
  wall=$(baseline_wall --count 100 -- sleep 0.2)
  [[ -n $wall ]] || { echo "subprocess_bench.sh: spawn_baseline failed" >&2; exit 1; }
  baseline_sleeps+=("$wall")
  if [[ -n $python ]]; then
    wall=$(cd / && "$python" "$bench_root/bench/subprocess_bench.py" --mode gevent --count 100 sleep 0.2 |
      sed -n 's/^result wall = \([0-9.]*\).*/\1/p')
    gevent_sleeps+=("$wall")
  fi
  out=$("$program" --count 1000 -- /bin/true | tail -n 1)
  wall=$(sed -n 's/.* wall=\([0-9.]*\)s$/\1/p' <<<"$out")
  [[ $out == *"failed=0"* && -n $wall ]] || { echo "subprocess_bench.sh: $out" >&2; exit 1; }
  per_process[greenev]+=" $(awk -v w="$wall" 'BEGIN { printf "%.1f", w / 1000 * 1e6 }')"
  wall=$(baseline_wall --count 1000 -- /bin/true)
  [[ -n $wall ]] || { echo "subprocess_bench.sh: spawn_baseline failed" >&2; exit 1; }
  per_process[posix_spawn]+=" $(awk -v w="$wall" 'BEGIN { printf "%.1f", w / 1000 * 1e6 }')"
  if [[ -n $python ]]; then
    for mode in gevent python; do
      us=$(cd / && "$python" "$bench_root/bench/subprocess_bench.py" --mode "$mode" --count 1000 /bin/true |
        sed -n 's/^result per_process_us = \([0-9.]*\).*/\1/p')
      per_process[$mode]+=" $us"
    done
  fi
  echo "== run $run of $runs: 100 x sleep 0.2 in ${sleeps[-1]} s (posix_spawn ${baseline_sleeps[-1]} s${gevent_sleeps[-1]:+, gevent ${gevent_sleeps[-1]} s}); 1000 x /bin/true:$(for k in greenev posix_spawn gevent python; do [[ -n ${per_process[$k]:-} ]] && printf ' %s %s us' "$k" "${per_process[$k]##* }"; done)"
done

results_out=${results_file:-/dev/null}
: >"$results_out"
sleep_median=$(median "${sleeps[@]}")
baseline_sleep_median=$(median "${baseline_sleeps[@]}")
echo
echo "== subprocess: median of $runs run(s)"
printf '100 x sleep 0.2 at once (greenev): %s s wall  (goal <= 0.3 s: %s)  [%s ]\n' "$sleep_median" \
  "$(awk -v m="$sleep_median" 'BEGIN { print (m <= 0.3 ? "MET" : "MISSED") }')" "$(printf ' %s' "${sleeps[@]}")"
printf '100 x sleep 0.2 at once (posix_spawn, the floor): %s s wall, greenev/floor %s  [%s ]\n' \
  "$baseline_sleep_median" "$(awk -v g="$sleep_median" -v b="$baseline_sleep_median" 'BEGIN { printf "%.2fx", g / b }')" \
  "$(printf ' %s' "${baseline_sleeps[@]}")"
echo "subprocess_sleep100_wall $sleep_median s" >>"$results_out"
echo "subprocess_sleep100_wall_posix_spawn $baseline_sleep_median s" >>"$results_out"
if ((${#gevent_sleeps[@]})); then
  gevent_sleep_median=$(median "${gevent_sleeps[@]}")
  printf '100 x sleep 0.2 at once (gevent): %s s wall  [%s ]\n' "$gevent_sleep_median" "$(printf ' %s' "${gevent_sleeps[@]}")"
  echo "subprocess_sleep100_wall_gevent $gevent_sleep_median s" >>"$results_out"
fi
for k in greenev posix_spawn gevent python; do
  [[ -n ${per_process[$k]:-} ]] || continue
  # shellcheck disable=SC2086 # a list of numbers
  m=$(median ${per_process[$k]})
  printf '1000 x /bin/true, per process, %-8s %8s us  [%s ]\n' "$k:" "$m" "${per_process[$k]}"
  echo "subprocess_true_per_process_$k $m us" >>"$results_out"
done
[[ -n $python ]] || echo "gevent and Python: skipped (python3-gevent not importable, or --no-gevent)"
[[ -z $results_file ]] || echo "medians written to $results_file"
