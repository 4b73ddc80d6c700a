// The greenlet core: per-thread state, the switch, start and death of a
// greenlet, and what happens when the last handle goes away.
// docs/design.md ("The greenlet model") explains the invariants relied on here.
#include <cxxabi.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <typeinfo>
#include <vector>

#include <greenev/error_reporter.hpp>
#include <greenev/greenlet.hpp>

#include "stack_pool.hpp"

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

namespace fcontext = boost::context::detail;

greenlet_impl::greenlet_impl() noexcept = default;
greenlet_impl::~greenlet_impl() {
  release_locals();
  if (body != nullptr) destroy_body();
  delete name.load(std::memory_order_relaxed);
}

namespace {
std::string default_name(const greenlet_impl& g) {
  return g.is_main ? "main" : "greenlet-" + std::to_string(g.id);
}
}  // namespace

// Several threads may ask at once (error messages name greenlets of other
// threads): the first to publish wins, the others drop their copy. Nothing
// is freed here, so a reader of the old (null) value needs no protection.
const std::string& greenlet_impl::display_name() const {
  if (const std::string* known = name.load(std::memory_order_acquire); known != nullptr) return *known;
  auto built = std::make_unique<std::string>(default_name(*this));
  std::string* published = nullptr;
  if (name.compare_exchange_strong(published, built.get(), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    return *built.release();
  }
  return *published;
}

std::string greenlet_impl::name_copy() const {
  std::lock_guard lock(anchor->mutex);  // against set_name() on the owner thread
  if (const std::string* known = name.load(std::memory_order_acquire); known != nullptr) return *known;
  return default_name(*this);
}

__thread thread_state* tls_state = nullptr;

namespace {
std::mutex debug_mutex;  // guards greenev_debug_threads and the states' debug links
}  // namespace

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

namespace {

// Ids are unique in the process; threads take them in blocks, so creating a
// greenlet costs no atomic operation here.
std::atomic<std::uint64_t> next_id_block{1};
constexpr std::uint64_t id_block_size = 4096;
thread_local std::uint64_t next_local_id = 0;
thread_local std::uint64_t local_id_limit = 0;

std::uint64_t new_greenlet_id() noexcept {
  if (next_local_id == local_id_limit) [[unlikely]] {
    next_local_id = next_id_block.fetch_add(id_block_size, std::memory_order_relaxed);
    local_id_limit = next_local_id + id_block_size;
  }
  return next_local_id++;
}

void release(greenlet_impl* g) noexcept;
greenlet_impl* destroy(greenlet_impl* g) noexcept;

void report(const std::string& what) noexcept {
  try {
    report_error("greenev: " + what);
  } catch (...) {
    report_error("greenev: (a diagnostic was lost: out of memory)");
  }
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return std::string(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// ---- the thread's list of active greenlets ------------------------------

void link_active(thread_state& ts, greenlet_impl* g) noexcept {
  g->active_prev = nullptr;
  g->active_next = ts.active_head;
  if (ts.active_head != nullptr) ts.active_head->active_prev = g;
  ts.active_head = g;
  ++ts.active_count;
}

void unlink_active(thread_state& ts, greenlet_impl* g) noexcept {
  if (g->active_prev != nullptr) {
    g->active_prev->active_next = g->active_next;
  } else {
    ts.active_head = g->active_next;
  }
  if (g->active_next != nullptr) g->active_next->active_prev = g->active_prev;
  g->active_prev = g->active_next = nullptr;
  --ts.active_count;
}

// ---- thread state --------------------------------------------------------

// The process-wide registry of thread states, for diagnostics: run info and
// the blocking monitor list threads through it, and tools/greenev-gdb.py
// walks greenev_debug_threads in a core file (C names: stable, unmangled).

void register_thread_state(thread_state& ts) noexcept {
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

struct thread_state_owner {
  ~thread_state_owner();
};
thread_local thread_state_owner tls_owner;

thread_state* create_thread_state() {
  auto ts = std::make_unique<thread_state>();
  ts->pool = new stack_pool;
  ts->anchor = new thread_anchor;
  ts->eh = reinterpret_cast<eh_globals*>(abi::__cxa_get_globals());
  auto* main = new greenlet_impl;
  main->is_main = true;
  main->state.store(greenlet_state::active, std::memory_order_relaxed);
  main->anchor = ts->anchor;
  ++ts->greenlets;
  main->id = new_greenlet_id();
#ifdef GREENEV_DETAIL_TU_TSAN
  main->tsan_fiber = __tsan_get_current_fiber();
#endif
  ts->main = main;
  publish_current(*ts, main);
  tls_state = ts.get();
  (void)&tls_owner;  // registers the thread-exit destructor
  register_thread_state(*ts);
  return ts.release();
}

thread_state& local_state() {
  thread_state* ts = tls_state;
  if (ts == nullptr) [[unlikely]]
    ts = create_thread_state();
  return *ts;
}

// ---- killing and freeing -------------------------------------------------

// Frees a greenlet nobody references. If it still has frames (its thread is
// gone, or it would not die), they are abandoned without unwinding. Returns
// its parent, whose reference the caller must drop: release() does, in a
// loop, so that freeing a long parent chain does not recurse.
greenlet_impl* free_now(greenlet_impl* g) noexcept {
  thread_state* ts = tls_state;
  if (g->current_state() == greenlet_state::active && !g->is_main) {
    // Its frames are abandoned, never unwound (its thread is gone, or it
    // refused greenlet_exit): dropping the raw context runs nothing.
    g->context = nullptr;
    if (ts != nullptr && ts->anchor == g->anchor) {
      unlink_active(*ts, g);
      ts->pool->release(g->stack);
    } else {
      stack_pool::release_orphan(g->stack);
    }
#ifdef GREENEV_DETAIL_TU_TSAN
    if (g->tsan_fiber != nullptr) __tsan_destroy_fiber(g->tsan_fiber);
#endif
  }
  greenlet_impl* const parent = g->parent;
  if (ts != nullptr && ts->anchor == g->anchor) {
    before_freeing_or_renaming(*ts);
    if (g->prefault_expected) [[unlikely]]
      ts->pool->forget_expected(g->requested_size);
    --ts->greenlets;
  } else {
    g->anchor->release();  // its thread has exited (see thread_anchor)
  }
  delete g;
  return parent;
}

enum class kill_outcome {
  died,
  kept,     // survived, and handles made meanwhile hold it: it runs on
  refused,  // survived with no handle left: reported, its frames may still run
};

// Unwinds a suspended greenlet of the calling thread by raising
// greenlet_exit in it, as python does: the current greenlet is its parent
// meanwhile (the killer gets control back), and its own parent is restored
// afterwards, so that one that survives by switching away still finishes
// into it. The caller holds a reference; on `refused` it should leak it.
// At thread exit a survivor is always `refused`: nothing can resume it.
// One that refused once is left alone from then on: it was reported, and
// at thread exit its hub (which its frames would resume into) may be gone.
kill_outcome kill_suspended(thread_state& ts, greenlet_impl* g, bool at_thread_exit) noexcept {
  if (g->refused_exit) return kill_outcome::refused;
  ts.current->add_ref();
  greenlet_impl* const own_parent = std::exchange(g->parent, ts.current);  // its reference moves here
  {
    g->add_ref();
    greenlet handle = greenlet::adopt(g);
    try {
      handle.throw_into();
    } catch (...) {
      report("exception while unwinding greenlet " + g->display_name() + " (" + describe_current_exception() +
             "); ignored");
    }
  }
  // Unless someone made `g` an ancestor of its own parent meanwhile.
  bool cycle = false;
  for (const greenlet_impl* a = own_parent; a != nullptr && !cycle; a = a->parent) cycle = a == g;
  release(cycle ? own_parent : std::exchange(g->parent, own_parent));
  if (g->dead()) return kill_outcome::died;
  if (!at_thread_exit && g->refs.load(std::memory_order_acquire) > 1) return kill_outcome::kept;
  g->refused_exit = true;
  report("greenlet " + g->display_name() +
         " caught greenlet_exit and is still suspended; its stack is leaked");
  return kill_outcome::refused;
}

void process_doomed(thread_state& ts) noexcept {
  std::vector<greenlet_impl*> doomed;
  {
    std::lock_guard lock(ts.anchor->mutex);
    doomed.swap(ts.anchor->doomed);
    ts.anchor->has_doomed.store(false, std::memory_order_relaxed);
  }
  for (greenlet_impl* g : doomed) release(destroy(g));
}

// Called once the reference count reached zero. Returns a greenlet whose
// reference the caller must drop (or null): see free_now().
greenlet_impl* destroy(greenlet_impl* g) noexcept {
  thread_state* ts = tls_state;
  if (ts != nullptr && ts->anchor == g->anchor) {
    if (g->current_state() != greenlet_state::active || g->is_main) return free_now(g);
    if (g == ts->current) {
      g->orphaned = true;  // decided when it next switches away
      return nullptr;
    }
    g->add_ref();
    // Dead: dropping that reference frees it. Kept: the new handles keep it.
    if (kill_suspended(*ts, g, false) != kill_outcome::refused) return g;
    return nullptr;  // keep the reference forever; its frames may still run
  }
  // Another thread: while the owner lives, only it may free its greenlets.
  {
    std::lock_guard lock(g->anchor->mutex);
    if (g->anchor->alive) {
      try {
        g->anchor->doomed.push_back(g);
        g->anchor->has_doomed.store(true, std::memory_order_relaxed);
        return nullptr;
      } catch (...) {
        // No memory to queue it; it stays allocated (reported below).
        report("out of memory queueing greenlet " + std::to_string(g->id) + " for its thread; leaked");
        return nullptr;
      }
    }
  }
  return free_now(g);
}

// Freeing a greenlet drops its parent's reference, which may free the parent,
// and so on up the chain: a loop, not a recursion.
void release(greenlet_impl* g) noexcept {
  while (g != nullptr && g->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) g = destroy(g);
}

// ---- start, death ----------------------------------------------------------

[[noreturn]] void run_greenlet(fcontext::transfer_t caller) noexcept;

// No fiber record and no setup jump: make_fcontext only lays out a frame at
// the top of the stack; the first switch_to() enters run_greenlet there.
void start(thread_state& ts, greenlet_impl* g) {
  if (ts.anchor->has_doomed.load(std::memory_order_relaxed)) [[unlikely]]
    process_doomed(ts);
  const std::size_t size = g->requested_size != 0 ? g->requested_size : checked_stack_size(0, "greenlet");
  g->stack = ts.pool->allocate(size, g->kind, g->prefault_expected);
  g->prefault_expected = false;
  g->context = fcontext::make_fcontext(g->stack.top(), g->stack.size, run_greenlet);
#ifdef GREENEV_DETAIL_TU_TSAN
  g->tsan_fiber = __tsan_create_fiber(0);
#endif
  g->state.store(greenlet_state::active, std::memory_order_relaxed);
  link_active(ts, g);
}

inline greenlet_impl* live_target(greenlet_impl* g) noexcept {
  while (g->dead()) g = g->parent;  // a live thread's main greenlet is never dead
  return g;
}

// The general switch: ts.value / ts.error already set by the caller.
std::any switch_now(thread_state& ts, greenlet_impl* target) {
  target = live_target(target);
  if (target == ts.current) {
    if (ts.error) rethrow_in_flight(ts);
    return std::move(ts.value);
  }
  if (target->current_state() == greenlet_state::unstarted) {
    try {
      start(ts, target);
    } catch (...) {
      ts.value.reset();
      ts.error = nullptr;
      throw;
    }
  }
  return switch_to_active(ts, target);
}

// The entry of every greenlet, on its new stack; never returns. It dies by
// jumping to the greenlet that receives its result, which lands in land_slow
// and gives this stack back to the pool from there.
void run_greenlet(fcontext::transfer_t caller) noexcept {
  thread_state& ts = *tls_state;
  greenlet_impl* self = ts.current;
  greenlet_impl* from = ts.switching_from;
  after_jump(self, from);
  from->context = caller.fctx;
  std::any result;
  std::exception_ptr error;
  {
    std::any first_value = std::move(ts.value);
    std::exception_ptr incoming = std::exchange(ts.error, nullptr);
    if (needs_housekeeping(from)) land_slow(ts, from);
    try {
      if (incoming) std::rethrow_exception(std::move(incoming));  // throw_into() before start
      result = self->body->run(std::move(first_value));
    } catch (const greenlet_exit& exit) {
      result = exit;
    } catch (...) {
      error = std::current_exception();
    }
  }
  self->destroy_body();
  self->release_locals();
  self->state.store(greenlet_state::dead, std::memory_order_relaxed);
  unlink_active(ts, self);

  // The result goes to the nearest live ancestor; an unstarted one is started
  // with it (and a pending error kills it before it runs, as in python).
  greenlet_impl* target = live_target(self->parent);
  while (target->current_state() == greenlet_state::unstarted) {
    try {
      start(ts, target);
      break;
    } catch (...) {
      error = std::current_exception();  // no stack for it: skip to its parent
      result.reset();
      target = live_target(target->parent);
    }
  }
  ts.value = std::move(result);
  ts.error = std::move(error);
  ts.switching_from = self;
  publish_current(ts, target);
  swap_exception_state(ts, self, target);
  before_jump(self, target, true);
  fcontext::jump_fcontext(std::exchange(target->context, nullptr), nullptr);
  std::abort();  // a dead greenlet is never resumed
}

// The thread check comes before anything of `g` but its immutable anchor is
// read; the message takes a copy of its name (its owner may be renaming it).
greenlet_impl* checked(greenlet_impl* g, const thread_state& ts, const char* what) {
  if (g->anchor != ts.anchor) [[unlikely]] {
    throw greenlet_error(std::string("greenev: cannot ") + what + " greenlet " + g->name_copy() +
                         ": it belongs to another thread");
  }
  return g;
}

// Unwinds every greenlet still active on an exiting thread, newest first.
// Unwinding may start new greenlets, so repeat while that makes progress.
void kill_all_active(thread_state& ts) noexcept {
  for (bool progress = true; progress && ts.active_head != nullptr;) {
    progress = false;
    std::vector<greenlet_impl*> snapshot;
    for (greenlet_impl* g = ts.active_head; g != nullptr; g = g->active_next) {
      g->add_ref();
      snapshot.push_back(g);
    }
    for (greenlet_impl* g : snapshot) {
      if (!g->dead() && kill_suspended(ts, g, true) == kill_outcome::died) progress = true;
    }
    for (greenlet_impl* g : snapshot) release(g);
  }
}

thread_state_owner::~thread_state_owner() {
  thread_state* ts = tls_state;
  if (ts == nullptr) return;
  unregister_thread_state(*ts);
  if (ts->current != ts->main) {
    // The thread is exiting from inside a greenlet (pthread_exit); nothing
    // can be unwound safely. Leave everything to the orphan paths (and leak
    // this state: its greenlets' stacks are still in use).
    std::lock_guard lock(ts->anchor->mutex);
    ts->anchor->alive = false;
    ts->anchor->refs.fetch_add(ts->greenlets, std::memory_order_relaxed);
    tls_state = nullptr;
    return;
  }
  for (;;) {
    process_doomed(*ts);
    kill_all_active(*ts);
    std::lock_guard lock(ts->anchor->mutex);
    if (ts->anchor->doomed.empty()) {
      // From now on greenlets of this thread are freed by whichever thread
      // drops them: hand their count to the anchor's atomic reference count,
      // under the lock, before another thread can see alive == false.
      ts->anchor->alive = false;
      ts->anchor->refs.fetch_add(ts->greenlets, std::memory_order_relaxed);
      break;
    }
  }
  ts->main->release_locals();  // while the thread state can still serve them
  ts->main->state.store(greenlet_state::dead, std::memory_order_relaxed);
  greenlet_impl* main = ts->main;
  thread_anchor* anchor = ts->anchor;
  // Survivors (greenlets that refused to die) keep their stacks; they are
  // unreachable from here on.
  while (ts->active_head != nullptr) unlink_active(*ts, ts->active_head);
  delete ts->pool;  // the pool hands its stacks back
  delete ts;
  tls_state = nullptr;
  release(main);
  anchor->release();  // the thread's own reference
}

}  // namespace

std::any land_slow(thread_state& ts, greenlet_impl* from) {
  std::any value = std::move(ts.value);
  std::exception_ptr error = std::exchange(ts.error, nullptr);
  if (from->dead()) {
    // It jumped here from its own stack and will never run again.
    ts.pool->release(from->stack);
#ifdef GREENEV_DETAIL_TU_TSAN
    if (from->tsan_fiber != nullptr) __tsan_destroy_fiber(std::exchange(from->tsan_fiber, nullptr));
#endif
  }
  if (from->orphaned) {
    from->orphaned = false;
    if (from->refs.load(std::memory_order_acquire) == 0) release(destroy(from));
  }
  if (ts.anchor->has_doomed.load(std::memory_order_relaxed)) process_doomed(ts);
  if (error) std::rethrow_exception(std::move(error));
  return value;
}

void prepare_start(greenlet_impl* g) {
  thread_state& ts = local_state();
  if (g->current_state() == greenlet_state::unstarted) start(ts, checked(g, ts, "start"));
}

greenlet_impl* current_greenlet_slow() {
  return local_state().current;
}

std::any switch_to_slow(greenlet_impl* target, std::any&& value) {
  thread_state& ts = local_state();
  checked(target, ts, "switch to");
  ts.value = std::move(value);
  return switch_now(ts, target);
}

void trim_idle_stacks() noexcept {
  if (tls_state != nullptr) tls_state->pool->trim_idle();
}

void kill_all_active_greenlets() noexcept {
  if (tls_state != nullptr) kill_all_active(*tls_state);
}

void rethrow_in_flight(thread_state& ts) {
  ts.value.reset();
  std::rethrow_exception(std::exchange(ts.error, nullptr));
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

namespace greenev {

using detail::greenlet_impl;
using detail::local_state;

greenlet::greenlet(new_greenlet_tag, greenlet_impl* parent, greenlet_options options) {
  detail::thread_state& ts = local_state();
  if (parent == nullptr) {
    parent = ts.current;
  } else {
    detail::checked(parent, ts, "parent a new greenlet to");
  }
  const std::size_t size =
      options.stack_size == 0 ? 0 : detail::checked_stack_size(options.stack_size, "greenlet");
  auto* g = new greenlet_impl;
  g->requested_size = size;
  g->kind = options.kind;
  if (!options.name.empty())
    g->name.store(new std::string(std::move(options.name)), std::memory_order_relaxed);
  g->id = detail::new_greenlet_id();
  g->anchor = ts.anchor;
  ++ts.greenlets;
  if (detail::option_prefault.load(std::memory_order_relaxed) == stack_prefault::background) [[unlikely]]
    g->prefault_expected = ts.pool->expect_start(size, options.kind);
  parent->add_ref();
  g->parent = parent;
  impl_ = g;
}

greenlet::greenlet(const greenlet& other) noexcept : impl_(other.impl_) {
  if (impl_ != nullptr) impl_->add_ref();
}

greenlet& greenlet::operator=(const greenlet& other) noexcept {
  greenlet copy(other);
  std::swap(impl_, copy.impl_);
  return *this;
}

greenlet& greenlet::operator=(greenlet&& other) noexcept {
  greenlet moved(std::move(other));
  std::swap(impl_, moved.impl_);
  return *this;
}

greenlet::~greenlet() {
  if (impl_ != nullptr) detail::release(impl_);
}

greenlet greenlet::adopt(greenlet_impl* impl) noexcept {
  greenlet g;
  g.impl_ = impl;
  return g;
}

greenlet greenlet::current() {
  greenlet_impl* g = local_state().current;
  g->add_ref();
  return adopt(g);
}

greenlet_impl* greenlet::require() const {
  if (impl_ == nullptr) throw greenlet_error("greenev: operation on an empty greenlet handle");
  return impl_;
}

std::any greenlet::throw_into(std::exception_ptr error) {
  greenlet_impl* target = require();
  detail::thread_state& ts = local_state();
  detail::checked(target, ts, "throw into");
  if (!error) throw greenlet_error("greenev: throw_into " + target->display_name() + ": null exception_ptr");
  if (target->dead()) return {};
  ts.error = std::move(error);
  return detail::switch_now(ts, target);
}

std::any switch_to_parent(std::any value) {
  detail::thread_state& ts = local_state();
  greenlet_impl* parent = ts.current->parent;
  if (parent == nullptr) throw greenlet_error("greenev: switch_to_parent from a main greenlet");
  ts.value = std::move(value);
  return detail::switch_now(ts, parent);
}

std::size_t active_greenlet_count() noexcept {
  return detail::tls_state != nullptr ? detail::tls_state->active_count : 0;
}

bool greenlet::dead() const {
  return require()->dead();
}

bool greenlet::started() const {
  return require()->current_state() != detail::greenlet_state::unstarted;
}

bool greenlet::is_main() const {
  return require()->is_main;
}

greenlet greenlet::parent() const {
  greenlet_impl* p = require()->parent;
  if (p == nullptr) return {};
  p->add_ref();
  return adopt(p);
}

void greenlet::set_parent(const greenlet& new_parent) {
  greenlet_impl* self = require();
  detail::thread_state& ts = local_state();
  detail::checked(self, ts, "reparent");
  if (!new_parent) throw greenlet_error("greenev: set_parent of " + self->display_name() + ": empty parent");
  greenlet_impl* p = detail::checked(new_parent.impl_, ts, "make a parent of");
  if (self->is_main) throw greenlet_error("greenev: a main greenlet cannot have a parent");
  for (greenlet_impl* a = p; a != nullptr; a = a->parent) {
    if (a == self) {
      throw greenlet_error("greenev: set_parent: making " + p->display_name() + " the parent of " +
                           self->display_name() + " would create a cycle");
    }
  }
  p->add_ref();
  detail::release(std::exchange(self->parent, p));
}

const std::string& greenlet::name() const {
  return require()->display_name();
}

void greenlet::set_name(std::string name) {
  greenlet_impl* g = require();
  detail::thread_state& ts = local_state();
  detail::checked(g, ts, "rename");
  // An empty name means the default one again.
  auto renamed = name.empty() ? nullptr : std::make_unique<std::string>(std::move(name));
  detail::before_freeing_or_renaming(ts);
  std::unique_ptr<std::string> old;
  {
    std::lock_guard lock(g->anchor->mutex);  // against name_copy() on other threads
    old.reset(g->name.exchange(renamed.release(), std::memory_order_acq_rel));
  }
  // Publishes the new name to a monitor reading the running greenlet.
  if (ts.current == g) detail::publish_current(ts, g);
}

std::size_t greenlet::stack_size() const {
  greenlet_impl* g = require();
  if (g->is_main) return 0;
  if (g->stack) return g->stack.size;
  return g->requested_size != 0 ? g->requested_size : default_stack_options().size;
}

stack_statistics stack_stats() noexcept {
  stack_statistics stats = detail::process_stack_stats();
  if (detail::tls_state != nullptr) stats.pooled = detail::tls_state->pool->pooled();
  return stats;
}

void trim_stack_pool() noexcept {
  if (detail::tls_state != nullptr) detail::tls_state->pool->trim();
}

}  // namespace greenev
