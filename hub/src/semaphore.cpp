// Semaphores and locks: the waiting half (hand-off on release, passing on a
// unit whose waiter left) and rlock's ownership.
#include <greenev/semaphore.hpp>

#include <string>
#include <utility>

#include "hub_impl.hpp"

namespace greenev {

bool semaphore::acquire_slow(wait_time timeout) {
  if (timeout.is_poll()) return false;  // polls; fine in the hub
  detail::waiter w("semaphore");
  // release() hands a unit over by setting `payload` before the waiter runs.
  // If the wait then ends by an exception (kill, outer timeout), the unit
  // is not ours to keep: pass it to the next waiter, or back to the count.
  struct pass_on_unclaimed {
    semaphore& owner;
    detail::waiter& w;
    ~pass_on_unclaimed() {
      if (w.payload != nullptr) owner.give();
    }
  } guard{*this, w};
  waiters_.push_back(w);
  detail::park(w, timeout);
  // Woken by give() (even if our timer fired too): the unit is ours.
  return std::exchange(w.payload, nullptr) != nullptr;
}

void semaphore::give() noexcept {
  if (detail::waiter* w = waiters_.pop_front()) {
    w->payload = this;
    detail::schedule_wake(*w);
    return;
  }
  count_up();
}

bool rlock::acquire(wait_time timeout) {
  detail::greenlet_impl* me = detail::current_greenlet();  // identity only: no reference
  if (owner_ == me) {
    ++depth_;
    return true;
  }
  if (!block_.acquire(timeout)) return false;
  owner_ = me;
  depth_ = 1;
  return true;
}

bool rlock::try_acquire() {
  detail::greenlet_impl* me = detail::current_greenlet();  // identity only: no reference
  if (owner_ == me) {
    ++depth_;
    return true;
  }
  if (!block_.try_acquire()) return false;
  owner_ = me;
  depth_ = 1;
  return true;
}

void rlock::release() {
  detail::greenlet_impl* me = detail::current_greenlet();  // identity only: no reference
  if (owner_ != me) {
    throw greenlet_error("greenev: rlock released by greenlet " + me->display_name() +
                         ", which does not hold it" +
                         (depth_ == 0 ? " (it is not locked)" : " (another greenlet does)"));
  }
  if (--depth_ > 0) return;
  owner_ = nullptr;
  block_.release();
}

bool rlock::owned_by_current() const noexcept {
  return depth_ > 0 && detail::tls_state != nullptr && owner_ == detail::tls_state->current;
}

}  // namespace greenev
