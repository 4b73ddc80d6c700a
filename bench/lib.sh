# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): the one Release configuration they all
# build in, so that they can share build/bench.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_build "$build" dns_bench >/dev/null

# The repository root, and the build tree used unless --build-dir says otherwise.
bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this
bench_default_build=${GREENEV_BENCH_BUILD:-build/bench}

# bench_build DIR [TARGET...]: configures DIR (Release; benchmarks and examples on; tests
# and install rules off, the benchmarks do not need them) and builds the TARGETs, or
# everything if none are named.
bench_build() {
  local build=$1
  shift
  cmake -S "$bench_root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGREENEV_BUILD_BENCH=ON \
    -DGREENEV_BUILD_EXAMPLES=ON -DGREENEV_BUILD_TESTS=OFF -DGREENEV_INSTALL=OFF >/dev/null
  if (($#)); then
    cmake --build "$build" --target "$@"
  else
    cmake --build "$build"
  fi
}
