// Tests for greenev/subprocess.hpp: check_output/check_call/run and their
// errors; communicate() with input, merged stderr, /dev/null, a child that
// does not read its input, and a timeout that loses no output; wait() with a
// timeout, signals and returncodes; many children at once while other
// greenlets run; waiting from another thread; several waiters; children
// greenev did not start are left to the program; the destructor kills and
// reaps; bad arguments. Ports the contracts of gevent's test__subprocess.py
// that do not depend on Python.
#include <greenev/subprocess.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using greenev::stdio;
using greenev::subprocess;
using greenev::testing::since;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;
using subprocess_test = greenev::testing::hub_test;

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

TEST_F(subprocess_test, check_output_returns_what_the_child_wrote) {
  EXPECT_EQ(greenev::check_output({"echo", "hello", "world"}), "hello world\n");
  const std::string big = greenev::check_output({"head", "-c", "1000000", "/dev/zero"});
  EXPECT_EQ(big.size(), 1000000u);
}

TEST_F(subprocess_test, a_non_zero_exit_is_a_called_process_error_with_the_output) {
  try {
    (void)greenev::check_output({"sh", "-c", "echo partial; exit 3"});
    FAIL() << "no error";
  } catch (const greenev::called_process_error& error) {
    EXPECT_EQ(error.returncode(), 3);
    EXPECT_EQ(error.output(), "partial\n");
    EXPECT_EQ(error.argv().front(), "sh");
    EXPECT_NE(std::string(error.what()).find("exit status 3"), std::string::npos) << error.what();
  }
  EXPECT_THROW(greenev::check_call({"false"}), greenev::called_process_error);
  EXPECT_NO_THROW(greenev::check_call({"true"}));
  const auto result = greenev::run({"sh", "-c", "echo out; echo err >&2; exit 4"}, {.capture_output = true});
  EXPECT_EQ(result.returncode, 4);
  EXPECT_EQ(result.out, "out\n");
  EXPECT_EQ(result.err, "err\n");
}

