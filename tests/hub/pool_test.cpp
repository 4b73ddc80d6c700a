// Tests for greenev/pool.hpp: group membership (spawn, add, discard, removal
// when a task finishes), join (timeout, raise_error), kill (blocking, members
// added while killing, timeout), map (order, failure cleanup), and pool
// limits (spawn waits while full, FIFO hand-over of freed slots, add with a
// timeout, wait_available, size 0). Ports the contracts of gevent's
// test__pool.py (TestPool*, TestJoinEmpty, TestSpawn, TestErrorInHandler).
#include <greenev/pool.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::basic_task;
using greenev::event;
using greenev::group;
using greenev::pool;
using greenev::task;
using steady = std::chrono::steady_clock;

using group_test = greenev::testing::hub_test;
using pool_test = greenev::testing::hub_test;
using map_test = greenev::testing::hub_test;

using greenev::testing::since;

// Lets every queued start, link and wake-up run.
void settle() {
  for (int i = 0; i < 5; ++i) greenev::yield();
}

TEST_F(group_test, spawn_adds_and_finishing_removes) {
  group g;
  event go;
  auto a = g.spawn([&] {
    go.wait();
    return 1;
  });
  auto b = g.spawn(
      [&](int n) {
        go.wait();
        return n;
      },
      2);
  EXPECT_EQ(g.size(), 2u);
  EXPECT_TRUE(g.contains(a));
  EXPECT_TRUE(g.contains(b));
  EXPECT_FALSE(g.full());
  EXPECT_EQ(g.tasks(), (std::vector<basic_task>{a, b}));
  go.set();
  EXPECT_TRUE(g.join(2s));
  EXPECT_TRUE(g.empty());
  EXPECT_FALSE(g.contains(a));
  EXPECT_EQ(a.get() + b.get(), 3);
}

TEST_F(group_test, join_on_empty_group_returns_at_once) {
  group g;
  EXPECT_TRUE(g.join());
  EXPECT_TRUE(g.join(0.0));
}

TEST_F(group_test, join_times_out_while_members_run) {
  group g;
  event never;
  auto t = g.spawn([&] { never.wait(); });
  const auto start = steady::now();
  EXPECT_FALSE(g.join(50ms));
  EXPECT_GE(since(start), 40ms);
  EXPECT_EQ(g.size(), 1u);
  g.kill();
  EXPECT_TRUE(g.empty());
  EXPECT_TRUE(t.killed());
}

TEST_F(group_test, add_and_discard_tasks_spawned_elsewhere) {
  group g;
  event go;
  auto t = greenev::spawn([&] {
    go.wait();
    return 7;
  });
  g.add(t);
  g.add(t);  // again: no effect
  EXPECT_EQ(g.size(), 1u);
  EXPECT_TRUE(g.discard(t));
  EXPECT_FALSE(g.discard(t));
  EXPECT_FALSE(g.contains(t));
  go.set();
  EXPECT_EQ(t.get(1s), 7);  // discarding did not kill it
  EXPECT_TRUE(greenev::testing::throws_with<greenev::greenlet_error>([&] { g.add(basic_task{}); }, "empty"));
}

TEST_F(group_test, a_finished_task_added_leaves_on_the_next_iteration) {
  group g;
  auto t = greenev::spawn([] { return 1; });
  t.join();
  g.add(t);
  EXPECT_TRUE(g.contains(t));
  settle();
  EXPECT_FALSE(g.contains(t));
  EXPECT_TRUE(g.join(0.0));
}

TEST_F(group_test, join_with_raise_error_rethrows_a_members_failure) {
  group g;
  testing::internal::CaptureStderr();
  g.spawn([] { greenev::sleep(0.01); });
  g.spawn([]() -> int { throw std::runtime_error("member failed"); });
  EXPECT_TRUE(greenev::testing::throws_with<std::runtime_error>([&] { g.join({}, true); }, "member failed"));
  const std::string reported = testing::internal::GetCapturedStderr();
  EXPECT_NE(reported.find("failed with std::runtime_error: member failed"), std::string::npos) << reported;
  EXPECT_TRUE(g.empty());
}

TEST_F(group_test, join_without_raise_error_ignores_failures_and_kills_are_not_failures) {
  group g;
  testing::internal::CaptureStderr();
  g.spawn([] { throw std::runtime_error("ignored"); });
  EXPECT_TRUE(g.join());
  (void)testing::internal::GetCapturedStderr();
  event never;
  g.spawn([&] { never.wait(); });
  g.kill({.block = false});
  EXPECT_TRUE(g.join({}, true));  // a kill is not a failure
}

