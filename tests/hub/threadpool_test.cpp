// Tests for greenev/threadpool.hpp: apply() results, exceptions and void
// functions; other greenlets run while a job blocks a worker; a lone
// greenlet waiting on a job is not told loop_exit; spawn() tasks run in
// parallel; misuse (another thread, the hub, size 0); a waiter killed while
// its job runs or is queued; destruction with jobs queued and running, or
// with a job its caller left behind (not waited for, also at process exit).
// Ports the contracts of gevent's test__threadpool.py (TestApply, TestSpawn,
// TestMaxsize, test_exception, TestKillWhileRunning).
#include <greenev/threadpool.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
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
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::threadpool;
using greenev::testing::throws_with;
using steady = std::chrono::steady_clock;
using threadpool_test = greenev::testing::hub_test;

using greenev::testing::since;

// Waits cooperatively (bounded) until `done()` holds.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = 2000ms) {
  const auto start = steady::now();
  while (!done()) {
    if (since(start) > limit) return false;
    greenev::sleep(0.002);
  }
  return true;
}

TEST_F(threadpool_test, apply_returns_the_result_computed_on_a_worker) {
  threadpool workers(2);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers.thread_count(), 0u);  // started on demand
  const auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  const std::string text = workers.apply(
      [&](const std::string& prefix, int n) {
        ran_on = std::this_thread::get_id();
        return prefix + std::to_string(n);
      },
      std::string("job "), 7);
  EXPECT_EQ(text, "job 7");
  EXPECT_NE(ran_on, caller);
  EXPECT_EQ(workers.thread_count(), 1u);
  // A function taking an lvalue reference gets the stored copy.
  EXPECT_EQ(workers.apply([](std::string& s) { return s += "!"; }, std::string("ref")), "ref!");
  int side_effect = 0;
  workers.apply([&] { side_effect = 5; });  // void
  EXPECT_EQ(side_effect, 5);
  EXPECT_EQ(workers.apply([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(3)), 3);
}

TEST_F(threadpool_test, apply_rethrows_the_workers_exception) {
  threadpool workers(1);
  EXPECT_TRUE(throws_with<std::out_of_range>(
      [&] { (void)workers.apply([]() -> int { throw std::out_of_range("job failed on a worker"); }); },
      "job failed on a worker"));
  EXPECT_EQ(workers.apply([] { return 1; }), 1);  // the worker survived
}

TEST_F(threadpool_test, greenlets_keep_running_while_a_job_blocks_a_worker) {
  threadpool workers(1);
  std::atomic<bool> done{false};
  int spins = 0;
  auto spinner = greenev::spawn([&] {
    while (!done) {
      ++spins;
      greenev::sleep(0.001);
    }
  });
  const auto start = steady::now();
  const int value = workers.apply([] {
    std::this_thread::sleep_for(100ms);
    return 42;
  });
  const auto waited = since(start);
  const int spins_during_job = spins;
  done = true;
  spinner.join();
  EXPECT_EQ(value, 42);
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 2000ms);
  EXPECT_GT(spins_during_job, 0);
}

