// Greenlet stacks: mmap'd, lazily committed, pooled; guard pages with an
// overflow reporter, or compact slabs for very many greenlets.
#include "stack_pool.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <system_error>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define GREENEV_HAVE_VALGRIND 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define GREENEV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GREENEV_ASAN 1
#endif
#endif
#ifdef GREENEV_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace greenev {
namespace detail {

std::atomic<stack_prefault> option_prefault{stack_prefault::off};

namespace {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_to_pages(std::size_t bytes) noexcept {
  const std::size_t page = page_size();
  return (bytes + page - 1) / page * page;
}

std::size_t guard_size() noexcept;

#if defined(GREENEV_ASAN) || defined(GREENEV_DETAIL_TU_TSAN)
// Sanitizers make frames larger (redzones, shadow bookkeeping).
constexpr std::size_t default_size = 1024 * 1024;
#else
constexpr std::size_t default_size = 256 * 1024;
#endif
constexpr std::size_t default_max_guarded = 16384;
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
// Free stacks a thread keeps per bucket once it is idle. Releasing a stack
// never makes a system call: the excess is returned (guarded stacks
// unmapped, compact ones madvise'd and handed to the process-wide list) by
// trim_idle(), which the hub calls before it blocks, so that a burst of
// greenlets neither pins RSS forever nor pays one syscall per stack while
// it finishes. Without a hub, a bucket past hard_pool_limit trims itself.
// (With one it does not: 100,000 sleepers waking within 0.1 s spent a
// quarter of the hub's time freeing pages in those trims, and woke late.)
constexpr std::size_t local_pool_limit = 256;
constexpr std::size_t hard_pool_limit = 16384;
// Compact slabs hold this many stacks, capped at slab_bytes_limit.
constexpr std::size_t stacks_per_slab = 64;
constexpr std::size_t slab_bytes_limit = std::size_t{64} << 20;

std::size_t guard_size() noexcept {
  static const std::size_t size = round_to_pages(guard_bytes);
  return size;
}

std::atomic<std::size_t> option_size{default_size};
std::atomic<stack_kind> option_kind{stack_kind::guarded};
std::atomic<std::size_t> option_max_guarded{default_max_guarded};

// In-use counts live in each thread's pool (no atomic read-modify-write on
// the spawn path); stack_stats() sums the registered pools plus what exited
// threads left behind. The guard limit counts guarded stacks *mapped* (in
// use or pooled): mappings are what the kernel limits.
std::atomic<std::size_t> mapped_guarded{0};
std::atomic<std::size_t> mapped_bytes{0};
std::atomic<std::size_t> prefaulted_stacks{0};
std::atomic<std::ptrdiff_t> orphan_live{0};
std::atomic<std::ptrdiff_t> orphan_live_guarded{0};

struct pool_registry {
  std::mutex mutex;
  std::vector<const stack_pool*> pools;
};
pool_registry& registry() {
  static pool_registry* r = new pool_registry;  // leaked: used by exiting threads
  return *r;
}

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

void unmap_guarded(stack_memory stack) noexcept {
#ifdef GREENEV_HAVE_VALGRIND
  VALGRIND_STACK_DEREGISTER(stack.valgrind_id);
#endif
  const std::size_t guard = guard_size();
  ::munmap(stack.bottom - guard, stack.size + guard);
  mapped_bytes.fetch_sub(stack.size + guard, std::memory_order_relaxed);
  mapped_guarded.fetch_sub(1, std::memory_order_relaxed);
}

void forget_pages(const stack_memory& stack) noexcept {
  ::madvise(stack.bottom, stack.size, MADV_DONTNEED);
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
  stack_memory stack{static_cast<char*>(base) + guard, size, true, 0};
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
    stack_memory stack{bottom + i * size, size, false, 0};
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
  orphan_pool& pool = orphans();
  std::lock_guard lock(pool.mutex);
  try {
    pool.compact.insert(pool.compact.end(), stacks, stacks + count);
  } catch (...) {
    // Out of memory for the list: the slabs keep the stacks' address space
    // reserved; their pages were already returned. Nothing else to do.
  }
}

// Owner-thread-only updates of a counter others may read.
void bump(std::atomic<std::size_t>& counter, std::ptrdiff_t delta) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + static_cast<std::size_t>(delta),
                std::memory_order_relaxed);
}

