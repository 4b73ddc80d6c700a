// Tests for greenev/wait.hpp: wait / iwait over tasks, events,
// async_results, semaphores and locks mixed — readiness order, count, timeouts, nothing consumed,
// and no observer left behind when a wait ends early (ASan would see a later
// set() touch a dead node).
#include <greenev/wait.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::async_result;
using greenev::event;
using greenev::spawn;
using greenev::waitable;
using greenev::testing::since;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using wait_any = greenev::testing::hub_test;
using iwait_any = greenev::testing::hub_test;

TEST_F(wait_any, the_first_of_a_task_and_an_event_wins) {
  event stop;
  auto slow = spawn([] { greenev::sleep(5.0); });
  auto setter = spawn([&] {
    greenev::sleep(0.01);
    stop.set();
  });
  const auto ready = greenev::wait({slow, stop}, 5.0, 1);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready.front(), waitable(stop));
  EXPECT_TRUE(stop.is_set()) << "waiting must not consume the event";
  slow.kill();
  setter.get(1.0);
}

TEST_F(wait_any, returns_ready_items_first_then_in_readiness_order) {
  event a;
  event b;
  async_result<int> r;
  b.set();
  auto later = spawn([&] {
    greenev::sleep(0.01);
    r.set(7);
    greenev::sleep(0.01);
    a.set();
  });
  const auto ready = greenev::wait({a, b, r}, 5.0);
  ASSERT_EQ(ready.size(), 3u);
  EXPECT_EQ(ready[0], waitable(b));
  EXPECT_EQ(ready[1], waitable(r));
  EXPECT_EQ(ready[2], waitable(a));
  later.get(1.0);
}

TEST_F(wait_any, a_timeout_returns_what_was_ready_and_leaves_no_observer) {
  event never;
  event soon;
  // Set as soon as the wait has started, so no timer races the wait's timeout.
  auto setter = spawn([&] { soon.set(); });
  const auto start = steady::now();
  const auto ready = greenev::wait({never, soon}, 0.1);
  EXPECT_GE(since(start), 90ms);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready.front(), waitable(soon));
  never.set();  // the wait's observer must be gone
  setter.get(1.0);
}

TEST_F(wait_any, over_a_vector_of_tasks_returns_tasks) {
  // Task i finishes right after task i - 1 (setting an event never switches):
  // 1, 2, 3, the reverse of the order they start in, whatever the timing.
  std::array<greenev::event, 4> finished;
  finished[0].set();
  std::vector<greenev::task<int>> tasks;
  for (int i = 3; i >= 1; --i) {
    tasks.push_back(spawn([i, &finished] {
      (void)finished[static_cast<std::size_t>(i) - 1].wait();
      finished[static_cast<std::size_t>(i)].set();
      return i;
    }));
  }
  const auto ready = greenev::wait(tasks, 5.0, 2);
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0].get(), 1);
  EXPECT_EQ(ready[1].get(), 2);
  greenev::joinall({tasks.begin(), tasks.end()});
}

TEST_F(wait_any, a_killed_waiter_leaves_no_observer) {
  event e;
  async_result<std::string> r;
  auto waiter = spawn([&] { greenev::wait({e, r}); });
  greenev::sleep(0.0);
  waiter.kill();
  EXPECT_TRUE(waiter.ready());
  e.set();  // nobody may be notified now
  r.set("late");
}

TEST_F(wait_any, empty_task_handles_are_refused) {
  greenev::basic_task empty;
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { (void)waitable(empty); }, "empty task handle"));
}

TEST_F(wait_any, a_semaphore_is_ready_once_it_could_be_acquired_and_is_not_acquired) {
  greenev::semaphore s(1);
  EXPECT_EQ(greenev::wait({s}, 0.0).size(), 1u) << "a free semaphore is ready at once";
  EXPECT_EQ(s.value(), 1u) << "wait must not acquire it";
  s.acquire();
  EXPECT_TRUE(greenev::wait({s}, 0.01).empty()) << "a semaphore without a free unit is not ready";
  auto releaser = spawn([&] {
    greenev::sleep(0.01);
    s.release();
  });
  const auto start = steady::now();
  const auto ready = greenev::wait({s}, 5.0);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready.front(), waitable(s));
  EXPECT_LT(since(start), 4s);
  EXPECT_EQ(s.value(), 1u);
  releaser.get(1.0);
}

