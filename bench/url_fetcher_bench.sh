#!/usr/bin/env bash
# url_fetcher benchmark (greenev's goal, stated in docs/benchmarks.md: 100 URLs each delayed
# 200 ms in <= 0.22 s, within 10% of the delay): examples/url_fetcher --mode async
# (unmodified libcurl under patch_all(), its embedded greenev server) against gevent's
# patched urlopen (bench/url_fetcher_bench.py, a gevent server with the same pages), when
# python3-gevent is installed. Where golang-go is installed, url_fetcher also fetches the
# same pages from a fast outside server (bench/go_hello --delay: Go net/http), so that the
# embedded server's share of the time shows. Runs alternate; the medians are reported. The
# limit is the delay itself (0.200 s).
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

work=$(mktemp -d)
go_pid=""
cleanup() {
  [[ -z $go_pid ]] || { kill "$go_pid" 2>/dev/null || true; wait "$go_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
go_urls=()
if command -v go >/dev/null; then
  # Built in the build tree with the standard library only: nothing is fetched.
  go_build=$(realpath -m "$build")  # go wants absolute paths
  if ! (cd "$root/bench/go_hello" && GOCACHE=$go_build/go-cache GOPATH=$go_build/go-path GO111MODULE=off \
    go build -o "$go_build/bench/go_hello" main.go) >"$work/go-build.txt" 2>&1; then
    echo "url_fetcher_bench.sh: building bench/go_hello failed:" >&2
    sed 's/^/  /' "$work/go-build.txt" >&2
    exit 1
  fi
  "$build/bench/go_hello" --host 127.0.0.1 --port 0 --delay "$delay" >"$work/go.log" 2>&1 &
  go_pid=$!
  for ((attempt = 0; attempt < 100; attempt++)); do
    grep -q '^listening on ' "$work/go.log" && break
    sleep 0.05
  done
  go_address=$(sed -n 's/^listening on \(.*\)$/\1/p' "$work/go.log")
  [[ -n $go_address ]] || { echo "url_fetcher_bench.sh: bench/go_hello did not start:" >&2; cat "$work/go.log" >&2; exit 1; }
  for ((page = 1; page <= count; page++)); do go_urls+=("http://$go_address/$page"); done
fi

greenev_times=()
go_server_times=()
gevent_times=()
for ((run = 1; run <= runs; run++)); do
  t=$("$build/examples/url_fetcher" --mode async --count "$count" --delay "$delay" | sed -n 's/^async=\([0-9.]*\)s$/\1/p')
  [[ -n $t ]] || { echo "url_fetcher_bench.sh: url_fetcher failed" >&2; exit 1; }
  greenev_times+=("$t")
  if ((${#go_urls[@]})); then
    t=$("$build/examples/url_fetcher" --mode async "${go_urls[@]}" | sed -n 's/^async=\([0-9.]*\)s$/\1/p')
    [[ -n $t ]] || { echo "url_fetcher_bench.sh: url_fetcher against bench/go_hello failed" >&2; exit 1; }
    go_server_times+=("$t")
  fi
  if [[ -n $gevent_python ]]; then
    t=$(cd / && "$gevent_python" "$root/bench/url_fetcher_bench.py" --count "$count" --delay "$delay" --runs 1 |
      sed -n 's/^result gevent_async = \([0-9.]*\) s$/\1/p')
    gevent_times+=("$t")
  fi
  echo "run $run: greenev ${greenev_times[-1]} s${go_urls:+, greenev from the Go server ${go_server_times[-1]} s}${gevent_python:+, gevent ${gevent_times[-1]:-?} s}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
echo "== $count URLs each delayed $delay s, median of $runs run(s) (limit: $delay s)"
printf 'result url_fetcher_async = %s s\n' "$(median "${greenev_times[@]}")"
if ((${#go_server_times[@]})); then
  printf 'result url_fetcher_async_go_server = %s s\n' "$(median "${go_server_times[@]}")"
else
  echo "the Go server: no go (golang-go); url_fetcher used its own server only"
fi
if ((${#gevent_times[@]})); then
  printf 'result gevent_urlopen_async = %s s\n' "$(median "${gevent_times[@]}")"
else
  echo "gevent: not installed (python3-gevent); no baseline"
fi
