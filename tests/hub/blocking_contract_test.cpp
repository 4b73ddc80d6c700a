// The contract every blocking call of the hub keeps, checked once over a table
// of them (gevent's AbstractGenericWaitTestCase / AbstractGenericGetTestCase,
// applied to sleep, event, async_result, tasks, semaphores, locks, queues,
// channels, joinable queues and fd waits):
//  (a) with a timeout it returns or raises after roughly that time;
//  (b) it reports the timeout its own way: a return value, timeout_error, or
//      queue_empty / queue_full — the table says which;
//  (c) an outer greenev::timeout firing during the wait propagates as itself,
//      never swallowed nor converted, whatever the call's own timeout;
//  (d) killing the waiting task unwinds it (its destructors run) and leaves
//      no watcher and no waiter behind.
// After each case the row's finish() makes the primitive ready and checks
// that no stale waiter took what it released.
#include <cctype>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/queue.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>
#include <greenev/wait.hpp>

#include "support/hub_fixture.hpp"
#include "support/socket_pair.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::wait_time;
using greenev::testing::socket_pair;
using steady = std::chrono::steady_clock;

// How a call reports that its own timeout passed.
enum class outcome { returns, returns_false, raises_timeout_error, raises_queue_empty, raises_queue_full };

const char* describe(outcome o) {
  switch (o) {
    case outcome::returns:
      return "returns";
    case outcome::returns_false:
      return "returns false";
    case outcome::raises_timeout_error:
      return "raises timeout_error";
    case outcome::raises_queue_empty:
      return "raises queue_empty";
    case outcome::raises_queue_full:
      return "raises queue_full";
  }
  return "?";
}

// One live primitive, set up so that wait() blocks.
struct blocked_call {
  // The blocking call; returns its boolean result (true for calls that
  // return nothing).
  std::function<bool(wait_time)> wait;
  // Greenlets registered with the primitive; empty if it cannot tell.
  std::function<std::size_t()> waiters;
  // Makes the primitive ready, checks no stale waiter took anything, and
  // lets helper greenlets finish.
  std::function<void()> finish = [] {};
};

struct blocking_op {
  std::string name;
  outcome on_timeout;
  std::function<blocked_call()> make;
};

std::ostream& operator<<(std::ostream& out, const blocking_op& op) {
  return out << op.name;
}

template <class Predicate>
bool yield_until(Predicate done, int rounds = 100) {
  for (int i = 0; i < rounds && !done(); ++i) greenev::yield();
  return done();
}

std::size_t pending_callbacks() {
  return greenev::hub::current().pending_callbacks();
}

// A task that runs until its gate is set: something to join.
struct gated_task {
  std::shared_ptr<greenev::event> gate = std::make_shared<greenev::event>();
  greenev::task<int> task = greenev::spawn([gate = gate] {
    gate->wait();
    return 1;
  });
  void finish() const {
    gate->set();
    EXPECT_TRUE(task.join(5s));
  }
};

// Rows for a queue kind: get() on an empty one, put() on a full one.
template <class Queue>
void add_queue_rows(std::vector<blocking_op>& rows, const std::string& kind) {
  rows.push_back({kind + "::get (empty)", outcome::raises_queue_empty, [] {
                    auto q = std::make_shared<Queue>();
                    return blocked_call{
                        .wait =
                            [q](wait_time t) {
                              (void)q->get(t);
                              return true;
                            },
                        .waiters = [q] { return q->getters(); },
                        .finish =
                            [q] {
                              q->put(1);
                              EXPECT_EQ(q->size(), 1u) << "a stale getter took the item";
                            },
                    };
                  }});
  rows.push_back({kind + "::put (full)", outcome::raises_queue_full, [] {
                    auto q = std::make_shared<Queue>(1);
                    q->put(1);
                    return blocked_call{
                        .wait =
                            [q](wait_time t) {
                              q->put(2, t);
                              return true;
                            },
                        .waiters = [q] { return q->putters(); },
                        .finish =
                            [q] {
                              EXPECT_EQ(q->get(), 1);
                              EXPECT_TRUE(q->empty()) << "an abandoned put's item got in";
                            },
                    };
                  }});
}

