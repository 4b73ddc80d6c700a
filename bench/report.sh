#!/usr/bin/env bash
# The benchmarks page, docs/benchmarks.md: runs every benchmark script in bench/ with its
# baselines (raw Boost.Context, raw libev callbacks, a blocking C loop, Boost.Fiber where
# bench/fiber_baseline is built, python greenlet and gevent where installed), collects their
# medians through each script's --results FILE (or its "result NAME = VALUE UNIT" lines),
# and writes docs/benchmarks.md (the machine, one table per area with greenev, every
# baseline, greenev's advantage over each and greenev's goal, met or missed; the goals and
# their reasons are in bench/report.py, which writes the page and its Goals table)
# and docs/benchmarks.svg (gnuplot bar chart of those advantages), which the page embeds.
# It measures nothing itself: the numbers are the other scripts' medians.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/report.sh [--runs N] [--quick] [--output-dir DIR] [--no-gevent] [--render-only]

  --runs N          runs of each benchmark, medians reported (default 5)
  --quick           one run, shorter measurements (a smoke test of the page, ~2 minutes);
                    an explicit --runs N still sets the runs
  --output-dir DIR  where benchmarks.md and benchmarks.svg go (default docs)
  --no-gevent       skip the python greenlet and gevent baselines (url_fetcher_bench.sh
                    has no such option: it runs gevent's side whenever gevent is installed)
  --render-only     run nothing: write the page and chart again from build/report/'s last
                    medians (after editing this script's tables, say)

Runs, in order: bench/run.sh (greenlet switch, spawn, sleep(0), 100k sleepers, 1M
greenlets), bench/fiber_baseline (when Boost.Fiber is installed: libboost-fiber-dev),
bench/echo_bench.sh --sendall, bench/dns_bench.sh, bench/patched_echo_bench.sh,
bench/url_fetcher_bench.sh, bench/http_bench.sh (wrk; Go, nginx and gevent where installed),
bench/web_bench.sh (long poll, TLS), bench/subprocess_bench.sh, all on the Release build in
build/bench, and bench/user_build.sh (its own install and consumer builds). A script that fails
leaves its rows "not measured" and the page says so; the exit status is then 1.
Logs and the collected medians stay in build/report/. The page is written by
bench/report.py (python3); the chart needs gnuplot (Debian gnuplot-nox), and is skipped
with a note without it: this script installs nothing. Takes about 4 minutes with --runs 5
(more on a loaded machine).
USAGE
}

runs=5
quick=0
runs_given=""
output_dir=docs
gevent=1
render_only=0
while (($#)); do
  case "$1" in
    --runs) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; runs_given=$2; shift 2 ;;
    --runs=*) runs_given=${1#*=}; shift ;;
    --quick) quick=1; shift ;;
    --output-dir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; output_dir=$(realpath -m "$2"); shift 2 ;;
    --no-gevent) gevent=0; shift ;;
    --render-only) render_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "report.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
((quick)) && runs=1
[[ -z $runs_given ]] || runs=$runs_given
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "report.sh: --runs needs a positive integer, not '$runs'" >&2
  exit 2
fi

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$bench_root
cd "$root"
build=build/bench
report=build/report
mkdir -p "$report" "$output_dir"
markdown=$output_dir/benchmarks.md
chart=$output_dir/benchmarks.svg
failed=()

# gnuplot for the chart (Debian's gnuplot-nox): this script installs nothing.
command -v gnuplot >/dev/null ||
  echo "report.sh: gnuplot not found; no chart (sudo apt-get install gnuplot-nox, then rerun)" >&2

