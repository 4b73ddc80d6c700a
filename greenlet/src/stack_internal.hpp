// Private: what the stack files share (see docs/design.md, "The stack model").
// stack_mapping.cpp maps, guards and returns stacks; stack_pool.cpp caches
// them per thread; stack_prefault.cpp runs the background prefault helper;
// stack_overflow.cpp reports guard-page hits.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include <greenev/detail/sanitizers.hpp>

#include "stack_pool.hpp"

namespace greenev::detail {

// ---- stack_mapping.cpp ----

std::size_t round_to_pages(std::size_t bytes) noexcept;
// The PROT_NONE region below each guarded stack.
std::size_t guard_size() noexcept;

// Guarded stacks mapped (in use or pooled) and bytes mapped for stacks.
extern std::atomic<std::size_t> mapped_guarded;
extern std::atomic<std::size_t> mapped_bytes;

// Throws std::system_error if the kernel refuses the mapping.
stack_memory map_guarded(std::size_t size);
void unmap_guarded(stack_memory stack) noexcept;
// Returns the stack's pages; the mapping stays.
void forget_pages(stack_memory& stack) noexcept;
// Commits the top page of a fresh stack (clears `fresh`); best effort.
void populate_top_page(stack_memory& stack) noexcept;
// Compact stacks one slab of `size`-byte stacks holds.
std::size_t stacks_in_slab(std::size_t size) noexcept;
// Maps a slab of compact stacks and appends them all to `out` (which must
// have room: nothing here may throw after the mapping).
void map_compact_slab(std::size_t size, std::vector<stack_memory>& out);
// The process-wide list of compact stacks no thread is caching.
stack_memory take_orphan_compact(std::size_t size);
void give_orphan_compact(stack_memory stack) noexcept;
// Returns the pages of `count` free compact stacks and hands them to the
// process-wide list. Reorders the range.
void return_compact(stack_memory* stacks, std::size_t count) noexcept;
// The process-wide list's lock (the prefault helper's fork handlers take it).
std::mutex& orphan_list_mutex() noexcept;

inline void prepare_for_reuse([[maybe_unused]] const stack_memory& stack) noexcept {
#ifdef GREENEV_DETAIL_TU_ASAN
  // Frames of the previous owner may have left redzones poisoned.
  __asan_unpoison_memory_region(stack.bottom, stack.size);
#endif
}

// ---- stack_pool.cpp ----

// The lock of the list of live pools (the prefault helper's fork handlers
// take it).
std::mutex& pool_registry_mutex() noexcept;

// ---- stack_prefault.cpp ----

// Everything here is guarded by prefault_mutex().
struct prefault_mailbox {
  std::size_t size = 0;             // stack size of the bucket it serves
  std::size_t wanted = 0;           // slabs requested and not begun
  std::vector<stack_memory> ready;  // touched stacks the owner has not taken
  bool queued = false;              // on the helper's work list
  bool abandoned = false;           // the owning pool is gone
};

// The helper's mutex.
std::mutex& prefault_mutex() noexcept;
// Stacks the helper has touched, for stack_stats().
extern std::atomic<std::size_t> prefaulted_stacks;

// Asks for one more slab for `box`; false if the helper's lock was busy.
// Throws if the helper cannot start.
bool try_request_slab(const std::shared_ptr<prefault_mailbox>& box);
// Hands free compact stacks to the helper, which returns their pages; false
// (nothing done) if its lock is busy or it has no memory for the list.
bool try_hand_to_helper(const stack_memory* stacks, std::size_t count) noexcept;

}  // namespace greenev::detail
