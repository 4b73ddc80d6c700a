// The hub: a greenlet that runs queued callbacks and the libev loop, and the
// park/wake protocol greenlets use to wait in it.
#include "hub_impl.hpp"

#include "fork_internal.hpp"

#include <greenev/error_reporter.hpp>

#include <cxxabi.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <typeinfo>
#include <utility>

namespace greenev::detail {

namespace {

// How often a busy hub (callbacks always queued, e.g. a sleep(0) loop) still
// polls IO and timers.
constexpr std::int64_t busy_poll_interval_ns = 2'000'000;

std::int64_t coarse_now_ns() noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> text(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                              std::free);
  return status == 0 && text ? std::string(text.get()) : std::string(name);
}

}  // namespace

namespace {

using discard_table = std::vector<std::pair<void (*)(void*), ready_discard>>;

// Grown by the first spawn of each kind on any thread, read by every hub's
// destructor: both under this mutex.
std::mutex discarders_mutex;
discard_table& discarders() {
  static discard_table table;
  return table;
}

}  // namespace

void lock_discarders_for_fork() noexcept {
  discarders_mutex.lock();
}
void unlock_discarders_after_fork() noexcept {
  discarders_mutex.unlock();
}

void register_discard(void (*fn)(void*), ready_discard discard) {
  const std::lock_guard lock(discarders_mutex);
  for (const auto& entry : discarders()) {
    if (entry.first == fn) return;
  }
  discarders().emplace_back(fn, discard);
}

void run_heap_callback(void* arg) {
  std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(arg));
  (*fn)();
}

void run_heap_callback_discard(void* arg) noexcept {
  delete static_cast<std::function<void()>*>(arg);
}

void print_failure(const std::string& who, const std::exception_ptr& error) noexcept {
  try {
    std::string type = "unknown exception";
    std::string what;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      type = demangled(typeid(e).name());
      what = e.what();
    } catch (...) {
      if (const std::type_info* t = abi::__cxa_current_exception_type()) type = demangled(t->name());
    }
    char stamp[32] = "?";
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    if (::gmtime_r(&now, &utc) != nullptr) std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
    report_error(std::string(stamp) + " " + who + " failed with " + type + ": " + what);
  } catch (...) {
    report_error("greenev: a greenlet failed (and describing it failed too)");
  }
}

__thread hub_impl* current_hub = nullptr;

namespace {
// Whether a hub watches the process's signals; released with that hub.
std::atomic<bool> signals_taken{false};
}  // namespace

hub_impl::hub_impl() {
  register_hub_fork_handlers();
  register_discard(run_heap_callback, run_heap_callback_discard);
  // Never libev's default loop: it installs a SIGCHLD handler that reaps
  // every child of the process, so the program's own waitpid() and pclose()
  // would fail with ECHILD. libev binds each signal to one loop: the first
  // hub of the process (normally the main thread's) is the one that watches
  // signals.
  loop_ = ev_loop_new(EVFLAG_AUTO);
  if (loop_ == nullptr) throw std::runtime_error("greenev: libev could not create an event loop");
  watches_signals_ = !signals_taken.exchange(true);
  ev_set_userdata(loop_, this);
  // The blocking monitor tells an idle hub (waiting in epoll) from a blocked one.
  ev_set_loop_release_cb(
      loop_,
      [](struct ev_loop* loop) noexcept { static_cast<hub_impl*>(ev_userdata(loop))->polling_.store(true); },
      [](struct ev_loop* loop) noexcept {
        static_cast<hub_impl*>(ev_userdata(loop))->polling_.store(false);
      });
  ev_async_init(&async_, &hub_impl::on_async);
  ev_async_start(loop_, &async_);
  ev_unref(loop_);  // the hub's own watcher must not keep the loop alive
  // The parent is the thread's main greenlet (not whichever greenlet happened
  // to touch greenev first): loop_exit goes there, and it outlives the hub.
  tls_state->main->add_ref();
  const greenlet main = greenlet::adopt(tls_state->main);
  hub_greenlet_ = greenlet([this] { run(); }, main, greenlet_options{.name = "hub"});
  pin_child_references(hub_greenlet_.get());  // the parent of every task: no atomics per spawn
  set_diagnostic_hub(this);
  start_monitor_from_environment();
}

