// Tests for greenev/semaphore.hpp: semaphore, bounded_semaphore, mutex/lock
// and rlock. Ports gevent's test__semaphore (acquire returns False after a
// timeout, its fairness test against starving waiters) and the lock/RLock contracts of
// gevent's lock_tests (ownership, re-entrancy, releasing from the wrong
// greenlet), plus greenev's own: FIFO hand-off, a unit handed to a waiter that
// is killed before it runs is passed on, and every semaphore and lock works
// with std::lock_guard and std::unique_lock.
// Timing-based checks come in blocking_contract_test.cpp.
#include <greenev/semaphore.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::basic_task;
using greenev::bounded_semaphore;
using greenev::greenlet_error;
using greenev::greenlet_exit;
using greenev::rlock;
using greenev::semaphore;
using greenev::spawn;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;

class semaphore_test : public greenev::testing::hub_test {};

// Yields until `done()` holds (bounded: a broken primitive fails, never hangs).
template <class Predicate>
bool yield_until(Predicate done, int rounds = 100) {
  for (int i = 0; i < rounds && !done(); ++i) greenev::yield();
  return done();
}

// Runs `fn` in the hub (as a loop callback) and returns once it ran.
template <class F>
void run_in_hub(F fn) {
  bool ran = false;
  greenev::hub::current().run_callback([&] {
    fn();
    ran = true;
  });
  ASSERT_TRUE(yield_until([&] { return ran; }, 5));
}

TEST_F(semaphore_test, acquire_returns_false_after_timeout) {  // gevent issue 39
  semaphore s(0);
  const auto start = steady::now();
  EXPECT_FALSE(s.acquire(0.01));
  EXPECT_GE(steady::now() - start, 8ms);
  EXPECT_EQ(s.value(), 0u);
  EXPECT_EQ(s.waiters(), 0u);
}

TEST_F(semaphore_test, counts_units) {
  semaphore s(2);
  EXPECT_EQ(s.value(), 2u);
  EXPECT_FALSE(s.locked());
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.try_acquire());
  EXPECT_TRUE(s.locked());
  EXPECT_FALSE(s.try_acquire());
  EXPECT_FALSE(s.acquire(0.0));  // a zero timeout polls
  s.release();
  s.release();
  s.release();  // unbounded: above the initial value is fine
  EXPECT_EQ(s.value(), 3u);
  EXPECT_EQ(semaphore().value(), 1u);  // gevent's default
}

TEST_F(semaphore_test, acquire_switches_only_when_it_must_wait) {
  semaphore s(1);
  bool other_ran = false;
  auto other = spawn([&] { other_ran = true; });
  EXPECT_TRUE(s.acquire());
  EXPECT_FALSE(s.try_acquire());
  EXPECT_FALSE(other_ran) << "acquiring a free unit switched";
  s.release();
  EXPECT_FALSE(other_ran) << "release switched";
  other.join();
  EXPECT_TRUE(other_ran);
}

TEST_F(semaphore_test, waiters_are_served_in_fifo_order) {
  semaphore s(0);
  std::vector<int> order;
  std::vector<basic_task> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(spawn([&, i] {
      ASSERT_TRUE(s.acquire());
      order.push_back(i);
    }));
  }
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 5; }));
  for (int i = 0; i < 5; ++i) s.release();
  greenev::joinall(tasks);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(s.value(), 0u);
}

TEST_F(semaphore_test, release_hands_the_unit_to_the_first_waiter) {
  semaphore s(0);
  bool acquired = false;
  auto waiter = spawn([&] { acquired = s.acquire(); });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 1; }));
  s.release();
  // The unit belongs to the waiter now, although it has not run yet: a
  // greenlet that asks later cannot barge in.
  EXPECT_EQ(s.value(), 0u);
  EXPECT_FALSE(s.try_acquire());
  EXPECT_FALSE(acquired);
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_EQ(s.value(), 0u);
}

