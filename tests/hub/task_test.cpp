// Tests for greenev/task.hpp: spawn/join/get, the state of a task through its
// life, kill (before start, while waiting, while running; greenlet_exit or a
// custom exception; blocking or not), links, joinall/killall, failure
// reporting and names. Ports the contracts of gevent's test__greenlet
// (TestBasic, TestKill*, TestLink, TestStuff), test__joinall and test__issue330.
#include <greenev/task.hpp>
#include <greenev/wait.hpp>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <ostream>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::basic_task;
using greenev::event;
using greenev::greenlet_error;
using greenev::greenlet_exit;
using greenev::spawn;
using greenev::task;
using greenev::task_killed;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using task_lifecycle = greenev::testing::hub_test;
using task_spawn = greenev::testing::hub_test;
using task_links = greenev::testing::hub_test;
using task_join = greenev::testing::hub_test;
using task_failure = greenev::testing::hub_test;

using greenev::testing::since;

// The custom exception the kill tests use.
struct custom_error : std::runtime_error {
  custom_error() : std::runtime_error("custom kill") {}
};

// What an exception_ptr holds, for messages: its what(), or a description.
std::string describe(const std::exception_ptr& error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (const greenlet_exit&) {
    return "greenlet_exit";
  } catch (...) {
    return "unknown exception";
  }
}

template <class Exception>
bool holds(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Exception&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Counts "needle" in "text".
std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// ---- a task's state through its life (gevent TestBasic) ---------------------------------

TEST_F(task_lifecycle, state_of_a_task_that_returns) {
  event gate;
  std::vector<basic_task> linked;
  auto t = spawn([&] {
    (void)gate.wait();
    return 5;
  });
  t.link([&](const basic_task& done) { linked.push_back(done); });

  EXPECT_TRUE(t.started());  // gevent: true from start() on, while scheduled
  EXPECT_FALSE(t.ready());
  EXPECT_FALSE(t.successful());
  EXPECT_FALSE(t.value().has_value());
  EXPECT_FALSE(t.exception());

  greenev::sleep(0.0);  // started; now waiting for the gate
  EXPECT_TRUE(t.started());
  EXPECT_FALSE(t.ready());
  EXPECT_FALSE(t.successful());
  EXPECT_FALSE(t.value().has_value());
  EXPECT_TRUE(linked.empty());

  gate.set();
  EXPECT_TRUE(t.join(5s));
  EXPECT_TRUE(t.ready());
  EXPECT_TRUE(t.successful());
  EXPECT_FALSE(t.killed());
  EXPECT_EQ(t.value(), std::optional<int>(5));
  EXPECT_FALSE(t.exception()) << describe(t.exception());
  EXPECT_EQ(t.get(), 5);
  greenev::sleep(0.0);  // links run in the hub
  ASSERT_EQ(linked.size(), 1u);
  EXPECT_TRUE(linked[0] == t);
}

// gevent: `started` is true while the greenlet is scheduled or running and
// false again once it is dead ("assertFalse(g.started) # changed"); the
// header says "Started and not finished".
TEST_F(task_lifecycle, started_is_false_once_the_task_finished) {
  auto t = spawn([] {
    greenev::sleep(0.001);
    return 1;
  });
  greenev::sleep(0.0);
  EXPECT_TRUE(t.started());
  t.join();
  EXPECT_TRUE(t.ready());
  EXPECT_FALSE(t.started());
}

// gevent's `started` is bool(greenlet): a start is pending or it runs, and it
// has not finished. So it is true as soon as spawn() or spawn_later() returns
// (test__greenlet's "assertTrue(g.started) # changed" right after start()),
// and false for a task killed before it started.
TEST_F(task_lifecycle, started_is_true_from_spawn_until_it_finishes) {
  auto t = spawn([] { return 1; });
  EXPECT_TRUE(t.started());
  EXPECT_FALSE(t.ready());
  EXPECT_EQ(t.get(), 1);
  EXPECT_FALSE(t.started());

  auto later = greenev::spawn_later(10s, [] { return 2; });
  EXPECT_TRUE(later.started());
  greenev::sleep(0.0);
  EXPECT_TRUE(later.started()) << "still waiting for its delay";
  later.kill();
  EXPECT_TRUE(later.ready());
  EXPECT_FALSE(later.started()) << "killed before it started";

  auto unstarted = spawn([] { return 3; });
  unstarted.kill();
  EXPECT_TRUE(unstarted.killed());
  EXPECT_FALSE(unstarted.started());
}

TEST_F(task_lifecycle, state_of_a_task_that_fails) {
  event gate;
  auto t = spawn([&]() -> int {
    (void)gate.wait();
    throw std::runtime_error("test_error_exit");
  });
  greenev::sleep(0.0);
  EXPECT_TRUE(t.started());
  EXPECT_FALSE(t.ready());

  ::testing::internal::CaptureStderr();
  gate.set();
  EXPECT_TRUE(t.join(5s));
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(t.ready());
  EXPECT_FALSE(t.successful());
  EXPECT_FALSE(t.killed());
  EXPECT_FALSE(t.value().has_value());
  ASSERT_TRUE(t.exception());
  EXPECT_TRUE(holds<std::runtime_error>(t.exception()));
  EXPECT_EQ(describe(t.exception()), "test_error_exit");
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)t.get(); }, "test_error_exit"));
  // get() rethrows every time.
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)t.get(); }, "test_error_exit"));
}

TEST_F(task_lifecycle, empty_handle_throws_greenlet_error) {
  task<int> empty;
  EXPECT_FALSE(empty);
  EXPECT_TRUE(throws_with<greenlet_error>([&] { (void)empty.ready(); }, "empty task handle"));
  EXPECT_TRUE(throws_with<greenlet_error>([&] { (void)empty.join(); }, "empty task handle"));
  EXPECT_TRUE(throws_with<greenlet_error>([&] { (void)empty.get(); }, "empty task handle"));
  EXPECT_TRUE(throws_with<greenlet_error>([&] { empty.kill(); }, "empty task handle"));
}

// ---- spawn ---------------------------------------------------------------------------------

