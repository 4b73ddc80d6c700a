// Waiting on file descriptors: one ev_io per wait, registered per fd so that
// cancel_wait() can find and stop every watcher on an fd before it is closed.
#include <greenev/io.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "fd_waits.hpp"
#include "hub_impl.hpp"

namespace greenev {

namespace {

using detail::io_wait;
using detail::thread_fd_waits;
using detail::wait_failure;

// The thread's table is its runtime's (runtime.cpp), which outlives every
// wait the hub unwinds at teardown.
detail::intrusive_fifo<io_wait>& waits_of(int fd) {
  if (thread_fd_waits == nullptr) (void)detail::local_hub();
  detail::fd_wait_table& table = *thread_fd_waits;
  while (table.size() <= static_cast<std::size_t>(fd)) table.emplace_back();
  return table[static_cast<std::size_t>(fd)];
}

// A started watcher stays counted until this stops it or on_io ran. libev
// stops the watchers of an fd it cannot watch and queues them with EV_ERROR:
// inactive but pending. A timeout's callback may unwind the waiting greenlet
// before on_io runs, so stopping must also take a pending watcher off libev's
// pending list (ev_io_stop does), or libev calls back into freed memory.
void stop(detail::hub_impl& hub, io_wait& node) noexcept {
  hub.stop(node.io);
}

void on_io(struct ev_loop* loop, ev_io* io, int revents) noexcept {
  auto& hub = *static_cast<detail::hub_impl*>(ev_userdata(loop));
  io_wait& node = *static_cast<io_wait*>(io->data);
  if ((revents & EV_ERROR) != 0 && node.failure->fd < 0) node.failure->fd = io->fd;
  hub.fired(*io);
  detail::schedule_wake(*node.waiter);
}

void start(detail::hub_impl& hub, io_wait& node, int fd, int events, bool fresh = true) {
  ev_init(&node.io, on_io);
  if (fresh) {
    ev_io_set(&node.io, fd, events);  // makes libev (re)register the fd with epoll
  } else {
    node.io.fd = fd;  // the same open fd as last time: libev's registration stands
    node.io.events = events;
  }
  node.io.data = &node;
  waits_of(fd).push_back(node);
  hub.start(node.io);
}

// Stops and unregisters the watchers of one wait, however the wait ends.
struct wait_guard {
  detail::hub_impl& hub;
  std::span<io_wait> nodes;
  ~wait_guard() {
    for (io_wait& node : nodes) {
      stop(hub, node);
      if (node.fifo() != nullptr) node.fifo()->remove(node);
    }
  }
};

[[noreturn]] void throw_failure(const wait_failure& failure, const char* what) {
  throw std::system_error(
      EBADF, std::generic_category(),
      "greenev: " + std::string(what) + ": fd " + std::to_string(failure.fd) +
          (failure.cancelled ? ": file descriptor closed in another greenlet" : ": bad file descriptor"));
}

[[noreturn]] void throw_bad_fd(int fd, const char* what) {
  throw std::system_error(EBADF, std::generic_category(),
                          std::string("greenev: ") + what + ": bad fd " + std::to_string(fd));
}

bool wait_one(int fd, int events, wait_time timeout, const char* what, bool owned, bool fresh) {
  detail::hub_impl& hub = detail::local_hub();
  hub.require_not_in_hub(what);
  // libev asserts on an fd epoll refuses as invalid: check first.
  if (fd < 0 || (!owned && ::fcntl(fd, F_GETFD) < 0)) throw_bad_fd(fd, what);
  for (io_wait* other = waits_of(fd).front(); other != nullptr; other = other->fifo_next()) {
    if (other->exclusive && (other->io.events & events & (EV_READ | EV_WRITE)) != 0) {
      throw greenlet_error("greenev: " + std::string(what) + ": fd " + std::to_string(fd) +
                           " is already waited on in that direction by another greenlet");
    }
  }
  detail::waiter w((events & EV_READ) != 0 ? ((events & EV_WRITE) != 0 ? "read/write" : "read") : "write",
                   fd);
  wait_failure failure;
  io_wait node;
  node.waiter = &w;
  node.failure = &failure;
  node.exclusive = true;
  const wait_guard guard{hub, std::span<io_wait>(&node, 1)};
  start(hub, node, fd, events, fresh);
  const bool woken = detail::park(w, timeout);
  if (failure.fd >= 0) throw_failure(failure, what);
  return woken;
}

}  // namespace

bool wait_read(int fd, wait_time timeout) {
  return wait_one(fd, EV_READ, timeout, "wait_read", false, true);
}

bool wait_write(int fd, wait_time timeout) {
  return wait_one(fd, EV_WRITE, timeout, "wait_write", false, true);
}

bool detail::wait_owned_fd(int fd, int events, wait_time timeout, bool fresh, const char* what) {
  return wait_one(fd, events == 1 ? EV_READ : EV_WRITE, timeout, what, true, fresh);
}

std::size_t cancel_wait(int fd) noexcept {
  if (fd < 0 || thread_fd_waits == nullptr || static_cast<std::size_t>(fd) >= thread_fd_waits->size())
    return 0;
  detail::hub_impl* hub = detail::current_hub;
  if (hub == nullptr) return 0;
  std::size_t woken = 0;
  while (io_wait* node = (*thread_fd_waits)[static_cast<std::size_t>(fd)].pop_front()) {
    stop(*hub, *node);
    node->failure->fd = fd;
    node->failure->cancelled = true;
    detail::schedule_wake(*node->waiter);
    ++woken;
  }
  return woken;
}

void close_fd(int fd) {
  cancel_wait(fd);
  if (::close(fd) != 0) {
    throw std::system_error(errno, std::generic_category(), "greenev: close(" + std::to_string(fd) + ")");
  }
}

void set_non_blocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    throw std::system_error(errno, std::generic_category(),
                            "greenev: set_non_blocking(" + std::to_string(fd) + ")");
  }
}

