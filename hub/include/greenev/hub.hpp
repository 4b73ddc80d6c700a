// greenev/hub.hpp — the per-thread hub: a greenlet running a libev loop that
// every blocking greenev call switches to, and that switches back when the
// awaited event happens.
//
//   greenev::sleep(0.5);                               // this greenlet waits; others run
//   greenev::hub::current().run_callback([] { ... });  // runs later, in the hub
//
// Threading: one hub per thread, created on first use, each on its own
// libev loop (never libev's default loop, so greenev reaps no child process
// it was not asked to watch); the first hub of the process is the one that
// can watch signals (create it on the main thread first). Everything here acts on the
// calling thread's hub, except run_callback_threadsafe(). Greenlets never
// move between threads. Blocking calls made from inside the hub itself (a
// loop callback) throw greenlet_error: the hub cannot wait for itself.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <greenev/greenlet.hpp>

namespace greenev {

/// How long a call may wait: a std::chrono duration, seconds as a double
/// (gevent style), or forever (the default). Negative waits count as zero.
class wait_time {
 public:
  /// Forever.
  constexpr wait_time() noexcept = default;
  /// A std::chrono duration (implicit on purpose: `join(50ms)`).
  template <class Rep, class Period>
  constexpr wait_time(std::chrono::duration<Rep, Period> d)  // NOLINT: implicit on purpose
      : forever_(false), ns_(clamp(std::chrono::duration_cast<std::chrono::nanoseconds>(d))) {}
  /// Seconds. Throws std::invalid_argument for NaN.
  wait_time(double seconds)  // NOLINT: implicit on purpose
      : forever_(false), ns_(from_seconds(seconds)) {}
  /// Forever, spelled out.
  [[nodiscard]] static constexpr wait_time forever() noexcept { return {}; }
  /// True for forever.
  [[nodiscard]] constexpr bool is_forever() const noexcept { return forever_; }
  /// True for a zero (or negative) wait: the call only checks, never waits.
  [[nodiscard]] constexpr bool is_poll() const noexcept { return !forever_ && ns_.count() == 0; }
  /// The duration; meaningless if is_forever().
  [[nodiscard]] constexpr std::chrono::nanoseconds duration() const noexcept { return ns_; }

 private:
  static constexpr std::chrono::nanoseconds clamp(std::chrono::nanoseconds d) noexcept {
    return d.count() < 0 ? std::chrono::nanoseconds(0) : d;
  }
  static std::chrono::nanoseconds from_seconds(double seconds) {
    if (std::isnan(seconds)) throw std::invalid_argument("greenev: a wait time of NaN seconds");
    if (seconds <= 0) return std::chrono::nanoseconds(0);
    if (seconds > 1e9) return std::chrono::hours(24 * 365 * 30);  // "a very long time"
    return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
  }
  bool forever_ = true;
  std::chrono::nanoseconds ns_{0};
};

/// Raised in a greenlet that waits when nothing left in the loop could ever
/// wake it ("this operation would block forever"), naming what the loop still
/// holds. gevent's LoopExit.
class loop_exit : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
class hub_impl;
}

/// The calling thread's hub. Not copyable; lives until its thread exits (or
/// destroy_current()), when greenlets still waiting in it are unwound
/// (greenlet_exit). One that waits again instead of dying is reported through
/// the error reporter (stderr by default) and leaked: the hub does not wait
/// for it then.
class hub {
 public:
  /// This thread's hub, created on first use. Never switches.
  [[nodiscard]] static hub& current();

  /// Tears the calling thread's hub down now, as thread exit would and in
  /// the same order (gevent's Hub.destroy()): the resolver's channels shut
  /// down (lookups in flight fail), greenlets still waiting are unwound
  /// (greenlet_exit), the thread's resolver threadpool is let go, then the
  /// loop and the fd-wait table. The next greenev call on this thread makes
  /// a fresh hub. Switches (into the greenlets it unwinds) and returns.
  /// Call it from the thread's main greenlet, outside every spawned greenlet;
  /// throws greenlet_error otherwise. Objects made on this thread that keep
  /// its hub (threadpool, signal_handler, stream_server) must be gone first.
  /// Does nothing on a thread without a hub.
  static void destroy_current();