TEST_F(group_test, kill_blocks_until_every_member_died) {
  group g;
  event never;
  int unwound = 0;
  struct on_unwind {
    int& count;
    ~on_unwind() { ++count; }
  };
  std::vector<task<void>> members;
  for (int i = 0; i < 3; ++i) {
    members.push_back(g.spawn([&] {
      on_unwind guard{unwound};
      never.wait();
    }));
  }
  settle();  // all started and waiting
  bool ran = false;
  auto unstarted = g.spawn([&] { ran = true; });
  g.kill();
  EXPECT_TRUE(g.empty());
  EXPECT_EQ(unwound, 3);
  EXPECT_FALSE(ran);  // killed before it started: never runs
  for (const auto& m : members) EXPECT_TRUE(m.killed());
  EXPECT_TRUE(unstarted.killed());
}

TEST_F(group_test, kill_without_block_returns_before_members_died) {
  group g;
  event never;
  auto t = g.spawn([&] { never.wait(); });
  settle();
  g.kill({.block = false});
  EXPECT_FALSE(t.ready());
  EXPECT_TRUE(g.join(1s));
  EXPECT_TRUE(t.killed());
}

TEST_F(group_test, kill_also_kills_members_added_while_killing) {
  group g;
  event never;
  basic_task second;
  struct spawn_on_unwind {
    group& g;
    event& never;
    basic_task& spawned;
    ~spawn_on_unwind() {
      spawned = g.spawn([&never = never] { never.wait(); });
    }
  };
  g.spawn([&] {
    spawn_on_unwind guard{g, never, second};
    never.wait();
  });
  settle();
  g.kill({.timeout = 2s});
  ASSERT_TRUE(second);
  EXPECT_TRUE(second.ready());
  EXPECT_TRUE(second.killed());
  EXPECT_TRUE(g.empty());
}

TEST_F(group_test, kill_with_timeout_returns_while_a_member_still_dies) {
  group g;
  event never;
  event may_finish_dying;
  struct slow_unwind {
    event& may_finish;
    ~slow_unwind() { (void)may_finish.wait(); }  // switches while unwinding
  };
  auto t = g.spawn([&] {
    slow_unwind guard{may_finish_dying};
    never.wait();
  });
  settle();
  const auto start = steady::now();
  g.kill({.timeout = 50ms});
  EXPECT_GE(since(start), 40ms);
  EXPECT_LT(since(start), 5s);
  EXPECT_FALSE(t.ready()) << "still dying: kill() returned at its timeout";
  may_finish_dying.set();
  EXPECT_TRUE(g.join(2s));
  EXPECT_TRUE(t.killed());
}

// kill() and killone() take an exception object and kill_options.
TEST_F(group_test, kill_and_killone_take_an_exception_object) {
  struct stop_work {};
  group g;
  event never;
  auto a = g.spawn([&] { never.wait(); });
  auto b = g.spawn([&] { never.wait(); });
  settle();
  ::testing::internal::CaptureStderr();  // a custom error is reported as a failure
  g.killone(a, stop_work{}, {.block = false});
  EXPECT_FALSE(a.ready()) << "killone({.block = false}) must not wait";
  g.kill(stop_work{});
  (void)::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(a.ready());
  EXPECT_TRUE(b.ready());
  for (const basic_task& t : {a, b}) {
    EXPECT_FALSE(t.killed());
    EXPECT_THROW(std::rethrow_exception(t.exception()), stop_work);
  }
  EXPECT_THROW(g.kill({.error = nullptr}), greenev::greenlet_error);
}

TEST_F(group_test, killone_kills_only_that_member) {
  group g;
  event never;
  auto a = g.spawn([&] { never.wait(); });
  auto b = g.spawn([&] { never.wait(); });
  settle();
  g.killone(a);
  EXPECT_TRUE(a.killed());
  EXPECT_FALSE(b.ready());
  g.kill();
  EXPECT_TRUE(b.killed());
}

// A member already being killed (by kill() or killone()) is not raised into
// again: that would cut its cleanup short. gevent's Group.killone skips the
// greenlets in `dying` as Group.kill does; with `block`, killone still waits
// for it to die.
TEST_F(group_test, killone_does_not_raise_again_into_a_dying_member) {
  group g;
  std::vector<std::string> steps;
  const auto cleans_up_slowly = [&] {
    try {
      greenev::sleep(10.0);
    } catch (const greenev::greenlet_exit&) {
      steps.emplace_back("caught");
      greenev::sleep(0.02);  // cleanup that blocks
      steps.emplace_back("cleaned up");
      throw;
    }
  };
  const std::vector<std::string> expected{"caught", "cleaned up", "killone returned"};

  auto killed_by_group = g.spawn(cleans_up_slowly);
  settle();
  g.kill({.block = false});
  settle();  // the kill landed: its cleanup is under way
  ASSERT_EQ(steps, std::vector<std::string>{"caught"});
  g.killone(killed_by_group);
  steps.emplace_back("killone returned");
  EXPECT_EQ(steps, expected);
  EXPECT_TRUE(killed_by_group.killed());

  steps.clear();
  auto killed_twice = g.spawn(cleans_up_slowly);
  settle();
  g.killone(killed_twice, {.block = false});
  settle();
  ASSERT_EQ(steps, std::vector<std::string>{"caught"});
  g.killone(killed_twice);
  steps.emplace_back("killone returned");
  EXPECT_EQ(steps, expected);
  EXPECT_TRUE(killed_twice.killed());
  EXPECT_TRUE(g.empty());
}