void prepare_for_reuse([[maybe_unused]] const stack_memory& stack) noexcept {
#ifdef GREENEV_ASAN
  // Frames of the previous owner may have left redzones poisoned.
  __asan_unpoison_memory_region(stack.bottom, stack.size);
#endif
}

}  // namespace

// ---- background prefaulting --------------------------------------------------
//
// A fresh stack's first page costs a fault (~1.3 us: memcg charge, zeroing,
// LRU) when its greenlet first runs; for a burst of 100,000 spawns that is
// most of the time it takes to start them, all on the hub's thread. With
// stack_prefault::background, creating a greenlet that will need a compact
// stack counts it in its pool's bucket; when the counted greenlets outnumber
// the bucket's free and requested stacks, the pool asks one process-wide
// helper thread for a slab. The helper maps it, touches each stack's top page
// and hands them over in small chunks; the pool takes them when it runs dry.
// Faults of different threads run in parallel (per-VMA locks), so the hub
// thread starting greenlets and the helper divide the work. When the helper
// is behind, the pool maps a slab itself and withdraws one request, so the
// two never fault more than demand plus the slab in progress. The owner
// only try_locks the shared mutex on its hot paths, so a descheduled helper
// holding it cannot stall the hub; a missed try is harmless (it asks or
// collects on a later call, or maps its own slab). The helper keeps normal
// priority: at SCHED_IDLE it could be preempted inside mmap() holding the
// kernel's mmap lock, which the hub thread's own mmap and brk then wait for.

// Everything here is guarded by the helper's mutex.
struct prefault_mailbox {
  std::size_t size = 0;             // stack size of the bucket it serves
  std::size_t wanted = 0;           // slabs requested and not begun
  std::vector<stack_memory> ready;  // touched stacks the owner has not taken
  bool queued = false;              // on the helper's work list
  bool abandoned = false;           // the owning pool is gone
};

