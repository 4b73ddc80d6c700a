// Tests for greenev/stack.hpp: default options, per-greenlet sizes, the two
// stack kinds, pooling and trimming, lazy commit, the guard page's overflow
// report, 100,000 compact stacks live at once, and background prefaulting.
#include <greenev/stack.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <any>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <greenev/errors.hpp>
#include <greenev/greenlet.hpp>

#include "support/assertions.hpp"
#include "support/leak_check.hpp"
#include "support/process.hpp"
#include "support/sanitizers.hpp"
#include "support/tsan_forked_children.hpp"

namespace {

using greenev::greenlet;
using greenev::greenlet_error;
using greenev::greenlet_options;
using greenev::stack_kind;
using greenev::stack_options;
using greenev::stack_stats;
using greenev::switch_to_parent;
using greenev::testing::throws_with;

using stack_defaults = greenev::testing::leak_checked_test;
using stack_size = greenev::testing::leak_checked_test;
using stack_kinds = greenev::testing::leak_checked_test;
using stack_pool = greenev::testing::leak_checked_test;
using stack_memory = greenev::testing::leak_checked_test;
using stack_prefault = greenev::testing::leak_checked_test;
using guard_page_DeathTest = greenev::testing::leak_checked_test;

constexpr std::size_t kib = 1024;

// The defaults are process-wide: every test that changes them puts them back.
class restore_default_stack_options {
 public:
  restore_default_stack_options() : saved_(greenev::default_stack_options()) {}
  ~restore_default_stack_options() { greenev::set_default_stack_options(saved_); }
  restore_default_stack_options(const restore_default_stack_options&) = delete;
  restore_default_stack_options& operator=(const restore_default_stack_options&) = delete;