TEST_F(semaphore_test, unit_handed_to_a_killed_waiter_goes_to_the_next) {
  semaphore s(0);
  bool first_acquired = false;
  bool second_acquired = false;
  auto first = spawn([&] { first_acquired = s.acquire(); });
  auto second = spawn([&] { second_acquired = s.acquire(); });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 2; }));
  // Queue the kill before the wake-up release() schedules: the first waiter is
  // killed holding a unit it never received.
  first.kill({.block = false});
  s.release();
  EXPECT_TRUE(second.join(5s));
  EXPECT_TRUE(first.join(5s));
  EXPECT_TRUE(first.killed());
  EXPECT_FALSE(first_acquired);
  EXPECT_TRUE(second_acquired);
  EXPECT_EQ(s.value(), 0u);
}

TEST_F(semaphore_test, unit_handed_to_a_killed_last_waiter_returns_to_the_count) {
  semaphore s(0);
  auto only = spawn([&] { (void)s.acquire(); });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 1; }));
  only.kill({.block = false});
  s.release();
  EXPECT_TRUE(only.join(5s));
  EXPECT_TRUE(only.killed());
  EXPECT_EQ(s.value(), 1u) << "the unit was lost with the killed waiter";
  EXPECT_TRUE(s.try_acquire());
}

TEST_F(semaphore_test, outer_timeout_firing_after_the_hand_off_passes_the_unit_on) {
  semaphore s(0);
  bool first_raised_its_own = false;
  bool second_acquired = false;
  auto first = spawn([&] {
    greenev::timeout deadline(0.02);
    try {
      (void)s.acquire();
    } catch (const greenev::timeout_error& e) {
      first_raised_its_own = deadline.raised(e);
    }
  });
  auto second = spawn([&] { second_acquired = s.acquire(5s); });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 2; }));
  // Both deadlines below pass while this greenlet blocks the thread, so libev
  // runs both timer callbacks in one go, in deadline order: ours first, which
  // releases (handing the unit to `first` and queueing its wake-up), then
  // first's, which raises in `first` before it could run with the unit.
  try {
    greenev::timeout mine(0.01);
    std::this_thread::sleep_for(50ms);
    greenev::sleep(5.0);
    ADD_FAILURE() << "our timeout did not fire";
  } catch (const greenev::timeout_error&) {
    s.release();
  }
  EXPECT_TRUE(first.join(5s));
  EXPECT_TRUE(second.join(5s));
  EXPECT_TRUE(first_raised_its_own);
  EXPECT_TRUE(second_acquired) << "the unit handed to the timed-out waiter was lost";
  EXPECT_EQ(s.value(), 0u);
}

// gevent issue #1487 (TestSemaphoreFair): two greenlets that release and at
// once re-acquire must not starve a third that waits. With barging, the
// releaser would take the unit straight back every time.
TEST_F(semaphore_test, releasing_then_reacquiring_does_not_starve_a_waiter) {
  semaphore s(1);
  int rounds = 0;
  int rounds_when_third_acquired = -1;
  auto spinner = [&] {
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(s.acquire(5s));
      ++rounds;
      greenev::yield();
      s.release();
    }
  };
  auto a = spawn(spinner);
  auto b = spawn(spinner);
  auto third = spawn([&] {
    ASSERT_TRUE(s.acquire(5s));
    rounds_when_third_acquired = rounds;
    s.release();
  });
  greenev::joinall({a, b, third});
  EXPECT_GE(rounds_when_third_acquired, 0);
  EXPECT_LE(rounds_when_third_acquired, 4) << "the third waiter was overtaken repeatedly";
  EXPECT_EQ(rounds, 400);
  EXPECT_EQ(s.value(), 1u);
}

TEST_F(semaphore_test, acquire_in_the_hub_works_when_free_and_throws_when_it_would_wait) {
  semaphore s(1);
  bool got = false;
  run_in_hub([&] { got = s.acquire(); });
  EXPECT_TRUE(got);
  bool threw = false;
  run_in_hub([&] {
    threw = throws_with<greenlet_error>([&] { (void)s.acquire(); }, "would block the hub");
    EXPECT_FALSE(s.try_acquire());
  });
  EXPECT_TRUE(threw);
  EXPECT_EQ(s.waiters(), 0u);
  run_in_hub([&] { s.release(); });  // releasing never switches: fine in the hub
  EXPECT_EQ(s.value(), 1u);
}

