#!/usr/bin/env python3
"""Writes docs/benchmarks.md and the chart's data from the benchmark scripts' medians.

bench/report.sh runs the benchmarks and calls this; run alone it renders a page again:

  bench/report.py ALL_RESULTS MACHINE_TXT MARKDOWN CHART_DAT CHART_NAME

ALL_RESULTS holds "NAME VALUE UNIT" lines, MACHINE_TXT "key<TAB>value" lines (both in
build/report/ after a run); CHART_NAME is the SVG file name the page embeds. The areas,
their rows and greenev's goals with their reasons are the tables below.
"""
import sys

if len(sys.argv) != 6:
    sys.exit(__doc__)
results_path, machine_path, markdown_path, chart_data_path, chart_name = sys.argv[1:]
values, units = {}, {}
for line in open(results_path):
    fields = line.split()
    if len(fields) >= 2:
        try:
            values[fields[0]] = float(fields[1])
        except ValueError:
            continue
        units[fields[0]] = fields[2] if len(fields) > 2 else ""
machine = dict(line.rstrip("\n").split("\t", 1) for line in open(machine_path) if "\t" in line)

# An area: its rows (label, key, kind of baseline, same-run ratio key or None), whether less
# is better, and greenev's goal for it (text, key, comparison, threshold, unit shown, why: the
# reason for the threshold, printed in the page's Goals table). The first row is
# greenev's. A same-run ratio key is greenev/baseline of the measured quantity, as printed by
# the benchmark itself (more exact than a ratio of medians).
areas = [
    dict(title="Greenlet switch", note="One round trip = two context switches, ns.", unit="ns", lower=True,
         chart="switch", rows=[
             ("greenev greenlet", "greenlet_round_trip", None, None),
             ("raw Boost.Context fiber", "raw_fiber_round_trip", "raw", "greenlet_round_trip/raw_fiber_round_trip", "raw Boost.Context"),
             ("python greenlet, gevent's switch (best of 5, python loop included)", "python_greenlet_round_trip", "python", None, "python greenlet")],
         goal=("≤ 1.30× raw Boost.Context, same run", "greenlet_round_trip/raw_fiber_round_trip", "<=", 1.30, "×",
              "a greenlet switch is a raw Boost.Context jump plus the greenlet's bookkeeping (current "
              "greenlet, exception state); the bookkeeping may add at most 30%")),
    dict(title="Greenlet create + run + destroy (no hub)", note="Per greenlet, ns.", unit="ns", lower=True,
         chart="create", rows=[
             ("greenev greenlet", "greenlet_create_run_destroy", None, None),
             ("raw Boost.Context fiber", "raw_fiber_create_run_destroy", "raw",
              "greenlet_create_run_destroy/raw_fiber_create_run_destroy", "raw Boost.Context")],
         goal=None),
    dict(title="Spawn + run + join", note="One task at a time on the hub, per task, ns.", unit="ns", lower=True,
         chart="spawn", rows=[
             ("greenev spawn/join", "hub.spawn_run_join", None, None),
             ("Boost.Fiber fiber/join", "fiber_spawn_run_join", "fiber", None, "Boost.Fiber"),
             ("gevent spawn/join", "gevent_spawn_run_join", "python", None, "gevent")],
         goal=("≤ 150 ns", "hub.spawn_run_join", "<=", 150, " ns",
              "about half of Boost.Fiber's spawn + join (286 ns when the goal was set), the nearest C++ "
              "peer; gevent's takes microseconds")),
    dict(title="Spawn 1000, then join all", note="Per task, ns. Boost.Fiber's default stack allocator "
         "maps a fresh 128 KiB stack per fiber; the pooled row reuses them.", unit="ns", lower=True,
         chart="spawn x1000", rows=[
             ("greenev spawn/joinall", "hub.spawn_run_join_batch", None, None),
             ("Boost.Fiber, default stacks", "fiber_spawn_run_join_batch", "fiber", None, "Boost.Fiber"),
             ("Boost.Fiber, pooled_fixedsize_stack", "fiber_spawn_run_join_batch_pooled", "fiber", None, "Boost.Fiber pooled"),
             ("gevent spawn/joinall", "gevent_spawn_run_join_batch", "python", None, "gevent")],
         goal=("≤ 150 ns", "hub.spawn_run_join_batch", "<=", 150, " ns",
              "the same per-task budget as one at a time: a batch must not cost more per task")),
    dict(title="sleep(0) yield", note="One greenlet yielding to the hub, per yield, ns. The raw libev rows "
         "are one watcher's callback per loop iteration in a loop of its own; each libev iteration polls the "
         "kernel (epoll_wait with a zero timeout), which the hub skips while greenlets are ready.", unit="ns", lower=True,
         chart="sleep(0)", rows=[
             ("greenev sleep(0)", "hub.sleep0", None, None),
             ("raw libev ev_idle callback", "hub.raw_libev_idle", "raw", "hub.sleep0/raw_libev_idle", "libev idle"),
             ("raw libev 0 s ev_timer callback", "hub.raw_libev_timer0", "raw", "hub.sleep0/raw_libev_timer0", "libev timer 0"),
             ("Boost.Fiber this_fiber::yield()", "fiber_yield", "fiber", None, "Boost.Fiber"),
             ("gevent.sleep(0)", "gevent_sleep0", "python", None, "gevent")],
         goal=("≤ 60 ns", "hub.sleep0", "<=", 60, " ns",
              "under Boost.Fiber's yield (75 ns when the goal was set), the nearest C++ peer; far under "
              "a libev loop iteration, which polls the kernel")),
    dict(title="sleep(0), two greenlets yielding to each other", note="Per yield, ns.", unit="ns", lower=True,
         chart="sleep(0) x2", rows=[
             ("greenev sleep(0)", "hub.sleep0_two_greenlets", None, None),
             ("raw libev ev_idle callback", "hub.raw_libev_idle", "raw", "hub.sleep0_two_greenlets/raw_libev_idle", "libev idle"),
             ("Boost.Fiber, two fibers", "fiber_yield_two_fibers", "fiber", None, "Boost.Fiber"),
             ("gevent.sleep(0), two greenlets", "gevent_sleep0_two_greenlets", "python", None, "gevent")],
         goal=("≤ 60 ns", "hub.sleep0_two_greenlets", "<=", 60, " ns",
              "the same per-yield budget with another greenlet ready")),
    dict(title="100k greenlets each sleep(1 s): wall time", note="Spawn, all asleep, joinall; seconds "
         "(1 s of it is the sleep). greenev on hub_soak's compact 32 KiB stacks with "
         "stack_prefault::background (a helper thread faults each new stack in ahead of use); the "
         "second row the same with prefaulting off, the library's default; the third on the "
         "library's default stacks (one run). gevent: one run. The floor row is measured in the same "
         "process after the sleepers: the 1 s sleep plus a first write to one fresh page per greenlet "
         "(100k pages, one per 32 KiB, as stack tops), which any design that gives each live greenlet a "
         "page of its own pays; on this VM each first touch of a page traps to the hypervisor.",
         unit="s", lower=True, chart="100k sleepers wall", rows=[
             ("greenev, compact 32 KiB stacks, background prefault", "sleepers_wall", None, None),
             ("greenev, compact 32 KiB stacks, prefault off (not a baseline)", "no_prefault_sleepers_wall", "self", None),
             ("greenev, default stacks (not a baseline)", "default_stacks_sleepers_wall", "self", None),
             ("floor: 1 s + a first write to 100k fresh pages", "no_prefault_sleepers_page_floor_wall", "raw", None,
              "fresh pages"),
             ("gevent", "gevent_sleepers_wall", "python", None, "gevent")],
         goal=("≤ 1.15 s", "sleepers_wall", "<=", 1.15, " s",
              "the sleep itself is 1 s: spawning, waking and joining 100k greenlets may add at most "
              "0.15 s (gevent took about 5 s when the goal was set)")),
    dict(title="100k greenlets each sleep(1 s): peak RSS per greenlet", note="VmHWM growth / 100k, KiB.",
         unit="KiB", lower=True, chart="100k sleepers RSS", rows=[
             ("greenev, compact 32 KiB stacks, background prefault", "sleepers_rss_per_greenlet", None, None),
             ("greenev, compact 32 KiB stacks, prefault off (not a baseline)", "no_prefault_sleepers_rss_per_greenlet", "self", None),
             ("greenev, default stacks (not a baseline)", "default_stacks_sleepers_rss_per_greenlet", "self", None),
             ("gevent", "gevent_sleepers_rss_per_greenlet", "python", None, "gevent")],
         goal=("≤ 8 KiB", "sleepers_rss_per_greenlet", "<=", 8, " KiB",
              "a sleeping greenlet should touch only a page or two of its stack, so that 100k of them "
              "fit in under 800 MiB")),
    dict(title="1M concurrent greenlets", note="A million tasks waiting on one event, then released; one "
         "run. No baseline runs here (libgo, reported at 4.5 GB for a million coroutines, is not packaged "
         "in Debian).", unit="", lower=True,
         chart=None, rows=[
             ("greenev peak RSS (GiB)", "million_rss", None, None),
             ("greenev wall time (s)", "million_wall", "self", None)],
         goal=("completes, ≤ 6 GiB peak RSS", "million_rss", "<=", 6, " GiB",
              "a million concurrent tasks must fit in an ordinary server's memory, as they do with "
              "libgo (reported at 4.5 GB)")),
    dict(title="Echo: 100 connections × 64 B ping-pong", note="Round trips per second, closed loop "
         "(bench/echo_load, every echo verified); servers alternate within each run. Against raw libev "
         "the advantage is the median of the per-run ratios.", unit="rps", lower=False, chart="echo",
         rows=[
             ("greenev examples/echo_server", "echo_rps_greenev", None, None),
             ("raw libev callback server", "echo_rps_raw_libev", "raw", "echo_ratio_greenev", "raw libev"),
             ("gevent StreamServer", "echo_rps_gevent", "python", None, "gevent")],
         goal=("≥ 0.95× raw libev, same run", "echo_ratio_greenev", ">=", 0.95, "×",
              "the hub is a libev loop: greenlets on top of it may cost at most 5% of raw libev "
              "callbacks' throughput (gevent reached about 0.4× when the goal was set)"),
         cpu=[("greenev", "greenev"), ("raw_libev", "raw libev"), ("gevent", "gevent")]),
    dict(title="sendall over loopback TCP", note="512 MiB (128 MiB with --quick), MiB/s; the same program with only the sending "
         "side replaced. A comparison only: greenev sets no goal here.", unit="MiB/s", lower=False, chart="sendall", rows=[
             ("greenev socket::sendall", "sendall_greenev_tcp", None, None),
             ("blocking C send() loop", "sendall_baseline_tcp", "raw", None, "blocking C")],
         goal=None),
    dict(title="DNS: 1000 concurrent lookups against a local dnsmasq", note="Seconds, a fresh process "
         "per run. c-ares (gevent's ares resolver) retries a dropped UDP query after 5 s, so the best runs "
         "are shown too.", unit="s", lower=True, chart="DNS", rows=[
             ("greenev resolver (c-ares)", "dns_greenev", None, None),
             ("gevent ares resolver", "dns_gevent", "python", None, "gevent ares"),
             ("greenev, best run", "dns_greenev_best", "self", None),
             ("gevent ares, best run (against greenev's best)", "dns_gevent_best", "python", None, "gevent ares, best runs",
              "dns_greenev_best")],
         goal=("≤ 0.05 s", "dns_greenev", "<=", 0.05, " s",
              "half of gevent's ares resolver (about 0.1 s when the goal was set), which uses the same "
              "c-ares library")),
    dict(title="Patched echo: blocking POSIX calls under patch_all()", note="Round trips per second, "
         "100 connections × 64 B; the same server on greenev sockets is the baseline.", unit="rps", lower=False, chart="patched echo", rows=[
             ("POSIX calls under patch_all()", "patched_posix_rps", None, None),
             ("greenev sockets", "greenev_socket_rps", "raw", "patched_over_greenev", "greenev sockets")],
         goal=("≥ 0.9× greenev sockets, same run", "patched_over_greenev", ">=", 0.9, "×",
              "unmodified blocking POSIX code under patch_all() may lose at most 10% to the same server "
              "written against greenev's sockets")),
    dict(title="URL fetcher: 100 URLs, each delayed 200 ms", note="Seconds; greenev runs unmodified "
         "libcurl under patch_all(), gevent its patched urlopen; the floor is the delay, 0.200 s. "
         "examples/url_fetcher prints its time with two decimals.",
         unit="s", lower=True, chart="URL fetcher", rows=[
             ("greenev examples/url_fetcher --mode async", "url_fetcher_async", None, None),
             ("greenev, the same pages from Go net/http (bench/go_hello --delay)", "url_fetcher_async_go_server",
              "self", None),
             ("gevent patched urlopen", "gevent_urlopen_async", "python", None, "gevent")],
         goal=("≤ 0.22 s", "url_fetcher_async", "<=", 0.22, " s",
              "the 200 ms delay is the floor: 100 concurrent libcurl fetches may add at most 10% "
              "(gevent took about 0.24 s when the goal was set)")),
    dict(title="The user's build: greenlet round trip", note="A program built outside greenev against the "
         "installed package (bench/user_build.sh), timing a plain loop in main; ns per round trip, the raw "
         "fiber measured in the same process. Columns are the build: CMake find_package or pkg-config, -O2 "
         "or -O3, no other flag.", unit="ns", lower=True, chart="user -O2", rows=[
             ("greenev, find_package, -O2", "user_cmake_O2_greenlet_round_trip_main", None, None),
             ("raw Boost.Context fiber, -O2, same process", "user_cmake_O2_raw_fiber_round_trip", "raw",
              "user_cmake_O2_greenlet_round_trip_main_ratio", "raw Boost.Context (-O2)"),
             ("greenev, find_package, -O3", "user_cmake_O3_greenlet_round_trip_main", "self", None),
             ("raw Boost.Context fiber, -O3, same process", "user_cmake_O3_raw_fiber_round_trip", "raw",
              "user_cmake_O3_greenlet_round_trip_main_ratio", "raw Boost.Context (-O3)",
              "user_cmake_O3_greenlet_round_trip_main"),
             ("greenev switch_to_parent, -O2", "user_cmake_O2_switch_to_parent_round_trip", "self", None),
             ("greenev round trip passing an int, -O2", "user_cmake_O2_int_round_trip", "self", None),
             ("greenev round trip passing an int, typed (switch_to<int>), -O2",
              "user_cmake_O2_int_round_trip_typed", "self", None),
             ("greenev spawn + run + join, -O2", "user_cmake_O2_spawn_run_join", "self", None),
             ("greenev sleep(0), -O2", "user_cmake_O2_sleep0", "self", None)],
         goal=("≤ 1.30× raw Boost.Context at -O2, same process", "user_cmake_O2_greenlet_round_trip_main_ratio",
               "<=", 1.30, "×",
               "what the harness shows must hold in the user's own build too: -O2 is what most "
               "distributions and RelWithDebInfo build with")),
    dict(title="HTTP hello world: CPU per request", note="bench/http_bench.sh: wrk, 1 thread, 100 keep-alive "
         "connections, the server on one core; server CPU (user + system) per request, µs, median. Servers "
         "alternate within each run. A second goal: ≤ 0.6× Go net/http's (bench/http_bench.sh prints it).", unit="µs", lower=True, chart="HTTP CPU", rows=[
             ("greenev examples/hello_http", "http_cpu_greenev", None, None),
             ("nginx (one process, return 200)", "http_cpu_nginx", "raw", "http_cpu_ratio_nginx", "nginx"),
             ("Go net/http, GOMAXPROCS=1", "http_cpu_go", "raw", "http_cpu_ratio_go", "Go net/http"),
             ("gevent pywsgi", "http_cpu_gevent", "python", None, "gevent pywsgi")],
         goal=("≤ 1.3× nginx's CPU per request, same run", "http_cpu_ratio_nginx", "<=", 1.3, "×",
               "nginx is what people put in front instead; a greenlet per connection with plain "
               "sequential handlers may cost at most 30% more CPU than its event-driven C")),
    dict(title="HTTP hello world: requests per second", note="The same runs, requests/s.", unit="rps",
         lower=False, chart="HTTP rps", rows=[
             ("greenev examples/hello_http", "http_rps_greenev", None, None),
             ("nginx", "http_rps_nginx", "raw", None, "nginx"),
             ("Go net/http", "http_rps_go", "raw", None, "Go net/http"),
             ("gevent pywsgi", "http_rps_gevent", "python", "http_rps_ratio_gevent", "gevent pywsgi")],
         goal=("≥ 20× gevent pywsgi, same run", "http_rps_ratio_gevent", ">=", 20, "×",
               "the point of greenev over gevent for a web server")),
    dict(title="Long poll: 10,000 held requests released at once", note="bench/web_bench.sh: examples/"
         "longpoll_cart holds 10,000 GET /cart/status (bench/longpoll_load), one POST releases them; p99 of "
         "the release latency, ms, and the server's RSS per held connection, KiB.", unit="", lower=True,
         chart=None, rows=[
             ("greenev release p99 (ms)", "longpoll_release_p99", None, None),
             ("greenev RSS per held connection (KiB)", "longpoll_rss_per_connection", "self", None)],
         goal=("p99 ≤ 300 ms", "longpoll_release_p99", "<=", 300, " ms",
               "a change must reach ten thousand waiting browsers within a third of a second")),
    dict(title="TLS sendall over loopback", note="bench/web_bench.sh: MiB/s with the same receiver (a thread "
         "reading with SSL_read); only the sending side differs.", unit="MiB/s", lower=False, chart="TLS sendall",
         rows=[
             ("greenev tls_socket::sendall", "tls_sendall_greenev", None, None),
             ("blocking C loop over OpenSSL", "tls_sendall_baseline", "raw", "tls_sendall_ratio", "blocking C OpenSSL")],
         goal=("≥ 0.8× the blocking C loop, same run", "tls_sendall_ratio", ">=", 0.8, "×",
               "cooperative waits around OpenSSL may cost at most 20% of its throughput")),
    dict(title="WebSocket echo: 100 connections × 64 B", note="bench/web_bench.sh (bench/ws_bench): the same "
         "greenev clients against a WebSocket echo on http_server and against examples/echo_server over plain "
         "TCP; the ratio of round trips per second, same run.", unit="×", lower=False, chart=None, rows=[
             ("WebSocket / plain TCP round trips", "ws_echo_ratio_tcp", None, None)],
         goal=("≥ 0.8× the plain TCP echo server, same run", "ws_echo_ratio_tcp", ">=", 0.8, "×",
               "WebSocket framing and the HTTP upgrade may cost at most 20% of a raw socket's echo")),
    dict(title="WebSocket broadcast to 10,000 clients", note="bench/web_bench.sh: one message sent by one "
         "greenlet to 10,000 connected clients (greenev's own, in another process, which stay connected until "
         "all have it); ms from the request until the last one has it, and how long the server's loop of "
         "sends took.", unit="ms", lower=True, chart=None,
         rows=[("greenev", "ws_broadcast_ms", None, None),
               ("greenev, the server's loop of 10,000 sends", "ws_broadcast_server_sends_ms", "self", None)],
         goal=("≤ 300 ms", "ws_broadcast_ms", "<=", 300, " ms",
               "the websocket cart's push must reach ten thousand shoppers within a third of a second")),
    dict(title="Subprocess: 100 × sleep 0.2 at once", note="bench/subprocess_bench.sh via "
         "examples/parallel_commands; wall seconds (0.2 s of it is the sleep). The floor is plain C "
         "starting every copy with posix_spawnp and then waiting (bench/spawn_baseline): what the machine "
         "allows, since process start-up is its cost.", unit="s", lower=True, chart=None,
         rows=[("greenev", "subprocess_sleep100_wall", None, None),
               ("plain C posix_spawnp + waitpid (the floor)", "subprocess_sleep100_wall_posix_spawn", "raw", None,
                "posix_spawn"),
               ("gevent.subprocess", "subprocess_sleep100_wall_gevent", "python", None, "gevent.subprocess")],
         goal=("≤ 0.3 s", "subprocess_sleep100_wall", "<=", 0.3, " s",
               "starting 100 processes may add at most 0.1 s to the 0.2 s they sleep")),
    dict(title="Subprocess: 1000 × /bin/true, per process", note="µs per process started and waited for; "
         "greenev and gevent start them all at once, Python's subprocess one after another.", unit="us",
         lower=True, chart="subprocess", rows=[
             ("greenev", "subprocess_true_per_process_greenev", None, None),
             ("plain C posix_spawnp, then waitpid", "subprocess_true_per_process_posix_spawn", "raw", None,
              "posix_spawn"),
             ("gevent.subprocess", "subprocess_true_per_process_gevent", "python", None, "gevent.subprocess"),
             ("Python subprocess (sequential)", "subprocess_true_per_process_python", "python", None,
              "Python subprocess")],
         goal=None),
]