namespace {

// Handed over as they are touched: a pool that ran dry gets work sooner.
constexpr std::size_t prefault_chunk = 16;

struct prefault_helper {
  std::mutex mutex;
  std::condition_variable work;
  std::deque<std::shared_ptr<prefault_mailbox>> queue;
  // Free compact stacks whose pages the helper returns for an idle hub.
  std::vector<stack_memory> returns;
  bool started = false;
};
prefault_helper& helper() {
  static prefault_helper* h = new prefault_helper;  // leaked: its thread never exits
  return *h;
}

void touch_top_page(const stack_memory& stack) noexcept {
  // Writing the zero the fresh page already holds commits it; only the
  // helper can see these stacks yet.
  *reinterpret_cast<volatile char*>(stack.top() - 1) = 0;
}

void prefault_slab(prefault_mailbox& box, std::size_t size) noexcept {
  std::vector<stack_memory> slab;
  try {
    slab.reserve(stacks_in_slab(size));
    map_compact_slab(size, slab);
  } catch (...) {
    return;  // no memory or mappings: the pool maps (and reports) it itself
  }
  for (std::size_t done = 0; done < slab.size();) {
    const std::size_t end = std::min(slab.size(), done + prefault_chunk);
    for (std::size_t i = done; i < end; ++i) touch_top_page(slab[i]);
    prefaulted_stacks.fetch_add(end - done, std::memory_order_relaxed);
    {
      std::lock_guard lock(helper().mutex);
      if (!box.abandoned) {
        try {
          box.ready.insert(box.ready.end(), slab.begin() + static_cast<std::ptrdiff_t>(done),
                           slab.begin() + static_cast<std::ptrdiff_t>(end));
          done = end;
          continue;
        } catch (...) {
          // No memory for the list: give the rest back below.
        }
      }
    }
    return_compact(slab.data() + done, slab.size() - done);
    return;
  }
}

void run_prefault_helper() noexcept {
  prefault_helper& h = helper();
  std::unique_lock lock(h.mutex);
  for (;;) {
    h.work.wait(lock, [&] { return !h.queue.empty() || !h.returns.empty(); });
    if (!h.returns.empty()) {
      std::vector<stack_memory> returns;
      returns.swap(h.returns);
      lock.unlock();
      return_compact(returns.data(), returns.size());
      lock.lock();
      continue;
    }
    std::shared_ptr<prefault_mailbox> box = std::move(h.queue.front());
    h.queue.pop_front();
    if (box->abandoned || box->wanted == 0) {
      box->queued = false;
      continue;
    }
    --box->wanted;
    const std::size_t size = box->size;
    if (box->wanted > 0) {
      h.queue.push_back(box);  // round robin between threads' pools
    } else {
      box->queued = false;
    }
    lock.unlock();
    prefault_slab(*box, size);
    lock.lock();
  }
}

// A forked child has no helper thread, and the parent's may have held the
// locks it takes (its own, the orphan list's while returning stacks, the
// pool registry's). Held across the fork, they are consistent in the child,
// which then makes them anew rather than unlocking them: the helper's
// condition variable still counts the parent's helper as a waiter (glibc
// keeps waiter and group counts inside it), a thread that does not exist in
// the child; a notify aimed at it was lost, or waited forever for it to wake.
void lock_helper_for_fork() noexcept {
  helper().mutex.lock();
  orphans().mutex.lock();
  registry().mutex.lock();
}
void unlock_helper_after_fork() noexcept {
  registry().mutex.unlock();
  orphans().mutex.unlock();
  helper().mutex.unlock();
}
void reset_helper_in_child() noexcept {
  prefault_helper& h = helper();
  h.started = false;
  for (const auto& box : h.queue) box->queued = false;
  h.queue.clear();
  // The old objects are abandoned, never destroyed (nor unlocked).
  ::new (static_cast<void*>(&registry().mutex)) std::mutex;
  ::new (static_cast<void*>(&orphans().mutex)) std::mutex;
  ::new (static_cast<void*>(&h.work)) std::condition_variable;
  ::new (static_cast<void*>(&h.mutex)) std::mutex;
}

// Called with the helper's mutex held. Throws if the thread cannot start.
void start_prefault_helper(prefault_helper& h) {
  static const bool registered = [] {
    ::pthread_atfork(lock_helper_for_fork, unlock_helper_after_fork, reset_helper_in_child);
    return true;
  }();
  (void)registered;
  // Detached, and taking no signals: they belong to the program's own threads.
  pthread_attr_t attributes;
  ::pthread_attr_init(&attributes);
  ::pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  const int error = ::pthread_create(
      &thread, &attributes,
      [](void*) -> void* {
        // Linux takes 15 characters at most (the setname call fails beyond).
        ::pthread_setname_np(::pthread_self(), "greenev-pfault");
        run_prefault_helper();
        return nullptr;
      },
      nullptr);
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ::pthread_attr_destroy(&attributes);
  if (error != 0) throw std::system_error(error, std::generic_category(), "greenev: prefault thread");
  h.started = true;
}

// Asks for one more slab for `box`; false if the helper's lock was busy.
// Throws if the helper cannot start.
bool try_request_slab(const std::shared_ptr<prefault_mailbox>& box) {
  prefault_helper& h = helper();
  {
    std::unique_lock lock(h.mutex, std::try_to_lock);
    if (!lock.owns_lock()) return false;
    if (!h.started) start_prefault_helper(h);
    ++box->wanted;
    if (box->queued) return true;  // the helper will come back to it
    h.queue.push_back(box);
    box->queued = true;
  }
  h.work.notify_one();
  return true;
}

// Hands free compact stacks to the helper, which returns their pages; false
// (nothing done) if its lock is busy or it has no memory for the list.
bool try_hand_to_helper(const stack_memory* stacks, std::size_t count) noexcept {
  prefault_helper& h = helper();
  {
    std::unique_lock lock(h.mutex, std::try_to_lock);
    if (!lock.owns_lock() || !h.started) return false;
    try {
      h.returns.insert(h.returns.end(), stacks, stacks + count);
    } catch (...) {
      return false;
    }
  }
  h.work.notify_one();
  return true;
}

}  // namespace

