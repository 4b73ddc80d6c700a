// Private: the per-thread runtime — everything greenev keeps per thread
// above the greenlet layer, in one object that says in which order it goes.
// docs/design.md, "The per-thread runtime".
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include <greenev/detail/thread_service.hpp>

#include "fd_waits.hpp"

namespace greenev::detail {

class hub_impl;

class thread_runtime {
 public:
  // Creates the calling thread's runtime (the thread has none): the
  // greenlet layer's thread state first, then the fd-wait table, then the
  // hub. Services come later, on first use.
  static thread_runtime& create();
  // The calling thread's runtime, or null. Never creates one.
  static thread_runtime* find() noexcept;
  // Tears the calling thread's runtime down now (see teardown()); the next
  // greenev call on the thread makes a fresh one. Does nothing without one.
  static void destroy() noexcept;

  thread_runtime(const thread_runtime&) = delete;
  thread_runtime& operator=(const thread_runtime&) = delete;
  ~thread_runtime();

  [[nodiscard]] hub_impl& hub() noexcept { return *hub_; }
  [[nodiscard]] thread_service* find_service(const void* key) const noexcept;
  thread_service& add_service(const void* key, std::unique_ptr<thread_service> service);
  // greenev::reinit(): every service's after_fork_in_child(), oldest first.
  void services_after_fork_in_child() noexcept;

 private:
  thread_runtime() = default;
  void teardown() noexcept;

  // Declared in the reverse of their teardown; teardown() spells it out.
  fd_wait_table waits_;
  std::unique_ptr<hub_impl> hub_;
  std::vector<std::pair<const void*, std::unique_ptr<thread_service>>> services_;  // oldest first
  bool torn_down_ = false;
};

}  // namespace greenev::detail