TEST_F(task_spawn, spawn_only_schedules_the_task) {
  bool ran = false;
  auto t = spawn([&] { ran = true; });
  EXPECT_FALSE(ran) << "spawn must not switch";
  greenev::sleep(0.0);
  EXPECT_TRUE(ran);
  EXPECT_TRUE(t.ready());
}

TEST_F(task_spawn, arguments_are_decay_copied) {
  std::string text = "original";
  int number = 1;
  const char literal[] = "array";
  auto t = spawn(
      [](const std::string& s, int n, const char* c, const std::unique_ptr<int>& owned) {
        return s + "/" + std::to_string(n) + "/" + c + "/" + std::to_string(*owned);
      },
      text, number, literal, std::make_unique<int>(9));
  text = "changed";  // after spawn, before the task runs: the task has its own copies
  number = 2;
  EXPECT_EQ(t.get(), "original/1/array/9");

  // Arguments taken by reference in the function still refer to the copies.
  int counter = 0;
  auto by_ref = spawn([](int& n) { return ++n; }, counter);
  EXPECT_EQ(by_ref.get(), 1);
  EXPECT_EQ(counter, 0);
  // std::ref passes a reference on purpose.
  auto with_ref = spawn([](int& n) { return ++n; }, std::ref(counter));
  EXPECT_EQ(with_ref.get(), 1);
  EXPECT_EQ(counter, 1);
}

TEST_F(task_spawn, void_function) {
  int calls = 0;
  task<void> t = spawn([&] { ++calls; });
  t.get();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(t.ready());
  EXPECT_TRUE(t.successful());
  EXPECT_FALSE(t.exception());
}

TEST_F(task_spawn, spawn_later_starts_after_the_delay) {
  const auto start = steady::now();
  std::chrono::milliseconds started_after{-1};
  auto t = greenev::spawn_later(50ms, [&] {
    started_after = since(start);
    return 3;
  });
  greenev::sleep(0.0);
  EXPECT_TRUE(t.started());  // scheduled, waiting for its delay
  EXPECT_FALSE(t.ready());
  EXPECT_EQ(t.get(), 3);
  EXPECT_GE(started_after, 25ms);
  EXPECT_LT(started_after, 2s);

  // double seconds too
  const auto again = steady::now();
  auto u = greenev::spawn_later(0.03, [&] { return since(again); });
  const auto took = u.get();
  EXPECT_GE(took, 15ms);
  EXPECT_LT(took, 2s);
}

TEST_F(task_spawn, killing_a_task_spawned_later_stops_its_timer) {
  bool ran = false;
  auto t = greenev::spawn_later(10s, [&] { ran = true; });
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  t.kill();
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  greenev::sleep(0.01);
  EXPECT_FALSE(ran);
}

TEST_F(task_spawn, get_with_timeout_throws_timeout_error_naming_the_task) {
  auto t = spawn([] { greenev::sleep(10.0); });
  const auto start = steady::now();
  try {
    t.get(20ms);
    ADD_FAILURE() << "get(20ms) returned";
  } catch (const greenev::timeout_error& error) {
    EXPECT_EQ(error.source(), static_cast<const void*>(t.state()));
  }
  EXPECT_GE(since(start), 15ms);
  EXPECT_FALSE(t.ready());
  t.kill();
}

TEST_F(task_spawn, named_tasks) {
  auto worker = greenev::spawn_with({.name = "worker"}, [] { return 1; });
  EXPECT_EQ(worker.name(), "worker");
  EXPECT_EQ(worker.raw_greenlet().name(), "worker");
  auto a = spawn([] {});
  auto b = spawn([] {});
  EXPECT_FALSE(a.name().empty());
  EXPECT_NE(a.name(), b.name());
  greenev::joinall({worker, a, b});
  EXPECT_EQ(worker.name(), "worker");
}

// A task nobody holds a handle to keeps running until it is done.
TEST_F(task_spawn, task_whose_handles_are_dropped_runs_to_completion) {
  event done;
  bool finished = false;
  {
    auto t = spawn([&] {
      greenev::sleep(0.01);
      finished = true;
      done.set();
    });
    greenev::sleep(0.0);  // started
  }
  spawn([&] {
    // never started when its only handle goes: it still runs
    (void)done.wait();
  });
  EXPECT_TRUE(done.wait(5s));
  EXPECT_TRUE(finished);
  greenev::sleep(0.0);
}

// ---- kill: gevent's TestKill matrix -------------------------------------------------------

enum class kill_when { before_start, while_waiting, while_running };

struct kill_case {
  bool block;
  kill_when when;
  bool custom;  // custom_error instead of greenlet_exit
};

// For gtest's messages (instead of a byte dump).
void PrintTo(const kill_case& c, std::ostream* out) {
  *out << "{block=" << c.block << ", when=" << static_cast<int>(c.when) << ", custom=" << c.custom << "}";
}

class task_kill : public greenev::testing::hub_test, public ::testing::WithParamInterface<kill_case> {};

std::string kill_case_name(const ::testing::TestParamInfo<kill_case>& info) {
  const kill_case& c = info.param;
  std::string name = c.when == kill_when::before_start    ? "before_start"
                     : c.when == kill_when::while_waiting ? "while_waiting"
                                                          : "self_while_running";
  name += c.block ? "_block" : "_nonblock";
  name += c.custom ? "_custom_error" : "_greenlet_exit";
  return name;
}