TEST_F(group_test, a_member_killing_its_group_dies_last) {
  group g;
  event never;
  auto other = g.spawn([&] { never.wait(); });
  auto killer = g.spawn([&] {
    greenev::yield();
    g.kill();
  });
  EXPECT_TRUE(g.join(2s));
  EXPECT_TRUE(other.killed());
  EXPECT_TRUE(killer.killed());
}

TEST_F(map_test, results_come_in_input_order) {
  group g;
  const std::vector<int> items{5, 4, 3, 2, 1};
  // Larger items finish first: completion order is the reverse of input order.
  const std::vector<int> squares = g.map(
      [](int n) {
        greenev::sleep(std::chrono::milliseconds(5 * (6 - n)));
        return n * n;
      },
      items);
  EXPECT_EQ(squares, (std::vector<int>{25, 16, 9, 4, 1}));
  EXPECT_TRUE(g.empty());
}

TEST_F(map_test, pool_map_runs_at_most_size_at_once_and_keeps_order) {
  pool p(2);
  int running = 0;
  int most = 0;
  std::vector<std::string> words{"a", "bb", "ccc", "dddd", "eeeee"};
  const std::vector<std::size_t> lengths = p.map(
      [&](const std::string& word) {
        most = std::max(most, ++running);
        greenev::sleep(0.01);
        --running;
        return word.size();
      },
      words);
  EXPECT_EQ(lengths, (std::vector<std::size_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(most, 2);
}

TEST_F(map_test, void_functions_and_empty_ranges) {
  group g;
  int sum = 0;
  g.map([&](int n) { sum += n; }, std::vector<int>{1, 2, 3});
  EXPECT_EQ(sum, 6);
  EXPECT_TRUE(g.map([](int n) { return n; }, std::vector<int>{}).empty());
}

TEST_F(map_test, a_failure_propagates_after_the_other_tasks_were_stopped) {
  pool p(3);
  int unwound = 0;
  int finished = 0;
  struct on_unwind {
    int& count;
    ~on_unwind() { ++count; }
  };
  testing::internal::CaptureStderr();
  EXPECT_TRUE(greenev::testing::throws_with<std::invalid_argument>(
      [&] {
        (void)p.map(
            [&](int n) {
              on_unwind guard{unwound};
              if (n == 1) throw std::invalid_argument("bad item 1");
              greenev::sleep(1.0);
              ++finished;
              return n;
            },
            std::vector<int>{0, 1, 2, 3, 4});
      },
      "bad item 1"));
  (void)testing::internal::GetCapturedStderr();
  // Items 0 and 2 were running and were killed; 3 and 4 never started.
  EXPECT_EQ(unwound, 3);
  EXPECT_EQ(finished, 0);
  settle();
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.free_count(), 3u);
}

TEST_F(pool_test, size_zero_is_an_error) {
  EXPECT_THROW(pool(0), std::invalid_argument);
}

TEST_F(pool_test, spawn_waits_while_full) {
  pool p(2);
  std::vector<std::string> log;
  auto worker = [&](int id, double seconds) {
    log.push_back("start " + std::to_string(id));
    greenev::sleep(seconds);
    log.push_back("end " + std::to_string(id));
  };
  p.spawn(worker, 0, 0.03);
  log.emplace_back("spawned 0");
  p.spawn(worker, 1, 0.3);
  log.emplace_back("spawned 1");
  EXPECT_TRUE(p.full());
  EXPECT_EQ(p.free_count(), 0u);
  const auto start = steady::now();
  p.spawn(worker, 2, 0.0);  // waits until task 0 ended
  log.emplace_back("spawned 2");
  EXPECT_GE(since(start), 20ms);
  EXPECT_LE(p.size(), 2u);
  EXPECT_TRUE(p.join(2s));
  EXPECT_EQ(log, (std::vector<std::string>{"spawned 0", "spawned 1", "start 0", "start 1", "end 0",
                                           "spawned 2", "start 2", "end 2", "end 1"}));
  EXPECT_EQ(p.free_count(), 2u);
  EXPECT_EQ(p.capacity(), 2u);
}

TEST_F(pool_test, freed_slots_go_to_waiters_in_fifo_order) {
  pool p(1);
  event release;
  event gate;
  auto holder = p.spawn([&] { release.wait(); });
  std::vector<int> order;
  std::vector<basic_task> spawners;
  for (int i = 0; i < 3; ++i) {
    spawners.push_back(greenev::spawn([&, i] {
      p.spawn([&order, &gate, i] {
        order.push_back(i);
        gate.wait();
      });
    }));
    settle();  // spawner i is waiting before spawner i+1 starts
  }
  EXPECT_TRUE(p.discard(holder));  // hands the slot to spawner 0 at once
  // No newcomer can take the slot meanwhile: it is spoken for.
  EXPECT_EQ(p.free_count(), 0u);
  EXPECT_TRUE(greenev::testing::throws_with<greenev::pool_full>([&] { p.add(greenev::spawn([] {}), 0.0); },
                                                                "still full"));
  settle();
  EXPECT_EQ(order, (std::vector<int>{0}));
  gate.set();
  EXPECT_EQ(greenev::joinall(spawners, 2s).size(), 3u);
  EXPECT_TRUE(p.join(2s));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.free_count(), 1u);
  release.set();
  holder.join();
}

