// Hub costs (spawn + run + join, sleep(0)) next to their baselines: a raw libev callback
// and a raw greenlet create + run + destroy or switch, in the same process.
//
// Every benchmark reports real time per operation ("per_op"; a batch of 1000 spawns is
// 1000 operations, two greenlets yielding to each other are two yields per iteration).
// The final lines print each per-op time, same-run ratios, and greenev's absolute goals
// (stated with their reasons in docs/benchmarks.md) with MET or MISSED. The machines are
// noisy: trust ratios first.
#include <ev.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_report.hpp"

#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

namespace {

void per_op(benchmark::State& state, double operations_per_iteration) {
  state.counters["per_op"] = benchmark::Counter(
      operations_per_iteration, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- baselines -------------------------------------------------------------

// A raw libev program: one watcher whose callback is the whole per-operation work, in a
// loop of its own (not the hub's). The loop drives Google Benchmark's iterations. Each
// libev iteration polls the kernel (epoll_wait with a zero timeout); the hub skips that
// poll while callbacks are queued, polling at most every few milliseconds.
struct raw_loop {
  struct ev_loop* loop = ev_loop_new(EVFLAG_AUTO);
  ~raw_loop() { ev_loop_destroy(loop); }
};

// ev_idle: invoked once per loop iteration while nothing else is pending.
void BM_raw_libev_idle(benchmark::State& state) {
  raw_loop raw;
  ev_idle idle;
  ev_idle_init(&idle, [](struct ev_loop* loop, ev_idle* w, int) {
    if (!static_cast<benchmark::State*>(w->data)->KeepRunning()) {
      ev_idle_stop(loop, w);
      ev_break(loop, EVBREAK_ALL);
    }
  });
  idle.data = &state;
  ev_idle_start(raw.loop, &idle);
  ev_run(raw.loop, 0);
  per_op(state, 1);
}
BENCHMARK(BM_raw_libev_idle)->UseRealTime();

// A zero-delay one-shot ev_timer that re-arms itself from its callback.
void BM_raw_libev_timer0(benchmark::State& state) {
  raw_loop raw;
  ev_timer timer;
  ev_timer_init(
      &timer,
      [](struct ev_loop* loop, ev_timer* w, int) {
        if (static_cast<benchmark::State*>(w->data)->KeepRunning()) {
          ev_timer_set(w, 0.0, 0.0);
          ev_timer_start(loop, w);
        }
      },
      0.0, 0.0);
  timer.data = &state;
  ev_timer_start(raw.loop, &timer);
  ev_run(raw.loop, 0);  // returns when the timer stops re-arming
  per_op(state, 1);
}
BENCHMARK(BM_raw_libev_timer0)->UseRealTime();

void BM_greenlet_create_run_destroy(benchmark::State& state) {
  for (auto _ : state) {
    greenev::greenlet g([] {});
    g.switch_to();
    benchmark::DoNotOptimize(g);
  }
  per_op(state, 1);
}
BENCHMARK(BM_greenlet_create_run_destroy)->UseRealTime();

// Two switches per iteration: the floor under a sleep(0), which leaves and re-enters.
void BM_greenlet_round_trip(benchmark::State& state) {
  greenev::greenlet main_greenlet = greenev::current();
  bool running = true;
  greenev::greenlet g([&] {
    while (running) main_greenlet.switch_to();
  });
  g.switch_to();
  for (auto _ : state) g.switch_to();
  running = false;
  g.switch_to();
  per_op(state, 1);
}
BENCHMARK(BM_greenlet_round_trip)->UseRealTime();

// ---- greenev hub -----------------------------------------------------------

void BM_spawn_run_join(benchmark::State& state) {
  for (auto _ : state) {
    auto t = greenev::spawn([] {});
    t.join();
  }
  per_op(state, 1);
}
BENCHMARK(BM_spawn_run_join)->UseRealTime();

// Spawn a batch, then joinall: per task.
void BM_spawn_run_join_batch(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  std::vector<greenev::basic_task> tasks;
  tasks.reserve(batch);
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) tasks.push_back(greenev::spawn([] {}));
    greenev::joinall(tasks);
    tasks.clear();
  }
  per_op(state, static_cast<double>(batch));
}
BENCHMARK(BM_spawn_run_join_batch)->Arg(1000)->UseRealTime();

// The main greenlet yields; nobody else is ready, so the hub resumes it at once.
void BM_sleep0(benchmark::State& state) {
  for (auto _ : state) greenev::sleep(0);
  per_op(state, 1);
}
BENCHMARK(BM_sleep0)->UseRealTime();

// Two greenlets yielding to each other: two yields per iteration.
void BM_sleep0_two_greenlets(benchmark::State& state) {
  bool running = true;
  auto partner = greenev::spawn([&] {
    while (running) greenev::sleep(0);
  });
  greenev::sleep(0);  // let it start
  for (auto _ : state) greenev::sleep(0);
  running = false;
  partner.join();
  per_op(state, 2);
}
BENCHMARK(BM_sleep0_two_greenlets)->UseRealTime();

// ---- same-run ratios and goals ---------------------------------------------

constexpr greenev::bench::ratio ratios[] = {
    {"spawn_run_join", "greenlet_create_run_destroy"},
    {"spawn_run_join_batch", "greenlet_create_run_destroy"},
    {"sleep0", "greenlet_round_trip"},
    {"sleep0", "raw_libev_idle"},
    {"sleep0", "raw_libev_timer0"},
    {"sleep0_two_greenlets", "raw_libev_idle"},
};

constexpr greenev::bench::goal goals[] = {
    {"spawn_run_join", 150},
    {"spawn_run_join_batch", 150},
    {"sleep0", 60},
    {"sleep0_two_greenlets", 60},
};

}  // namespace

int main(int argc, char** argv) {
  // The hub first: with GREENEV_MONITOR=1 the monitor then runs through every
  // benchmark (its overhead is measured that way: greenev's budget for it is <= 5%, so that
  // it can stay on; docs/design.md, "Blocking monitor").
  (void)greenev::hub::current();
  return greenev::bench::run_benchmarks(argc, argv, ratios, goals);
}
