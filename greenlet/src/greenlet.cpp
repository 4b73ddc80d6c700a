// The greenlet core: per-thread state, the switch, start and death of a
// greenlet, and what happens when the last handle goes away.
// docs/design.md ("The greenlet model") explains the invariants relied on here.
#include <cxxabi.h>

#include <atomic>
#include <boost/context/fiber.hpp>
#include <boost/context/preallocated.hpp>
#include <boost/context/stack_context.hpp>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <new>
#include <typeinfo>
#include <vector>

#include <greenev/greenlet.hpp>

#include "stack_pool.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define GREENEV_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define GREENEV_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(GREENEV_ASAN)
#define GREENEV_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(GREENEV_TSAN)
#define GREENEV_TSAN 1
#endif
#endif
#ifdef GREENEV_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef GREENEV_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace greenev::detail {

namespace ctx = boost::context;

// The Itanium C++ ABI's per-thread exception state (<cxxabi.h> keeps the
// struct opaque; libstdc++ and libc++abi share this layout). Raw fcontext
// jumps do not switch it, so a greenlet switching inside a catch block would
// corrupt std::current_exception() of others; each greenlet saves its own.
struct eh_globals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};

enum class greenlet_state : unsigned char { unstarted, active, dead };

struct thread_state;
class greenlet_impl;

// Shared by a thread's state and all its greenlets, so that a greenlet whose
// last handle is dropped elsewhere (or after its thread exited) finds out
// whether its thread can still unwind it.
struct thread_anchor {
  std::atomic<std::size_t> refs{1};
  std::mutex mutex;
  bool alive = true;                   // guarded by mutex
  std::vector<greenlet_impl*> doomed;  // guarded by mutex: to unwind on the owner
  std::atomic<bool> has_doomed{false};

  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

class greenlet_impl {
 public:
  std::atomic<std::size_t> refs{1};
  std::atomic<greenlet_state> state{greenlet_state::unstarted};
  bool is_main = false;
  bool orphaned = false;  // last handle dropped while it was running
  stack_kind kind = stack_kind::default_kind;
  unsigned eh_uncaught = 0;
  void* eh_caught = nullptr;
  thread_anchor* anchor = nullptr;
  greenlet_impl* parent = nullptr;  // owned reference; null only for a main greenlet
  ctx::fiber context;               // where it resumes; empty while running or dead
  std::unique_ptr<greenlet_body> body;
  stack_memory stack;  // owned by the fiber record while active
  std::size_t requested_size = 0;
  std::uint64_t id = 0;
  mutable std::string name;  // built lazily from id
#ifdef GREENEV_ASAN
  void* fake_stack = nullptr;
  const void* asan_bottom = nullptr;
  std::size_t asan_size = 0;
#endif
#ifdef GREENEV_TSAN
  void* tsan_fiber = nullptr;
#endif