TEST_P(task_kill, kill) {
  const kill_case c = GetParam();
  const std::exception_ptr error =
      c.custom ? std::make_exception_ptr(custom_error{}) : std::make_exception_ptr(greenlet_exit{});
  bool ran = false;
  bool reached_end = false;
  bool kill_threw_in_task = false;
  std::vector<basic_task> linked;
  basic_task self;
  auto t = spawn([&] {
    ran = true;
    if (c.when == kill_when::while_running) {
      try {
        self.kill({.error = error, .block = c.block});
      } catch (...) {
        kill_threw_in_task = true;
        throw;
      }
    } else {
      greenev::sleep(10.0);
    }
    reached_end = true;
  });
  self = t;
  t.link([&](const basic_task& done) { linked.push_back(done); });

  ::testing::internal::CaptureStderr();  // custom errors are reported as failures
  switch (c.when) {
    case kill_when::before_start:
      t.kill({.error = error, .block = c.block});
      EXPECT_TRUE(t.ready()) << "a task killed before it started is finished at once";
      break;
    case kill_when::while_waiting:
      greenev::sleep(0.0);
      ASSERT_TRUE(t.started());
      t.kill({.error = error, .block = c.block});
      if (c.block) {
        EXPECT_TRUE(t.ready()) << "kill(block) returns once the task finished";
      }
      break;
    case kill_when::while_running:
      break;
  }
  EXPECT_TRUE(t.join(5s));
  greenev::sleep(0.01);  // spin the loop: it must not run now, and links fire
  (void)::testing::internal::GetCapturedStderr();

  EXPECT_EQ(ran, c.when != kill_when::before_start) << "a task killed before it started never runs";
  EXPECT_FALSE(reached_end);
  if (c.when == kill_when::while_running) {
    EXPECT_TRUE(kill_threw_in_task) << "killing yourself throws at once";
  }
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(t.successful(), !c.custom);
  EXPECT_EQ(t.killed(), !c.custom);
  ASSERT_TRUE(t.exception());
  if (c.custom) {
    EXPECT_TRUE(holds<custom_error>(t.exception())) << describe(t.exception());
    EXPECT_TRUE(throws_with<custom_error>([&] { t.get(); }, "custom kill"));
  } else {
    EXPECT_TRUE(holds<greenlet_exit>(t.exception())) << describe(t.exception());
    EXPECT_TRUE(throws_with<task_killed>([&] { t.get(); }, "killed"));
  }
  ASSERT_EQ(linked.size(), 1u) << "links fire exactly once, also for a task killed before it started";
  EXPECT_TRUE(linked[0] == t);

  // Killing again does not hurt.
  t.kill({.error = error, .block = c.block});
  greenev::sleep(0.0);
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(t.successful(), !c.custom);
  EXPECT_EQ(linked.size(), 1u);
}

