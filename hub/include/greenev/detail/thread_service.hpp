// Private: per-thread state that a layer above the hub (net's resolver)
// keeps in the thread's runtime, so that it is torn down in the runtime's
// written order rather than whenever its own thread_local happens to die.
//
//   struct channels : detail::thread_service { ... };
//   channels& mine = detail::thread_service_of<channels>();  // made on first use
//
// The order, at thread exit or hub::destroy_current() (docs/design.md, "The
// per-thread runtime"): every service's before_unwind(), newest first; the
// thread's greenlets are unwound; every service is destroyed, newest first;
// then the hub's loop and the fd-wait table go. A service may use the hub
// (cancel_wait, run_callback) in both steps but must not switch. After a
// fork, greenev::reinit() calls after_fork_in_child() on the calling
// thread's services, oldest first.
#pragma once

#include <memory>

namespace greenev::detail {

class thread_service {
 public:
  thread_service() = default;
  thread_service(const thread_service&) = delete;
  thread_service& operator=(const thread_service&) = delete;
  // Runs after every greenlet of the thread was unwound: nothing waits on
  // the service any more, so it need not wait for anything either.
  virtual ~thread_service() = default;
  // Runs before the thread's greenlets are unwound: the place to wake the
  // service's waiters with an error instead of leaving them to be killed.
  virtual void before_unwind() noexcept {}
  // Runs in a forked child, on the thread that called fork(), from
  // greenev::reinit() (after the hub and the thread's threadpools were made
  // whole again): the place to drop what the child shares with the parent
  // (sockets) or what lived on threads the child does not have. May use the
  // hub; must not switch.
  virtual void after_fork_in_child() noexcept {}
};

// The calling thread's service under `key`, or null. Never creates the runtime.
thread_service* find_thread_service(const void* key) noexcept;
// Adds `service` under `key` to the calling thread's runtime (created if
// need be) and returns it.
thread_service& add_thread_service(const void* key, std::unique_ptr<thread_service> service);

template <class Service>
inline constexpr char thread_service_key = 0;

// The calling thread's Service, default-constructed on first use.
template <class Service>
Service& thread_service_of() {
  const void* key = &thread_service_key<Service>;
  if (thread_service* found = find_thread_service(key)) return static_cast<Service&>(*found);
  return static_cast<Service&>(add_thread_service(key, std::make_unique<Service>()));
}

}  // namespace greenev::detail