TEST_F(semaphore_test, release_from_the_hub_wakes_a_waiter) {
  semaphore s(0);
  auto waiter = spawn([&] { return s.acquire(); });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 1; }));
  greenev::hub::current().run_callback([&] { s.release(); });
  EXPECT_TRUE(waiter.get(5s));
}

TEST_F(semaphore_test, bounded_semaphore_rejects_releasing_too_often) {
  bounded_semaphore s(2);
  EXPECT_TRUE(throws_with<greenlet_error>([&] { s.release(); }, "released too many times"));
  EXPECT_EQ(s.value(), 2u);
  ASSERT_TRUE(s.acquire());
  s.release();
  EXPECT_TRUE(throws_with<greenlet_error>([&] { s.release(); }, "released too many times"));
  EXPECT_EQ(s.value(), 2u);
  // Through a reference to the base class too.
  semaphore& base = s;
  EXPECT_THROW(base.release(), greenlet_error);
}

TEST_F(semaphore_test, bounded_semaphore_hands_off_while_waiters_wait) {
  bounded_semaphore s(1);
  ASSERT_TRUE(s.acquire());
  auto waiter = spawn([&] {
    EXPECT_TRUE(s.acquire());
    s.release();
  });
  ASSERT_TRUE(yield_until([&] { return s.waiters() == 1; }));
  s.release();  // to the waiter, not above the bound
  waiter.join();
  EXPECT_EQ(s.value(), 1u);
  EXPECT_THROW(s.release(), greenlet_error);
}

TEST_F(semaphore_test, lock_with_lock_guard_serialises_across_a_sleep) {
  greenev::lock m;  // gevent's spelling of greenev::mutex
  int inside = 0;
  int most_inside = 0;
  std::vector<std::string> log;
  auto worker = [&](std::string name) {
    std::lock_guard hold(m);
    ++inside;
    most_inside = std::max(most_inside, inside);
    log.push_back(name + " in");
    greenev::sleep(0.02);
    log.push_back(name + " out");
    --inside;
  };
  const auto start = steady::now();
  auto a = spawn(worker, std::string("a"));
  auto b = spawn(worker, std::string("b"));
  greenev::joinall({a, b}, 5s, true);
  EXPECT_GE(steady::now() - start, 35ms) << "the two critical sections overlapped";
  EXPECT_EQ(most_inside, 1);
  EXPECT_EQ(log, (std::vector<std::string>{"a in", "a out", "b in", "b out"}));
  EXPECT_FALSE(m.locked());
}

TEST_F(semaphore_test, lock_works_with_unique_lock_and_timed_try_lock) {
  greenev::mutex m;
  std::unique_lock held(m);
  EXPECT_TRUE(held.owns_lock());
  EXPECT_FALSE(m.try_lock());
  auto contender = spawn([&] {
    std::unique_lock attempt(m, 20ms);  // try_lock_for
    return attempt.owns_lock();
  });
  EXPECT_FALSE(contender.get(5s));
  held.unlock();
  auto second = spawn([&] {
    std::unique_lock attempt(m, std::try_to_lock);
    return attempt.owns_lock();
  });
  EXPECT_TRUE(second.get(5s));
  EXPECT_FALSE(m.locked());
}

TEST_F(semaphore_test, semaphores_work_with_lock_guard_and_unique_lock) {
  semaphore s(2);
  {
    std::lock_guard first(s);
    std::unique_lock second(s);
    EXPECT_EQ(s.value(), 0u);
    auto contender = spawn([&] {
      std::unique_lock attempt(s, 20ms);  // try_lock_for: times out
      std::unique_lock poll(s, std::try_to_lock);
      return attempt.owns_lock() || poll.owns_lock();
    });
    EXPECT_FALSE(contender.get(5s));
  }
  EXPECT_EQ(s.value(), 2u) << "the guards did not release their units";
  bounded_semaphore b(1);
  {
    std::lock_guard hold(b);
    EXPECT_TRUE(b.locked());
  }
  EXPECT_FALSE(b.locked());
  EXPECT_THROW(b.unlock(), greenlet_error) << "a bounded semaphore released above its bound";
}

