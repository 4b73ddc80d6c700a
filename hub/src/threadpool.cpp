// The threadpool: a job queue under a mutex, workers that post each outcome
// back to the owning hub with run_callback_threadsafe(). Every submitted job
// counts as external work for that hub from submit() until its completion
// callback ran there, so a greenlet waiting on a job alone never gets
// loop_exit. Completion callbacks hold only the job (a shared_ptr), never
// the threadpool, so they may run after it is gone. Workers hold the shared
// state, never the threadpool: the destructor lets go of a worker whose job
// nobody waits for (a libc getaddrinfo stuck for minutes must not hold up
// the thread's or the process's exit), and that worker then never touches
// the hub, which may be gone by the time its function returns.
#include <greenev/threadpool.hpp>

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <greenev/error_reporter.hpp>

#include "fork_internal.hpp"
#include "hub_impl.hpp"

namespace greenev {

namespace detail {

namespace {

// In the hub: the job's outcome is visible now (the post's mutex).
void complete(job_base& job) noexcept {
  local_hub().finish_external_work();
  job.done = true;
  if (job.waiting != nullptr) schedule_wake(*job.waiting);
}

}  // namespace

void wait_for_job(job_base& job) {
  if (!job.done) {
    waiter w("threadpool job");
    job.waiting = &w;
    struct detach {
      job_base& job;
      ~detach() {
        job.waiting = nullptr;
        if (!job.done) job.cancelled.store(true, std::memory_order_release);
      }
    } leave{job};
    park(w);
  }
  // Moved out, not copied: the exception then lives and dies on this thread.
  // A copy left in the job would be freed by whichever side drops the job
  // last — perhaps the worker, after this thread read the exception, ordered
  // only by libstdc++'s exception_ptr count, which TSan cannot see.
  if (job.error) std::rethrow_exception(std::exchange(job.error, nullptr));
}

void cancel_when_done(const basic_task& task, std::shared_ptr<job_base> job) {
  task.link([job = std::move(job)](const basic_task&) {
    if (!job->done) job->cancelled.store(true, std::memory_order_release);
  });
}

}  // namespace detail

struct threadpool::shared_state {
  struct worker {
    std::thread thread;
    std::shared_ptr<detail::job_base> running;  // guarded by mutex
    bool let_go = false;                        // guarded by mutex: detached, drops its job
  };

  shared_state(detail::hub_impl* target, std::size_t threads) : hub(target), max_threads(threads) {}

  static void work(const std::shared_ptr<shared_state>& shared, worker* self) noexcept;
  // Starts one more worker; called with mutex held. Throws std::system_error.
  void start_worker(const std::shared_ptr<shared_state>& self);
  // In fork's child, on the owner thread (see threadpools_after_fork_in_child).
  void after_fork_in_child(const std::shared_ptr<shared_state>& self) noexcept;