 private:
  stack_options saved_;
};

std::size_t round_up_to_page(std::size_t bytes) {
  const std::size_t page = greenev::testing::page_size();
  return (bytes + page - 1) / page * page;
}

bool same_options(const stack_options& a, const stack_options& b) {
  return a.size == b.size && a.kind == b.kind && a.max_guarded_stacks == b.max_guarded_stacks &&
         a.prefault == b.prefault;
}

// Polls `done` for up to ten seconds (the helper thread runs when it gets a core).
template <class Predicate>
bool eventually(Predicate done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Trims until the pool stays empty: a slab the helper was touching when the
// requests were withdrawn still arrives afterwards.
bool trimmed_to_empty() {
  return eventually([] {
    greenev::trim_stack_pool();
    return stack_stats().pooled == 0;
  });
}

std::uintptr_t frame_address() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

// Recurses until the frames reach `bytes` below `top`; returns the depth.
// The frame address, unlike a local's, is on the real stack even when a
// sanitizer moves locals elsewhere.
[[gnu::noinline]] std::size_t use_stack(std::uintptr_t top, std::size_t bytes) {
  volatile char buffer[256];
  buffer[0] = 1;
  buffer[sizeof buffer - 1] = 1;
  const std::uintptr_t here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  std::size_t depth = 0;
  if (top - here < bytes) depth = use_stack(top, bytes) + 1;
  buffer[1] = buffer[0];  // keeps the frame alive past the call: no tail call
  return depth;
}

// A recursion bound the compiler cannot see through: recursion "without end".
volatile std::size_t recursion_limit = std::numeric_limits<std::size_t>::max();

[[gnu::noinline]] std::size_t recurse_without_end(std::size_t depth) {
  volatile char buffer[512];
  buffer[0] = static_cast<char>(depth);
  const std::size_t deeper = depth < recursion_limit ? recurse_without_end(depth + 1) : depth;
  buffer[1] = buffer[0];
  return deeper;
}

// ---- default options -----------------------------------------------------------------

TEST_F(stack_defaults, initial_values) {
  const stack_options defaults = greenev::default_stack_options();
  EXPECT_EQ(defaults.size, greenev::testing::sanitized ? 1024 * kib : 256 * kib);
  EXPECT_EQ(defaults.kind, stack_kind::guarded);
  EXPECT_EQ(defaults.max_guarded_stacks, 16384u);
  EXPECT_EQ(defaults.prefault, greenev::stack_prefault::off);
  EXPECT_EQ(greenev::min_stack_size, 16 * kib);
  EXPECT_EQ(greenev::max_stack_size, std::size_t{1} << 30);
}

TEST_F(stack_defaults, set_and_restore) {
  const stack_options original = greenev::default_stack_options();
  {
    restore_default_stack_options restore;
    greenev::set_default_stack_options(
        {.size = 100'000, .kind = stack_kind::compact, .max_guarded_stacks = 99});
    stack_options now = greenev::default_stack_options();
    EXPECT_EQ(now.size, round_up_to_page(100'000));
    EXPECT_EQ(now.kind, stack_kind::compact);
    EXPECT_EQ(now.max_guarded_stacks, 99u);

    // Zero and default_kind fields keep the current values.
    greenev::set_default_stack_options({});
    EXPECT_TRUE(same_options(greenev::default_stack_options(), now));
    greenev::set_default_stack_options({.size = 64 * kib});
    now = greenev::default_stack_options();
    EXPECT_EQ(now.size, 64 * kib);
    EXPECT_EQ(now.kind, stack_kind::compact);
    EXPECT_EQ(now.max_guarded_stacks, 99u);
    EXPECT_EQ(now.prefault, greenev::stack_prefault::off);
    greenev::set_default_stack_options({.prefault = greenev::stack_prefault::background});
    EXPECT_EQ(greenev::default_stack_options().prefault, greenev::stack_prefault::background);
    EXPECT_EQ(greenev::default_stack_options().size, 64 * kib);
  }
  EXPECT_TRUE(same_options(greenev::default_stack_options(), original));
}

TEST_F(stack_defaults, out_of_range_default_size_is_rejected) {
  const stack_options original = greenev::default_stack_options();
  for (const std::size_t size : {std::size_t{1}, greenev::min_stack_size - 1, greenev::max_stack_size + 1}) {
    EXPECT_TRUE(throws_with<greenlet_error>([&] { greenev::set_default_stack_options({.size = size}); },
                                            "stack size " + std::to_string(size)));
    EXPECT_TRUE(throws_with<greenlet_error>([&] { greenev::set_default_stack_options({.size = size}); },
                                            "set_default_stack_options"));
  }
  // A rejected call changes nothing, not even its valid fields.
  EXPECT_THROW(greenev::set_default_stack_options({.size = 1, .kind = stack_kind::compact}), greenlet_error);
  EXPECT_TRUE(same_options(greenev::default_stack_options(), original));
}

TEST_F(stack_defaults, new_defaults_apply_to_greenlets_started_afterwards) {
  restore_default_stack_options restore;
  const auto before = stack_stats();
  greenev::set_default_stack_options({.size = 128 * kib, .kind = stack_kind::compact});
  greenlet g([] { switch_to_parent(); });
  EXPECT_EQ(g.stack_size(), 128 * kib);
  g.switch_to();
  EXPECT_EQ(g.stack_size(), 128 * kib);
  EXPECT_EQ(stack_stats().live, before.live + 1);
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded);  // compact by default now
  g.switch_to();
}

// ---- per-greenlet sizes --------------------------------------------------------------

TEST_F(stack_size, per_greenlet_size_is_reported) {
  greenlet g([] { switch_to_parent(); }, greenlet_options{.stack_size = 64 * kib});
  EXPECT_EQ(g.stack_size(), 64 * kib);  // unstarted
  g.switch_to();
  EXPECT_EQ(g.stack_size(), 64 * kib);  // running
  g.switch_to();
  EXPECT_EQ(g.stack_size(), 64 * kib);  // dead
  greenlet with_default([] {});
  EXPECT_EQ(with_default.stack_size(), greenev::default_stack_options().size);
  EXPECT_EQ(greenev::current().stack_size(), 0u);  // a main greenlet has no greenev stack
}

TEST_F(stack_size, sizes_round_up_to_whole_pages) {
  const std::size_t page = greenev::testing::page_size();
  greenlet g([] { switch_to_parent(); }, greenlet_options{.stack_size = greenev::min_stack_size + 1});
  EXPECT_EQ(g.stack_size(), greenev::min_stack_size + page);
  g.switch_to();
  EXPECT_EQ(g.stack_size(), greenev::min_stack_size + page);
  g.switch_to();

  greenlet odd([] {}, greenlet_options{.stack_size = 100 * kib + 3});
  EXPECT_EQ(odd.stack_size(), round_up_to_page(100 * kib + 3));
  EXPECT_EQ(odd.stack_size() % page, 0u);
}

TEST_F(stack_size, range_boundaries_are_accepted) {
  greenlet smallest([] { return 1; }, greenlet_options{.stack_size = greenev::min_stack_size});
  EXPECT_EQ(std::any_cast<int>(smallest.switch_to()), 1);
  // Construction only: nothing is mapped before the first switch.
  greenlet largest([] {}, greenlet_options{.stack_size = greenev::max_stack_size});
  EXPECT_EQ(largest.stack_size(), greenev::max_stack_size);
}

TEST_F(stack_size, most_of_a_64_kib_stack_is_usable) {
  for (const stack_kind kind : {stack_kind::guarded, stack_kind::compact}) {
    greenlet deep([] { return use_stack(frame_address(), 40 * kib); },
                  greenlet_options{.name = "deep", .stack_size = 64 * kib, .kind = kind});
    EXPECT_GT(std::any_cast<std::size_t>(deep.switch_to()), 10u);
    EXPECT_TRUE(deep.dead());
  }
}

// ---- kinds ---------------------------------------------------------------------------

TEST_F(stack_kinds, compact_stack_runs_without_a_guard_page) {
  const auto before = stack_stats();
  greenlet g([] { switch_to_parent(use_stack(frame_address(), 8 * kib)); },
             greenlet_options{.kind = stack_kind::compact});
  EXPECT_GT(std::any_cast<std::size_t>(g.switch_to()), 0u);
  EXPECT_EQ(stack_stats().live, before.live + 1);
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded);
  g.switch_to();
  EXPECT_EQ(stack_stats().live, before.live);
}

TEST_F(stack_kinds, guarded_stack_is_counted_as_guarded) {
  const auto before = stack_stats();
  greenlet g([] { switch_to_parent(); }, greenlet_options{.kind = stack_kind::guarded});
  g.switch_to();
  EXPECT_EQ(stack_stats().live, before.live + 1);
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded + 1);
  g.switch_to();
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded);
}

TEST_F(stack_kinds, default_kind_becomes_compact_past_max_guarded_stacks) {
  restore_default_stack_options restore;
  // Pooled guarded stacks count against the limit too: start with none, so
  // the test does not depend on what earlier tests left in the pool.
  greenev::trim_stack_pool();
  const auto before = stack_stats();
  greenev::set_default_stack_options({.max_guarded_stacks = before.live_guarded + 2});
  std::vector<greenlet> greenlets;
  for (int i = 0; i < 4; ++i) {
    greenlets.emplace_back([] { switch_to_parent(); });
    greenlets.back().switch_to();
  }
  // An explicit guarded request falls back too.
  greenlets.emplace_back([] { switch_to_parent(); }, greenlet_options{.kind = stack_kind::guarded});
  greenlets.back().switch_to();
  EXPECT_EQ(stack_stats().live, before.live + 5);
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded + 2);
  for (greenlet& g : greenlets) g.switch_to();
}

// 100,000 greenlets suspended at once. Guarded stacks would need 200,000
// memory mappings, past Linux's default limit of 65530; compact ones share slabs.
TEST_F(stack_kinds, hundred_thousand_compact_greenlets_live_at_once) {
  if (greenev::testing::thread_sanitizer) {
    GTEST_SKIP() << "ThreadSanitizer counts every fiber against its 8128-thread limit";
  }
  constexpr int count = 100'000;
  const auto before = stack_stats();
  const std::size_t mappings_before = greenev::testing::mapping_count();
  int finished = 0;
  std::vector<greenlet> greenlets;
  greenlets.reserve(count);
  for (int i = 0; i < count; ++i) {
    greenlets.emplace_back(
        [&finished](std::any first) {
          const int x = std::any_cast<int>(first);
          const int y = std::any_cast<int>(switch_to_parent(x));
          ++finished;
          return x + y;
        },
        greenlet_options{.stack_size = 16 * kib, .kind = stack_kind::compact});
  }
  int started = 0;
  for (int i = 0; i < count; ++i) {
    if (std::any_cast<int>(greenlets[static_cast<std::size_t>(i)].switch_to(i)) == i) ++started;
  }
  EXPECT_EQ(started, count);
  EXPECT_EQ(stack_stats().live, before.live + count);
  EXPECT_EQ(stack_stats().live_guarded, before.live_guarded);
  EXPECT_LT(greenev::testing::mapping_count(), mappings_before + count / 20)
      << "compact stacks should share a few large mappings";

  int correct = 0;
  for (int i = 0; i < count; ++i) {
    if (std::any_cast<int>(greenlets[static_cast<std::size_t>(i)].switch_to(1)) == i + 1) ++correct;
  }
  EXPECT_EQ(correct, count);
  EXPECT_EQ(finished, count);
  EXPECT_EQ(stack_stats().live, before.live);

  EXPECT_GT(stack_stats().pooled, 0u);
  greenev::trim_stack_pool();
  EXPECT_EQ(stack_stats().pooled, 0u);
}

// ---- pooling -------------------------------------------------------------------------

TEST_F(stack_pool, stacks_of_finished_greenlets_are_reused) {
  const greenlet_options options{.stack_size = 64 * kib, .kind = stack_kind::guarded};
  greenlet first([] {}, options);
  first.switch_to();
  const auto after_first = stack_stats();
  EXPECT_GE(after_first.pooled, 1u);
  for (int i = 0; i < 100; ++i) {
    greenlet again([] {}, options);
    again.switch_to();
  }
  EXPECT_EQ(stack_stats().mapped_bytes, after_first.mapped_bytes);  // nothing new mapped
  EXPECT_EQ(stack_stats().pooled, after_first.pooled);
}

TEST_F(stack_pool, trim_returns_pooled_stacks) {
  constexpr int count = 8;
  const greenlet_options options{.stack_size = 64 * kib, .kind = stack_kind::guarded};
  std::vector<greenlet> greenlets;
  for (int i = 0; i < count; ++i) {
    greenlets.emplace_back([] { switch_to_parent(); }, options);
    greenlets.back().switch_to();
  }
  for (greenlet& g : greenlets) g.switch_to();
  const auto before_trim = stack_stats();
  EXPECT_GE(before_trim.pooled, std::size_t{count});

  greenev::trim_stack_pool();
  const auto after_trim = stack_stats();
  EXPECT_EQ(after_trim.pooled, 0u);
  // Guarded stacks are unmapped: each was 64 KiB plus its guard page.
  EXPECT_LE(after_trim.mapped_bytes, before_trim.mapped_bytes - count * 64 * kib);
  greenev::trim_stack_pool();  // trimming an empty pool is harmless
  EXPECT_EQ(stack_stats().pooled, 0u);

  greenlet after([] { return 3; }, options);  // and stacks can still be had afterwards
  EXPECT_EQ(std::any_cast<int>(after.switch_to()), 3);
}

TEST_F(stack_pool, pooled_counts_the_calling_threads_pool) {
  greenlet g([] {});
  g.switch_to();
  EXPECT_GE(stack_stats().pooled, 1u);
  std::size_t pooled_on_new_thread = 99;
  std::thread([&] { pooled_on_new_thread = stack_stats().pooled; }).join();
  EXPECT_EQ(pooled_on_new_thread, 0u);
}

// ---- memory --------------------------------------------------------------------------

// Stacks are committed page by page as they are touched: 2000 suspended
// greenlets with the default 256 KiB stacks (500 MiB if committed) that each
// use a few KiB must cost far less.
TEST_F(stack_memory, stacks_are_committed_lazily) {
  if (!greenev::testing::rss_is_meaningful()) {
    GTEST_SKIP() << "sanitizer shadow memory, frame sizes or valgrind make RSS meaningless here";
  }
  constexpr std::size_t count = 2000;
  std::vector<greenlet> greenlets;
  greenlets.reserve(count);
  for (std::size_t i = 0; i < count; ++i) greenlets.emplace_back([] { switch_to_parent(); });
  const std::size_t resident_before = greenev::testing::resident_bytes();
  for (greenlet& g : greenlets) g.switch_to();
  const std::size_t resident_after = greenev::testing::resident_bytes();
  EXPECT_EQ(greenlets.front().stack_size(), 256 * kib);
  EXPECT_LT(resident_after - resident_before, count * 64 * kib)
      << "RSS grew by " << (resident_after - resident_before) / kib << " KiB for " << count << " stacks";
  for (greenlet& g : greenlets) g.switch_to();
}

// ---- background prefaulting ----------------------------------------------------------

// Greenlets created with background prefaulting on start on stacks the helper
// thread touched ahead, and the surplus goes back like any pooled stack.
TEST_F(stack_prefault, a_burst_of_greenlets_gets_stacks_touched_by_the_helper) {
  restore_default_stack_options restore;
  greenev::set_default_stack_options(
      {.size = 32 * kib, .kind = stack_kind::compact, .prefault = greenev::stack_prefault::background});
  ASSERT_TRUE(trimmed_to_empty());
  const auto before = stack_stats();
  constexpr int count = 2000;
  std::vector<greenlet> greenlets;
  greenlets.reserve(count);
  for (int i = 0; i < count; ++i) greenlets.emplace_back([](std::any v) { return switch_to_parent(v); });
  EXPECT_TRUE(eventually([&] { return stack_stats().prefaulted >= before.prefaulted + 64; }))
      << "the helper thread touched no slab";
  for (int i = 0; i < count; ++i)
    EXPECT_EQ(std::any_cast<int>(greenlets[static_cast<std::size_t>(i)].switch_to(i)), i);
  EXPECT_EQ(stack_stats().live, before.live + count);
  for (greenlet& g : greenlets) g.switch_to(0);
  EXPECT_EQ(stack_stats().live, before.live);
  greenlets.clear();
  EXPECT_TRUE(trimmed_to_empty());
}

// Greenlets that never start give up their claim: nothing stays counted, and
// what the helper touched for them is returned by a trim.
TEST_F(stack_prefault, greenlets_dropped_before_starting_leave_nothing_behind) {
  restore_default_stack_options restore;
  greenev::set_default_stack_options(
      {.size = 16 * kib, .kind = stack_kind::compact, .prefault = greenev::stack_prefault::background});
  const auto before = stack_stats();
  for (int round = 0; round < 3; ++round) {
    std::vector<greenlet> greenlets;
    for (int i = 0; i < 500; ++i) greenlets.emplace_back([] {});
  }
  EXPECT_EQ(stack_stats().live, before.live);
  EXPECT_TRUE(trimmed_to_empty());
  // Guarded greenlets (below max_guarded_stacks) are not prefaulted: nothing is asked for them.
  greenev::set_default_stack_options({.kind = stack_kind::guarded});
  greenlet guarded([] { return 1; });
  EXPECT_EQ(std::any_cast<int>(guarded.switch_to()), 1);
  EXPECT_TRUE(trimmed_to_empty());
}

// A thread that exits while the helper still works for its pool: the helper
// hands the stacks to the process-wide list instead, and other threads go on.
TEST_F(stack_prefault, a_thread_may_exit_while_the_helper_works_for_it) {
  restore_default_stack_options restore;
  greenev::set_default_stack_options(
      {.size = 16 * kib, .kind = stack_kind::compact, .prefault = greenev::stack_prefault::background});
  for (int round = 0; round < 4; ++round) {
    std::thread([] {
      std::vector<greenlet> greenlets;
      for (int i = 0; i < 1000; ++i) greenlets.emplace_back([] { switch_to_parent(); });
      for (int i = 0; i < 10; ++i) greenlets[static_cast<std::size_t>(i)].switch_to();
    }).join();
  }
  greenlet here([] { return 2; });
  EXPECT_EQ(std::any_cast<int>(here.switch_to()), 2);
}

// The scheduler state of this process's thread named `name` ('S' while it
// sleeps, 'R' while it runs...), or 0 if there is no such thread.
char thread_state_of(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string comm_name;
    if (!std::getline(comm, comm_name) || comm_name != name) continue;
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t end_of_name = line.rfind(") ");
    return end_of_name == std::string::npos ? 0 : line[end_of_name + 2];
  }
  return 0;
}

