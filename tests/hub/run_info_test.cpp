// Tests for greenev/run_info.hpp: run info lists every greenlet with what it
// waits on (sleep with the time left, fd N read, event), on this thread and
// on another thread's hub; loop_exit's message uses the same lines. The
// greenlet tree: tasks under their spawner, raw greenlets under their parent.
#include <greenev/run_info.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"

namespace {

using greenev::testing::throws_with;
using run_info = greenev::testing::hub_test;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(run_info, lists_a_sleeping_a_socket_waiting_and_an_event_waiting_greenlet) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  greenev::event never;
  auto sleeper = greenev::spawn_with({.name = "sleeper"}, [] { greenev::sleep(10.0); });
  auto reader = greenev::spawn_with({.name = "reader"}, [&] { (void)greenev::wait_read(fds[0]); });
  auto waiter = greenev::spawn_with({.name = "event-waiter"}, [&] { (void)never.wait(); });
  greenev::sleep(0.05);
  const std::string text = greenev::format_run_info();
  EXPECT_TRUE(contains(text, "\"sleeper\": suspended on sleep, 9.")) << text;
  EXPECT_TRUE(contains(text, "\"reader\": suspended on fd " + std::to_string(fds[0]) + " read")) << text;
  EXPECT_TRUE(contains(text, "\"event-waiter\": suspended on event")) << text;
  EXPECT_TRUE(contains(text, "\"main\": running")) << text;
  EXPECT_TRUE(contains(text, "parent hub; spawned at ")) << text;
  greenev::killall({sleeper, reader, waiter});
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_F(run_info, lists_the_greenlets_of_another_threads_hub) {
  std::atomic<bool> ready{false};
  std::atomic<bool> quit{false};
  std::thread other([&] {
    greenev::event done;
    auto waiter = greenev::spawn_with({.name = "other-thread-waiter"}, [&] { (void)done.wait(); });
    greenev::sleep(0.01);
    ready = true;
    while (!quit) greenev::sleep(0.005);
    done.set();
    waiter.join();
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::string text = greenev::format_run_info();
  quit = true;
  other.join();
  EXPECT_TRUE(contains(text, "\"other-thread-waiter\": suspended on event")) << text;
  EXPECT_TRUE(contains(text, "\"main\": suspended on sleep")) << text;
}

TEST_F(run_info, loop_exit_names_what_each_stuck_greenlet_waits_on) {
  greenev::event never;
  auto stuck = greenev::spawn_with({.name = "stuck"}, [&] { (void)never.wait(); });
  EXPECT_TRUE(throws_with<greenev::loop_exit>([&] { stuck.join(); }, "\"stuck\": suspended on event"));
  EXPECT_TRUE(throws_with<greenev::loop_exit>([&] { stuck.join(); }, "\"main\": suspended on join"));
  stuck.kill();
}

TEST(run_info_signal, sigusr1_prints_the_run_info_to_stderr) {
  // The helper thread writes the dump whenever it gets to it, so stderr goes
  // to a file for the whole test and the file is read while it still does
  // (gtest's CaptureStderr has to stop capturing to read, and a dump written
  // in that gap was once lost).
  char path[] = "/tmp/greenev-run-info-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  ::unlink(path);
  std::fflush(stderr);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(saved_stderr, 0);
  ASSERT_EQ(::dup2(file, STDERR_FILENO), STDERR_FILENO);
  const auto read_all = [file] {
    std::string text;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::pread(file, buffer, sizeof buffer, static_cast<off_t>(text.size()))) > 0)
      text.append(buffer, static_cast<std::size_t>(n));
    return text;
  };
  greenev::install_run_info_signal(SIGUSR1);
  auto napper = greenev::spawn_with({.name = "napper"}, [] { greenev::sleep(10.0); });
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  // Up to 30 s: under TSan, with other tests loading both cores, the dump
  // once came after more than 5 s.
  const std::string expected = "\"napper\": suspended on sleep";
  std::string text;
  for (int i = 0; i < 3000 && !contains(text, expected); ++i) {
    greenev::sleep(0.01);  // the helper thread asks this hub, which must be running
    text = read_all();
  }
  std::fflush(stderr);
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(file);
  napper.kill();
  EXPECT_TRUE(contains(text, expected)) << text;
}

// The tree's shape: each line cut to its drawing and the greenlet's name.
std::vector<std::string> shape(const std::string& tree) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < tree.size()) {
    const std::size_t end = tree.find('\n', start);
    const std::string line = tree.substr(start, end - start);
    lines.push_back(line.substr(0, line.find(" (id ")));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

TEST_F(run_info, greenlet_tree_puts_tasks_under_their_spawner_and_raw_greenlets_under_their_parent) {
  greenev::event never;
  greenev::basic_task inner;
  greenev::basic_task sibling;
  auto outer = greenev::spawn_with({.name = "outer"}, [&] {
    // A raw greenlet whose parent is outer, suspended after switching back.
    greenev::greenlet raw([] { greenev::switch_to_parent(); }, greenev::greenlet_options{.name = "raw"});
    raw.switch_to();
    inner = greenev::spawn_with({.name = "inner"}, [&] { (void)never.wait(); });
    (void)never.wait();
  });
  sibling = greenev::spawn_with({.name = "sibling"}, [&] { (void)never.wait(); });
  greenev::sleep(0.01);  // everything started and waits
  const std::string tree = greenev::format_greenlet_tree();
  EXPECT_EQ(shape(tree), (std::vector<std::string>{
                             "main",
                             " +--- hub",
                             " +--- outer",
                             " |     +--- raw",
                             " |     +--- inner",
                             " +--- sibling",
                         }))
      << tree;
  EXPECT_TRUE(contains(tree, "main (id ")) << tree;
  EXPECT_TRUE(contains(tree, "): running")) << tree;
  EXPECT_TRUE(contains(tree, "): suspended on event; parent hub; spawned by outer at ")) << tree;
  EXPECT_TRUE(contains(tree, "; parent outer\n")) << "a raw greenlet has no spawner: " << tree;
  greenev::killall({outer, inner, sibling});
}

TEST_F(run_info, greenlet_tree_puts_a_task_whose_spawner_died_under_its_parent) {
  greenev::event never;
  greenev::basic_task orphan;
  auto spawner = greenev::spawn_with({.name = "spawner"}, [&] {
    orphan = greenev::spawn_with({.name = "orphan"}, [&] { (void)never.wait(); });
  });
  spawner.join();
  greenev::sleep(0.0);  // the orphan starts
  const std::string tree = greenev::format_greenlet_tree();
  EXPECT_EQ(shape(tree), (std::vector<std::string>{"main", " +--- hub", "       +--- orphan"})) << tree;
  orphan.kill();
}

TEST_F(run_info, greenlet_tree_counts_tasks_not_started_yet) {
  auto later = greenev::spawn_with({.name = "later"}, [] {});
  const std::string tree = greenev::format_greenlet_tree();
  EXPECT_FALSE(contains(tree, "later")) << tree;
  EXPECT_TRUE(contains(tree, "callbacks queued")) << tree;
  later.join();
}

}  // namespace