stack_statistics process_stack_stats() noexcept {
  std::ptrdiff_t live = orphan_live.load(std::memory_order_relaxed);
  std::ptrdiff_t guarded = orphan_live_guarded.load(std::memory_order_relaxed);
  {
    pool_registry& r = registry();
    std::lock_guard lock(r.mutex);
    for (const stack_pool* pool : r.pools) {
      live += static_cast<std::ptrdiff_t>(pool->live_.load(std::memory_order_relaxed));
      guarded += static_cast<std::ptrdiff_t>(pool->live_guarded_.load(std::memory_order_relaxed));
    }
  }
  stack_statistics stats;
  stats.live = static_cast<std::size_t>(live);
  stats.live_guarded = static_cast<std::size_t>(guarded);
  stats.mapped_bytes = mapped_bytes.load(std::memory_order_relaxed);
  stats.prefaulted = prefaulted_stacks.load(std::memory_order_relaxed);
  return stats;
}

stack_pool::stack_pool() {
  pool_registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.pools.push_back(this);
}

std::size_t checked_stack_size(std::size_t requested, const char* who) {
  if (requested == 0) return option_size.load(std::memory_order_relaxed);
  if (requested < min_stack_size || requested > max_stack_size) {
    throw greenlet_error(std::string("greenev: ") + who + ": stack size " + std::to_string(requested) +
                         " is out of range [" + std::to_string(min_stack_size) + ", " +
                         std::to_string(max_stack_size) + "]");
  }
  return round_to_pages(requested);
}

stack_pool::~stack_pool() {
  {
    pool_registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase(r.pools, this);
    orphan_live.fetch_add(static_cast<std::ptrdiff_t>(live_.load(std::memory_order_relaxed)),
                          std::memory_order_relaxed);
    orphan_live_guarded.fetch_add(static_cast<std::ptrdiff_t>(live_guarded_.load(std::memory_order_relaxed)),
                                  std::memory_order_relaxed);
  }
  for (bucket& b : buckets_) {
    if (b.mailbox) {
      std::vector<stack_memory> ready;
      {
        std::lock_guard lock(helper().mutex);
        b.mailbox->abandoned = true;  // the helper returns what it is still touching
        ready.swap(b.mailbox->ready);
      }
      return_compact(ready.data(), ready.size());
    }
    if (b.guarded) {
      for (stack_memory& stack : b.free) unmap_guarded(stack);
    } else {
      return_compact(b.free.data(), b.free.size());
    }
  }
}

stack_pool::bucket& stack_pool::bucket_for(std::size_t size, bool guarded) {
  for (bucket& b : buckets_) {
    if (b.size == size && b.guarded == guarded) return b;
  }
  return buckets_.emplace_back(bucket{.size = size, .guarded = guarded});
}