def number(value):
    if value >= 1e5:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def advantage(area, greenev_key, key, ratio_key):
    """How many times better greenev is than this row (>1: faster, leaner, more throughput)."""
    if ratio_key and ratio_key in values and values[ratio_key] > 0:
        return 1 / values[ratio_key] if area["lower"] else values[ratio_key]
    if greenev_key in values and key in values and values[greenev_key] > 0 and values[key] > 0:
        return values[key] / values[greenev_key] if area["lower"] else values[greenev_key] / values[key]
    return None


def verdict(goal):
    text, key, comparison, threshold, shown = goal[:5]
    if key not in values:
        return "not measured", None
    value = values[key]
    met = value <= threshold if comparison == "<=" else value >= threshold
    return ("met" if met else "**missed**"), f"{number(value)}{shown}"


kinds = {"raw": "raw", "fiber": "Boost.Fiber", "python": "gevent / python greenlet"}
out, chart_rows, summary = [], [], []
for area in areas:
    greenev_key = area["rows"][0][1]
    out.append(f"### {area['title']}\n\n{area['note']}\n")
    out.append("| implementation | median | greenev's advantage |")
    out.append("|---|---:|---:|")
    for index, row in enumerate(area["rows"]):
        label, key, kind, ratio_key = row[:4]
        unit = {"round_trips/s": "rps"}.get(units.get(key, ""), units.get(key, ""))
        shown = f"{number(values[key])} {unit}".strip() if key in values else "not measured"
        if index == 0:
            out.append(f"| **{label}** | **{shown}** | — |")
            continue
        if kind == "self":  # greenev itself another way: no advantage
            out.append(f"| {label} | {shown} | |")
            continue
        adv = advantage(area, row[5] if len(row) > 5 else greenev_key, key, ratio_key)
        same_run = " (same run)" if ratio_key and ratio_key in values else ""
        out.append(f"| {label} | {shown} | {f'{adv:.2f}×{same_run}' if adv else 'not measured'} |")
        if adv and area["chart"]:
            chart_rows.append((f"{area['chart']}: {row[4]}", adv, kind))
    if "cpu" in area and all(f"echo_cpu_{name}" in values for name, _ in area["cpu"]):
        out.append("\nServer CPU per round trip (user + system, a lower bound: loopback softirq time is in no "
                   "process's account): " + ", ".join(f"{label} {values[f'echo_cpu_{name}']:.2f} µs"
                                                      for name, label in area["cpu"]) + ".")
    if area["goal"]:
        state, measured = verdict(area["goal"])
        out.append(f"\nGoal: {area['goal'][0]}: {measured or '—'}, {state}.\n")
        summary.append((area["title"], area["goal"][0], area["goal"][5], measured or "—", state))
    else:
        out.append("")