TEST_F(threadpool_test, a_lone_greenlet_waiting_on_a_job_is_not_told_loop_exit) {
  threadpool workers(1);
  // Nothing else in the loop: only the outstanding job keeps it alive.
  EXPECT_EQ(workers.apply([] {
    std::this_thread::sleep_for(50ms);
    return 1;
  }),
            1);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(threadpool_test, spawn_runs_jobs_in_parallel_and_returns_tasks) {
  threadpool workers(4);
  const auto start = steady::now();
  std::vector<greenev::task<int>> tasks;
  for (int i = 0; i < 4; ++i) {
    tasks.push_back(workers.spawn(
        [](int n) {
          std::this_thread::sleep_for(100ms);
          return n * n;
        },
        i));
  }
  int sum = 0;
  for (auto& t : tasks) sum += t.get(5s);
  EXPECT_EQ(sum, 0 + 1 + 4 + 9);
  EXPECT_LT(since(start), 380ms) << "four 100 ms jobs on four workers ran one after another";
  EXPECT_EQ(workers.thread_count(), 4u);
  auto failing = workers.spawn([]() -> int { throw std::runtime_error("spawned job failed"); });
  testing::internal::CaptureStderr();
  EXPECT_TRUE(throws_with<std::runtime_error>([&] { (void)failing.get(5s); }, "spawned job failed"));
  (void)testing::internal::GetCapturedStderr();
}

TEST_F(threadpool_test, use_from_another_thread_is_an_error) {
  threadpool workers(1);
  bool apply_refused = false;
  bool spawn_refused = false;
  std::thread other([&] {
    apply_refused = throws_with<greenev::greenlet_error>([&] { (void)workers.apply([] { return 1; }); },
                                                         "does not own the threadpool");
    spawn_refused = throws_with<greenev::greenlet_error>([&] { (void)workers.spawn([] { return 1; }); },
                                                         "does not own the threadpool");
  });
  other.join();
  EXPECT_TRUE(apply_refused);
  EXPECT_TRUE(spawn_refused);
  EXPECT_EQ(workers.thread_count(), 0u);  // nothing was submitted
}

TEST_F(threadpool_test, apply_in_the_hub_is_an_error_and_runs_nothing) {
  threadpool workers(1);
  std::atomic<bool> ran{false};
  bool refused = false;
  greenev::hub::current().run_callback([&] {
    refused = throws_with<greenev::greenlet_error>([&] { workers.apply([&] { ran = true; }); }, "hub");
  });
  greenev::yield();
  EXPECT_TRUE(refused);
  EXPECT_EQ(workers.thread_count(), 0u);
  EXPECT_FALSE(ran);
}

TEST_F(threadpool_test, size_zero_is_an_error) {
  EXPECT_THROW(threadpool(0), std::invalid_argument);
}

// A result whose destruction is recorded, to see a dropped result released.
struct counted_result {
  static inline std::atomic<int> live{0};
  counted_result() { ++live; }
  counted_result(const counted_result&) { ++live; }
  ~counted_result() { --live; }
};

TEST_F(threadpool_test, killing_a_waiter_while_its_job_runs_drops_the_result) {
  threadpool workers(1);
  std::atomic<bool> job_started{false};
  std::atomic<bool> job_finished{false};
  auto waiter = greenev::spawn([&] {
    (void)workers.apply([&] {
      job_started = true;
      std::this_thread::sleep_for(300ms);
      job_finished = true;
      return counted_result{};
    });
    ADD_FAILURE() << "the killed waiter resumed";
  });
  ASSERT_TRUE(eventually([&] { return job_started.load(); }));
  const auto start = steady::now();
  waiter.kill();
  EXPECT_LT(since(start), 200ms) << "kill waited for the job";
  EXPECT_TRUE(waiter.killed());
  EXPECT_FALSE(job_finished);
  // The result arrives later, with nobody waiting: dropped, not delivered.
  ASSERT_TRUE(eventually([&] { return job_finished.load(); }));
  EXPECT_TRUE(eventually([&] { return counted_result::live == 0; }));
  EXPECT_EQ(workers.apply([] { return 2; }), 2);
}

TEST_F(threadpool_test, a_job_whose_waiter_left_before_it_started_never_runs) {
  threadpool workers(1);
  std::atomic<bool> second_ran{false};
  auto busy = workers.spawn([] { std::this_thread::sleep_for(100ms); });
  auto waiter = greenev::spawn([&] { workers.apply([&] { second_ran = true; }); });
  greenev::yield();  // the waiter submitted its job, queued behind `busy`
  waiter.kill();
  busy.get(5s);
  EXPECT_EQ(workers.apply([] { return 3; }), 3);  // after the cancelled job in the queue
  EXPECT_FALSE(second_ran);

  // Likewise a spawned job whose task is killed before the job started.
  auto busy_again = workers.spawn([] { std::this_thread::sleep_for(50ms); });
  std::atomic<bool> third_ran{false};
  auto cancelled = workers.spawn([&] { third_ran = true; });
  cancelled.kill();
  busy_again.get(5s);
  EXPECT_EQ(workers.apply([] { return 4; }), 4);
  EXPECT_FALSE(third_ran);
}

TEST_F(threadpool_test, a_timeout_around_apply_leaves_the_job_behind) {
  threadpool workers(1);
  std::atomic<bool> finished{false};
  try {
    greenev::timeout deadline(30ms);
    workers.apply([&] {
      std::this_thread::sleep_for(100ms);
      finished = true;
    });
    ADD_FAILURE() << "the timeout did not interrupt apply";
  } catch (const greenev::timeout_error&) {
  }
  EXPECT_FALSE(finished);
  EXPECT_TRUE(eventually([&] { return finished.load(); }));
}

TEST_F(threadpool_test, destruction_cancels_queued_jobs_and_waits_for_running_ones) {
  std::atomic<bool> running_started{false};
  std::atomic<bool> queued_ran{false};
  greenev::task<int> running;
  greenev::task<void> queued;
  testing::internal::CaptureStderr();  // the cancelled task's failure report
  const auto start = steady::now();
  {
    threadpool workers(1);
    running = workers.spawn([&] {
      running_started = true;
      std::this_thread::sleep_for(100ms);
      return 5;
    });
    queued = workers.spawn([&] { queued_ran = true; });
    greenev::yield();  // both tasks wait for their jobs
    for (int i = 0; i < 2000 && !running_started; ++i) std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(running_started);
  }  // blocks until `running` returned
  EXPECT_GE(since(start), 90ms);
  EXPECT_EQ(running.get(5s), 5);
  EXPECT_TRUE(throws_with<greenev::threadpool_closed>([&] { queued.get(5s); }, "destroyed"));
  const std::string reported = testing::internal::GetCapturedStderr();
  EXPECT_NE(reported.find("threadpool_closed"), std::string::npos) << reported;
  EXPECT_FALSE(queued_ran);
}

// A job whose caller timed out (the thread resolver's getaddrinfo stuck on a
// dead nameserver, say) is not waited for when the threadpool goes: its
// worker is let go and finishes on its own, dropping the result. Here the
// job blocks on a pipe until the test writes to it; if destruction waited,
// a helper would release it after 5 s and the bound below fails.
TEST_F(threadpool_test, destruction_does_not_wait_for_a_job_its_caller_left_behind) {
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  std::promise<void> destroyed;
  std::thread rescuer([&gate, done = destroyed.get_future()] {
    if (done.wait_for(5s) != std::future_status::ready) (void)!::write(gate[1], "x", 1);
  });
  std::atomic<bool> finished{false};
  const auto start = steady::now();
  {
    threadpool workers(1);
    try {
      greenev::timeout deadline(30ms);
      workers.apply([&finished, fd = gate[0]] {
        char byte = 0;
        (void)!::read(fd, &byte, 1);
        finished = true;
        return counted_result{};
      });
      ADD_FAILURE() << "the timeout did not interrupt apply";
    } catch (const greenev::timeout_error&) {
    }
  }
  EXPECT_LT(since(start), 4s) << "destruction waited for the job left behind";
  destroyed.set_value();
  rescuer.join();
  EXPECT_FALSE(finished);
  ASSERT_EQ(::write(gate[1], "x", 1), 1);  // lets the worker finish
  EXPECT_TRUE(eventually([&] { return finished.load(); }));
  EXPECT_TRUE(eventually([&] { return counted_result::live == 0; })) << "the dropped result was kept";
  EXPECT_EQ(greenev::hub::current().pending_callbacks(), 0u);
  // Nothing comes back to the hub: a wait with nothing else to wake it ends.
  EXPECT_TRUE(throws_with<greenev::loop_exit>([] { (void)greenev::event{}.wait(); }, "block forever"));
  ::close(gate[0]);
  ::close(gate[1]);
}

// The same at process exit, where the thread resolver's threadpool goes with
// the main thread's thread-locals: after a timed-out job that blocks for
// good, the program exits at once. In a child process; a hang ends it with
// SIGALRM and fails the test.
TEST(threadpool_exit_DeathTest, a_job_left_behind_does_not_hold_up_process_exit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const auto start = steady::now();
  EXPECT_EXIT(
      {
        ::alarm(20);
        (void)greenev::hub::current();
        static thread_local std::unique_ptr<threadpool> workers;  // goes before the hub
        workers = std::make_unique<threadpool>(2);
        static int never[2];
        if (::pipe(never) != 0) std::exit(2);
        bool timed_out = false;
        try {
          greenev::with_timeout(0.05, [&] {
            workers->apply([fd = never[0]] {
              char byte = 0;
              return ::read(fd, &byte, 1);
            });
          });
        } catch (const greenev::timeout_error&) {
          timed_out = true;
        }
        std::exit(timed_out ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
  EXPECT_LT(since(start), 15s);
}

TEST_F(threadpool_test, many_jobs_from_many_greenlets) {
  threadpool workers(3);
  std::vector<greenev::task<int>> callers;
  for (int i = 0; i < 50; ++i) {
    callers.push_back(greenev::spawn([&, i] {
      int total = 0;
      for (int j = 0; j < 4; ++j) total += workers.apply([](int a, int b) { return a * b; }, i, j);
      return total;
    }));
  }
  long sum = 0;
  for (auto& c : callers) sum += c.get(10s);
  // sum over i of i * (0 + 1 + 2 + 3)
  EXPECT_EQ(sum, 6L * (49 * 50 / 2));
  EXPECT_LE(workers.thread_count(), 3u);
}

}  // namespace
