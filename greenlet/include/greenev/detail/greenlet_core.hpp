// Private: the greenlet core's data and the inline switch.
//
// Why this is in a header: a context switch scrambles the CPU's return-stack
// predictor, so every function return between the caller's switch_to() and
// the jump costs a misprediction on each switch. With the fast path inlined
// into the caller a switch costs about what a raw boost::context::fiber
// resume() does. docs/design.md ("One switch") describes the protocol.
#pragma once

#include <any>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <greenev/config.hpp>
#include <greenev/detail/context.hpp>
#include <greenev/detail/sanitizers.hpp>
#include <greenev/stack.hpp>

// The inline fast path is used only when this translation unit and the
// library agree on sanitizers (the annotations must wrap every jump).
#if !GREENEV_SANITIZED && !defined(GREENEV_DETAIL_TU_ASAN) && !defined(GREENEV_DETAIL_TU_TSAN)
#define GREENEV_DETAIL_INLINE_SWITCH 1
#else
#define GREENEV_DETAIL_INLINE_SWITCH 0
#endif

// The debug assertions of these inline paths. Not tied to NDEBUG: a program
// built with a plain -O2 (no -DNDEBUG, as most are) would otherwise pay for
// them on every switch. On where GREENEV_ENABLE_ASSERTS is defined: the
// CMake targets define it for the Debug configuration, greenev's own and its
// users' (docs/design.md, "Fast in the user's build").
#if defined(GREENEV_ENABLE_ASSERTS)
#define GREENEV_DETAIL_ASSERT(condition) assert(condition)
#else
#define GREENEV_DETAIL_ASSERT(condition) static_cast<void>(0)
#endif

namespace greenev::detail {

// Type-erased body of a greenlet: the user's function.
struct greenlet_body {
  virtual ~greenlet_body() = default;
  virtual std::any run(std::any first_value) = 0;
};

template <class F>
struct greenlet_body_of final : greenlet_body {
  template <class Arg>
  explicit greenlet_body_of(Arg&& f) : function(std::forward<Arg>(f)) {}
  std::any run(std::any first_value) override {
    if constexpr (std::is_invocable_v<F&, std::any>) {
      return wrap([&]() -> decltype(auto) { return std::invoke(function, std::move(first_value)); });
    } else {
      return wrap([&]() -> decltype(auto) { return std::invoke(function); });
    }
  }
  template <class Call>
  static std::any wrap(Call&& call) {
    if constexpr (std::is_void_v<std::invoke_result_t<Call&>>) {
      call();
      return {};
    } else {
      return std::any(call());
    }
  }
  F function;
};

// A stack as handed out by the pool. [bottom, bottom + size) is usable; a
// guarded stack has a PROT_NONE guard (64 KiB, stack_mapping.cpp) just below bottom.
struct stack_memory {
  char* bottom = nullptr;
  std::size_t size = 0;
  bool guarded = false;
  bool fresh = false;  // no page committed yet (new, or its pages returned): populated when handed out
  unsigned valgrind_id = 0;

  [[nodiscard]] char* top() const noexcept { return bottom + size; }
  [[nodiscard]] explicit operator bool() const noexcept { return bottom != nullptr; }
};

// The Itanium C++ ABI's per-thread exception state (<cxxabi.h> keeps the
// struct opaque; libstdc++ and libc++abi share this layout). Context jumps do
// not switch it, so each greenlet saves its own: switching inside a catch
// block must not hand the caught exception to another greenlet.
struct eh_globals {
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};

enum class greenlet_state : unsigned char { unstarted, active, dead };

class greenlet_impl;

// Shared by a thread's state and all its greenlets; outlives the thread, so a
// greenlet dropped elsewhere (or later) can tell whether its thread is alive.
// While the thread lives it alone frees its greenlets (others queue them in
// `doomed`), so it counts them without atomics (thread_state::greenlets);
// at thread exit that count moves into `refs`.
struct thread_anchor {
  std::atomic<std::size_t> refs{1};
  std::mutex mutex;
  bool alive = true;                   // guarded by mutex
  std::vector<greenlet_impl*> doomed;  // guarded by mutex: to unwind on the owner thread
  std::atomic<bool> has_doomed{false};

