// Tests for greenev/queue.hpp: queue, lifo_queue, priority_queue,
// joinable_queue and channel. Ports gevent's test__queue (TestQueue,
// TestChannel, TestJoinableQueue, TestNoWait, TestJoinEmpty) and adds
// greenev's own contracts: FIFO order of waiting getters and putters, direct
// hand-off (no barging), items never lost when a greenlet is interrupted
// after a hand-over, peek, move-only items, queues built from items, and
// shutdown() as Python 3.13's Queue.shutdown (test_queue's shutdown tests).
// Timing-based checks of every blocking call are in blocking_contract_test.cpp.
#include <greenev/queue.hpp>

#include <chrono>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
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
using greenev::async_result;
using greenev::basic_task;
using greenev::channel;
using greenev::greenlet_error;
using greenev::greenlet_exit;
using greenev::joinable_queue;
using greenev::queue_empty;
using greenev::queue_full;
using greenev::queue_shut_down;
using greenev::spawn;
using greenev::testing::throws_with;

class queue_test : public greenev::testing::hub_test {};

template <class Predicate>
bool yield_until(Predicate done, int rounds = 100) {
  for (int i = 0; i < rounds && !done(); ++i) greenev::yield();
  return done();
}

// Queues `fn` as a hub callback (where nothing may block).
void in_hub(std::function<void()> fn) {
  greenev::hub::current().run_callback(std::move(fn));
}

// --- gevent's TestQueue ------------------------------------------------------

TEST_F(queue_test, send_first) {
  greenev::queue<std::string> q;
  bool other_ran = false;
  auto other = spawn([&] { other_ran = true; });
  q.put("hi");
  EXPECT_EQ(q.peek(), "hi");
  EXPECT_EQ(q.get(), "hi");
  EXPECT_FALSE(other_ran) << "put/peek/get switched although none had to wait";
  other.join();
}

TEST_F(queue_test, peek_empty) {
  greenev::queue<int> q;
  // Nothing else could ever put: the hub says so instead of hanging.
  EXPECT_THROW(q.peek(), greenev::loop_exit);
  EXPECT_THROW(q.peek_nowait(), queue_empty);
  auto waiter = spawn([&] { return throws_with<queue_empty>([&] { q.peek(0.01); }, "empty"); });
  EXPECT_TRUE(waiter.get(5s));
}

TEST_F(queue_test, peek_multi_greenlet) {
  greenev::queue<int> q;
  auto peeker = spawn([&] { return q.peek(); });
  greenev::yield();
  q.put(1);
  EXPECT_EQ(peeker.get(5s), 1);
  EXPECT_EQ(q.size(), 1u) << "peek consumed the item";
  EXPECT_EQ(q.peek(), 1);
}

TEST_F(queue_test, send_last) {
  greenev::queue<std::string> q;
  auto waiter = spawn([&] {
    greenev::timeout deadline(10s);  // far past main's 10 ms sleeps, however late the hub wakes
    return q.get();
  });
  greenev::sleep(0.01);
  q.put("hi2");
  greenev::sleep(0.01);
  EXPECT_EQ(waiter.get(0.0), "hi2");
}