std::vector<blocking_op> blocking_ops() {
  std::vector<blocking_op> rows;

  rows.push_back({"sleep", outcome::returns, [] {
                    return blocked_call{.wait = [](wait_time t) {
                      greenev::sleep(t);
                      return true;
                    }};
                  }});

  rows.push_back({"event::wait", outcome::returns_false, [] {
                    auto e = std::make_shared<greenev::event>();
                    return blocked_call{
                        .wait = [e](wait_time t) { return e->wait(t); },
                        .waiters = [e] { return e->waiters(); },
                        .finish = [e] { e->set(); },
                    };
                  }});

  // async_result cannot count its waiters: a stale one would show as a
  // wake-up queued by set().
  auto async_result_row = [](std::string name, outcome on_timeout, bool use_get) {
    return blocking_op{
        std::move(name), on_timeout, [use_get] {
          auto r = std::make_shared<greenev::async_result<int>>();
          return blocked_call{
              .wait = [r, use_get](wait_time t) { return use_get ? r->get(t) == 1 : r->wait(t); },
              .finish =
                  [r] {
                    const std::size_t before = pending_callbacks();
                    r->set(1);
                    EXPECT_EQ(pending_callbacks(), before) << "set() woke a stale waiter";
                  },
          };
        }};
  };
  rows.push_back(async_result_row("async_result::wait", outcome::returns_false, false));
  rows.push_back(async_result_row("async_result::get", outcome::raises_timeout_error, true));

  rows.push_back({"task::join", outcome::returns_false, [] {
                    gated_task target;
                    return blocked_call{
                        .wait = [target](wait_time t) { return target.task.join(t); },
                        .finish = [target] { target.finish(); },
                    };
                  }});
  rows.push_back({"task::get", outcome::raises_timeout_error, [] {
                    gated_task target;
                    return blocked_call{
                        .wait = [target](wait_time t) { return target.task.get(t) == 1; },
                        .finish = [target] { target.finish(); },
                    };
                  }});
  rows.push_back(
      {"joinall", outcome::returns_false, [] {
         gated_task target;
         return blocked_call{
             .wait = [target](wait_time t) { return greenev::joinall({target.task}, t).size() == 1; },
             .finish = [target] { target.finish(); },
         };
       }});

  rows.push_back({"semaphore::acquire", outcome::returns_false, [] {
                    auto s = std::make_shared<greenev::semaphore>(0);
                    return blocked_call{
                        .wait = [s](wait_time t) { return s->acquire(t); },
                        .waiters = [s] { return s->waiters(); },
                        .finish =
                            [s] {
                              s->release();
                              EXPECT_EQ(s->value(), 1u) << "a stale waiter was handed the unit";
                            },
                    };
                  }});

  rows.push_back({"bounded_semaphore::acquire", outcome::returns_false, [] {
                    auto s = std::make_shared<greenev::bounded_semaphore>(1);
                    EXPECT_TRUE(s->acquire());
                    return blocked_call{
                        .wait = [s](wait_time t) { return s->acquire(t); },
                        .waiters = [s] { return s->waiters(); },
                        .finish =
                            [s] {
                              s->release();
                              EXPECT_EQ(s->value(), 1u) << "a stale waiter was handed the unit";
                            },
                    };
                  }});

  // lock() when waiting forever, try_lock_for() otherwise.
  rows.push_back({"lock", outcome::returns_false, [] {
                    auto m = std::make_shared<greenev::lock>();
                    m->lock();
                    return blocked_call{
                        .wait =
                            [m](wait_time t) {
                              if (!t.is_forever()) return m->try_lock_for(t.duration());
                              m->lock();
                              return true;
                            },
                        .waiters = [m] { return m->waiters(); },
                        .finish =
                            [m] {
                              m->unlock();
                              EXPECT_TRUE(m->try_lock()) << "a stale waiter was handed the lock";
                              m->unlock();
                            },
                    };
                  }});

  // Held by another greenlet (the caller would simply re-enter its own).
  rows.push_back({"rlock", outcome::returns_false, [] {
                    auto r = std::make_shared<greenev::rlock>();
                    auto gate = std::make_shared<greenev::event>();
                    auto holder = greenev::spawn([r, gate] {
                      std::lock_guard hold(*r);
                      gate->wait();
                    });
                    EXPECT_TRUE(yield_until([&] { return r->locked(); }));
                    return blocked_call{
                        .wait =
                            [r](wait_time t) {
                              if (!t.is_forever()) return r->try_lock_for(t.duration());
                              r->lock();
                              return true;
                            },
                        .waiters = [r] { return r->waiters(); },
                        .finish =
                            [r, gate, holder] {
                              gate->set();
                              EXPECT_TRUE(holder.join(5s));
                              EXPECT_FALSE(r->locked()) << "a stale waiter was handed the rlock";
                            },
                    };
                  }});

  add_queue_rows<greenev::queue<int>>(rows, "queue");
  add_queue_rows<greenev::lifo_queue<int>>(rows, "lifo_queue");
  add_queue_rows<greenev::priority_queue<int>>(rows, "priority_queue");
  add_queue_rows<greenev::joinable_queue<int>>(rows, "joinable_queue");

  rows.push_back({"queue::peek (empty)", outcome::raises_queue_empty, [] {
                    auto q = std::make_shared<greenev::queue<int>>();
                    return blocked_call{
                        .wait =
                            [q](wait_time t) {
                              (void)q->peek(t);
                              return true;
                            },
                        .finish =
                            [q] {
                              const std::size_t before = pending_callbacks();
                              q->put(1);
                              EXPECT_EQ(pending_callbacks(), before) << "put() woke a stale peeker";
                              EXPECT_EQ(q->size(), 1u);
                            },
                    };
                  }});

  rows.push_back(
      {"channel::get", outcome::raises_queue_empty, [] {
         auto ch = std::make_shared<greenev::channel<int>>();
         return blocked_call{
             .wait =
                 [ch](wait_time t) {
                   (void)ch->get(t);
                   return true;
                 },
             .waiters = [ch] { return ch->getters(); },
             .finish = [ch] { EXPECT_THROW(ch->put_nowait(1), greenev::queue_full) << "a stale getter"; },
         };
       }});
  rows.push_back({"channel::put", outcome::raises_queue_full, [] {
                    auto ch = std::make_shared<greenev::channel<int>>();
                    return blocked_call{
                        .wait =
                            [ch](wait_time t) {
                              ch->put(1, t);
                              return true;
                            },
                        .waiters = [ch] { return ch->putters(); },
                        .finish = [ch] { EXPECT_FALSE(ch->try_get()) << "a stale putter's item"; },
                    };
                  }});

  rows.push_back({"joinable_queue::join", outcome::returns_false, [] {
                    auto q = std::make_shared<greenev::joinable_queue<int>>();
                    q->put(1);
                    return blocked_call{
                        .wait = [q](wait_time t) { return q->join(t); },
                        .waiters = [q] { return q->joiners(); },
                        .finish =
                            [q] {
                              EXPECT_EQ(q->get(), 1);
                              q->task_done();
                              EXPECT_TRUE(q->join(0.0));
                            },
                    };
                  }});

  rows.push_back({"wait (event, async_result)", outcome::returns_false, [] {
                    auto e = std::make_shared<greenev::event>();
                    auto r = std::make_shared<greenev::async_result<int>>();
                    return blocked_call{
                        .wait =
                            [e, r](wait_time t) {
                              return !greenev::wait({*e, *r}, t, 1).empty();
                            },
                        .finish =
                            [e, r] {
                              e->set();
                              r->set(1);
                              EXPECT_EQ(greenev::wait({*e, *r}, 1.0).size(), 2u);
                            },
                    };
                  }});
  rows.push_back({"wait_read", outcome::returns_false, [] {
                    auto pair = std::make_shared<socket_pair>();
                    return blocked_call{
                        .wait = [pair](wait_time t) { return greenev::wait_read(pair->fds[0], t); },
                        .finish =
                            [pair] {
                              pair->send_byte();
                              EXPECT_TRUE(greenev::wait_read(pair->fds[0], 1.0));
                            },
                    };
                  }});
  rows.push_back({"wait_write (buffer full)", outcome::returns_false, [] {
                    auto pair = std::make_shared<socket_pair>();
                    pair->fill();
                    return blocked_call{
                        .wait = [pair](wait_time t) { return greenev::wait_write(pair->fds[1], t); },
                        .finish =
                            [pair] {
                              pair->drain();
                              EXPECT_TRUE(greenev::wait_write(pair->fds[1], 1.0));
                            },
                    };
                  }});
  rows.push_back({"poll", outcome::returns_false, [] {
                    auto pair = std::make_shared<socket_pair>();
                    return blocked_call{
                        .wait =
                            [pair](wait_time t) {
                              pollfd entry{.fd = pair->fds[0], .events = POLLIN, .revents = 0};
                              return greenev::poll({&entry, 1}, t) == 1;
                            },
                        .finish =
                            [pair] {
                              pair->send_byte();
                              pollfd entry{.fd = pair->fds[0], .events = POLLIN, .revents = 0};
                              EXPECT_EQ(greenev::poll({&entry, 1}, 1.0), 1u);
                              EXPECT_EQ(entry.revents, POLLIN);
                            },
                    };
                  }});
  return rows;
}

