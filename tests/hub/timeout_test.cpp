// Tests for greenev/timeout.hpp: a timeout raises timeout_error in the
// greenlet that created it at its blocking call, identifies itself, can be
// cancelled, nests (an outer timeout is never swallowed by an inner wait,
// whatever the primitive), and with_timeout(). Ports the contracts of gevent's
// test__timeout and the "outer timeout" checks of its test__event/test__greenlet.
#include <greenev/timeout.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/queue.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::event;
using greenev::spawn;
using greenev::timeout;
using greenev::timeout_error;
using greenev::wait_time;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

using timeout_basics = greenev::testing::hub_test;
using timeout_nesting = greenev::testing::hub_test;
using timeout_helpers = greenev::testing::hub_test;

using greenev::testing::since;

// ---- a single timeout ----------------------------------------------------------------------

TEST_F(timeout_basics, raises_timeout_error_at_the_blocking_call) {
  const auto start = steady::now();
  bool after_sleep = false;
  bool identified = false;
  const void* source = nullptr;
  const void* self = nullptr;
  std::chrono::nanoseconds after{0};
  try {
    timeout deadline(20ms);
    self = &deadline;
    try {
      greenev::sleep(10.0);
      after_sleep = true;
    } catch (const timeout_error& error) {
      identified = deadline.raised(error);
      source = error.source();
      after = error.after();
      EXPECT_TRUE(deadline.expired());
      EXPECT_FALSE(deadline.pending());
      throw;
    }
  } catch (const timeout_error&) {
  }
  const auto elapsed = since(start);
  EXPECT_FALSE(after_sleep);
  EXPECT_TRUE(identified);
  EXPECT_EQ(source, self);
  EXPECT_EQ(after, std::chrono::nanoseconds(20ms));
  EXPECT_GE(elapsed, 15ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_F(timeout_basics, message_says_how_long) {
  EXPECT_TRUE(throws_with<timeout_error>(
      [] {
        timeout deadline(0.01);  // double seconds
        greenev::sleep(10.0);
      },
      "timed out after 0.010 s"));
}

TEST_F(timeout_basics, pending_and_expired_through_its_life) {
  timeout deadline(10ms);
  EXPECT_TRUE(deadline.pending());
  EXPECT_FALSE(deadline.expired());
  EXPECT_THROW(greenev::sleep(1.0), timeout_error);
  EXPECT_FALSE(deadline.pending());
  EXPECT_TRUE(deadline.expired());
  deadline.cancel();  // no effect once fired
  EXPECT_TRUE(deadline.expired());
  greenev::sleep(0.001);  // and nothing more is raised
}

TEST_F(timeout_basics, cancel_prevents_it) {
  timeout deadline(10ms);
  deadline.cancel();
  EXPECT_FALSE(deadline.pending());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  EXPECT_NO_THROW(greenev::sleep(0.03));
  EXPECT_FALSE(deadline.expired());
}

TEST_F(timeout_basics, leaving_the_scope_in_time_prevents_it) {
  {
    // A yield, not a sleep: a loaded machine may not run a 1 ms sleep within the
    // deadline, but nothing in a yield waits for the clock.
    timeout deadline(300ms);
    greenev::sleep(0.0);
  }
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  EXPECT_NO_THROW(greenev::sleep(0.4));  // past the deadline: the timer is gone
}

TEST_F(timeout_basics, forever_never_fires) {
  timeout deadline(wait_time::forever());
  EXPECT_FALSE(deadline.pending());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u) << "a timeout that never fires needs no timer";
  EXPECT_NO_THROW(greenev::sleep(0.02));
  EXPECT_FALSE(deadline.expired());
}

TEST_F(timeout_basics, does_not_fire_while_the_greenlet_does_not_block_and_fires_at_the_next_block) {
  timeout deadline(5ms);
  const auto start = steady::now();
  while (since(start) < 20ms) {
  }  // busy, no switch: nothing can be raised here
  EXPECT_FALSE(deadline.expired());
  EXPECT_THROW(greenev::sleep(1.0), timeout_error);
  EXPECT_TRUE(deadline.expired());
}

TEST_F(timeout_basics, timeout_in_main_around_event_wait) {
  event never_set;
  const auto start = steady::now();
  try {
    timeout deadline(20ms);
    (void)never_set.wait();
    ADD_FAILURE() << "wait returned";
  } catch (const timeout_error&) {
  }
  EXPECT_GE(since(start), 15ms);
  EXPECT_EQ(never_set.waiters(), 0u) << "the timed-out waiter must leave the event";
}

// A timeout belongs to the greenlet that created it: it interrupts that one,
// not the greenlet that happens to be running or another waiting one.
TEST_F(timeout_basics, raises_only_in_the_greenlet_that_created_it) {
  bool task_timed_out = false;
  bool task_finished = false;
  event task_caught;
  auto t = spawn([&] {
    try {
      timeout deadline(10ms);
      greenev::sleep(10.0);
    } catch (const timeout_error&) {
      task_timed_out = true;
    }
    task_caught.set();
    greenev::sleep(0.01);
    task_finished = true;
  });
  // main waits until the task's timeout has fired, undisturbed (an event, not
  // a 30 ms sleep that a loaded machine could start 20 ms before the task's
  // 10 ms timeout and so end first)
  bool woke = false;
  EXPECT_NO_THROW(woke = task_caught.wait(5s));
  EXPECT_TRUE(woke);
  EXPECT_TRUE(task_timed_out);
  t.join();
  EXPECT_TRUE(task_finished);

  // main's timeout interrupts main's join; the task it joins keeps going
  auto sleeper = spawn([] {
    greenev::sleep(0.04);
    return 1;
  });
  EXPECT_THROW(
      {
        timeout deadline(10ms);
        sleeper.join();
      },
      timeout_error);
  EXPECT_FALSE(sleeper.ready());
  EXPECT_EQ(sleeper.get(), 1);
}

TEST_F(timeout_basics, created_in_the_hub_throws_greenlet_error) {
  std::string message;
  event done;
  greenev::hub::current().run_callback([&] {
    try {
      timeout deadline(1s);
    } catch (const greenev::greenlet_error& error) {
      message = error.what();
    }
    done.set();
  });
  EXPECT_TRUE(done.wait(5s));
  EXPECT_NE(message.find("would block the hub"), std::string::npos) << message;
}

// ---- nesting -----------------------------------------------------------------------------

// Inner code that catches timeout_error must check raised() and let foreign
// ones go: then the outer timeout firing during the inner wait arrives as
// itself at the outer handler.
TEST_F(timeout_nesting, outer_timeout_firing_during_an_inner_wait_propagates_as_itself) {
  std::vector<std::string> steps;
  const auto start = steady::now();
  try {
    timeout outer(20ms);
    try {
      try {
        timeout inner(5s);
        event never_set;
        (void)never_set.wait();
      } catch (const timeout_error& error) {
        steps.push_back("inner handler saw a foreign timeout");
        throw;  // not ours
      }
    } catch (const timeout_error& error) {
      EXPECT_TRUE(outer.raised(error));
      EXPECT_TRUE(outer.expired());
      steps.push_back("outer");
    }
  } catch (const timeout_error&) {
    steps.push_back("escaped");
  }
  EXPECT_EQ(steps, (std::vector<std::string>{"inner handler saw a foreign timeout", "outer"}));
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
}

TEST_F(timeout_nesting, inner_timeout_with_the_shorter_deadline_fires_first) {
  timeout outer(5s);
  bool inner_fired = false;
  try {
    timeout inner(10ms);
    greenev::sleep(10.0);
  } catch (const timeout_error& error) {
    EXPECT_FALSE(outer.raised(error));
    inner_fired = true;
  }
  EXPECT_TRUE(inner_fired);
  EXPECT_TRUE(outer.pending());
  EXPECT_FALSE(outer.expired());
  EXPECT_NO_THROW(greenev::sleep(0.001));
}

// An inner timeout handles its own expiry; the greenlet then blocks again and
// the outer one fires there. The outer deadline is a second after the inner
// one: a loaded machine that wakes the hub late must not find both expired.
TEST_F(timeout_nesting, inner_handles_its_own_expiry_then_the_outer_fires) {
  std::vector<std::string> fired;
  const void* outer_address = nullptr;
  const void* raised_by = nullptr;
  try {
    timeout outer(1s);
    outer_address = &outer;
    timeout inner(10ms);
    try {
      greenev::sleep(10.0);
    } catch (const timeout_error& error) {
      if (!inner.raised(error)) throw;
      fired.push_back("inner");
    }
    EXPECT_TRUE(outer.pending());
    greenev::sleep(10.0);
    fired.push_back("sleep returned");
  } catch (const timeout_error& error) {
    raised_by = error.source();
    fired.push_back("outer");
  }
  EXPECT_EQ(fired, (std::vector<std::string>{"inner", "outer"}));
  EXPECT_EQ(raised_by, outer_address);
}

// The same two rules for every blocking primitive with its own timeout
// argument: an outer timeout that fires during the wait arrives as itself
// (it is not turned into the primitive's "timed out" result), and the
// primitive's own shorter timeout does not consume or cancel the outer one.
struct blocking_call {
  const char* name;
  // Waits, with the call's own `limit`, for something that will not happen
  // (or not soon). Returns normally when `limit` passes; cleans up after
  // itself whatever happens.
  std::function<void(wait_time limit)> wait;
};

void PrintTo(const blocking_call& call, std::ostream* out) {
  *out << call.name;
}

[[noreturn]] void kill_and_rethrow(const greenev::basic_task& t) {
  t.kill();
  throw;
}

std::vector<blocking_call> blocking_calls() {
  return {
      {"sleep", [](wait_time limit) { greenev::sleep(limit); }},
      {"event_wait",
       [](wait_time limit) {
         event never_set;
         EXPECT_FALSE(never_set.wait(limit));
       }},
      {"async_result_wait",
       [](wait_time limit) {
         greenev::async_result<int> never_set;
         EXPECT_FALSE(never_set.wait(limit));
       }},
      {"async_result_get",
       [](wait_time limit) {
         greenev::async_result<int> never_set;
         try {
           (void)never_set.get(limit);
           ADD_FAILURE() << "get returned";
         } catch (const timeout_error& error) {
           if (error.source() != &never_set) throw;
         }
       }},
      {"task_join",
       [](wait_time limit) {
         auto t = spawn([] { greenev::sleep(10.0); });
         try {
           EXPECT_FALSE(t.join(limit));
         } catch (...) {
           kill_and_rethrow(t);
         }
         t.kill();
       }},
      {"task_get",
       [](wait_time limit) {
         auto t = spawn([] { greenev::sleep(10.0); });
         try {
           t.get(limit);
           ADD_FAILURE() << "get returned";
         } catch (const timeout_error& error) {
           if (error.source() != t.state()) kill_and_rethrow(t);
         } catch (...) {
           kill_and_rethrow(t);
         }
         t.kill();
       }},
      {"joinall",
       [](wait_time limit) {
         auto t = spawn([] { greenev::sleep(10.0); });
         try {
           EXPECT_TRUE(greenev::joinall({t}, limit).empty());
         } catch (...) {
           kill_and_rethrow(t);
         }
         t.kill();
       }},
      {"kill_with_timeout",
       [](wait_time limit) {
         event release;
         auto t = spawn([&] {
           try {
             greenev::sleep(10.0);
           } catch (const greenev::greenlet_exit&) {
             (void)release.wait(5s);  // dies slowly
             throw;
           }
         });
         greenev::sleep(0.0);
         try {
           t.kill({.timeout = limit});
         } catch (...) {
           release.set();
           t.join();
           throw;
         }
         release.set();
         t.join();
       }},
  };
}

class timeout_around : public greenev::testing::hub_test,
                       public ::testing::WithParamInterface<blocking_call> {};

TEST_P(timeout_around, outer_timeout_is_not_lost_in_the_call) {
  const auto start = steady::now();
  bool raised_by_outer = false;
  bool returned = false;
  try {
    timeout outer(20ms);
    try {
      GetParam().wait(5s);
      returned = true;
    } catch (const timeout_error& error) {
      raised_by_outer = outer.raised(error);
    }
  } catch (const timeout_error&) {
    ADD_FAILURE() << "the timeout escaped its own scope";
  }
  EXPECT_FALSE(returned) << "the call swallowed the outer timeout";
  EXPECT_TRUE(raised_by_outer);
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
}

TEST_P(timeout_around, outer_timeout_is_not_lost_in_a_call_that_waits_forever) {
  bool raised_by_outer = false;
  try {
    timeout outer(20ms);
    try {
      GetParam().wait(wait_time::forever());
    } catch (const timeout_error& error) {
      raised_by_outer = outer.raised(error);
    }
  } catch (const timeout_error&) {
    ADD_FAILURE() << "the timeout escaped its own scope";
  }
  EXPECT_TRUE(raised_by_outer);
}

TEST_P(timeout_around, own_shorter_timeout_leaves_the_outer_one_pending) {
  timeout outer(5s);
  const auto start = steady::now();
  EXPECT_NO_THROW(GetParam().wait(10ms));
  EXPECT_GE(since(start), 8ms);
  EXPECT_LT(since(start), 2s);
  EXPECT_TRUE(outer.pending());
  EXPECT_FALSE(outer.expired());
  EXPECT_NO_THROW(greenev::sleep(0.001));
}

std::string blocking_call_name(const ::testing::TestParamInfo<blocking_call>& param_info) {
  return param_info.param.name;
}

INSTANTIATE_TEST_SUITE_P(primitives, timeout_around, ::testing::ValuesIn(blocking_calls()),
                         blocking_call_name);

TEST_F(timeout_nesting, killing_a_task_inside_timeouts_stops_their_timers) {
  bool resumed = false;
  auto t = spawn([&] {
    timeout outer(5s);
    timeout inner(1s);
    greenev::sleep(10.0);
    resumed = true;
  });
  greenev::sleep(0.0);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 3u) << "two timeouts and the sleep";
  t.kill();
  EXPECT_TRUE(t.killed());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  EXPECT_FALSE(resumed);
}

