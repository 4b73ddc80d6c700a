// Private: the wait/wake discipline every blocking primitive is built on.
//
// A greenlet that must wait puts a `waiter` on its own stack, links it into
// the primitive's `wait_list`, and parks (switches to the hub). A waker calls
// schedule_wake(): the hub resumes the waiter later, in FIFO order. If the wait
// ends any other way (timeout, kill), the waiter's destructor unlinks it and
// cancels a wake-up already queued, so a stale wake can never reach a greenlet
// that has moved on. docs/design.md, "The wait/wake discipline".
#pragma once

#include <cstddef>

#include <greenev/detail/intrusive_fifo.hpp>
#include <greenev/hub.hpp>

namespace greenev::detail {

// One queued call in the hub. fn == nullptr: cancelled.
struct ready_item {
  void (*fn)(void* arg);
  void* arg;
};

class waiter : public fifo_hook<waiter> {
 public:
  // Binds to the calling greenlet. `what` (a static string: "event", "fd
  // read", ...) and `fd` (or -1) describe the wait in run info, the blocking
  // monitor and tools/greenev-gdb.py.
  explicit waiter(const char* what = "wait", int fd = -1) noexcept
      : greenlet_(current_greenlet()), what_(what), fd_(fd) {}
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;
  inline ~waiter();

  /// True once schedule_wake() picked it (it may not have run yet).
  [[nodiscard]] bool woken() const noexcept { return woken_; }
  /// Free for the primitive: e.g. "the lock was handed to this waiter".
  void* payload = nullptr;

 private:
  friend void schedule_wake(waiter&) noexcept;
  friend bool park(waiter&, wait_time);
  friend void sleep_yield();
  friend class hub_impl;
  friend void resume_waiter(void*);
  friend void on_park_timer(waiter&) noexcept;

  greenlet_impl* greenlet_;
  const char* what_;
  int fd_;
  ready_item* scheduled_ = nullptr;  // queued resume, cancelled if we go first
  bool woken_ = false;
  bool timed_out_ = false;
};

/// An intrusive FIFO of waiters (a primitive's waiting greenlets).
using wait_list = intrusive_fifo<waiter>;

inline waiter::~waiter() {
  if (fifo() != nullptr) fifo()->remove(*this);
  if (scheduled_ != nullptr) scheduled_->fn = nullptr;
}

/// Queues `w`'s greenlet to be resumed by the hub (once; later calls do
/// nothing). Never switches; callable from any greenlet of the thread,
/// including the hub.
void schedule_wake(waiter& w) noexcept;

/// Suspends the calling greenlet until schedule_wake(w) (returns true) or
/// until `timeout` elapses (returns false). Unlinks `w` from its list either
/// way. Switches. Throws greenlet_error in the hub or if something else
/// switches into the greenlet; propagates exceptions thrown into it.
bool park(waiter& w, wait_time timeout = {});

/// Wakes every waiter of `list`, in order.
inline void wake_all(wait_list& list) noexcept {
  while (waiter* w = list.pop_front()) schedule_wake(*w);
}

}  // namespace greenev::detail