// A forked child has no helper thread (and the parent's may have held its
// lock): it starts its own on first use. Regression test: the child
// inherited the parent's condition variable with the parent's helper
// counted as waiting on it, a waiter that does not exist in the child; the
// child's notifications then went to it, and the child's own helper slept
// through its work or the notifying thread hung. That needs the parent's
// helper asleep at the fork, so each round waits for it to be. Several
// rounds, each child bounded by an alarm so a hang fails the test.
TEST_F(stack_prefault, a_forked_child_gets_its_own_helper) {
  if (greenev::testing::under_valgrind()) {
    GTEST_SKIP() << "memcheck reports what the parent's threads held at the fork as the child's leaks";
  }
  restore_default_stack_options restore;
  greenev::set_default_stack_options(
      {.size = 16 * kib, .kind = stack_kind::compact, .prefault = greenev::stack_prefault::background});
  constexpr int rounds = 5;
  for (int round = 0; round < rounds; ++round) {
    ASSERT_TRUE(trimmed_to_empty());  // nothing pooled or requested: the warm-up asks anew
    const std::size_t warm_up_start = stack_stats().prefaulted;
    {
      std::vector<greenlet> warm_up;  // the parent's helper works, then sleeps again
      for (int i = 0; i < 200; ++i) warm_up.emplace_back([] {});
      ASSERT_TRUE(eventually([&] { return stack_stats().prefaulted >= warm_up_start + 64; }));
    }
    ASSERT_TRUE(eventually([] { return thread_state_of("greenev-pfault") == 'S'; }))
        << "the helper thread never went to sleep";
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::alarm(30);  // a hang dies of SIGALRM, within the test's time limit
      bool ok = true;
      for (int burst = 0; burst < 4 && ok; ++burst) {
        const std::size_t before = stack_stats().prefaulted;
        std::vector<greenlet> greenlets;
        for (int i = 0; i < 500; ++i) greenlets.emplace_back([] { return 1; });
        ok = eventually([&] { return stack_stats().prefaulted >= before + 64; });
        int sum = 0;
        for (greenlet& g : greenlets) sum += std::any_cast<int>(g.switch_to());
        ok = ok && sum == 500;
        greenlets.clear();
        greenev::trim_stack_pool();
      }
      ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "round " << round << ": "
        << (WIFSIGNALED(status)
                ? "the child was killed by signal " + std::to_string(WTERMSIG(status))
                : "the child's helper did no work (exit status " + std::to_string(WEXITSTATUS(status)) + ")");
  }
  EXPECT_TRUE(trimmed_to_empty());
}