# run_all: every benchmark script, then the machine's description; fills $report.
run_all() {
  rm -f "$report"/*.results "$report"/*.log

  # The load average every 5 s while the benchmarks run: the machine is shared.
  load_sampler=""
  stop_sampler() {
    if [[ -n $load_sampler ]]; then
      kill "$load_sampler" 2>/dev/null || true
      wait "$load_sampler" 2>/dev/null || true
      load_sampler=""
    fi
  }
  trap stop_sampler EXIT
  cut -d' ' -f1-3 /proc/loadavg >"$report/load-before.txt"
  (while :; do cut -d' ' -f1 /proc/loadavg; sleep 5; done) >"$report/load.txt" &
  load_sampler=$!
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  start_seconds=$SECONDS

  # The Release build every script uses (each builds its own targets again; a no-op then).
  echo "== building $build (Release, benchmarks on)"
  bench_build "$build" >"$report/build.log" 2>&1 || {
    echo "report.sh: the build failed; see $report/build.log" >&2
    exit 1
  }

  # step NAME COMMAND...: runs one benchmark script, its output shown and kept in NAME.log.
  step() {
    local name=$1
    shift
    echo
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$report/$name.log"; then
      echo "report.sh: $name failed; its rows stay 'not measured' (log: $report/$name.log)" >&2
      failed+=("$name")
    fi
  }
  # result_lines LOG: a log's "result NAME = VALUE UNIT" lines as "NAME VALUE UNIT".
  result_lines() { sed -n 's/^result \([A-Za-z0-9_]*\) = \([0-9.e+-]*\) \([^ ]*\).*/\1 \2 \3/p' "$1"; }

  gevent_args=()
  ((gevent)) || gevent_args=(--no-gevent)
  if ((quick)); then
    step run bench/run.sh --runs "$runs" --min-time 0.05 --results "$report/run.results" "${gevent_args[@]}"
  else
    step run bench/run.sh --runs "$runs" --results "$report/run.results" "${gevent_args[@]}"
  fi
  if [[ -x $build/bench/fiber_baseline ]]; then
    step fiber "$build/bench/fiber_baseline" --repeats "$runs"
    result_lines "$report/fiber.log" >"$report/fiber.results"
  else
    echo "== Boost.Fiber: bench/fiber_baseline is not built (apt-get install libboost-fiber-dev); skipped"
  fi
  echo_args=(--runs "$runs" --sendall --no-build --build-dir "$build" --results "$report/echo.results")
  ((quick)) && echo_args+=(--seconds 1 --warmup 0.5 --sendall-mib 128)
  step echo bench/echo_bench.sh "${echo_args[@]}" "${gevent_args[@]}"
  step dns bench/dns_bench.sh --runs "$runs" --no-build --build-dir "$build" --results "$report/dns.results" \
    "${gevent_args[@]}"
  patched_args=(--runs "$runs" --no-build --build-dir "$build")
  ((quick)) && patched_args+=(--seconds 1 --warmup 0.5)
  step patched_echo bench/patched_echo_bench.sh "${patched_args[@]}"
  result_lines "$report/patched_echo.log" >"$report/patched_echo.results"
  step url_fetcher bench/url_fetcher_bench.sh --runs "$runs" --no-build --build-dir "$build"
  result_lines "$report/url_fetcher.log" >"$report/url_fetcher.results"
  http_args=(--runs "$runs" --no-build --build-dir "$build" --results "$report/http.results")
  ((quick)) && http_args+=(--seconds 2 --warmup 1)
  step http bench/http_bench.sh "${http_args[@]}"
  web_args=(--runs "$runs" --no-build --build-dir "$build" --results "$report/web.results")
  ((quick)) && web_args+=(--connections 2000 --mib 256)
  step web bench/web_bench.sh "${web_args[@]}"
  step subprocess bench/subprocess_bench.sh --runs "$runs" --no-build --build-dir "$build" \
    --results "$report/subprocess.results" "${gevent_args[@]}"
  step user_build bench/user_build.sh --runs "$runs" --results "$report/user_build.results"

  stop_sampler
  cut -d' ' -f1-3 /proc/loadavg >"$report/load-after.txt"
  elapsed=$((SECONDS - start_seconds))

  # The machine, as "key<TAB>value" lines.
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
  python=""
  for candidate in python3 /usr/bin/python3; do
    if (cd / && "$candidate" -c 'import gevent' 2>/dev/null); then python=$candidate; break; fi
  done
  {
    printf 'cpu\t%s\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    printf 'cores\t%s online (nproc %s)\n' "$(grep -c '^processor' /proc/cpuinfo)" "$(nproc)"
    printf 'memory\t%s MiB\n' "$(awk '/^MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo)"
    printf 'kernel\t%s %s\n' "$(uname -sr)" "$(uname -m)"
    printf 'distro\t%s\n' "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
    printf 'compiler\t%s\n' "$("${cxx:-c++}" --version | head -1)"
    printf 'boost\t%s (Context; Fiber %s)\n' "$(sed -n 's/^#define BOOST_LIB_VERSION "\(.*\)"/\1/p' /usr/include/boost/version.hpp 2>/dev/null || true)" \
      "$([[ -x $build/bench/fiber_baseline ]] && echo 'built' || echo 'not installed')"
    printf 'libev\t%s\n' "$(dpkg-query -W -f '${Version}' libev-dev 2>/dev/null || echo unknown)"
    if [[ -n $python ]]; then
      printf 'python\t%s\n' "$(cd / && "$python" -c 'import sys, gevent, greenlet; print(f"Python {sys.version.split()[0]}, gevent {gevent.__version__}, greenlet {greenlet.__version__}")')"
    else
      printf 'python\tgevent not installed\n'
    fi
    printf 'revision\t%s%s\n' "$(git rev-parse --short HEAD)" \
      "$(git diff --quiet HEAD -- 2>/dev/null || echo ' plus uncommitted changes in the working tree')"
    printf 'date\t%s, %d min %02d s\n' "$started" $((elapsed / 60)) $((elapsed % 60))
    printf 'runs\t%s%s\n' "$runs" "$( ((quick)) && echo ' (--quick: shorter measurements)')"
    printf 'load_before\t%s\n' "$(cat "$report/load-before.txt")"
    printf 'load_after\t%s\n' "$(cat "$report/load-after.txt")"
    printf 'load_during\t%s\n' "$(sort -g "$report/load.txt" | awk '{v[NR] = $1} END {
      if (NR) printf "min %s, median %s, max %s (%d samples, every 5 s)", v[1], v[int((NR + 1) / 2)], v[NR], NR }')"
    printf 'failed\t%s\n' "${failed[*]}"
  } >"$report/machine.txt"
  cat "$report"/*.results >"$report/all.results"
}

if ((render_only)); then
  [[ -s $report/all.results && -s $report/machine.txt ]] ||
    { echo "report.sh: --render-only needs a previous run's $report/all.results" >&2; exit 1; }
  read -ra failed <<<"$(sed -n 's/^failed\t//p' "$report/machine.txt")"
else
  run_all
fi

# The page and the chart's data. The areas, their rows and the goals are in report.py.
python3 "$bench_root/bench/report.py" "$report/all.results" "$report/machine.txt" "$markdown" "$report/chart.dat" "$(basename "$chart")"

# The chart: one bar per (measure, baseline), greenev's advantage on a log scale; an SVG for
# the page and a PNG beside it for viewers without SVG.
png=${chart%.svg}.png
# The machine under the title: CPU, cores, median load, date.
subtitle=$(awk -F '\t' '{m[$1] = $2} END {
  split(m["load_during"], load, ", "); split(m["date"], date, ","); split(m["cores"], cores, " ")
  printf "%s, %s cores, 1-min load %s during the run, %s, %s runs", m["cpu"], cores[1], load[2], date[1], m["runs"] }' \
  "$report/machine.txt")
if command -v gnuplot >/dev/null && [[ -s $report/chart.dat ]]; then
  cat >"$report/chart.gp" <<GNUPLOT
set termoption noenhanced
set title "greenev's advantage over each baseline (baseline time / greenev time, or greenev rps / baseline rps)\\n$subtitle"
# log10 of the advantage on a linear axis, so that bars grow from 1x: up where greenev wins.
set ytics ("0.05x" log10(0.05), "0.1x" -1, "0.2x" log10(0.2), "0.5x" log10(0.5), "1x" 0, "2x" log10(2), \\
  "5x" log10(5), "10x" 1, "20x" log10(20), "50x" log10(50), "100x" 2, "200x" log10(200), "500x" log10(500), \\
  "1000x" 3)
set ylabel "times better (log scale; above 1x: greenev better)"
set grid ytics
set style fill solid 0.85 border -1
set boxwidth 0.7
set xrange [-0.6:*]
set xtics rotate by 40 right font "sans,9" nomirror
set key outside top center horizontal
set bmargin 11
set lmargin 16
set offsets 0, 0, 0.25, 0.25
set xzeroaxis lt -1 lw 1.5
plot "$report/chart.dat" using 1:(\$3 == 1 ? log10(\$2) : NaN):xtic(4) with boxes lc rgb "#4477aa" title "vs raw baseline", \\
     "" using 1:(\$3 == 2 ? log10(\$2) : NaN) with boxes lc rgb "#ddaa33" title "vs Boost.Fiber", \\
     "" using 1:(\$3 == 3 ? log10(\$2) : NaN) with boxes lc rgb "#bb5566" title "vs gevent / python greenlet", \\
     "" using 1:(log10(\$2) + (\$2 >= 1 ? 0.07 : -0.07)):(sprintf(\$2 >= 10 ? "%.0f" : "%.2f", \$2)) with labels font "sans,8" notitle
GNUPLOT
  if ! gnuplot -e "set terminal svg size 1100,640 dynamic font 'sans,11' background rgb 'white'" \
    -e "set output '$chart'" "$report/chart.gp" >"$report/gnuplot.log" 2>&1 ||
    ! gnuplot -e "set terminal pngcairo size 1100,640 font 'sans,10' background rgb 'white'" \
      -e "set output '$png'" "$report/chart.gp" >>"$report/gnuplot.log" 2>&1; then
    echo "report.sh: gnuplot failed (see $report/gnuplot.log); the chart may be missing" >&2
    failed+=(chart)
  fi
else
  echo "report.sh: no chart drawn (gnuplot missing or nothing to plot)" >&2
fi

echo
echo "== wrote $markdown"
[[ ! -s $chart ]] || echo "== wrote $chart and $png"
echo "== logs and medians: $report/ (all.results: every median as NAME VALUE UNIT)"
if ((${#failed[@]})); then
  echo "report.sh: failed: ${failed[*]}" >&2
  exit 1
fi