  void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    const std::size_t before = refs.fetch_sub(1, std::memory_order_acq_rel);
    GREENEV_DETAIL_ASSERT(before != 0 && "greenev: thread_anchor released more often than referenced");
    if (before == 1) delete this;
  }
};

// Debug builds (no NDEBUG) store this in the count of a freed greenlet, so
// that a late add_ref or release through a dangling pointer asserts while
// the allocator has not reused the block (best effort, as in marl).
inline constexpr std::size_t freed_greenlet_refs = std::size_t{1} << (sizeof(std::size_t) * 8 - 2);

class greenlet_impl {
 public:
  // The fields a switch touches come first.
  std::atomic<greenlet_state> state{greenlet_state::unstarted};
  bool orphaned = false;  // last handle dropped while it was running
  bool is_main = false;
  bool body_inline = false;  // body lives in body_storage
  bool eh_saved = false;     // eh_caught/eh_uncaught hold its exception state
  stack_kind kind = stack_kind::default_kind;
  bool prefault_expected = false;  // counted by its pool's background prefaulting
  bool refused_exit = false;       // caught greenlet_exit when killed: reported, leaked, never killed again
  bool pinned = false;             // see pin_child_references(); owner thread only
  unsigned eh_uncaught = 0;
  void* eh_caught = nullptr;
  thread_anchor* anchor = nullptr;
  // Where it resumes (Boost.Context's raw fcontext); null while running or
  // unstarted, stale once dead.
  raw_context context = nullptr;
  std::atomic<std::size_t> refs{1};
  // While pinned: the references its children hold, counted here and not in
  // refs (which holds one for them all). Owner thread only.
  std::size_t pinned_child_refs = 0;
  greenlet_impl* parent = nullptr;  // owned reference (see pinned); null only for a main greenlet
  greenlet_body* body = nullptr;
  stack_memory stack;  // in use while active; the greenlet landed on after its death returns it
  std::size_t requested_size = 0;
  std::uint64_t id = 0;
  greenlet_impl* active_prev = nullptr;  // this thread's list of active greenlets
  greenlet_impl* active_next = nullptr;
  // Owned; null until named or asked for its name ("greenlet-ID" is built
  // lazily: most greenlets never are, and a string costs 32 bytes in every
  // one). Published with a compare-exchange from null, so threads asking at
  // once agree on one string; only set_name() on the owner thread replaces
  // (and frees) it, under anchor->mutex.
  mutable std::atomic<std::string*> name{nullptr};
  // Sanitizer bookkeeping; present in every build so the layout never varies.
  void* asan_fake_stack = nullptr;
  const void* asan_bottom = nullptr;
  std::size_t asan_size = 0;
  void* tsan_fiber = nullptr;
  // Small functions (most lambdas) are stored here: one allocation per greenlet.
  alignas(std::max_align_t) unsigned char body_storage[64];
  // What the hub layer keeps in each greenlet; the greenlet layer only
  // destroys the locals and shows the rest in its diagnostics.
  struct hub_fields {
    // Greenlet-local values: destroyed when the greenlet dies (on its own
    // stack), or with the object.
    void* locals = nullptr;
    void (*destroy_locals)(void*) noexcept = nullptr;
    // For run info, the blocking monitor and tools/greenev-gdb.py; set and
    // read on the owning thread only: where it was spawned (a return address
    // inside the spawning function, resolved lazily), and what it is
    // suspended on (a static string, an fd or -1, a deadline on the hub
    // loop's clock or 0). For format_greenlet_tree: the id of the greenlet
    // that spawned it (0 if not spawned) — an id, not a pointer, since the
    // spawner may die first.
    const void* spawn_site = nullptr;
    const char* wait_what = nullptr;
    int wait_fd = -1;
    double wait_until = 0;
    std::uint64_t spawner_id = 0;
  } hub;

