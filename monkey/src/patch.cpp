// patch_all() and friends, the per-fd records, and how a patched call waits
// and carries a kill out of C code. docs/design.md, "Interposition".
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <new>
#include <system_error>

#include <greenev/detail/patch_support.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/errors.hpp>
#include <greenev/io.hpp>
#include <greenev/local.hpp>
#include <greenev/monkey.hpp>

#include "patch_internal.hpp"

namespace greenev::monkey {

namespace detail {

constinit std::atomic<unsigned> patched_groups{0};

namespace {

void enable(unsigned bits) noexcept {
  // Referencing the anchors is what links the interposers into a program
  // that uses a static greenev; calling them costs nothing.
  link_io_interposers();
  link_wait_interposers();
  link_dns_interposers();
  patched_groups.fetch_or(bits, std::memory_order_relaxed);
}

// Records live in 1024 chunks of 1024, allocated on first use and never
// freed (an fd may be used during exit), so lookups take no lock.
constexpr int chunk_bits = 10;
constexpr int chunk_size = 1 << chunk_bits;
constexpr int chunk_count = 1024;
constinit std::atomic<fd_record*> chunks[chunk_count]{};

real_function<int (*)(int, int, ...)> real_fcntl{"fcntl"};

}  // namespace

void* resolve_next(const char* name) noexcept {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (p == nullptr) {
    // The default reporter calls write(), which may be ours and resolve in turn:
    // a failure met while reporting one aborts at once instead of recursing.
    static constinit std::atomic<bool> reporting{false};
    if (!reporting.exchange(true)) {
      char line[256];
      std::snprintf(line, sizeof line, "greenev: cannot find libc's %s (dlsym RTLD_NEXT)", name);
      greenev::detail::report_error(line);
    }
    std::abort();
  }
  return p;
}

fd_record* record_of(int fd) noexcept {
  if (fd < 0 || fd >= chunk_size * chunk_count) return nullptr;
  std::atomic<fd_record*>& slot = chunks[fd >> chunk_bits];
  fd_record* chunk = slot.load(std::memory_order_acquire);
  if (chunk == nullptr) [[unlikely]] {
    auto* fresh = new (std::nothrow) fd_record[chunk_size];
    if (fresh == nullptr) return nullptr;
    if (slot.compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel)) {
      chunk = fresh;
    } else {
      delete[] fresh;  // another thread won; `chunk` is theirs
    }
  }
  return &chunk[fd & (chunk_size - 1)];
}

fd_record* find_record(int fd) noexcept {
  if (fd < 0 || fd >= chunk_size * chunk_count) return nullptr;
  fd_record* chunk = chunks[fd >> chunk_bits].load(std::memory_order_acquire);
  return chunk == nullptr ? nullptr : &chunk[fd & (chunk_size - 1)];
}

void reset_record(int fd) noexcept {
  fd_record* r = find_record(fd);
  if (r == nullptr) return;  // never recorded anything
  r->flags.store(0, std::memory_order_relaxed);
  r->drained.store(false, std::memory_order_relaxed);
  r->receive_timeout_ns.store(0, std::memory_order_relaxed);
  r->send_timeout_ns.store(0, std::memory_order_relaxed);
  r->registered_by.store(nullptr, std::memory_order_relaxed);
  r->poisoned_device.store(0, std::memory_order_relaxed);
  r->poisoned_inode.store(0, std::memory_order_relaxed);
}

void copy_record(int from, int to) noexcept {
  fd_record* source = record_of(from);
  fd_record* target = record_of(to);
  if (target == nullptr) return;
  reset_record(to);
  if (source == nullptr) return;
  target->flags.store(source->flags.load(std::memory_order_relaxed), std::memory_order_relaxed);
  target->receive_timeout_ns.store(source->receive_timeout_ns.load(std::memory_order_relaxed),
                                   std::memory_order_relaxed);
  target->send_timeout_ns.store(source->send_timeout_ns.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
  // A copy of a poisoned fd is the same dead connection.
  target->poisoned_device.store(source->poisoned_device.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
  target->poisoned_inode.store(source->poisoned_inode.load(std::memory_order_relaxed),
                               std::memory_order_relaxed);
}

void record_new_fd(int fd, std::uint32_t kind, bool user_nonblock, bool manage) noexcept {
  fd_record* r = record_of(fd);
  if (r == nullptr) return;
  reset_record(fd);
  std::uint32_t flags = fd_known | kind;
  if (user_nonblock) flags |= fd_user_nonblock;
  if (manage) flags |= fd_managed;
  r->flags.store(flags, std::memory_order_relaxed);
}

namespace {

// The kind of an fd we did not see being made, recorded once.
// Only sockets are adopted: an inherited FIFO's open file description is
// shared with other processes (a shell), whose reads O_NONBLOCK would break.
std::uint32_t classify_fd(int fd, fd_record& record) noexcept {
  std::uint32_t flags = record.flags.load(std::memory_order_relaxed);
  if ((flags & fd_known) != 0) return flags;
  struct stat st {};
  flags = fd_known;
  if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
    flags |= fd_socket;
    int type = 0;
    socklen_t length = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_STREAM) {
      flags |= fd_stream;
    }
    const int status = real_fcntl(fd, F_GETFL);
    if (status >= 0 && (status & O_NONBLOCK) != 0) flags |= fd_user_nonblock;
  }
  record.flags.store(flags, std::memory_order_relaxed);
  return flags;
}

// Set by the first poison, never cleared: until then no call looks for one.
constinit std::atomic<bool> poison_seen{false};

}  // namespace

std::uint32_t prepare_fd(int fd, fd_record& record) noexcept {
  std::uint32_t flags = classify_fd(fd, record);
  if ((flags & (fd_socket | fd_pipe)) != 0 && (flags & (fd_managed | fd_user_nonblock)) == 0) {
    const int status = real_fcntl(fd, F_GETFL);
    if (status >= 0 && real_fcntl(fd, F_SETFL, status | O_NONBLOCK) == 0) {
      flags |= fd_managed;
      record.flags.fetch_or(fd_managed, std::memory_order_relaxed);
    }
  }
  return flags;
}

void poison_fd(int fd) noexcept {
  if (!patched(socket_bit)) return;
  fd_record* record = record_of(fd);
  if (record == nullptr) return;
  // Regular files, ttys and inherited FIFOs are never cooperative, and may be
  // shared with other code (stdin): a failed call does not desynchronise them.
  const std::uint32_t flags = classify_fd(fd, *record);
  if ((flags & (fd_socket | fd_pipe)) == 0) return;
  // A listener has no conversation to lose (an interrupted accept leaves the
  // connection queued), and accept loops commonly retry on ECONNABORTED.
  int listening = 0;
  socklen_t length = sizeof listening;
  if ((flags & fd_socket) != 0 && ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 &&
      listening != 0) {
    return;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return;  // closed meanwhile: nothing to poison
  record->poisoned_device.store(static_cast<std::uint64_t>(st.st_dev), std::memory_order_relaxed);
  record->poisoned_inode.store(static_cast<std::uint64_t>(st.st_ino), std::memory_order_relaxed);
  record->flags.fetch_or(fd_poisoned, std::memory_order_release);
  poison_seen.store(true, std::memory_order_release);
}

bool still_poisoned(int fd, fd_record& record) noexcept {
  if ((record.flags.load(std::memory_order_acquire) & fd_poisoned) == 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) == 0 &&
      static_cast<std::uint64_t>(st.st_dev) == record.poisoned_device.load(std::memory_order_relaxed) &&
      static_cast<std::uint64_t>(st.st_ino) == record.poisoned_inode.load(std::memory_order_relaxed)) {
    return true;
  }
  // Closed, or closed and reused where we could not see it: a new file.
  reset_record(fd);
  return false;
}

bool some_fd_poisoned() noexcept {
  return poison_seen.load(std::memory_order_acquire);
}

bool is_poisoned(int fd) noexcept {
  if (!some_fd_poisoned()) return false;
  fd_record* record = find_record(fd);
  return record != nullptr && still_poisoned(fd, *record);
}

namespace {

// Identifies this thread's libev loop for fd_record::registered_by.
thread_local const char loop_token = 0;

}  // namespace

wait_outcome wait_fd(int fd, int events, fd_record& record, wait_time timeout) noexcept {
  try {
    // Skip libev's epoll_ctl when this thread's loop registered this very
    // fd before (records are reset on every close and open we see).
    const void* mine = &loop_token;
    const bool fresh = record.registered_by.exchange(mine, std::memory_order_relaxed) != mine;
    try {
      return greenev::detail::wait_owned_fd(fd, events, timeout, fresh, events == 1 ? "read" : "write")
                 ? wait_outcome::ready
                 : wait_outcome::timed_out;
    } catch (const greenlet_error&) {
      // Another greenlet already waits in this direction. libc lets two
      // threads block on one socket, so share the fd through poll instead.
      pollfd entry{fd, static_cast<short>(events == 1 ? POLLIN : POLLOUT), 0};
      return greenev::poll(std::span<pollfd>(&entry, 1), timeout) > 0 ? wait_outcome::ready
                                                                      : wait_outcome::timed_out;
    }
  } catch (const std::system_error& e) {
    if (e.code().value() == EBADF) return wait_outcome::closed;
    errno = e.code().value();
    return wait_outcome::failed;
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
    return wait_outcome::failed;
  } catch (...) {
    store_interruption();
    return wait_outcome::interrupted;
  }
}

namespace {

// The calling greenlet's interruption. `pending_on_thread` counts this
// thread's greenlets holding one, so the common check is one TLS load.
thread_local std::size_t pending_on_thread = 0;

struct interruption {
  interruption() = default;
  interruption(const interruption&) = delete;
  interruption& operator=(const interruption&) = delete;
  ~interruption() {
    if (error) --pending_on_thread;
  }
  std::exception_ptr error;
};

greenlet_local<interruption>& interruptions() {
  // Leaked on purpose: greenlets may die during static destruction.
  static auto* const local = new greenlet_local<interruption>();
  return *local;
}

}  // namespace

void store_interruption() noexcept {
  try {
    interruption& slot = interruptions().get();
    if (!slot.error) ++pending_on_thread;
    // The first interruption wins: a kill during the unwinding of a timeout
    // must not be replaced by it, nor the other way round.
    if (!slot.error) slot.error = std::current_exception();
  } catch (...) {
    // No memory for the slot: the kill is lost, the call still fails.
  }
}

bool interruption_pending() noexcept {
  if (pending_on_thread == 0) return false;
  return interruptions().has_value() && static_cast<bool>(interruptions().get().error);
}

}  // namespace detail