// ---- guard page ----------------------------------------------------------------------

// Overflowing a guarded stack prints the greenlet's name and stack size and
// aborts. Runs in a child process (re-executed: "threadsafe" style).
TEST_F(guard_page_DeathTest, overflow_is_reported_with_the_greenlet_name_and_stack_size) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        greenlet deep(
            [] { return recurse_without_end(0); },
            greenlet_options{.name = "deep-one", .stack_size = 64 * kib, .kind = stack_kind::guarded});
        deep.switch_to();
      },
      "stack overflow in greenlet deep-one \\(64 KiB stack\\)");
}

TEST_F(guard_page_DeathTest, overflow_of_an_unnamed_greenlet_reports_its_default_name) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        greenlet deep([] { return recurse_without_end(0); },
                      greenlet_options{.stack_size = 32 * kib, .kind = stack_kind::guarded});
        deep.switch_to();
      },
      "stack overflow in greenlet greenlet-[0-9]+ \\(32 KiB stack\\)");
}

// A frame larger than the guard, of which only the start (the lowest
// addresses) is written, as a large buffer given to snprintf is: without
// probing, that first write lands below the guard. Regression test: the
// write went into whatever was mapped there (often the top of another
// greenlet's stack), or gave a bare SIGSEGV. greenev is built with
// -fstack-clash-protection and passes it on to code using it (this test
// too), so such a frame touches every page on its way down and meets the
// guard first.
[[gnu::noinline]] int use_the_start_of_a_64_kib_buffer(int seed) {
  volatile char buffer[64 * kib];
  buffer[0] = static_cast<char>(seed);
  return buffer[0];
}