// Runs the call and classifies how it ended.
outcome observe(const blocked_call& call, wait_time timeout) {
  try {
    return call.wait(timeout) ? outcome::returns : outcome::returns_false;
  } catch (const greenev::timeout_error&) {
    return outcome::raises_timeout_error;
  } catch (const greenev::queue_empty&) {
    return outcome::raises_queue_empty;
  } catch (const greenev::queue_full&) {
    return outcome::raises_queue_full;
  }
}

class blocking_contract : public greenev::testing::hub_test,
                          public ::testing::WithParamInterface<blocking_op> {
 protected:
  static void expect_no_waiter(const blocked_call& call) {
    if (call.waiters) {
      EXPECT_EQ(call.waiters(), 0u) << "a waiter was left behind";
    }
  }
};

constexpr auto timeout_used = 50ms;
constexpr auto at_least = timeout_used * 8 / 10;
constexpr auto at_most = 2s;

TEST_P(blocking_contract, times_out_after_roughly_its_timeout) {
  const blocked_call call = GetParam().make();
  const auto start = steady::now();
  const outcome result = observe(call, timeout_used);
  const auto elapsed = steady::now() - start;
  EXPECT_EQ(describe(result), std::string(describe(GetParam().on_timeout)));
  EXPECT_GE(elapsed, at_least);
  EXPECT_LT(elapsed, at_most);
  expect_no_waiter(call);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u) << "its timer was left running";
  call.finish();
}

