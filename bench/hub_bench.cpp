// Hub costs (spawn + run + join, sleep(0)) next to their baselines: a raw libev callback
// and a raw greenlet create + run + destroy or switch, in the same process.
//
// Every benchmark reports real time per operation ("per_op"; a batch of 1000 spawns is
// 1000 operations, two greenlets yielding to each other are two yields per iteration).
// The final lines print each per-op time, same-run ratios, and the absolute goals of
// DESIGN.md section 7 with MET or MISSED. The machines are noisy: trust ratios first.
#include <ev.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

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

struct ratio {
  const char* numerator;
  const char* denominator;
};

constexpr ratio ratios[] = {
    {"spawn_run_join", "greenlet_create_run_destroy"},
    {"spawn_run_join_batch", "greenlet_create_run_destroy"},
    {"sleep0", "greenlet_round_trip"},
    {"sleep0", "raw_libev_idle"},
    {"sleep0", "raw_libev_timer0"},
    {"sleep0_two_greenlets", "raw_libev_idle"},
};

struct goal {
  const char* name;
  double ns;  // DESIGN.md section 7
};

constexpr goal goals[] = {
    {"spawn_run_join", 150},
    {"spawn_run_join_batch", 150},
    {"sleep0", 60},
    {"sleep0_two_greenlets", 60},
};

template <class Run>
bool failed(const Run& run) {
  if constexpr (requires { run.skipped; }) {  // Google Benchmark >= 1.8
    return static_cast<bool>(run.skipped);
  } else {
    return run.error_occurred;
  }
}

// Prints the usual table and remembers each benchmark's real time per operation, in
// nanoseconds (the median when --benchmark_repetitions is given).
class per_op_reporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || failed(run)) continue;
      std::string name = run.run_name.function_name;
      if (name.starts_with("BM_")) name.erase(0, 3);
      const auto counter = run.counters.find("per_op");
      samples_[name].push_back(counter != run.counters.end()
                                   ? counter->second.value * 1e9
                                   : run.GetAdjustedRealTime() /
                                         benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9);
    }
  }

  void print_summary() const {
    for (const auto& [name, samples] : samples_)
      std::printf("time %s = %.2f ns\n", name.c_str(), median(samples));
    for (const ratio& r : ratios) {
      const auto numerator = samples_.find(r.numerator);
      const auto denominator = samples_.find(r.denominator);
      if (numerator == samples_.end() || denominator == samples_.end()) continue;  // filtered out
      std::printf("ratio %s/%s = %.2f\n", r.numerator, r.denominator,
                  median(numerator->second) / median(denominator->second));
    }
    for (const goal& g : goals) {
      const auto found = samples_.find(g.name);
      if (found == samples_.end()) continue;
      const double ns = median(found->second);
      std::printf("goal %s = %.2f ns (goal <= %.0f ns) %s\n", g.name, ns, g.ns,
                  ns <= g.ns ? "MET" : "MISSED");
    }
    std::fflush(stdout);
  }

 private:
  static double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  }

  std::map<std::string, std::vector<double>> samples_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // A reporter passed in ignores --benchmark_format and --benchmark_color: console, coloured on a tty.
  per_op_reporter reporter(isatty(STDOUT_FILENO) == 1 ? per_op_reporter::OO_ColorTabular
                                                      : per_op_reporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_summary();
  benchmark::Shutdown();
  return 0;
}