// Maps ordinary memory over [low, high) where nothing is mapped yet: a
// stand-in for what the kernel may place below a stack (another greenlet's
// stack, often), so that a stray write there is silent.
void map_neighbours(const char* low, const char* high) {
  const std::size_t page = greenev::testing::page_size();
  for (std::uintptr_t at = reinterpret_cast<std::uintptr_t>(low) / page * page;
       at < reinterpret_cast<std::uintptr_t>(high); at += page) {
    (void)::mmap(reinterpret_cast<void*>(at), page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  }
}

TEST_F(guard_page_DeathTest, a_frame_larger_than_the_guard_is_reported_as_an_overflow) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        greenlet big(
            [] {
              const char* bottom = greenev::current().get()->stack.bottom;
              map_neighbours(bottom - 128 * kib, bottom);
              return use_the_start_of_a_64_kib_buffer(1);
            },
            greenlet_options{.name = "big-frame", .stack_size = 16 * kib, .kind = stack_kind::guarded});
        big.switch_to();
        std::exit(0);
      },
      "stack overflow in greenlet big-frame \\(16 KiB stack\\)");
}

// Code built without stack-clash protection (another library) may still
// skip the first guard page with a frame a few KiB larger than a page.
// Regression test: a write 1.5 KiB below the guard page went unnoticed into
// the memory below, the top of the stack of the greenlet mapped next, which
// crashed when it was resumed. The guard is larger than one page now.
TEST_F(guard_page_DeathTest, a_write_just_below_the_first_guard_page_is_reported_as_an_overflow) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        greenlet writer(
            [] {
              char* target = greenev::current().get()->stack.bottom - greenev::testing::page_size() - 1536;
              map_neighbours(target, target + 1);
              *reinterpret_cast<volatile char*>(target) = 1;
            },
            greenlet_options{.name = "stray-writer", .stack_size = 64 * kib, .kind = stack_kind::guarded});
        writer.switch_to();
        std::exit(0);
      },
      "stack overflow in greenlet stray-writer \\(64 KiB stack\\)");
}