lines = ["# Benchmarks", "",
         "Generated by `bench/report.sh` from a real run on the machine below; rerun it to refresh "
         "this page (`bench/report.sh --runs 5`, about 4 minutes; `--quick` for a smoke test). "
         "Every figure is a median over the runs of the benchmark scripts in `bench/` (each script's "
         "header says what it measures); the baselines run in the same script run, most in the same "
         "process. The baselines come from Debian packages, which the scripts use where installed "
         "and otherwise name and skip: `golang-go`, `nginx-light`, `wrk`, `python3-gevent`, "
         "`libboost-fiber-dev`, and `gnuplot-nox` for the chart.", "",
         "**greenev's advantage** is how many times better greenev does than that row: the baseline's "
         "time divided by greenev's, or greenev's throughput divided by the baseline's. Above 1× greenev "
         "is faster (or leaner); below 1× it is slower. *(same run)* marks a ratio the benchmark computed "
         "itself from measurements taken side by side, which is what to trust on a noisy machine.", "",
         "## Machine", "",
         "| | |", "|---|---|"]
for key, label in [("cpu", "CPU"), ("cores", "cores"), ("memory", "memory"), ("kernel", "kernel"),
                   ("distro", "distribution"), ("compiler", "compiler"), ("boost", "Boost"),
                   ("libev", "libev (Debian)"), ("python", "baselines"), ("revision", "greenev revision"),
                   ("date", "run started, duration"), ("runs", "runs per measure"),
                   ("load_before", "load average before (1, 5, 15 min)"),
                   ("load_during", "1-min load average during"),
                   ("load_after", "load average after (1, 5, 15 min)")]:
    lines.append(f"| {label} | {machine.get(key, 'unknown')} |")
