// greenev/timeout.hpp — scoped timeouts that raise in the greenlet that
// created them (gevent.Timeout).
//
//   try {
//     greenev::timeout deadline(2s);
//     socket.recv(...);                 // any blocking call
//   } catch (const greenev::timeout_error& e) { ... }
//
// An expiring timeout raises timeout_error at the greenlet's current blocking
// call. Waits nest: a primitive's own timeout (event::wait(1s)) never swallows
// an outer timeout's error, and code that catches timeout_error should check
// raised() and rethrow errors that are not its own.
// Threading: a timeout belongs to the greenlet that created it; create,
// cancel and destroy it there.
#pragma once

#include <chrono>
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

/// Starts a timer on construction; if it expires before the timeout is
/// destroyed or cancelled, timeout_error is raised in the creating greenlet
/// (at its current blocking call, or at once if it is already blocked).
/// wait_time::forever() never fires. Never switches itself.
/// Throws greenlet_error if created in the hub.
class timeout {
 public:
  /// Starts the timer for the calling greenlet.
  explicit timeout(wait_time duration);
  timeout(const timeout&) = delete;
  timeout& operator=(const timeout&) = delete;
  ~timeout();

  /// Stops the timer; has no effect once it fired. Never switches.
  void cancel() noexcept;
  /// True while the timer is running.
  [[nodiscard]] bool pending() const noexcept;
  /// True once it fired (its error was raised).
  [[nodiscard]] bool expired() const noexcept { return expired_; }
  /// True if `error` was raised by this timeout.
  [[nodiscard]] bool raised(const timeout_error& error) const noexcept { return error.source() == this; }

  /// Internal: the hub's timer callback calls this when the deadline passes.
  static void on_expiry(timeout& self) noexcept;

 private:
  alignas(16) unsigned char watcher_[64];  // an ev_timer (static_assert in timeout.cpp)
  detail::greenlet_impl* target_;          // not owned: the timeout lives on its stack
  std::chrono::nanoseconds duration_;
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

}  // namespace greenev
