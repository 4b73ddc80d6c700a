// Private: the hub's state and loop. docs/design.md, "One hub iteration".
#pragma once

#include <ev.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/detail/waiter.hpp>
#include <greenev/hub.hpp>
#include <greenev/task.hpp>

namespace greenev::detail {

// How to drop a queued callback that will never run (the hub is going away):
// callbacks that own something register how to release it.
using ready_discard = void (*)(void* arg) noexcept;

class hub_impl {
 public:
  hub_impl();
  hub_impl(const hub_impl&) = delete;
  hub_impl& operator=(const hub_impl&) = delete;
  ~hub_impl();

  // Unwinds every greenlet of the thread (greenlet_exit) and releases what
  // waits for a delayed start; the loop stays. The runtime's teardown, step 2.
  void unwind_greenlets() noexcept;

  // Queues fn(arg). The returned item stays valid (std::deque) until popped.
  ready_item* push(void (*fn)(void*), void* arg) {
    ready_.push_back({fn, arg});
    return &ready_.back();
  }

  [[nodiscard]] bool in_hub() const noexcept {
    return tls_state != nullptr && tls_state->current == hub_greenlet_.get();
  }
  // Throws greenlet_error naming `what` if called in the hub.
  void require_not_in_hub(const char* what) const {
    if (in_hub()) [[unlikely]]
      throw_blocking_in_hub(what);
  }
  [[noreturn]] static void throw_blocking_in_hub(const char* what);
  [[noreturn]] static void throw_wrong_wake();
  // Switches to the hub; returns when something switches back.
  void switch_to_hub() { switch_to_impl(hub_greenlet_.get()); }

  // park() and its switch, inline for this library's own waits: every
  // return after a switch is a mispredict (docs/design.md, "One switch").
  static bool park(waiter& w, wait_time timeout);
  void park_in_hub(const waiter& w);

  // Runs `f` inside a libev callback: a kill of the hub (greenlet_exit) is
  // carried out of ev_run (C frames must not be unwound); anything else is
  // reported and dropped.
  template <class F>
  void guard(F&& f) noexcept {
    try {
      f();
    } catch (const greenlet_exit&) {
      loop_error_ = std::current_exception();
      ev_break(loop_, EVBREAK_ALL);
    } catch (...) {
      report_hub_error("a loop callback");
    }
  }
  void report_hub_error(const char* where) noexcept;

  // Refs the loop while work done elsewhere (another thread) will come back.
  void add_external_work() noexcept { external_work_.fetch_add(1, std::memory_order_relaxed); }
  void finish_external_work() noexcept { external_work_.fetch_sub(1, std::memory_order_relaxed); }
  // A work_guard made or released on another thread: counted apart too, so
  // that fork's child can drop what threads it does not have still hold.
  // Both under async_mutex_, which fork holds (see lock_for_fork).
  void add_foreign_guard() noexcept;
  void release_foreign_guard() noexcept;

  // fork(2) (fork.cpp): the calling thread's hub across a fork. Held from
  // the prepare handler to the parent's or child's, so that the child never
  // finds the cross-thread queue half-written.
  void lock_for_fork() noexcept { async_mutex_.lock(); }
  void unlock_after_fork() noexcept { async_mutex_.unlock(); }
  // In the child, on this thread, from reinit(): a fresh epoll set and
  // eventfd for the loop, and the count of work only others owed dropped.
  void after_fork_in_child() noexcept;

  [[nodiscard]] std::string describe_blocked() const;
  // One line per greenlet of this thread (run_info.cpp): on this thread only.
  [[nodiscard]] std::string describe_greenlets() const;

