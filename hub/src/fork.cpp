// fork(2): pthread_atfork handlers that keep greenev's locks consistent
// across the fork, and reinit(), which makes the calling thread's hub,
// threadpools and services whole in the child. docs/design.md, "fork".
#include <greenev/fork.hpp>

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <greenev/detail/greenlet_core.hpp>

#include "fork_internal.hpp"
#include "hub_impl.hpp"
#include "runtime.hpp"

namespace greenev::detail {

namespace {

// Set by the child handler, cleared by reinit(): plain data, the child has
// one thread.
bool reinit_pending = false;
// The forking thread's hub, whose cross-thread queue lock the prepare
// handler took (under the thread-state registry's lock: run info posts to a
// hub while it holds that one).
hub_impl* locked_hub = nullptr;

void lock_hub_for_fork() noexcept {
  locked_hub = current_hub;
  if (locked_hub != nullptr) locked_hub->lock_for_fork();
}
void unlock_hub_after_fork() noexcept {
  if (hub_impl* hub = std::exchange(locked_hub, nullptr)) hub->unlock_after_fork();
}

// The order is the locks' own: the monitor takes the registry's lock while
// it holds its own, a threadpool worker posts (the hub's queue lock) while
// it holds its pool's. The greenlet layer's handler runs after this one's
// prepare (it was registered first) and takes the registry's lock, then the
// hub's through the hooks.
void prepare() noexcept {
  lock_monitor_for_fork();
  lock_threadpools_for_fork();
  lock_discarders_for_fork();
  lock_locals_for_fork();
}
void in_parent() noexcept {
  unlock_locals_after_fork();
  unlock_discarders_after_fork();
  unlock_threadpools_after_fork();
  unlock_monitor_in_parent();
}
// Minimal: every lock taken above is released; the rest waits for reinit().
void in_child() noexcept {
  unlock_locals_after_fork();
  unlock_discarders_after_fork();
  unlock_threadpools_after_fork();
  reset_monitor_in_child();
  reinit_pending = true;
}

}  // namespace

void register_hub_fork_handlers() noexcept {
  static const bool registered = [] {
    set_registry_fork_hooks(
        {.prepare = lock_hub_for_fork, .parent = unlock_hub_after_fork, .child = unlock_hub_after_fork});
    ::pthread_atfork(prepare, in_parent, in_child);
    return true;
  }();
  (void)registered;
}

}  // namespace greenev::detail

namespace greenev {

pid_t fork() {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "greenev: fork");
  if (pid == 0) reinit();
  return pid;
}

// The hub first (a new epoll set: the services' sockets and the
// threadpools' completions go through it), then the threadpools, then the
// services, which may use both.
void reinit() noexcept {
  if (!std::exchange(detail::reinit_pending, false)) return;
  detail::thread_runtime* runtime = detail::thread_runtime::find();
  if (runtime != nullptr) runtime->hub().after_fork_in_child();
  detail::threadpools_after_fork_in_child();
  if (runtime != nullptr) runtime->services_after_fork_in_child();
  detail::restart_monitor_after_fork();
}

}  // namespace greenev
