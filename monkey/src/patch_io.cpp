// The fd interposers: read/write/recv/send families, connect, accept, and the
// calls that create, duplicate, configure and close fds (to keep the per-fd
// records true). docs/design.md, "Interposition".
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>

#include <greenev/detail/patch_support.hpp>
#include <greenev/io.hpp>

#include "patch_internal.hpp"

namespace greenev::monkey::detail {
namespace {

real_function<ssize_t (*)(int, void*, size_t)> real_read{"read"};
real_function<ssize_t (*)(int, const void*, size_t)> real_write{"write"};
real_function<ssize_t (*)(int, const iovec*, int)> real_readv{"readv"};
real_function<ssize_t (*)(int, const iovec*, int)> real_writev{"writev"};
real_function<ssize_t (*)(int, void*, size_t, int)> real_recv{"recv"};
real_function<ssize_t (*)(int, const void*, size_t, int)> real_send{"send"};
real_function<ssize_t (*)(int, void*, size_t, int, sockaddr*, socklen_t*)> real_recvfrom{"recvfrom"};
real_function<ssize_t (*)(int, const void*, size_t, int, const sockaddr*, socklen_t)> real_sendto{"sendto"};
real_function<ssize_t (*)(int, msghdr*, int)> real_recvmsg{"recvmsg"};
real_function<ssize_t (*)(int, const msghdr*, int)> real_sendmsg{"sendmsg"};
real_function<int (*)(int, const sockaddr*, socklen_t)> real_connect{"connect"};
real_function<int (*)(int, sockaddr*, socklen_t*, int)> real_accept4{"accept4"};
real_function<int (*)(int, sockaddr*, socklen_t*)> real_accept{"accept"};
real_function<int (*)(int)> real_close{"close"};
real_function<int (*)(int, int)> real_shutdown{"shutdown"};
real_function<int (*)(int, int, ...)> real_fcntl{"fcntl"};
real_function<int (*)(int, int, ...)> real_fcntl64{"fcntl64"};
real_function<int (*)(int, unsigned long, ...)> real_ioctl{"ioctl"};
real_function<int (*)(int, int, int, const void*, socklen_t)> real_setsockopt{"setsockopt"};
real_function<int (*)(int)> real_dup{"dup"};
real_function<int (*)(int, int)> real_dup2{"dup2"};
real_function<int (*)(int, int, int)> real_dup3{"dup3"};
real_function<int (*)(int, int, int)> real_socket{"socket"};
real_function<int (*)(int, int, int, int*)> real_socketpair{"socketpair"};
real_function<int (*)(int*)> real_pipe{"pipe"};
real_function<int (*)(int*, int)> real_pipe2{"pipe2"};
real_function<int (*)(pollfd*, nfds_t, int)> real_poll{"poll"};

constexpr int readable = 1;
constexpr int writable = 2;

// How a patched call on `fd` must run.
enum class route {
  libc,         // straight through
  emulate,      // greenev made the fd non-blocking but this caller may not park: block in poll(2)
  cooperative,  // park the greenlet while the fd is not ready
  poisoned,     // an interruption left the fd dead: fail (patch_internal.hpp)
};

route route_of(int fd, fd_record*& record) noexcept {
  record = nullptr;
  if (!patched(socket_bit)) return route::libc;
  record = record_of(fd);
  if (record == nullptr) return route::libc;
  if ((record->flags.load(std::memory_order_relaxed) & fd_poisoned) != 0 && still_poisoned(fd, *record)) {
    return route::poisoned;
  }
  if (!greenev::detail::may_park_here()) {
    const std::uint32_t flags = record->flags.load(std::memory_order_relaxed);
    return (flags & fd_managed) != 0 && (flags & fd_user_nonblock) == 0 ? route::emulate : route::libc;
  }
  const std::uint32_t flags = prepare_fd(fd, *record);
  return (flags & fd_managed) != 0 && (flags & fd_user_nonblock) == 0 ? route::cooperative : route::libc;
}

std::int64_t timeout_of(const fd_record& record, int events) noexcept {
  return (events == readable ? record.receive_timeout_ns : record.send_timeout_ns)
      .load(std::memory_order_relaxed);
}

// Waits in poll(2) for an fd greenev made non-blocking, for a caller that
// may not park (a thread without a hub, a loop callback): the user still
// sees a blocking fd.
wait_outcome wait_blocking(int fd, int events, const deadline& until) noexcept {
  int ms = -1;
  if (const wait_time left = until.left(); !left.is_forever()) {
    ms = static_cast<int>(std::min<std::int64_t>(
        std::chrono::ceil<std::chrono::milliseconds>(left.duration()).count(), 1 << 30));
  }
  pollfd entry{fd, static_cast<short>(events == readable ? POLLIN : POLLOUT), 0};
  const int ready = real_poll(&entry, 1, ms);
  if (ready > 0) return wait_outcome::ready;
  return ready == 0 ? wait_outcome::timed_out : wait_outcome::failed;  // EINTR: as a blocking call
}

// The one loop behind every data call: try, and while the kernel says
// EAGAIN, wait for readiness (cooperatively or in poll(2)) until the user's
// SO_RCVTIMEO / SO_SNDTIMEO.
template <class Call>
ssize_t blocking_io(int fd, int events, Call&& call, std::size_t asked = 0) noexcept {
  fd_record* record = nullptr;
  const route how = route_of(fd, record);
  if (how == route::libc) return call();
  // A greenlet being unwound keeps seeing ECANCELED, as on any other fd.
  if (how == route::poisoned)
    return interruption_pending() ? fail(wait_outcome::interrupted) : fail_poisoned();
  if (how == route::cooperative && interruption_pending()) {
    poison_fd(fd);  // the C code is being abandoned mid-call: see patch_internal.hpp
    errno = ECANCELED;
    return -1;
  }
  const errno_keeper saved;
  const deadline until(timeout_of(*record, events));
  const auto wait = [&] {
    if (how != route::cooperative) return wait_blocking(fd, events, until);
    const wait_outcome outcome = wait_fd(fd, events, *record, until.left());
    if (outcome == wait_outcome::interrupted) poison_fd(fd);
    return outcome;
  };
  // After a short read the socket was drained: wait before reading again
  // rather than spend a system call on EAGAIN (greenev::socket does the same).
  if (events == readable && how == route::cooperative && record->drained.load(std::memory_order_relaxed)) {
    record->drained.store(false, std::memory_order_relaxed);
    if (const wait_outcome outcome = wait(); outcome != wait_outcome::ready) return fail(outcome);
  }
  for (;;) {
    const ssize_t n = call();
    if (n >= 0) {
      if (n > 0 && static_cast<std::size_t>(n) < asked &&
          (record->flags.load(std::memory_order_relaxed) & fd_stream) != 0) {
        record->drained.store(true, std::memory_order_relaxed);
      }
      saved.restore();
      return n;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    if (const wait_outcome outcome = wait(); outcome != wait_outcome::ready) return fail(outcome);
  }
}

bool is_stream(int fd) noexcept {
  const fd_record* record = record_of(fd);
  return record != nullptr && (record->flags.load(std::memory_order_relaxed) & (fd_stream | fd_pipe)) != 0;
}

// A blocking write to a stream socket or a pipe returns only once everything
// is queued (as Linux does), unless it fails, times out or is interrupted
// after some progress: then it returns what was written.
template <class Send>
ssize_t write_all(int fd, std::size_t total, Send&& send_from) noexcept {
  std::size_t done = 0;
  for (;;) {
    const ssize_t n = blocking_io(fd, writable, [&] { return send_from(done); });
    if (n < 0) return done > 0 ? static_cast<ssize_t>(done) : -1;
    done += static_cast<std::size_t>(n);
    if (done >= total || n == 0 || !is_stream(fd)) return static_cast<ssize_t>(done);
    fd_record* record = nullptr;
    if (route_of(fd, record) == route::libc) return static_cast<ssize_t>(done);
  }
}

std::size_t total_of(const iovec* iov, int count) noexcept {
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  return total;
}

// Copies `iov` (at most `limit` entries) into `out`, skipping `skip` bytes.
int advance(const iovec* iov, int count, std::size_t skip, iovec* out, int limit) noexcept {
  int used = 0;
  for (int i = 0; i < count && used < limit; ++i) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    out[used].iov_base = static_cast<char*>(iov[i].iov_base) + skip;
    out[used].iov_len = iov[i].iov_len - skip;
    skip = 0;
    ++used;
  }
  return used;
}

constexpr int iov_copy_limit = 64;

bool cooperative_here() noexcept {
  return greenev::detail::may_park_here();
}

// After a successful call that made `fd`: remember what the user asked for,
// and make it non-blocking now when this greenlet will use it (saves the
// fcntl pair prepare_fd would cost).
void adopt(int fd, std::uint32_t kind, bool user_nonblock, bool made_nonblocking) noexcept {
  record_new_fd(fd, kind, user_nonblock, made_nonblocking && !user_nonblock);
}

int socket_kind(int type) noexcept {
  return static_cast<int>(fd_socket) | ((type & 0xf) == SOCK_STREAM ? static_cast<int>(fd_stream) : 0);
}

}  // namespace

void link_io_interposers() noexcept {}

}  // namespace greenev::monkey::detail