  template <class Body, class F>
  void emplace_body(F&& f) {
    if constexpr (sizeof(Body) <= sizeof(body_storage) && alignof(Body) <= alignof(std::max_align_t)) {
      body = ::new (static_cast<void*>(body_storage)) Body(std::forward<F>(f));
      body_inline = true;
    } else {
      body = new Body(std::forward<F>(f));
    }
  }
  void release_locals() noexcept {
    if (hub.destroy_locals != nullptr) hub.destroy_locals(std::exchange(hub.locals, nullptr));
    hub.destroy_locals = nullptr;
  }
  void destroy_body() noexcept {
    if (body_inline) {
      body->~greenlet_body();
    } else {
      delete body;
    }
    body = nullptr;
    body_inline = false;
  }

  greenlet_impl() noexcept;
  ~greenlet_impl();
  [[nodiscard]] greenlet_state current_state() const noexcept {
    return state.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool dead() const noexcept { return current_state() == greenlet_state::dead; }
  // Owner thread only. The life of a greenlet: unstarted -> active -> dead
  // (a main greenlet is born active); suspended is active and not current.
  void set_state(greenlet_state next) noexcept {
    GREENEV_DETAIL_ASSERT(((current_state() == greenlet_state::unstarted && next == greenlet_state::active) ||
                           (current_state() == greenlet_state::active && next == greenlet_state::dead)) &&
                          "greenev: greenlet state may only go unstarted -> active -> dead");
    state.store(next, std::memory_order_relaxed);
  }
  // A count of 0 is legal here: destroy() holds a dying greenlet while it
  // unwinds it.
  void add_ref() noexcept {
    GREENEV_DETAIL_ASSERT(refs.load(std::memory_order_relaxed) < freed_greenlet_refs &&
                          "greenev: add_ref on a freed greenlet");
    refs.fetch_add(1, std::memory_order_relaxed);
  }
  // Its name, or "greenlet-ID" / "main". On the owner thread (or where no
  // rename can run concurrently); other threads use name_copy().
  const std::string& display_name() const;
  // A copy of display_name() that any thread may take.
  std::string name_copy() const;
};

class stack_pool;

// A typed value in flight (greenlet::switch_to<R>(value)). Its address is the
// type's tag: a receiver that asks for the same type moves the value out
// directly, with no std::any in between; any other receiver gets a std::any
// made by to_any. (Copies of one type's ops in two shared objects only cost
// that fallback, never correctness.)
struct typed_value_ops {
  std::any (*to_any)(void* object);
};
template <class T>
std::any typed_value_to_any(void* object) {
  return std::any(std::move(*static_cast<T*>(object)));
}
template <class T>
inline constexpr typed_value_ops typed_value_ops_of{&typed_value_to_any<T>};

struct thread_state {
  greenlet_impl* current = nullptr;
  greenlet_impl* main = nullptr;  // owned reference
  greenlet_impl* switching_from = nullptr;
  // The value in flight between two greenlets: `sent` points at it. The
  // inline switch points it at the sender's own argument, which lives in the
  // suspended sender's frame until the receiver moves it out on landing (one
  // move of the std::any instead of two); the slow paths store into `value`.
  // Every landing takes it and points `sent` back at `value` (take_sent()).
  std::any value;
  std::any* sent = &value;
  // Or a typed value in flight: the sender's object, left in its suspended
  // frame like `sent`'s, when sent_ops is set (then *sent is empty).
  void* sent_typed = nullptr;
  const typed_value_ops* sent_ops = nullptr;
  std::exception_ptr error;  // in flight, instead of a value
  eh_globals* eh = nullptr;
  thread_anchor* anchor = nullptr;  // owned reference
  greenlet_impl* active_head = nullptr;
  std::size_t active_count = 0;
  std::size_t eh_saved = 0;            // greenlets whose eh_saved is set
  std::size_t greenlets = 0;           // allocated greenlet_impls of this thread (see thread_anchor)
  std::vector<greenlet_impl*> pinned;  // its main greenlet, and its hub's (pin_child_references)
  stack_pool* pool = nullptr;          // owned
  // The process-wide list of thread states (greenlet.cpp's debug_mutex),
  // walked by tools/greenev-gdb.py from greenev_debug_threads.
  thread_state* debug_next = nullptr;
  thread_state* debug_prev = nullptr;
  int os_thread_id = 0;
  void* hub = nullptr;  // the hub layer's per-thread hub, for diagnostics
  // Set by another thread while it reads the running greenlet's identity
  // (snapshot_running_greenlet); a greenlet is not freed or renamed meanwhile.
  std::atomic<bool> inspected{false};
};

// `current` is written only by its thread, but the blocking monitor reads it
// from another: a release store is a plain store on x86, so a switch pays
// nothing for it (and TSan sees the fields of `g` published with it).
[[gnu::always_inline]] inline void publish_current(thread_state& ts, greenlet_impl* g) noexcept {
  __atomic_store_n(&ts.current, g, __ATOMIC_RELEASE);
}

// Before the owning thread frees or renames one of its greenlets: waits (a few
// microseconds, and only while the monitor is reading) for another thread
// that may be reading that greenlet. The load pairs with the reader's
// membarrier(2), so it needs no fence here (docs/design.md, "Blocking
// monitor"); acquire (a plain load on x86) orders the reader's last read
// before our write, for TSan, which does not know membarrier.
void wait_while_inspected(thread_state& ts) noexcept;
inline void before_freeing_or_renaming(thread_state& ts) noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (ts.inspected.load(std::memory_order_acquire)) [[unlikely]]
    wait_while_inspected(ts);
}