stack_memory stack_pool::allocate(std::size_t size, stack_kind kind, bool expected) {
  if (kind == stack_kind::default_kind) kind = option_kind.load(std::memory_order_relaxed);
  bool guarded = kind == stack_kind::guarded;
  if (guarded &&
      mapped_guarded.load(std::memory_order_relaxed) >= option_max_guarded.load(std::memory_order_relaxed)) {
    guarded = false;
  }
  bucket& b = bucket_for(size, guarded);
  if (expected && b.expected > 0) --b.expected;
  if (b.free.empty() && b.mailbox) collect_prefaulted(b, false, false);
  stack_memory stack;
  if (!b.free.empty()) {
    stack = b.free.back();
    b.free.pop_back();
    prepare_for_reuse(stack);
  } else if (guarded) {
    install_overflow_reporter();
    stack = map_guarded(size);
  } else {
    stack = take_orphan_compact(size);
    if (stack) {
      prepare_for_reuse(stack);
    } else {
      const std::size_t count = stacks_in_slab(size);
      b.free.reserve(b.free.size() + count);
      map_compact_slab(size, b.free);
      stack = b.free.back();
      b.free.pop_back();
      if (b.mailbox) {
        // The helper is behind: this slab replaces one it has not begun.
        std::unique_lock lock(helper().mutex, std::try_to_lock);
        if (lock.owns_lock() && b.mailbox->wanted > 0) {
          --b.mailbox->wanted;
          b.in_flight -= std::min(b.in_flight, count);
        }
      }
    }
  }
  bump(live_, 1);
  if (stack.guarded) bump(live_guarded_, 1);
  return stack;
}

bool stack_pool::expect_start(std::size_t size, stack_kind kind) noexcept {
  if (size == 0) size = option_size.load(std::memory_order_relaxed);
  if (kind == stack_kind::default_kind) kind = option_kind.load(std::memory_order_relaxed);
  if (kind == stack_kind::guarded &&
      mapped_guarded.load(std::memory_order_relaxed) < option_max_guarded.load(std::memory_order_relaxed)) {
    return false;
  }
  try {
    bucket& b = bucket_for(size, false);
    ++b.expected;
    if (b.expected > b.free.size() + b.in_flight) {
      if (!b.mailbox) {
        b.mailbox = std::make_shared<prefault_mailbox>();
        b.mailbox->size = size;
        prefaulting_ = true;
      }
      if (try_request_slab(b.mailbox)) b.in_flight += stacks_in_slab(size);
    }
  } catch (...) {
    // No memory or no thread: its stack will be faulted in when it starts.
  }
  return true;
}

void stack_pool::forget_expected(std::size_t size) noexcept {
  if (size == 0) size = option_size.load(std::memory_order_relaxed);
  for (bucket& b : buckets_) {
    if (b.size == size && !b.guarded && b.expected > 0) --b.expected;
  }
}

std::size_t stack_pool::collect_prefaulted(bucket& b, bool cancel, bool wait) noexcept {
  std::unique_lock lock(helper().mutex, std::defer_lock);
  if (wait) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return 0;
  }
  prefault_mailbox& box = *b.mailbox;
  std::size_t moved = 0;
  if (!box.ready.empty()) {
    try {
      moved = box.ready.size();
      if (b.free.empty()) {
        b.free.swap(box.ready);
      } else {
        b.free.insert(b.free.end(), box.ready.begin(), box.ready.end());
        box.ready.clear();
      }
    } catch (...) {
      // No memory to grow the free list: they stay in the mailbox.
    }
  }
  b.in_flight -= std::min(b.in_flight, moved);
  if (cancel) {
    // Idle: counted greenlets that have not started by now (spawn_later's)
    // need no stack soon. A slab the helper is touching still arrives.
    box.wanted = 0;
    b.in_flight = 0;
  }
  return moved;
}

void stack_pool::collect_all_prefaulted(bool wait) noexcept {
  for (bucket& b : buckets_) {
    if (!b.mailbox) continue;
    collect_prefaulted(b, true, wait);
    if (b.free.size() > local_pool_limit) excess_ = true;
  }
}