TEST_F(wait_any, a_unit_handed_to_a_waiting_acquirer_does_not_make_a_semaphore_ready) {
  greenev::bounded_semaphore s(1);
  s.acquire();
  auto acquirer = spawn([&] { return s.acquire(); });
  auto observer = spawn([&] { return greenev::wait({s}, 0.05).size(); });
  greenev::yield();  // both wait now
  s.release();       // handed to the acquirer: still no free unit
  EXPECT_TRUE(acquirer.get(1.0));
  EXPECT_EQ(observer.get(1.0), 0u);
  s.release();
}

TEST_F(iwait_any, locks_are_yielded_as_they_become_free) {
  greenev::lock plain;
  greenev::rlock reentrant;
  plain.lock();
  // Events order the releases: the rlock first, then the lock.
  event release_reentrant;
  event reentrant_released;
  auto holder = spawn([&] {
    {
      std::lock_guard hold(reentrant);
      (void)release_reentrant.wait();
    }
    reentrant_released.set();
  });
  greenev::yield();  // the holder takes the rlock
  ASSERT_TRUE(reentrant.locked());
  std::vector<waitable> order;
  auto unlocker = spawn([&] {
    release_reentrant.set();
    (void)reentrant_released.wait();
    plain.unlock();
  });
  for (greenev::iwait each({plain, reentrant}, 5.0); auto item = each.next();) order.push_back(*item);
  EXPECT_EQ(order, (std::vector<waitable>{reentrant, plain}));
  greenev::rlock mine;
  mine.lock();
  EXPECT_EQ(greenev::wait({mine}, 0.0).size(), 1u) << "an rlock the waiter holds would not make it wait";
  mine.unlock();
  greenev::joinall({holder, unlocker});
}

TEST_F(iwait_any, yields_mixed_items_as_they_become_ready) {
  // The order is set by events, not by sleeps a loaded TSan run can swap:
  // r fails, then t finishes, then e is set.
  event e;
  event t_may_finish;
  async_result<int> r;
  auto t = spawn([&] { (void)t_may_finish.wait(); });
  auto driver = spawn([&] {
    greenev::sleep(0.01);
    r.set_exception(std::make_exception_ptr(std::runtime_error("failed")));
    greenev::sleep(0.01);
    t_may_finish.set();
    t.join();
    e.set();
  });
  std::vector<waitable> order;
  for (greenev::iwait each({waitable(e), waitable(r), waitable(t)}, 5.0); auto item = each.next();) {
    order.push_back(*item);
  }
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], waitable(r)) << "an exception counts as ready";
  EXPECT_EQ(order[1], waitable(t));
  EXPECT_EQ(order[2], waitable(e));
  ASSERT_NE(order[1].task(), nullptr);
  EXPECT_TRUE(order[1].task()->ready());
  driver.get(1.0);
}

TEST_F(iwait_any, stops_at_its_timeout) {
  event never;
  greenev::iwait each(std::vector<waitable>{never}, 0.03);
  const auto start = steady::now();
  EXPECT_FALSE(each.next().has_value());
  EXPECT_GE(since(start), 25ms);
}

// ---- the whole loop: wait() and idle() ----------------------------------------------------

using wait_loop = greenev::testing::hub_test;

