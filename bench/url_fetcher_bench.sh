#!/usr/bin/env bash
# url_fetcher benchmark (greenev's goal, stated in docs/benchmarks.md: 100 URLs each delayed
# 200 ms in <= 0.22 s, within 10% of the delay): examples/url_fetcher --mode async
# (unmodified libcurl under patch_all(), its embedded greenev server) against gevent's
# patched urlopen (bench/url_fetcher_bench.py, a gevent server with the same pages), when
# python3-gevent is installed. Runs alternate; the medians are reported. The limit is the
# delay itself (0.200 s).
#
# usage: bench/url_fetcher_bench.sh [--runs N] [--count N] [--delay S] [--build-dir DIR] [--no-build]
#   --build-dir defaults to $GREENEV_BENCH_BUILD or build/bench (bench/lib.sh).
set -euo pipefail

runs=5
count=100
delay=0.2
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
while (($#)); do
  case "$1" in
    --runs) bench_need_value url_fetcher_bench.sh "$1" $#; runs=$2; shift 2 ;;
    --count) bench_need_value url_fetcher_bench.sh "$1" $#; count=$2; shift 2 ;;
    --delay) bench_need_value url_fetcher_bench.sh "$1" $#; delay=$2; shift 2 ;;
    --build-dir) bench_need_value url_fetcher_bench.sh "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    *) echo "usage: bench/url_fetcher_bench.sh [--runs N] [--count N] [--delay S] [--build-dir DIR] [--no-build]" >&2
       exit 2 ;;
  esac
done
bench_positive_integers url_fetcher_bench.sh "--runs and --count" "$runs" "$count"
root=$bench_root
cd "$root"
if ((do_build)); then
  bench_build "$build" url_fetcher >/dev/null
fi

gevent_python=""
for python in python3 /usr/bin/python3; do
  command -v "$python" >/dev/null || continue
  if (cd / && "$python" -c 'import gevent' 2>/dev/null); then gevent_python=$python; break; fi
done

greenev_times=()
gevent_times=()
for ((run = 1; run <= runs; run++)); do
  t=$("$build/examples/url_fetcher" --mode async --count "$count" --delay "$delay" | sed -n 's/^async=\([0-9.]*\)s$/\1/p')
  [[ -n $t ]] || { echo "url_fetcher_bench.sh: url_fetcher failed" >&2; exit 1; }
  greenev_times+=("$t")
  if [[ -n $gevent_python ]]; then
    t=$(cd / && "$gevent_python" "$root/bench/url_fetcher_bench.py" --count "$count" --delay "$delay" --runs 1 |
      sed -n 's/^result gevent_async = \([0-9.]*\) s$/\1/p')
    gevent_times+=("$t")
  fi
  echo "run $run: greenev ${greenev_times[-1]} s${gevent_python:+, gevent ${gevent_times[-1]:-?} s}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
echo "== $count URLs each delayed $delay s, median of $runs run(s) (limit: $delay s)"
printf 'result url_fetcher_async = %s s\n' "$(median "${greenev_times[@]}")"
if ((${#gevent_times[@]})); then
  printf 'result gevent_urlopen_async = %s s\n' "$(median "${gevent_times[@]}")"
else
  echo "gevent: not installed (python3-gevent); no baseline"
fi
