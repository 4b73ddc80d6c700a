// Tests for the per-thread runtime (greenev/detail/thread_service.hpp and
// hub::destroy_current()): its written teardown order — services warned,
// greenlets unwound, services destroyed newest first while the hub still
// stands — the same at thread exit and on demand; a fresh runtime after
// destroy_current(); misuse from a spawned greenlet; and a process that
// exits while a greenlet waits, without a timeout, on a job stuck in a
// service's threadpool (the thread resolver's getaddrinfo on a dead
// nameserver) does not hang.
#include <greenev/detail/thread_service.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/task.hpp>
#include <greenev/threadpool.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::detail::thread_service;
using greenev::detail::thread_service_of;
using greenev::testing::since;
using steady = std::chrono::steady_clock;
using thread_service_test = greenev::testing::hub_test;

// What happened, in order, on the thread under test.
thread_local std::vector<std::string> journal;
thread_local const greenev::hub* hub_seen = nullptr;

template <char Name>
struct recorder : thread_service {
  recorder() { journal.push_back(std::string("made ") + Name); }
  void before_unwind() noexcept override { journal.push_back(std::string("warned ") + Name); }
  ~recorder() override {
    // The hub still stands (the same one, not a fresh one).
    journal.push_back(std::string("destroyed ") + Name +
                      (&greenev::hub::current() == hub_seen ? " (hub alive)" : " (hub gone)"));
  }
};

// A greenlet that waits forever and notes when it is unwound.
greenev::task<void> waiting_forever(greenev::event& never) {
  return greenev::spawn([&never] {
    const greenev::detail::scope_exit noted([]() noexcept { journal.emplace_back("unwound"); });
    never.wait();
  });
}

const std::vector<std::string> expected_order = {"made a",
                                                 "made b",
                                                 "warned b",
                                                 "warned a",
                                                 "unwound",
                                                 "destroyed b (hub alive)",
                                                 "destroyed a (hub alive)"};

TEST_F(thread_service_test, destroy_current_tears_down_in_the_written_order) {
  journal.clear();
  hub_seen = &greenev::hub::current();
  (void)thread_service_of<recorder<'a'>>();
  (void)thread_service_of<recorder<'b'>>();
  EXPECT_EQ(&thread_service_of<recorder<'a'>>(), &thread_service_of<recorder<'a'>>()) << "one per thread";
  greenev::event never;
  const auto waiter = waiting_forever(never);
  greenev::sleep(0.0);  // it waits
  greenev::hub::destroy_current();
  EXPECT_EQ(journal, expected_order);
  EXPECT_TRUE(waiter.ready());

  // The next call makes a fresh runtime, with fresh services.
  journal.clear();
  greenev::sleep(0.001);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  (void)thread_service_of<recorder<'a'>>();
  EXPECT_EQ(journal, std::vector<std::string>{"made a"});
  hub_seen = &greenev::hub::current();
  greenev::hub::destroy_current();
  EXPECT_EQ(journal, (std::vector<std::string>{"made a", "warned a", "destroyed a (hub alive)"}));
}

// A service that copies the thread's journal out when it is destroyed: the
// last thing of the runtime that can still look (the oldest service).
std::vector<std::string>* journal_out = nullptr;
struct journal_keeper : thread_service {
  ~journal_keeper() override { *journal_out = journal; }
};

TEST_F(thread_service_test, thread_exit_tears_down_services_after_unwinding_greenlets) {
  std::vector<std::string> seen;
  journal_out = &seen;
  std::thread worker([] {
    // Made before the runtime, so they outlive it (thread_locals die in
    // reverse order of construction).
    journal.clear();
    static thread_local greenev::event never;
    static thread_local greenev::task<void> waiter;
    hub_seen = &greenev::hub::current();
    (void)thread_service_of<journal_keeper>();  // oldest: destroyed last
    (void)thread_service_of<recorder<'a'>>();
    (void)thread_service_of<recorder<'b'>>();
    waiter = waiting_forever(never);
    greenev::sleep(0.0);
  });
  worker.join();
  EXPECT_EQ(seen, expected_order);
}

TEST_F(thread_service_test, destroy_current_from_a_spawned_greenlet_is_an_error_and_changes_nothing) {
  journal.clear();
  (void)thread_service_of<recorder<'a'>>();
  auto t = greenev::spawn([] {
    try {
      greenev::hub::destroy_current();
    } catch (const greenev::greenlet_error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  });
  EXPECT_NE(t.get(5s).find("main greenlet"), std::string::npos) << t.get();
  EXPECT_EQ(journal, std::vector<std::string>{"made a"});
  hub_seen = &greenev::hub::current();
  greenev::hub::destroy_current();
}

// An fd wait unwound at teardown unlinks from the fd-wait table, which the
// runtime keeps until last; a later wait on the same fd starts clean.
TEST_F(thread_service_test, an_fd_wait_unwound_by_destroy_current_leaves_nothing_behind) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto reader = greenev::spawn([fd = fds[0]] { return greenev::wait_read(fd); });
  greenev::sleep(0.0);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  greenev::hub::destroy_current();
  EXPECT_TRUE(reader.ready());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  EXPECT_EQ(greenev::cancel_wait(fds[0]), 0u);
  ASSERT_EQ(::write(fds[1], "x", 1), 1);
  EXPECT_TRUE(greenev::wait_read(fds[0], 5s));
  greenev::close_fd(fds[0]);
  greenev::close_fd(fds[1]);
}

TEST_F(thread_service_test, destroy_current_on_a_thread_without_a_hub_does_nothing) {
  std::thread([] { greenev::hub::destroy_current(); }).join();
}

// A service's threadpool (as the thread resolver's) goes after the thread's
// greenlets were unwound: a job stuck for good, that a greenlet waits for
// with no timeout, is let go instead of joined, and the process exits. In a
// child process; a hang ends it with SIGALRM and fails the test.
struct stuck_pool : thread_service {
  greenev::threadpool pool{1};
};

TEST(thread_service_exit_DeathTest, exit_does_not_wait_for_a_stuck_job_a_greenlet_waits_on) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto start = steady::now();
  EXPECT_EXIT(
      {
        ::alarm(20);
        static int never[2];
        if (::pipe(never) != 0) std::exit(2);
        // A static: destroyed after the main thread's runtime.
        static auto waiter = greenev::spawn([] {
          return thread_service_of<stuck_pool>().pool.apply([] {
            char byte = 0;
            return ::read(never[0], &byte, 1);
          });
        });
        greenev::sleep(0.05);
        std::exit(waiter.ready() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_LT(since(start), 15s);
}

}  // namespace