// Deadlines that fall due in the same loop iteration: libev marks every
// expired timer pending before it runs any callback, and the first timeout's
// callback unwinds its greenlet, destroying the other timers of that
// greenlet (nested timeouts, the wait's own timer) while they are still
// pending. Stopping them must take them off libev's pending list, or libev
// calls back into a dead stack. A busy greenlet makes thousands of nearly
// equal deadlines (0.5 ms apart) fall due together, around every kind of wait.
TEST_F(timeout_nesting, many_deadlines_falling_due_in_one_iteration_unwind_cleanly) {
  constexpr int greenlets = 2000;
  for (int round = 0; round < 3; ++round) {
    int timed_out = 0;
    event never_set;
    greenev::queue<int> never_filled;
    auto sleeper = spawn([] { greenev::sleep(10.0); });
    std::vector<greenev::task<void>> tasks;
    tasks.reserve(greenlets);
    for (int i = 0; i < greenlets; ++i) {
      tasks.push_back(spawn([&, i] {
        const auto base = 2ms + std::chrono::microseconds(i % 5 * 500);
        try {
          timeout outer(base + 1ms);
          timeout middle(base + 500us);
          timeout inner(base);
          switch (i % 4) {
            case 0:
              greenev::sleep(base + 1500us);
              break;
            case 1:
              (void)never_set.wait(base + 1500us);
              break;
            case 2:
              (void)never_filled.get(base + 1500us);
              break;
            default:
              (void)sleeper.join(base + 1500us);
              break;
          }
        } catch (const timeout_error&) {
          ++timed_out;
        }
      }));
    }
    greenev::sleep(0.0);  // every task started and waits
    auto busy = spawn([] {
      const auto until = steady::now() + 20ms;
      while (steady::now() < until) {
      }
    });
    for (auto& t : tasks) EXPECT_TRUE(t.join(10s));
    busy.join();
    sleeper.kill();
    EXPECT_EQ(timed_out, greenlets);
    EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  }
}