void stack_pool::release(stack_memory stack) noexcept {
  bump(live_, -1);
  if (stack.guarded) bump(live_guarded_, -1);
  try {
    bucket& b = bucket_for(stack.size, stack.guarded);
    b.free.push_back(stack);
    if (b.free.size() > local_pool_limit) excess_ = true;
    if (b.free.size() > hard_pool_limit && !trimmed_when_idle_) trim_to(local_pool_limit, false);
    return;
  } catch (...) {
    // No memory to grow the pool: give the stack back now.
  }
  return_to_system(stack);
}

void stack_pool::return_to_system(stack_memory stack) noexcept {
  if (stack.guarded) {
    unmap_guarded(stack);
  } else {
    forget_pages(stack);
    give_orphan_compact(stack);
  }
}

// Returns the oldest free stacks (the coldest pages) beyond `keep` per bucket.
// With `background`, compact ones go to the prefault helper if it will take
// them: freeing their pages (about 0.4 us a stack) on the hub's thread made
// 100,000 sleepers woken in 0.1 s wake late.
void stack_pool::trim_to(std::size_t keep, bool background) noexcept {
  for (bucket& b : buckets_) {
    if (b.free.size() <= keep) continue;
    const std::size_t excess = b.free.size() - keep;
    if (b.guarded) {
      for (std::size_t i = 0; i < excess; ++i) unmap_guarded(b.free[i]);
    } else if (!background || !try_hand_to_helper(b.free.data(), excess)) {
      return_compact(b.free.data(), excess);
    }
    b.free.erase(b.free.begin(), b.free.begin() + static_cast<std::ptrdiff_t>(excess));
  }
  excess_ = false;
}

void stack_pool::trim_idle() noexcept {
  trimmed_when_idle_ = true;
  if (prefaulting_) collect_all_prefaulted(false);
  if (excess_) trim_to(local_pool_limit, prefaulting_);
}

void stack_pool::release_orphan(stack_memory stack) noexcept {
  orphan_live.fetch_sub(1, std::memory_order_relaxed);
  if (stack.guarded) orphan_live_guarded.fetch_sub(1, std::memory_order_relaxed);
  if (stack.guarded) {
    unmap_guarded(stack);
  } else {
    forget_pages(stack);
    give_orphan_compact(stack);
  }
}

void stack_pool::trim() noexcept {
  if (prefaulting_) collect_all_prefaulted(true);
  trim_to(0, false);
}

std::size_t stack_pool::pooled() const noexcept {
  std::size_t n = 0;
  for (const bucket& b : buckets_) {
    n += b.free.size();
    if (b.mailbox) {
      std::lock_guard lock(helper().mutex);
      n += b.mailbox->ready.size();
    }
  }
  return n;
}

// ---- stack overflow reporting ------------------------------------------

namespace {

struct sigaction previous_segv_action;
std::once_flag segv_once;

// Appends `text` to buf at *len (bounded), async-signal-safe.
void append(char* buf, std::size_t cap, std::size_t* len, const char* text) noexcept {
  while (*text != '\0' && *len + 1 < cap) buf[(*len)++] = *text++;
}

void append_number(char* buf, std::size_t cap, std::size_t* len, std::size_t value) noexcept {
  char digits[24];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && n < sizeof digits);
  while (n > 0 && *len + 1 < cap) buf[(*len)++] = digits[--n];
}

