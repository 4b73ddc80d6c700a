// greenev/timeout.hpp — scoped timeouts that raise in the greenlet that
// created them (gevent.Timeout).
//
//   try {
//     greenev::timeout deadline(2s);
//     socket.recv(...);                 // any blocking call
//   } catch (const greenev::timeout_error& e) { ... }
//
//   if (!greenev::try_with_timeout(1s, [&] { work(); })) ...  // gevent's Timeout(1, False)
//   int n = greenev::with_timeout(1s, [&] { return count(); }, -1);  // -1 if it expired
//
// An expiring timeout raises timeout_error (or the caller's exception, given
// in timeout_options) at the greenlet's current blocking call. Waits nest: a primitive's own timeout
// (event::wait(1s)) never swallows an outer timeout's error, and code that catches timeout_error should check
// raised() and rethrow errors that are not its own.
// Threading: a timeout belongs to the greenlet that created it; create,
// start, restart, cancel and destroy it there.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <greenev/hub.hpp>

namespace greenev {

class timeout;

/// What an expired timeout raises. source() identifies who raised it.
class timeout_error : public std::runtime_error {
 public:
  /// Raised for `source`'s deadline of `after`; the message says how long.
  timeout_error(const void* source, std::chrono::nanoseconds after);
  /// The timeout object (or primitive) whose deadline passed.
  [[nodiscard]] const void* source() const noexcept { return source_; }
  /// The duration that passed.
  [[nodiscard]] std::chrono::nanoseconds after() const noexcept { return after_; }

 private:
  const void* source_;
  std::chrono::nanoseconds after_;
};

/// How a timeout is made: gevent's Timeout(seconds, exception) and an
/// unstarted Timeout(seconds).
struct timeout_options {
  /// Raised at expiry instead of timeout_error (gevent's Timeout(seconds,
  /// exception)); null: timeout_error. raised() cannot recognize it: the
  /// caller's exception type is the way to tell.
  std::exception_ptr error{};
  /// false: the timer does not run until start() (gevent's Timeout(seconds)
  /// before start(); a C++ timeout starts at construction by default).
  bool start = true;
};

/// Starts a timer on construction; if it expires before the timeout is
/// destroyed or cancelled, timeout_error (or options.error) is raised in the
/// greenlet that started it (at its current blocking call, or at once if it
/// is already blocked). wait_time::forever() never fires. Never switches
/// itself. Throws greenlet_error if created in the hub.
class timeout {
 public:
  /// Starts the timer for the calling greenlet (unless options.start is false).
  explicit timeout(wait_time duration, timeout_options options = {});
  timeout(const timeout&) = delete;
  timeout& operator=(const timeout&) = delete;
  ~timeout();

  /// gevent's Timeout.start(): starts the timer, with the current duration,
  /// for the calling greenlet (which the expiry raises into); clears
  /// expired(). Never switches. Throws std::logic_error if it is pending
  /// already (as gevent; cancel() first, or restart()), greenlet_error in
  /// the hub.
  void start();
  /// Cancels the timer if pending, then starts it afresh with `duration`
  /// (the new duration from now on) for the calling greenlet; clears
  /// expired(). Never switches. Throws greenlet_error in the hub.
  void restart(wait_time duration);
  /// Stops the timer; has no effect once it fired. It can be started again
  /// (start(), restart()). Never switches.
  void cancel() noexcept;
  /// True while the timer is running.
  [[nodiscard]] bool pending() const noexcept;
  /// True once it fired (its error was raised), until start()/restart().
  [[nodiscard]] bool expired() const noexcept { return expired_; }
  /// True if `error` was raised by this timeout.
  [[nodiscard]] bool raised(const timeout_error& error) const noexcept { return error.source() == this; }

  /// Internal: the hub's timer callback calls this when the deadline passes.
  static void on_expiry(timeout& self) noexcept;

 private:
  void arm(wait_time duration);

  alignas(16) unsigned char watcher_[64];  // an ev_timer (static_assert in timeout.cpp)
  detail::greenlet_impl* target_;          // not owned: the timeout lives on its stack
  std::chrono::nanoseconds duration_;
  std::exception_ptr error_;  // options.error
  bool forever_ = false;
  bool started_ = false;
  bool expired_ = false;
};

/// Runs `f()` with a timeout around it: returns what it returns, or lets
/// timeout_error propagate if the deadline passes first. Switches if f does.
template <class F>
decltype(auto) with_timeout(wait_time duration, F&& f) {
  timeout deadline(duration);
  return std::forward<F>(f)();
}

/// gevent's with_timeout(seconds, f, timeout_value=...): returns `f()`, or
/// `timeout_value` if this deadline passed first. Returns their common type
/// (f's result must be convertible to it). Another timeout's error (an outer
/// deadline) and f's own exceptions propagate. Switches if f does. Throws
/// greenlet_error in the hub.
template <class F, class V>
requires(!std::is_void_v<std::invoke_result_t<F&>>) auto with_timeout(wait_time duration, F&& f,
                                                                      V&& timeout_value)
    -> std::common_type_t<std::invoke_result_t<F&>, std::decay_t<V>> {
  timeout deadline(duration);
  try {
    return std::invoke(f);
  } catch (const timeout_error& e) {
    if (!deadline.raised(e)) throw;
  }
  return std::forward<V>(timeout_value);
}

/// gevent's silent timeout, `with Timeout(seconds, False):`: runs `f()`
/// under a deadline of `duration`. Returns true (void f) or f's result in an
/// optional when f finished; false or std::nullopt when the deadline passed
/// first, which then ended f at its blocking call (f unwinds as for any
/// exception). Another timeout's error and f's own exceptions propagate.
/// Switches if f does. Throws greenlet_error in the hub.
template <class F>
auto try_with_timeout(wait_time duration, F&& f) {
  using result = std::invoke_result_t<F&>;
  timeout deadline(duration);
  try {
    if constexpr (std::is_void_v<result>) {
      std::invoke(f);
      return true;
    } else {
      return std::optional<std::decay_t<result>>(std::invoke(f));
    }
  } catch (const timeout_error& e) {
    if (!deadline.raised(e)) throw;
  }
  if constexpr (std::is_void_v<result>) {
    return false;
  } else {
    return std::optional<std::decay_t<result>>();
  }
}

}  // namespace greenev
