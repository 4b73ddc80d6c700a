// Boost.Fiber's figures for the measures hub_bench takes, so bench/report.sh can set greenev
// beside them: Boost.Fiber is the nearest C++ peer, and greenev's spawn and yield goals
// (docs/benchmarks.md: <= 150 ns, <= 60 ns) are set to beat it.
//
//   fiber_baseline [--repeats N]   each measure N times (default 5), prints the median
//
//   spawn_run_join        one fiber launched (launch::post), joined, before the next
//   spawn_run_join_batch  1000 fibers launched, then all joined; per fiber
//   spawn_run_join_batch_pooled   the same, stacks from one pooled_fixedsize_stack
//   yield                 this_fiber::yield() with no other fiber ready; per yield
//   yield_two_fibers      two fibers yielding to each other; per yield
//
// Default scheduler (round robin), default stacks (fixedsize, 128 KiB on Linux), one thread.
// Lines starting "result " are "result fiber_NAME = NS ns".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include <boost/fiber/all.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

// Median over `repeats` calls of body(operations)'s wall time per operation, in ns.
double per_operation_ns(const std::function<void(int)>& body, int operations, int repeats) {
  body(operations / 10);  // warm-up: stacks allocated, caches touched
  std::vector<double> samples;
  for (int repeat = 0; repeat < repeats; ++repeat) {
    const auto start = clock_type::now();
    body(operations);
    const std::chrono::duration<double, std::nano> elapsed = clock_type::now() - start;
    samples.push_back(elapsed.count() / operations);
  }
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

void spawn_run_join(int count) {
  int done = 0;
  for (int i = 0; i < count; ++i) {
    boost::fibers::fiber fiber(boost::fibers::launch::post, [&done] { ++done; });
    fiber.join();
  }
  if (done != count) std::abort();
}

// Batches of 1000: with Allocator's stacks when one is given, else the default (a fresh
// 128 KiB fixedsize_stack per fiber, whose page faults dominate).
template <typename Launch>
void batches(int count, Launch launch) {
  constexpr int batch = 1000;
  int done = 0;
  std::vector<boost::fibers::fiber> fibers;
  fibers.reserve(batch);
  for (int started = 0; started < count; started += batch) {
    for (int i = 0; i < batch; ++i) fibers.push_back(launch([&done] { ++done; }));
    for (auto& fiber : fibers) fiber.join();
    fibers.clear();
  }
  if (done < count) std::abort();
}

void spawn_run_join_batch(int count) {
  batches(count, [](auto body) { return boost::fibers::fiber(boost::fibers::launch::post, body); });
}

void spawn_run_join_batch_pooled(int count) {
  static boost::fibers::pooled_fixedsize_stack pool;  // shared by copies; outlives every fiber
  batches(count, [](auto body) {
    return boost::fibers::fiber(boost::fibers::launch::post, std::allocator_arg, pool, body);
  });
}

void yield_alone(int count) {
  for (int i = 0; i < count; ++i) boost::this_fiber::yield();
}

void yield_two_fibers(int count) {
  // count yields in all, half in each fiber.
  auto body = [count] {
    for (int i = 0; i < count / 2; ++i) boost::this_fiber::yield();
  };
  boost::fibers::fiber first(boost::fibers::launch::post, body);
  boost::fibers::fiber second(boost::fibers::launch::post, body);
  first.join();
  second.join();
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
      repeats = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: fiber_baseline [--repeats N]\n");
      return 2;
    }
  }
  if (repeats < 1) repeats = 1;
  std::printf("Boost.Fiber %d.%d.%d, default scheduler, median of %d\n", BOOST_VERSION / 100000,
              BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100, repeats);
  std::printf("result fiber_spawn_run_join = %.1f ns\n", per_operation_ns(spawn_run_join, 200'000, repeats));
  std::printf("result fiber_spawn_run_join_batch = %.1f ns\n",
              per_operation_ns(spawn_run_join_batch, 200'000, repeats));
  std::printf("result fiber_spawn_run_join_batch_pooled = %.1f ns\n",
              per_operation_ns(spawn_run_join_batch_pooled, 200'000, repeats));
  std::printf("result fiber_yield = %.1f ns\n", per_operation_ns(yield_alone, 2'000'000, repeats));
  std::printf("result fiber_yield_two_fibers = %.1f ns\n",
              per_operation_ns(yield_two_fibers, 2'000'000, repeats));
  return 0;
}