  detail::hub_impl* const hub;  // used only by workers the destructor joins
  const std::size_t max_threads;
  const pthread_t owner = pthread_self();
  std::weak_ptr<shared_state> self;  // for the fork registry, which holds plain pointers
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<detail::job_base>> queue;  // guarded by mutex
  std::vector<std::unique_ptr<worker>> workers;         // guarded by mutex
  std::size_t idle = 0;                                 // guarded by mutex
  bool stopping = false;                                // guarded by mutex
};

namespace {

// Every live threadpool of the process, for fork(2): the prepare handler
// takes this lock, then each threadpool's, so that the child finds every
// queue whole and no lock held by a worker it does not have.
struct pool_registry {
  std::mutex mutex;
  std::vector<threadpool::shared_state*> pools;  // guarded by mutex
};
pool_registry& registry() {
  static auto* r = new pool_registry;  // never destroyed: usable at exit
  return *r;
}

void post(detail::hub_impl& hub, std::shared_ptr<detail::job_base> job) noexcept {
  // The callback owns the job from here: whatever it holds is released in
  // the hub, never on this thread.
  hub.facade().run_callback_threadsafe([job = std::move(job)] { detail::complete(*job); });
}

}  // namespace

void threadpool::shared_state::work(const std::shared_ptr<shared_state>& shared, worker* self) noexcept {
  for (;;) {
    std::shared_ptr<detail::job_base> job;
    {
      std::unique_lock lock(shared->mutex);
      ++shared->idle;
      shared->wake.wait(lock, [&] { return shared->stopping || !shared->queue.empty(); });
      --shared->idle;
      if (shared->queue.empty()) return;  // stopping
      job = std::move(shared->queue.front());
      shared->queue.pop_front();
      self->running = job;
    }
    job->run();
    std::lock_guard lock(shared->mutex);
    // Let go: nobody waits for the result, and the hub may be gone. The
    // destructor already gave back the job's external work.
    if (self->let_go) {
      self->running.reset();
      return;
    }
    // Posted under the lock: a fork sees the job either running (its
    // child fails it) or posted, never in between and lost.
    post(*shared->hub, std::move(job));
    self->running.reset();
  }
}

void threadpool::shared_state::start_worker(const std::shared_ptr<shared_state>& shared) {
  workers.push_back(std::make_unique<worker>());
  try {
    workers.back()->thread = std::thread(&shared_state::work, shared, workers.back().get());
  } catch (...) {
    workers.pop_back();
    throw;  // std::system_error
  }
}

// The workers do not exist in the child. Their std::thread objects are
// overwritten, not destroyed (destroying a joinable one terminates; join or
// detach would act on a thread of another process), and so are the lock and
// the condition variable, which count those workers as waiters. A job a
// worker was running fails; queued ones run on new workers.
void threadpool::shared_state::after_fork_in_child(const std::shared_ptr<shared_state>& shared) noexcept {
  ::new (static_cast<void*>(&mutex)) std::mutex;
  ::new (static_cast<void*>(&wake)) std::condition_variable;
  std::vector<std::shared_ptr<detail::job_base>> lost;
  for (const auto& w : workers) {
    ::new (static_cast<void*>(&w->thread)) std::thread;
    if (w->running && !w->let_go) lost.push_back(std::move(w->running));
  }
  workers.clear();
  idle = 0;
  for (auto& job : lost) {
    job->error = std::make_exception_ptr(
        threadpool_closed("greenev: threadpool: the worker thread running this job did not survive fork()"));
    // On the hub's thread, with its count still held by the job: complete()
    // runs as the post's callback would have.
    hub->facade().run_callback([job = std::move(job)] { detail::complete(*job); });
  }
  try {
    while (workers.size() < std::min(queue.size(), max_threads)) start_worker(shared);
  } catch (...) {
    detail::report_error(
        "greenev: threadpool: no worker thread could be started after fork(); queued jobs wait for the "
        "next submit");
  }
}

threadpool::threadpool(std::size_t threads)
    : max_threads_(threads),
      owner_(std::this_thread::get_id()),
      hub_(&detail::local_hub()),
      shared_(std::make_shared<shared_state>(hub_, threads)) {
  if (threads == 0) throw std::invalid_argument("greenev: a threadpool needs at least one thread");
  detail::register_hub_fork_handlers();
  shared_->self = shared_;
  const std::lock_guard lock(registry().mutex);
  registry().pools.push_back(shared_.get());
}

threadpool::~threadpool() {
  {
    const std::lock_guard lock(registry().mutex);
    std::erase(registry().pools, shared_.get());
  }
  std::deque<std::shared_ptr<detail::job_base>> cancelled;
  std::vector<std::thread> joined;
  std::size_t let_go = 0;
  {
    std::lock_guard lock(shared_->mutex);
    shared_->stopping = true;
    cancelled.swap(shared_->queue);
    // A running job is left behind once its waiter gave up (cancelled); the
    // worker decides under this lock whether it posts, so each job is
    // either posted or let go, never both.
    for (const auto& worker : shared_->workers) {
      if (worker->running && worker->running->cancelled.load(std::memory_order_acquire)) {
        worker->let_go = true;
        worker->thread.detach();
        ++let_go;
      } else {
        joined.push_back(std::move(worker->thread));
      }
    }
  }
  shared_->wake.notify_all();
  for (; let_go > 0; --let_go) hub_->finish_external_work();
  for (auto& job : cancelled) {
    job->error = std::make_exception_ptr(
        threadpool_closed("greenev: the threadpool was destroyed before this job started"));
    post(*hub_, std::move(job));
  }
  for (std::thread& worker : joined) worker.join();
}

std::size_t threadpool::thread_count() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->workers.size();
}

void threadpool::require_owner_thread(const char* what) const {
  if (std::this_thread::get_id() != owner_) {
    throw greenlet_error(std::string("greenev: threadpool::") + what +
                         " called on a thread that does not own the threadpool; only the thread "
                         "that created it (whose hub receives the results) may use it");
  }
}

void threadpool::require_can_wait() const {
  require_owner_thread("apply");
  hub_->require_not_in_hub("threadpool::apply");
}

void threadpool::submit(std::shared_ptr<detail::job_base> job) {
  {
    std::lock_guard lock(shared_->mutex);
    auto& workers = shared_->workers;
    if (shared_->idle <= shared_->queue.size() && workers.size() < max_threads_)
      shared_->start_worker(shared_);  // throws std::system_error: nothing submitted
    shared_->queue.push_back(std::move(job));
  }
  hub_->add_external_work();
  shared_->wake.notify_one();
}

namespace detail {

void lock_threadpools_for_fork() noexcept {
  registry().mutex.lock();
  for (threadpool::shared_state* pool : registry().pools) pool->mutex.lock();
}

void unlock_threadpools_after_fork() noexcept {
  for (threadpool::shared_state* pool : registry().pools) pool->mutex.unlock();
  registry().mutex.unlock();
}

void threadpools_after_fork_in_child() noexcept {
  std::vector<std::shared_ptr<threadpool::shared_state>> mine;
  {
    const std::lock_guard lock(registry().mutex);
    for (threadpool::shared_state* pool : registry().pools) {
      if (!pthread_equal(pool->owner, pthread_self())) continue;  // another thread's: unusable here
      if (auto held = pool->self.lock()) mine.push_back(std::move(held));
    }
  }
  for (const auto& pool : mine) pool->after_fork_in_child(pool);
}

}  // namespace detail

}  // namespace greenev