// Greenlets still waiting hold watchers in this loop: unwind them (and the
// hub greenlet itself) before the loop goes away. One that waits again
// while being unwound must not keep the thread here: see return_to_closer.
void hub_impl::unwind_greenlets() noexcept {
  closer_ = tls_state != nullptr ? tls_state->current : nullptr;
  kill_all_active_greenlets();
  for (auto& [object, cleanup] : pending_cleanup_) cleanup(object);
  pending_cleanup_.clear();
}

hub_impl::~hub_impl() {
  set_diagnostic_hub(nullptr);  // first: run info and the monitor stop looking at it
  unwind_greenlets();           // again: the runtime's services may have spawned since
  if (!ready_.empty()) {        // callbacks that will never run
    // A copy: a discard may register another (releasing what it owns may
    // touch a kind of callback this process has not queued yet).
    discard_table table;
    {
      const std::lock_guard lock(discarders_mutex);
      table = discarders();
    }
    while (!ready_.empty()) {
      const ready_item item = ready_.front();
      ready_.pop_front();
      for (const auto& [fn, discard] : table) {
        if (item.fn == fn) discard(item.arg);
      }
    }
  }
  // A thread still inside run_callback_threadsafe holds this lock.
  const std::lock_guard lock(async_mutex_);
  ev_ref(loop_);
  ev_async_stop(loop_, &async_);
  ev_loop_destroy(loop_);
  if (watches_signals_) signals_taken.store(false);  // the next hub may take them
  unpin_child_references(hub_greenlet_.get());       // before the member drops its handle
}

void hub_impl::throw_blocking_in_hub(const char* what) {
  throw greenlet_error(std::string("greenev: ") + what +
                       " would block the hub itself (called from a loop callback); "
                       "spawn a greenlet for blocking work");
}

void hub_impl::report_hub_error(const char* where) noexcept {
  print_failure(std::string("hub (") + where + ")", std::current_exception());
}

// Resuming a parked greenlet is by far the most common callback: done
// inline, so that the switch back into the hub lands here without returning
// through another frame (each return after a switch is mispredicted).
inline void hub_impl::resume(waiter& w) {
  w.scheduled_ = nullptr;
  wake_token_ = &w;
  switch_to_impl(w.greenlet_);
}

void resume_waiter(void* arg) {
  current_hub->resume(*static_cast<waiter*>(arg));
}

// Inline in run(): the switch back into the hub after a task ran lands here,
// and returning from here would be one more mispredict per switch.
[[gnu::always_inline]] inline void hub_impl::run_ready_batch() {
  for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
    const ready_item item = ready_.front();
    ready_.pop_front();
    if (item.fn == nullptr) continue;
    // Progress for the blocking monitor: a relaxed load and store, no locked
    // instruction (only this thread writes it); a greenlet switch pays nothing.
    progress_.store(progress_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    try {
      if (item.fn == resume_waiter) {
        resume(*static_cast<waiter*>(item.arg));
      } else if (item.fn == start_task) {
        begin_task(*static_cast<task_state*>(item.arg));
      } else {
        item.fn(item.arg);
      }
    } catch (const greenlet_exit&) {
      throw;  // the hub itself is being killed
    } catch (...) {
      report_hub_error("a callback");
    }
  }
}

inline bool hub_impl::poll_due() noexcept {
  if ((++batches_since_clock_check_ & 31u) != 0) return false;
  const std::int64_t now = coarse_now_ns();
  if (now - last_poll_coarse_ns_ < busy_poll_interval_ns) return false;
  last_poll_coarse_ns_ = now;
  return true;
}

// One iteration: run the callbacks queued so far, then poll the loop —
// without blocking if more callbacks are queued (and then only every
// busy_poll_interval_ns), blocking otherwise. When nothing is queued and the
// loop holds nothing that could ever wake anyone, the hub's parent (the
// thread's main greenlet) gets loop_exit.
void hub_impl::run() {
  for (;;) {
    run_ready_batch();
    if (!ready_.empty()) {
      if (poll_due()) {
        if (closer_ != nullptr) [[unlikely]]
          return_to_closer();
        run_loop(EVRUN_NOWAIT);
      }
      continue;
    }
    if (closer_ != nullptr) [[unlikely]] {
      run_loop(EVRUN_NOWAIT);
      if (ready_.empty()) return_to_closer();
      continue;
    }
    trim_idle_stacks();  // about to block: a good time for system calls
    if (run_loop(EVRUN_ONCE) || !ready_.empty()) continue;
    if (external_work_.load(std::memory_order_relaxed) > 0) {
      ev_ref(loop_);  // another thread owes us a callback: wait for it
      run_loop(EVRUN_ONCE);
      ev_unref(loop_);
      continue;
    }
    hub_greenlet_.parent().throw_into(std::make_exception_ptr(loop_exit(describe_blocked())));
  }
}