TEST_F(pool_test, a_waiter_killed_after_it_was_handed_a_slot_passes_it_on) {
  pool p(1);
  event release;
  auto holder = p.spawn([&] { release.wait(); });
  bool a_ran = false;
  bool b_ran = false;
  auto a = greenev::spawn([&] { p.spawn([&] { a_ran = true; }); });
  settle();
  auto b = greenev::spawn([&] { p.spawn([&] { b_ran = true; }); });
  settle();
  // The kill is queued before the wake-up that hands `a` the slot: `a` dies
  // owning a slot it never used.
  a.kill({.block = false});
  EXPECT_TRUE(p.discard(holder));
  EXPECT_TRUE(b.join(2s));
  EXPECT_TRUE(a.killed());
  EXPECT_TRUE(p.join(2s));
  EXPECT_FALSE(a_ran);
  EXPECT_TRUE(b_ran);
  EXPECT_EQ(p.free_count(), 1u);
  release.set();
  holder.join();
}

TEST_F(pool_test, a_waiter_that_times_out_takes_no_slot) {
  pool p(1);
  event release;
  auto holder = p.spawn([&] { release.wait(); });
  bool ran = false;
  auto late = greenev::spawn([&] { ran = true; });
  const auto start = steady::now();
  EXPECT_TRUE(greenev::testing::throws_with<greenev::pool_full>([&] { p.add(late, 30ms); }, "still full"));
  EXPECT_GE(since(start), 20ms);
  EXPECT_FALSE(p.contains(late));
  EXPECT_TRUE(late.join(1s));  // it was not killed, only not added
  EXPECT_TRUE(ran);
  try {
    greenev::timeout deadline(20ms);
    p.spawn([] {});
    ADD_FAILURE() << "spawn on a full pool did not wait";
  } catch (const greenev::timeout_error&) {
  }
  EXPECT_EQ(p.size(), 1u);
  release.set();
  EXPECT_TRUE(p.join(1s));
  EXPECT_EQ(p.free_count(), 1u);
}

TEST_F(pool_test, wait_available_waits_for_a_free_slot_without_taking_it) {
  pool p(2);
  event release_first;
  event release_second;
  p.spawn([&] { release_first.wait(); });
  EXPECT_EQ(p.wait_available(), 1u);  // not full: at once
  p.spawn([&] { release_second.wait(); });
  EXPECT_EQ(p.wait_available(10ms), 0u);
  auto releaser = greenev::spawn([&] {
    greenev::sleep(0.02);
    release_second.set();
  });
  const auto start = steady::now();
  EXPECT_EQ(p.wait_available(5s), 1u);
  EXPECT_GE(since(start), 10ms);
  EXPECT_EQ(p.size(), 1u);  // waiting took no slot
  release_first.set();
  EXPECT_TRUE(p.join(5s));
  EXPECT_EQ(p.wait_available(0.0), 2u);
  releaser.join();
}

TEST_F(pool_test, a_failing_member_frees_its_slot_and_reports) {
  pool p(1);
  testing::internal::CaptureStderr();
  auto failing = p.spawn([]() -> int { throw std::runtime_error("pooled failure"); });
  auto next = p.spawn([] { return 5; });  // waits for the failing one's slot
  const std::string reported = testing::internal::GetCapturedStderr();
  EXPECT_NE(reported.find("failed with std::runtime_error: pooled failure"), std::string::npos) << reported;
  EXPECT_TRUE(
      greenev::testing::throws_with<std::runtime_error>([&] { (void)failing.get(); }, "pooled failure"));
  EXPECT_EQ(next.get(1s), 5);
  EXPECT_TRUE(p.join(1s));
  EXPECT_EQ(p.free_count(), 1u);
}