using namespace greenev::monkey::detail;  // NOLINT: the interposers below are C functions

extern "C" {

ssize_t read(int fd, void* buffer, size_t size) noexcept {
  return blocking_io(
      fd, readable, [&] { return real_read(fd, buffer, size); }, size);
}

ssize_t readv(int fd, const iovec* iov, int count) noexcept {
  return blocking_io(fd, readable, [&] { return real_readv(fd, iov, count); });
}

ssize_t recv(int fd, void* buffer, size_t size, int flags) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_recv(fd, buffer, size, flags);
  const bool wait_all = (flags & (MSG_WAITALL | MSG_PEEK)) == MSG_WAITALL;
  std::size_t done = 0;
  for (;;) {
    const ssize_t n = blocking_io(
        fd, readable, [&] { return real_recv(fd, static_cast<char*>(buffer) + done, size - done, flags); },
        wait_all || (flags & MSG_PEEK) != 0 ? 0 : size);
    if (n <= 0) return done > 0 ? static_cast<ssize_t>(done) : n;
    done += static_cast<std::size_t>(n);
    // MSG_WAITALL: on a non-blocking socket the kernel returns what it has, so
    // a blocking caller's rest is waited for here.
    if (!wait_all || done >= size || !is_stream(fd)) return static_cast<ssize_t>(done);
    fd_record* record = nullptr;
    if (route_of(fd, record) == route::libc) return static_cast<ssize_t>(done);
  }
}

