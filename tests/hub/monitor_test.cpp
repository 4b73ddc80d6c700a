// Tests for greenev/monitor.hpp: a greenlet that blocks its thread (an
// unpatched usleep, or a busy loop) is reported once, by name, with its spawn
// site; the usleep is named as the system call and not cut short, the busy
// loop gets a backtrace; an idle hub and greenlets that keep switching are
// not reported. Each test runs in its own process (ctest), as the monitor is
// process-wide.
#include <greenev/monitor.hpp>

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"
#include "support/sanitizers.hpp"

namespace {

using namespace std::chrono_literals;

using monitor_reports = greenev::testing::hub_test;

struct collected {
  std::mutex mutex;
  std::vector<greenev::blocking_report> reports;

  greenev::monitor_options options(
      greenev::monitor_backtrace backtrace = greenev::monitor_backtrace::outside_system_calls) {
    return {.max_blocking_time = 100ms,
            .on_blocking =
                [this](const greenev::blocking_report& report) {
                  const std::lock_guard lock(mutex);
                  reports.push_back(report);
                },
            .backtrace = backtrace};
  }
  std::vector<greenev::blocking_report> taken() {
    const std::lock_guard lock(mutex);
    return reports;
  }
};

using clock_type = std::chrono::steady_clock;

// Keeps its thread busy in user code, with no system call, for `how_long`.
// valgrind runs one thread at a time and lets a busy one starve the monitor
// thread, so the tests that use this skip there.
void busy_for(clock_type::duration how_long) {
  const auto end = clock_type::now() + how_long;
  while (clock_type::now() < end) {
  }
}

// The acceptance: an unpatched usleep of 300 ms. The monitor names the
// greenlet and the call without signalling the thread, so the sleep is whole.
TEST_F(monitor_reports, a_greenlet_blocking_for_300_ms_is_reported_once_by_name) {
  collected seen;
  greenev::start_monitor(seen.options());
  int sleep_result = -2;
  clock_type::duration slept{};
  auto blocker = greenev::spawn_with({.name = "blocker"}, [&] {
    const auto start = clock_type::now();
    sleep_result = ::usleep(300000);
    slept = clock_type::now() - start;
  });
  blocker.join();
  greenev::sleep(0.3);  // idle: the hub waits in its loop, which is not blocking
  greenev::stop_monitor();
  EXPECT_EQ(sleep_result, 0) << "the monitor interrupted the sleep";
  EXPECT_GE(slept, 300ms);
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 1u);
  const greenev::blocking_report& report = reports[0];
  EXPECT_EQ(report.greenlet_name, "blocker");
  EXPECT_NE(report.greenlet_id, 0u);
  EXPECT_GE(report.blocked_for, 100ms);
  EXPECT_FALSE(report.spawn_site.empty());
  EXPECT_NE(report.system_call_name.find("nanosleep"), std::string::npos) << report.text();
  EXPECT_TRUE(report.backtrace.empty()) << "a thread in a system call is not signalled by default";
  EXPECT_NE(report.text().find("\"blocker\" is blocking it"), std::string::npos) << report.text();
  EXPECT_NE(report.text().find("in system call"), std::string::npos) << report.text();
}

// Running user code, the thread can be signalled harmlessly: a backtrace that
// goes through the busy function.
TEST_F(monitor_reports, a_busy_greenlet_is_reported_with_its_backtrace) {
  if (greenev::testing::under_valgrind())
    GTEST_SKIP() << "valgrind starves the monitor thread during a busy loop";
  collected seen;
  greenev::start_monitor(seen.options());
  auto spinner = greenev::spawn_with({.name = "spinner"}, [] { busy_for(400ms); });
  spinner.join();
  greenev::stop_monitor();
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 1u);
  const greenev::blocking_report& report = reports[0];
  EXPECT_EQ(report.greenlet_name, "spinner");
  EXPECT_EQ(report.system_call, -1) << report.text();
  EXPECT_FALSE(report.backtrace.empty()) << report.text();
}

TEST_F(monitor_reports, backtrace_never_names_the_greenlet_without_a_backtrace) {
  if (greenev::testing::under_valgrind())
    GTEST_SKIP() << "valgrind starves the monitor thread during a busy loop";
  collected seen;
  greenev::start_monitor(seen.options(greenev::monitor_backtrace::never));
  auto spinner = greenev::spawn_with({.name = "quiet"}, [] { busy_for(300ms); });
  spinner.join();
  greenev::stop_monitor();
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].greenlet_name, "quiet");
  EXPECT_TRUE(reports[0].backtrace.empty());
}