// What another thread may learn about the greenlet running on a thread.
struct running_greenlet_snapshot {
  std::uint64_t id = 0;
  bool is_main = false;
  const void* spawn_site = nullptr;
  char name[64] = {};  // empty if it has no name of its own
};
// Copies `g`'s identity into `out`: no allocation, no lock, so a signal
// handler on `g`'s own thread may call it too.
void copy_identity(const greenlet_impl& g, running_greenlet_snapshot& out) noexcept;
// Reads the greenlet running on `ts`'s thread, from another thread, inside a
// for_each_thread_state() visit (which keeps `ts` alive). False where the
// kernel lacks membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) (Linux < 4.14,
// some seccomp filters, valgrind): then nothing is read.
bool snapshot_running_greenlet(thread_state& ts, running_greenlet_snapshot& out) noexcept;

// Calls `visit(ts)` for every live thread state of the process under the
// registry's lock: `visit` may read only what other threads do not write
// (os_thread_id, hub), and must not create or end a thread state.
void for_each_thread_state(void (*visit)(thread_state& ts, void* context), void* context);
// Sets the calling thread's thread_state::hub under the registry's lock.
void set_diagnostic_hub(void* hub) noexcept;

// fork(2) support (docs/design.md, "fork"). The greenlet layer holds its
// thread-state registry lock across a fork (pthread_atfork), so the child
// never finds it held by a thread it does not have, and the child drops
// every other thread's state from the registry. A layer above may hook in
// code that must run while the registry lock is held (its own locks that
// are taken under it elsewhere); set once, before any fork.
struct fork_hooks {
  void (*prepare)() noexcept = nullptr;  // after the registry lock is taken
  void (*parent)() noexcept = nullptr;   // before it is released, in the parent
  void (*child)() noexcept = nullptr;    // before it is released, in the child
};
void set_registry_fork_hooks(fork_hooks hooks) noexcept;

// Initial-exec TLS, no wrapper function: read on every switch. (A dlopen'd
// greenev is therefore unsupported; docs/design.md.)
extern __thread thread_state* tls_state __attribute__((tls_model("initial-exec")));

// Out of line: housekeeping after landing (the greenlet we came from died or
// lost its last handle, or other threads dropped ours), then returns the
// value in flight or rethrows the exception in flight.
[[gnu::cold]] std::any land_slow(thread_state& ts, greenlet_impl* from);
[[noreturn, gnu::cold]] void rethrow_in_flight(thread_state& ts);

// Returns this thread's pooled stacks beyond the pool limit to the system
// (munmap / madvise). Cheap when there is nothing to do; the hub calls it
// before blocking, so finishing a burst of greenlets costs no system calls.
void trim_idle_stacks() noexcept;