TEST_F(pool_test, spawn_from_the_hub_on_a_full_pool_is_an_error) {
  pool p(1);
  event release;
  p.spawn([&] { release.wait(); });
  bool refused = false;
  greenev::hub::current().run_callback([&] {
    refused = greenev::testing::throws_with<greenev::greenlet_error>([&] { p.spawn([] {}); }, "hub");
  });
  settle();
  EXPECT_TRUE(refused);
  release.set();
  EXPECT_TRUE(p.join(1s));
}

// A group belongs to the first thread that spawns into it, adds to it, or
// waits on or kills through it (its members run on that thread's hub). From
// another thread each of those throws greenlet_error at once, without
// waiting on that thread's hub or touching the members.
TEST_F(pool_test, operations_from_another_thread_throw_greenlet_error) {
  pool p(1);
  group plain;
  event release;
  auto member = p.spawn([&] { release.wait(); });
  auto plain_member = plain.spawn([&] { release.wait(); });
  auto outsider = greenev::spawn([&] { release.wait(); });
  settle();
  ASSERT_TRUE(p.full());
  const std::vector<int> items{1, 2};
  const std::vector<std::pair<std::string, std::function<void()>>> operations{
      {"spawn on a full pool", [&] { (void)p.spawn([] {}); }},
      {"spawn_with on a full pool", [&] { (void)p.spawn_with({.name = "x"}, [] {}); }},
      {"spawn in a group", [&] { (void)plain.spawn([] {}); }},
      {"add to a full pool", [&] { p.add(outsider, 10ms); }},
      {"add to a group", [&] { plain.add(outsider); }},
      {"join", [&] { (void)p.join(10ms); }},
      {"kill", [&] { p.kill(); }},
      {"kill without block", [&] { plain.kill({.block = false}); }},
      {"killone", [&] { p.killone(member); }},
      {"wait_available", [&] { (void)p.wait_available(10ms); }},
      {"map", [&] { (void)plain.map([](int n) { return n; }, items); }},
  };
  std::vector<std::string> failures;
  testing::internal::CaptureStderr();
  std::thread other([&] {
    for (const auto& [what, operation] : operations) {
      const auto result = greenev::testing::throws_with<greenev::greenlet_error>(operation, "another thread");
      if (!result) failures.push_back(what + ": " + result.message());
    }
  });
  other.join();
  const std::string printed = testing::internal::GetCapturedStderr();
  for (const std::string& failure : failures) ADD_FAILURE() << failure;
  EXPECT_EQ(printed, "");
  // Nothing changed, and both still work on this thread.
  EXPECT_EQ(p.size(), 1u);
  EXPECT_EQ(plain.size(), 1u);
  EXPECT_FALSE(member.ready());
  EXPECT_FALSE(plain_member.ready());
  release.set();
  EXPECT_TRUE(p.join(5s));
  EXPECT_TRUE(plain.join(5s));
  EXPECT_TRUE(outsider.join(5s));
}

// Constructing a group does not bind it: one made here can be handed to a
// worker thread that uses it; this thread then may not.
TEST_F(group_test, a_group_belongs_to_the_first_thread_that_uses_it) {
  pool p(2);
  int results = 0;
  std::thread worker([&] {
    for (int i = 0; i < 3; ++i)
      p.spawn([&] {
        greenev::sleep(0.001);
        ++results;
      });
    p.join();
  });
  worker.join();
  EXPECT_EQ(results, 3);
  EXPECT_TRUE(p.empty());
  EXPECT_TRUE(greenev::testing::throws_with<greenev::greenlet_error>([&] { (void)p.spawn([] {}); },
                                                                     "another thread"));
  EXPECT_EQ(p.free_count(), 2u);
}

// ---- the map family: apply, apply_async, map_async, imap, imap_unordered -----------------

using apply_test = greenev::testing::hub_test;
using greenev::testing::throws_with;
using imap_test = greenev::testing::hub_test;

// Counts the calls running at once; a kill unwinding a call counts too.
struct concurrency {
  int now = 0;
  int most = 0;
  struct scope {
    concurrency& c;
    explicit scope(concurrency& counter) : c(counter) { c.most = std::max(c.most, ++c.now); }
    ~scope() { --c.now; }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;
  };
};

// Silences the failure lines of tasks expected to fail.
struct quiet_reporter {
  greenev::error_reporter previous = greenev::set_error_reporter([](std::string_view) {});
  ~quiet_reporter() { greenev::set_error_reporter(std::move(previous)); }
};