std::vector<kill_case> all_kill_cases() {
  std::vector<kill_case> cases;
  for (bool block : {true, false}) {
    for (kill_when when : {kill_when::before_start, kill_when::while_waiting, kill_when::while_running}) {
      for (bool custom : {false, true}) cases.push_back({block, when, custom});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(matrix, task_kill, ::testing::ValuesIn(all_kill_cases()), kill_case_name);

// kill_options instead of positional booleans, and an exception object
// instead of an exception_ptr.
TEST_F(task_spawn, kill_takes_options_and_an_exception_object) {
  auto waiting = [] { greenev::sleep(10.0); };
  auto quiet = spawn(waiting);
  greenev::sleep(0.0);
  quiet.kill({.block = false});
  EXPECT_FALSE(quiet.ready()) << "kill({.block = false}) must not wait";
  EXPECT_TRUE(quiet.join(5s));
  EXPECT_TRUE(quiet.killed());

  ::testing::internal::CaptureStderr();  // custom errors are reported as failures
  auto custom = spawn(waiting);
  greenev::sleep(0.0);
  custom.kill(custom_error{}, {.block = false});
  EXPECT_FALSE(custom.ready());
  EXPECT_TRUE(custom.join(5s));
  EXPECT_TRUE(holds<custom_error>(custom.exception()));
  auto blocking = spawn(waiting);
  greenev::sleep(0.0);
  blocking.kill(custom_error{});  // blocks by default
  EXPECT_TRUE(blocking.ready());
  auto by_pointer = spawn(waiting);
  greenev::sleep(0.0);
  by_pointer.kill({.error = std::make_exception_ptr(custom_error{}), .timeout = 5s});
  EXPECT_TRUE(by_pointer.ready());
  EXPECT_TRUE(holds<custom_error>(by_pointer.exception()));
  (void)::testing::internal::GetCapturedStderr();

  auto untouched = spawn(waiting);
  EXPECT_TRUE(throws_with<greenlet_error>([&] { untouched.kill({.error = nullptr}); }, "null"));
  EXPECT_TRUE(
      throws_with<greenlet_error>([&] { greenev::killall({untouched}, {.error = nullptr}); }, "null"));
  EXPECT_FALSE(untouched.ready());
  untouched.kill();
}

// A task's greenlet is switched to through the const reference raw_greenlet()
// returns, without copying the handle.
TEST_F(task_spawn, raw_greenlet_can_be_switched_to_without_a_copy) {
  static_assert(
      std::is_same_v<decltype(std::declval<basic_task&>().raw_greenlet()), const greenev::greenlet&>);
  task<int> t;
  t = spawn([&]() -> int {
    // A raw child that switches straight back to the task's greenlet.
    greenev::greenlet child([&] { (void)t.raw_greenlet().switch_to(std::any(5)); });
    return std::any_cast<int>(child.switch_to());
  });
  EXPECT_EQ(&t.raw_greenlet(), &t.raw_greenlet());
  EXPECT_EQ(t.get(5s), 5);
}

// A task waiting in a try block that catches the kill still ends when the
// handler returns; kill(block) waits for the handler (which may block).
TEST_F(task_spawn, kill_with_block_waits_for_the_task_to_handle_the_kill) {
  std::vector<std::string> steps;
  auto t = spawn([&] {
    try {
      greenev::sleep(10.0);
    } catch (const greenlet_exit&) {
      steps.push_back("caught");
      greenev::sleep(0.01);  // cleanup that blocks
      steps.push_back("cleaned up");
      throw;
    }
  });
  greenev::sleep(0.0);
  t.kill();
  steps.push_back("kill returned");
  EXPECT_EQ(steps, (std::vector<std::string>{"caught", "cleaned up", "kill returned"}));
  EXPECT_TRUE(t.killed());
}

TEST_F(task_spawn, kill_with_timeout_returns_when_the_task_does_not_die) {
  event release;
  auto t = spawn([&] {
    try {
      greenev::sleep(10.0);
    } catch (const greenlet_exit&) {
      (void)release.wait(5s);  // ignores the kill for a while
      throw;
    }
  });
  greenev::sleep(0.0);
  const auto start = steady::now();
  t.kill({.timeout = 20ms});
  EXPECT_GE(since(start), 15ms);
  EXPECT_FALSE(t.ready());
  release.set();
  EXPECT_TRUE(t.join(5s));
  EXPECT_TRUE(t.killed());
}

// Killing a task while it waits in any blocking primitive cleans up: the
// waiter leaves the primitive, its timer stops, and completing the primitive
// afterwards does not resume the dead task (ASan would see a stale waiter on
// its stack).
struct wait_target {
  event flag;
  greenev::async_result<int> result;
  event release;     // lets `target` return
  task<int> target;  // a task that returns once `release` is set
};

struct waiting_call {
  const char* name;
  void (*wait)(wait_target& target);
};

void PrintTo(const waiting_call& call, std::ostream* out) {
  *out << call.name;
}

std::vector<waiting_call> waiting_calls() {
  return {
      {"event_wait", [](wait_target& w) { (void)w.flag.wait(); }},
      {"event_wait_with_timeout", [](wait_target& w) { (void)w.flag.wait(10s); }},
      {"event_wait_in_a_timeout",
       [](wait_target& w) {
         greenev::timeout deadline(10s);
         (void)w.flag.wait();
       }},
      {"async_result_get", [](wait_target& w) { (void)w.result.get(); }},
      {"async_result_get_with_timeout", [](wait_target& w) { (void)w.result.get(10s); }},
      {"task_join", [](wait_target& w) { (void)w.target.join(); }},
      {"task_get_with_timeout", [](wait_target& w) { (void)w.target.get(10s); }},
      {"joinall", [](wait_target& w) { (void)greenev::joinall({w.target}); }},
      {"sleep", [](wait_target&) { greenev::sleep(10.0); }},
  };
}

class task_kill_while_waiting : public greenev::testing::hub_test,
                                public ::testing::WithParamInterface<waiting_call> {};

TEST_P(task_kill_while_waiting, cleans_up) {
  wait_target w;
  w.target = spawn([&w] {
    (void)w.release.wait();
    return 1;
  });
  bool resumed = false;
  auto victim = spawn([&] {
    GetParam().wait(w);
    resumed = true;
  });
  greenev::sleep(0.0);
  greenev::sleep(0.0);
  ASSERT_TRUE(victim.started());
  ASSERT_FALSE(victim.ready());
  victim.kill();
  EXPECT_TRUE(victim.ready());
  EXPECT_TRUE(victim.killed());
  EXPECT_EQ(w.flag.waiters(), 0u);
  // Complete everything the victim could have waited for.
  w.flag.set();
  w.result.set(1);
  w.release.set();
  EXPECT_EQ(w.target.get(5s), 1);
  greenev::sleep(0.0);
  greenev::sleep(0.001);
  EXPECT_FALSE(resumed);
  EXPECT_TRUE(victim.killed());
}

std::string waiting_call_name(const ::testing::TestParamInfo<waiting_call>& param_info) {
  return param_info.param.name;
}

INSTANTIATE_TEST_SUITE_P(primitives, task_kill_while_waiting, ::testing::ValuesIn(waiting_calls()),
                         waiting_call_name);

// ---- links --------------------------------------------------------------------------------

TEST_F(task_links, links_fire_in_the_order_they_were_added) {
  constexpr int count = 1000;
  std::vector<int> order;
  auto t = spawn([] { greenev::sleep(0.001); });
  for (int i = 0; i < count; ++i) t.link([&order, i](const basic_task&) { order.push_back(i); });
  t.join();
  greenev::sleep(0.0);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) ASSERT_EQ(order[static_cast<std::size_t>(i)], i) << "at " << i;
}

// gevent's join() waits through a link of its own, appended after those
// already there: when a join that had to wait returns, every link added
// before it has run. Likewise get(), kill(block), joinall() and killall().
TEST_F(task_links, a_wait_for_a_task_returns_after_the_links_added_before_it) {
  std::vector<std::string> order;
  const auto run_and_link = [&](const std::string& name) {
    auto t = spawn([] {
      greenev::sleep(0.001);
      return 1;
    });
    t.link([&order, name](const basic_task&) { order.push_back(name + " link"); });
    return t;
  };
  auto joined = run_and_link("join");
  EXPECT_TRUE(joined.join());
  order.push_back("join returned");
  auto got = run_and_link("get");
  EXPECT_EQ(got.get(5s), 1);
  order.push_back("get returned");
  auto killed = run_and_link("kill");
  greenev::sleep(0.0);  // started: the kill is raised in it
  killed.kill();
  order.push_back("kill returned");
  auto all = run_and_link("joinall");
  EXPECT_EQ(greenev::joinall({all}).size(), 1u);
  order.push_back("joinall returned");
  auto doomed = run_and_link("killall");
  greenev::sleep(0.0);
  greenev::killall({doomed});
  order.push_back("killall returned");
  EXPECT_EQ(order, (std::vector<std::string>{"join link", "join returned", "get link", "get returned",
                                             "kill link", "kill returned", "joinall link", "joinall returned",
                                             "killall link", "killall returned"}));
}

// A join waiting on a task keeps its place among the links: links added
// after it started waiting may still be pending when it returns, and several
// joiners all wake.
TEST_F(task_links, joiners_wake_in_their_place_among_the_links) {
  std::vector<std::string> order;
  auto t = spawn([] { greenev::sleep(0.01); });
  t.link([&](const basic_task&) { order.push_back("first link"); });
  auto early = spawn([&] {
    t.join();
    order.push_back("early joiner");
  });
  greenev::sleep(0.0);  // early joins now, before the second link
  t.link([&](const basic_task&) { order.push_back("second link"); });
  EXPECT_TRUE(t.join(5s));
  order.push_back("late joiner");
  EXPECT_TRUE(early.join(5s));
  for (int i = 0; i < 3; ++i) greenev::sleep(0.0);  // nothing pending refers to `order` any more
  const auto position = [&](const char* what) {
    return std::find(order.begin(), order.end(), what) - order.begin();
  };
  EXPECT_EQ(order.size(), 4u);
  EXPECT_EQ(position("first link"), 0);
  // The late joiner joined after the second link was added: that ran first.
  EXPECT_LT(position("second link"), position("late joiner"));
  EXPECT_LT(position("first link"), position("early joiner"));
}

TEST_F(task_links, links_added_after_completion_fire_in_the_next_hub_iteration) {
  auto t = spawn([] { return 25; });
  t.join();
  for (int round = 0; round < 3; ++round) {
    int got = 0;
    t.link([&](const basic_task& done) { got = done == t ? t.value().value_or(-1) : -2; });
    EXPECT_EQ(got, 0) << "link must not call the callback at once";
    greenev::sleep(0.0);
    EXPECT_EQ(got, 25);
  }
}

TEST_F(task_links, unlink_removes_a_link) {
  std::vector<std::string> fired;
  auto t = spawn([] { greenev::sleep(0.001); });
  const auto a = t.link([&](const basic_task&) { fired.push_back("a"); });
  const auto b = t.link([&](const basic_task&) { fired.push_back("b"); });
  EXPECT_NE(a, b);
  EXPECT_TRUE(t.unlink(a));
  EXPECT_FALSE(t.unlink(a)) << "unlinking twice";
  t.join();
  greenev::sleep(0.0);
  EXPECT_EQ(fired, (std::vector<std::string>{"b"}));
  EXPECT_FALSE(t.unlink(b)) << "a link that fired is gone";
}

// gevent test_multiple_listeners_error_unlink: a link removed by an earlier
// link while the links are being fired does not fire.
TEST_F(task_links, unlink_during_notification_prevents_the_later_link) {
  std::vector<std::string> fired;
  auto t = spawn([] { return 5; });
  std::uint64_t second = 0;
  t.link([&](const basic_task& done) {
    fired.push_back("first");
    EXPECT_TRUE(done.unlink(second));
  });
  second = t.link([&](const basic_task&) { fired.push_back("second"); });
  t.link([&](const basic_task&) { fired.push_back("third"); });
  t.join();
  greenev::sleep(0.0);
  EXPECT_EQ(fired, (std::vector<std::string>{"first", "third"}));
}

TEST_F(task_links, exception_from_a_link_is_reported_and_later_links_still_fire) {
  std::vector<int> results;
  auto t = greenev::spawn_with({.name = "linked"}, [] { return 5; });
  t.link([&](const basic_task&) {
    results.push_back(10);
    throw std::runtime_error("listener1");
  });
  t.link([&](const basic_task&) {
    results.push_back(20);
    throw std::runtime_error("listener2");
  });
  t.link([&](const basic_task&) { results.push_back(30); });
  ::testing::internal::CaptureStderr();
  t.join();
  greenev::sleep(0.0);
  greenev::sleep(0.001);  // the hub keeps going
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(results, (std::vector<int>{10, 20, 30}));
  EXPECT_NE(output.find("std::runtime_error: listener1"), std::string::npos) << output;
  EXPECT_NE(output.find("std::runtime_error: listener2"), std::string::npos) << output;
  EXPECT_NE(output.find("linked"), std::string::npos) << output;
}

// ---- join, joinall, killall ---------------------------------------------------------------

TEST_F(task_join, join_with_timeout_returns_false_and_leaves_no_watcher) {
  auto t = spawn([] { greenev::sleep(10.0); });
  greenev::sleep(0.0);
  const std::size_t watchers = greenev::hub::current().active_watchers();  // the task's sleep
  const auto start = steady::now();
  EXPECT_FALSE(t.join(20ms));
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
  EXPECT_EQ(greenev::hub::current().active_watchers(), watchers);
  EXPECT_FALSE(t.ready());
  EXPECT_FALSE(t.join(0ms)) << "a zero timeout only polls";
  t.kill();
  EXPECT_TRUE(t.join(0ms));
}

TEST_F(task_join, a_task_joining_itself_gets_greenlet_error) {
  basic_task self;
  std::string message;
  auto t = spawn([&] {
    try {
      self.join();
    } catch (const greenlet_error& error) {
      message = error.what();
    }
  });
  self = t;
  t.join();
  EXPECT_NE(message.find("cannot join itself"), std::string::npos) << message;
  self = basic_task();
}

TEST_F(task_join, joinall_with_timeout_returns_the_finished_ones) {
  auto fast = spawn([] { return 1; });
  auto slow = spawn([] { greenev::sleep(10.0); });
  const auto start = steady::now();
  const auto done = greenev::joinall({fast, slow}, 50ms);
  const auto elapsed = since(start);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == fast);
  EXPECT_GE(elapsed, 40ms);
  EXPECT_LT(elapsed, 2s);
  EXPECT_FALSE(slow.ready());
  slow.kill();
}

TEST_F(task_join, joinall_returns_tasks_in_completion_order) {
  // `late` waits for `early` (setting an event never switches): the order
  // does not depend on two sleeps a loaded machine may start far apart.
  event early_done;
  auto late = spawn([&] { (void)early_done.wait(); });
  auto early = spawn([&] {
    greenev::sleep(0.005);
    early_done.set();
  });
  auto already = spawn([] {});
  already.join();
  const auto done = greenev::joinall({late, early, already});
  ASSERT_EQ(done.size(), 3u);
  EXPECT_TRUE(done[0] == already);
  EXPECT_TRUE(done[1] == early);
  EXPECT_TRUE(done[2] == late);
}

// gevent test_joinall_exception_order: the first failure in completion order
// is raised, as soon as it happens.
TEST_F(task_join, joinall_raise_error_raises_the_first_failure_to_happen) {
  // `first` cannot fail before joinall has raised: it waits for an event set
  // only afterwards (a 100 ms sleep could fire together with the 10 ms one on
  // a loaded machine).
  event release_first;
  auto first = spawn([&] {
    (void)release_first.wait();
    throw std::runtime_error("first");
  });
  auto second = spawn([] {
    greenev::sleep(0.01);
    throw std::runtime_error("second");
  });
  auto fine = spawn([] { greenev::sleep(0.005); });
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(throws_with<std::runtime_error>(
      [&] {
        greenev::joinall({first, second, fine}, {}, true);
      },
      "second"));
  EXPECT_FALSE(first.ready()) << "joinall should raise when 'second' fails, not wait for 'first'";
  // Already finished failures raise at once too.
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { greenev::joinall({second}, {}, true); }, "second"));
  release_first.set();
  greenev::joinall({first, second, fine});
  (void)::testing::internal::GetCapturedStderr();
  // All finished before the call: the first failure in the given order.
  EXPECT_TRUE(throws_with<std::runtime_error>(
      [&] {
        greenev::joinall({fine, first, second}, {}, true);
      },
      "first"));
}