TEST_F(queue_test, max_size) {
  greenev::queue<std::string> q(2);
  std::vector<std::string> results;
  auto putter = spawn([&] {
    for (const char* item : {"a", "b", "c"}) {
      q.put(item);
      results.emplace_back(item);
    }
  });
  greenev::yield();
  EXPECT_EQ(results, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.get(), "a");
  greenev::yield();
  EXPECT_EQ(results, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(q.get(), "b");
  EXPECT_EQ(q.get(), "c");
  EXPECT_TRUE(putter.join(0.0));
}

TEST_F(queue_test, zero_max_size_channel) {
  channel<std::string> q;
  async_result<std::string> e1;
  async_result<std::string> e2;
  auto sender = spawn([&] {
    q.put("hi");
    e1.set("done");
  });
  greenev::sleep(0.001);
  EXPECT_FALSE(e1.ready()) << "a channel put returned without a getter";
  auto receiver = spawn([&] { e2.set(q.get()); });
  EXPECT_EQ(e2.get(5s), "hi");
  EXPECT_EQ(e1.get(5s), "done");
  EXPECT_EQ(greenev::joinall({sender, receiver}, 1s).size(), 2u);
}

TEST_F(queue_test, multiple_waiters) {
  greenev::queue<std::string> q;
  std::vector<async_result<std::string>> results(4);
  std::vector<basic_task> waiters;
  for (auto& result : results) waiters.push_back(spawn([&] { result.set(q.get()); }));
  greenev::sleep(0.01);
  std::set<std::string> seen;
  auto collect = [&] {
    for (auto& result : results) {
      if (result.wait(0.001)) seen.insert(*result.value());
    }
    return seen.size();
  };
  q.put("1");
  EXPECT_EQ(collect(), 1u);
  q.put("2");
  EXPECT_EQ(collect(), 2u);
  q.put("3");
  q.put("4");
  EXPECT_EQ(collect(), 4u);
  greenev::joinall(waiters);
}

// gevent's do_receive: a get() under a zero timeout, which fires before
// anything is put.
std::string receive_or_time_out(greenev::queue<std::string>& q) {
  try {
    greenev::timeout deadline(0.0);
    return q.get();
  } catch (const greenev::timeout_error&) {
    return "timed out";
  }
}

TEST_F(queue_test, waiters_that_cancel) {
  greenev::queue<std::string> q;
  auto receiver = spawn([&] { return receive_or_time_out(q); });
  EXPECT_EQ(receiver.get(5s), "timed out");
  q.put("hi");
  EXPECT_EQ(q.get(), "hi");
}

TEST_F(queue_test, senders_that_die) {
  greenev::queue<std::string> q;
  spawn([&] { q.put("sent"); });
  EXPECT_EQ(q.get(), "sent");
}

TEST_F(queue_test, two_waiters_one_dies) {
  greenev::queue<std::string> q;
  auto dying = spawn([&] { return receive_or_time_out(q); });
  auto waiting = spawn([&] { return q.get(); });
  greenev::sleep(0.1);
  q.put("hi");
  EXPECT_EQ(dying.get(5s), "timed out");
  EXPECT_EQ(waiting.get(5s), "hi");
}

TEST_F(queue_test, two_bogus_waiters) {
  greenev::queue<std::string> q;
  auto e1 = spawn([&] { return receive_or_time_out(q); });
  auto e2 = spawn([&] { return receive_or_time_out(q); });
  greenev::sleep(0.1);
  q.put("sent");
  EXPECT_EQ(e1.get(5s), "timed out");
  EXPECT_EQ(e2.get(5s), "timed out");
  EXPECT_EQ(q.get(), "sent");
}

// --- gevent's TestChannel ----------------------------------------------------

TEST_F(queue_test, channel_send) {
  channel<std::string> ch;
  std::vector<std::string> events;
  auto other = spawn([&] {
    events.push_back(ch.get());
    events.push_back(ch.get());
  });
  events.emplace_back("sending");
  ch.put("hello");
  events.emplace_back("sent hello");
  ch.put("world");
  events.emplace_back("sent world");
  EXPECT_EQ(events, (std::vector<std::string>{"sending", "hello", "sent hello", "world", "sent world"}));
  other.get(5s);
}

TEST_F(queue_test, channel_wait) {
  channel<std::string> ch;
  std::vector<std::string> events;
  auto other = spawn([&] {
    events.emplace_back("sending hello");
    ch.put("hello");
    events.emplace_back("sending world");
    ch.put("world");
    events.emplace_back("sent world");
  });
  events.emplace_back("waiting");
  events.push_back(ch.get());
  events.push_back(ch.get());
  EXPECT_EQ(events,
            (std::vector<std::string>{"waiting", "sending hello", "hello", "sending world", "world"}));
  greenev::yield();
  EXPECT_EQ(events, (std::vector<std::string>{"waiting", "sending hello", "hello", "sending world", "world",
                                              "sent world"}));
  other.get(5s);
}

TEST_F(queue_test, channel_is_always_empty_and_full) {
  channel<int> ch;
  EXPECT_TRUE(ch.empty());
  EXPECT_TRUE(ch.full());
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.maxsize(), 0u);
  EXPECT_THROW(ch.put_nowait(1), queue_full);
  EXPECT_THROW(ch.get_nowait(), queue_empty);
  EXPECT_FALSE(ch.try_get());
}