TEST_F(subprocess_test, a_missing_program_is_an_error_naming_it) {
  try {
    subprocess child({"greenev-no-such-program", "x"});
    FAIL() << "started";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), ENOENT);
    EXPECT_NE(std::string(error.what()).find("greenev-no-such-program"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(throws_with<std::system_error>(
      [] { subprocess child({"true"}, {.cwd = "/greenev/no/such/dir"}); }, "/greenev/no/such/dir"));
}

TEST_F(subprocess_test, bad_arguments_are_refused) {
  EXPECT_THROW(subprocess({}), std::invalid_argument);
  EXPECT_THROW(subprocess({"true"}, {.out = stdio::to_stdout}), std::invalid_argument);
  EXPECT_THROW(subprocess({"true"}, {.env = std::map<std::string, std::string>{{"A=B", "c"}}}),
               std::invalid_argument);
  subprocess child({"true"});
  EXPECT_THROW(child.write_input("x"), std::logic_error);
  EXPECT_THROW((void)child.read_output(), std::logic_error);
  EXPECT_THROW((void)child.communicate("input"), std::invalid_argument);
  EXPECT_EQ(child.wait(5s), 0);
}

TEST_F(subprocess_test, communicate_feeds_stdin_and_collects_stdout) {
  subprocess sorter({"sort"}, {.in = stdio::pipe, .out = stdio::pipe});
  const auto [out, err] = sorter.communicate("pear\napple\nfig\n", 10s);
  EXPECT_EQ(out, "apple\nfig\npear\n");
  EXPECT_EQ(err, "");
  EXPECT_EQ(sorter.returncode(), 0);
  // More than a pipe holds, both ways at once: no deadlock.
  std::string input;
  for (int i = 0; i < 20000; ++i) input += "line " + std::to_string(i) + "\n";
  subprocess cat({"cat"}, {.in = stdio::pipe, .out = stdio::pipe});
  EXPECT_EQ(cat.communicate(input, 10s).out, input);
}

TEST_F(subprocess_test, stderr_can_join_stdout_and_stdin_can_be_dev_null) {
  subprocess both({"sh", "-c", "echo one; echo two >&2"}, {.out = stdio::pipe, .err = stdio::to_stdout});
  EXPECT_EQ(both.communicate({}, 10s).out, "one\ntwo\n");
  subprocess reader({"cat"}, {.in = stdio::devnull, .out = stdio::pipe});
  EXPECT_EQ(reader.communicate({}, 10s).out, "");
  EXPECT_EQ(reader.returncode(), 0);
}

TEST_F(subprocess_test, env_and_cwd_are_the_childs) {
  const std::string out =
      greenev::check_output({"sh", "-c", "echo \"$GREENEV_TEST_VALUE\"; pwd; echo \"${HOME:-unset}\""},
                            {.env = std::map<std::string, std::string>{{"GREENEV_TEST_VALUE", "forty two"},
                                                                       {"PATH", "/usr/bin:/bin"}},
                             .cwd = "/tmp"});
  EXPECT_EQ(out, "forty two\n/tmp\nunset\n");
}

TEST_F(subprocess_test, a_child_that_does_not_read_its_input_is_not_an_error) {
  // Its stdin closes while we write: EPIPE, no SIGPIPE for this process.
  subprocess child({"true"}, {.in = stdio::pipe});
  const std::string input(4 << 20, 'x');
  EXPECT_NO_THROW((void)child.communicate(input, 10s));
  EXPECT_EQ(child.returncode(), 0);
}

TEST_F(subprocess_test, a_timed_out_communicate_loses_no_output) {
  subprocess child({"sh", "-c", "echo first; sleep 0.4; echo second"}, {.out = stdio::pipe});
  try {
    (void)child.communicate({}, 0.1);
    FAIL() << "no timeout";
  } catch (const greenev::subprocess_timeout& timeout) {
    EXPECT_EQ(timeout.output(), "first\n");
    EXPECT_FALSE(child.returncode().has_value());
  }
  EXPECT_EQ(child.communicate({}, 10s).out, "first\nsecond\n");
  EXPECT_EQ(child.returncode(), 0);
}

TEST_F(subprocess_test, wait_times_out_and_signals_give_negative_returncodes) {
  subprocess sleeper({"sleep", "30"});
  EXPECT_FALSE(sleeper.poll().has_value());
  const auto start = steady::now();
  EXPECT_THROW(sleeper.wait(0.05), greenev::subprocess_timeout);
  EXPECT_GE(since(start), 40ms);
  EXPECT_THROW(sleeper.wait(0.0), greenev::subprocess_timeout);
  sleeper.terminate();
  EXPECT_EQ(sleeper.wait(10s), -SIGTERM);
  EXPECT_EQ(sleeper.poll(), -SIGTERM);
  EXPECT_NO_THROW(sleeper.kill());  // reaped: nothing to signal
  subprocess killed({"sleep", "30"});
  killed.kill();
  EXPECT_EQ(killed.wait(10s), -SIGKILL);
  try {
    greenev::check_call({"sh", "-c", "kill -9 $$"});
    FAIL() << "no error";
  } catch (const greenev::called_process_error& error) {
    EXPECT_EQ(error.returncode(), -SIGKILL);
    EXPECT_NE(std::string(error.what()).find("signal 9"), std::string::npos) << error.what();
  }
}

TEST_F(subprocess_test, many_children_wait_at_once_while_other_greenlets_run) {
  std::atomic<bool> done{false};
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    while (!done) {
      ++ticks;
      greenev::sleep(0.01);
    }
  });
  const auto start = steady::now();
  std::vector<greenev::task<int>> waits;
  for (int i = 0; i < 50; ++i) {
    waits.push_back(greenev::spawn([] {
      subprocess child({"sleep", "0.2"});
      return child.wait(30s);
    }));
  }
  for (auto& wait : waits) EXPECT_EQ(wait.get(60s), 0);
  // One after another would take 10 s; at once, about 0.2 s (bounded generously).
  EXPECT_LT(since(start), 5s);
  EXPECT_GE(ticks, 5) << "the other greenlet did not run while the children ran";
  done = true;
  ticker.join();
}