TEST_F(task_join, joinall_raise_error_without_failures_returns_everything) {
  auto x = spawn([] { return 1; });
  auto y = spawn([] { return 2; });
  auto z = spawn([] { return 3; });
  EXPECT_EQ(greenev::joinall({x, y, z}, {}, true).size(), 3u);
  EXPECT_EQ(x.get() + y.get() + z.get(), 6);
}

TEST_F(task_join, joinall_with_count_returns_after_that_many) {
  auto one = spawn([] { greenev::sleep(0.005); });
  auto two = spawn([] { greenev::sleep(0.01); });
  auto slow = spawn([] { greenev::sleep(10.0); });
  const auto done = greenev::joinall({slow, one, two}, {}, false, 2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_TRUE(done[0] == one);
  EXPECT_TRUE(done[1] == two);
  EXPECT_FALSE(slow.ready());
  slow.kill();
}

// gevent's joinall(count=n) returns n tasks (it collects iwait's first n),
// also when more than n finish in the same hub iteration or already had.
TEST_F(task_join, joinall_with_count_returns_exactly_count_tasks) {
  auto a = spawn([] {});
  auto b = spawn([] {});
  auto c = spawn([] {});
  EXPECT_EQ(greenev::joinall({a, b, c}, {}, false, 2).size(), 2u) << "finishing in the same iteration";
  EXPECT_TRUE(a.ready() && b.ready() && c.ready());
  EXPECT_EQ(greenev::joinall({a, b, c}, {}, false, 2).size(), 2u) << "already finished";
}

// gevent test_joinall_count_raise_error.
TEST_F(task_join, joinall_count_ignores_failures_without_raise_error) {
  auto sleeper = spawn([] {
    for (;;) greenev::sleep(0.1);
  });
  ::testing::internal::CaptureStderr();
  auto raiser = spawn([] { throw std::runtime_error("count"); });
  const auto done = greenev::joinall({sleeper, raiser}, {}, false, 1);
  (void)::testing::internal::GetCapturedStderr();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == raiser);
  EXPECT_TRUE(raiser.ready());
  EXPECT_FALSE(sleeper.ready());
  sleeper.kill();
  EXPECT_TRUE(sleeper.ready());
}

