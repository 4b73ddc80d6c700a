"""The Python baselines for bench/subprocess_bench.sh: start N copies of a command and wait
for them all, either with gevent.subprocess (all at once, one greenlet each) or with
Python's own subprocess (one after another: it cannot wait cooperatively). Prints
"result wall = X s" and "result per_process_us = Y us"."""
import argparse
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["gevent", "python"], required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.mode == "gevent":
        import gevent
        from gevent import subprocess

        def one():
            return subprocess.Popen(args.command).wait()

        jobs = [gevent.spawn(one) for _ in range(args.count)]
        gevent.joinall(jobs)
        failed = sum(1 for job in jobs if job.value != 0)
    else:
        import subprocess

        failed = sum(1 for _ in range(args.count) if subprocess.Popen(args.command).wait() != 0)
    wall = time.perf_counter() - start
    print(f"result wall = {wall:.4f} s")
    print(f"result per_process_us = {wall / args.count * 1e6:.1f} us")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
