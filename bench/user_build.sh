#!/usr/bin/env bash
# The user's build: greenev installed (Release, static), then bench/user_build/user_switch.cpp
# built outside the project as a user would — through CMake's find_package and through
# pkg-config, each at -O2 and at -O3, with no other flag — and run N times, alternating.
# Prints the medians and each ratio to the raw Boost.Context fiber round trip measured in
# the same process. Goals (docs/benchmarks.md): round trips <= 1.3x raw at -O2 and -O3;
# spawn + run + join <= 120 ns and sleep(0) <= 30 ns at -O2.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/user_build.sh [--runs N] [--results FILE]

  --runs N         runs of each binary, medians reported (default 5)
  --results FILE   also write the medians as "NAME VALUE UNIT" lines to FILE
USAGE
}

runs=5
results_file=""
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_value() { bench_need_value user_build.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "user_build.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers user_build.sh "--runs" "$runs"
cd "$bench_root"

top=$bench_root/build/user-build
prefix=$top/prefix
cmake -S "$bench_root" -B "$top/library" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGREENEV_BUILD_TESTS=OFF \
  -DGREENEV_BUILD_EXAMPLES=OFF -DGREENEV_BUILD_BENCH=OFF >/dev/null
cmake --build "$top/library" >/dev/null
rm -rf "$prefix"
cmake --install "$top/library" --prefix "$prefix" >/dev/null
cmake -S "$bench_root/bench/user_build" -B "$top/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$top/consumer" >/dev/null
declare -A binaries=([cmake-O2]=$top/consumer/user_switch_O2 [cmake-O3]=$top/consumer/user_switch_O3)
for level in 2 3; do
  # shellcheck disable=SC2046 # pkg-config's flags are words
  c++ "-O$level" -std=c++20 -o "$top/pkg-config-O$level" "$bench_root/bench/user_build/user_switch.cpp" \
    $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig:$prefix/share/pkgconfig pkg-config --cflags --libs --static greenev) \
    -lboost_context
  binaries[pkg-config-O$level]=$top/pkg-config-O$level
done
columns=(cmake-O2 cmake-O3 pkg-config-O2 pkg-config-O3)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((run = 1; run <= runs; run++)); do
  for column in "${columns[@]}"; do
    "${binaries[$column]}" >"$work/$column-$run.txt"
  done
  echo "== run $run of $runs done"
done

# value COLUMN NAME: the median of NAME over the runs of COLUMN; ratio COLUMN NAME: the
# median of NAME / raw_fiber_round_trip over the runs (same process each time).
value() {
  local list=() run
  for ((run = 1; run <= runs; run++)); do
    list+=("$(sed -n "s/^result $2 = \\([0-9.]*\\) .*/\\1/p" "$work/$1-$run.txt")")
  done
  median "${list[@]}"
}
ratio() {
  local list=() run raw this
  for ((run = 1; run <= runs; run++)); do
    raw=$(sed -n 's/^result raw_fiber_round_trip = \([0-9.]*\) .*/\1/p' "$work/$1-$run.txt")
    this=$(sed -n "s/^result $2 = \\([0-9.]*\\) .*/\\1/p" "$work/$1-$run.txt")
    list+=("$(awk -v a="$this" -v b="$raw" 'BEGIN { printf "%.3f", a / b }')")
  done
  median "${list[@]}"
}

results_out=${results_file:-/dev/null}
: >"$results_out"
echo
echo "== the user's build: medians of $runs run(s); ratios to the raw fiber round trip of the same run"
printf '%-34s' "measure"
for column in "${columns[@]}"; do printf '%16s' "$column"; done
printf '%14s\n' "goal"
for name in raw_fiber_round_trip greenlet_round_trip_main greenlet_round_trip_function \
  switch_to_parent_round_trip int_round_trip int_round_trip_typed spawn_run_join sleep0; do
  printf '%-34s' "$name (ns)"
  for column in "${columns[@]}"; do
    v=$(value "$column" "$name")
    printf '%16s' "$v"
    echo "user_${column//-/_}_$name $v ns" >>"$results_out"
  done
  case $name in
    spawn_run_join) printf '%14s\n' "<= 120 (-O2)" ;;
    sleep0) printf '%14s\n' "<= 30 (-O2)" ;;
    *) printf '\n' ;;
  esac
done
for name in greenlet_round_trip_main greenlet_round_trip_function switch_to_parent_round_trip int_round_trip \
  int_round_trip_typed; do
  printf '%-34s' "$name / raw"
  for column in "${columns[@]}"; do
    r=$(ratio "$column" "$name")
    printf '%16s' "${r}x"
    echo "user_${column//-/_}_${name}_ratio $r x" >>"$results_out"
  done
  printf '%14s\n' "<= 1.3x"
done
[[ -z $results_file ]] || echo "medians written to $results_file"
