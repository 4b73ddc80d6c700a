// Tests for greenev/monitor.hpp: a greenlet that blocks its thread (an
// unpatched usleep) is reported once, by name, with its spawn site and a
// backtrace; an idle hub and greenlets that keep switching are not. Each
// test runs in its own process (ctest), as the monitor is process-wide.
#include <greenev/monitor.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"

namespace {

using namespace std::chrono_literals;

using monitor_reports = greenev::testing::hub_test;

struct collected {
  std::mutex mutex;
  std::vector<greenev::blocking_report> reports;

  greenev::monitor_options options() {
    return {.max_blocking_time = 100ms, .on_blocking = [this](const greenev::blocking_report& report) {
              const std::lock_guard lock(mutex);
              reports.push_back(report);
            }};
  }
  std::vector<greenev::blocking_report> taken() {
    const std::lock_guard lock(mutex);
    return reports;
  }
};

TEST_F(monitor_reports, a_greenlet_blocking_for_300_ms_is_reported_once_by_name) {
  collected seen;
  greenev::start_monitor(seen.options());
  auto blocker = greenev::spawn_with({.name = "blocker"}, [] { ::usleep(300000); });
  blocker.join();
  greenev::sleep(0.3);  // idle: the hub waits in its loop, which is not blocking
  greenev::stop_monitor();
  const auto reports = seen.taken();
  ASSERT_EQ(reports.size(), 1u);
  const greenev::blocking_report& report = reports[0];
  EXPECT_EQ(report.greenlet_name, "blocker");
  EXPECT_GE(report.blocked_for, 100ms);
  EXPECT_FALSE(report.spawn_site.empty());
  EXPECT_FALSE(report.backtrace.empty());
  EXPECT_NE(report.text().find("\"blocker\" is blocking it"), std::string::npos) << report.text();
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