ssize_t recvfrom(int fd, void* buffer, size_t size, int flags, sockaddr* from, socklen_t* length) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_recvfrom(fd, buffer, size, flags, from, length);
  return blocking_io(fd, readable, [&] { return real_recvfrom(fd, buffer, size, flags, from, length); });
}

ssize_t recvmsg(int fd, msghdr* message, int flags) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_recvmsg(fd, message, flags);
  return blocking_io(fd, readable, [&] { return real_recvmsg(fd, message, flags); });
}

ssize_t write(int fd, const void* buffer, size_t size) noexcept {
  return write_all(fd, size, [&](std::size_t done) {
    return real_write(fd, static_cast<const char*>(buffer) + done, size - done);
  });
}

ssize_t send(int fd, const void* buffer, size_t size, int flags) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_send(fd, buffer, size, flags);
  return write_all(fd, size, [&](std::size_t done) {
    return real_send(fd, static_cast<const char*>(buffer) + done, size - done, flags);
  });
}

ssize_t sendto(int fd, const void* buffer, size_t size, int flags, const sockaddr* to,
               socklen_t length) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_sendto(fd, buffer, size, flags, to, length);
  return write_all(fd, size, [&](std::size_t done) {
    return real_sendto(fd, static_cast<const char*>(buffer) + done, size - done, flags, to, length);
  });
}