// Unwinds every active greenlet of the calling thread except the current
// one (greenlet_exit, newest first), as thread exit does. For the hub, which
// must unwind greenlets holding its watchers before destroying its loop.
void kill_all_active_greenlets() noexcept;

[[gnu::always_inline]] inline void before_jump([[maybe_unused]] greenlet_impl* from,
                                               [[maybe_unused]] greenlet_impl* to,
                                               [[maybe_unused]] bool from_is_dying) noexcept {
#ifdef GREENEV_DETAIL_TU_ASAN
  const void* bottom = to->is_main ? to->asan_bottom : to->stack.bottom;
  const std::size_t size = to->is_main ? to->asan_size : to->stack.size;
  __sanitizer_start_switch_fiber(from_is_dying ? nullptr : &from->asan_fake_stack, bottom, size);
#endif
#ifdef GREENEV_DETAIL_TU_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
}

[[gnu::always_inline]] inline void after_jump([[maybe_unused]] greenlet_impl* self,
                                              [[maybe_unused]] greenlet_impl* from) noexcept {
#ifdef GREENEV_DETAIL_TU_ASAN
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(self->asan_fake_stack, &bottom, &size);
  if (from->is_main) {  // the only way to learn the main stack's bounds
    from->asan_bottom = bottom;
    from->asan_size = size;
  }
#endif
}

// Most switches happen outside catch blocks with nothing saved anywhere:
// then this is three loads and no store.
[[gnu::always_inline]] inline void swap_exception_state(thread_state& ts, greenlet_impl* from,
                                                        greenlet_impl* to) noexcept {
  eh_globals& globals = *ts.eh;
  if ((globals.caught_exceptions != nullptr) | (globals.uncaught_exceptions != 0)) [[unlikely]] {
    from->eh_caught = globals.caught_exceptions;
    from->eh_uncaught = globals.uncaught_exceptions;
    from->eh_saved = true;
    ++ts.eh_saved;
    globals.caught_exceptions = nullptr;
    globals.uncaught_exceptions = 0;
  }
  if (ts.eh_saved != 0 && to->eh_saved) [[unlikely]] {
    globals.caught_exceptions = to->eh_caught;
    globals.uncaught_exceptions = to->eh_uncaught;
    to->eh_saved = false;
    --ts.eh_saved;
  }
}

// Leaves `self` for `target`; returns in `self` once something switches back.
// Returns the greenlet we came from.
[[gnu::always_inline]] inline greenlet_impl* jump(thread_state& ts, greenlet_impl* self,
                                                  greenlet_impl* target) noexcept {
  GREENEV_DETAIL_ASSERT(target->anchor == ts.anchor && "greenev: switch to a greenlet of another thread");
  GREENEV_DETAIL_ASSERT(self == ts.current && target != self &&
                        "greenev: switch from a greenlet that is not running");
  GREENEV_DETAIL_ASSERT(target->current_state() == greenlet_state::active && target->context != nullptr &&
                        "greenev: switch to a greenlet that is not suspended");
  ts.switching_from = self;
  publish_current(ts, target);
  swap_exception_state(ts, self, target);
  before_jump(self, target, false);
  const context_transfer back = jump_context(std::exchange(target->context, nullptr), nullptr);
  greenlet_impl* from = ts.switching_from;
  after_jump(self, from);
  from->context = back.fctx;
  return from;
}

// Greenlets dropped by other threads (thread_anchor::doomed) are collected
// in the slow paths (start, death, land_slow), not on every switch.
[[gnu::always_inline]] inline bool needs_housekeeping(const greenlet_impl* from) noexcept {
  return from->dead() || from->orphaned;
}

// Out of line: a typed value in flight as a std::any.
[[gnu::cold]] std::any take_typed_as_any(thread_state& ts);

// On landing: the value in flight, moved out (`sent` points back at `value`).
// Most switches carry nothing: then no call to std::any's move constructor,
// which GCC keeps out of line at -O2.
[[gnu::always_inline]] inline std::any take_sent(thread_state& ts) {
  std::any* sent = std::exchange(ts.sent, &ts.value);
  if (!sent->has_value()) {
    if (ts.sent_ops == nullptr) [[likely]]
      return std::any();
    return take_typed_as_any(ts);
  }
  return std::move(*sent);
}

