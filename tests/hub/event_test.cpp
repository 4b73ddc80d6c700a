// Tests for greenev/event.hpp: event (set, clear, wait with and without a
// timeout, FIFO wake-up, set from the hub) and async_result (value,
// exception, timeouts), and that waiters that leave early (killed, timed out)
// leave nothing behind. Ports the contracts of gevent's test__event.
#include <greenev/event.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::async_result;
using greenev::basic_task;
using greenev::event;
using greenev::spawn;
using greenev::timeout_error;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using event_basics = greenev::testing::hub_test;
using event_waiters = greenev::testing::hub_test;
using async_result_basics = greenev::testing::hub_test;

using greenev::testing::since;

// ---- event -------------------------------------------------------------------------------

TEST_F(event_basics, set_clear_is_set) {
  event e;
  EXPECT_FALSE(e.is_set());
  e.set();
  EXPECT_TRUE(e.is_set());
  e.set();  // idempotent
  EXPECT_TRUE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
}

TEST_F(event_basics, wait_on_a_set_event_returns_true_without_switching) {
  event e;
  e.set();
  bool other_ran = false;
  auto t = spawn([&] { other_ran = true; });
  EXPECT_TRUE(e.wait());
  EXPECT_TRUE(e.wait(0s));
  EXPECT_TRUE(e.wait(1s));
  EXPECT_FALSE(other_ran) << "waiting on a set event must not switch";
  t.join();
}

TEST_F(event_basics, wait_returns_once_another_greenlet_sets_it) {
  event e;
  std::vector<std::string> steps;
  auto setter = spawn([&] {
    steps.push_back("setter runs");
    greenev::sleep(0.01);
    steps.push_back("set");
    e.set();
  });
  const auto start = steady::now();
  EXPECT_TRUE(e.wait());
  steps.push_back("woke");
  EXPECT_GE(since(start), 8ms);
  EXPECT_EQ(steps, (std::vector<std::string>{"setter runs", "set", "woke"}));
  setter.join();
}