// gevent test__joinall: the same task twice in the list.
TEST_F(task_join, joinall_with_a_task_listed_twice) {
  auto a = spawn([] {});
  auto b = spawn([] {});
  const auto done = greenev::joinall({a, b, a}, 5s);
  EXPECT_EQ(done.size(), 3u);
  EXPECT_TRUE(a.ready() && b.ready());
}

TEST_F(task_join, killall_kills_every_task) {
  int ran = 0;
  int reached_end = 0;
  std::vector<basic_task> tasks;
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(spawn([&] {
      ++ran;
      greenev::sleep(10.0);
      ++reached_end;
    }));
  }
  greenev::sleep(0.0);
  tasks.push_back(spawn([&] { ++ran; }));  // not started yet
  greenev::killall(tasks);
  for (const basic_task& t : tasks) {
    EXPECT_TRUE(t.ready());
    EXPECT_TRUE(t.killed());
    EXPECT_TRUE(t.successful());
  }
  greenev::sleep(0.01);
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(reached_end, 0);
}

// gevent.killall(block=True, timeout) raises Timeout when tasks outlive it.
TEST_F(task_join, killall_raises_timeout_error_when_a_task_outlives_the_timeout) {
  event release;
  auto stubborn = spawn([&] {
    try {
      greenev::sleep(10.0);
    } catch (const greenlet_exit&) {
      (void)release.wait(5s);  // ignores the kill for a while
      throw;
    }
  });
  auto quick = spawn([] { greenev::sleep(10.0); });
  std::vector<basic_task> tasks{stubborn, quick};
  greenev::sleep(0.0);
  const auto start = steady::now();
  try {
    greenev::killall(tasks, {.timeout = 20ms});
    ADD_FAILURE() << "killall returned while a task still ran";
  } catch (const greenev::timeout_error& error) {
    EXPECT_EQ(error.after(), std::chrono::nanoseconds(20ms));
  }
  EXPECT_GE(since(start), 15ms);
  EXPECT_TRUE(quick.killed());
  EXPECT_FALSE(stubborn.ready());
  release.set();
  EXPECT_TRUE(stubborn.join(5s));

  // Tasks that all die in time: no exception.
  std::vector<basic_task> more{spawn([] { greenev::sleep(10.0); }), spawn([] { greenev::sleep(10.0); })};
  greenev::sleep(0.0);
  EXPECT_NO_THROW(greenev::killall(more, {.timeout = 5s}));
  for (const basic_task& t : more) EXPECT_TRUE(t.killed());
}

TEST_F(task_join, killall_without_block_and_with_a_custom_error) {
  std::vector<basic_task> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(spawn([] { greenev::sleep(10.0); }));
  greenev::sleep(0.0);
  ::testing::internal::CaptureStderr();
  greenev::killall(tasks, custom_error{}, {.block = false});
  EXPECT_FALSE(tasks[0].ready()) << "killall(block=false) does not switch";
  EXPECT_EQ(greenev::joinall(tasks, 5s).size(), 3u);
  (void)::testing::internal::GetCapturedStderr();
  for (const basic_task& t : tasks) {
    EXPECT_FALSE(t.successful());
    EXPECT_TRUE(holds<custom_error>(t.exception()));
  }
}

// ---- failures -----------------------------------------------------------------------------

TEST_F(task_failure, uncaught_exception_is_printed_once_and_stored) {
  ::testing::internal::CaptureStderr();
  auto t = greenev::spawn_with({.name = "worker"}, []() -> int { throw std::runtime_error("boom"); });
  t.join();
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)t.get(); }, "boom"));
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)t.get(); }, "boom"));
  (void)greenev::joinall({t});
  greenev::sleep(0.0);
  greenev::sleep(0.001);
  const std::string output = ::testing::internal::GetCapturedStderr();
  const std::regex line(
      R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z worker failed with std::runtime_error: boom\n)");
  EXPECT_TRUE(std::regex_search(output, line)) << output;
  EXPECT_EQ(occurrences(output, "failed with"), 1u) << output;
  EXPECT_EQ(occurrences(output, "boom"), 1u) << output;
}

