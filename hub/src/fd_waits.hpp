// Private: the per-thread table of fd waits (io.cpp), kept by the thread's
// runtime so that it outlives every wait the hub unwinds at teardown.
#pragma once

#include <ev.h>

#include <deque>

#include <greenev/detail/intrusive_fifo.hpp>
#include <greenev/detail/waiter.hpp>

namespace greenev::detail {

// How a wait ended badly, shared by the watchers of one wait (poll has several).
struct wait_failure {
  int fd = -1;             // the fd that failed, -1 if none
  bool cancelled = false;  // cancel_wait() (closed by us) rather than refused by epoll
};

// One watcher of one wait, linked into its fd's list so that cancel_wait()
// can find and stop every watcher on an fd before it is closed.
struct io_wait : fifo_hook<io_wait> {
  ev_io io{};
  greenev::detail::waiter* waiter = nullptr;
  wait_failure* failure = nullptr;
  bool exclusive = false;  // wait_read / wait_write: one waiter per direction
};

// Indexed by fd. A deque: the lists must not move (their nodes point back at
// them). Its destructor unlinks any node left (a survivor's), so that a
// guard unwound later only stops its watcher.
using fd_wait_table = std::deque<intrusive_fifo<io_wait>>;

// The calling thread's table (its runtime's), or null if the thread has no
// runtime. Set and cleared by the runtime.
extern __thread fd_wait_table* thread_fd_waits __attribute__((tls_model("initial-exec")));

}  // namespace greenev::detail