  hub(const hub&) = delete;
  hub& operator=(const hub&) = delete;

  /// The hub greenlet (parent of every spawned greenlet).
  [[nodiscard]] const greenlet& hub_greenlet() const noexcept;

  /// Queues `fn` to run in the hub, after callbacks queued before it (FIFO).
  /// Never switches. An exception escaping `fn` is reported through the
  /// error reporter (stderr by default) and ignored. Must be called on this hub's thread. Throws
  /// std::invalid_argument for an empty function.
  void run_callback(std::function<void()> fn);

  /// Like run_callback(), from any thread: wakes the loop through ev_async.
  /// The callback keeps the loop from reporting loop_exit until it has run.
  /// Throws std::invalid_argument for an empty function.
  void run_callback_threadsafe(std::function<void()> fn);

  /// Counters for tests and diagnostics: libev watchers active (excluding the
  /// hub's own), callbacks queued.
  ///@{
  [[nodiscard]] std::size_t active_watchers() const noexcept;
  [[nodiscard]] std::size_t pending_callbacks() const noexcept;
  ///@}

  /// Internal: the hub's private state, for greenev's own layers.
  [[nodiscard]] detail::hub_impl& impl() noexcept { return *impl_; }

 private:
  friend class detail::hub_impl;
  explicit hub(detail::hub_impl* impl) noexcept : impl_(impl) {}
  detail::hub_impl* impl_;
};

/// Holds a hub's loop open for work another thread will report back, as
/// Asio's executor_work_guard does: while one exists, a greenlet waiting for
/// that report (an event the other thread sets through
/// hub::run_callback_threadsafe()) is not ended by loop_exit, though the loop
/// watches nothing. Create it on the hub's thread before handing the work
/// over; release it (destructor or reset()) on any thread, but before the
/// hub's thread exits.
///
///   greenev::work_guard expecting;  // this thread's hub
///   std::thread([&] { ...; home.run_callback_threadsafe([&] { done.set(); }); }).detach();
///   done.wait();                    // no loop_exit while the thread works
class work_guard {
 public:
  /// Holds `h` (this thread's hub by default). Never switches; does not throw.
  explicit work_guard(hub& h = hub::current()) noexcept;
  /// Takes over `other`'s hold; `other` then holds nothing.
  work_guard(work_guard&& other) noexcept;
  /// Releases this guard's hold (as reset()), then takes over `other`'s.
  work_guard& operator=(work_guard&& other) noexcept;
  work_guard(const work_guard&) = delete;
  work_guard& operator=(const work_guard&) = delete;
  /// Same as reset().
  ~work_guard();

  /// Releases the hub (no-op if already released). On another thread it
  /// wakes the hub, through ev_async, so that it sees the release. Never
  /// switches; does not throw (if the wake-up cannot be allocated, the
  /// release is made directly and the hub sees it at its next wake-up).
  void reset() noexcept;

  /// True until reset() or a move from it.
  [[nodiscard]] bool owns_work() const noexcept { return impl_ != nullptr; }

 private:
  detail::hub_impl* impl_;
  bool foreign_ = false;  // made on another thread than the hub's: dropped by fork's child
};

namespace detail {
void sleep_yield();                      // sleep(0)
void sleep_waiting(wait_time duration);  // any other sleep
}  // namespace detail

/// Suspends the calling greenlet for `duration`; other greenlets run
/// meanwhile. sleep(0) yields: every other ready greenlet runs once, and the
/// loop polls IO at least every few milliseconds even under a sleep(0) loop.
/// Switches. Throws greenlet_error when called from the hub; whatever is
/// thrown into the greenlet meanwhile (a timeout, a kill) propagates.
///
/// Inline so that sleep(0), a yield in a busy loop, is one call into the
/// library: the return after a switch mispredicts, one frame less is one less.
inline void sleep(wait_time duration) {
  if (duration.is_poll()) {
    detail::sleep_yield();
    return;
  }
  detail::sleep_waiting(duration);
}

/// Same as sleep(0).
inline void yield() {
  sleep(std::chrono::nanoseconds(0));
}

}  // namespace greenev
