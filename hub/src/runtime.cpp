// The per-thread runtime: the hub, the fd-wait table and the services of
// the layers above, torn down in one written order.
#include "runtime.hpp"

#include <greenev/hub.hpp>

#include "hub_impl.hpp"

namespace greenev::detail {

__thread fd_wait_table* thread_fd_waits = nullptr;

namespace {

__thread thread_runtime* current_runtime = nullptr;

// Dies with the thread. Touched only in create(), after the greenlet
// layer's thread state exists: thread_locals die in reverse order of
// construction, so the runtime then goes first, while greenlets can still
// be unwound.
struct runtime_owner {
  std::unique_ptr<thread_runtime> runtime;
  runtime_owner() = default;
  runtime_owner(const runtime_owner&) = delete;
  runtime_owner& operator=(const runtime_owner&) = delete;
  ~runtime_owner() {
    // Unwinding may create a fresh runtime (a destructor that sleeps): that
    // one goes too.
    while (runtime) runtime.reset();
  }
};
thread_local runtime_owner tls_runtime;

}  // namespace

thread_runtime& thread_runtime::create() {
  (void)current_greenlet();  // the greenlet layer's thread state first (see runtime_owner)
  std::unique_ptr<thread_runtime> runtime(new thread_runtime);
  thread_fd_waits = &runtime->waits_;
  try {
    runtime->hub_ = std::make_unique<hub_impl>();
  } catch (...) {
    thread_fd_waits = nullptr;
    throw;
  }
  current_hub = runtime->hub_.get();
  current_runtime = runtime.get();
  tls_runtime.runtime = std::move(runtime);
  return *current_runtime;
}

thread_runtime* thread_runtime::find() noexcept {
  return current_runtime;
}

void thread_runtime::destroy() noexcept {
  if (current_runtime != nullptr) tls_runtime.runtime.reset();
}

thread_runtime::~thread_runtime() {
  teardown();
}

// The order, and why:
//  1. Services' before_unwind(), newest first: the resolver shuts its
//     channels down, so that lookups in flight fail with an error their
//     greenlets can still see, and its sockets close through cancel_wait().
//  2. The hub unwinds every greenlet of the thread (greenlet_exit). Their
//     waits end: fd waits unlink from the table (still here), threadpool
//     jobs they wait for are marked as left behind.
//  3. Services are destroyed, newest first. Nobody waits on them now, so a
//     threadpool lets go of a worker stuck in getaddrinfo instead of joining
//     it: a thread (or the process) never hangs at exit on a stuck job.
//  4. The hub: callbacks that never ran are discarded, the loop destroyed.
//  5. The fd-wait table, last: every guard that could unlink from it ran.
void thread_runtime::teardown() noexcept {
  if (torn_down_) return;
  torn_down_ = true;
  for (auto it = services_.rbegin(); it != services_.rend(); ++it) it->second->before_unwind();
  hub_->unwind_greenlets();
  // One at a time, so that a service's destructor may still find older ones.
  while (!services_.empty()) {
    std::unique_ptr<thread_service> service = std::move(services_.back().second);
    services_.pop_back();
    service.reset();
  }
  hub_.reset();
  current_hub = nullptr;
  thread_fd_waits = nullptr;
  if (current_runtime == this) current_runtime = nullptr;
  waits_.clear();
}

thread_service* thread_runtime::find_service(const void* key) const noexcept {
  for (const auto& [service_key, service] : services_) {
    if (service_key == key) return service.get();
  }
  return nullptr;
}

thread_service& thread_runtime::add_service(const void* key, std::unique_ptr<thread_service> service) {
  if (thread_service* existing = find_service(key)) return *existing;
  services_.emplace_back(key, std::move(service));
  return *services_.back().second;
}

void thread_runtime::services_after_fork_in_child() noexcept {
  // By index: a hook may add a service (which then needs no fixing).
  for (std::size_t i = 0, n = services_.size(); i < n; ++i) services_[i].second->after_fork_in_child();
}

thread_service* find_thread_service(const void* key) noexcept {
  thread_runtime* runtime = thread_runtime::find();
  return runtime != nullptr ? runtime->find_service(key) : nullptr;
}

thread_service& add_thread_service(const void* key, std::unique_ptr<thread_service> service) {
  thread_runtime* runtime = thread_runtime::find();
  if (runtime == nullptr) runtime = &thread_runtime::create();
  return runtime->add_service(key, std::move(service));
}

hub_impl& create_local_hub() {
  return thread_runtime::create().hub();
}

}  // namespace greenev::detail

namespace greenev {

void hub::destroy_current() {
  detail::thread_runtime* runtime = detail::thread_runtime::find();
  if (runtime == nullptr) return;
  const detail::thread_state* ts = detail::tls_state;
  if (ts == nullptr || ts->current != ts->main) {
    throw greenlet_error(
        "greenev: hub::destroy_current() must be called from the thread's main greenlet, "
        "outside every spawned greenlet (it unwinds them)");
  }
  detail::thread_runtime::destroy();
}

}  // namespace greenev