TEST_F(apply_test, apply_runs_in_a_member_and_returns_the_result) {
  pool p(2);
  bool was_member = false;
  const int value = p.apply(
      [&](int n) {
        for (const basic_task& t : p.tasks()) was_member |= t.raw_greenlet() == greenev::greenlet::current();
        greenev::sleep(0.005);
        return n + 1;
      },
      41);
  EXPECT_EQ(value, 42);
  EXPECT_TRUE(was_member);
  p.apply([] {});  // void
  EXPECT_TRUE(p.join(2s));
}

TEST_F(apply_test, apply_rethrows_the_failure) {
  quiet_reporter quiet;
  group g;
  EXPECT_TRUE(throws_with<std::runtime_error>(
      [&] { g.apply([]() -> int { throw std::runtime_error("no"); }); }, "no"));
  settle();
  EXPECT_TRUE(g.empty());
}

TEST_F(apply_test, apply_from_a_member_of_a_full_pool_runs_inline) {
  pool p(1);
  auto outer = p.spawn([&] {
    const auto* self = greenev::greenlet::current().get();
    // The pool is full (this task holds its only slot): a new member could never start.
    return p.apply([self] { return greenev::greenlet::current().get() == self; });
  });
  EXPECT_TRUE(outer.get(5s));
}

TEST_F(apply_test, a_timeout_while_apply_waits_kills_the_member) {
  pool p(1);
  auto blocker = p.spawn([] { greenev::sleep(10.0); });
  bool started = false;
  bool finished = false;
  // Times out while waiting for the slot: nothing was spawned.
  EXPECT_THROW(greenev::with_timeout(20ms, [&] { return p.apply([] { return 1; }); }),
               greenev::timeout_error);
  blocker.kill();
  // Times out while the member runs: it is killed and joined before the error propagates.
  EXPECT_THROW(greenev::with_timeout(20ms,
                                     [&] {
                                       p.apply([&] {
                                         started = true;
                                         greenev::sleep(10.0);
                                         finished = true;
                                       });
                                     }),
               greenev::timeout_error);
  EXPECT_TRUE(started);
  EXPECT_FALSE(finished);
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(p.free_count(), 1u);
}

TEST_F(apply_test, apply_async_on_a_full_pool_does_not_wait_and_respects_the_limit) {
  pool p(2);
  concurrency running;
  std::vector<task<int>> tasks;
  bool caller_switched = false;
  auto witness = greenev::spawn([&] { caller_switched = true; });  // runs once the caller switches
  for (int i = 0; i < 6; ++i) {
    tasks.push_back(p.apply_async(
        [&](int n) {
          const concurrency::scope counted(running);
          greenev::sleep(0.01);
          return n * n;
        },
        i));
  }
  EXPECT_FALSE(caller_switched);  // no wait: the full pool did not block the caller
  EXPECT_TRUE(p.contains(tasks[0]));
  EXPECT_TRUE(p.contains(tasks[1]));
  EXPECT_FALSE(p.contains(tasks[2]));  // a plain task that waits for a slot (as gevent)
  std::vector<int> results;
  for (const auto& t : tasks) results.push_back(t.get(5s));
  EXPECT_EQ(results, (std::vector<int>{0, 1, 4, 9, 16, 25}));
  EXPECT_EQ(running.most, 2);
  EXPECT_TRUE(p.join(2s));
  EXPECT_TRUE(witness.ready());
}

TEST_F(apply_test, apply_async_then_passes_the_value_only_on_success) {
  quiet_reporter quiet;
  group g;
  std::vector<int> values;
  int void_calls = 0;
  auto ok = g.apply_async_then([&](int v) { values.push_back(v); }, [](int n) { return n * 10; }, 4);
  auto bad =
      g.apply_async_then([&](int v) { values.push_back(v); }, []() -> int { throw std::runtime_error("x"); });
  auto killed = g.apply_async_then([&](int v) { values.push_back(v); },
                                   [] {
                                     greenev::sleep(10.0);
                                     return 1;
                                   });
  auto nothing = g.apply_async_then([&] { ++void_calls; }, [] {});
  greenev::yield();
  killed.kill();
  EXPECT_EQ(ok.get(2s), 40);
  EXPECT_THROW(bad.get(2s), std::runtime_error);
  nothing.get(2s);
  settle();
  EXPECT_EQ(values, (std::vector<int>{40}));
  EXPECT_EQ(void_calls, 1);
}

