// Greenlet stacks: mmap'd, lazily committed, pooled; guard pages with an
// overflow reporter, or compact slabs for very many greenlets.
#include "stack_pool.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
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
namespace {

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_to_pages(std::size_t bytes) noexcept {
  const std::size_t page = page_size();
  return (bytes + page - 1) / page * page;
}

#if defined(GREENEV_ASAN) || defined(GREENEV_DETAIL_TU_TSAN)
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
constexpr std::size_t local_pool_limit = 256;
constexpr std::size_t hard_pool_limit = 16384;
// Compact slabs hold this many stacks, capped at slab_bytes_limit.
constexpr std::size_t stacks_per_slab = 64;
constexpr std::size_t slab_bytes_limit = std::size_t{64} << 20;

std::atomic<std::size_t> option_size{default_size};
std::atomic<stack_kind> option_kind{stack_kind::guarded};
std::atomic<std::size_t> option_max_guarded{default_max_guarded};

// In-use counts live in each thread's pool (no atomic read-modify-write on
// the spawn path); stack_stats() sums the registered pools plus what exited
// threads left behind. The guard limit counts guarded stacks *mapped* (in
// use or pooled): mappings are what the kernel limits.
std::atomic<std::size_t> mapped_guarded{0};
std::atomic<std::size_t> mapped_bytes{0};
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
  const std::size_t page = page_size();
  ::munmap(stack.bottom - page, stack.size + page);
  mapped_bytes.fetch_sub(stack.size + page, std::memory_order_relaxed);
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
  const std::size_t page = page_size();
  const std::size_t total = size + page;
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) throw_mmap_error(total);
  if (::mprotect(base, page, PROT_NONE) != 0) {
    ::munmap(base, total);
    throw_mmap_error(total);
  }
  mapped_bytes.fetch_add(total, std::memory_order_relaxed);
  mapped_guarded.fetch_add(1, std::memory_order_relaxed);
  stack_memory stack{static_cast<char*>(base) + page, size, true, 0};
  register_with_valgrind(stack);
  return stack;
}

// Maps a slab of compact stacks; returns one, appends the rest to `spare`.
stack_memory map_compact_slab(std::size_t size, std::vector<stack_memory>& spare) {
  const std::size_t count = std::clamp<std::size_t>(slab_bytes_limit / size, 1, stacks_per_slab);
  const std::size_t total = count * size;
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) throw_mmap_error(total);
  mapped_bytes.fetch_add(total, std::memory_order_relaxed);
  char* bottom = static_cast<char*>(base);
  for (std::size_t i = 1; i < count; ++i) {
    stack_memory stack{bottom + i * size, size, false, 0};
    register_with_valgrind(stack);
    spare.push_back(stack);
  }
  stack_memory first{bottom, size, false, 0};
  register_with_valgrind(first);
  return first;
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
  return buckets_.emplace_back(bucket{size, guarded, {}});
}

stack_memory stack_pool::allocate(std::size_t size, stack_kind kind) {
  if (kind == stack_kind::default_kind) kind = option_kind.load(std::memory_order_relaxed);
  bool guarded = kind == stack_kind::guarded;
  if (guarded &&
      mapped_guarded.load(std::memory_order_relaxed) >= option_max_guarded.load(std::memory_order_relaxed)) {
    guarded = false;
  }
  bucket& b = bucket_for(size, guarded);
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
      b.free.reserve(b.free.size() + stacks_per_slab);
      stack = map_compact_slab(size, b.free);
    }
  }
  bump(live_, 1);
  if (stack.guarded) bump(live_guarded_, 1);
  return stack;
}

void stack_pool::release(stack_memory stack) noexcept {
  bump(live_, -1);
  if (stack.guarded) bump(live_guarded_, -1);
  try {
    bucket& b = bucket_for(stack.size, stack.guarded);
    b.free.push_back(stack);
    if (b.free.size() > local_pool_limit) excess_ = true;
    if (b.free.size() > hard_pool_limit) trim_to(local_pool_limit);
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
void stack_pool::trim_to(std::size_t keep) noexcept {
  for (bucket& b : buckets_) {
    if (b.free.size() <= keep) continue;
    const std::size_t excess = b.free.size() - keep;
    if (b.guarded) {
      for (std::size_t i = 0; i < excess; ++i) unmap_guarded(b.free[i]);
    } else {
      return_compact(b.free.data(), excess);
    }
    b.free.erase(b.free.begin(), b.free.begin() + static_cast<std::ptrdiff_t>(excess));
  }
  excess_ = false;
}

void stack_pool::trim_idle() noexcept {
  if (excess_) trim_to(local_pool_limit);
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
  trim_to(0);
}

std::size_t stack_pool::pooled() const noexcept {
  std::size_t n = 0;
  for (const bucket& b : buckets_) n += b.free.size();
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

void on_segv(int signal_number, siginfo_t* info, void* context) {
  running_stack_info running;
  if (describe_running_stack(running) && running.stack.guarded) {
    const char* address = static_cast<const char*>(info->si_addr);
    // A frame larger than a page can skip the guard; count faults a little
    // below it as overflows too.
    const char* low = running.stack.bottom - 16 * page_size();
    if (address >= low && address < running.stack.bottom) {
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
          detail::option_max_guarded.load(std::memory_order_relaxed)};
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
}

}  // namespace greenev