// Code built without stack-clash protection whose frame is larger than the
// whole guard skips it and faults further down. The stack pointer is then
// below the stack, which the report takes as an overflow too.
#if defined(__GNUC__) && !defined(__clang__)
[[gnu::noinline, gnu::optimize("no-stack-clash-protection")]]
#else
[[gnu::noinline]]  // Clang probes it: the guard catches it instead
#endif
int use_the_start_of_a_256_kib_buffer(int seed) {
  volatile char buffer[256 * kib];
  buffer[0] = static_cast<char>(seed);
  return buffer[0];
}

// True if nothing accessible is mapped anywhere in [low, high): nothing at
// all, or only inaccessible mappings (a guard). Reads /proc/self/maps into a
// static buffer: it runs on a small greenlet stack.
bool nothing_accessible_between(std::uintptr_t low, std::uintptr_t high) {
  static char maps[1 << 20];
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::size_t size = 0;
  for (ssize_t n = 0; (n = ::read(fd, maps + size, sizeof maps - 1 - size)) > 0;)
    size += static_cast<std::size_t>(n);
  ::close(fd);
  maps[size] = '\0';
  for (const char* line = maps; *line != '\0';) {
    unsigned long start = 0;
    unsigned long end = 0;
    char permissions[5] = {};
    if (std::sscanf(line, "%lx-%lx %4s", &start, &end, permissions) == 3 && start < high && end > low &&
        std::strcmp(permissions, "---p") != 0) {
      return false;
    }
    const char* next = std::strchr(line, '\n');
    if (next == nullptr) break;
    line = next + 1;
  }
  return true;
}

