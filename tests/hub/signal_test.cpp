// Tests for greenev/signal.hpp: the function runs in a new greenlet spawned
// by the hub (not in the asynchronous handler), once per delivery; cancel()
// and the destructor stop it; a failure is reported and later deliveries
// still run; a handler alone does not keep the loop alive; misuse (bad
// signal numbers, a hub that is not the first of the process). Each test runs in
// its own process (ctest runs every TEST separately), so signal dispositions
// changed here do not leak into other tests. Ports the contracts of gevent's
// test__signal.py.
#include <greenev/signal.hpp>

#include <atomic>
#include <csignal>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::event;
using greenev::signal_handler;
using greenev::testing::throws_with;
using signal_test = greenev::testing::hub_test;

TEST_F(signal_test, the_function_runs_in_a_new_greenlet_after_the_signal) {
  event ran;
  bool raise_returned = false;
  bool ran_after_raise = false;
  greenev::greenlet runner;
  signal_handler handler(SIGUSR1, [&] {
    ran_after_raise = raise_returned;
    runner = greenev::greenlet::current();
    ran.set();
  });
  EXPECT_TRUE(handler.active());
  EXPECT_EQ(handler.signum(), SIGUSR1);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  raise_returned = true;
  EXPECT_FALSE(ran.is_set()) << "the function ran inside the signal handler";
  ASSERT_TRUE(ran.wait(2s));
  EXPECT_TRUE(ran_after_raise);
  ASSERT_TRUE(runner);
  EXPECT_FALSE(runner.is_main());
  EXPECT_NE(runner, greenev::hub::current().hub_greenlet());
  EXPECT_EQ(runner.parent(), greenev::hub::current().hub_greenlet());  // a spawned task
  EXPECT_NE(runner.name().find("signal"), std::string::npos) << runner.name();
  runner = {};
}

TEST_F(signal_test, every_delivery_runs_the_function_again) {
  int runs = 0;
  event ran;
  signal_handler handler(SIGUSR2, [&] {
    ++runs;
    ran.set();
  });
  for (int i = 1; i <= 3; ++i) {
    ran.clear();
    ASSERT_EQ(std::raise(SIGUSR2), 0);
    ASSERT_TRUE(ran.wait(2s));
    EXPECT_EQ(runs, i);
  }
}

TEST_F(signal_test, the_function_may_block) {
  event done;
  signal_handler handler(SIGUSR1, [&] {
    greenev::sleep(0.01);
    done.set();
  });
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_TRUE(done.wait(2s));
}

TEST_F(signal_test, cancel_stops_it_and_other_handlers_keep_running) {
  int cancelled_runs = 0;
  event kept_ran;
  signal_handler cancelled(SIGUSR1, [&] { ++cancelled_runs; });
  // A second handler keeps SIGUSR1 caught: with none left, libev resets it
  // to SIG_DFL and the raise below would end the process.
  signal_handler kept(SIGUSR1, [&] { kept_ran.set(); });
  EXPECT_EQ(greenev::hub::current().active_watchers(), 2u);
  cancelled.cancel();
  cancelled.cancel();  // idempotent
  EXPECT_FALSE(cancelled.active());
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  ASSERT_TRUE(kept_ran.wait(2s));
  greenev::sleep(0.02);  // room for a (wrong) second run
  EXPECT_EQ(cancelled_runs, 0);
}

TEST_F(signal_test, the_destructor_stops_it) {
  int destroyed_runs = 0;
  event kept_ran;
  signal_handler kept(SIGUSR1, [&] { kept_ran.set(); });
  {
    signal_handler scoped(SIGUSR1, [&] { ++destroyed_runs; });
    EXPECT_EQ(greenev::hub::current().active_watchers(), 2u);
  }
  EXPECT_EQ(greenev::hub::current().active_watchers(), 1u);
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  ASSERT_TRUE(kept_ran.wait(2s));
  greenev::sleep(0.02);
  EXPECT_EQ(destroyed_runs, 0);
}

TEST_F(signal_test, a_failure_is_reported_and_later_deliveries_still_run) {
  int runs = 0;
  event ran;
  signal_handler handler(SIGUSR1, [&] {
    ++runs;
    ran.set();
    if (runs == 1) throw std::runtime_error("signal function failed");
  });
  testing::internal::CaptureStderr();
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  ASSERT_TRUE(ran.wait(2s));
  greenev::yield();  // the task finishes (and reports) after setting the event
  const std::string reported = testing::internal::GetCapturedStderr();
  EXPECT_NE(reported.find("failed with std::runtime_error: signal function failed"), std::string::npos)
      << reported;
  ran.clear();
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  ASSERT_TRUE(ran.wait(2s));
  EXPECT_EQ(runs, 2);
}

TEST_F(signal_test, a_handler_alone_does_not_keep_the_loop_alive) {
  event never;
  signal_handler handler(SIGUSR1, [&] { never.set(); });
  // If the handler kept the loop alive, the wait below would block: this
  // thread then ends it after 2 s, and the test fails instead of hanging.
  std::atomic<bool> finished{false};
  greenev::hub& main_hub = greenev::hub::current();
  std::thread rescuer([&] {
    for (int i = 0; i < 200 && !finished; ++i) std::this_thread::sleep_for(10ms);
    if (!finished) main_hub.run_callback_threadsafe([&] { never.set(); });
  });
  // gevent's signal watchers are ref=False: waiting on nothing else is
  // reported as blocking forever, not a silent hang.
  EXPECT_TRUE(throws_with<greenev::loop_exit>([&] { never.wait(); }, "block forever"));
  finished = true;
  rescuer.join();
}

TEST_F(signal_test, bad_arguments_are_rejected) {
  EXPECT_THROW(signal_handler(0, [] {}), std::invalid_argument);
  EXPECT_THROW(signal_handler(NSIG, [] {}), std::invalid_argument);
  EXPECT_THROW(signal_handler(SIGKILL, [] {}), std::invalid_argument);
  EXPECT_THROW(signal_handler(SIGSTOP, [] {}), std::invalid_argument);
  EXPECT_THROW(signal_handler(SIGUSR1, std::function<void()>{}), std::invalid_argument);
  EXPECT_EQ(greenev::hub::current().active_watchers(), 0u);
}

TEST_F(signal_test, only_the_first_hub_of_the_process_can_watch_signals) {
  bool refused = false;
  std::thread other([&] {
    refused = throws_with<greenev::greenlet_error>([] { signal_handler handler(SIGUSR1, [] {}); },
                                                   "main thread's hub");
  });
  other.join();
  EXPECT_TRUE(refused);
}

}  // namespace