TEST_F(apply_test, map_async_returns_a_task_of_the_ordered_results) {
  pool p(3);
  concurrency running;
  std::vector<int> items{5, 1, 4, 2, 3, 6, 7};
  auto mapped = p.map_async(
      [&](int n) {
        const concurrency::scope counted(running);
        greenev::sleep(0.002 * n);
        return n * 2;
      },
      items);
  items.clear();  // the task has its own copy
  EXPECT_FALSE(p.contains(mapped));
  EXPECT_EQ(mapped.get(5s), (std::vector<int>{10, 2, 8, 4, 6, 12, 14}));
  EXPECT_EQ(running.most, 3);
  auto nothing = p.map_async([](int) {}, std::vector<int>{1, 2});
  nothing.get(2s);
}

TEST_F(apply_test, map_async_failure_and_kill_stop_the_members) {
  quiet_reporter quiet;
  pool p(2);
  int unwound = 0;
  auto failing = p.map_async(
      [&](int n) {
        const greenev::detail::scope_exit count([&]() noexcept { ++unwound; });
        if (n == 2) throw std::runtime_error("item 2");
        greenev::sleep(10.0);
        return n;
      },
      std::vector<int>{1, 2, 3, 4});
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)failing.get(5s); }, "item 2"));
  EXPECT_EQ(unwound, 2);  // items 1 and 2; 3 and 4 never started
  EXPECT_TRUE(p.empty());

  auto slow = p.map_async(
      [](int n) {
        greenev::sleep(10.0);
        return n;
      },
      std::vector<int>{1, 2, 3});
  greenev::sleep(0.01);
  EXPECT_EQ(p.size(), 2u);
  slow.kill();
  EXPECT_TRUE(slow.killed());
  EXPECT_TRUE(p.empty());
}

TEST_F(imap_test, results_come_in_input_order_with_at_most_max_in_flight_read_ahead) {
  pool p(3);
  concurrency running;
  int read = 0;
  auto inputs = std::views::iota(0, 12) | std::views::transform([&](int i) {
                  ++read;
                  return i;
                });
  std::vector<int> results;
  for (int& r : p.imap(
           [&](int n) {
             const concurrency::scope counted(running);
             greenev::sleep(0.001 * ((n * 7) % 5));  // finishes out of order
             return n * n;
           },
           inputs, {.max_in_flight = 4})) {
    if (results.empty()) {
      EXPECT_LE(read, 4);  // lazy: only what is in flight was read
    }
    results.push_back(r);
    EXPECT_LE(read, static_cast<int>(results.size()) + 4);
  }
  std::vector<int> expected;
  for (int i = 0; i < 12; ++i) expected.push_back(i * i);
  EXPECT_EQ(results, expected);
  EXPECT_EQ(running.most, 3);  // the pool's limit, though 4 may be in flight
  EXPECT_EQ(read, 12);
  EXPECT_TRUE(p.empty());
}