lines += ["",
          "This is a shared build machine: other jobs (builds, test suites) ran during the measurements, "
          "as the load average shows, and the absolute times move with them by tens of percent from run "
          "to run. The same-run ratios move much less; greenev's goals (below) are stated as such ratios "
          "where a baseline exists. An absolute goal that a median meets or misses by less than about 20% "
          "can flip from one report to the next (spawn + join did between two `--runs 5` reports here).", ""]
if machine.get("failed", "").strip():
    lines += [f"**Failed during this run** (their rows say *not measured*): {machine['failed']}; "
              "see `build/report/NAME.log`.", ""]
lines += ["## Chart", "",
          f"![greenev's advantage over each baseline, log scale]({chart_name})", "",
          f"(PNG: [{chart_name[:-4]}.png]({chart_name[:-4]}.png))", "",
          "Bars above 1× are measures where greenev beats the baseline; the scale is logarithmic. "
          "Colours: raw baselines (Boost.Context, libev callbacks, blocking C, the greenev-socket server "
          "for patched echo), Boost.Fiber, and gevent / python greenlet.", "",
          "## Goals", "",
          "greenev's performance goals, each with its reason. Each is set against the nearest baseline: "
          "raw Boost.Context and raw libev for what greenev is built on, Boost.Fiber as the nearest C++ "
          "peer, gevent as the library whose model greenev brings to C++. They were set on a machine "
          "like this one (2 cores, loopback networking); where a baseline runs beside greenev the goal "
          "is a same-run ratio.", "",
          "| measure | goal | why | greenev | |", "|---|---|---|---:|---|"]
