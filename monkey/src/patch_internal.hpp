// Private: shared machinery of the libc interposers (patch_*.cpp). The rules
// are in docs/design.md, "Interposition"; the error contract in
// docs/errors.md, "The interposed libc layer".
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>

#include <greenev/hub.hpp>
#include <greenev/monkey.hpp>

namespace greenev::monkey::detail {

// ---- which groups are patched ------------------------------------------

inline constexpr unsigned socket_bit = 1;
inline constexpr unsigned time_bit = 2;
inline constexpr unsigned dns_bit = 4;
inline constexpr unsigned select_bit = 8;
extern constinit std::atomic<unsigned> patched_groups;

[[nodiscard]] inline bool patched(unsigned bit) noexcept {
  return (patched_groups.load(std::memory_order_relaxed) & bit) != 0;
}

// Linking anchors: patch.cpp calls these so that linking patch_all() from a
// static library also links every object that defines interposers (and
// nothing links them otherwise). docs/design.md, "Interposition".
void link_io_interposers() noexcept;
void link_wait_interposers() noexcept;
void link_dns_interposers() noexcept;

// ---- the real libc functions -------------------------------------------

// dlsym(RTLD_NEXT, name): the next definition after the object holding the
// interposers (libc, or a sanitizer's interceptor in front of it). Aborts
// with a message if libc lacks it.
void* resolve_next(const char* name) noexcept;

// A libc function found lazily on first use. constinit, so no static
// initialiser runs: interposers may be called before main() or during exit.
// Racing first calls both resolve and store the same pointer.
template <class Fn>
class real_function {
 public:
  explicit constexpr real_function(const char* name) noexcept : name_(name) {}
  template <class... Args>
  auto operator()(Args... args) const noexcept {
    void* p = pointer_.load(std::memory_order_acquire);
    if (p == nullptr) [[unlikely]] {
      p = resolve_next(name_);
      pointer_.store(p, std::memory_order_release);
    }
    return reinterpret_cast<Fn>(p)(args...);
  }