TEST_F(imap_test, the_default_bound_is_the_pool_size_and_a_group_reads_everything) {
  pool p(2);
  int read = 0;
  auto counted_inputs = [&read](int n) {
    return std::views::iota(0, n) | std::views::transform([&read](int i) {
             ++read;
             return i;
           });
  };
  auto in_pool = p.imap([](int n) { return n; }, counted_inputs(10));
  auto it = in_pool.begin();
  EXPECT_EQ(*it, 0);
  EXPECT_EQ(read, 2);
  ++it;
  EXPECT_EQ(*it, 1);
  EXPECT_EQ(read, 3);

  group g;
  read = 0;
  std::vector<std::string> results;
  for (const std::string& r : g.imap([](int n) { return std::to_string(n); }, counted_inputs(5))) {
    EXPECT_EQ(read, 5);
    results.push_back(r);
  }
  EXPECT_EQ(results, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
  // Empty input: begin() is end().
  auto none = g.imap([](int n) { return n; }, std::vector<int>{});
  EXPECT_TRUE(none.begin() == none.end());
}

TEST_F(imap_test, a_failure_surfaces_at_its_item_after_the_earlier_results_and_stops_the_rest) {
  quiet_reporter quiet;
  pool p(3);
  std::vector<int> started;
  int unwound = 0;
  std::vector<int> results;
  bool caught = false;
  auto mapped = p.imap(
      [&](int n) {
        started.push_back(n);
        const greenev::detail::scope_exit count([&]() noexcept { ++unwound; });
        if (n == 3) {
          greenev::sleep(0.001);
          throw std::runtime_error("item 3");
        }
        greenev::sleep(n < 3 ? 0.02 : 10.0);  // 0..2 finish after 3 failed; 4.. never do
        return n;
      },
      std::views::iota(0, 100), {.max_in_flight = 6});
  try {
    for (int r : mapped) results.push_back(r);
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "item 3";
  }
  EXPECT_TRUE(caught);
  EXPECT_EQ(results, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(p.empty());  // the calls in flight were killed and joined
  // 0..3 ran; 4 and 5 were in flight (max_in_flight) and ran if the pool had
  // room for them before 3 failed, which depends on timing; 6.. were never read.
  std::sort(started.begin(), started.end());
  ASSERT_GE(started.size(), 4u);
  EXPECT_EQ(std::vector<int>(started.begin(), started.begin() + 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_LE(started.back(), 5);
  EXPECT_EQ(unwound, static_cast<int>(started.size()));  // every call that ran was unwound
  EXPECT_TRUE(mapped.begin() == mapped.end());           // the iteration is over
}

TEST_F(imap_test, unordered_results_come_as_they_finish) {
  pool p(4);
  concurrency running;
  std::vector<int> results;
  // Item n finishes right after item n - 1 (setting an event never switches):
  // 1, 2, 3, 4, the reverse of the order they start in, whatever the timing.
  std::array<greenev::event, 5> finished;
  finished[0].set();
  for (int r : p.imap_unordered(
           [&](int n) {
             const concurrency::scope counted(running);
             (void)finished[static_cast<std::size_t>(n) - 1].wait();
             finished[static_cast<std::size_t>(n)].set();
             return n;
           },
           std::vector<int>{4, 3, 2, 1})) {
    results.push_back(r);
  }
  EXPECT_EQ(results, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(running.most, 4);
}

TEST_F(imap_test, unordered_failure_surfaces_at_the_next_step) {
  quiet_reporter quiet;
  group g;
  std::vector<int> results;
  int unwound = 0;
  greenev::event first_done;
  EXPECT_TRUE(throws_with<std::logic_error>(
      [&] {
        for (int r : g.imap_unordered(
                 [&](int n) {
                   const greenev::detail::scope_exit count([&]() noexcept { ++unwound; });
                   if (n == 1) {
                     first_done.set();  // never switches: item 1 finishes first
                     return n;
                   }
                   if (n == 2) {
                     (void)first_done.wait();
                     throw std::logic_error("item 2");
                   }
                   greenev::sleep(10.0);
                   return n;
                 },
                 std::vector<int>{5, 4, 3, 2, 1})) {
          results.push_back(r);
        }
      },
      "item 2"));
  EXPECT_EQ(results, (std::vector<int>{1}));
  EXPECT_EQ(unwound, 5);
  EXPECT_TRUE(g.empty());
}

TEST_F(imap_test, breaking_out_early_kills_the_calls_in_flight) {
  pool p(3);
  int unwound = 0;
  int finished = 0;
  {
    for (int r : p.imap(
             [&](int n) {
               const greenev::detail::scope_exit count([&]() noexcept { ++unwound; });
               greenev::sleep(n == 0 ? 0.001 : 10.0);
               ++finished;
               return n;
             },
             std::views::iota(0, 1000))) {
      EXPECT_EQ(r, 0);
      break;
    }
  }
  // Killed without waiting: they finish in the next hub iteration.
  EXPECT_TRUE(p.join(2s));
  EXPECT_EQ(finished, 1);
  EXPECT_EQ(unwound, 3);
}

TEST_F(imap_test, a_timeout_of_the_consumer_cleans_up) {
  pool p(2);
  int unwound = 0;
  std::vector<int> results;
  EXPECT_THROW(greenev::with_timeout(50ms,
                                     [&] {
                                       for (int r : p.imap(
                                                [&](int n) {
                                                  const greenev::detail::scope_exit count(
                                                      [&]() noexcept { ++unwound; });
                                                  greenev::sleep(n == 0 ? 0.001 : 10.0);
                                                  return n;
                                                },
                                                std::vector<int>{0, 1, 2, 3})) {
                                         results.push_back(r);
                                       }
                                     }),
               greenev::timeout_error);
  EXPECT_EQ(results, (std::vector<int>{0}));
  EXPECT_TRUE(p.join(2s));
  EXPECT_EQ(unwound, 3);  // 0 finished; 1 and 2 were killed; 3 never started
}

TEST_F(imap_test, the_consumer_killed_while_waiting_cleans_up) {
  pool p(2);
  int unwound = 0;
  auto consumer = greenev::spawn([&] {
    for (int r : p.imap_unordered(
             [&](int n) {
               const greenev::detail::scope_exit count([&]() noexcept { ++unwound; });
               greenev::sleep(10.0);
               return n;
             },
             std::vector<int>{0, 1, 2})) {
      (void)r;
    }
  });
  greenev::sleep(0.01);
  EXPECT_EQ(p.size(), 2u);
  consumer.kill();
  EXPECT_TRUE(consumer.killed());
  EXPECT_TRUE(p.join(2s));
  EXPECT_EQ(unwound, 2);
}

}  // namespace
