// Tests for greenev/local.hpp: a value per greenlet (main, tasks, raw
// greenlets, the hub), created on first access, destroyed when its greenlet
// dies (on that greenlet) or when the greenlet_local goes, reset(), an init
// function (which needs no default constructor), destructors that touch
// locals, and several threads. Ports the
// contracts of gevent's test__local.py (test_local_dicts_for_greenlets,
// test_local_with_dead_greenlet / deleted local, subclass __init__).
#include <greenev/local.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/hub_fixture.hpp"

namespace {

using greenev::greenlet_local;
using local_test = greenev::testing::hub_test;

// Counts live instances and remembers on which greenlet each died.
struct tracked {
  static inline std::atomic<int> made{0};
  static inline std::atomic<int> destroyed{0};
  static inline std::atomic<const greenev::detail::greenlet_impl*> last_destroyed_on{nullptr};
  int value = 0;
  tracked() { ++made; }
  tracked(const tracked&) = delete;
  ~tracked() {
    ++destroyed;
    // Not greenlet::current(): at thread exit it would make a new thread state.
    last_destroyed_on = greenev::detail::tls_state != nullptr ? greenev::detail::tls_state->current : nullptr;
  }
  static int live() { return made - destroyed; }
  static void reset_counts() {
    made = 0;
    destroyed = 0;
    last_destroyed_on = nullptr;
  }
};

TEST_F(local_test, every_greenlet_sees_its_own_value) {
  greenlet_local<int> number;
  *number = 100;  // the main greenlet's
  greenev::event go;
  std::vector<greenev::task<int>> tasks;
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(greenev::spawn([&, i] {
      EXPECT_EQ(number.get(), 0) << "a new greenlet starts from a default-constructed value";
      number.get() = i;
      go.wait();  // the others write meanwhile
      return number.get();
    }));
  }
  greenev::yield();
  go.set();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(tasks[i].get(), i);
  EXPECT_EQ(*number, 100);
}

TEST_F(local_test, values_are_made_on_first_access_only) {
  tracked::reset_counts();
  {
    greenlet_local<tracked> local;
    EXPECT_FALSE(local.has_value());
    EXPECT_EQ(tracked::made, 0);
    local->value = 3;
    EXPECT_TRUE(local.has_value());
    EXPECT_EQ((*local).value, 3);
    EXPECT_EQ(tracked::made, 1);
  }
  EXPECT_EQ(tracked::live(), 0);
}

TEST_F(local_test, a_value_dies_with_its_greenlet_on_that_greenlet) {
  tracked::reset_counts();
  greenlet_local<tracked> local;
  const greenev::detail::greenlet_impl* task_greenlet = nullptr;
  auto t = greenev::spawn([&] {
    task_greenlet = greenev::greenlet::current().get();
    local->value = 1;
    greenev::sleep(0.01);
  });
  t.join();
  EXPECT_EQ(tracked::made, 1);
  EXPECT_EQ(tracked::destroyed, 1);
  EXPECT_EQ(tracked::last_destroyed_on, task_greenlet);
  EXPECT_FALSE(local.has_value());  // the main greenlet never touched it
}

TEST_F(local_test, a_killed_task_and_a_raw_greenlet_release_their_values) {
  tracked::reset_counts();
  greenlet_local<tracked> local;
  greenev::event never;
  auto t = greenev::spawn([&] {
    local->value = 1;
    never.wait();
  });
  greenev::yield();
  EXPECT_EQ(tracked::live(), 1);
  t.kill();
  EXPECT_EQ(tracked::live(), 0);

  greenev::greenlet raw([&] { local->value = 2; });
  raw.switch_to();
  EXPECT_TRUE(raw.dead());
  EXPECT_EQ(tracked::made, 2);
  EXPECT_EQ(tracked::live(), 0);
}

TEST_F(local_test, destroying_the_local_releases_every_greenlets_value) {
  tracked::reset_counts();
  auto local = std::make_unique<greenlet_local<tracked>>();
  (*local)->value = 1;  // main's
  greenev::event used;
  greenev::event dropped;
  auto t = greenev::spawn([&] {
    (*local)->value = 2;
    used.set();
    dropped.wait();  // the local goes while this greenlet lives
  });
  used.wait();
  EXPECT_EQ(tracked::live(), 2);
  local.reset();
  EXPECT_EQ(tracked::live(), 0);
  // The greenlet that held a value lives on, uses a newer local, and dies.
  greenlet_local<tracked> newer;
  dropped.set();
  t.join();
  EXPECT_EQ(tracked::live(), 0);
  newer->value = 3;
  EXPECT_EQ(tracked::live(), 1);
}

