// The per-thread stack pool, its statistics, and the default stack options.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "stack_internal.hpp"

namespace greenev {
namespace detail {

std::atomic<stack_prefault> option_prefault{stack_prefault::off};

namespace {

#if defined(GREENEV_DETAIL_TU_ASAN) || defined(GREENEV_DETAIL_TU_TSAN)
// Sanitizers make frames larger (redzones, shadow bookkeeping).
constexpr std::size_t default_size = 1024 * 1024;
#else
constexpr std::size_t default_size = 256 * 1024;
#endif
constexpr std::size_t default_max_guarded = 16384;
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

std::atomic<std::size_t> option_size{default_size};
std::atomic<stack_kind> option_kind{stack_kind::guarded};
std::atomic<std::size_t> option_max_guarded{default_max_guarded};

// In-use counts live in each thread's pool (no atomic read-modify-write on
// the spawn path); stack_stats() sums the registered pools plus what exited
// threads left behind.
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

// Owner-thread-only updates of a counter others may read.
void bump(std::atomic<std::size_t>& counter, std::ptrdiff_t delta) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + static_cast<std::size_t>(delta),
                std::memory_order_relaxed);
}

}  // namespace

std::mutex& pool_registry_mutex() noexcept {
  return registry().mutex;
}

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
        std::lock_guard lock(prefault_mutex());
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
        std::unique_lock lock(prefault_mutex(), std::try_to_lock);
        if (lock.owns_lock() && b.mailbox->wanted > 0) {
          --b.mailbox->wanted;
          b.in_flight -= std::min(b.in_flight, count);
        }
      }
    }
  }
  if (stack.fresh) populate_top_page(stack);
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
  std::unique_lock lock(prefault_mutex(), std::defer_lock);
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
      std::lock_guard lock(prefault_mutex());
      n += b.mailbox->ready.size();
    }
  }
  return n;
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