  [[nodiscard]] greenlet_state current_state() const noexcept {
    return state.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool dead() const noexcept {
    return current_state() == greenlet_state::dead;
  }
  void add_ref() noexcept {
    refs.fetch_add(1, std::memory_order_relaxed);
  }
  const std::string& display_name() const {
    if (name.empty()) name = is_main ? "main" : "greenlet-" + std::to_string(id);
    return name;
  }
};

struct thread_state {
  greenlet_impl* current = nullptr;
  greenlet_impl* main = nullptr;  // owned reference
  greenlet_impl* switching_from = nullptr;
  std::any value;            // in flight between two greenlets
  std::exception_ptr error;  // in flight, instead of value
  eh_globals* eh = nullptr;
  thread_anchor* anchor = nullptr;  // owned reference
  stack_pool pool;
};

namespace {

std::atomic<std::uint64_t> next_greenlet_id{1};

// Initial-exec: the switch reads this on every call; a dlopen'd greenev is
// not supported (docs/caveats.md).
constinit thread_local thread_state* tls_state __attribute__((tls_model("initial-exec"))) = nullptr;

void release(greenlet_impl* g) noexcept;
void destroy(greenlet_impl* g) noexcept;

// Frames on an abandoned stack are never unwound (their thread is gone, or
// they refused greenlet_exit). A fiber destructor would unwind them, so the
// handle is parked here instead of destroyed.
void abandon_context(ctx::fiber&& context) noexcept {
  alignas(ctx::fiber) static thread_local unsigned char sink[sizeof(ctx::fiber)];
  new (sink) ctx::fiber(std::move(context));
}

void report(const std::string& what) noexcept {
  std::fprintf(stderr, "greenev: %s\n", what.c_str());
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

// ---- sanitizer hooks around each jump -----------------------------------

inline void before_jump([[maybe_unused]] greenlet_impl* from, [[maybe_unused]] greenlet_impl* to,
                        [[maybe_unused]] bool from_is_dying) noexcept {
#ifdef GREENEV_ASAN
  const void* bottom = to->is_main ? to->asan_bottom : to->stack.bottom;
  const std::size_t size = to->is_main ? to->asan_size : to->stack.size;
  __sanitizer_start_switch_fiber(from_is_dying ? nullptr : &from->fake_stack, bottom, size);
#endif
#ifdef GREENEV_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
}

inline void after_jump([[maybe_unused]] greenlet_impl* self, [[maybe_unused]] greenlet_impl* from) noexcept {
#ifdef GREENEV_ASAN
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(self->fake_stack, &bottom, &size);
  if (from->is_main) {  // the only way to learn the main stack's bounds
    from->asan_bottom = bottom;
    from->asan_size = size;
  }
#endif
}

inline void swap_exception_state(thread_state& ts, greenlet_impl* from, greenlet_impl* to) noexcept {
  from->eh_caught = ts.eh->caught_exceptions;
  from->eh_uncaught = ts.eh->uncaught_exceptions;
  ts.eh->caught_exceptions = to->eh_caught;
  ts.eh->uncaught_exceptions = to->eh_uncaught;
}

// ---- thread state --------------------------------------------------------

struct thread_state_owner {
  ~thread_state_owner();
};
thread_local thread_state_owner tls_owner;

thread_state* create_thread_state() {
  auto* ts = new thread_state;
  ts->anchor = new thread_anchor;
  ts->eh = reinterpret_cast<eh_globals*>(abi::__cxa_get_globals());
  auto* main = new greenlet_impl;
  main->is_main = true;
  main->state.store(greenlet_state::active, std::memory_order_relaxed);
  main->anchor = ts->anchor;
  ts->anchor->add_ref();
  main->id = next_greenlet_id.fetch_add(1, std::memory_order_relaxed);
#ifdef GREENEV_TSAN
  main->tsan_fiber = __tsan_get_current_fiber();
#endif
  ts->main = main;
  ts->current = main;
  tls_state = ts;
  (void)&tls_owner;  // registers the thread-exit destructor
  return ts;
}

inline thread_state& local_state() {
  thread_state* ts = tls_state;
  if (ts == nullptr) [[unlikely]]
    ts = create_thread_state();
  return *ts;
}

// ---- killing and freeing -------------------------------------------------

// Frees a greenlet nobody references. If it still has frames (its thread is
// gone, or it would not die), they are abandoned without unwinding.
void free_now(greenlet_impl* g) noexcept {
  thread_state* ts = tls_state;
  if (g->current_state() == greenlet_state::active && !g->is_main) {
    abandon_context(std::move(g->context));
    if (ts != nullptr && ts->anchor == g->anchor) {
      ts->pool.release(g->stack);
    } else {
      stack_pool::release_orphan(g->stack);
    }
  }
#ifdef GREENEV_TSAN
  if (!g->is_main && g->tsan_fiber != nullptr && g->current_state() != greenlet_state::dead) {
    __tsan_destroy_fiber(g->tsan_fiber);
  }
#endif
  if (g->parent != nullptr) release(g->parent);
  g->anchor->release();
  delete g;
}

// Unwinds a suspended greenlet of the calling thread by raising
// greenlet_exit in it, then frees it. `g` has no references left.
void kill_suspended(thread_state& ts, greenlet_impl* g) noexcept {
  g->refs.store(1, std::memory_order_relaxed);
  greenlet handle = greenlet::adopt(g);
  try {
    ts.current->add_ref();  // python's rule: the killer receives control back
    greenlet_impl* old_parent = std::exchange(g->parent, ts.current);
    release(old_parent);
    handle.throw_into();
  } catch (...) {
    report("exception while unwinding greenlet " + g->display_name() + " (" + describe_current_exception() +
           "); ignored");
  }
  if (!g->dead()) {
    report("greenlet " + g->display_name() +
           " caught greenlet_exit and is still suspended with no handle left; its stack is leaked");
    g->add_ref();  // keep it alive forever: its frames may still run if switched to
  }
}

void process_doomed(thread_state& ts) noexcept {
  std::vector<greenlet_impl*> doomed;
  {
    std::lock_guard lock(ts.anchor->mutex);
    doomed.swap(ts.anchor->doomed);
    ts.anchor->has_doomed.store(false, std::memory_order_relaxed);
  }
  for (greenlet_impl* g : doomed) destroy(g);
}

// Called with zero references.
void destroy(greenlet_impl* g) noexcept {
  if (g->current_state() != greenlet_state::active || g->is_main) {
    free_now(g);
    return;
  }
  thread_state* ts = tls_state;
  if (ts != nullptr && ts->anchor == g->anchor) {
    if (g == ts->current) {
      g->orphaned = true;  // decided when it next switches away
      return;
    }
    kill_suspended(*ts, g);
    return;
  }
  {
    std::lock_guard lock(g->anchor->mutex);
    if (g->anchor->alive) {
      try {
        g->anchor->doomed.push_back(g);
        g->anchor->has_doomed.store(true, std::memory_order_relaxed);
        return;
      } catch (...) {
        // No memory to queue it: abandon it below.
      }
    }
  }
  free_now(g);
}

void release(greenlet_impl* g) noexcept {
  if (g->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(g);
}

// Housekeeping after a switch, once the transferred value is taken: the
// greenlet we came from died or lost its last handle; or other threads
// dropped greenlets of ours.
void after_switch_slow(thread_state& ts, greenlet_impl* from) noexcept {
  if (from->dead()) {
#ifdef GREENEV_TSAN
    if (from->tsan_fiber != nullptr) __tsan_destroy_fiber(std::exchange(from->tsan_fiber, nullptr));
#endif
  }
  if (from->orphaned) {
    from->orphaned = false;
    if (from->refs.load(std::memory_order_acquire) == 0) destroy(from);
  }
  if (ts.anchor->has_doomed.load(std::memory_order_relaxed)) process_doomed(ts);
}

inline bool needs_after_switch(const thread_state& ts, const greenlet_impl* from) noexcept {
  return from->dead() || from->orphaned || ts.anchor->has_doomed.load(std::memory_order_relaxed);
}

// ---- start, switch, death --------------------------------------------------

ctx::fiber run_greenlet(greenlet_impl* self, ctx::fiber&& caller) noexcept;

// Gives Boost.Context the stack back when a fiber ends (called on the next
// greenlet's stack, after this one's record is destroyed).
struct pooled_stack_allocator {
  stack_pool* pool;
  stack_memory memory;
  ctx::stack_context allocate() { return {}; }  // never used: stacks are preallocated
  void deallocate(ctx::stack_context&) noexcept { pool->release(memory); }
};

void start(thread_state& ts, greenlet_impl* g) {
  const std::size_t size = g->requested_size != 0 ? g->requested_size : checked_stack_size(0, "greenlet");
  g->stack = ts.pool.allocate(size, g->kind);
  ctx::stack_context sctx;
  sctx.size = g->stack.size;
  sctx.sp = g->stack.top();
#ifdef GREENEV_TSAN
  g->tsan_fiber = __tsan_create_fiber(0);
  __tsan_switch_to_fiber(g->tsan_fiber, 0);  // Boost.Context enters the new stack briefly
#endif
  g->context = ctx::fiber(std::allocator_arg, ctx::preallocated(sctx.sp, sctx.size, sctx),
                          pooled_stack_allocator{&ts.pool, g->stack},
                          [g](ctx::fiber&& caller) { return run_greenlet(g, std::move(caller)); });
#ifdef GREENEV_TSAN
  __tsan_switch_to_fiber(ts.current->tsan_fiber, 0);
#endif
  g->state.store(greenlet_state::active, std::memory_order_relaxed);
}

// Receives control after a jump: records where the previous greenlet stopped.
inline greenlet_impl* land(thread_state& ts, ctx::fiber&& from_context) noexcept {
  greenlet_impl* from = ts.switching_from;
  after_jump(ts.current, from);
  from->context = std::move(from_context);
  return from;
}

inline greenlet_impl* live_target(greenlet_impl* g) noexcept {
  while (g->dead()) g = g->parent;  // a live thread's main greenlet is never dead
  return g;
}

// Switches to `target` with ts.value / ts.error already set by the caller.
std::any switch_now(thread_state& ts, greenlet_impl* target) {
  target = live_target(target);
  greenlet_impl* self = ts.current;
  if (target != self) {
    if (target->current_state() == greenlet_state::unstarted) [[unlikely]] {
      try {
        start(ts, target);
      } catch (...) {
        ts.value.reset();
        ts.error = nullptr;
        throw;
      }
    }
    ts.switching_from = self;
    ts.current = target;
    swap_exception_state(ts, self, target);
    before_jump(self, target, false);
    greenlet_impl* from = land(ts, std::move(target->context).resume());
    if (needs_after_switch(ts, from)) [[unlikely]] {
      std::any value = std::move(ts.value);
      std::exception_ptr error = std::exchange(ts.error, nullptr);
      after_switch_slow(ts, from);
      if (error) std::rethrow_exception(std::move(error));
      return value;
    }
  }
  if (ts.error) [[unlikely]]
    std::rethrow_exception(std::exchange(ts.error, nullptr));
  return std::move(ts.value);
}

ctx::fiber run_greenlet(greenlet_impl* self, ctx::fiber&& caller) noexcept {
  thread_state& ts = *tls_state;
  greenlet_impl* from = land(ts, std::move(caller));
  std::any result;
  std::exception_ptr error;
  {
    std::any first_value = std::move(ts.value);
    std::exception_ptr incoming = std::exchange(ts.error, nullptr);
    if (needs_after_switch(ts, from)) after_switch_slow(ts, from);
    try {
      if (incoming) std::rethrow_exception(std::move(incoming));  // throw_into() before start
      result = self->body->run(std::move(first_value));
    } catch (const greenlet_exit& exit) {
      result = exit;
    } catch (...) {
      error = std::current_exception();
    }
  }
  self->body.reset();
  self->state.store(greenlet_state::dead, std::memory_order_relaxed);

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
  ts.current = target;
  swap_exception_state(ts, self, target);
  before_jump(self, target, true);
  // Boost.Context jumps to `target` and there returns our stack to the pool.
  return std::move(target->context);
}

greenlet_impl* checked(greenlet_impl* g, const thread_state& ts, const char* what) {
  if (g->anchor != ts.anchor) {
    throw greenlet_error(std::string("greenev: cannot ") + what + " greenlet " + g->display_name() +
                         ": it belongs to another thread");
  }
  return g;
}

thread_state_owner::~thread_state_owner() {
  thread_state* ts = tls_state;
  if (ts == nullptr) return;
  if (ts->current != ts->main) {
    // The thread is exiting from inside a greenlet (pthread_exit); nothing
    // can be unwound safely. Leave everything to the orphan paths.
    std::lock_guard lock(ts->anchor->mutex);
    ts->anchor->alive = false;
    return;
  }
  for (;;) {
    std::vector<greenlet_impl*> doomed;
    {
      std::lock_guard lock(ts->anchor->mutex);
      doomed.swap(ts->anchor->doomed);
      if (doomed.empty()) {
        ts->anchor->alive = false;
        break;
      }
    }
    for (greenlet_impl* g : doomed) destroy(g);
  }
  ts->main->state.store(greenlet_state::dead, std::memory_order_relaxed);
  greenlet_impl* main = ts->main;
  thread_anchor* anchor = ts->anchor;
  delete ts;  // the pool hands its stacks back
  tls_state = nullptr;
  release(main);
  anchor->release();
}

}  // namespace

bool describe_running_stack(running_stack_info& info) noexcept {
  thread_state* ts = tls_state;
  if (ts == nullptr || ts->current == nullptr || ts->current->is_main) return false;
  info.stack = ts->current->stack;
  info.name = ts->current->name.empty() ? nullptr : ts->current->name.c_str();
  info.id = ts->current->id;
  return true;
}

}  // namespace greenev::detail

namespace greenev {

using detail::greenlet_impl;
using detail::local_state;

greenlet::greenlet(std::unique_ptr<detail::greenlet_body> body, greenlet_impl* parent,
                   greenlet_options options) {
  detail::thread_state& ts = local_state();
  if (parent == nullptr) {
    parent = ts.current;
  } else {
    detail::checked(parent, ts, "parent a new greenlet to");
  }
  const std::size_t size =
      options.stack_size == 0 ? 0 : detail::checked_stack_size(options.stack_size, "greenlet");
  auto* g = new greenlet_impl;
  g->body = std::move(body);
  g->requested_size = size;
  g->kind = options.kind;
  g->name = std::move(options.name);
  g->id = detail::next_greenlet_id.fetch_add(1, std::memory_order_relaxed);
  g->anchor = ts.anchor;
  ts.anchor->add_ref();
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

std::any greenlet::switch_to(std::any value) {
  greenlet_impl* target = require();
  detail::thread_state& ts = local_state();
  detail::checked(target, ts, "switch to");
  ts.value = std::move(value);
  return detail::switch_now(ts, target);
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
  require()->name = std::move(name);
}

std::size_t greenlet::stack_size() const {
  greenlet_impl* g = require();
  if (g->is_main) return 0;
  if (g->stack) return g->stack.size;
  return g->requested_size != 0 ? g->requested_size : default_stack_options().size;
}

stack_statistics stack_stats() noexcept {
  stack_statistics stats = detail::process_stack_stats();
  if (detail::tls_state != nullptr) stats.pooled = detail::tls_state->pool.pooled();
  return stats;
}

void trim_stack_pool() noexcept {
  if (detail::tls_state != nullptr) detail::tls_state->pool.trim();
}

}  // namespace greenev