TEST_F(local_test, a_greenlet_that_outlives_many_locals_keeps_working) {
  // Dead entries of destroyed locals are dropped as the table changes.
  for (int i = 0; i < 1000; ++i) {
    greenlet_local<std::string> text;
    *text = std::to_string(i);
    EXPECT_EQ(*text, std::to_string(i));
  }
  greenlet_local<int> last;
  EXPECT_EQ(*last, 0);
}

TEST_F(local_test, the_hub_has_its_own_value) {
  greenlet_local<std::string> who;
  *who = "main";
  std::string seen_in_hub;
  greenev::hub::current().run_callback([&] {
    seen_in_hub = who.get().empty() ? "fresh" : who.get();
    who.get() = "hub";
  });
  greenev::yield();
  EXPECT_EQ(seen_in_hub, "fresh");
  EXPECT_EQ(*who, "main");
  greenev::hub::current().run_callback([&] { seen_in_hub = *who; });
  greenev::yield();
  EXPECT_EQ(seen_in_hub, "hub");
}

TEST_F(local_test, reset_destroys_only_the_calling_greenlets_value) {
  tracked::reset_counts();
  greenlet_local<tracked> local;
  local->value = 5;
  greenev::event go;
  auto t = greenev::spawn([&] {
    local->value = 6;
    go.wait();
    return local->value;
  });
  greenev::yield();
  local.reset();
  EXPECT_EQ(tracked::live(), 1);
  EXPECT_FALSE(local.has_value());
  EXPECT_EQ(local->value, 0);  // a new one
  go.set();
  EXPECT_EQ(t.get(), 6);
  local.reset();
  local.reset();  // nothing left: no effect
  EXPECT_EQ(tracked::live(), 0);
}

TEST_F(local_test, an_init_function_makes_each_value) {
  int calls = 0;
  greenlet_local<std::string> name([&] {
    ++calls;
    return std::string("greenlet #") + std::to_string(calls);
  });
  EXPECT_EQ(*name, "greenlet #1");
  EXPECT_EQ(greenev::spawn([&] { return *name; }).get(), "greenlet #2");
  EXPECT_EQ(*name, "greenlet #1");
  EXPECT_EQ(calls, 2);
}

// No default constructor, no copy, no move: made in place from init's result.
struct no_default {
  explicit no_default(int v) : value(v) {}
  no_default(const no_default&) = delete;
  no_default& operator=(const no_default&) = delete;
  int value;
};

TEST_F(local_test, an_init_function_needs_no_default_constructor) {
  static_assert(!std::is_default_constructible_v<greenlet_local<no_default>>,
                "without an init function there is nothing to make the value with");
  int next = 0;
  greenlet_local<no_default> local([&] { return no_default(++next); });
  EXPECT_EQ(local->value, 1);
  EXPECT_EQ(greenev::spawn([&] { return local->value; }).get(), 2);
  EXPECT_EQ(local.get().value, 1);
  EXPECT_THROW([] { greenlet_local<no_default> empty{std::function<no_default()>{}}; }(),
               std::invalid_argument);
}

TEST_F(local_test, a_constructor_that_throws_stores_nothing) {
  int attempts = 0;
  greenlet_local<int> flaky([&]() -> int {
    if (++attempts == 1) throw std::runtime_error("first attempt fails");
    return 9;
  });
  EXPECT_THROW((void)flaky.get(), std::runtime_error);
  EXPECT_FALSE(flaky.has_value());
  EXPECT_EQ(*flaky, 9);
}

// A value whose destructor touches other greenlet_locals of the dying greenlet.
struct touches_locals {
  greenlet_local<tracked>* other;
  ~touches_locals() { (*other)->value = 42; }
};

TEST_F(local_test, destructors_may_use_locals_of_the_dying_greenlet) {
  tracked::reset_counts();
  greenlet_local<tracked> other;
  greenlet_local<touches_locals> first([&] { return touches_locals{&other}; });
  auto t = greenev::spawn([&] { (void)first.get(); });
  t.join();
  // The value made during the greenlet's teardown was released too.
  EXPECT_EQ(tracked::made, 1);
  EXPECT_EQ(tracked::live(), 0);
}

TEST_F(local_test, each_thread_and_its_greenlets_have_their_own_values) {
  tracked::reset_counts();
  {
    greenlet_local<tracked> local;
    local->value = -1;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int n = 1; n <= 3; ++n) {
      threads.emplace_back([&, n] {
        if (local->value != 0) ++failures;
        local->value = n;  // this thread's main greenlet
        auto t = greenev::spawn([&] {
          local->value = 10 * n;
          greenev::sleep(0.01);
          return local->value;
        });
        if (t.get() != 10 * n || local->value != n) ++failures;
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(local->value, -1);
    EXPECT_EQ(tracked::made, 7);
    // Each task's value died with its task; a thread's main greenlet value
    // dies with the thread, or with `local` below.
    EXPECT_GE(tracked::destroyed, 3);
  }
  EXPECT_EQ(tracked::live(), 0);
}

}  // namespace
