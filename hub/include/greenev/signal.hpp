// greenev/signal.hpp — POSIX signals handled in a greenlet
// (gevent.signal_handler).
//
//   greenev::event stop;
//   greenev::signal_handler on_term(SIGTERM, [&] { stop.set(); });
//   stop.wait();                       // until SIGTERM arrives
//
// Each delivery runs the function in a new task (task.hpp), spawned by the
// hub, never inside the asynchronous signal handler: it may do anything a
// greenlet may (block, sleep, spawn). Deliveries that arrive together before
// the hub notices them may be merged into one run. An exception escaping the
// function is reported like any task failure, and later deliveries still run.
// A handler does not keep the loop alive by itself (gevent's ref=False): a
// greenlet waiting for nothing but a signal gets loop_exit.
// When the last handler for a signal stops, libev resets that signal's
// disposition to SIG_DFL (it does not restore an earlier handler).
// Threading: only the main thread's hub can watch signals (the first hub of
// the process: libev delivers each signal to one loop); create, cancel and
// destroy handlers on that thread.
#pragma once

#include <functional>

#include <greenev/hub.hpp>

namespace greenev {

namespace detail {
class hub_impl;
}

/// Runs a function in a new greenlet each time a signal is delivered, until
/// cancelled or destroyed. Several handlers may watch the same signal; all
/// of them run. Not copyable or movable.
class signal_handler {
 public:
  /// Starts watching `signum` (libev installs its own sigaction handler).
  /// Never switches. Throws std::invalid_argument for a signal number out of
  /// range, SIGKILL or SIGSTOP (which cannot be caught), or an empty
  /// function; greenlet_error if this thread's hub is not the first hub of
  /// the process (see the threading note on top).
  signal_handler(int signum, std::function<void()> handler);
  signal_handler(const signal_handler&) = delete;
  signal_handler& operator=(const signal_handler&) = delete;
  /// Same as cancel(). Never switches.
  ~signal_handler();

  /// Stops watching; runs already spawned keep going. Idempotent. Never
  /// switches.
  void cancel() noexcept;
  /// True until cancel().
  [[nodiscard]] bool active() const noexcept { return active_; }
  /// The signal it handles.
  [[nodiscard]] int signum() const noexcept { return signum_; }

  /// Internal: the hub's signal watcher calls this on each delivery.
  static void on_signal(signal_handler& self) noexcept;

 private:
  alignas(16) unsigned char watcher_[64];  // an ev_signal (static_assert in signal.cpp)
  detail::hub_impl* hub_;
  std::function<void()> handler_;
  int signum_;
  bool active_ = false;
};

}  // namespace greenev
