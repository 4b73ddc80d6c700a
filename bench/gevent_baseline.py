#!/usr/bin/env python3
"""gevent's figures for the measures hub_bench and hub_soak take (goals: docs/benchmarks.md).

usage: gevent_baseline.py [all|micro|sleepers] [--sleepers N] [--seconds S]

  micro     spawn + run + join per greenlet (one at a time, and batches of 1000 with
            joinall), sleep(0) per yield (one greenlet; two yielding to each other)
  sleepers  N greenlets (default 100000) each gevent.sleep(S) (default 1), joinall:
            wall time and peak RSS per greenlet (VmHWM growth / N)
  all       both (the default); sleepers runs in a fresh process so the peak is its own

Prints "result gevent_NAME = VALUE UNIT" lines for bench/run.sh. Without gevent it prints
a note and exits 0. Run it from a folder without a greenlet/ subfolder (e.g. `cd /`): the
repository's greenlet/ folder would shadow the greenlet module.
"""
import argparse
import statistics
import subprocess
import sys
import time

try:
    import gevent
except ImportError as error:  # not an error: the baseline is optional
    print(f"gevent: not installed ({error}); apt-get install python3-gevent, or pip install gevent")
    sys.exit(0)


def per_op_ns(body, operations, repeats=5):
    """Median over `repeats` runs of body()'s wall time per operation, in ns."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        body()
        samples.append((time.perf_counter() - start) / operations * 1e9)
    return statistics.median(samples)


def nothing():
    pass


def micro():
    n = 20_000

    def spawn_run_join():
        for _ in range(n):
            gevent.spawn(nothing).join()

    def spawn_run_join_batch():
        for _ in range(n // 1000):
            gevent.joinall([gevent.spawn(nothing) for _ in range(1000)])

    yields = 200_000

    def sleep0():
        for _ in range(yields):
            gevent.sleep(0)

    def sleep0_two_greenlets():
        running = True

        def partner():
            while running:
                gevent.sleep(0)

        other = gevent.spawn(partner)
        gevent.sleep(0)
        for _ in range(yields // 2):
            gevent.sleep(0)
        running = False
        other.join()

    spawn_run_join()  # warm up: the hub, the loop, the greenlet free lists
    results = [
        ("spawn_run_join", per_op_ns(spawn_run_join, n)),
        ("spawn_run_join_batch", per_op_ns(spawn_run_join_batch, n // 1000 * 1000)),
        ("sleep0", per_op_ns(sleep0, yields)),
        ("sleep0_two_greenlets", per_op_ns(sleep0_two_greenlets, yields // 2 * 2)),
    ]
    for name, ns in results:
        print(f"result gevent_{name} = {ns:.1f} ns")


def status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def sleepers(count, seconds):
    gevent.get_hub()  # the hub's own memory is not the greenlets'
    base = status_bytes("VmHWM")
    start = time.perf_counter()
    gevent.joinall([gevent.spawn(gevent.sleep, seconds) for _ in range(count)])
    wall = time.perf_counter() - start
    per_greenlet_kib = (status_bytes("VmHWM") - base) / count / 1024
    print(f"result gevent_sleepers_wall = {wall:.4f} s")
    print(f"result gevent_sleepers_overhead = {wall - seconds:.4f} s")
    print(f"result gevent_sleepers_rss_per_greenlet = {per_greenlet_kib:.3f} KiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "micro", "sleepers"])
    parser.add_argument("--sleepers", type=int, default=100_000, help="greenlets (default 100000)")
    parser.add_argument("--seconds", type=float, default=1.0, help="each one sleeps this long (default 1)")
    args = parser.parse_args()
    if args.sleepers < 1 or args.seconds < 0:
        parser.error("--sleepers must be >= 1 and --seconds >= 0")

    if args.mode == "all":
        import greenlet

        print(f"gevent {gevent.__version__}, greenlet {greenlet.__version__}, python {sys.version.split()[0]}")
    sys.stdout.flush()
    if args.mode in ("all", "micro"):
        micro()
    if args.mode == "sleepers":
        sleepers(args.sleepers, args.seconds)
    elif args.mode == "all":
        sys.stdout.flush()
        command = [sys.executable, __file__, "sleepers", "--sleepers", str(args.sleepers),
                   "--seconds", str(args.seconds)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