TEST_F(event_basics, wait_with_timeout_returns_false_when_it_passes) {
  event e;
  const auto start = steady::now();
  EXPECT_FALSE(e.wait(50ms));
  const auto elapsed = since(start);
  EXPECT_GE(elapsed, 40ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_EQ(e.waiters(), 0u);
  EXPECT_FALSE(e.wait(0.01));  // double seconds
  EXPECT_FALSE(e.wait(0s)) << "a zero timeout polls";
  EXPECT_FALSE(e.wait(-1s)) << "a negative timeout polls";
  EXPECT_EQ(e.waiters(), 0u);
}

TEST_F(event_basics, wait_with_timeout_returns_true_when_set_in_time) {
  event e;
  auto setter = spawn([&] {
    greenev::sleep(0.005);
    e.set();
  });
  const auto start = steady::now();
  EXPECT_TRUE(e.wait(5s));
  EXPECT_LT(since(start), 2s);
  setter.join();
}

// gevent: wait() returns true if the flag was set at any point while waiting,
// even if it was cleared again before the waiter got to run.
TEST_F(event_basics, wait_returns_true_if_set_then_cleared_before_the_waiter_resumed) {
  event e;
  std::vector<int> results;
  auto waiter = spawn([&] { results.push_back(e.wait() ? 1 : 0); });
  auto timed_waiter = spawn([&] { results.push_back(e.wait(5s) ? 1 : 0); });
  greenev::sleep(0.0);
  ASSERT_EQ(e.waiters(), 2u);
  e.set();
  e.clear();
  EXPECT_FALSE(e.is_set());
  greenev::joinall({waiter, timed_waiter}, 5s);
  EXPECT_EQ(results, (std::vector<int>{1, 1}));
}

TEST_F(event_basics, set_from_a_hub_callback_wakes_the_waiter) {
  event e;
  bool set_in_hub = false;
  greenev::hub& h = greenev::hub::current();
  h.run_callback([&] {
    set_in_hub = greenev::greenlet::current() == h.hub_greenlet();
    e.set();
  });
  EXPECT_TRUE(e.wait(5s));
  EXPECT_TRUE(set_in_hub);
}

TEST_F(event_basics, set_from_another_thread_through_run_callback_threadsafe) {
  event e;
  greenev::hub& h = greenev::hub::current();
  std::thread poster([&] { h.run_callback_threadsafe([&] { e.set(); }); });
  EXPECT_TRUE(e.wait(5s));
  poster.join();
}

TEST_F(event_basics, event_can_be_reused_after_clear) {
  event e;
  for (int round = 0; round < 3; ++round) {
    auto setter = spawn([&] {
      greenev::sleep(0.001);
      e.set();
    });
    EXPECT_TRUE(e.wait(5s)) << "round " << round;
    e.clear();
    setter.join();
  }
  EXPECT_FALSE(e.wait(0s));
}

// ---- waiters -----------------------------------------------------------------------------

TEST_F(event_waiters, waiters_wake_in_the_order_they_started_waiting) {
  constexpr int count = 10;
  event e;
  std::vector<int> woke;
  std::vector<basic_task> tasks;
  // Tasks start (and so begin waiting) in spawn order; the labels are
  // shuffled so that the check is about that order, not about the labels.
  std::vector<int> wait_order{3, 7, 0, 9, 1, 8, 2, 6, 4, 5};
  for (int index : wait_order) {
    tasks.push_back(spawn([&, index] {
      if (!e.wait(5s)) return;
      woke.push_back(index);
    }));
  }
  greenev::sleep(0.0);
  ASSERT_EQ(e.waiters(), static_cast<std::size_t>(count));
  e.set();
  EXPECT_EQ(e.waiters(), 0u) << "set() takes every waiter off the list";
  EXPECT_TRUE(woke.empty()) << "set() must not switch";
  greenev::joinall(tasks, 5s);
  EXPECT_EQ(woke, wait_order);
}

TEST_F(event_waiters, killing_a_waiting_task_removes_its_waiter) {
  event e;
  bool woke = false;
  auto waiter = spawn([&] {
    (void)e.wait();
    woke = true;
  });
  auto timed_waiter = spawn([&] {
    (void)e.wait(10s);
    woke = true;
  });
  greenev::sleep(0.0);
  ASSERT_EQ(e.waiters(), 2u);
  waiter.kill();
  EXPECT_EQ(e.waiters(), 1u);
  timed_waiter.kill();
  EXPECT_EQ(e.waiters(), 0u);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u) << "the timed wait's timer was left running";
  e.set();  // nobody left to wake
  greenev::sleep(0.0);
  EXPECT_FALSE(woke);
  EXPECT_TRUE(waiter.killed());
  EXPECT_TRUE(timed_waiter.killed());
}

TEST_F(event_waiters, a_timed_out_waiter_leaves_the_list_and_others_still_wake) {
  event e;
  std::vector<std::string> results;
  auto patient = spawn([&] { results.push_back(e.wait(5s) ? "patient woke" : "patient timed out"); });
  auto hasty = spawn([&] { results.push_back(e.wait(10ms) ? "hasty woke" : "hasty timed out"); });
  greenev::sleep(0.0);
  EXPECT_EQ(e.waiters(), 2u);
  hasty.join();
  EXPECT_EQ(e.waiters(), 1u);
  e.set();
  patient.join();
  EXPECT_EQ(results, (std::vector<std::string>{"hasty timed out", "patient woke"}));
}

TEST_F(event_waiters, wait_in_the_hub_raises_greenlet_error_unless_set) {
  event e;
  std::string message;
  bool set_wait = false;
  event done;
  greenev::hub::current().run_callback([&] {
    try {
      (void)e.wait();
    } catch (const greenev::greenlet_error& error) {
      message = error.what();
    }
    e.set();
    set_wait = e.wait();  // does not block: fine in the hub
    done.set();
  });
  EXPECT_TRUE(done.wait(5s));
  EXPECT_NE(message.find("would block the hub"), std::string::npos) << message;
  EXPECT_TRUE(set_wait);
  EXPECT_EQ(e.waiters(), 0u);
}

// ---- async_result ------------------------------------------------------------------------