// The thread is exiting and the hub's destructor is unwinding greenlets. The
// one being unwound went back to waiting: it caught greenlet_exit (or blocks
// in a destructor). What is ready still runs, but the hub never waits, and a
// greenlet that keeps it busy (a sleep(0) loop) gets 2 ms: control then goes
// back to the destructor, which reports the greenlet by name and leaks it
// (its stack still has live frames), so the program can exit.
void hub_impl::return_to_closer() {
  switch_to_impl(closer_);
}

bool hub_impl::run_loop(int flags) {
  const bool alive = ev_run(loop_, flags) != 0;
  if (loop_error_) std::rethrow_exception(std::exchange(loop_error_, nullptr));
  return alive;
}

void hub_impl::run_threadsafe(std::function<void()> fn) {
  add_external_work();  // before the hub can see (and finish) it
  // Signalled under the lock: once the hub has run `fn`, its thread may
  // destroy the hub (the destructor takes this lock first).
  std::lock_guard lock(async_mutex_);
  async_queue_.push_back(std::move(fn));
  ev_async_send(loop_, &async_);
}

void hub_impl::add_foreign_guard() noexcept {
  const std::lock_guard lock(async_mutex_);
  ++foreign_guards_;
  add_external_work();
}

// From any thread. On another thread than the hub's, the release reaches the
// count through a callback, which wakes the hub (it may be waiting in its
// loop because of this guard); queued under the same lock as the foreign
// count changes, so that a fork sees both or neither.
void hub_impl::release_foreign_guard() noexcept {
  const bool here = pthread_equal(thread_, pthread_self());
  std::function<void()> release;
  if (!here) {
    try {
      release = [this] { finish_external_work(); };
    } catch (...) {
    }
  }
  const std::lock_guard lock(async_mutex_);
  --foreign_guards_;
  if (here || !release) {
    finish_external_work();
    return;
  }
  try {
    async_queue_.push_back(std::move(release));
  } catch (...) {  // no memory: released directly, seen at the hub's next wake-up
    finish_external_work();
    return;
  }
  add_external_work();  // the callback's own count, as run_threadsafe
  ev_async_send(loop_, &async_);
}

void hub_impl::after_fork_in_child() noexcept {
  ev_loop_fork(loop_);  // the next iteration makes a new epoll set and wake-up fd
  polling_.store(false, std::memory_order_relaxed);
  // Work guards held by threads the child does not have will never be
  // released; callbacks already queued by other threads still run here.
  external_work_.fetch_sub(std::exchange(foreign_guards_, 0), std::memory_order_relaxed);
  if (!async_queue_.empty()) ev_feed_event(loop_, &async_, EV_ASYNC);
}

void hub_impl::on_async(struct ev_loop* loop, ev_async*, int) noexcept {
  auto* self = static_cast<hub_impl*>(ev_userdata(loop));
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(self->async_mutex_);
    batch.swap(self->async_queue_);
  }
  self->guard([&] {
    for (auto& fn : batch) {
      self->facade_.run_callback(std::move(fn));
      self->finish_external_work();
    }
  });
}

std::string hub_impl::describe_blocked() const {
  std::string text =
      "greenev: this operation would block forever: the hub's loop has no active watchers "
      "and no callbacks queued";
  const std::size_t others = active_greenlet_count() - 1;  // minus the hub
  if (others > 0) {
    text += "; " + std::to_string(others) + " other greenlet" + (others == 1 ? " is" : "s are") +
            " suspended with nothing to wake " + (others == 1 ? "it" : "them");
  }
  // The same lines as run info: who waits on what (nothing can wake them).
  text += "\n" + describe_greenlets();
  return text;
}