// The stack pointer of the interrupted code, or 0 where unknown.
std::uintptr_t interrupted_stack_pointer([[maybe_unused]] const void* context) noexcept {
  const auto* state = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(state->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(state->uc_mcontext.sp);
#else
  (void)state;
  return 0;
#endif
}

// A fault in the guard is an overflow. So is one with the stack pointer
// below the stack: a frame larger than the guard that skipped it faulted
// further down (unmapped memory, another stack's guard). The window below
// the guard bounds that to plausible frames, so that a fault on some other
// stack the code switched to is not taken for one.
constexpr std::size_t skipped_frame_limit = std::size_t{1} << 20;

bool is_overflow(const stack_memory& stack, const void* fault_address, const void* context) noexcept {
  const auto bottom = reinterpret_cast<std::uintptr_t>(stack.bottom);
  const auto address = reinterpret_cast<std::uintptr_t>(fault_address);
  const std::size_t guard = guard_size();
  if (address < bottom && bottom - address <= guard) return true;
  const std::uintptr_t sp = interrupted_stack_pointer(context);
  return sp != 0 && sp < bottom && bottom - sp <= guard + skipped_frame_limit;
}

void on_segv(int signal_number, siginfo_t* info, void* context) {
  running_stack_info running;
  if (describe_running_stack(running) && running.stack.guarded) {
    if (is_overflow(running.stack, info->si_addr, context)) {
      char message[512];
      std::size_t len = 0;
      append(message, sizeof message, &len, "greenev: stack overflow in greenlet ");
      if (running.name != nullptr) {
        append(message, sizeof message, &len, running.name);
      } else {
        append(message, sizeof message, &len, "greenlet-");
        append_number(message, sizeof message, &len, running.id);
      }
      append(message, sizeof message, &len, " (");
      append_number(message, sizeof message, &len, running.stack.size / 1024);
      append(message, sizeof message, &len, " KiB stack)\n");
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message, len);
      std::abort();
    }
  }
  // Not a greenlet overflow: hand over to whoever was installed before us.
  if ((previous_segv_action.sa_flags & SA_SIGINFO) != 0 && previous_segv_action.sa_sigaction != nullptr) {
    previous_segv_action.sa_sigaction(signal_number, info, context);
    return;
  }
  if (previous_segv_action.sa_handler != SIG_DFL && previous_segv_action.sa_handler != SIG_IGN) {
    previous_segv_action.sa_handler(signal_number);
    return;
  }
  // Default action: restore it and return; the faulting access repeats.
  ::signal(signal_number, SIG_DFL);
}

// The alternate signal stack of this thread, if greenev installed it.
struct alternate_stack {
  void* memory = nullptr;
  std::size_t size = 0;
  ~alternate_stack() {
    if (memory == nullptr) return;
    stack_t disable{};
    disable.ss_flags = SS_DISABLE;
    ::sigaltstack(&disable, nullptr);
    ::munmap(memory, size);
  }
};
thread_local alternate_stack thread_alternate_stack;

}  // namespace

void install_overflow_reporter() {
  std::call_once(segv_once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, &previous_segv_action);
  });
  if (thread_alternate_stack.memory != nullptr) return;
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
  const std::size_t size = round_to_pages(64 * 1024);
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return;  // overflow then dies with a plain SIGSEGV
  stack_t alt{};
  alt.ss_sp = memory;
  alt.ss_size = size;
  if (::sigaltstack(&alt, nullptr) != 0) {
    ::munmap(memory, size);
    return;
  }
  thread_alternate_stack.memory = memory;
  thread_alternate_stack.size = size;
}

}  // namespace detail

stack_options default_stack_options() noexcept {
  return {detail::option_size.load(std::memory_order_relaxed),
          detail::option_kind.load(std::memory_order_relaxed),
          detail::option_max_guarded.load(std::memory_order_relaxed),
          detail::option_prefault.load(std::memory_order_relaxed)};
}

void set_default_stack_options(stack_options options) {
  if (options.size != 0) {
    const std::size_t size = detail::checked_stack_size(options.size, "set_default_stack_options");
    detail::option_size.store(size, std::memory_order_relaxed);
  }
  if (options.kind != stack_kind::default_kind)
    detail::option_kind.store(options.kind, std::memory_order_relaxed);
  if (options.max_guarded_stacks != 0) {
    detail::option_max_guarded.store(options.max_guarded_stacks, std::memory_order_relaxed);
  }
  if (options.prefault != stack_prefault::unchanged)
    detail::option_prefault.store(options.prefault, std::memory_order_relaxed);
}

}  // namespace greenev