  // Every watcher greenev starts (not the hub's own async) is counted in
  // hub::active_watchers() from start until stop() or until its callback
  // called fired(). An expired one-shot timer, and an io watcher libev
  // stopped with EV_ERROR, are inactive but still pending until their
  // callback runs, and a callback that throws into a greenlet (timeout) may
  // unwind the watcher's owner first: stop() then must still take the watcher
  // off libev's pending list (the ev_*_stop functions do), or libev later
  // calls back into freed memory.
  // `after` is from now (the loop's clock is refreshed first: a stale clock
  // would fire timers early); a started timer is restarted.
  void start(ev_timer& timer, std::chrono::nanoseconds after) noexcept;
  void start(ev_io& io) noexcept {
    ev_io_start(loop_, &io);
    ++watchers_;
  }
  void start(ev_signal& signal) noexcept {
    ev_signal_start(loop_, &signal);
    ++watchers_;
  }
  void start(ev_idle& idle) noexcept {
    ev_idle_start(loop_, &idle);
    ++watchers_;
  }
  void stop(ev_idle& idle) noexcept {
    if (!ev_is_active(&idle) && !ev_is_pending(&idle)) return;
    ev_idle_stop(loop_, &idle);
    --watchers_;
  }
  void stop(ev_timer& timer) noexcept {
    if (!ev_is_active(&timer) && !ev_is_pending(&timer)) return;
    ev_timer_stop(loop_, &timer);
    --watchers_;
  }
  void stop(ev_io& io) noexcept {
    if (!ev_is_active(&io) && !ev_is_pending(&io)) return;
    ev_io_stop(loop_, &io);
    --watchers_;
  }
  void stop(ev_signal& signal) noexcept {
    if (!ev_is_active(&signal) && !ev_is_pending(&signal)) return;
    ev_signal_stop(loop_, &signal);
    --watchers_;
  }
  // First thing in the callback of a counted one-shot timer: it is inactive now.
  void fired(ev_timer&) noexcept { --watchers_; }
  // First thing in the callback of a counted io watcher: active, or stopped by
  // libev (EV_ERROR), counted either way.
  void fired(ev_io& io) noexcept {
    if (ev_is_active(&io)) ev_io_stop(loop_, &io);
    --watchers_;
  }
  [[nodiscard]] std::size_t active_watchers() const noexcept { return watchers_; }
  [[nodiscard]] std::size_t pending_callbacks() const noexcept { return ready_.size(); }

  // Queues fn() from any thread; wakes the hub.
  void run_threadsafe(std::function<void()> fn);

  // Things holding watchers or references that must be released if the hub
  // goes away first (tasks waiting for their spawn_later timer).
  void add_pending_cleanup(void* object, ready_discard cleanup) { pending_cleanup_.emplace(object, cleanup); }
  // True if `object` was registered (and is not anymore).
  bool drop_pending_cleanup(void* object) noexcept { return pending_cleanup_.erase(object) != 0; }

