// Cooperative waiting on file descriptors: the hub-level building block under
// greenev's sockets, DNS resolver, select/poll and libc interposition.
//
//   set_non_blocking(fd);
//   while (::recv(fd, buf, n, 0) < 0 && errno == EAGAIN) greenev::wait_read(fd);
//
// A wait parks only the calling greenlet; other greenlets and the loop run
// meanwhile. Threading: every call acts on the calling thread's hub; an fd may
// be waited on from one thread's hub at a time. Closing an fd that greenlets
// of this thread wait on must go through close_fd() (or cancel_wait() right
// before your own close), so that the waiters are woken and their watchers
// stopped before the number can be reused.
#pragma once

#include <poll.h>

#include <cstddef>
#include <span>

#include <greenev/hub.hpp>

namespace greenev {

/// Waits until `fd` is readable (or has an error or hang-up pending: the next
/// read reports it). Returns true when it is, false if `timeout` passed first.
/// Switches. Throws std::system_error(EBADF) if `fd` is invalid or is closed by
/// close_fd()/cancel_wait() while waiting ("file descriptor closed in another
/// greenlet"); greenlet_error if another greenlet already waits to read `fd`
/// (two readers of one socket would steal each other's data), or if called in
/// the hub. A kill or an outer timeout during the wait leaves no watcher behind.
bool wait_read(int fd, wait_time timeout = {});

/// As wait_read, for writability.
bool wait_write(int fd, wait_time timeout = {});

/// Wakes every greenlet of this thread waiting on `fd` (wait_read, wait_write,
/// poll) with std::system_error(EBADF) and stops their watchers now. Returns
/// how many it woke. Never switches, never throws. Call it before closing an fd
/// yourself; close_fd() does both.
std::size_t cancel_wait(int fd) noexcept;

/// cancel_wait(fd), then ::close(fd). Never switches. Throws std::system_error
/// if close fails (the fd is released even then, except for EBADF).
void close_fd(int fd);

/// Sets O_NONBLOCK on `fd` (greenev's waits assume the kernel never blocks).
/// Throws std::system_error if fcntl fails.
void set_non_blocking(int fd);

/// Cooperative poll(2): the same contract (events in, revents out, POLLNVAL for
/// a bad fd, negative fds ignored), but only the calling greenlet waits.
/// Returns the number of entries with non-zero revents; 0 if `timeout` passed.
/// A zero timeout never switches; otherwise switches while nothing is ready.
/// Throws std::system_error(EBADF) if a watched fd is closed by close_fd()
/// while waiting, std::system_error for poll(2) failures, greenlet_error if
/// called in the hub.
std::size_t poll(std::span<pollfd> fds, wait_time timeout = {});

namespace detail {

/// wait_read (events 1) / wait_write (events 2) for the owner of an fd that
/// stays open while it waits, e.g. greenev::socket: skips the fcntl check
/// that makes the public calls safe on any int, and, unless `fresh`, tells
/// libev the fd is the one it already knows (no epoll_ctl per wait). `fresh`
/// must be true on the first wait after the fd was opened, since the number
/// may belong to a closed fd libev still remembers. `what` names the call.
bool wait_owned_fd(int fd, int events, wait_time timeout, bool fresh, const char* what);

}  // namespace detail

}  // namespace greenev
