// The user's build: what a program built outside greenev (against the installed
// package, at the optimisation level of its own choosing) pays per operation,
// timed as plainly as a user would — a loop in main and a loop in a function —
// with the raw baseline beside each in the same process. bench/user_build.sh
// builds it at -O2 and -O3, through CMake's find_package and through pkg-config.
//
// Prints "result NAME = VALUE ns" lines: raw fiber and greenlet round trips
// (loop in main, loop in a function), switch_to_parent, an int round trip (as
// std::any, and typed: switch_to<int>), spawn + run + join, sleep(0).
#include <any>
#include <chrono>
#include <cstdio>

#include <boost/context/fiber.hpp>

#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr long rounds = 2'000'000;
bool wrong = false;  // a check failed: exit 1

double per_op(clock_type::time_point start, long count) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - start).count() /
         static_cast<double>(count);
}

double raw_fiber_round_trip() {
  boost::context::fiber f{[](boost::context::fiber&& main) {
    for (;;) main = std::move(main).resume();
    return std::move(main);
  }};
  f = std::move(f).resume();
  const auto start = clock_type::now();
  for (long i = 0; i < rounds; ++i) f = std::move(f).resume();
  return per_op(start, rounds);
}

double greenlet_round_trip() {
  greenev::greenlet g([](std::any) -> std::any {
    for (;;) greenev::switch_to_parent();
  });
  g.switch_to();
  const auto start = clock_type::now();
  for (long i = 0; i < rounds; ++i) g.switch_to();
  return per_op(start, rounds);
}

// The greenlet's side: switch_to_parent() timed from inside.
double switch_to_parent_round_trip() {
  double result = 0;
  greenev::greenlet g([&](std::any) -> std::any {
    const auto start = clock_type::now();
    for (long i = 0; i < rounds; ++i) greenev::switch_to_parent();
    result = per_op(start, rounds);
    return {};
  });
  while (!g.dead()) g.switch_to();
  return result;
}

double int_round_trip() {
  greenev::greenlet g([](std::any first) -> std::any {
    int value = std::any_cast<int>(first);
    for (;;) value = std::any_cast<int>(greenev::switch_to_parent(value + 1));
  });
  int value = std::any_cast<int>(g.switch_to(0));
  const auto start = clock_type::now();
  for (long i = 0; i < rounds; ++i) value = std::any_cast<int>(g.switch_to(value));
  const double result = per_op(start, rounds);
  if (value != rounds + 1) {
    std::printf("int round trip: wrong value %d\n", value);
    wrong = true;
  }
  return result;
}

// The same with the typed switches: the int crosses without a std::any.
double int_round_trip_typed() {
  greenev::greenlet g([](std::any first) -> std::any {
    int value = std::any_cast<int>(first);
    for (;;) value = greenev::switch_to_parent<int>(value + 1);
  });
  int value = g.switch_to<int>(0);
  const auto start = clock_type::now();
  for (long i = 0; i < rounds; ++i) value = g.switch_to<int>(value);
  const double result = per_op(start, rounds);
  if (value != rounds + 1) {
    std::printf("typed int round trip: wrong value %d\n", value);
    wrong = true;
  }
  return result;
}

double spawn_run_join() {
  const long count = rounds / 10;
  long ran = 0;
  const auto start = clock_type::now();
  for (long i = 0; i < count; ++i) greenev::spawn([&ran] { ++ran; }).join();
  const double result = per_op(start, count);
  if (ran != count) {
    std::printf("spawn: %ld of %ld ran\n", ran, count);
    wrong = true;
  }
  return result;
}

double sleep0() {
  const auto start = clock_type::now();
  for (long i = 0; i < rounds; ++i) greenev::sleep(0);
  return per_op(start, rounds);
}

}  // namespace

int main() {
  (void)greenev::hub::current();
  std::printf("result raw_fiber_round_trip = %.2f ns\n", raw_fiber_round_trip());
  std::printf("result greenlet_round_trip_function = %.2f ns\n", greenlet_round_trip());
  {
    // The same loop written in main.
    greenev::greenlet g([](std::any) -> std::any {
      for (;;) greenev::switch_to_parent();
    });
    g.switch_to();
    const auto start = clock_type::now();
    for (long i = 0; i < rounds; ++i) g.switch_to();
    std::printf("result greenlet_round_trip_main = %.2f ns\n", per_op(start, rounds));
  }
  std::printf("result switch_to_parent_round_trip = %.2f ns\n", switch_to_parent_round_trip());
  std::printf("result int_round_trip = %.2f ns\n", int_round_trip());
  std::printf("result int_round_trip_typed = %.2f ns\n", int_round_trip_typed());
  std::printf("result spawn_run_join = %.2f ns\n", spawn_run_join());
  std::printf("result sleep0 = %.2f ns\n", sleep0());
  return wrong ? 1 : 0;
}
