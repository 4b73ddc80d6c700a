// greenev/monitor.hpp — the blocking monitor: which greenlet is blocking my
// loop? (gevent's monitor_thread / max_blocking_time).
//
//   GREENEV_MONITOR=1 GREENEV_MAX_BLOCKING_TIME=0.05 ./server   # or, in code:
//   greenev::start_monitor({.max_blocking_time = std::chrono::milliseconds(50)});
//
// One thread per process samples every hub. A hub that has not got to run
// (no callback, so no greenlet resumed or started, and no poll) for longer
// than max_blocking_time while it is not waiting in its loop is reported once
// per blocking episode: the running greenlet's name and spawn site, and a
// native backtrace of the blocked thread (taken in a handler of a dedicated
// signal, which interrupts the blocked system call: see docs/caveats.md,
// "Blocking calls"). Cost: one counter bump per hub callback, none on a
// greenlet switch, whether or not the monitor runs.
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
  std::vector<std::string> backtrace;       ///< symbolised frames, innermost first; may be empty
  /// The multi-line text printed to stderr when no callback is set.
  [[nodiscard]] std::string text() const;
};

/// How start_monitor() watches and reports (GREENEV_MONITOR=1 uses the defaults,
/// with GREENEV_MAX_BLOCKING_TIME).
struct monitor_options {
  /// A hub not running for longer than this is blocked.
  std::chrono::nanoseconds max_blocking_time = std::chrono::milliseconds(100);
  /// Called on the monitor thread for each report (must not block for long:
  /// it delays the next sample); empty: the report's text goes to stderr.
  std::function<void(const blocking_report&)> on_blocking{};
  /// The signal used to take the blocked thread's backtrace; 0 disables
  /// backtraces. The default is SIGRTMIN + 7 (chosen at run time).
  int backtrace_signal = -1;
};

/// Starts (or reconfigures) the process's monitor thread. Never switches.
/// Thread-safe. Throws std::system_error if the thread cannot be created.
/// GREENEV_MONITOR=1 in the environment starts it when the first hub is
/// created, with GREENEV_MAX_BLOCKING_TIME (seconds, default 0.1).
void start_monitor(monitor_options options = {});

/// Stops and joins the monitor thread (no-op if not running). Never
/// switches; thread-safe; does not throw. Must not be called from
/// an on_blocking callback.
void stop_monitor() noexcept;

/// True while the monitor thread runs. Thread-safe.
[[nodiscard]] bool monitor_running() noexcept;

}  // namespace greenev