TEST_F(task_failure, a_kill_is_not_a_failure_and_is_not_printed) {
  ::testing::internal::CaptureStderr();
  auto t = spawn([] { greenev::sleep(10.0); });
  greenev::sleep(0.0);
  t.kill();
  greenev::sleep(0.0);
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(output, "");
  EXPECT_TRUE(t.successful());
}

TEST_F(task_failure, failure_of_a_non_standard_exception_names_its_type) {
  ::testing::internal::CaptureStderr();
  auto t = greenev::spawn_with({.name = "thrower"}, [] { throw 42; });
  t.join();
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(output.find("thrower failed with int"), std::string::npos) << output;
  EXPECT_TRUE(holds<int>(t.exception()));
  EXPECT_FALSE(t.successful());
}

// ---- threads ------------------------------------------------------------------------------

using task_threads = greenev::testing::hub_test;

// A task and its handles belong to the thread that spawned it. Used from
// another thread, every operation throws greenlet_error at once, as
// greenlet::switch_to does: nothing waits on that thread's hub, nothing is
// raised into the task, nothing is printed.
TEST_F(task_threads, every_operation_from_another_thread_throws_greenlet_error) {
  event never;
  auto finished = spawn([] { return 7; });
  ASSERT_EQ(finished.get(), 7);
  auto waiting = spawn([&] {
    (void)never.wait();
    return 0;
  });
  greenev::sleep(0.0);
  ASSERT_TRUE(waiting.started());
  const std::vector<basic_task> both{finished, waiting};
  const std::vector<std::pair<std::string, std::function<void()>>> operations{
      {"kill a finished task", [&] { finished.kill(); }},
      {"kill a waiting task", [&] { waiting.kill(); }},
      {"kill without block", [&] { waiting.kill({.block = false}); }},
      {"join a finished task", [&] { (void)finished.join(); }},
      {"join a waiting task", [&] { (void)waiting.join(10ms); }},
      {"get a finished task", [&] { (void)finished.get(); }},
      {"get a finished task with a timeout", [&] { (void)finished.get(1s); }},
      {"get a waiting task", [&] { (void)waiting.get(10ms); }},
      {"link", [&] { (void)finished.link([](const basic_task&) {}); }},
      {"unlink", [&] { (void)finished.unlink(1); }},
      {"ready", [&] { (void)finished.ready(); }},
      {"successful", [&] { (void)finished.successful(); }},
      {"started", [&] { (void)waiting.started(); }},
      {"exception", [&] { (void)finished.exception(); }},
      {"killed", [&] { (void)finished.killed(); }},
      {"value", [&] { (void)finished.value(); }},
      {"name", [&] { (void)waiting.name(); }},
      {"raw_greenlet", [&] { (void)waiting.raw_greenlet(); }},
      {"joinall", [&] { (void)greenev::joinall(both, 10ms); }},
      {"killall", [&] { greenev::killall(both); }},
      {"wait", [&] { (void)greenev::wait(both, 10ms); }},
  };
  std::vector<std::string> failures;
  ::testing::internal::CaptureStderr();
  std::thread other([&] {
    for (const auto& [what, operation] : operations) {
      const auto result = greenev::testing::throws_with<greenlet_error>(operation, "another thread");
      if (!result) failures.push_back(what + ": " + result.message());
    }
  });
  other.join();
  const std::string printed = ::testing::internal::GetCapturedStderr();
  for (const std::string& failure : failures) ADD_FAILURE() << failure;
  EXPECT_EQ(printed, "");
  // Untouched, and still usable on its own thread.
  EXPECT_TRUE(waiting.started());
  EXPECT_FALSE(waiting.ready());
  waiting.kill();
  EXPECT_TRUE(waiting.killed());
  EXPECT_EQ(finished.get(), 7);
}

}  // namespace

namespace {

using task_iwait = greenev::testing::hub_test;

TEST_F(task_iwait, yields_tasks_in_completion_order) {
  // Task 1 finishes first, then task 2, then task 0: each waits for the one
  // before it (setting an event never switches), not for sleeps a loaded
  // machine may start far enough apart to swap.
  event one_done;
  event two_done;
  auto last = greenev::spawn([&] { (void)two_done.wait(); });
  auto first = greenev::spawn([&] {
    greenev::sleep(0.01);
    one_done.set();
  });
  auto second = greenev::spawn([&] {
    (void)one_done.wait();
    two_done.set();
  });
  std::vector<greenev::basic_task> tasks{last, first, second};
  std::vector<std::size_t> order;
  for (greenev::iwait each(tasks); auto t = each.next();) {
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      if (*t == tasks[i]) order.push_back(i);
    }
  }
  EXPECT_EQ(order, (std::vector<std::size_t>{1, 2, 0}));
}

TEST_F(task_iwait, stops_at_its_timeout_and_leaves_no_link) {
  auto slow = greenev::spawn([] { greenev::sleep(5.0); });
  auto quick = greenev::spawn([] {});
  std::vector<greenev::basic_task> tasks{slow, quick};
  std::size_t seen = 0;
  {
    greenev::iwait each(tasks, 0.05);
    while (auto t = each.next()) {
      EXPECT_TRUE(*t == quick);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 1u);
  EXPECT_FALSE(slow.ready());
  slow.kill();
}

}  // namespace

