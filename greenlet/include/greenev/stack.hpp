// greenev/stack.hpp — how greenlet stacks are sized, guarded and pooled.
//
// Every greenlet runs on an mmap'd stack that the kernel commits page by
// page as it is touched, so a 256 KiB stack that uses 5 KiB costs 8 KiB of
// RAM. Stacks of dead greenlets go back to a per-thread pool for reuse.
//
//   greenev::set_default_stack_options({.size = 64 * 1024, .kind = greenev::stack_kind::compact});
//   greenev::greenlet g(f, {.stack_size = 1 << 20});  // one big one
//
// Two kinds (docs/design.md, "The stack model", has the trade-off):
//  - guarded: a 64 KiB PROT_NONE guard below the stack. Overflowing it
//    prints "stack overflow in greenlet NAME (N KiB stack)" and aborts. Costs
//    two kernel memory mappings per stack; Linux caps a process near 65530.
//    Code using greenev's CMake target is built with -fstack-clash-protection,
//    so that frames larger than the guard cannot skip it (docs/caveats.md).
//  - compact: no guard; stacks are carved from shared slabs, so a million of
//    them cost a handful of mappings. An overflow corrupts memory silently.
// Guarded stacks become compact once max_guarded_stacks are mapped, so a
// program can always create many greenlets.
//
// A fresh stack costs a page fault (about 1.3 us) when its greenlet first
// runs. stack_prefault::background moves that work for compact stacks to a
// helper thread, ahead of use: worth it for bursts of thousands of greenlets
// on a machine with a spare core. Off by default.
//
// Threading: the functions here are thread-safe. Options apply to greenlets
// started after the call.
#pragma once

#include <cstddef>

#include <greenev/errors.hpp>

namespace greenev {

enum class stack_kind : unsigned char {
  default_kind,  ///< Take default_stack_options().kind.
  guarded,       ///< Guard page (falls back to compact past max_guarded_stacks).
  compact,       ///< No guard page, slab allocated.
};

/// Whether compact stacks are faulted in ahead of use on a helper thread.
enum class stack_prefault : unsigned char {
  unchanged,   ///< In set_default_stack_options(): keep the current setting.
  off,         ///< The initial default: a greenlet's first switch faults its stack's first page.
  background,  ///< Each greenlet created that will get a compact stack asks a process-wide
               ///< helper thread ("greenev-pfault", started on first use) to map and touch
               ///< one ahead; the creating thread's pool takes them as its greenlets start,
               ///< and an idle hub hands it surplus stacks to return to the kernel. Costs the
               ///< thread, CPU on another core, and up to a slab (64 stacks, one page each)
               ///< touched and unused, returned when the hub next idles.
};

/// How greenlet stacks are made (per greenlet in greenlet_options, or the
/// process-wide defaults through set_default_stack_options()).
struct stack_options {
  /// Usable bytes, rounded up to whole pages. Default 256 KiB (1 MiB under
  /// AddressSanitizer or ThreadSanitizer, whose frames are larger).
  std::size_t size = 0;
  /// guarded (the initial default) or compact; default_kind keeps the current.
  stack_kind kind = stack_kind::default_kind;
  /// Guarded stacks mapped per process (in use or pooled) before new
  /// guarded-kind stacks are compact. Default 16384 (a quarter of Linux's
  /// default map count limit).
  std::size_t max_guarded_stacks = 0;
  /// off (the initial default) or background; unchanged keeps the current.
  stack_prefault prefault = stack_prefault::unchanged;
};

inline constexpr std::size_t min_stack_size = 16 * 1024;
inline constexpr std::size_t max_stack_size = std::size_t{1} << 30;

/// The current process-wide defaults (fields never 0). Never switches.
[[nodiscard]] stack_options default_stack_options() noexcept;

/// Replaces the defaults; zero / default_kind fields keep their current
/// value. Throws greenlet_error if size is below min_stack_size or above
/// max_stack_size. Never switches.
void set_default_stack_options(stack_options options);

/// Counters for tests and diagnostics (this thread's pool, process totals).
struct stack_statistics {
  std::size_t live = 0;          ///< Stacks in use by greenlets, whole process.
  std::size_t live_guarded = 0;  ///< Of which guarded.
  std::size_t pooled = 0;        ///< Free stacks cached by the calling thread.
  std::size_t mapped_bytes = 0;  ///< Address space reserved for stacks, process.
  std::size_t prefaulted = 0;    ///< Stacks touched ahead of use by stack_prefault::background, process.
};
[[nodiscard]] stack_statistics stack_stats() noexcept;

/// Unmaps this thread's pooled guarded stacks and returns its pooled compact
/// stacks' pages to the kernel. Never switches.
void trim_stack_pool() noexcept;

}  // namespace greenev
