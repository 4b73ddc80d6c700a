// patch_time(): the sleep family (and std::this_thread::sleep_for through it)
// parks only the calling greenlet. Every TEST runs in its own process (ctest),
// and patches at its start: patching cannot be undone.
#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <greenev/monkey.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

class patch_time_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_time();
    hub_test::SetUp();
  }
};

// One way of sleeping 200 ms with plain libc / std calls.
struct sleeper {
  std::string name;
  std::function<void()> sleep_200ms;
};

std::vector<sleeper> sleepers() {
  return {
      {"nanosleep",
       [] {
         timespec t{0, 200'000'000};
         ASSERT_EQ(::nanosleep(&t, nullptr), 0);
       }},
      {"usleep", [] { ASSERT_EQ(::usleep(200'000), 0); }},
      {"sleep_for", [] { std::this_thread::sleep_for(200ms); }},
      {"clock_nanosleep",
       [] {
         timespec t{0, 200'000'000};
         ASSERT_EQ(::clock_nanosleep(CLOCK_MONOTONIC, 0, &t, nullptr), 0);
       }},
      {"clock_nanosleep_absolute",
       [] {
         timespec t{};
         ::clock_gettime(CLOCK_MONOTONIC, &t);
         t.tv_nsec += 200'000'000;
         if (t.tv_nsec >= 1'000'000'000) {
           t.tv_nsec -= 1'000'000'000;
           ++t.tv_sec;
         }
         ASSERT_EQ(::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nullptr), 0);
       }},
  };
}

TEST_F(patch_time_test, ten_greenlets_sleeping_200ms_take_about_200ms) {
  EXPECT_TRUE(greenev::monkey::is_patched(greenev::monkey::patch_target::time));
  EXPECT_TRUE(greenev::monkey::is_patched("time"));
  EXPECT_FALSE(greenev::monkey::is_patched("socket"));
  for (const sleeper& s : sleepers()) {
    SCOPED_TRACE(s.name);
    const auto start = std::chrono::steady_clock::now();
    std::vector<greenev::basic_task> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back(greenev::spawn(s.sleep_200ms));
    greenev::joinall(tasks);
    const auto took = since(start);
    EXPECT_GE(took, 190ms);
    EXPECT_LT(took, 1500ms) << "ten 200 ms sleeps ran one after another";
    for (auto& t : tasks) EXPECT_TRUE(t.successful());
  }
}

TEST_F(patch_time_test, sleep_in_seconds_is_cooperative_too) {
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (;;) {
      greenev::sleep(0.01);  // five ticks fit in the second even if each wakes 150 ms late
      ++ticks;
    }
  });
  EXPECT_EQ(::sleep(1), 0u);
  EXPECT_GE(ticks, 5);
  ticker.kill();
}

TEST_F(patch_time_test, errno_survives_a_switch) {
  auto clobber = greenev::spawn([] {
    errno = EPIPE;
    greenev::sleep(0.01);
    errno = EPIPE;
  });
  errno = 1234;
  timespec t{0, 50'000'000};
  ASSERT_EQ(::nanosleep(&t, nullptr), 0);
  EXPECT_EQ(errno, 1234);
  clobber.join();
}

TEST_F(patch_time_test, invalid_requests_keep_libc_errors) {
  timespec bad{0, 1'000'000'000};
  errno = 0;
  EXPECT_EQ(::nanosleep(&bad, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(::clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, nullptr), EINVAL);
  timespec negative{-1, 0};
  EXPECT_EQ(::nanosleep(&negative, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST_F(patch_time_test, a_kill_during_nanosleep_gives_eintr_and_rem_then_unwinds) {
  bool destructor_ran = false;
  int result = 0;
  int error = 0;
  timespec left{};
  auto sleeper = greenev::spawn([&] {
    struct flag_on_exit {
      bool& flag;
      ~flag_on_exit() { flag = true; }
    } guard{destructor_ran};
    greenev::monkey::blocking_call([&] {
      timespec t{10, 0};
      result = ::nanosleep(&t, &left);
      error = errno;
      // Further sleeps of a doomed greenlet return at once, without switching.
      const auto start = std::chrono::steady_clock::now();
      timespec again{5, 0};
      EXPECT_EQ(::nanosleep(&again, nullptr), 0);
      EXPECT_LT(since(start), 2000ms);  // not the 5 s asked for
      EXPECT_TRUE(greenev::monkey::interrupted());
    });
    ADD_FAILURE() << "blocking_call did not rethrow the kill";
  });
  greenev::sleep(0.05);
  sleeper.kill();
  EXPECT_EQ(result, -1);
  EXPECT_EQ(error, EINTR);
  EXPECT_GT(left.tv_sec, 8);
  EXPECT_TRUE(destructor_ran);
  EXPECT_TRUE(sleeper.ready());
  EXPECT_TRUE(sleeper.killed());
}

TEST_F(patch_time_test, an_outer_timeout_reaches_the_caller_of_blocking_call) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(
      {
        greenev::timeout deadline(0.05);
        greenev::monkey::blocking_call([] { ::usleep(5'000'000); });
      },
      greenev::timeout_error);
  EXPECT_LT(since(start), 1000ms);
  EXPECT_FALSE(greenev::monkey::interrupted());
}

TEST_F(patch_time_test, a_thread_without_a_hub_sleeps_in_libc) {
  std::chrono::milliseconds took{};
  std::thread plain([&] {
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(100ms);
    took = since(start);
  });
  plain.join();
  EXPECT_GE(took, 95ms);
}

TEST_F(patch_time_test, sleep_zero_yields_to_other_greenlets) {
  bool ran = false;
  auto other = greenev::spawn([&] { ran = true; });
  timespec zero{0, 0};
  EXPECT_EQ(::nanosleep(&zero, nullptr), 0);
  EXPECT_TRUE(ran);
  other.join();
}

}  // namespace

namespace {

TEST_F(patch_time_test, loop_callbacks_in_the_hub_sleep_in_libc) {
  // A callback runs in the hub greenlet, which must never park: libc's sleep it is.
  int result = -1;
  std::chrono::milliseconds took{};
  greenev::hub::current().run_callback([&] {
    const auto start = std::chrono::steady_clock::now();
    timespec t{0, 20'000'000};
    result = ::nanosleep(&t, nullptr);
    took = since(start);
  });
  greenev::sleep(0.05);
  EXPECT_EQ(result, 0);
  EXPECT_GE(took, 19ms);
}

}  // namespace
