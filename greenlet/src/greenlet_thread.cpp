// Per-thread state: its creation, the freeing and killing of greenlets, and
// the unwinding of a thread's greenlets when it exits.
#include <cxxabi.h>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <greenev/error_reporter.hpp>

#include "greenlet_internal.hpp"

namespace greenev::detail {

__thread thread_state* tls_state = nullptr;

namespace {

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

struct thread_state_owner {
  ~thread_state_owner();
};
thread_local thread_state_owner tls_owner;

}  // namespace

thread_state* create_thread_state() {
  auto ts = std::make_unique<thread_state>();
  ts->pool = new stack_pool;
  ts->anchor = new thread_anchor;
  ts->eh = reinterpret_cast<eh_globals*>(abi::__cxa_get_globals());
  auto* main = new greenlet_impl;
  main->is_main = true;
  main->set_state(greenlet_state::active);
  main->anchor = ts->anchor;
  ++ts->greenlets;
  main->id = new_greenlet_id();
  main->pinned = true;  // until the thread exits (unpin_all)
  ts->pinned.push_back(main);
  main->add_ref();  // the reference held for its children
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

namespace {

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
  greenlet_impl* const parent = release_parent_ref(g->parent);
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
  add_parent_ref(ts.current);
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
  release(release_parent_ref(cycle ? own_parent : std::exchange(g->parent, own_parent)));
  if (g->dead()) return kill_outcome::died;
  if (!at_thread_exit && g->refs.load(std::memory_order_acquire) > 1) return kill_outcome::kept;
  g->refused_exit = true;
  report("greenlet " + g->display_name() +
         " caught greenlet_exit and is still suspended; its stack is leaked");
  return kill_outcome::refused;
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

// Moves every pinned greenlet's child references into its atomic count:
// once the thread is gone, its greenlets are freed by whichever thread drops
// them. Each pin's own reference is dropped; the caller still holds a handle
// (the main greenlet's is ts.main, the hub's its hub), so nothing is freed.
void unpin_all(thread_state& ts) noexcept {
  while (!ts.pinned.empty()) unpin_child_references(ts.pinned.back());
}

thread_state_owner::~thread_state_owner() {
  thread_state* ts = tls_state;
  if (ts == nullptr) return;
  unregister_thread_state(*ts);
  if (ts->current != ts->main) {
    // The thread is exiting from inside a greenlet (pthread_exit); nothing
    // can be unwound safely. Leave everything to the orphan paths (and leak
    // this state: its greenlets' stacks are still in use).
    unpin_all(*ts);
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
      unpin_all(*ts);  // under the lock: no doomed greenlet can be queued meanwhile
      // From now on greenlets of this thread are freed by whichever thread
      // drops them: hand their count to the anchor's atomic reference count,
      // under the lock, before another thread can see alive == false.
      ts->anchor->alive = false;
      ts->anchor->refs.fetch_add(ts->greenlets, std::memory_order_relaxed);
      break;
    }
  }
  ts->main->release_locals();  // while the thread state can still serve them
  ts->main->set_state(greenlet_state::dead);
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

void pin_child_references(greenlet_impl* g) noexcept {
  thread_state* ts = tls_state;
  assert(ts != nullptr && g->anchor == ts->anchor && !g->pinned &&
         "greenev: pin a greenlet of this thread, once");
  try {
    ts->pinned.push_back(g);
  } catch (...) {
    return;  // no memory: its children keep counting atomically
  }
  g->add_ref();  // held for all its children
  g->pinned = true;
}

void unpin_child_references(greenlet_impl* g) noexcept {
  thread_state* ts = tls_state;
  if (ts == nullptr || g->anchor != ts->anchor || !g->pinned) return;  // unpinned at thread exit already
  std::erase(ts->pinned, g);
  g->pinned = false;
  g->refs.fetch_add(std::exchange(g->pinned_child_refs, 0), std::memory_order_relaxed);
  release(g);  // the pin's own reference; a handle of the caller's remains
}

void trim_idle_stacks() noexcept {
  if (tls_state != nullptr) tls_state->pool->trim_idle();
}

void kill_all_active_greenlets() noexcept {
  if (tls_state != nullptr) kill_all_active(*tls_state);
}

}  // namespace greenev::detail
