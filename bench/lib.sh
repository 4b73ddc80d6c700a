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

# The median of a space-separated list of numbers, once for every script: an awk
# function to put in front of an awk program ("$bench_awk_median"' ...'), and a shell
# function (median 3 1 2 -> 2).
# shellcheck disable=SC2016 # awk code, expanded by awk
bench_awk_median='
  function median(list,    values, n, i, j, t) {
    n = split(list, values, " ")
    for (i = 2; i <= n; i++)
      for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) { t = values[j]; values[j] = values[j - 1]; values[j - 1] = t }
    return n == 0 ? 0 : n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
  }'
median() { awk "$bench_awk_median"' BEGIN { print median(ARGV[1]) }' "$*"; }

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

# bench_need_value SCRIPT OPTION ARGC: exits 2 with a usage error unless OPTION (the
# argument at hand, with ARGC arguments left) is followed by a value. Prints the script's
# usage function too, if it has one.
bench_need_value() {
  (($3 >= 2)) && return 0
  echo "$1: $2 needs a value" >&2
  if declare -F usage >/dev/null; then usage >&2; fi
  exit 2
}

# bench_positive_integers SCRIPT OPTIONS VALUE...: exits 2 unless every VALUE is a positive
# integer; OPTIONS names them in the message ("--runs and --names").
bench_positive_integers() {
  local script=$1 options=$2 value
  shift 2
  for value in "$@"; do
    if ! [[ $value =~ ^[1-9][0-9]*$ ]]; then
      echo "$script: $options need a positive integer, not '$value'" >&2
      exit 2
    fi
  done
}

# bench_alive PID: true while PID runs; a zombie (exited, not yet waited for) counts as gone.
bench_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# bench_stop_server SCRIPT NAME PID [SIGNAL]: sends SIGNAL (default TERM) to the server PID
# (a child of this shell), waits up to 5 s, then kills it; returns 1, saying why on stderr
# as SCRIPT, unless it exited 0 in time.
bench_stop_server() {
  local script=$1 name=$2 pid=$3 signal=${4:-TERM} attempt code=0
  kill "-$signal" "$pid" 2>/dev/null || true
  for ((attempt = 0; attempt < 50; attempt++)); do
    bench_alive "$pid" || break
    sleep 0.1
  done
  if bench_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$script: $name did not exit within 5 s of SIG$signal" >&2
    return 1
  fi
  wait "$pid" || code=$?
  if ((code != 0)); then
    echo "$script: $name exited with status $code after SIG$signal" >&2
    return 1
  fi
}