TEST_F(async_result_basics, set_then_get_value_and_wait) {
  async_result<int> result;
  EXPECT_FALSE(result.ready());
  EXPECT_FALSE(result.successful());
  EXPECT_FALSE(result.value().has_value());
  EXPECT_FALSE(result.exception());
  EXPECT_FALSE(result.wait(0s));

  auto setter = spawn([&] {
    greenev::sleep(0.005);
    result.set(100);
  });
  EXPECT_EQ(result.get(), 100);
  EXPECT_TRUE(result.ready());
  EXPECT_TRUE(result.successful());
  EXPECT_EQ(result.value(), std::optional<int>(100));
  EXPECT_FALSE(result.exception());
  EXPECT_TRUE(result.wait());
  EXPECT_EQ(result.get(), 100) << "every get() returns the value";
  setter.join();
}

TEST_F(async_result_basics, every_waiter_gets_the_value) {
  async_result<std::string> result;
  std::vector<std::string> got;
  std::vector<basic_task> readers;
  for (int i = 0; i < 3; ++i) readers.push_back(spawn([&] { got.push_back(result.get()); }));
  auto waiter = spawn([&] { got.push_back(result.wait() ? "waited" : "timed out"); });
  greenev::sleep(0.0);
  result.set("value");
  readers.push_back(waiter);
  greenev::joinall(readers, 5s);
  EXPECT_EQ(got, (std::vector<std::string>{"value", "value", "value", "waited"}));
}

TEST_F(async_result_basics, set_exception_is_rethrown_by_get) {
  async_result<int> result;
  auto setter = spawn([&] {
    greenev::sleep(0.001);
    result.set_exception(std::make_exception_ptr(std::runtime_error("failed result")));
  });
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)result.get(); }, "failed result"));
  EXPECT_TRUE(result.ready());
  EXPECT_FALSE(result.successful());
  EXPECT_FALSE(result.value().has_value());
  ASSERT_TRUE(result.exception());
  EXPECT_TRUE(result.wait()) << "wait() reports readiness, not success";
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)result.get(); }, "failed result"));
  setter.join();
}

TEST_F(async_result_basics, set_exception_with_null_throws_greenlet_error) {
  async_result<int> result;
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { result.set_exception(nullptr); }, "null"));
  EXPECT_FALSE(result.ready());
}

TEST_F(async_result_basics, a_later_set_replaces_the_earlier_outcome) {
  async_result<int> result;
  result.set_exception(std::make_exception_ptr(std::runtime_error("first")));
  result.set(2);
  EXPECT_TRUE(result.successful());
  EXPECT_FALSE(result.exception());
  EXPECT_EQ(result.get(), 2);
  result.set_exception(std::make_exception_ptr(std::runtime_error("third")));
  EXPECT_FALSE(result.value().has_value());
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)result.get(); }, "third"));
}

TEST_F(async_result_basics, get_with_timeout_throws_timeout_error_naming_the_result) {
  async_result<int> result;
  const auto start = steady::now();
  try {
    (void)result.get(20ms);
    ADD_FAILURE() << "get returned";
  } catch (const timeout_error& error) {
    EXPECT_EQ(error.source(), static_cast<const void*>(&result));
    EXPECT_EQ(error.after(), std::chrono::nanoseconds(20ms));
  }
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
  EXPECT_FALSE(result.wait(10ms));
  EXPECT_FALSE(result.ready());
}

TEST_F(async_result_basics, set_from_a_hub_callback) {
  async_result<int> result;
  greenev::hub::current().run_callback([&] { result.set(7); });
  EXPECT_EQ(result.get(5s), 7);
}

// A reader killed while waiting leaves; setting the result later touches
// nothing of it (ASan would see a stale waiter on the dead task's stack).
TEST_F(async_result_basics, killing_a_waiting_reader_leaves_nothing_behind) {
  async_result<int> result;
  bool got = false;
  auto reader = spawn([&] {
    (void)result.get();
    got = true;
  });
  auto timed_reader = spawn([&] {
    (void)result.get(10s);
    got = true;
  });
  greenev::sleep(0.0);
  reader.kill();
  timed_reader.kill();
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  result.set(1);
  greenev::sleep(0.0);
  EXPECT_FALSE(got);
  EXPECT_TRUE(reader.killed());
  EXPECT_TRUE(timed_reader.killed());
  EXPECT_EQ(result.get(), 1);
}

}  // namespace
