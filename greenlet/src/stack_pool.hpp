// Private: stack allocation for greenlets (see docs/design.md, "The stack model").
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

#include <greenev/detail/greenlet_core.hpp>
#include <greenev/stack.hpp>

namespace greenev::detail {

// stack_options::prefault, read when a greenlet is created.
extern std::atomic<stack_prefault> option_prefault;

// Stacks a helper thread prepares for one bucket of one pool (stack_prefault.cpp).
struct prefault_mailbox;

// Per-thread cache of free stacks, bucketed by (size, guarded).
class stack_pool {
 public:
  stack_pool();
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;
  ~stack_pool();  // unmaps guarded stacks, hands compact ones to the process pool

  // Throws std::system_error if the kernel refuses the mapping. `expected`:
  // the greenlet was counted by expect_start().
  stack_memory allocate(std::size_t size, stack_kind kind, bool expected = false);
  // With background prefaulting: counts a new greenlet that will need a
  // compact stack (size 0 / default_kind = the defaults) and asks the helper
  // for a slab when the pool's free and requested stacks fall short. False
  // if it was not counted (guarded, or no helper could be had).
  bool expect_start(std::size_t size, stack_kind kind) noexcept;
  // A counted greenlet is freed without having started.
  void forget_expected(std::size_t size) noexcept;
  void release(stack_memory stack) noexcept;  // never a system call
  void trim() noexcept;                       // returns every free stack
  void trim_idle() noexcept;                  // returns the excess over the pool limit (the hub, idle)
  [[nodiscard]] std::size_t pooled() const noexcept;

  // Stacks this thread handed out and has not got back. Written only by the
  // owner thread; read by stack_stats() from any thread.
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> live_guarded_{0};

  // Release from a thread that has no pool (the owner thread has exited).
  static void release_orphan(stack_memory stack) noexcept;

 private:
  struct bucket {
    std::size_t size;
    bool guarded;
    std::vector<stack_memory> free;
    // Background prefaulting (compact buckets): counted greenlets not yet
    // started, stacks asked of the helper and not yet taken, and the mailbox.
    std::size_t expected = 0;
    std::size_t in_flight = 0;
    std::shared_ptr<prefault_mailbox> mailbox;
  };
  bucket& bucket_for(std::size_t size, bool guarded);
  // Moves the helper's finished stacks into b.free; with `cancel`, also
  // withdraws every request it has not begun. Unless `wait`, does nothing
  // if the helper holds the lock. Returns how many it moved.
  std::size_t collect_prefaulted(bucket& b, bool cancel, bool wait) noexcept;
  void collect_all_prefaulted(bool wait) noexcept;
  void trim_to(std::size_t keep, bool background) noexcept;
  static void return_to_system(stack_memory stack) noexcept;
  bool excess_ = false;
  bool prefaulting_ = false;        // some bucket has a mailbox
  bool trimmed_when_idle_ = false;  // a hub calls trim_idle(): no hard limit
  std::vector<bucket> buckets_;
};

// The resolved size/kind for a new greenlet (0 / default_kind = defaults).
// Throws greenlet_error naming `who` for an out-of-range size.
// Process-wide counters (pooled is left 0: pools are per thread).
stack_statistics process_stack_stats() noexcept;

std::size_t checked_stack_size(std::size_t requested, const char* who);

// Installs the SIGSEGV overflow reporter (once per process) and an alternate
// signal stack on the calling thread if it has none (once per thread).
void install_overflow_reporter();

// What the SIGSEGV handler needs about the greenlet running on this thread.
struct running_stack_info {
  stack_memory stack;
  const char* name = nullptr;  // NUL-terminated; null if unnamed
  unsigned long long id = 0;   // for "greenlet-ID" when unnamed
};
// Defined by the greenlet core; async-signal-safe (reads thread-locals only).
bool describe_running_stack(running_stack_info& info) noexcept;

}  // namespace greenev::detail