std::size_t poll(std::span<pollfd> fds, wait_time timeout) {
  const auto poll_now = [&] {
    const int ready = ::poll(fds.data(), fds.size(), 0);
    if (ready < 0) throw std::system_error(errno, std::generic_category(), "greenev: poll");
    return static_cast<std::size_t>(ready);
  };
  // Already ready (or POLLNVAL) entries are answered without a switch.
  if (const std::size_t ready = poll_now(); ready > 0) return ready;
  if (timeout.is_poll()) return 0;

  detail::hub_impl& hub = detail::local_hub();
  hub.require_not_in_hub("poll");
  const auto deadline = std::chrono::steady_clock::now() + timeout.duration();
  // Most polls watch one or two fds (libcurl's, through the patched poll):
  // their nodes live on this greenlet's stack, not the heap.
  std::array<io_wait, 4> local_nodes;
  std::unique_ptr<io_wait[]> heap_nodes;
  if (fds.size() > local_nodes.size()) heap_nodes = std::make_unique<io_wait[]>(fds.size());
  const std::span<io_wait> nodes = heap_nodes ? std::span<io_wait>(heap_nodes.get(), fds.size())
                                              : std::span<io_wait>(local_nodes.data(), fds.size());
  for (;;) {
    detail::waiter w("poll");
    wait_failure failure;
    std::size_t used = 0;
    const wait_guard guard{hub, nodes};
    for (const pollfd& entry : fds) {
      int events = 0;
      if ((entry.events & (POLLIN | POLLPRI | POLLRDHUP)) != 0) events |= EV_READ;
      if ((entry.events & POLLOUT) != 0) events |= EV_WRITE;
      if (entry.fd < 0 || events == 0) continue;  // errors alone: reported by the next poll
      io_wait& node = nodes[used++];
      node.waiter = &w;
      node.failure = &failure;
      start(hub, node, entry.fd, events);
    }
    wait_time left;
    if (!timeout.is_forever()) left = deadline - std::chrono::steady_clock::now();
    const bool woken = detail::park(w, left);
    if (failure.fd >= 0) throw_failure(failure, "poll");
    // The kernel has the final word on revents (HUP, ERR, what is readable now).
    if (const std::size_t ready = poll_now(); ready > 0 || !woken) return ready;
  }
}

}  // namespace greenev
