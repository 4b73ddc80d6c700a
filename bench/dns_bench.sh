#!/usr/bin/env bash
# DNS benchmark (greenev's goal, stated in docs/benchmarks.md: 1000 lookups against a local
# server in <= 0.05 s, gevent's ares resolver beside it). Starts dnsmasq on a free loopback port
# loaded with N names (host<i>.bench.greenev.test), then runs greenev's bench/dns_bench
# and gevent's bench/dns_bench.py alternately, each as a fresh process per run (one
# untimed warm-up lookup, then N concurrent lookups timed). Prints every run, the medians
# and best runs, and the ratio (gevent seconds / greenev seconds: how many times faster
# greenev is).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bench/dns_bench.sh [--runs N] [--names N] [--no-gevent] [--check]
                          [--build-dir DIR] [--no-build] [--results FILE]

  --runs N         runs of each side; medians reported (default 5)
  --names N        names loaded and looked up concurrently per run (default 1000)
  --no-gevent      skip gevent (also skipped when python3-gevent is not installed)
  --check          exit 1 if greenev's median misses the 0.05 s goal (for 1000 names)
  --build-dir DIR  build tree (default $GREENEV_BENCH_BUILD or build/bench); configured in
                   Release with GREENEV_BUILD_BENCH=ON unless --no-build
  --no-build       use the dns_bench already built there
  --results FILE   also write the medians and best runs as "NAME VALUE UNIT" lines to FILE
                   (dns_greenev, dns_gevent, dns_greenev_best, dns_gevent_best; seconds)

Needs dnsmasq (Debian dnsmasq-base). Exits non-zero if a build or a run fails or an
answer is wrong. Takes a few seconds.
USAGE
}

runs=5
names=1000
gevent=1
check=0
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_default_build
do_build=1
results_file=""
need_value() { bench_need_value dns_bench.sh "$1" "$2"; }
while (($#)); do
  case "$1" in
    --runs) need_value "$1" $#; runs=$2; shift 2 ;;
    --names) need_value "$1" $#; names=$2; shift 2 ;;
    --no-gevent) gevent=0; shift ;;
    --check) check=1; shift ;;
    --build-dir) need_value "$1" $#; build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --results) need_value "$1" $#; results_file=$(realpath -m "$2"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "dns_bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bench_positive_integers dns_bench.sh "--runs and --names" "$runs" "$names"

root=$bench_root
cd "$root"
if ((do_build)); then
  bench_build "$build" dns_bench >/dev/null
fi
bench=$build/bench/dns_bench
[[ -x $bench ]] || { echo "dns_bench.sh: $bench is not built" >&2; exit 1; }

dnsmasq=$(command -v dnsmasq || true)
[[ -n $dnsmasq ]] || for candidate in /usr/sbin/dnsmasq /sbin/dnsmasq; do
  [[ -x $candidate ]] && dnsmasq=$candidate
done
[[ -n $dnsmasq ]] || { echo "dns_bench.sh: dnsmasq not found (apt-get install dnsmasq-base)" >&2; exit 1; }

python=""
if ((gevent)); then
  for candidate in python3 /usr/bin/python3; do
    if (cd / && "$candidate" -c 'import gevent.resolver.ares' 2>/dev/null); then python=$candidate; break; fi
  done
  [[ -n $python ]] || echo "gevent: not installed (apt-get install python3-gevent); skipped"
fi

work=$(mktemp -d /tmp/greenev-dns-bench-XXXXXX)
chmod 755 "$work"  # dnsmasq may drop privileges before reading the hosts file
pid=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

awk -v n="$names" 'BEGIN { for (i = 0; i < n; i++)
  printf "10.%d.%d.%d host%d.bench.greenev.test\n", int(i / 65536), int(i / 256) % 256, i % 256, i }' \
  >"$work/hosts"

# A free UDP port (dnsmasq takes TCP on it too; retried below if that fails).
free_port() {
  (cd / && "${python:-python3}" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
}
user_options=()
[[ $(id -u) -eq 0 ]] && user_options=(--user=root --group=root)
for _ in 1 2 3 4 5; do
  port=$(free_port)
  "$dnsmasq" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --address=/#/ \
    --bogus-priv --addn-hosts="$work/hosts" --listen-address=127.0.0.1 --bind-interfaces \
    --port="$port" --pid-file="$work/pid" --log-facility="$work/log" "${user_options[@]}" &
  pid=$!
  # Ready when a lookup of the first name succeeds (dns_bench's warm-up, one name).
  for _ in $(seq 100); do
    if "$bench" --nameserver "127.0.0.1:$port" --names 1 >/dev/null 2>&1; then break 2; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
done
[[ -n $pid ]] || { echo "dns_bench.sh: dnsmasq did not start; its log:" >&2; cat "$work/log" >&2; exit 1; }
echo "dnsmasq on 127.0.0.1:$port with $names names; $runs runs of $names concurrent lookups each"

: >"$work/results"
for _ in $(seq "$runs"); do
  "$bench" --nameserver "127.0.0.1:$port" --names "$names" | tee -a "$work/results"
  if [[ -n $python ]]; then
    (cd / && "$python" "$root/bench/dns_bench.py" --nameserver "127.0.0.1:$port" --names "$names") |
      tee -a "$work/results"
  fi
done

results_out=${results_file:-/dev/null}
: >"$results_out"
awk -v names="$names" -v check="$check" -v results_out="$results_out" "$bench_awk_median"'
  { split($2, kv, "="); side = $1; times[side, ++count[side]] = kv[2] }
  END {
    for (side in count) {
      best[side] = times[side, 1]
      list = ""
      for (i = 1; i <= count[side]; i++) { list = list " " times[side, i]; if (times[side, i] + 0 < best[side] + 0) best[side] = times[side, i] }
      m[side] = median(list)
      printf "dns_%s %.5f s\ndns_%s_best %.5f s\n", side, m[side], side, best[side] >results_out
    }
    printf "== medians: greenev %.4f s (%.0f lookups/s)", m["greenev"], names / m["greenev"]
    if ("gevent" in m) printf ", gevent ares %.4f s (%.0f lookups/s), ratio gevent/greenev %.2fx", m["gevent"], names / m["gevent"], m["gevent"] / m["greenev"]
    printf "\n"
    # A dropped UDP query costs gevent (c-ares, no flow control) a 5 s retry: the best
    # runs compare the resolvers without those outliers.
    printf "== best: greenev %.4f s", best["greenev"]
    if ("gevent" in m) printf ", gevent ares %.4f s, ratio %.2fx", best["gevent"], best["gevent"] / best["greenev"]
    printf "\n"
    if (names == 1000) {
      verdict = m["greenev"] <= 0.05 ? "met" : "MISSED"
      printf "== greenev goal (docs/benchmarks.md): 1000 lookups <= 0.05 s: %s\n", verdict
      if (check && verdict != "met") exit 1
    }
  }' "$work/results"
[[ -z $results_file ]] || echo "medians written to $results_file"