TEST_P(blocking_contract, outer_timeout_propagates_as_itself) {
  for (const wait_time inner : {wait_time::forever(), wait_time(10s)}) {
    SCOPED_TRACE(inner.is_forever() ? "waiting forever" : "with a 10 s timeout of its own");
    const blocked_call call = GetParam().make();
    const auto start = steady::now();
    bool raised_by_outer = false;
    try {
      greenev::timeout outer(timeout_used);
      try {
        (void)call.wait(inner);
        ADD_FAILURE() << "returned although it could not complete";
      } catch (const greenev::timeout_error& error) {
        raised_by_outer = outer.raised(error);
      } catch (const greenev::queue_empty&) {
        ADD_FAILURE() << "the outer timeout was converted to queue_empty";
      } catch (const greenev::queue_full&) {
        ADD_FAILURE() << "the outer timeout was converted to queue_full";
      }
    } catch (const greenev::timeout_error&) {
      ADD_FAILURE() << "timeout_error escaped its scope";
    }
    const auto elapsed = steady::now() - start;
    EXPECT_TRUE(raised_by_outer) << "the outer timeout was swallowed or replaced";
    EXPECT_GE(elapsed, at_least);
    EXPECT_LT(elapsed, at_most);
    expect_no_waiter(call);
    EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
    call.finish();
  }
}

TEST_P(blocking_contract, killing_the_waiter_unwinds_it_and_cleans_up) {
  const blocked_call call = GetParam().make();
  struct sentinel {
    bool& unwound;
    ~sentinel() { unwound = true; }
  };
  bool unwound = false;
  bool waiting = false;
  bool returned = false;
  auto waiter = greenev::spawn([&] {
    sentinel on_exit{unwound};
    waiting = true;
    (void)call.wait(10s);  // its own timer must be stopped too
    returned = true;
  });
  ASSERT_TRUE(yield_until([&] { return waiting; }));
  greenev::yield();
  ASSERT_FALSE(waiter.ready()) << "the call did not block";
  if (call.waiters) {
    EXPECT_EQ(call.waiters(), 1u);
  }
  EXPECT_GE(greenev::hub::current().active_watchers(), 1u) << "no timer for the call's own timeout";
  waiter.kill();
  EXPECT_TRUE(waiter.ready());
  EXPECT_TRUE(waiter.killed());
  EXPECT_TRUE(unwound) << "the waiting task's destructors did not run";
  EXPECT_FALSE(returned);
  expect_no_waiter(call);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u) << "a watcher was left behind";
  call.finish();
}

std::string row_name(const ::testing::TestParamInfo<blocking_op>& info) {
  std::string name;
  for (const char c : info.param.name) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      name += c;
    } else if (!name.empty() && name.back() != '_') {
      name += '_';
    }
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

INSTANTIATE_TEST_SUITE_P(every_blocking_call, blocking_contract, ::testing::ValuesIn(blocking_ops()),
                         row_name);

}  // namespace