TEST_F(guard_page_DeathTest, an_unprobed_frame_skipping_the_whole_guard_is_reported_as_an_overflow) {
  if (greenev::testing::address_sanitizer) {
    GTEST_SKIP() << "AddressSanitizer instruments this frame itself; its first write did not land in the "
                    "inaccessible memory prepared below the stack";
  }
  if (greenev::testing::thread_sanitizer) {
    GTEST_SKIP() << "ThreadSanitizer's own read-write mappings often sit directly below a new stack, so the "
                    "unprobed write lands in them and nothing faults";
  }
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        // The write must land in inaccessible memory. Where something
        // accessible is mapped within 512 KiB below a new stack (the kernel
        // chose a hole between mappings), that greenlet stays suspended on its
        // stack and another is tried on a new one.
        std::vector<greenlet> tried;
        for (int attempt = 0; attempt < 32; ++attempt) {
          tried.emplace_back(
              [] {
                const std::size_t page = greenev::testing::page_size();
                const auto bottom = reinterpret_cast<std::uintptr_t>(greenev::current().get()->stack.bottom);
                const std::uintptr_t low = (bottom - 512 * kib) / page * page;
                if (!nothing_accessible_between(low, bottom)) {
                  for (;;) greenev::switch_to_parent();  // keeps its stack: the next try maps a new one
                }
                for (std::uintptr_t at = low; at < bottom; at += page) {  // fills the holes; the guard stays
                  (void)::mmap(reinterpret_cast<void*>(at), page, PROT_NONE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
                }
                return use_the_start_of_a_256_kib_buffer(1);
              },
              greenlet_options{.name = "huge-frame", .stack_size = 16 * kib, .kind = stack_kind::guarded});
          tried.back().switch_to();
        }
        std::fputs("no new stack had 512 KiB of unmapped or inaccessible memory below it\n", stderr);
        std::exit(0);
      },
      "stack overflow in greenlet huge-frame \\(16 KiB stack\\)");
}