TEST_F(queue_test, channel_putters_meet_getters_in_fifo_order) {
  channel<int> ch;
  std::vector<basic_task> putters;
  for (int i = 0; i < 3; ++i) putters.push_back(spawn([&, i] { ch.put(i); }));
  ASSERT_TRUE(yield_until([&] { return ch.putters() == 3; }));
  EXPECT_EQ(ch.get(), 0);
  EXPECT_EQ(ch.get(), 1);
  EXPECT_EQ(ch.get(), 2);
  greenev::joinall(putters);
}

// --- gevent's TestJoinableQueue and TestJoinEmpty -----------------------------

TEST_F(queue_test, task_done) {
  joinable_queue<std::shared_ptr<int>> q;
  auto item = std::make_shared<int>(7);
  spawn([&] { q.put(item); });
  EXPECT_EQ(q.get(), item);
  EXPECT_EQ(q.unfinished_tasks(), 1u);
  q.task_done();
  EXPECT_EQ(q.unfinished_tasks(), 0u);
}

TEST_F(queue_test, join_returns_at_once_without_items) {  // gevent issue 45
  joinable_queue<int> q;
  bool other_ran = false;
  auto other = spawn([&] { other_ran = true; });
  EXPECT_TRUE(q.join());
  EXPECT_FALSE(other_ran) << "join() switched with nothing pending";
  other.join();
}

TEST_F(queue_test, task_done_too_many_times_throws) {
  joinable_queue<int> q;
  EXPECT_TRUE(throws_with<greenlet_error>([&] { q.task_done(); }, "too many times"));
  q.put(1);
  (void)q.get();
  q.task_done();
  EXPECT_THROW(q.task_done(), greenlet_error);
  EXPECT_EQ(q.unfinished_tasks(), 0u);
}

TEST_F(queue_test, join_waits_for_every_task_done) {
  joinable_queue<int> q(2);
  std::vector<int> processed;
  auto worker = [&] {
    for (;;) {
      const int item = q.get();
      if (item < 0) {
        q.task_done();
        return;
      }
      greenev::sleep(0.002);
      processed.push_back(item);
      q.task_done();
    }
  };
  auto w1 = spawn(worker);
  auto w2 = spawn(worker);
  for (int i = 0; i < 10; ++i) q.put(i);  // waits while full: putters count once accepted
  EXPECT_FALSE(q.join(0.0));
  EXPECT_TRUE(q.join(5s));
  EXPECT_EQ(processed.size(), 10u);
  EXPECT_EQ(q.unfinished_tasks(), 0u);
  q.put(-1);
  q.put(-1);
  EXPECT_TRUE(q.join(5s));
  greenev::joinall({w1, w2});
}

// --- gevent's TestNoWait: the non-blocking forms work inside the hub ---------

TEST_F(queue_test, put_nowait_simple) {
  greenev::queue<int> q(1);
  std::vector<std::string> result;
  auto store = [&](int item) {
    try {
      q.put_nowait(item);
      result.emplace_back("ok");
    } catch (const queue_full&) {
      result.emplace_back("full");
    }
  };
  in_hub([&] { store(2); });
  in_hub([&] { store(3); });
  greenev::yield();
  EXPECT_EQ(result, (std::vector<std::string>{"ok", "full"}));
}

TEST_F(queue_test, get_nowait_simple) {
  greenev::queue<int> q(1);
  q.put(4);
  std::vector<std::string> result;
  auto store = [&] {
    try {
      result.push_back(std::to_string(q.get_nowait()));
    } catch (const queue_empty&) {
      result.emplace_back("empty");
    }
  };
  in_hub(store);
  in_hub(store);
  greenev::yield();
  EXPECT_EQ(result, (std::vector<std::string>{"4", "empty"}));
}

TEST_F(queue_test, get_nowait_unlock) {
  greenev::queue<int> q(1);
  std::vector<int> result;
  auto putter = spawn([&] { q.put(5); });
  EXPECT_TRUE(q.empty());
  greenev::yield();
  EXPECT_TRUE(q.full());
  in_hub([&] { result.push_back(q.get_nowait()); });
  greenev::yield();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(result, (std::vector<int>{5}));
  EXPECT_TRUE(putter.ready());
}