ssize_t writev(int fd, const iovec* iov, int count) noexcept {
  if (count <= 0 || count > iov_copy_limit) {
    return blocking_io(fd, writable, [&] { return real_writev(fd, iov, count); });
  }
  return write_all(fd, total_of(iov, count), [&](std::size_t done) {
    iovec rest[iov_copy_limit];
    return real_writev(fd, rest, advance(iov, count, done, rest, iov_copy_limit));
  });
}

ssize_t sendmsg(int fd, const msghdr* message, int flags) noexcept {
  if ((flags & MSG_DONTWAIT) != 0)
    return is_poisoned(fd) ? fail_poisoned() : real_sendmsg(fd, message, flags);
  const int count = static_cast<int>(message->msg_iovlen);
  if (count <= 0 || count > iov_copy_limit || message->msg_controllen != 0) {
    return blocking_io(fd, writable, [&] { return real_sendmsg(fd, message, flags); });
  }
  return write_all(fd, total_of(message->msg_iov, count), [&](std::size_t done) {
    iovec rest[iov_copy_limit];
    msghdr copy = *message;
    copy.msg_iov = rest;
    copy.msg_iovlen = static_cast<std::size_t>(advance(message->msg_iov, count, done, rest, iov_copy_limit));
    return real_sendmsg(fd, &copy, flags);
  });
}

int connect(int fd, const sockaddr* address, socklen_t length) noexcept {
  fd_record* record = nullptr;
  const route how = route_of(fd, record);
  if (how == route::libc) return real_connect(fd, address, length);
  if (how == route::poisoned) {
    return static_cast<int>(interruption_pending() ? fail(wait_outcome::interrupted) : fail_poisoned());
  }
  if (how == route::cooperative && interruption_pending()) {
    poison_fd(fd);
    errno = ECANCELED;
    return -1;
  }
  const errno_keeper saved;
  const deadline until(timeout_of(*record, writable));
  for (;;) {
    if (real_connect(fd, address, length) == 0) {
      saved.restore();
      return 0;
    }
    // A Unix socket whose listener's backlog is full says EAGAIN: wait, retry.
    const bool in_progress = errno == EINPROGRESS;
    if (!in_progress && errno != EAGAIN) return -1;
    const wait_outcome outcome = how == route::cooperative ? wait_fd(fd, writable, *record, until.left())
                                                           : wait_blocking(fd, writable, until);
    if (outcome == wait_outcome::interrupted) poison_fd(fd);
    if (outcome == wait_outcome::timed_out) {
      errno = in_progress ? EINPROGRESS : EAGAIN;  // Linux's answer when SO_SNDTIMEO expires
      return -1;
    }
    if (outcome != wait_outcome::ready) return static_cast<int>(fail(outcome));
    if (in_progress) {
      int error = 0;
      socklen_t size = sizeof error;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) return -1;
      if (error != 0) {
        errno = error;
        return -1;
      }
      saved.restore();
      return 0;
    }
  }
}

int accept4(int fd, sockaddr* address, socklen_t* length, int flags) noexcept {
  const bool user_nonblock = (flags & SOCK_NONBLOCK) != 0;
  const bool manage = patched(socket_bit) && cooperative_here();
  const int made = static_cast<int>(blocking_io(fd, readable, [&] {
    return static_cast<ssize_t>(real_accept4(fd, address, length, manage ? flags | SOCK_NONBLOCK : flags));
  }));
  if (made >= 0 && patched(socket_bit)) adopt(made, fd_socket | fd_stream, user_nonblock, manage);
  return made;
}

int accept(int fd, sockaddr* address, socklen_t* length) noexcept {
  if (!patched(socket_bit)) return real_accept(fd, address, length);
  return accept4(fd, address, length, 0);
}

int socket(int family, int type, int protocol) noexcept {
  if (!patched(socket_bit)) return real_socket(family, type, protocol);
  const bool user_nonblock = (type & SOCK_NONBLOCK) != 0;
  const bool manage = cooperative_here();
  const int fd = real_socket(family, manage ? type | SOCK_NONBLOCK : type, protocol);
  if (fd >= 0) adopt(fd, static_cast<std::uint32_t>(socket_kind(type)), user_nonblock, manage);
  return fd;
}

