// The interposers that wait on time or on many fds: the sleep family (so
// std::this_thread::sleep_for), poll, ppoll, select, pselect.
// docs/design.md, "Interposition"; docs/errors.md for the contract.
#include <poll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <new>
#include <span>
#include <system_error>

#include <greenev/detail/patch_support.hpp>
#include <greenev/io.hpp>

#include "patch_internal.hpp"

namespace greenev::monkey::detail {
namespace {

using std::chrono::nanoseconds;

real_function<unsigned (*)(unsigned)> real_sleep{"sleep"};
real_function<int (*)(useconds_t)> real_usleep{"usleep"};
real_function<int (*)(const timespec*, timespec*)> real_nanosleep{"nanosleep"};
real_function<int (*)(clockid_t, int, const timespec*, timespec*)> real_clock_nanosleep{"clock_nanosleep"};
real_function<int (*)(pollfd*, nfds_t, int)> real_poll{"poll"};
real_function<int (*)(pollfd*, nfds_t, const timespec*, const sigset_t*)> real_ppoll{"ppoll"};
real_function<int (*)(int, fd_set*, fd_set*, fd_set*, timeval*)> real_select{"select"};
real_function<int (*)(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*)> real_pselect{
    "pselect"};

bool valid(const timespec& t) noexcept {
  return t.tv_sec >= 0 && t.tv_nsec >= 0 && t.tv_nsec < 1'000'000'000;
}

nanoseconds to_ns(const timespec& t) noexcept {
  constexpr std::int64_t max_seconds = std::int64_t{1} << 32;  // ~136 years: "forever" enough
  return nanoseconds(std::min<std::int64_t>(t.tv_sec, max_seconds) * 1'000'000'000 + t.tv_nsec);
}

timespec to_timespec(nanoseconds d) noexcept {
  if (d.count() < 0) d = nanoseconds(0);
  return {static_cast<time_t>(d.count() / 1'000'000'000), static_cast<long>(d.count() % 1'000'000'000)};
}

// Parks the greenlet for `d`. Returns 0, or the time left (> 0) if a kill or
// a timeout interrupted it (stored for rethrow_if_interrupted). A greenlet
// with an interruption pending does not switch: its sleeps return at once as
// if complete, so EINTR retry loops in C code terminate (docs/errors.md).
nanoseconds cooperative_sleep(nanoseconds d) noexcept {
  if (interruption_pending()) return nanoseconds(0);
  const auto start = std::chrono::steady_clock::now();
  try {
    greenev::sleep(d);
    return nanoseconds(0);
  } catch (...) {
    store_interruption();
    const nanoseconds left = d - (std::chrono::steady_clock::now() - start);
    return left.count() > 0 ? left : nanoseconds(1);
  }
}

bool sleep_patched() noexcept {
  return patched(time_bit) && greenev::detail::may_park_here();
}

bool poll_patched() noexcept {
  return patched(select_bit) && greenev::detail::may_park_here();
}

// The C code waiting in poll is being abandoned mid-call: every fd it
// waited on is left mid-protocol (patch_internal.hpp, "poisoned fds").
void poison_all(const pollfd* fds, nfds_t count) noexcept {
  for (nfds_t i = 0; i < count; ++i) {
    if (fds[i].fd >= 0) poison_fd(fds[i].fd);
  }
}

bool any_poisoned(const pollfd* fds, nfds_t count) noexcept {
  if (!some_fd_poisoned()) return false;
  for (nfds_t i = 0; i < count; ++i) {
    if (is_poisoned(fds[i].fd)) return true;
  }
  return false;
}

// poll(2) at once, with every poisoned fd reported as a dead connection is
// (POLLERR|POLLHUP, and ready for what was asked, so that the caller's next
// read or write meets the error) instead of waiting for it.
int poll_with_poison(pollfd* fds, nfds_t count) noexcept {
  if (interruption_pending()) {  // a greenlet being unwound keeps seeing ECANCELED
    poison_all(fds, count);
    errno = ECANCELED;
    return -1;
  }
  const errno_keeper saved;
  if (real_poll(fds, count, 0) < 0) return -1;
  int ready = 0;
  for (nfds_t i = 0; i < count; ++i) {
    if (is_poisoned(fds[i].fd)) {
      fds[i].revents = static_cast<short>(POLLERR | POLLHUP |
                                          (fds[i].events & (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM)));
    }
    if (fds[i].revents != 0) ++ready;
  }
  saved.restore();
  return ready;
}

// poll(2) for a greenlet: the same contract, parking only this greenlet.
// `timeout` is forever or >= 0. Returns the count of ready entries, or -1
// with errno.
int cooperative_poll(pollfd* fds, nfds_t count, wait_time timeout) noexcept {
  if (any_poisoned(fds, count)) return poll_with_poison(fds, count);
  if (interruption_pending()) {
    poison_all(fds, count);
    errno = ECANCELED;
    return -1;
  }
  const errno_keeper saved;
  try {
    const std::size_t ready = greenev::poll(std::span<pollfd>(fds, count), timeout);
    saved.restore();
    return static_cast<int>(ready);
  } catch (const std::system_error& e) {
    // An fd closed by another greenlet while we waited: poll(2) would report
    // POLLNVAL for it now, so ask the kernel.
    if (e.code().value() == EBADF) {
      const int ready = real_poll(fds, count, 0);
      if (ready >= 0) saved.restore();
      return ready;
    }
    errno = e.code().value();
    return -1;
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return -1;
  } catch (...) {
    store_interruption();
    poison_all(fds, count);
    errno = ECANCELED;
    return -1;
  }
}

// select(2) on top of cooperative_poll, with Linux's readiness sets
// (fs/select.c: POLLIN_SET, POLLOUT_SET, POLLEX_SET).
int cooperative_select(int nfds, fd_set* read, fd_set* write, fd_set* except, wait_time timeout) noexcept {
  std::array<pollfd, FD_SETSIZE> entries{};
  nfds_t used = 0;
  for (int fd = 0; fd < nfds; ++fd) {
    short events = 0;
    if (read != nullptr && FD_ISSET(fd, read)) events |= POLLIN;
    if (write != nullptr && FD_ISSET(fd, write)) events |= POLLOUT;
    if (except != nullptr && FD_ISSET(fd, except)) events |= POLLPRI;
    if (events != 0) entries[used++] = pollfd{fd, events, 0};
  }
  const int ready = cooperative_poll(entries.data(), used, timeout);
  if (ready < 0) return -1;
  for (nfds_t i = 0; i < used; ++i) {
    if ((entries[i].revents & POLLNVAL) != 0) {
      errno = EBADF;
      return -1;
    }
  }
  if (read != nullptr) FD_ZERO(read);
  if (write != nullptr) FD_ZERO(write);
  if (except != nullptr) FD_ZERO(except);
  int bits = 0;
  for (nfds_t i = 0; i < used; ++i) {
    const pollfd& e = entries[i];
    if ((e.events & POLLIN) != 0 && (e.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      FD_SET(e.fd, read);
      ++bits;
    }
    if ((e.events & POLLOUT) != 0 && (e.revents & (POLLOUT | POLLERR)) != 0) {
      FD_SET(e.fd, write);
      ++bits;
    }
    if ((e.events & POLLPRI) != 0 && (e.revents & POLLPRI) != 0) {
      FD_SET(e.fd, except);
      ++bits;
    }
  }
  return bits;
}

// Whether a select set holds a poisoned fd: then select answers at once
// through cooperative_select (which reports it), wherever it is called.
bool any_poisoned(int nfds, const fd_set* read, const fd_set* write, const fd_set* except) noexcept {
  if (!some_fd_poisoned()) return false;
  for (int fd = 0; fd < std::min(nfds, FD_SETSIZE); ++fd) {
    const bool asked = (read != nullptr && FD_ISSET(fd, read)) || (write != nullptr && FD_ISSET(fd, write)) ||
                       (except != nullptr && FD_ISSET(fd, except));
    if (asked && is_poisoned(fd)) return true;
  }
  return false;
}

}  // namespace

void link_wait_interposers() noexcept {}

}  // namespace greenev::monkey::detail

using namespace greenev::monkey::detail;  // NOLINT: the interposers below are C functions
using greenev::wait_time;

extern "C" {

int nanosleep(const timespec* request, timespec* remaining) noexcept {
  if (!sleep_patched() || request == nullptr) return real_nanosleep(request, remaining);
  if (!valid(*request)) {
    errno = EINVAL;
    return -1;
  }
  const errno_keeper saved;
  const nanoseconds left = cooperative_sleep(to_ns(*request));
  if (left.count() > 0) {
    if (remaining != nullptr) *remaining = to_timespec(left);
    errno = EINTR;
    return -1;
  }
  saved.restore();
  return 0;
}

int clock_nanosleep(clockid_t clock, int flags, const timespec* request, timespec* remaining) noexcept {
  const bool supported =
      clock == CLOCK_MONOTONIC || clock == CLOCK_REALTIME || clock == CLOCK_BOOTTIME || clock == CLOCK_TAI;
  if (!sleep_patched() || !supported || request == nullptr) {
    return real_clock_nanosleep(clock, flags, request, remaining);
  }
  if (!valid(*request)) return EINVAL;
  nanoseconds d = to_ns(*request);
  if ((flags & TIMER_ABSTIME) != 0) {
    // The hub's timers are monotonic: an absolute time becomes a duration
    // now (a later change of the wall clock is not followed).
    timespec now{};
    ::clock_gettime(clock, &now);
    d -= to_ns(now);
  }
  const errno_keeper saved;
  const nanoseconds left = cooperative_sleep(d.count() > 0 ? d : nanoseconds(0));
  saved.restore();  // clock_nanosleep reports errors by value, never in errno
  if (left.count() > 0) {
    if (remaining != nullptr && (flags & TIMER_ABSTIME) == 0) *remaining = to_timespec(left);
    return EINTR;
  }
  return 0;
}

int usleep(useconds_t microseconds) noexcept {
  if (!sleep_patched()) return real_usleep(microseconds);
  const errno_keeper saved;
  if (cooperative_sleep(std::chrono::microseconds(microseconds)).count() > 0) {
    errno = EINTR;
    return -1;
  }
  saved.restore();
  return 0;
}

unsigned sleep(unsigned seconds) noexcept {
  if (!sleep_patched()) return real_sleep(seconds);
  const nanoseconds left = cooperative_sleep(std::chrono::seconds(seconds));
  // glibc rounds the unslept time to the nearest second.
  return static_cast<unsigned>((left.count() + 500'000'000) / 1'000'000'000);
}

int poll(pollfd* fds, nfds_t count, int timeout_ms) noexcept {
  if (fds != nullptr && any_poisoned(fds, count)) return poll_with_poison(fds, count);
  if (timeout_ms == 0 || !poll_patched()) return real_poll(fds, count, timeout_ms);
  return cooperative_poll(
      fds, count, timeout_ms < 0 ? wait_time::forever() : wait_time(std::chrono::milliseconds(timeout_ms)));
}

int ppoll(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask) noexcept {
  // The signal mask is not applied: greenlets do not take signals in a
  // ppoll window (greenev runs signal handlers in their own greenlet).
  if (fds != nullptr && any_poisoned(fds, count)) return poll_with_poison(fds, count);
  if (!poll_patched() || (timeout != nullptr && to_ns(*timeout).count() == 0)) {
    return real_ppoll(fds, count, timeout, mask);
  }
  if (timeout != nullptr && !valid(*timeout)) {
    errno = EINVAL;
    return -1;
  }
  return cooperative_poll(fds, count, timeout == nullptr ? wait_time::forever() : wait_time(to_ns(*timeout)));
}

int __poll_chk(pollfd* fds, nfds_t count, int timeout_ms, size_t fds_length) noexcept;
[[noreturn]] void __chk_fail() noexcept;

int __poll_chk(pollfd* fds, nfds_t count, int timeout_ms, size_t fds_length) noexcept {
  if (fds_length / sizeof(pollfd) < count) __chk_fail();
  return poll(fds, count, timeout_ms);
}

int select(int nfds, fd_set* read, fd_set* write, fd_set* except, timeval* timeout) noexcept {
  const bool zero = timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_usec == 0;
  if ((zero || !poll_patched()) && !any_poisoned(nfds, read, write, except)) {
    return real_select(nfds, read, write, except, timeout);
  }
  if (nfds < 0 || nfds > FD_SETSIZE ||
      (timeout != nullptr &&
       (timeout->tv_sec < 0 || timeout->tv_usec < 0 || timeout->tv_usec >= 1'000'000))) {
    errno = EINVAL;
    return -1;
  }
  wait_time limit = wait_time::forever();
  const auto start = std::chrono::steady_clock::now();
  nanoseconds asked{0};
  if (timeout != nullptr) {
    asked = std::chrono::seconds(timeout->tv_sec) + std::chrono::microseconds(timeout->tv_usec);
    limit = wait_time(asked);
  }
  const int result = cooperative_select(nfds, read, write, except, limit);
  if (timeout != nullptr) {
    // Linux writes back the time not slept.
    const nanoseconds left = std::max(nanoseconds(0), asked - (std::chrono::steady_clock::now() - start));
    timeout->tv_sec = static_cast<time_t>(left.count() / 1'000'000'000);
    timeout->tv_usec = static_cast<suseconds_t>(left.count() % 1'000'000'000 / 1000);
  }
  return result;
}

int pselect(int nfds, fd_set* read, fd_set* write, fd_set* except, const timespec* timeout,
            const sigset_t* mask) noexcept {
  if ((!poll_patched() || (timeout != nullptr && to_ns(*timeout).count() == 0)) &&
      !any_poisoned(nfds, read, write, except)) {
    return real_pselect(nfds, read, write, except, timeout, mask);
  }
  if (nfds < 0 || nfds > FD_SETSIZE || (timeout != nullptr && !valid(*timeout))) {
    errno = EINVAL;
    return -1;
  }
  return cooperative_select(nfds, read, write, except,
                            timeout == nullptr ? wait_time::forever() : wait_time(to_ns(*timeout)));
}

}  // extern "C"
