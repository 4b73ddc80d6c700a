// Greenlet switch and lifecycle costs next to their baseline, raw boost::context::fiber.
//
// One iteration of a *_round_trip benchmark is a round trip: two context switches
// (the per_switch counter halves it). The final lines print greenlet/raw ratios from
// this run; the machines are noisy, so only same-run ratios mean anything.
//
// Every loop of this file is aligned to 64 bytes: loop placement alone moved the
// greenlet/raw ratio between 1.15 and 1.8 from build to build (the inline switch's loop
// spans more fetch blocks than the raw fiber's, and which ones depends on where the
// compiler put it). Aligned, the ratio measures the switch, not the layout; the raw
// baseline is aligned the same way (and did not move either way).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("align-loops=64")
#endif
#include <unistd.h>

#include <algorithm>
#include <any>
#include <cstddef>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include <boost/context/fiber.hpp>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include "bench_report.hpp"

#include <greenev/greenlet.hpp>
#include <greenev/stack.hpp>

namespace {

namespace ctx = boost::context;

// Same usable size as a greenlet's default stack, so both touch the same pages.
std::size_t stack_size() {
  return greenev::default_stack_options().size;
}

void count_switches(benchmark::State& state) {
  state.counters["per_switch"] =
      benchmark::Counter(2, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// ---- baselines -------------------------------------------------------------

void BM_raw_fiber_round_trip(benchmark::State& state) {
  bool running = true;
  ctx::fiber fiber(std::allocator_arg, ctx::fixedsize_stack(stack_size()), [&running](ctx::fiber&& caller) {
    while (running) caller = std::move(caller).resume();
    return std::move(caller);
  });
  fiber = std::move(fiber).resume();  // enter it once: it jumps straight back
  for (auto _ : state) fiber = std::move(fiber).resume();
  running = false;
  fiber = std::move(fiber).resume();  // let it return
  count_switches(state);
}
BENCHMARK(BM_raw_fiber_round_trip);

// Pooled stacks, like greenev's stack pool: measures creation, two jumps and teardown.
void BM_raw_fiber_create_run_destroy(benchmark::State& state) {
  ctx::pooled_fixedsize_stack stacks(stack_size());
  for (auto _ : state) {
    ctx::fiber fiber(std::allocator_arg, stacks, [](ctx::fiber&& caller) { return std::move(caller); });
    fiber = std::move(fiber).resume();
    benchmark::DoNotOptimize(fiber);
  }
}
BENCHMARK(BM_raw_fiber_create_run_destroy);

// ---- greenev ---------------------------------------------------------------

void BM_greenlet_round_trip(benchmark::State& state) {
  greenev::greenlet main_greenlet = greenev::current();
  bool running = true;
  greenev::greenlet g([&] {
    while (running) main_greenlet.switch_to();
  });
  g.switch_to();  // start it: it switches straight back
  for (auto _ : state) g.switch_to();
  running = false;
  g.switch_to();  // let it return
  count_switches(state);
}
BENCHMARK(BM_greenlet_round_trip);

void BM_greenlet_round_trip_int(benchmark::State& state) {
  greenev::greenlet main_greenlet = greenev::current();
  bool running = true;
  greenev::greenlet g([&](std::any first) {
    int n = std::any_cast<int>(first);
    while (running) n = std::any_cast<int>(main_greenlet.switch_to(n + 1));
  });
  int n = std::any_cast<int>(g.switch_to(0));
  for (auto _ : state) n = std::any_cast<int>(g.switch_to(n));
  benchmark::DoNotOptimize(n);
  running = false;
  g.switch_to(0);
  count_switches(state);
}
BENCHMARK(BM_greenlet_round_trip_int);

// The same with the typed switches: the int crosses without a std::any.
void BM_greenlet_round_trip_int_typed(benchmark::State& state) {
  greenev::greenlet main_greenlet = greenev::current();
  bool running = true;
  greenev::greenlet g([&](std::any first) {
    int n = std::any_cast<int>(first);
    while (running) n = main_greenlet.switch_to<int>(n + 1);
  });
  int n = g.switch_to<int>(0);
  for (auto _ : state) n = g.switch_to<int>(n);
  benchmark::DoNotOptimize(n);
  running = false;
  g.switch_to(0);
  count_switches(state);
}
BENCHMARK(BM_greenlet_round_trip_int_typed);

void create_run_destroy(benchmark::State& state, greenev::stack_kind kind) {
  greenev::greenlet_options options;  // not {.kind = kind}: -Wmissing-field-initializers
  options.kind = kind;
  for (auto _ : state) {
    greenev::greenlet g([] {}, options);
    g.switch_to();
    benchmark::DoNotOptimize(g);
  }
}

void BM_greenlet_create_run_destroy(benchmark::State& state) {
  create_run_destroy(state, greenev::stack_kind::guarded);
}
BENCHMARK(BM_greenlet_create_run_destroy);

void BM_greenlet_create_run_destroy_compact(benchmark::State& state) {
  create_run_destroy(state, greenev::stack_kind::compact);
}
BENCHMARK(BM_greenlet_create_run_destroy_compact);

// ---- same-run ratios -------------------------------------------------------

constexpr greenev::bench::ratio ratios[] = {
    {"greenlet_round_trip", "raw_fiber_round_trip", 1.30},
    {"greenlet_round_trip_int", "raw_fiber_round_trip", 0},
    {"greenlet_round_trip_int_typed", "raw_fiber_round_trip", 1.30},
    {"greenlet_create_run_destroy", "raw_fiber_create_run_destroy", 0},
    {"greenlet_create_run_destroy_compact", "raw_fiber_create_run_destroy", 0},
};

}  // namespace

int main(int argc, char** argv) {
  return greenev::bench::run_benchmarks(argc, argv, ratios, {});
}
