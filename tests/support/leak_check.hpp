// tests/support/leak_check.hpp — a GoogleTest fixture whose TearDown proves
// the test leaked no greenlet and no greenlet stack.
//
//   class my_test : public greenev::testing::leak_checked_test {};
//   TEST_F(my_test, something) { ... }  // TearDown fails if anything is left over
//
// Checked at TearDown against the values at SetUp:
//  - stack_stats().live: stacks owned by live greenlets in the whole process,
//    so every greenlet a test started, on any thread, must be dead or
//    destroyed (and every thread it started joined) when the test body ends;
//  - active_greenlet_count(): started, not yet dead greenlets of the test's
//    thread (nothing left suspended).
#pragma once

#include <cstddef>

#include <gtest/gtest.h>

#include <greenev/greenlet.hpp>
#include <greenev/stack.hpp>

namespace greenev::testing {

class leak_checked_test : public ::testing::Test {
 protected:
  void SetUp() override {
    live_stacks_at_start_ = stack_stats().live;
    active_greenlets_at_start_ = active_greenlet_count();
  }

  void TearDown() override {
    EXPECT_EQ(active_greenlet_count(), active_greenlets_at_start_)
        << "greenlets still suspended at the end of the test";
    EXPECT_EQ(stack_stats().live, live_stacks_at_start_)
        << "greenlet stacks still in use at the end of the test: a greenlet leaked";
  }

  /// Stacks that were live when the test started (normally 0).
  [[nodiscard]] std::size_t live_stacks_at_start() const noexcept { return live_stacks_at_start_; }

 private:
  std::size_t live_stacks_at_start_ = 0;
  std::size_t active_greenlets_at_start_ = 0;
};

}  // namespace greenev::testing
