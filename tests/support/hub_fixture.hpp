// The hub tests' fixture: after every test, nothing is left behind — no live
// greenlet besides the hub, no active watcher, every stack back in the pool.
#pragma once

#include <gtest/gtest.h>

#include <greenev/hub.hpp>
#include <greenev/stack.hpp>

namespace greenev::testing {

class hub_test : public ::testing::Test {
 protected:
  void SetUp() override {
    (void)hub::current();  // the hub greenlet exists before the baseline
    live_stacks_ = stack_stats().live;
    active_ = active_greenlet_count();
  }
  void TearDown() override {
    // Let greenlets that finished run their links and release their stacks.
    for (int i = 0; i < 3 && hub::current().pending_callbacks() > 0; ++i) greenev::sleep(0.0);
    EXPECT_EQ(hub::current().active_watchers(), 0u) << "a watcher was left active";
    EXPECT_LE(active_greenlet_count(), active_ + 1)
        << "greenlets left suspended";  // +1: the hub, once started
    EXPECT_LE(stack_stats().live, live_stacks_ + 1) << "stacks not returned";
  }

 private:
  std::size_t live_stacks_ = 0;
  std::size_t active_ = 0;
};

}  // namespace greenev::testing