TEST_F(wait_loop, wait_returns_once_nothing_is_left_to_run) {
  std::vector<int> finished;
  const auto start = steady::now();
  for (int i = 0; i < 3; ++i) {
    (void)spawn(
        [&](int n) {
          greenev::sleep(0.01 * (n + 1));
          finished.push_back(n);
        },
        i);
  }
  // A chain: a task that spawns another once it has run.
  (void)spawn([&] {
    greenev::sleep(0.02);
    (void)spawn([&] {
      greenev::sleep(0.03);
      finished.push_back(9);
    });
  });
  greenev::wait();  // no loop_exit: it returns
  // Every one ran (their order follows their sleeps, which a loaded machine
  // may start far enough apart to swap).
  std::sort(finished.begin(), finished.end());
  EXPECT_EQ(finished, (std::vector<int>{0, 1, 2, 9}));
  EXPECT_GE(since(start), 45ms);
  EXPECT_LT(since(start), 3s);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(wait_loop, wait_with_nothing_to_do_returns_at_once) {
  const auto start = steady::now();
  greenev::wait();
  greenev::wait();
  EXPECT_LT(since(start), 1s);
}

TEST_F(wait_loop, wait_returns_while_a_greenlet_waits_on_what_no_one_will_set) {
  event never;
  auto stuck = spawn([&] { never.wait(); });
  (void)spawn([] { greenev::sleep(0.01); });
  greenev::wait();
  EXPECT_FALSE(stuck.ready());  // left suspended, as gevent leaves it
  stuck.kill();
  EXPECT_TRUE(stuck.killed());
}

TEST_F(wait_loop, wait_honours_a_timeout_of_the_caller) {
  (void)spawn([] { greenev::sleep(0.01); });
  auto slow = spawn([] { greenev::sleep(10.0); });
  const auto start = steady::now();
  EXPECT_TRUE(throws_with<greenev::timeout_error>(
      [] {
        greenev::timeout deadline(30ms);
        greenev::wait();
      },
      "timed out"));
  EXPECT_LT(since(start), 3s);
  slow.kill();
}

TEST_F(wait_loop, wait_outside_the_main_greenlet_throws_greenlet_error) {
  auto t = spawn([] { greenev::wait(); });
  EXPECT_TRUE(throws_with<greenev::greenlet_error>([&] { t.get(5s); }, "main greenlet"));
}

TEST_F(wait_loop, idle_returns_after_everything_ready_has_run) {
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    (void)spawn(
        [&](int n) {
          order.push_back("task " + std::to_string(n));
          greenev::yield();  // ready again at once: still before idle returns
          order.push_back("again " + std::to_string(n));
        },
        i);
  }
  greenev::idle();
  order.emplace_back("idle");
  EXPECT_EQ(order, (std::vector<std::string>{"task 0", "task 1", "task 2", "again 0", "again 1", "again 2",
                                             "idle"}));
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(wait_loop, idle_does_not_wait_for_timers_and_lets_them_run_later) {
  bool timer_done = false;
  auto sleeper = spawn([&] {
    greenev::sleep(1.0);  // far enough off that no stall of a loaded run reaches it
    timer_done = true;
  });
  const auto start = steady::now();
  greenev::idle();
  EXPECT_FALSE(timer_done) << "idle() waited for the timer";
  EXPECT_LT(since(start), 900ms);
  sleeper.join();
  EXPECT_TRUE(timer_done);
  EXPECT_GE(since(start), 950ms);
}

TEST_F(wait_loop, idle_in_several_greenlets_and_a_kill_while_idle_waiting_leaves_no_watcher) {
  int returned = 0;
  auto a = spawn([&] {
    greenev::idle();
    ++returned;
  });
  auto b = spawn([&] {
    greenev::idle();
    ++returned;
  });
  auto busy = spawn([] {
    for (;;) greenev::yield();  // the loop is never idle while this runs
  });
  greenev::sleep(0.02);
  EXPECT_EQ(returned, 0);
  a.kill();  // killed in idle(): its watcher is stopped
  busy.kill();
  b.join(5s);
  EXPECT_EQ(returned, 1);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(wait_loop, idle_in_the_hub_throws_greenlet_error) {
  bool threw = false;
  greenev::hub::current().run_callback([&] {
    try {
      greenev::idle();
    } catch (const greenev::greenlet_error&) {
      threw = true;
    }
  });
  greenev::yield();
  EXPECT_TRUE(threw);
}

}  // namespace