TEST_F(queue_test, get_nowait_unlock_channel) {
  channel<int> q;
  std::vector<int> result;
  auto putter = spawn([&] { q.put(5); });
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.full());
  greenev::sleep(0.001);
  EXPECT_EQ(q.putters(), 1u);
  in_hub([&] { result.push_back(q.get_nowait()); });
  // A join, not a short sleep: the putter's wake-up is queued by the callback,
  // after a timer that fired late could already have queued this greenlet's.
  EXPECT_TRUE(putter.join(5s));
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.full());
  EXPECT_EQ(result, (std::vector<int>{5}));
}

TEST_F(queue_test, put_nowait_unlock) {
  greenev::queue<int> q;
  auto getter = spawn([&] { return q.get(); });
  greenev::sleep(0.001);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  bool put = false;
  in_hub([&] {
    q.put_nowait(10);
    put = true;
  });
  EXPECT_FALSE(getter.ready());
  // get(), not a short sleep: the getter's wake-up is queued by the callback,
  // after a timer that fired late could already have queued this greenlet's.
  EXPECT_EQ(getter.get(5s), 10);
  EXPECT_TRUE(put);
  EXPECT_TRUE(q.empty());
}

TEST_F(queue_test, blocking_in_the_hub_throws_greenlet_error) {
  greenev::queue<int> q(1);
  channel<int> ch;
  std::vector<bool> threw;
  in_hub([&] {
    threw.push_back(throws_with<greenlet_error>([&] { q.get(); }, "would block the hub"));
    q.put(1);  // room: no need to block
    threw.push_back(throws_with<greenlet_error>([&] { q.put(2); }, "would block the hub"));
    threw.push_back(throws_with<greenlet_error>([&] { ch.put(3); }, "would block the hub"));
  });
  greenev::yield();
  EXPECT_EQ(threw, (std::vector<bool>{true, true, true}));
  EXPECT_EQ(q.getters() + q.putters() + ch.putters(), 0u);
  EXPECT_EQ(q.get(), 1);
}

TEST_F(queue_test, channel_put_in_the_hub_hands_over_without_waiting) {
  channel<int> ch;
  auto getter = spawn([&] { return ch.get(); });
  greenev::yield();
  in_hub([&] { ch.put(8); });  // gevent lets the hub hand an item to a waiting getter
  EXPECT_EQ(getter.get(5s), 8);
}

// --- Order ---------------------------------------------------------------------

TEST_F(queue_test, priority_queue_returns_the_smallest_first) {
  greenev::priority_queue<int> q;
  for (int item : {5, 1, 4, 2, 3}) q.put(item);
  EXPECT_EQ(q.peek(), 1);
  std::vector<int> out;
  while (auto item = q.try_get()) out.push_back(*item);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4, 5}));

  greenev::priority_queue<std::pair<int, std::string>> tasks;  // the usual (priority, payload)
  tasks.put({2, "later"});
  tasks.put({1, "first"});
  EXPECT_EQ(tasks.get().second, "first");

  greenev::priority_queue<int, std::greater<int>> largest_first;
  for (int item : {5, 1, 4}) largest_first.put(item);
  EXPECT_EQ(largest_first.get(), 5);
  EXPECT_EQ(largest_first.get(), 4);
}

TEST_F(queue_test, lifo_queue_returns_the_newest_first) {
  greenev::lifo_queue<int> q;
  for (int item : {1, 2, 3}) q.put(item);
  EXPECT_EQ(q.peek(), 3);
  EXPECT_EQ(q.get(), 3);
  EXPECT_EQ(q.get(), 2);
  q.put(4);
  EXPECT_EQ(q.get(), 4);
  EXPECT_EQ(q.get(), 1);
}

TEST_F(queue_test, waiting_getters_are_served_in_fifo_order) {
  greenev::queue<int> q;
  std::vector<int> got(3, -1);
  std::vector<basic_task> getters;
  for (int i = 0; i < 3; ++i) getters.push_back(spawn([&, i] { got[i] = q.get(); }));
  ASSERT_TRUE(yield_until([&] { return q.getters() == 3; }));
  for (int item : {10, 11, 12}) q.put(item);
  greenev::joinall(getters);
  EXPECT_EQ(got, (std::vector<int>{10, 11, 12}));
}

