// The threadpool: a job queue under a mutex, workers that post each outcome
// back to the owning hub with run_callback_threadsafe(). Every submitted job
// counts as external work for that hub from submit() until its completion
// callback ran there, so a greenlet waiting on a job alone never gets
// loop_exit. Completion callbacks hold only the job (a shared_ptr), never
// the threadpool, so they may run after it is gone.
#include <greenev/threadpool.hpp>

#include <string>

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
  if (job.error) std::rethrow_exception(job.error);
}

void cancel_when_done(const basic_task& task, std::shared_ptr<job_base> job) {
  task.link([job = std::move(job)](const basic_task&) {
    if (!job->done) job->cancelled.store(true, std::memory_order_release);
  });
}

}  // namespace detail

threadpool::threadpool(std::size_t threads)
    : max_threads_(threads), owner_(std::this_thread::get_id()), hub_(&detail::local_hub()) {
  if (threads == 0) throw std::invalid_argument("greenev: a threadpool needs at least one thread");
}

threadpool::~threadpool() {
  std::deque<std::shared_ptr<detail::job_base>> cancelled;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cancelled.swap(queue_);
  }
  wake_.notify_all();
  for (auto& job : cancelled) {
    job->error = std::make_exception_ptr(
        threadpool_closed("greenev: the threadpool was destroyed before this job started"));
    post(std::move(job));
  }
  // No lock needed: workers never touch workers_, and no job can be submitted now.
  for (std::thread& worker : workers_) worker.join();
}

std::size_t threadpool::thread_count() const {
  std::lock_guard lock(mutex_);
  return workers_.size();
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
    std::lock_guard lock(mutex_);
    if (idle_ <= queue_.size() && workers_.size() < max_threads_) {
      workers_.emplace_back([this] { work(); });  // may throw std::system_error: nothing submitted
    }
    queue_.push_back(std::move(job));
  }
  hub_->add_external_work();
  wake_.notify_one();
}

void threadpool::work() noexcept {
  for (;;) {
    std::shared_ptr<detail::job_base> job;
    {
      std::unique_lock lock(mutex_);
      ++idle_;
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job->run();
    post(std::move(job));
  }
}

void threadpool::post(std::shared_ptr<detail::job_base> job) noexcept {
  // The callback owns the job from here: whatever it holds is released in
  // the hub, never on this thread.
  hub_->facade_.run_callback_threadsafe([job = std::move(job)] { detail::complete(*job); });
}

}  // namespace greenev