// Every thread gets its own alternate signal stack for the report.
TEST_F(guard_page_DeathTest, overflow_on_another_thread_is_reported) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::thread([] {
          greenlet deep([] { return recurse_without_end(0); },
                        greenlet_options{
                            .name = "deep-in-thread", .stack_size = 64 * kib, .kind = stack_kind::guarded});
          deep.switch_to();
        }).join();
      },
      "stack overflow in greenlet deep-in-thread \\(64 KiB stack\\)");
}

// A fault that is not a greenlet stack overflow keeps its usual outcome: the
// previously installed handler (AddressSanitizer's) or the default action.
TEST_F(guard_page_DeathTest, other_faults_are_not_reported_as_overflows) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  auto fault_in_a_guarded_greenlet = [] {
    // Fault in the middle of a large reservation, far from any stack and its
    // guard, so that nobody can mistake it for an overflow.
    const std::size_t reserved = 64 * greenev::testing::page_size();
    char* region =
        static_cast<char*>(::mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    greenlet faulty([region, reserved] { *static_cast<volatile char*>(region + reserved / 2) = 1; },
                    greenlet_options{.name = "faulty", .stack_size = 64 * kib, .kind = stack_kind::guarded});
    faulty.switch_to();
  };
  if (greenev::testing::address_sanitizer) {
    EXPECT_DEATH(fault_in_a_guarded_greenlet(), "ERROR: AddressSanitizer");
  } else if (greenev::testing::thread_sanitizer) {
    EXPECT_DEATH(fault_in_a_guarded_greenlet(), "ThreadSanitizer: SEGV");
  } else {
    // The overflow report aborts (SIGABRT); this must die of the SIGSEGV itself.
    EXPECT_EXIT(fault_in_a_guarded_greenlet(), ::testing::KilledBySignal(SIGSEGV), "");
  }
}

}  // namespace