TEST_F(queue_test, waiting_putters_are_served_in_fifo_order) {
  greenev::queue<int> q(1);
  q.put(0);
  std::vector<basic_task> putters;
  for (int i = 1; i <= 3; ++i) putters.push_back(spawn([&, i] { q.put(i); }));
  ASSERT_TRUE(yield_until([&] { return q.putters() == 3; }));
  std::vector<int> out;
  for (int i = 0; i < 4; ++i) out.push_back(q.get());
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2, 3}));
  greenev::joinall(putters);
}

// --- Hand-off ------------------------------------------------------------------

TEST_F(queue_test, put_hands_the_item_to_a_waiting_getter) {
  greenev::queue<int> q;
  auto getter = spawn([&] { return q.get(); });
  ASSERT_TRUE(yield_until([&] { return q.getters() == 1; }));
  q.put(1);
  EXPECT_EQ(q.size(), 0u) << "the item should go straight to the waiting getter";
  EXPECT_FALSE(q.try_get()) << "a later get() barged in";
  EXPECT_EQ(getter.get(5s), 1);
}

TEST_F(queue_test, get_from_a_full_queue_lets_the_first_putter_in) {
  greenev::queue<int> q(1);
  q.put(1);
  auto putter = spawn([&] { q.put(2); });
  ASSERT_TRUE(yield_until([&] { return q.putters() == 1; }));
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.size(), 1u) << "the waiting putter's item should be in at once";
  EXPECT_THROW(q.put_nowait(3), queue_full) << "a later put() barged in";
  EXPECT_TRUE(putter.join(5s));
  EXPECT_EQ(q.get(), 2);
}

TEST_F(queue_test, item_handed_to_a_killed_getter_goes_to_the_next) {
  greenev::queue<int> q;
  auto first = spawn([&] { return q.get(); });
  auto second = spawn([&] { return q.get(); });
  ASSERT_TRUE(yield_until([&] { return q.getters() == 2; }));
  first.kill({.block = false});  // queued before the wake-up
  q.put(42);
  EXPECT_EQ(second.get(5s), 42);
  EXPECT_TRUE(first.join(5s));
  EXPECT_TRUE(first.killed());
  EXPECT_TRUE(q.empty());
}

TEST_F(queue_test, item_handed_to_a_killed_last_getter_goes_back_first) {
  greenev::queue<int> q;
  auto only = spawn([&] { return q.get(); });
  ASSERT_TRUE(yield_until([&] { return q.getters() == 1; }));
  only.kill({.block = false});
  q.put(1);
  q.put(2);  // no getter is waiting any more: stored
  EXPECT_TRUE(only.join(5s));
  EXPECT_EQ(q.size(), 2u) << "the handed item was lost";
  EXPECT_EQ(q.get(), 1) << "the handed item should be the next one out";
  EXPECT_EQ(q.get(), 2);
}

TEST_F(queue_test, channel_item_handed_to_a_killed_getter_is_not_lost) {
  channel<int> ch;
  auto getter = spawn([&] { return ch.get(); });
  ASSERT_TRUE(yield_until([&] { return ch.getters() == 1; }));
  getter.kill({.block = false});
  ch.put(9);  // handed over; waits until the getter ran — it died instead
  EXPECT_TRUE(getter.join(5s));
  EXPECT_EQ(ch.get_nowait(), 9);
  EXPECT_TRUE(ch.empty());
}

TEST_F(queue_test, putter_interrupted_after_its_item_was_taken_leaves_it_in) {
  greenev::queue<int> q(1);
  q.put(1);
  auto putter = spawn([&] { q.put(2); });
  ASSERT_TRUE(yield_until([&] { return q.putters() == 1; }));
  putter.kill({.block = false});
  EXPECT_EQ(q.get(), 1);  // takes the putter's item in, then the kill lands
  EXPECT_TRUE(putter.join(5s));
  EXPECT_TRUE(putter.killed());
  EXPECT_EQ(q.get_nowait(), 2);
}

TEST_F(queue_test, timed_out_putter_leaves_nothing_behind) {
  greenev::queue<int> q(1);
  q.put(1);
  EXPECT_THROW(q.put(2, 0.01), queue_full);
  EXPECT_EQ(q.putters(), 0u);
  EXPECT_EQ(q.get(), 1);
  EXPECT_TRUE(q.empty()) << "a timed-out putter's item got in";
}

// --- peek, sizes, items ----------------------------------------------------------