// The value in flight as an R (std::any_cast's rules, so std::bad_any_cast if
// it is not one). A typed R sent by switch_to<R> is moved out directly.
template <class R>
[[gnu::always_inline]] inline R take_sent_as(thread_state& ts) {
  if constexpr (std::is_same_v<R, std::any>) {
    return take_sent(ts);
  } else {
    if (ts.sent_ops == &typed_value_ops_of<R>) [[likely]] {
      ts.sent_ops = nullptr;
      return std::move(*static_cast<R*>(ts.sent_typed));
    }
    return std::any_cast<R>(take_sent(ts));
  }
}

// On an error instead: drops the value in flight (a typed one stays with
// its sender, which destroys it).
inline void drop_sent(thread_state& ts) noexcept {
  std::exchange(ts.sent, &ts.value)->reset();
  ts.sent_ops = nullptr;
}

// The whole switch to a started, live greenlet of this thread other than the
// current one, with the value (ts.sent or ts.sent_typed) or ts.error already
// set; returns what comes back as an R (take_sent_as).
template <class R = std::any>
[[gnu::always_inline]] inline R switch_to_active(thread_state& ts, greenlet_impl* target) {
  greenlet_impl* from = jump(ts, ts.current, target);
  if (needs_housekeeping(from)) [[unlikely]] {
    if constexpr (std::is_same_v<R, std::any>) {
      return land_slow(ts, from);
    } else {
      return std::any_cast<R>(land_slow(ts, from));
    }
  }
  if (ts.error) [[unlikely]]
    rethrow_in_flight(ts);
  return take_sent_as<R>(ts);
}

[[gnu::always_inline]] inline bool can_switch_inline(const thread_state* ts,
                                                     const greenlet_impl* target) noexcept {
  return ts != nullptr && target != nullptr && target->anchor == ts->anchor &&
         target->current_state() == greenlet_state::active && target != ts->current;
}

// The running greenlet of this thread (creating the thread's state on first
// use), without touching reference counts.
greenlet_impl* current_greenlet_slow();
inline greenlet_impl* current_greenlet() {
  thread_state* ts = tls_state;
  return ts != nullptr ? ts->current : current_greenlet_slow();
}

// Pinning: a greenlet that outlives most of its children (a thread's main
// greenlet, born pinned, and its hub's) lets them count the references they
// hold on it without atomic operations, which spawning and freeing a child
// would otherwise pay twice. Children's references are added and dropped on
// their parent's thread while it lives (others queue greenlets they free for
// it), so a plain count suffices; unpinning, or the thread's exit, moves the
// count into `refs`. Pin a greenlet of this thread before it has children,
// and at most once; unpin it (on its thread) before dropping its last handle.
// Neither switches nor throws.
void pin_child_references(greenlet_impl* g) noexcept;
void unpin_child_references(greenlet_impl* g) noexcept;

// Gives an unstarted greenlet of this thread its stack, so that the next
// switch_to_impl() enters it through the inline path (for the hub, which
// starts tasks from its batch loop: every return after a switch costs a
// mispredict). Throws std::system_error if no stack can be mapped.
void prepare_start(greenlet_impl* g);

// Switches to `target` (a greenlet of this thread, never null) without
// touching its reference count: for layers that know it is alive.
// (By reference: every extra std::any temporary here costs on each switch.)
[[gnu::cold]] std::any switch_to_slow(greenlet_impl* target, std::any&& value);
inline std::any switch_to_impl(greenlet_impl* target, std::any&& value) {
#if GREENEV_DETAIL_INLINE_SWITCH
  thread_state* ts = tls_state;
  if (can_switch_inline(ts, target)) [[likely]] {
    ts->sent = &value;  // the caller's argument outlives the switch
    return switch_to_active(*ts, target);
  }
#endif
  return switch_to_slow(target, std::move(value));
}
inline std::any switch_to_impl(greenlet_impl* target) {
  return switch_to_impl(target, std::any());
}

}  // namespace greenev::detail
