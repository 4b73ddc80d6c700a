// Tests for greenev/wait.hpp: wait / iwait over tasks, events and
// async_results mixed — readiness order, count, timeouts, nothing consumed,
// and no observer left behind when a wait ends early (ASan would see a later
// set() touch a dead node).
#include <greenev/wait.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

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
  auto setter = spawn([&] {
    greenev::sleep(0.01);
    soon.set();
  });
  const auto start = steady::now();
  const auto ready = greenev::wait({never, soon}, 0.1);
  EXPECT_GE(since(start), 90ms);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready.front(), waitable(soon));
  never.set();  // the wait's observer must be gone
  setter.get(1.0);
}

TEST_F(wait_any, over_a_vector_of_tasks_returns_tasks) {
  std::vector<greenev::task<int>> tasks;
  for (int i = 3; i >= 1; --i) {
    tasks.push_back(spawn([i] {
      greenev::sleep(0.01 * i);
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

TEST_F(iwait_any, yields_mixed_items_as_they_become_ready) {
  event e;
  async_result<int> r;
  auto t = spawn([] { greenev::sleep(0.02); });
  auto driver = spawn([&] {
    greenev::sleep(0.01);
    r.set_exception(std::make_exception_ptr(std::runtime_error("failed")));
    greenev::sleep(0.02);
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

}  // namespace
