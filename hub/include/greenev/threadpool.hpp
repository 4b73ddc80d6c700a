// greenev/threadpool.hpp — run blocking functions on worker threads while
// the calling greenlet waits cooperatively (gevent.threadpool.ThreadPool).
//
//   greenev::threadpool workers(4);
//   std::string text = workers.apply(read_whole_file, "/etc/hosts");  // others run meanwhile
//   auto later = workers.spawn(compress, std::move(text));            // a task<R>
//
// The function runs on a worker thread; its result or exception comes back
// to the hub through run_callback_threadsafe() (ev_async), and the waiting
// greenlet resumes. While a job is outstanding the hub does not report
// loop_exit. Workers start on demand, up to the given number.
// Threading: a threadpool belongs to the thread that created it: only that
// thread (its hub's) may call apply() or spawn(), and it must destroy the
// threadpool before it exits. The functions run on the workers and must not
// touch that thread's greenlets or hub except through
// hub::run_callback_threadsafe().
// fork (fork.hpp): in the child, the calling thread's threadpools start new
// workers; a job that was running at the fork fails there with
// threadpool_closed, queued jobs run.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

namespace greenev {

/// What apply() (or a threadpool task's get()) throws when the threadpool
/// was destroyed before the job started: the job never ran.
class threadpool_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

class hub_impl;
class waiter;

// One job: written by the worker (result, error) before it posts the
// completion, read in the hub after it; the post's mutex orders the two.
class job_base {
 public:
  job_base() = default;
  job_base(const job_base&) = delete;
  job_base& operator=(const job_base&) = delete;
  virtual ~job_base() = default;

  // On a worker: runs the function unless cancelled, keeps the outcome,
  // then destroys the function and its arguments.
  virtual void run() noexcept = 0;

  std::atomic<bool> cancelled{false};  // nobody waits any more: skip it
  std::exception_ptr error;
  // The hub's thread only:
  bool done = false;
  waiter* waiting = nullptr;
};

template <class R, class Fn>
class job final : public job_base {
 public:
  explicit job(Fn&& fn) : fn_(std::move(fn)) {}
  void run() noexcept override {
    if (!cancelled.load(std::memory_order_acquire)) {
      try {
        if constexpr (std::is_void_v<R>) {
          std::invoke(*fn_);
        } else {
          result.emplace(std::invoke(*fn_));
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
    fn_.reset();
  }
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};

 private:
  std::optional<Fn> fn_;
};

// Waits cooperatively until the job completed, then rethrows its error. If
// the wait ends by an exception (a kill, a timeout), the job is cancelled
// if it has not started and its result is dropped when it arrives.
void wait_for_job(job_base& job);

// Holds a submitted job for a threadpool task.
template <class R, class Job>
class job_ticket {
 public:
  explicit job_ticket(std::shared_ptr<Job> job) noexcept : job_(std::move(job)) {}
  R collect() {
    wait_for_job(*job_);
    if constexpr (!std::is_void_v<R>) return std::move(*job_->result);
  }

 private:
  std::shared_ptr<Job> job_;
};

// Cancels `job` once `task` finished without collecting it (killed before
// it started, or while waiting).
void cancel_when_done(const basic_task& task, std::shared_ptr<job_base> job);

}  // namespace detail

/// A fixed-size set of worker threads. Not copyable or movable.
class threadpool {
 public:
  /// Up to `threads` workers, started when jobs need them. Throws
  /// std::invalid_argument if `threads` is 0. Never switches.
  explicit threadpool(std::size_t threads);
  threadpool(const threadpool&) = delete;
  threadpool& operator=(const threadpool&) = delete;
  /// Jobs not yet started are cancelled: their waiters get
  /// threadpool_closed. Then blocks the thread (it does not switch: other
  /// greenlets wait too) until the running functions someone still waits
  /// for return, and joins the workers. Results of those still reach their
  /// waiters. A function left behind by its caller (who timed out or was
  /// killed) is not waited for: its worker is let go, finishes it and
  /// destroys the result there, touching neither this threadpool nor the
  /// hub. Such a function must not refer to anything that may be gone by
  /// then (capture by value), and may still run while the process exits.
  ~threadpool();

  /// Runs `f(args...)` on a worker and returns its result (arguments are
  /// stored and passed as greenev::spawn() does: moved in, then passed as
  /// rvalues unless f only takes lvalues; destroyed on the worker), or rethrows its exception; other
  /// greenlets run meanwhile. Switches. Throws greenlet_error if called on
  /// another thread than the threadpool's or in the hub (before anything
  /// runs), threadpool_closed if the threadpool was destroyed first, and
  /// std::system_error if no worker thread could be started. If the caller
  /// is killed (or times out) meanwhile, a job not yet started never starts
  /// and a running one's result is dropped when it arrives (see
  /// ~threadpool() for one still running when the threadpool goes).
  template <class F, class... Args>
  auto apply(F&& f, Args&&... args) {
    using result = detail::spawn_result_t<F, Args...>;
    require_can_wait();
    auto job = make_job<result>(std::forward<F>(f), std::forward<Args>(args)...);
    submit(job);
    detail::wait_for_job(*job);
    if constexpr (!std::is_void_v<result>) return std::move(*job->result);
  }

  /// Starts `f(args...)` on a worker now and returns a task (task.hpp) whose
  /// get() waits for its result: gevent's ThreadPool.spawn. Killing the task
  /// cancels the job if it has not started; otherwise its result is dropped.
  /// Never switches. Throws greenlet_error on another thread than the
  /// threadpool's, std::system_error if no worker could be started.
  template <class F, class... Args>
  auto spawn(F&& f, Args&&... args) {
    using result = detail::spawn_result_t<F, Args...>;
    require_owner_thread("spawn");
    auto job = make_job<result>(std::forward<F>(f), std::forward<Args>(args)...);
    submit(job);
    using ticket = detail::job_ticket<result, typename decltype(job)::element_type>;
    auto waiting = greenev::spawn([held = ticket(job)]() mutable -> result { return held.collect(); });
    detail::cancel_when_done(waiting, std::move(job));
    return waiting;
  }

  /// The most workers it runs (the constructor's argument).
  [[nodiscard]] std::size_t size() const noexcept { return max_threads_; }
  /// Workers started so far. Never switches.
  [[nodiscard]] std::size_t thread_count() const;

 private:
  template <class R, class F, class... Args>
  static auto make_job(F&& f, Args&&... args) {
    auto call = [f = std::forward<F>(f), ... args = std::forward<Args>(args)]() mutable -> R {
      if constexpr (detail::spawn_moves_v<F, Args...>) {
        return std::invoke(std::move(f), std::move(args)...);
      } else {
        return std::invoke(f, args...);
      }
    };
    return std::make_shared<detail::job<R, decltype(call)>>(std::move(call));
  }
  void require_owner_thread(const char* what) const;
  void require_can_wait() const;
  void submit(std::shared_ptr<detail::job_base> job);

 public:
  // The queue and the workers: shared with the workers, so that one let go
  // by the destructor can finish without this object (threadpool.cpp).
  struct shared_state;

 private:
  const std::size_t max_threads_;
  const std::thread::id owner_;
  detail::hub_impl* const hub_;
  const std::shared_ptr<shared_state> shared_;
};

}  // namespace greenev