int socketpair(int family, int type, int protocol, int fds[2]) noexcept {
  if (!patched(socket_bit)) return real_socketpair(family, type, protocol, fds);
  const bool user_nonblock = (type & SOCK_NONBLOCK) != 0;
  const bool manage = cooperative_here();
  const int result = real_socketpair(family, manage ? type | SOCK_NONBLOCK : type, protocol, fds);
  if (result == 0) {
    for (int i = 0; i < 2; ++i) {
      adopt(fds[i], static_cast<std::uint32_t>(socket_kind(type)), user_nonblock, manage);
    }
  }
  return result;
}

int pipe2(int fds[2], int flags) noexcept {
  if (!patched(socket_bit)) return real_pipe2(fds, flags);
  const bool user_nonblock = (flags & O_NONBLOCK) != 0;
  const bool manage = cooperative_here();
  const int result = real_pipe2(fds, manage ? flags | O_NONBLOCK : flags);
  if (result == 0) {
    for (int i = 0; i < 2; ++i) adopt(fds[i], fd_pipe, user_nonblock, manage);
  }
  return result;
}

int pipe(int fds[2]) noexcept {
  if (!patched(socket_bit)) return real_pipe(fds);
  return pipe2(fds, 0);
}

int close(int fd) noexcept {
  // Wake this thread's greenlets parked on `fd` (EBADF) before the number
  // can be reused. Other threads' waiters cannot be reached from here.
  if (patched(socket_bit) && greenev::detail::hub_exists_on_this_thread()) greenev::cancel_wait(fd);
  reset_record(fd);
  return real_close(fd);
}

int shutdown(int fd, int how) noexcept {
  // Nothing to do: a shutdown makes the peer's and our own waits ready.
  return real_shutdown(fd, how);
}

int dup(int fd) noexcept {
  const int copy = real_dup(fd);
  if (copy >= 0) copy_record(fd, copy);
  return copy;
}

int dup3(int fd, int target, int flags) noexcept {
  if (fd != target && patched(socket_bit) && greenev::detail::hub_exists_on_this_thread()) {
    greenev::cancel_wait(target);
  }
  const int copy = real_dup3(fd, target, flags);
  if (copy >= 0) copy_record(fd, copy);
  return copy;
}

int dup2(int fd, int target) noexcept {
  if (fd == target) return real_dup2(fd, target);
  if (patched(socket_bit) && greenev::detail::hub_exists_on_this_thread()) greenev::cancel_wait(target);
  const int copy = real_dup2(fd, target);
  if (copy >= 0) copy_record(fd, copy);
  return copy;
}

}  // extern "C"

namespace greenev::monkey::detail {
namespace {

// fcntl's variadic argument is an int or a pointer; glibc reads it as a
// pointer-sized word, and so do we.
int patched_fcntl(int fd, int command, void* argument, bool large) noexcept {
  const auto call = [&](void* arg) {
    return large ? real_fcntl64(fd, command, arg) : real_fcntl(fd, command, arg);
  };
  fd_record* record = patched(socket_bit) ? record_of(fd) : nullptr;
  const std::uint32_t flags = record != nullptr ? record->flags.load(std::memory_order_relaxed) : 0;
  switch (command) {
    case F_GETFL: {
      const int status = call(argument);
      if (status < 0 || (flags & fd_managed) == 0) return status;
      return (status & ~O_NONBLOCK) | ((flags & fd_user_nonblock) != 0 ? O_NONBLOCK : 0);
    }
    case F_SETFL: {
      if ((flags & fd_known) == 0) return call(argument);
      const int wanted = static_cast<int>(reinterpret_cast<std::intptr_t>(argument));
      const bool keep_nonblocking = (flags & fd_managed) != 0;
      const int result = call(reinterpret_cast<void*>(
          static_cast<std::intptr_t>(keep_nonblocking ? wanted | O_NONBLOCK : wanted)));
      if (result == 0) {
        if ((wanted & O_NONBLOCK) != 0) {
          record->flags.fetch_or(fd_user_nonblock, std::memory_order_relaxed);
        } else {
          record->flags.fetch_and(~static_cast<std::uint32_t>(fd_user_nonblock), std::memory_order_relaxed);
        }
      }
      return result;
    }
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
      const int copy = call(argument);
      if (copy >= 0) copy_record(fd, copy);
      return copy;
    }
    default:
      return call(argument);
  }
}

}  // namespace
}  // namespace greenev::monkey::detail

