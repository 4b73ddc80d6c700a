// greenev/monitor.hpp — the blocking monitor: which greenlet is blocking my
// loop? (gevent's monitor_thread / max_blocking_time).
//
//   GREENEV_MONITOR=1 GREENEV_MAX_BLOCKING_TIME=0.05 ./server   # or, in code:
//   greenev::start_monitor({.max_blocking_time = std::chrono::milliseconds(50)});
//
// One thread per process samples every hub. A hub that has not got to run
// (no callback, so no greenlet resumed or started, and no poll) for longer
// than max_blocking_time while it is not waiting in its loop is reported once
// per blocking episode: the running greenlet's name and spawn site, read
// without disturbing the blocked thread; the system call it is blocked in; and,
// when it is running user code, a native backtrace (taken in a handler of a
// dedicated signal; see monitor_backtrace and docs/caveats.md, "Blocking
// calls"). Cost: one counter bump per hub callback, none on a greenlet switch,
// whether or not the monitor runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace greenev {

/// One blocking episode, as reported.
struct blocking_report {
  int thread_id = 0;                        ///< the blocked thread (gettid())
  std::chrono::nanoseconds blocked_for{0};  ///< how long the hub had not run
  std::uint64_t greenlet_id = 0;            ///< 0 if the running greenlet could not be learned
  std::string greenlet_name;                ///< "main", "hub", "greenlet-N" or the given name
  std::string spawn_site;                   ///< e.g. "main+0x4f (./app)"; empty if not spawned
  int system_call = -1;                ///< Linux number of the call it is blocked in; -1: none or unknown
  std::string system_call_name;        ///< e.g. "clock_nanosleep"; empty if not in a call or not a common one
  std::vector<std::string> backtrace;  ///< symbolised frames, innermost first; may be empty
  /// The multi-line text reported through the error reporter (stderr by
  /// default) when no callback is set.
  [[nodiscard]] std::string text() const;
};

/// When the monitor takes a blocked thread's backtrace. It can only be taken on
/// that thread, by a signal, and a signal ends the system call the thread is
/// blocked in: `sleep`, `usleep`, `nanosleep`, `poll`, `select`, `epoll_wait`
/// and reads with a timeout return early with EINTR (others restart).
enum class monitor_backtrace {
  never,                 ///< no signal, no backtrace
  outside_system_calls,  ///< only when the thread runs user code (a busy loop): disturbs nothing
  always,                ///< also when blocked in a system call, which the signal interrupts
};

/// How start_monitor() watches and reports (GREENEV_MONITOR=1 uses the defaults,
/// with GREENEV_MAX_BLOCKING_TIME).
struct monitor_options {
  /// A hub not running for longer than this is blocked.
  std::chrono::nanoseconds max_blocking_time = std::chrono::milliseconds(100);
  /// Called on the monitor thread for each report (must not block for long:
  /// it delays the next sample); empty: the report's text is reported through
  /// the error reporter (stderr by default).
  std::function<void(const blocking_report&)> on_blocking{};
  /// When to take a backtrace (GREENEV_MONITOR_BACKTRACE=never|outside_system_calls|always).
  monitor_backtrace backtrace = monitor_backtrace::outside_system_calls;
  /// The signal that takes the backtrace; 0 disables backtraces. The default
  /// is SIGRTMIN + 7 (chosen at run time).
  int backtrace_signal = -1;
};

/// Starts (or reconfigures) the process's monitor thread. Never switches.
/// Thread-safe. Throws std::invalid_argument if max_blocking_time is not
/// positive, std::system_error if the signal handler cannot be installed or
/// the thread cannot be created.
/// GREENEV_MONITOR=1 in the environment starts it when the first hub is
/// created, with GREENEV_MAX_BLOCKING_TIME (seconds, default 0.1) and
/// GREENEV_MONITOR_BACKTRACE (default outside_system_calls); a value it
/// cannot use is reported through the error reporter (stderr by default)
/// and the default kept.
void start_monitor(monitor_options options = {});

/// Stops and joins the monitor thread (no-op if not running). Never
/// switches; thread-safe; does not throw. Must not be called from
/// an on_blocking callback.
void stop_monitor() noexcept;

/// True while the monitor thread runs. Thread-safe.
[[nodiscard]] bool monitor_running() noexcept;

}  // namespace greenev