// ---- with_timeout ------------------------------------------------------------------------

TEST_F(timeout_helpers, with_timeout_returns_the_value_in_time) {
  EXPECT_EQ(greenev::with_timeout(10s,
                                  [] {
                                    greenev::sleep(0.001);
                                    return 42;
                                  }),
            42);
  std::string text = greenev::with_timeout(0.5, [] { return std::string("ok"); });
  EXPECT_EQ(text, "ok");
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
  EXPECT_NO_THROW(greenev::sleep(0.001));
}

TEST_F(timeout_helpers, with_timeout_raises_when_the_deadline_passes) {
  bool finished = false;
  const auto start = steady::now();
  EXPECT_TRUE(throws_with<timeout_error>(
      [&] {
        (void)greenev::with_timeout(10ms, [&] {
          greenev::sleep(10.0);
          finished = true;
          return 1;
        });
      },
      "timed out"));
  EXPECT_FALSE(finished);
  EXPECT_GE(since(start), 8ms);
  EXPECT_LT(since(start), 2s);
}

TEST_F(timeout_helpers, with_timeout_void_function) {
  int calls = 0;
  greenev::with_timeout(1s, [&] { ++calls; });
  EXPECT_EQ(calls, 1);
}

// ---- timeout_value, silent timeouts, a caller's exception, restarting ---------------------