extern "C" {

int fcntl(int fd, int command, ...) noexcept {
  va_list list;
  va_start(list, command);
  void* argument = va_arg(list, void*);
  va_end(list);
  return patched_fcntl(fd, command, argument, false);
}

int fcntl64(int fd, int command, ...) noexcept {
  va_list list;
  va_start(list, command);
  void* argument = va_arg(list, void*);
  va_end(list);
  return patched_fcntl(fd, command, argument, true);
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list list;
  va_start(list, request);
  void* argument = va_arg(list, void*);
  va_end(list);
  if (request == FIONBIO && patched(socket_bit) && argument != nullptr) {
    if (fd_record* record = record_of(fd)) {
      const std::uint32_t flags = record->flags.load(std::memory_order_relaxed);
      if ((flags & fd_known) != 0) {
        const bool wanted = *static_cast<const int*>(argument) != 0;
        // A managed fd stays non-blocking in the kernel; only the view changes.
        const int result = (flags & fd_managed) != 0 && !wanted ? 0 : real_ioctl(fd, request, argument);
        if (result == 0) {
          if (wanted) {
            record->flags.fetch_or(fd_user_nonblock, std::memory_order_relaxed);
          } else {
            record->flags.fetch_and(~static_cast<std::uint32_t>(fd_user_nonblock), std::memory_order_relaxed);
          }
        }
        return result;
      }
    }
  }
  return real_ioctl(fd, request, argument);
}

int setsockopt(int fd, int level, int name, const void* value, socklen_t length) noexcept {
  const int result = real_setsockopt(fd, level, name, value, length);
  if (result == 0 && level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO) &&
      patched(socket_bit) && value != nullptr && length >= sizeof(timeval)) {
    // The kernel keeps its copy (getsockopt reports it) but never applies it
    // to a non-blocking fd: greenev times the wait itself.
    if (fd_record* record = record_of(fd)) {
      timeval tv{};
      std::memcpy(&tv, value, sizeof tv);
      const std::int64_t ns = static_cast<std::int64_t>(tv.tv_sec) * 1'000'000'000 + tv.tv_usec * 1000;
      (name == SO_RCVTIMEO ? record->receive_timeout_ns : record->send_timeout_ns)
          .store(ns, std::memory_order_relaxed);
    }
  }
  return result;
}

}  // extern "C"

// _FORTIFY_SOURCE builds call these checked variants instead.
extern "C" {

[[noreturn]] void __chk_fail() noexcept;
ssize_t __read_chk(int fd, void* buffer, size_t size, size_t buffer_size) noexcept;
ssize_t __recv_chk(int fd, void* buffer, size_t size, size_t buffer_size, int flags) noexcept;
ssize_t __recvfrom_chk(int fd, void* buffer, size_t size, size_t buffer_size, int flags, sockaddr* from,
                       socklen_t* length) noexcept;

ssize_t __read_chk(int fd, void* buffer, size_t size, size_t buffer_size) noexcept {
  if (size > buffer_size) __chk_fail();
  return read(fd, buffer, size);
}

ssize_t __recv_chk(int fd, void* buffer, size_t size, size_t buffer_size, int flags) noexcept {
  if (size > buffer_size) __chk_fail();
  return recv(fd, buffer, size, flags);
}

ssize_t __recvfrom_chk(int fd, void* buffer, size_t size, size_t buffer_size, int flags, sockaddr* from,
                       socklen_t* length) noexcept {
  if (size > buffer_size) __chk_fail();
  return recvfrom(fd, buffer, size, flags, from, length);
}

}  // extern "C"