TEST_F(semaphore_test, lock_is_not_owned_and_unlocking_a_free_lock_throws) {
  greenev::mutex m;
  EXPECT_TRUE(throws_with<greenlet_error>([&] { m.unlock(); }, "not locked"));
  m.lock();
  auto other = spawn([&] { m.unlock(); });  // any greenlet may unlock a Lock
  other.get(5s);
  EXPECT_FALSE(m.locked());
}

TEST_F(semaphore_test, rlock_is_reentrant_for_its_owner) {
  rlock r;
  EXPECT_FALSE(r.locked());
  EXPECT_TRUE(r.acquire());
  EXPECT_TRUE(r.acquire(0.0));
  EXPECT_TRUE(r.try_acquire());
  {
    std::lock_guard again(r);
    EXPECT_EQ(r.depth(), 4u);
  }
  EXPECT_EQ(r.depth(), 3u);
  EXPECT_TRUE(r.owned_by_current());
  r.release();
  r.release();
  EXPECT_TRUE(r.locked());
  r.release();
  EXPECT_FALSE(r.locked());
  EXPECT_FALSE(r.owned_by_current());
}

TEST_F(semaphore_test, rlock_blocks_other_greenlets_until_fully_released) {
  rlock r;
  r.acquire();
  r.acquire();
  bool other_owned = false;
  bool first_attempt_done = false;
  auto other = spawn([&] {
    EXPECT_FALSE(r.acquire(0.02)) << "acquired an rlock another greenlet holds";
    first_attempt_done = true;
    EXPECT_TRUE(r.acquire(5s));
    other_owned = r.owned_by_current() && r.depth() == 1;
    r.release();
  });
  ASSERT_FALSE(other.join(0.2));  // its first attempt times out meanwhile
  ASSERT_TRUE(first_attempt_done);
  ASSERT_TRUE(yield_until([&] { return r.waiters() == 1; }));
  EXPECT_TRUE(r.owned_by_current());
  r.release();
  greenev::yield();
  EXPECT_EQ(r.waiters(), 1u) << "one release of two freed the rlock";
  r.release();
  EXPECT_FALSE(r.owned_by_current());
  other.get(5s);
  EXPECT_TRUE(other_owned);
  EXPECT_FALSE(r.locked());
}

TEST_F(semaphore_test, rlock_release_by_a_non_owner_throws) {
  rlock r;
  EXPECT_TRUE(throws_with<greenlet_error>([&] { r.release(); }, "not locked"));
  r.acquire();
  auto intruder =
      spawn([&] { return throws_with<greenlet_error>([&] { r.release(); }, "does not hold it"); });
  EXPECT_TRUE(intruder.get(5s));
  EXPECT_TRUE(r.owned_by_current()) << "a failed release changed the owner";
  EXPECT_EQ(r.depth(), 1u);
  r.release();
  auto unlocker = spawn([&] { return throws_with<greenlet_error>([&] { r.unlock(); }, "not locked"); });
  EXPECT_TRUE(unlocker.get(5s));
}

TEST_F(semaphore_test, rlock_handed_over_belongs_to_the_waiter) {
  rlock r;
  r.acquire();
  auto waiter = spawn([&] {
    std::lock_guard hold(r);
    return r.owned_by_current();
  });
  ASSERT_TRUE(yield_until([&] { return r.waiters() == 1; }));
  r.release();
  EXPECT_TRUE(r.locked()) << "handed over, not freed";
  EXPECT_FALSE(r.try_acquire()) << "the releaser barged back in";
  EXPECT_TRUE(waiter.get(5s));
  EXPECT_FALSE(r.locked());
}

}  // namespace