void hub_impl::start(ev_timer& timer, std::chrono::nanoseconds after) noexcept {
  stop(timer);
  ev_now_update(loop_);
  ev_timer_set(&timer, std::chrono::duration<double>(after).count(), 0.0);
  ev_timer_start(loop_, &timer);
  ++watchers_;
}

// ---- waiters ---------------------------------------------------------------

void schedule_wake(waiter& w) noexcept {
  w.woken_ = true;
  if (w.scheduled_ != nullptr) return;
  w.scheduled_ = local_hub().push(resume_waiter, &w);
}

void on_park_timer(waiter& w) noexcept {
  w.timed_out_ = true;
  if (w.scheduled_ == nullptr) w.scheduled_ = current_hub->push(resume_waiter, &w);
}

void on_park_timer_cb(struct ev_loop* loop, ev_timer* timer, int) noexcept {
  static_cast<hub_impl*>(ev_userdata(loop))->fired(*timer);
  on_park_timer(*static_cast<waiter*>(timer->data));
}

void hub_impl::throw_wrong_wake() {
  throw greenlet_error(
      "greenev: a greenlet waiting in the hub was switched to by something other than "
      "its waker (use the hub's primitives, not switch_to, to wake waiting greenlets)");
}

bool park(waiter& w, wait_time timeout) {
  return hub_impl::park(w, timeout);
}

void sleep_waiting(wait_time duration) {
  waiter w("sleep");
  hub_impl::park(w, duration);
}

// sleep(0): queue our own wake-up and park, all in one frame.
void sleep_yield() {
  hub_impl& hub = local_hub();
  hub.require_not_in_hub("sleep");
  waiter w("sleep(0)");
  w.woken_ = true;
  w.scheduled_ = hub.push(resume_waiter, &w);
  hub.park_in_hub(w);
}

}  // namespace greenev::detail

namespace greenev {

hub& hub::current() {
  return detail::local_hub().facade();
}

const greenlet& hub::hub_greenlet() const noexcept {
  return impl_->hub_greenlet();
}

void hub::run_callback(std::function<void()> fn) {
  if (!fn) throw std::invalid_argument("greenev: hub::run_callback: an empty function");
  auto owned = std::make_unique<std::function<void()>>(std::move(fn));
  impl_->push(detail::run_heap_callback, owned.get());
  owned.release();
}

void hub::run_callback_threadsafe(std::function<void()> fn) {
  if (!fn) throw std::invalid_argument("greenev: hub::run_callback_threadsafe: an empty function");
  impl_->run_threadsafe(std::move(fn));
}

work_guard::work_guard(hub& h) noexcept
    : impl_(&h.impl()), foreign_(!pthread_equal(impl_->thread(), pthread_self())) {
  if (foreign_) {
    impl_->add_foreign_guard();
  } else {
    impl_->add_external_work();
  }
}

work_guard::work_guard(work_guard&& other) noexcept
    : impl_(std::exchange(other.impl_, nullptr)), foreign_(other.foreign_) {}

work_guard& work_guard::operator=(work_guard&& other) noexcept {
  if (this != &other) {
    reset();
    impl_ = std::exchange(other.impl_, nullptr);
    foreign_ = other.foreign_;
  }
  return *this;
}

work_guard::~work_guard() {
  reset();
}

void work_guard::reset() noexcept {
  detail::hub_impl* impl = std::exchange(impl_, nullptr);
  if (impl == nullptr) return;
  if (foreign_) {
    impl->release_foreign_guard();
    return;
  }
  if (pthread_equal(impl->thread(), pthread_self())) {
    impl->finish_external_work();  // the hub is not blocked: we are running on its thread
    return;
  }
  // The hub may be asleep in its loop, held open by this very guard: the
  // release is made in a callback, which wakes it and keeps the count
  // consistent with what the hub sees.
  try {
    impl->facade().run_callback_threadsafe([impl] { impl->finish_external_work(); });
  } catch (...) {
    impl->finish_external_work();
  }
}

std::size_t hub::active_watchers() const noexcept {
  return impl_->active_watchers();
}

std::size_t hub::pending_callbacks() const noexcept {
  return impl_->pending_callbacks();
}

}  // namespace greenev