TEST_F(queue_test, peek_waits_for_an_item_and_leaves_it) {
  greenev::queue<int> q;
  auto peeker = spawn([&] { return q.peek(5s); });
  greenev::yield();  // runs every ready greenlet: the peeker parks in peek()
  EXPECT_FALSE(peeker.ready());
  q.put(3);
  EXPECT_EQ(peeker.get(5s), 3);
  EXPECT_EQ(q.get(), 3);
}

TEST_F(queue_test, sizes) {
  greenev::queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  q.put(1);
  EXPECT_EQ(q.size(), 1u);
  q.put(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), queue_full);
  greenev::queue<int> unbounded;
  for (int i = 0; i < 1000; ++i) unbounded.put(i);
  EXPECT_FALSE(unbounded.full());
  EXPECT_EQ(unbounded.maxsize(), 0u);
  EXPECT_EQ(unbounded.size(), 1000u);
}

TEST_F(queue_test, get_with_a_timeout_returns_an_item_that_arrives_in_time) {
  greenev::queue<int> q;
  greenev::spawn_later(0.01, [&] { q.put(5); });
  EXPECT_EQ(q.get(5s), 5);
}

TEST_F(queue_test, move_only_items) {
  greenev::queue<std::unique_ptr<int>> q(1);
  q.put(std::make_unique<int>(1));
  auto putter = spawn([&] { q.put(std::make_unique<int>(2)); });
  ASSERT_TRUE(yield_until([&] { return q.putters() == 1; }));
  EXPECT_EQ(*q.get(), 1);
  EXPECT_EQ(*q.get(), 2);
  channel<std::unique_ptr<int>> ch;
  auto sender = spawn([&] { ch.put(std::make_unique<int>(3)); });
  EXPECT_EQ(*ch.get(), 3);
  greenev::joinall({putter, sender});
}

// --- construction from items ------------------------------------------------

TEST_F(queue_test, starts_with_the_items_given_in_put_order) {
  greenev::queue<std::string> fifo(0, {"a", "b", "c"});
  EXPECT_EQ(fifo.size(), 3u);
  EXPECT_EQ(fifo.get(), "a");
  EXPECT_EQ(fifo.get(), "b");
  greenev::lifo_queue<int> lifo(0, std::vector<int>{1, 2, 3});
  EXPECT_EQ(lifo.get(), 3);
  greenev::priority_queue<int> smallest_first(0, std::list<int>{5, 1, 3});
  EXPECT_EQ(smallest_first.get(), 1);
  EXPECT_EQ(smallest_first.get(), 3);
  std::vector<std::unique_ptr<int>> owned;
  owned.push_back(std::make_unique<int>(7));
  greenev::queue<std::unique_ptr<int>> moved(
      1, std::ranges::subrange(std::make_move_iterator(owned.begin()), std::make_move_iterator(owned.end())));
  EXPECT_EQ(*moved.get(), 7);
}

TEST_F(queue_test, a_bounded_queue_starts_full_and_refuses_too_many_items) {
  greenev::queue<int> full(2, {1, 2});
  EXPECT_TRUE(full.full());
  EXPECT_THROW(full.put_nowait(3), queue_full);
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { greenev::queue<int> q(2, {1, 2, 3}); }, "maxsize 2"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { greenev::queue<int> q(1, std::views::iota(0, 5)); },
                                                 "more items"));
}

TEST_F(queue_test, a_joinable_queue_counts_its_initial_items_unfinished) {
  joinable_queue<int> q(0, {1, 2});
  EXPECT_EQ(q.unfinished_tasks(), 2u);
  EXPECT_FALSE(q.join(0.0));
  q.get();
  q.task_done();
  q.get();
  q.task_done();
  EXPECT_TRUE(q.join(0.0));
}

// --- shutdown (Python 3.13's Queue.shutdown) ---------------------------------

TEST_F(queue_test, after_shutdown_put_throws_and_get_drains_then_throws) {
  greenev::queue<int> q(0, {1, 2});
  EXPECT_FALSE(q.is_shut_down());
  q.shutdown();
  EXPECT_TRUE(q.is_shut_down());
  EXPECT_TRUE(throws_with<queue_shut_down>([&] { q.put(3); }, "shut down"));
  EXPECT_THROW(q.put_nowait(3), queue_shut_down);
  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.peek(), 2);
  EXPECT_EQ(q.get_nowait(), 2);
  EXPECT_THROW(q.get(), queue_shut_down) << "an empty shut-down queue must not wait";
  EXPECT_THROW(q.get_nowait(), queue_shut_down);
  EXPECT_THROW(q.peek(), queue_shut_down);
  EXPECT_EQ(q.try_get(), std::nullopt);
}

