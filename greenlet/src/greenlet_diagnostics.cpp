// Diagnostics: the thread-state registry that tools/greenev-gdb.py reads in
// a core file, and the blocking monitor's view of another thread's running
// greenlet.
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "greenlet_internal.hpp"

// For tools/greenev-gdb.py, which must work without debug information: the
// head of the thread-state registry and the offsets of the fields it reads
// (version first; bump it when the meaning of an entry changes).
extern "C" {
[[gnu::used]] greenev::detail::thread_state* greenev_debug_threads = nullptr;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"  // GCC and Clang lay these out as written
extern const std::uint64_t greenev_debug_layout[];
[[gnu::used]] const std::uint64_t greenev_debug_layout[] = {
    1,
    offsetof(greenev::detail::thread_state, current),
    offsetof(greenev::detail::thread_state, main),
    offsetof(greenev::detail::thread_state, active_head),
    offsetof(greenev::detail::thread_state, debug_next),
    offsetof(greenev::detail::thread_state, os_thread_id),
    offsetof(greenev::detail::greenlet_impl, state),
    offsetof(greenev::detail::greenlet_impl, context),
    offsetof(greenev::detail::greenlet_impl, parent),
    offsetof(greenev::detail::greenlet_impl, id),
    offsetof(greenev::detail::greenlet_impl, active_next),
    offsetof(greenev::detail::greenlet_impl, name),
    offsetof(greenev::detail::greenlet_impl, hub.spawn_site),
    offsetof(greenev::detail::greenlet_impl, hub.wait_what),
    offsetof(greenev::detail::greenlet_impl, hub.wait_fd),
    offsetof(greenev::detail::greenlet_impl, hub.wait_until),
    offsetof(greenev::detail::greenlet_impl, is_main),
};
#pragma GCC diagnostic pop
}

namespace greenev::detail {

namespace {
std::mutex debug_mutex;       // guards greenev_debug_threads and the states' debug links
fork_hooks inner_fork_hooks;  // set once by the hub layer, before any fork

// Held across fork(2): a thread listing the registry (run info, the blocking
// monitor) must not leave it locked in the child, where that thread is gone.
void lock_registry_for_fork() noexcept {
  debug_mutex.lock();
  if (inner_fork_hooks.prepare != nullptr) inner_fork_hooks.prepare();
}
void unlock_registry_in_parent() noexcept {
  if (inner_fork_hooks.parent != nullptr) inner_fork_hooks.parent();
  debug_mutex.unlock();
}
// The child has one thread: the registry keeps only its state (the others'
// threads do not exist here; their states are abandoned, never freed).
void reset_registry_in_child() noexcept {
  if (inner_fork_hooks.child != nullptr) inner_fork_hooks.child();
  thread_state* self = tls_state;
  greenev_debug_threads = self;
  if (self != nullptr) {
    self->debug_next = self->debug_prev = nullptr;
    self->os_thread_id = static_cast<int>(::gettid());
    self->inspected.store(false, std::memory_order_relaxed);
  }
  debug_mutex.unlock();
}

void register_fork_handlers() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(lock_registry_for_fork, unlock_registry_in_parent, reset_registry_in_child);
    return true;
  }();
  (void)registered;
}
}  // namespace

void set_registry_fork_hooks(fork_hooks hooks) noexcept {
  register_fork_handlers();
  const std::lock_guard lock(debug_mutex);
  inner_fork_hooks = hooks;
}

void set_diagnostic_hub(void* hub) noexcept {
  thread_state* ts = tls_state;
  if (ts == nullptr) return;
  std::lock_guard lock(debug_mutex);
  ts->hub = hub;
}

void for_each_thread_state(void (*visit)(thread_state& ts, void* context), void* context) {
  std::lock_guard lock(debug_mutex);
  for (thread_state* ts = greenev_debug_threads; ts != nullptr; ts = ts->debug_next) visit(*ts, context);
}

void register_thread_state(thread_state& ts) noexcept {
  register_fork_handlers();
  ts.os_thread_id = static_cast<int>(::gettid());
  std::lock_guard lock(debug_mutex);
  ts.debug_next = greenev_debug_threads;
  if (ts.debug_next != nullptr) ts.debug_next->debug_prev = &ts;
  greenev_debug_threads = &ts;
}

void unregister_thread_state(thread_state& ts) noexcept {
  std::lock_guard lock(debug_mutex);
  if (ts.debug_prev != nullptr) {
    ts.debug_prev->debug_next = ts.debug_next;
  } else {
    greenev_debug_threads = ts.debug_next;
  }
  if (ts.debug_next != nullptr) ts.debug_next->debug_prev = ts.debug_prev;
  ts.debug_next = ts.debug_prev = nullptr;
}

// ---- reading another thread's running greenlet (the blocking monitor) ----
//
// The owner publishes `current` with a plain store and checks `inspected`
// with a plain load before it frees or renames a greenlet; the reader sets
// `inspected`, then membarrier(2) runs a full barrier on every thread of the
// process. After it, an owner either had already switched away from a
// greenlet it was about to free (so the reader does not see it as current)
// or sees `inspected` and waits. The cost lands on the rare reader, none on
// the switch.

void wait_while_inspected(thread_state& ts) noexcept {
  while (ts.inspected.load(std::memory_order_acquire)) ::sched_yield();
}

namespace {
bool membarrier_ready() noexcept {
  static const bool ready = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return ready;
}
}  // namespace

void copy_identity(const greenlet_impl& g, running_greenlet_snapshot& out) noexcept {
  out.id = g.id;
  out.is_main = g.is_main;
  out.spawn_site = g.hub.spawn_site;
  out.name[0] = '\0';
  if (const std::string* name = g.name.load(std::memory_order_acquire); name != nullptr) {
    const std::size_t n = std::min(name->size(), sizeof out.name - 1);
    std::memcpy(out.name, name->data(), n);
    out.name[n] = '\0';
  }
}

bool snapshot_running_greenlet(thread_state& ts, running_greenlet_snapshot& out) noexcept {
  if (!membarrier_ready()) return false;
  ts.inspected.store(true, std::memory_order_relaxed);
  bool read = false;
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) {
    if (const greenlet_impl* g = __atomic_load_n(&ts.current, __ATOMIC_ACQUIRE); g != nullptr) {
      copy_identity(*g, out);
      read = true;
    }
  }
  ts.inspected.store(false, std::memory_order_release);
  return read;
}

bool describe_running_stack(running_stack_info& info) noexcept {
  thread_state* ts = tls_state;
  if (ts == nullptr || ts->current == nullptr || ts->current->is_main) return false;
  info.stack = ts->current->stack;
  const std::string* name = ts->current->name.load(std::memory_order_relaxed);
  info.name = name == nullptr ? nullptr : name->c_str();
  info.id = ts->current->id;
  return true;
}

}  // namespace greenev::detail