for title, goal, why, measured, state in summary:
    lines.append(f"| {title} | {goal} | {why} | {measured} | {state} |")
lines += ["", "## Results by area", ""] + out
lines += ["## Not measured here", "",
          "- **libgo** (a C++ coroutine library, reported at 4.5 GB for a million coroutines): not packaged "
          "in Debian, not run.",
          "- **gevent on the 1M-greenlet and sendall measures**: the scripts have no gevent side for them.",
          ]
if machine.get("failed", "").strip():
    lines.append(f"- Whatever these failed steps measure: {machine['failed']}.")
lines += ["", "## Raw medians", "",
          "Every median as the scripts wrote it (`NAME VALUE UNIT`; `hub.` names come from hub_bench, "
          "`A/B` names are same-run ratios). After a run, `build/report/` also holds each script's full "
          "log with the per-run values.", "", "<details><summary>all.results</summary>", "", "```"]
lines += [line.rstrip() for line in open(results_path) if line.strip()]
lines += ["```", "", "</details>", ""]
open(markdown_path, "w").write("\n".join(lines))
with open(chart_data_path, "w") as data:
    for index, (label, adv, kind) in enumerate(chart_rows):
        colour = {"raw": 1, "fiber": 2, "python": 3}.get(kind, 1)
        data.write(f'{index} {adv:.4f} {colour} "{label}"\n')