// A spawned task's failure line goes through the error reporter (stderr only
// by default), as one line without its newline.
TEST(task_failure_report, a_failed_task_is_reported_through_the_error_reporter) {
  std::vector<std::string> lines;
  greenev::error_reporter previous =
      greenev::set_error_reporter([&](std::string_view line) { lines.emplace_back(line); });
  auto t = greenev::spawn_with({.name = "reported"}, [] { throw std::runtime_error("boom"); });
  (void)t.join();
  greenev::set_error_reporter(std::move(previous));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(" reported failed with std::runtime_error: boom"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
}

// ---- unstarted tasks (make_task, start, start_later) and typed links ---------------------

namespace {

using task_unstarted = greenev::testing::hub_test;
using task_typed_links = greenev::testing::hub_test;

TEST_F(task_unstarted, make_task_does_not_run_until_start) {
  bool ran = false;
  auto t = greenev::make_task(
      [&](int n) {
        ran = true;
        return n * 2;
      },
      21);
  for (int i = 0; i < 5; ++i) greenev::yield();
  EXPECT_FALSE(ran);
  EXPECT_FALSE(t.started());
  EXPECT_FALSE(t.ready());
  EXPECT_FALSE(t.raw_greenlet().started());  // no stack yet
  t.start();
  EXPECT_TRUE(t.started());
  t.start();  // a second start does nothing
  EXPECT_EQ(t.get(5s), 42);
  EXPECT_TRUE(ran);
  EXPECT_FALSE(t.started());
  t.start();  // nor does a start after it finished
  greenev::yield();
  EXPECT_TRUE(t.successful());
}

TEST_F(task_unstarted, join_of_an_unstarted_task_waits_for_its_start) {
  auto t = greenev::make_task([] { return 7; });
  EXPECT_FALSE(t.join(0.02));
  auto starter = spawn([&] {
    greenev::sleep(0.01);
    t.start();
  });
  EXPECT_EQ(t.get(5s), 7);
  starter.join();
}

TEST_F(task_unstarted, killing_an_unstarted_task_finishes_it_without_running) {
  bool ran = false;
  bool linked = false;
  auto t = greenev::make_task([&] { ran = true; });
  t.link([&](const basic_task& done) { linked = done.killed(); });
  t.kill();
  EXPECT_TRUE(t.ready());
  EXPECT_TRUE(t.killed());
  EXPECT_FALSE(t.started());
  t.start();  // dead: never runs
  for (int i = 0; i < 3; ++i) greenev::yield();
  EXPECT_FALSE(ran);
  EXPECT_TRUE(linked);
  EXPECT_THROW(t.get(), task_killed);
}

TEST_F(task_unstarted, dropping_an_unstarted_task_frees_it) {
  std::weak_ptr<int> watch;
  {
    auto payload = std::make_shared<int>(1);
    watch = payload;
    auto t = greenev::make_task([payload] { return *payload; });
  }
  EXPECT_TRUE(watch.expired());
}

TEST_F(task_unstarted, start_later_starts_after_the_delay_and_a_kill_before_cancels_it) {
  const auto start = steady::now();
  auto t = greenev::make_task([] { return steady::now(); });
  t.start_later(0.05);
  EXPECT_TRUE(t.started());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);  // its timer
  const auto ran_at = t.get(5s);
  EXPECT_GE(ran_at - start, 45ms);

  bool ran = false;
  auto never = greenev::make_task([&] { ran = true; });
  never.start_later(10.0);
  never.kill();
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);  // the timer is gone
  EXPECT_TRUE(never.ready());
  greenev::yield();
  EXPECT_FALSE(ran);
}

TEST_F(task_typed_links, a_link_receives_the_typed_task) {
  int seen = 0;
  auto t = spawn([] { return 5; });
  t.link([&](const task<int>& done) { seen = done.get(); });
  t.join();
  greenev::yield();
  EXPECT_EQ(seen, 5);
  // A callback taking a basic_task, and a generic lambda, still work.
  int basic_calls = 0;
  int generic_value = 0;
  t.link([&](const basic_task&) { ++basic_calls; });
  t.link([&](const auto& done) { generic_value = done.get(); });
  t.rawlink(std::function<void(const basic_task&)>([&](const basic_task&) { ++basic_calls; }));
  for (int i = 0; i < 2; ++i) greenev::yield();
  EXPECT_EQ(basic_calls, 2);
  EXPECT_EQ(generic_value, 5);
  EXPECT_THROW(t.link(std::function<void(const task<int>&)>()), std::invalid_argument);
}

TEST_F(task_typed_links, link_value_runs_only_on_success_and_link_exception_only_on_failure) {
  greenev::error_reporter previous = greenev::set_error_reporter([](std::string_view) {});
  const greenev::detail::scope_exit restore(
      [&]() noexcept { greenev::set_error_reporter(std::move(previous)); });
  std::vector<std::string> calls;
  auto ok = greenev::make_task([] { return 1; });
  auto bad = greenev::make_task([]() -> int { throw std::runtime_error("bad"); });
  ok.link_value([&](const task<int>& done) { calls.push_back("value " + std::to_string(done.get())); });
  ok.link_exception([&](const task<int>&) { calls.emplace_back("ok failed?"); });
  bad.link_value([&](const task<int>&) { calls.emplace_back("bad succeeded?"); });
  bad.link_exception([&](const task<int>& done) {
    try {
      (void)done.get();
    } catch (const std::runtime_error& e) {
      calls.push_back(std::string("exception ") + e.what());
    }
  });
  // The basic_task forms, and their ids work with unlink().
  const basic_task untyped = bad;
  const auto id = untyped.link_exception([&](const basic_task&) { calls.emplace_back("unlinked"); });
  EXPECT_TRUE(untyped.unlink(id));
  untyped.link_exception([&](const basic_task&) { calls.emplace_back("basic exception"); });
  ok.start();
  bad.start();
  (void)greenev::joinall({ok, bad});
  for (int i = 0; i < 3; ++i) greenev::yield();
  EXPECT_EQ(calls, (std::vector<std::string>{"value 1", "exception bad", "basic exception"}));
}

TEST_F(task_typed_links, a_killed_task_counts_as_a_value_as_in_gevent) {
  int values = 0;
  int exceptions = 0;
  auto t = spawn([] { greenev::sleep(10.0); });
  t.link_value([&](const basic_task& done) { values += done.killed() ? 1 : 100; });
  t.link_exception([&](const basic_task&) { ++exceptions; });
  greenev::yield();
  t.kill();
  for (int i = 0; i < 3; ++i) greenev::yield();
  EXPECT_EQ(values, 1);
  EXPECT_EQ(exceptions, 0);
}

}  // namespace
