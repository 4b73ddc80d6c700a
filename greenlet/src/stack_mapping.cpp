// Greenlet stacks' memory: guarded mappings, compact slabs, returning pages,
// and the process-wide list of compact stacks no thread is caching.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <string>
#include <system_error>

#include "stack_internal.hpp"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define GREENEV_HAVE_VALGRIND 1
#endif

namespace greenev::detail {

namespace {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

// The PROT_NONE guard below a guarded stack. Code built with
// -fstack-clash-protection (greenev, and code using its CMake target)
// touches every page of a large frame in order, so it meets the guard's
// first page; code built without it (other libraries) may first write the
// far end of a frame, below the stack pointer by the frame's size. One page
// let a frame a little over 4 KiB write 1.5 KiB below it, into whatever the
// kernel had mapped there: often the top of another greenlet's stack.
// Sixteen pages catch such frames up to about 60 KiB. Unreserved and never
// touched, they cost address space (1 GiB for 16384 stacks), not memory,
// and no extra mapping.
constexpr std::size_t guard_bytes = 64 * 1024;
// Compact slabs hold this many stacks, capped at slab_bytes_limit.
constexpr std::size_t stacks_per_slab = 64;
constexpr std::size_t slab_bytes_limit = std::size_t{64} << 20;

// Compact stacks no thread is caching. Slabs are never unmapped: a compact
// stack may still be referenced by a greenlet whose thread exited.
struct orphan_pool {
  std::mutex mutex;
  std::vector<stack_memory> compact;  // all sizes; searched linearly (rare path)
};
orphan_pool& orphans() {
  static orphan_pool* pool = new orphan_pool;  // leaked: used by exiting threads
  return *pool;
}

void register_with_valgrind([[maybe_unused]] stack_memory& stack) noexcept {
#ifdef GREENEV_HAVE_VALGRIND
  stack.valgrind_id = VALGRIND_STACK_REGISTER(stack.bottom, stack.top());
#endif
}

[[noreturn]] void throw_mmap_error(std::size_t bytes) {
  const int error = errno;
  throw std::system_error(error, std::generic_category(),
                          "greenev: cannot map " + std::to_string(bytes / 1024) +
                              " KiB for a greenlet stack" +
                              (error == ENOMEM ? " (out of memory or vm.max_map_count reached; "
                                                 "consider stack_kind::compact)"
                                               : ""));
}

}  // namespace

std::size_t round_to_pages(std::size_t bytes) noexcept {
  const std::size_t page = page_size();
  return (bytes + page - 1) / page * page;
}

std::size_t guard_size() noexcept {
  static const std::size_t size = round_to_pages(guard_bytes);
  return size;
}

// The guard limit counts guarded stacks *mapped* (in use or pooled):
// mappings are what the kernel limits.
std::atomic<std::size_t> mapped_guarded{0};
std::atomic<std::size_t> mapped_bytes{0};

std::mutex& orphan_list_mutex() noexcept {
  return orphans().mutex;
}

void unmap_guarded(stack_memory stack) noexcept {
#ifdef GREENEV_HAVE_VALGRIND
  VALGRIND_STACK_DEREGISTER(stack.valgrind_id);
#endif
  const std::size_t guard = guard_size();
  ::munmap(stack.bottom - guard, stack.size + guard);
  mapped_bytes.fetch_sub(stack.size + guard, std::memory_order_relaxed);
  mapped_guarded.fetch_sub(1, std::memory_order_relaxed);
}

void forget_pages(stack_memory& stack) noexcept {
  ::madvise(stack.bottom, stack.size, MADV_DONTNEED);
  stack.fresh = true;
}

// One madvise instead of the page fault the greenlet's first frame would
// take: the kernel commits the page without the exception round trip. Where
// faults are cheap it costs the same; on a guest with shadow page tables a
// fault cost about 12 us against about 7.5 us for the madvise and the first
// write (docs/design.md, "The stack model"). One page only, the one every
// greenlet writes: deeper pages fault as usual, so RSS is what the greenlet
// uses. Best effort: kernels before 5.14 refuse the advice (EINVAL), and then
// the fault happens as before.
void populate_top_page(stack_memory& stack) noexcept {
  stack.fresh = false;
#ifdef MADV_POPULATE_WRITE
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed)) return;
  const int saved = errno;
  const std::size_t page = page_size();
  if (::madvise(stack.top() - page, page, MADV_POPULATE_WRITE) != 0 && errno == EINVAL) {
    unsupported.store(true, std::memory_order_relaxed);
  }
  errno = saved;