TEST_F(queue_test, shutdown_wakes_waiting_getters_peekers_and_putters_with_queue_shut_down) {
  greenev::queue<int> empty;
  auto getter = spawn([&] { return empty.get(); });
  auto peeker = spawn([&] { return empty.peek(); });
  greenev::queue<int> full(1, {1});
  auto putter = spawn([&] { full.put(2); });
  ASSERT_TRUE(yield_until([&] { return empty.getters() == 1 && full.putters() == 1; }));
  empty.shutdown();
  full.shutdown();  // not immediate: its item stays, the waiting putter's is refused
  EXPECT_THROW(getter.get(5s), queue_shut_down);
  EXPECT_THROW(peeker.get(5s), queue_shut_down);
  EXPECT_THROW(putter.get(5s), queue_shut_down);
  EXPECT_EQ(full.get(), 1);
  EXPECT_THROW(full.get(), queue_shut_down) << "the refused putter's item got in";
}

TEST_F(queue_test, shutdown_immediate_drops_the_items_and_releases_join) {
  joinable_queue<int> q(2, {1, 2});
  auto putter = spawn([&] { q.put(3); });
  auto joiner = spawn([&] { return q.join(); });
  ASSERT_TRUE(yield_until([&] { return q.putters() == 1 && q.joiners() == 1; }));
  q.shutdown(true);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.unfinished_tasks(), 0u);
  EXPECT_THROW(q.get(), queue_shut_down);
  EXPECT_THROW(putter.get(5s), queue_shut_down);
  EXPECT_TRUE(joiner.get(5s));
}

// The base class's shutdown() is the only one: called through a reference to
// it, it still releases join().
TEST_F(queue_test, shutdown_through_the_base_class_releases_join) {
  joinable_queue<int> q(0, {1});
  auto joiner = spawn([&] { return q.join(); });
  ASSERT_TRUE(yield_until([&] { return q.joiners() == 1; }));
  greenev::queue<int>& base = q;
  base.shutdown(true);
  EXPECT_TRUE(joiner.get(5s));
  EXPECT_EQ(q.joiners(), 0u);
}

TEST_F(queue_test, shutdown_in_the_hub_wakes_a_waiting_getter) {
  greenev::queue<int> q;
  auto getter = spawn([&] { return q.get(); });
  ASSERT_TRUE(yield_until([&] { return q.getters() == 1; }));
  in_hub([&] { q.shutdown(true); });
  EXPECT_THROW(getter.get(5s), queue_shut_down);
}

// Every kind of queue shuts down the same way: waiting getters are woken with
// queue_shut_down, later puts are refused.
template <class Queue>
class queue_shutdown_test : public greenev::testing::hub_test {};
using queue_kinds = ::testing::Types<greenev::queue<int>, greenev::lifo_queue<int>,
                                     greenev::priority_queue<int>, joinable_queue<int>, channel<int>>;
TYPED_TEST_SUITE(queue_shutdown_test, queue_kinds);

TYPED_TEST(queue_shutdown_test, wakes_waiting_getters_and_refuses_puts) {
  TypeParam q;
  auto first = spawn([&] { return q.get(); });
  auto second = spawn([&] { return q.get(5s); });
  ASSERT_TRUE(yield_until([&] { return q.getters() == 2; }));
  q.shutdown();
  EXPECT_EQ(q.getters(), 0u);
  EXPECT_THROW(q.put(1), queue_shut_down);
  EXPECT_THROW(first.get(5s), queue_shut_down);
  EXPECT_THROW(second.get(5s), queue_shut_down);
  EXPECT_THROW(q.get(), queue_shut_down);
}

TEST_F(queue_test, channel_shutdown_refuses_a_waiting_putter) {
  channel<int> ch;
  auto putter = spawn([&] { ch.put(1); });
  ASSERT_TRUE(yield_until([&] { return ch.putters() == 1; }));
  ch.shutdown();
  EXPECT_THROW(putter.get(5s), queue_shut_down);
  EXPECT_THROW(ch.get_nowait(), queue_shut_down);
}

}  // namespace