 private:
  const char* name_;
  mutable std::atomic<void*> pointer_{nullptr};
};

// ---- per-fd records: the user's view of an fd ----------------------------

enum fd_flags : std::uint32_t {
  fd_known = 1u << 0,          // classified (the other bits mean something)
  fd_socket = 1u << 1,         // a socket
  fd_pipe = 1u << 2,           // a pipe made through our pipe()/pipe2()
  fd_stream = 1u << 3,         // a byte stream: blocking writes send everything
  fd_managed = 1u << 4,        // greenev set O_NONBLOCK in the kernel
  fd_user_nonblock = 1u << 5,  // the user's O_NONBLOCK (what F_GETFL reports)
  fd_poisoned = 1u << 6,       // an interruption cut a call on it short: dead until closed
};

struct fd_record {
  std::atomic<std::uint32_t> flags{0};
  // The last read was short: wait before the next one. Its own word, so the
  // per-read updates are plain stores, not read-modify-writes of `flags`.
  std::atomic<bool> drained{false};
  std::atomic<std::int64_t> receive_timeout_ns{0};  // SO_RCVTIMEO; 0 = none
  std::atomic<std::int64_t> send_timeout_ns{0};     // SO_SNDTIMEO; 0 = none
  // The thread whose libev loop last registered this fd (see wait_fd).
  std::atomic<const void*> registered_by{nullptr};
  // With fd_poisoned: the file the poison was put on (fstat), so a number
  // closed and reused behind our back (libc internals, a raw syscall) does
  // not inherit it.
  std::atomic<std::uint64_t> poisoned_device{0};
  std::atomic<std::uint64_t> poisoned_inode{0};
};

// The record of `fd`, or nullptr for a negative or huge fd (those pass
// through). Allocates a chunk of records on first use; never throws (a
// failed allocation also means pass-through).
fd_record* record_of(int fd) noexcept;
// The record of `fd` if one was ever allocated, else nullptr; never allocates.
fd_record* find_record(int fd) noexcept;
// Forgets everything about `fd` (closed, or about to be reused).
void reset_record(int fd) noexcept;
// Gives `to` the record of `from` (dup: they share one open file description).
void copy_record(int from, int to) noexcept;
// ---- poisoned fds ---------------------------------------------------------
//
// An interruption (kill, outer timeout) that makes a patched call on an fd
// fail leaves the C library that made it mid-protocol: a query sent and its
// answer unread. Retrying on that fd would read the old answer as the new
// one, so the fd is poisoned: every later data call on it fails with
// poisoned_errno, poll/select report it ready with POLLERR|POLLHUP, until
// close() (or dup2 onto it). docs/design.md, "Interposition".

inline constexpr int poisoned_errno = ECONNABORTED;

// Poisons `fd` if it is a socket or one of our pipes (socket group patched).
void poison_fd(int fd) noexcept;
// True if `record` (of `fd`) is poisoned and still names the same file;
// forgets a stale poison. Cheap when nothing was ever poisoned.
[[nodiscard]] bool still_poisoned(int fd, fd_record& record) noexcept;
// still_poisoned for an fd whose record may not exist (never allocates).
[[nodiscard]] bool is_poisoned(int fd) noexcept;
// False until the first fd is poisoned (then true for good): one load.
[[nodiscard]] bool some_fd_poisoned() noexcept;
// Fails a call on a poisoned fd: -1/poisoned_errno.
inline ssize_t fail_poisoned() noexcept {
  errno = poisoned_errno;
  return -1;
}

// Records a new fd made by a patched call: its kind and the user's
// O_NONBLOCK. With `manage`, the kernel fd is already non-blocking.
void record_new_fd(int fd, std::uint32_t kind, bool user_nonblock, bool manage) noexcept;
// Classifies an unknown fd (fstat, SO_TYPE) and, if it is a socket or one of
// our pipes the user keeps blocking, makes it non-blocking in the kernel.
// Returns the flags now in force.
std::uint32_t prepare_fd(int fd, fd_record& record) noexcept;

// ---- waiting, and interruptions ----------------------------------------

enum class wait_outcome { ready, timed_out, closed, interrupted, failed };

// Parks until `fd` is readable (events 1) or writable (2), or `timeout`.
// Returns how the wait ended; `failed` leaves errno set. Never throws: a
// kill or an outer timeout is stored as the greenlet's interruption.
wait_outcome wait_fd(int fd, int events, fd_record& record, wait_time timeout) noexcept;

// Records the exception in flight as the calling greenlet's interruption
// (rethrown by rethrow_if_interrupted). Call only inside a catch block.
void store_interruption() noexcept;
// True if the calling greenlet has an interruption pending: patched calls
// then fail at once without switching.
[[nodiscard]] bool interruption_pending() noexcept;

// errno as the caller left it: a call that succeeds after a switch must not
// leak another greenlet's errno (libc leaves errno alone on success).
class errno_keeper {
 public:
  errno_keeper() noexcept : saved_(errno) {}
  void restore() const noexcept { errno = saved_; }

 private:
  int saved_;
};

// A per-call deadline from an SO_RCVTIMEO / SO_SNDTIMEO value (0 = none).
class deadline {
 public:
  explicit deadline(std::int64_t timeout_ns) noexcept : forever_(timeout_ns <= 0) {
    if (!forever_) at_ = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
  }
  [[nodiscard]] wait_time left() const noexcept {
    if (forever_) return wait_time::forever();
    return wait_time(at_ - std::chrono::steady_clock::now());
  }

 private:
  bool forever_;
  std::chrono::steady_clock::time_point at_{};
};

// Fails a patched call the way docs/errors.md says for `outcome`.
inline ssize_t fail(wait_outcome outcome) noexcept {
  switch (outcome) {
    case wait_outcome::timed_out:
      errno = EAGAIN;
      break;
    case wait_outcome::closed:
      errno = EBADF;
      break;
    case wait_outcome::interrupted:
      errno = ECANCELED;
      break;
    case wait_outcome::failed:
    case wait_outcome::ready:
      break;  // errno already says why
  }
  return -1;
}

}  // namespace greenev::monkey::detail