  [[nodiscard]] struct ev_loop* loop() const noexcept { return loop_; }
  [[nodiscard]] hub& facade() noexcept { return facade_; }
  [[nodiscard]] const greenlet& hub_greenlet() const noexcept { return hub_greenlet_; }
  [[nodiscard]] pthread_t thread() const noexcept { return thread_; }
  [[nodiscard]] bool watches_signals() const noexcept { return watches_signals_; }
  // For the monitor thread (relaxed): see polling_ and progress_.
  [[nodiscard]] bool polling() const noexcept { return polling_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t progress() const noexcept { return progress_.load(std::memory_order_relaxed); }

  void resume(waiter& w);

 private:
  void run();
  void run_ready_batch();
  void return_to_closer();
  bool run_loop(int flags);
  bool poll_due() noexcept;
  static void on_async(struct ev_loop* loop, ev_async* w, int revents) noexcept;

  // True while the loop waits in its backend (epoll): the thread is idle,
  // not blocked. Written by this thread, read by the monitor thread.
  std::atomic<bool> polling_{false};
  // Callbacks run so far (each resumes or starts a greenlet, or is one):
  // unchanged while not polling = the hub is not getting to run.
  std::atomic<std::uint64_t> progress_{0};
  pthread_t thread_ = pthread_self();

  struct ev_loop* loop_ = nullptr;
  bool watches_signals_ = false;  // the first hub of the process (signal.cpp)
  greenlet hub_greenlet_;
  const waiter* wake_token_ = nullptr;  // set by the hub right before resuming a waiter
  std::deque<ready_item> ready_;
  std::exception_ptr loop_error_;
  hub facade_{this};

  // Cross-thread callbacks.
  ev_async async_{};
  std::mutex async_mutex_;
  std::vector<std::function<void()>> async_queue_;  // guarded by async_mutex_
  std::atomic<std::size_t> external_work_{0};
  std::size_t foreign_guards_ = 0;  // guarded by async_mutex_; part of external_work_
  std::size_t watchers_ = 0;        // see start()
  std::unordered_map<void*, ready_discard> pending_cleanup_;

  // While the destructor unwinds the thread's greenlets: the greenlet running
  // it, to which the hub returns instead of waiting (return_to_closer).
  greenlet_impl* closer_ = nullptr;
  unsigned batches_since_clock_check_ = 0;
  std::int64_t last_poll_coarse_ns_ = 0;
};

// "function+0xOFFSET (object)" for a code address, via dladdr (run_info.cpp);
// "" for null.
std::string describe_code_address(const void* address);
// One greenlet as run info lists it (run_info.cpp); on its own thread.
std::string describe_greenlet(const greenlet_impl& g, const thread_state& ts, struct ev_loop* loop);

// Starts the blocking monitor if GREENEV_MONITOR=1 (monitor.cpp); checked
// when a hub is created.
void start_monitor_from_environment();

void register_discard(void (*fn)(void*), ready_discard discard);

// The ready-queue callback that starts a spawned task (task.cpp); the hub's
// batch loop runs it inline as begin_task().
void start_task(void* arg);

// The ready-queue callback that resumes a parked waiter.
void resume_waiter(void* arg);

// Callbacks queued by hub::run_callback (heap std::function).
void run_heap_callback(void* arg);
void run_heap_callback_discard(void* arg) noexcept;

// The calling thread's hub, created on first use.
extern __thread hub_impl* current_hub __attribute__((tls_model("initial-exec")));
hub_impl& create_local_hub();
inline hub_impl& local_hub() {
  hub_impl* hub = current_hub;
  return hub != nullptr ? *hub : create_local_hub();
}
// The one "am I in the hub" query for code that must not create a hub: false
// on a thread without one.
inline bool running_in_hub() noexcept {
  const hub_impl* hub = current_hub;
  return hub != nullptr && hub->in_hub();
}

// "<time> <name> failed with <type>: <what>", reported through the error
// reporter (stderr by default).
void print_failure(const std::string& who, const std::exception_ptr& error) noexcept;

// Holds the start queue's reference to `state`, handed to the running task.
// A task killed before it started is not run. Inline in the hub's batch
// loop, so that the switch back after the task ends lands in that loop.
[[gnu::always_inline]] inline void begin_task(task_state& state) {
  if (state.phase_ != task_state::phase::scheduled) {  // killed before it started
    state.release();
    return;
  }
  state.phase_ = task_state::phase::running;
  greenlet_impl* g = state.greenlet_.get();
  prepare_start(g);
  switch_to_impl(g);
}

void on_park_timer_cb(struct ev_loop* loop, ev_timer* timer, int revents) noexcept;

// Returns after the hub resumed `w` (checked); the caller did the rest.
[[gnu::always_inline]] inline void hub_impl::park_in_hub(const waiter& w) {
  switch_to_hub();
  if (wake_token_ != &w) [[unlikely]]
    throw_wrong_wake();
  wake_token_ = nullptr;
}

[[gnu::always_inline]] inline bool hub_impl::park(waiter& w, wait_time timeout) {
  hub_impl& hub = local_hub();
  hub.require_not_in_hub("waiting");
  if (!w.woken_ && timeout.is_poll()) {
    if (w.fifo() != nullptr) w.fifo()->remove(w);
    return false;  // a zero timeout only polls
  }
  ev_timer timer;
  ev_init(&timer, on_park_timer_cb);
  timer.data = &w;
  greenlet_impl* self = w.greenlet_;
  self->hub.wait_what = w.what_;
  self->hub.wait_fd = w.fd_;
  self->hub.wait_until = 0;
  if (!timeout.is_forever()) {
    hub.start(timer, timeout.duration());
    self->hub.wait_until = ev_now(hub.loop_) + ev_timer_remaining(hub.loop_, &timer);
  }
  const scope_exit stop_timer_on_exit([&hub, &timer, self]() noexcept {
    hub.stop(timer);
    self->hub.wait_what = nullptr;
  });
  hub.park_in_hub(w);
  if (w.fifo() != nullptr) w.fifo()->remove(w);
  return w.woken_;
}

}  // namespace greenev::detail