// Opted in, the backtrace is taken inside the system call too (and the call
// may end early with EINTR, which the sleep here retries).
TEST_F(monitor_reports, backtrace_always_signals_a_thread_in_a_system_call) {
  collected seen;
  greenev::start_monitor(seen.options(greenev::monitor_backtrace::always));
  auto blocker = greenev::spawn_with({.name = "sleeper"}, [] {
    timespec left{0, 300'000'000};
    while (::nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
  });
  blocker.join();
  greenev::stop_monitor();
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].greenlet_name, "sleeper");
  EXPECT_FALSE(reports[0].backtrace.empty()) << reports[0].text();
}

// The monitor reads a greenlet while its thread may be freeing or renaming
// greenlets: many short blocks among many short-lived, renamed greenlets.
TEST_F(monitor_reports, reading_the_running_greenlet_races_with_nothing) {
  collected seen;
  greenev::start_monitor({.max_blocking_time = 1ms,
                          .on_blocking =
                              [&seen](const greenev::blocking_report& report) {
                                const std::lock_guard lock(seen.mutex);
                                seen.reports.push_back(report);
                              },
                          .backtrace = greenev::monitor_backtrace::never});
  const auto end = clock_type::now() + 300ms;
  int rounds = 0;
  while (clock_type::now() < end) {
    auto t = greenev::spawn([] {
      greenev::greenlet::current().set_name("renamed");
      ::usleep(3000);
    });
    t.join();
    ++rounds;
  }
  greenev::stop_monitor();
  EXPECT_GT(rounds, 10);
  for (const greenev::blocking_report& report : seen.taken()) {
    if (report.greenlet_id == 0) continue;
    EXPECT_TRUE(report.greenlet_name == "renamed" || report.greenlet_name == "main" ||
                report.greenlet_name == "hub" || report.greenlet_name.starts_with("greenlet-"))
        << report.text();
  }
  EXPECT_FALSE(seen.taken().empty());
}

TEST(monitor_options_checks, a_threshold_that_is_not_positive_is_refused) {
  EXPECT_THROW(greenev::start_monitor({.max_blocking_time = 0ms}), std::invalid_argument);
  EXPECT_FALSE(greenev::monitor_running());
}

TEST_F(monitor_reports, greenlets_that_keep_switching_and_an_idle_hub_are_not_reported) {
  collected seen;
  greenev::start_monitor(seen.options());
  const auto end = std::chrono::steady_clock::now() + 300ms;
  auto spinner = greenev::spawn([&] {
    while (std::chrono::steady_clock::now() < end) greenev::sleep(0.0);
  });
  spinner.join();
  greenev::sleep(0.3);
  greenev::stop_monitor();
  EXPECT_TRUE(seen.taken().empty());
}

TEST_F(monitor_reports, two_blocking_episodes_make_two_reports) {
  collected seen;
  greenev::start_monitor(seen.options());
  auto first = greenev::spawn_with({.name = "first"}, [] { ::usleep(300000); });
  auto second = greenev::spawn_with({.name = "second"}, [] { ::usleep(300000); });
  first.join();
  second.join();
  greenev::stop_monitor();
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].greenlet_name, "first");
  EXPECT_EQ(reports[1].greenlet_name, "second");
}

// GREENEV_MONITOR=1 starts it when the process's first hub is created; the
// default report goes to stderr. In a child process (a threadsafe death test
// re-executes this binary), so the hub it creates really is the first one,
// however the tests of this executable are run.
TEST(monitor_environment, greenev_monitor_1_reports_to_stderr) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("GREENEV_MONITOR", "1", 1);
        ::setenv("GREENEV_MAX_BLOCKING_TIME", "0.1", 1);
        (void)greenev::hub::current();
        if (!greenev::monitor_running()) {
          std::fputs("the monitor did not start\n", stderr);
          std::_Exit(1);
        }
        auto blocker = greenev::spawn_with({.name = "env-blocker"}, [] { ::usleep(300000); });
        blocker.join();
        greenev::stop_monitor();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "\"env-blocker\" is blocking it");
}

}  // namespace