using timeout_forms = greenev::testing::hub_test;

TEST_F(timeout_forms, with_timeout_returns_timeout_value_when_the_deadline_passes) {
  const auto start = steady::now();
  bool finished = false;
  const int value = greenev::with_timeout(
      20ms,
      [&] {
        greenev::sleep(10.0);
        finished = true;
        return 1;
      },
      -1);
  EXPECT_EQ(value, -1);
  EXPECT_FALSE(finished);
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
  EXPECT_EQ(greenev::with_timeout(
                1s, [] { return 3; }, -1),
            3);
  // The common type: a string result, a C-string fallback.
  EXPECT_EQ(greenev::with_timeout(
                1ms,
                [] {
                  greenev::sleep(1.0);
                  return std::string("late");
                },
                "none"),
            "none");
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(timeout_forms, with_timeout_value_lets_an_outer_timeout_and_fs_exceptions_through) {
  timeout outer(20ms);
  bool outer_raised = false;
  try {
    (void)greenev::with_timeout(
        5s,
        [] {
          greenev::sleep(10.0);
          return 1;
        },
        -1);
  } catch (const timeout_error& e) {
    outer_raised = outer.raised(e);
  }
  EXPECT_TRUE(outer_raised);
  EXPECT_TRUE(throws_with<std::runtime_error>(
      [] {
        (void)greenev::with_timeout(
            1s, []() -> int { throw std::runtime_error("own"); }, 0);
      },
      "own"));
}

TEST_F(timeout_forms, try_with_timeout_is_the_silent_timeout) {
  bool finished = false;
  const auto start = steady::now();
  const bool completed = greenev::try_with_timeout(20ms, [&] {
    greenev::sleep(10.0);
    finished = true;
  });
  EXPECT_FALSE(completed);
  EXPECT_FALSE(finished);
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
  EXPECT_TRUE(greenev::try_with_timeout(10s, [] { greenev::sleep(0.001); }));

  const std::optional<int> late = greenev::try_with_timeout(10ms, [] {
    greenev::sleep(10.0);
    return 1;
  });
  EXPECT_FALSE(late.has_value());
  EXPECT_EQ(greenev::try_with_timeout(1s, [] { return 2; }), std::optional<int>(2));
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(timeout_forms, try_with_timeout_lets_an_outer_timeout_through) {
  timeout outer(20ms);
  bool outer_raised = false;
  try {
    (void)greenev::try_with_timeout(5s, [] { greenev::sleep(10.0); });
  } catch (const timeout_error& e) {
    outer_raised = outer.raised(e);
  }
  EXPECT_TRUE(outer_raised);
}

struct deadline_missed : std::runtime_error {
  deadline_missed() : std::runtime_error("the caller's own exception") {}
};

TEST_F(timeout_forms, a_timeout_raises_the_callers_exception) {
  const auto start = steady::now();
  EXPECT_TRUE(throws_with<deadline_missed>(
      [] {
        timeout deadline(20ms, {.error = std::make_exception_ptr(deadline_missed{})});
        greenev::sleep(10.0);
      },
      "own exception"));
  EXPECT_GE(since(start), 15ms);
  EXPECT_LT(since(start), 2s);
  // In a task: get() rethrows it.
  auto t = spawn([] {
    timeout deadline(10ms, {.error = std::make_exception_ptr(deadline_missed{})});
    greenev::sleep(10.0);
  });
  EXPECT_THROW(t.get(5s), deadline_missed);
}

TEST_F(timeout_forms, an_unstarted_timeout_waits_for_start) {
  timeout deadline(20ms, {.start = false});
  EXPECT_FALSE(deadline.pending());
  greenev::sleep(0.05);  // would have fired by now if it ran
  EXPECT_FALSE(deadline.expired());
  deadline.start();
  EXPECT_TRUE(deadline.pending());
  EXPECT_THROW(deadline.start(), std::logic_error);  // already pending, as gevent
  bool raised = false;
  try {
    greenev::sleep(10.0);
  } catch (const timeout_error& e) {
    raised = deadline.raised(e);
  }
  EXPECT_TRUE(raised);
  EXPECT_TRUE(deadline.expired());
  EXPECT_FALSE(deadline.pending());
}

TEST_F(timeout_forms, restart_moves_the_deadline_and_cancel_then_start_reuses_it) {
  // Restarting before it fires pushes the deadline back, each time from now:
  // after four sleeps of 50 ms and a restart after each, it fires a second
  // after the last restart, not a second after it was made. (Each sleep is
  // far shorter than the deadline: a loaded machine oversleeps.)
  timeout deadline(1s);
  const auto start = steady::now();
  for (int i = 0; i < 4; ++i) {
    greenev::sleep(0.05);
    deadline.restart(1s);
  }
  EXPECT_TRUE(deadline.pending());
  EXPECT_FALSE(deadline.expired());
  bool raised = false;
  try {
    greenev::sleep(10.0);
  } catch (const timeout_error& e) {
    raised = deadline.raised(e);
  }
  EXPECT_TRUE(raised);
  EXPECT_GE(since(start), 1150ms);  // 4 x 50 ms + 1 s, less timer slack
  EXPECT_LT(since(start), 5s);

  // After expiry: restart with a new, longer duration clears expired().
  deadline.restart(10s);
  EXPECT_FALSE(deadline.expired());
  EXPECT_TRUE(deadline.pending());
  deadline.cancel();
  EXPECT_FALSE(deadline.pending());
  greenev::sleep(0.001);
  deadline.start();  // the 10 s duration again
  EXPECT_TRUE(deadline.pending());
  deadline.cancel();
  deadline.restart(wait_time::forever());  // never fires
  EXPECT_FALSE(deadline.pending());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(timeout_forms, a_task_killed_while_under_a_restarted_timeout_leaves_no_timer) {
  auto t = spawn([] {
    timeout deadline(10s);
    deadline.restart(20s);
    greenev::sleep(10.0);
  });
  greenev::yield();
  EXPECT_EQ(greenev::hub::current().active_watchers(), 2u);  // the sleep and the timeout
  t.kill();
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

}  // namespace