#endif
}
stack_memory map_guarded(std::size_t size) {
  const std::size_t guard = guard_size();
  const std::size_t total = size + guard;
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) throw_mmap_error(total);
  if (::mprotect(base, guard, PROT_NONE) != 0) {
    ::munmap(base, total);
    throw_mmap_error(total);
  }
  mapped_bytes.fetch_add(total, std::memory_order_relaxed);
  mapped_guarded.fetch_add(1, std::memory_order_relaxed);
  stack_memory stack{static_cast<char*>(base) + guard, size, true, true, 0};
  register_with_valgrind(stack);
  return stack;
}

std::size_t stacks_in_slab(std::size_t size) noexcept {
  return std::clamp<std::size_t>(slab_bytes_limit / size, 1, stacks_per_slab);
}

// Maps a slab of compact stacks and appends them all to `out` (which must
// have room: nothing here may throw after the mapping).
void map_compact_slab(std::size_t size, std::vector<stack_memory>& out) {
  const std::size_t count = stacks_in_slab(size);
  const std::size_t total = count * size;
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) throw_mmap_error(total);
  mapped_bytes.fetch_add(total, std::memory_order_relaxed);
  char* bottom = static_cast<char*>(base);
  for (std::size_t i = 0; i < count; ++i) {
    stack_memory stack{bottom + i * size, size, false, true, 0};
    register_with_valgrind(stack);
    out.push_back(stack);
  }
}

stack_memory take_orphan_compact(std::size_t size) {
  orphan_pool& pool = orphans();
  std::lock_guard lock(pool.mutex);
  auto it = std::find_if(pool.compact.begin(), pool.compact.end(),
                         [size](const stack_memory& s) { return s.size == size; });
  if (it == pool.compact.end()) return {};
  stack_memory stack = *it;
  *it = pool.compact.back();
  pool.compact.pop_back();
  return stack;
}

void give_orphan_compact(stack_memory stack) noexcept {
  orphan_pool& pool = orphans();
  std::lock_guard lock(pool.mutex);
  try {
    pool.compact.push_back(stack);
  } catch (...) {
    // Out of memory for the list: the slab keeps the stack's address space
    // reserved; its pages were already returned. Nothing else to do.
  }
}

// Returns the pages of `count` free compact stacks to the system and hands
// the stacks to the process-wide list. Stacks of a slab are adjacent, so they
// are sorted and each run is one madvise: a call per stack cost four times
// as much (the system call and a TLB flush each), a burst of greenlets
// finishing then spent more time here than running. Reorders the range.
void return_compact(stack_memory* stacks, std::size_t count) noexcept {
  std::sort(stacks, stacks + count,
            [](const stack_memory& a, const stack_memory& b) { return a.bottom < b.bottom; });
  for (std::size_t run = 0; run < count;) {
    std::size_t end = run + 1;
    while (end < count && stacks[end].bottom == stacks[end - 1].top()) ++end;
    ::madvise(stacks[run].bottom, static_cast<std::size_t>(stacks[end - 1].top() - stacks[run].bottom),
              MADV_DONTNEED);
    run = end;
  }
  for (std::size_t i = 0; i < count; ++i) stacks[i].fresh = true;
  orphan_pool& pool = orphans();
  std::lock_guard lock(pool.mutex);
  try {
    pool.compact.insert(pool.compact.end(), stacks, stacks + count);
  } catch (...) {
    // Out of memory for the list: the slabs keep the stacks' address space
    // reserved; their pages were already returned. Nothing else to do.
  }
}

}  // namespace greenev::detail
