# Shared by scripts/tour.sh and scripts/test.sh:
# installs the Debian packages a script needs (only the missing ones, `apt-get update`
# at most once), and runs a script as stages: one line on the terminal when a stage
# starts, its output in build/logs/NAME.log, the end of that log shown if it fails.
# Sourced, not run.
set -euo pipefail

GREENEV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GREENEV_LOGS=$GREENEV_ROOT/build/logs
# scripts/test.sh: everything the suite builds and runs.
GREENEV_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost-context-dev libboost-dev libev-dev libc-ares-dev libssl-dev
  libgtest-dev libbenchmark-dev valgrind python3 clang-format
  dnsmasq-base libcurl4-openssl-dev gdb doxygen postgresql libpq-dev
  chromium nodejs
  openssl curl ccache
)
# scripts/tour.sh: the libraries and the examples only (url_fetcher needs libcurl; the web
# demos are driven by curl and a python3 WebSocket client).
GREENEV_TOUR_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost-context-dev libboost-dev libev-dev libc-ares-dev libssl-dev libcurl4-openssl-dev curl python3
)


greenev_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# greenev_missing_packages PACKAGE...: prints the ones not installed, one a line.
greenev_missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

# greenev_install_packages PACKAGE...: installs the missing ones (sudo unless root), with
# one line on stderr and apt's output in build/logs/apt.log (its end shown on failure).
# Silent when nothing is missing.
greenev_install_packages() {
  local missing
  mapfile -t missing < <(greenev_missing_packages "$@")
  ((${#missing[@]})) || return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  mkdir -p "$GREENEV_LOGS"
  local log=$GREENEV_LOGS/apt.log
  greenev_log "installing ${missing[*]} (log: ${log#"$GREENEV_ROOT"/})"
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "apt-get failed; the whole log: $log" >&2
    exit 1
  fi
}

# greenev_use_ccache: compiles through ccache where it is installed (Debian's ccache) and no
# compiler launcher is set already. The cache keys on paths relative to the checkout and not
# on the build directory (CCACHE_BASEDIR, CCACHE_NOHASHDIR), so every clone of the
# repository shares it; the debug info of a cached object names the clone that compiled it.
greenev_use_ccache() {
  command -v ccache >/dev/null || return 0
  [[ -z ${CMAKE_CXX_COMPILER_LAUNCHER:-} ]] || return 0
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$GREENEV_ROOT} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
}

# --- stages ---------------------------------------------------------------------------
# greenev_stages_init [summary]: the terminal is kept on fds 3 and 4 while a stage's output
# goes to its log; on exit the running stage is closed (a failure reported) and, with
# `summary`, a table of every stage is printed: this also runs when `set -e` stops the
# script, so a failing run still says what ran.
greenev_stage_name=""
greenev_stage_log=""
greenev_stage_start=0
greenev_stage_counts=(- - -)
greenev_stage_rows=()
greenev_stage_summary=0
# The function that reports the running stage's failure (greenev_ctest sets its own).
greenev_stage_report=greenev_stage_report_tail

greenev_stages_init() {
  [[ ${1:-} != summary ]] || greenev_stage_summary=1
  mkdir -p "$GREENEV_LOGS"
  exec 3>&1 4>&2
  trap 'greenev_stages_exit $?' EXIT
}

# greenev_stage TITLE LOG [quiet]: closes the running stage as passed and starts TITLE, its
# output into build/logs/LOG.log. A quiet stage prints its line only once greenev_progress
# sees ninja do some work (or if it fails).
greenev_stage() {
  greenev_stage_close passed
  greenev_stage_name=$1
  greenev_stage_log=$GREENEV_LOGS/$2.log
  greenev_stage_start=$SECONDS
  greenev_stage_counts=(- - -)
  greenev_stage_report=greenev_stage_report_tail
  [[ ${3:-} == quiet ]] || greenev_stage_announce
  exec >"$greenev_stage_log" 2>&1
}

greenev_stage_announce() {
  printf '\033[1m==> %s\033[0m  (log: %s)\n' "$greenev_stage_name" "${greenev_stage_log#"$GREENEV_ROOT"/}" >&3
}

# greenev_stage_close STATUS: the terminal back, and the stage's row for the summary.
greenev_stage_close() {
  [[ -n $greenev_stage_name ]] || return 0
  exec >&3 2>&4
  greenev_stage_rows+=("$greenev_stage_name|${greenev_stage_counts[0]}|${greenev_stage_counts[1]}|${greenev_stage_counts[2]}|$((SECONDS - greenev_stage_start))|$1")
  greenev_stage_name=""
}

# greenev_stage_count RUN PASSED FAILED: the running stage's test counts, for the summary.
greenev_stage_count() { greenev_stage_counts=("$1" "$2" "$3"); }

greenev_stage_report_tail() {
  echo "--- last 40 lines of $greenev_stage_log:"
  tail -n 40 "$greenev_stage_log"
}

greenev_stages_exit() {
  local status=$1 name=$greenev_stage_name log=$greenev_stage_log
  trap - EXIT
  if [[ -n $name ]]; then
    if ((status)); then
      greenev_stage_close FAILED
      {
        printf '\033[1;31m==> FAILED: %s\033[0m\n' "$name"
        "$greenev_stage_report"
        echo "--- the whole log: $log"
      } >&2
    else
      greenev_stage_close passed
    fi
  fi
  if ((greenev_stage_summary && ${#greenev_stage_rows[@]})); then
    local row name run passed failed seconds result width=5
    for row in "${greenev_stage_rows[@]}"; do
      name=${row%%|*}
      ((${#name} <= width)) || width=${#name}
    done
    printf '\n\033[1m%-*s %6s %7s %7s %9s  %s\033[0m\n' "$width" stage tests passed failed time result
    for row in "${greenev_stage_rows[@]}"; do
      IFS='|' read -r name run passed failed seconds result <<<"$row"
      printf '%-*s %6s %7s %7s %5dm%02ds  %s\n' "$width" "$name" "$run" "$passed" "$failed" \
        $((seconds / 60)) $((seconds % 60)) "$result"
    done
  fi
  exit "$status"
}

# greenev_progress [quiet]: copies its input (ninja's output) to stdout, the stage's log, and
# on a terminal keeps one line there up to date with ninja's [N/M] counter. With `quiet`
# (the stage was started quiet) the stage's line is printed when ninja starts real work:
# every build re-checks CMake's globbed directories, which is not work.
greenev_progress() {
  local line shown=0 pending=0
  [[ ${1:-} != quiet ]] || pending=1
  while IFS= read -r line; do
    printf '%s\n' "$line"
    if ((pending)) && [[ $line =~ ^\[[0-9]+/[0-9]+\] && $line != *"Re-checking globbed directories"* ]]; then
      greenev_stage_announce
      pending=0
    fi
    if [[ -t 3 && $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
      printf '\r    %s/%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" >&3
      shown=1
    fi
  done
  ((shown == 0)) || printf '\r\033[K' >&3
}

# greenev_build PRESET: configure (first time) and build, in the running stage.
greenev_build() {
  local preset=$1
  cd "$GREENEV_ROOT"
  cmake --preset "$preset"
  cmake --build --preset "$preset" | greenev_progress
}

# greenev_ctest PRESET: every test of PRESET in the running stage; its counts come from
# ctest's "N% tests passed, F tests failed out of T" line. On a failure the report names
# the failed tests and shows the end of each one's output.
greenev_ctest() {
  local status=0 summary
  ctest --preset "$1" --output-on-failure || status=$?
  summary=$(sed -nE 's/^[0-9]+% tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$greenev_stage_log" | tail -1)
  if [[ -n $summary ]]; then
    local failed=${summary% *} total=${summary#* }
    greenev_stage_count "$total" $((total - failed)) "$failed"
  fi
  greenev_stage_report=greenev_ctest_report
  return "$status"
}

greenev_ctest_report() {
  local names
  # "  12 - name (Failed)" lines under "The following tests FAILED:".
  mapfile -t names < <(sed -n '/^The following tests FAILED:/,$p' "$greenev_stage_log" |
    sed -nE 's/^[[:space:]]+[0-9]+ - ([^ ]+) .*/\1/p')
  if ((${#names[@]} == 0)); then
    greenev_stage_report_tail
    return
  fi
  echo "failed tests: ${names[*]}"
  local name
  for name in "${names[@]}"; do
    echo "--- $name: the end of its output"
    # From the test's result line to the next test's start or result line.
    awk -v name="$name" '
      $0 ~ "Test +#[0-9]+: " name " " && /\*\*\*|Failed|Exception|Timeout|Not Run/ { on = 1; n = 0; next }
      on && (/^ +Start +[0-9]+: / || /^ *[0-9]+\/[0-9]+ Test +#/ || /^[0-9]+% tests passed/) { on = 0 }
      on { buf[n++ % 30] = $0 }
      END { for (i = (n > 30 ? n - 30 : 0); i < n; i++) print buf[i % 30] }' "$greenev_stage_log"
  done
}