void patch_all() noexcept {
  detail::enable(detail::socket_bit | detail::time_bit | detail::dns_bit | detail::select_bit);
}
void patch_socket() noexcept {
  detail::enable(detail::socket_bit);
}
void patch_time() noexcept {
  detail::enable(detail::time_bit);
}
void patch_dns() noexcept {
  detail::enable(detail::dns_bit);
}
void patch_select() noexcept {
  detail::enable(detail::select_bit);
}

bool is_patched(patch_target what) noexcept {
  switch (what) {
    case patch_target::socket:
      return detail::patched(detail::socket_bit);
    case patch_target::time:
      return detail::patched(detail::time_bit);
    case patch_target::dns:
      return detail::patched(detail::dns_bit);
    case patch_target::select:
      return detail::patched(detail::select_bit);
  }
  return false;
}

bool is_patched(std::string_view what) noexcept {
  if (what == "socket") return is_patched(patch_target::socket);
  if (what == "time") return is_patched(patch_target::time);
  if (what == "dns") return is_patched(patch_target::dns);
  if (what == "select") return is_patched(patch_target::select);
  return false;
}

bool interrupted() noexcept {
  return detail::interruption_pending();
}

void rethrow_if_interrupted() {
  if (!detail::interruption_pending()) return;
  std::exception_ptr error = std::exchange(detail::interruptions().get().error, nullptr);
  --detail::pending_on_thread;
  std::rethrow_exception(error);
}

}  // namespace greenev::monkey
