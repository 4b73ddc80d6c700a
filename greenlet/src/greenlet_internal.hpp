// Private: what the greenlet core's files share. greenlet_thread.cpp owns
// the per-thread state and the freeing and killing of greenlets;
// greenlet_switch.cpp starts, switches and ends them; greenlet_diagnostics.cpp
// serves gdb and the blocking monitor; greenlet_handle.cpp is the greenlet
// class. docs/design.md ("The greenlet model") explains the invariants.
#pragma once

#include <any>
#include <cassert>
#include <cstdint>
#include <string>

#include <greenev/greenlet.hpp>

#include "stack_pool.hpp"

namespace greenev::detail {

// ---- greenlet_thread.cpp ----

thread_state* create_thread_state();

inline thread_state& local_state() {
  thread_state* ts = tls_state;
  if (ts == nullptr) [[unlikely]]
    ts = create_thread_state();
  return *ts;
}

// Called once the reference count reached zero. Returns a greenlet whose
// reference the caller must drop (or null).
greenlet_impl* destroy(greenlet_impl* g) noexcept;

// Freeing a greenlet drops its parent's reference, which may free the parent,
// and so on up the chain: a loop, not a recursion.
inline void release(greenlet_impl* g) noexcept {
  while (g != nullptr) {
    // The only reference, on the greenlet's own thread: no other thread holds
    // one to copy or drop (raw pointers to it are add_ref'd only on this
    // thread), so no atomic read-modify-write. The acquire pairs with the
    // release of whichever thread dropped the one before.
    const thread_state* ts = tls_state;
    if (ts != nullptr && ts->anchor == g->anchor && g->refs.load(std::memory_order_acquire) == 1) {
      g->refs.store(0, std::memory_order_relaxed);
    } else {
      const std::size_t before = g->refs.fetch_sub(1, std::memory_order_acq_rel);
      assert(before != 0 && before < freed_greenlet_refs &&
             "greenev: greenlet released more often than referenced, or after it was freed");
      if (before != 1) return;
    }
    g = destroy(g);
  }
}

// A child's reference on its parent `p` (see pin_child_references): taken on
// p's thread; dropped there while it lives, or anywhere once it has exited
// (by then p is unpinned). release_parent_ref returns p when the caller must
// release() it, else null.
inline void add_parent_ref(greenlet_impl* p) noexcept {
  if (p->pinned) {
    ++p->pinned_child_refs;
  } else {
    p->add_ref();
  }
}
[[nodiscard]] inline greenlet_impl* release_parent_ref(greenlet_impl* p) noexcept {
  const thread_state* ts = tls_state;
  if (p != nullptr && ts != nullptr && ts->anchor == p->anchor && p->pinned) {
    assert(p->pinned_child_refs != 0 && "greenev: a pinned greenlet's child references went below zero");
    --p->pinned_child_refs;
    return nullptr;
  }
  return p;
}

// Frees the greenlets other threads dropped (see thread_anchor).
void process_doomed(thread_state& ts) noexcept;

// ---- the thread's list of active greenlets ------------------------------

inline void link_active(thread_state& ts, greenlet_impl* g) noexcept {
  g->active_prev = nullptr;
  g->active_next = ts.active_head;
  if (ts.active_head != nullptr) ts.active_head->active_prev = g;
  ts.active_head = g;
  ++ts.active_count;
}

inline void unlink_active(thread_state& ts, greenlet_impl* g) noexcept {
  if (g->active_prev != nullptr) {
    g->active_prev->active_next = g->active_next;
  } else {
    ts.active_head = g->active_next;
  }
  if (g->active_next != nullptr) g->active_next->active_prev = g->active_prev;
  g->active_prev = g->active_next = nullptr;
  --ts.active_count;
}

// ---- greenlet_switch.cpp ----

// The general switch: ts.value / ts.error already set by the caller.
std::any switch_now(thread_state& ts, greenlet_impl* target);

// The thread check comes before anything of `g` but its immutable anchor is
// read; the message takes a copy of its name (its owner may be renaming it).
inline greenlet_impl* checked(greenlet_impl* g, const thread_state& ts, const char* what) {
  if (g->anchor != ts.anchor) [[unlikely]] {
    throw greenlet_error(std::string("greenev: cannot ") + what + " greenlet " + g->name_copy() +
                         ": it belongs to another thread");
  }
  return g;
}

// ---- greenlet_handle.cpp ----

std::uint64_t new_greenlet_id() noexcept;

// ---- greenlet_diagnostics.cpp ----

// The process-wide registry of thread states, for diagnostics: run info and
// the blocking monitor list threads through it, and tools/greenev-gdb.py
// walks greenev_debug_threads in a core file (C names: stable, unmangled).
void register_thread_state(thread_state& ts) noexcept;
void unregister_thread_state(thread_state& ts) noexcept;

}  // namespace greenev::detail
