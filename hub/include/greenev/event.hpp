// greenev/event.hpp — one-shot notifications between greenlets: event and
// async_result<T> (gevent.event.Event and AsyncResult).
//
//   greenev::event ready;
//   greenev::spawn([&] { ...; ready.set(); });
//   ready.wait();                       // this greenlet waits; others run
//
// Waiters are woken in the order they started waiting, by the hub. set() and
// friends never switch, so they may be called from anywhere on the thread,
// including hub callbacks. Threading: one thread (the hub's).
#pragma once

#include <exception>
#include <optional>
#include <utility>

#include <greenev/detail/observer.hpp>
#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>
#include <greenev/timeout.hpp>

namespace greenev {

class waitable;

/// A flag greenlets can wait for.
class event {
 public:
  event() = default;
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// Sets the flag and wakes every waiter. Never switches.
  void set() noexcept {
    flag_ = true;
    detail::wake_all(waiters_);
    detail::notify_all(observers_);
  }
  /// Clears the flag. Never switches.
  void clear() noexcept { flag_ = false; }
  /// True while the flag is set. Never switches.
  [[nodiscard]] bool is_set() const noexcept { return flag_; }

  /// Waits until the flag is set. Returns true if it was set at any point
  /// during the wait (even if cleared again since), false if `timeout`
  /// passed first. Switches unless already set. Throws greenlet_error in the
  /// hub; exceptions thrown into the greenlet (timeouts, kills) propagate.
  bool wait(wait_time timeout = {}) {
    if (flag_) return true;
    detail::waiter w("event");
    waiters_.push_back(w);
    return detail::park(w, timeout);
  }

  /// Greenlets currently waiting.
  [[nodiscard]] std::size_t waiters() const noexcept { return waiters_.size(); }

 private:
  friend class waitable;
  bool flag_ = false;
  detail::wait_list waiters_;
  detail::observer_list observers_;  // greenev::wait / iwait
};

/// A value (or an exception) that arrives later: set once, read by any
/// number of waiters. T must be copyable (every reader gets a copy).
template <class T>
class async_result {
 public:
  async_result() = default;
  async_result(const async_result&) = delete;
  async_result& operator=(const async_result&) = delete;

  /// Stores the value and wakes every waiter. Never switches.
  void set(T value) {
    value_.emplace(std::move(value));
    error_ = nullptr;
    detail::wake_all(waiters_);
    detail::notify_all(observers_);
  }
  /// Stores an exception for get() to rethrow; wakes every waiter.
  void set_exception(std::exception_ptr error) {
    if (!error) throw greenlet_error("greenev: async_result::set_exception with a null exception_ptr");
    value_.reset();
    error_ = std::move(error);
    detail::wake_all(waiters_);
    detail::notify_all(observers_);
  }

  /// True once a value or an exception is set. Never switches.
  [[nodiscard]] bool ready() const noexcept { return value_.has_value() || error_ != nullptr; }
  /// True if a value (not an exception) is set. Never switches.
  [[nodiscard]] bool successful() const noexcept { return value_.has_value(); }
  /// The exception set, or null. Never switches.
  [[nodiscard]] std::exception_ptr exception() const noexcept { return error_; }
  /// The value if set, else empty. Never switches.
  [[nodiscard]] std::optional<T> value() const { return value_; }

  /// Waits until ready (true) or `timeout` passed (false). Switches unless
  /// ready.
  bool wait(wait_time timeout = {}) {
    if (ready()) return true;
    detail::waiter w("async_result");
    waiters_.push_back(w);
    detail::park(w, timeout);
    return ready();
  }

  /// Waits, then returns the value or rethrows the stored exception; throws
  /// timeout_error (source() == this) if `timeout` passed first.
  T get(wait_time timeout = {}) {
    if (!wait(timeout)) throw timeout_error(this, timeout.duration());
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }

 private:
  friend class waitable;
  std::optional<T> value_;
  std::exception_ptr error_;
  detail::wait_list waiters_;
  detail::observer_list observers_;  // greenev::wait / iwait
};

}  // namespace greenev
