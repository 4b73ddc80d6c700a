// Switching: starting a greenlet, the out-of-line switch paths, and the
// entry trampoline every greenlet runs on its own stack until it dies.
#include <any>
#include <cassert>
#include <cstdlib>
#include <exception>
#include <utility>

#include "greenlet_internal.hpp"

namespace greenev::detail {

namespace {

[[noreturn]] void run_greenlet(context_transfer caller) noexcept;

// No fiber record and no setup jump: make_fcontext only lays out a frame at
// the top of the stack; the first switch_to() enters run_greenlet there.
void start(thread_state& ts, greenlet_impl* g) {
  if (ts.anchor->has_doomed.load(std::memory_order_relaxed)) [[unlikely]]
    process_doomed(ts);
  const std::size_t size = g->requested_size != 0 ? g->requested_size : checked_stack_size(0, "greenlet");
  g->stack = ts.pool->allocate(size, g->kind, g->prefault_expected);
  g->prefault_expected = false;
  g->context = make_context(g->stack.top(), g->stack.size, run_greenlet);
#ifdef GREENEV_DETAIL_TU_TSAN
  g->tsan_fiber = __tsan_create_fiber(0);
#endif
  g->set_state(greenlet_state::active);
  link_active(ts, g);
}

inline greenlet_impl* live_target(greenlet_impl* g) noexcept {
  while (g->dead()) g = g->parent;  // a live thread's main greenlet is never dead
  return g;
}

// The entry of every greenlet, on its new stack; never returns. It dies by
// jumping to the greenlet that receives its result, which lands in land_slow
// and gives this stack back to the pool from there.
void run_greenlet(context_transfer caller) noexcept {
  thread_state& ts = *tls_state;
  greenlet_impl* self = ts.current;
  greenlet_impl* from = ts.switching_from;
  after_jump(self, from);
  from->context = caller.fctx;
  std::any result;
  std::exception_ptr error;
  {
    std::any first_value = take_sent(ts);
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
  self->set_state(greenlet_state::dead);
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
  assert(target->anchor == ts.anchor && target->current_state() == greenlet_state::active &&
         target->context != nullptr && "greenev: a dying greenlet's result goes to a suspended one");
  ts.switching_from = self;
  publish_current(ts, target);
  swap_exception_state(ts, self, target);
  before_jump(self, target, true);
  jump_context(std::exchange(target->context, nullptr), nullptr);
  std::abort();  // a dead greenlet is never resumed
}

}  // namespace

std::any switch_now(thread_state& ts, greenlet_impl* target) {
  target = live_target(target);
  if (target == ts.current) {
    if (ts.error) rethrow_in_flight(ts);
    return take_sent(ts);
  }
  if (target->current_state() == greenlet_state::unstarted) {
    try {
      start(ts, target);
    } catch (...) {
      drop_sent(ts);
      ts.error = nullptr;
      throw;
    }
  }
  return switch_to_active(ts, target);
}

std::any land_slow(thread_state& ts, greenlet_impl* from) {
  std::any value = take_sent(ts);  // before a dead sender's stack is returned
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

std::any take_typed_as_any(thread_state& ts) {
  return std::exchange(ts.sent_ops, nullptr)->to_any(ts.sent_typed);
}

void rethrow_in_flight(thread_state& ts) {
  drop_sent(ts);
  std::rethrow_exception(std::exchange(ts.error, nullptr));
}

}  // namespace greenev::detail