TEST_F(subprocess_test, several_greenlets_may_wait_for_one_child) {
  subprocess child({"sleep", "0.1"});
  auto first = greenev::spawn([&] { return child.wait(10s); });
  auto second = greenev::spawn([&] { return child.wait(10s); });
  EXPECT_EQ(first.get(20s), 0);
  EXPECT_EQ(second.get(20s), 0);
}

TEST_F(subprocess_test, another_threads_hub_may_wait) {
  subprocess child({"sleep", "0.1"});
  int returncode = -100;
  std::thread waiter([&] { returncode = child.wait(10s); });
  waiter.join();
  EXPECT_EQ(returncode, 0);
}

TEST_F(subprocess_test, children_greenev_did_not_start_are_left_to_the_program) {
  pid_t own = 0;
  char* args[] = {const_cast<char*>("true"), nullptr};
  ASSERT_EQ(::posix_spawnp(&own, "true", nullptr, nullptr, args, environ), 0);
  // greenev waits for its own child meanwhile, with the loop running.
  EXPECT_EQ(greenev::run({"sleep", "0.05"}).returncode, 0);
  greenev::sleep(0.05);
  int status = -1;
  EXPECT_EQ(::waitpid(own, &status, 0), own) << "greenev reaped a child it did not start";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(subprocess_test, destroying_a_running_subprocess_kills_and_reaps_it) {
  pid_t pid = 0;
  {
    subprocess sleeper({"sleep", "30"}, {.in = stdio::pipe, .out = stdio::pipe});
    pid = sleeper.pid();
    EXPECT_TRUE(process_exists(pid));
  }
  EXPECT_FALSE(process_exists(pid)) << "left running or a zombie";
}

TEST_F(subprocess_test, run_with_a_timeout_kills_the_child) {
  const auto start = steady::now();
  EXPECT_THROW((void)greenev::run({"sleep", "30"}, {.timeout = 0.1}), greenev::subprocess_timeout);
  EXPECT_LT(since(start), 10s);
}

TEST_F(subprocess_test, a_waiter_killed_or_timed_out_leaves_nothing_behind) {
  subprocess child({"sleep", "30"}, {.out = stdio::pipe});
  auto waiter = greenev::spawn([&] { return child.wait(); });
  auto reader = greenev::spawn([&] { return child.read_output(); });
  greenev::sleep(0.02);
  waiter.kill();
  reader.kill();
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  child.kill();
  EXPECT_EQ(child.wait(10s), -SIGKILL);
}

TEST_F(subprocess_test, pipes_can_be_driven_by_hand) {
  subprocess child({"sh", "-c", "read line; echo \"got $line\"; echo oops >&2"},
                   {.in = stdio::pipe, .out = stdio::pipe, .err = stdio::pipe});
  child.write_input("hello\n");
  child.close_input();
  std::string out;
  for (std::string piece; !(piece = child.read_output()).empty();) out += piece;
  std::string err;
  for (std::string piece; !(piece = child.read_error_output()).empty();) err += piece;
  EXPECT_EQ(out, "got hello\n");
  EXPECT_EQ(err, "oops\n");
  EXPECT_EQ(child.wait(10s), 0);
}

TEST_F(subprocess_test, a_moved_subprocess_keeps_its_child) {
  subprocess first({"sh", "-c", "exit 7"});
  subprocess second(std::move(first));
  EXPECT_EQ(second.wait(10s), 7);
  subprocess third({"true"});
  third = std::move(second);
  EXPECT_EQ(third.returncode(), 7);
}

}  // namespace
