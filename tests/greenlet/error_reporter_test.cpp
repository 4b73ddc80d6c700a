// Tests of greenev/error_reporter.hpp: the replaceable sink for diagnostics.
#include <greenev/error_reporter.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using greenev::error_reporter;
using greenev::set_error_reporter;
using greenev::detail::report_error;

// Restores the default reporter whatever the test did.
class error_reporter_test : public ::testing::Test {
 protected:
  void TearDown() override { set_error_reporter(nullptr); }
};

TEST_F(error_reporter_test, default_writes_the_line_and_a_newline_to_stderr) {
  ::testing::internal::CaptureStderr();
  report_error("greenev: something to say");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "greenev: something to say\n");
}

TEST_F(error_reporter_test, a_set_reporter_receives_each_line_and_stderr_gets_nothing) {
  std::vector<std::string> lines;
  EXPECT_FALSE(set_error_reporter([&](std::string_view line) { lines.emplace_back(line); }));
  ::testing::internal::CaptureStderr();
  report_error("first");
  report_error("second");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(lines, (std::vector<std::string>{"first", "second"}));
}

TEST_F(error_reporter_test, setting_returns_the_previous_reporter_and_empty_restores_stderr) {
  int first_calls = 0;
  set_error_reporter([&](std::string_view) { ++first_calls; });
  error_reporter previous = set_error_reporter([](std::string_view) {});
  ASSERT_TRUE(previous);
  previous("through the returned copy");
  EXPECT_EQ(first_calls, 1);
  EXPECT_TRUE(set_error_reporter(nullptr));
  ::testing::internal::CaptureStderr();
  report_error("back on stderr");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "back on stderr\n");
}

TEST_F(error_reporter_test, a_throwing_reporter_loses_nothing) {
  set_error_reporter([](std::string_view) { throw std::runtime_error("log is down"); });
  ::testing::internal::CaptureStderr();
  report_error("the message");
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("the message\n"), 0u) << out;
  EXPECT_NE(out.find("error reporter threw"), std::string::npos) << out;
}

TEST_F(error_reporter_test, threads_may_report_while_another_replaces_the_reporter) {
  std::atomic<int> received{0};
  const auto count = [&](std::string_view line) { received += line == "x"; };
  set_error_reporter(count);
  std::atomic<bool> stop{false};
  std::thread replacer([&] {
    while (!stop.load()) set_error_reporter(count);
  });
  std::vector<std::thread> reporters;
  for (int t = 0; t < 4; ++t) {
    reporters.emplace_back([] {
      for (int i = 0; i < 2000; ++i) report_error("x");
    });
  }
  for (auto& t : reporters) t.join();
  stop = true;
  replacer.join();
  // Every line reached exactly one reporter, whichever was current.
  EXPECT_EQ(received.load(), 8000);
}

}  // namespace
