// Cooperative file IO: non-blocking waits for what poll(2) can watch, a
// per-thread threadpool for regular files (docs/design.md, "File objects").
#include <greenev/fileobject.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/detail/thread_service.hpp>
#include <greenev/io.hpp>
#include <greenev/threadpool.hpp>

#include "fd_io.hpp"

namespace greenev {

namespace detail {

ssize_t write_without_sigpipe(int fd, const void* data, std::size_t size) noexcept {
  sigset_t pipe_only;
  sigset_t old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigset_t pending;
  sigpending(&pending);
  const bool already_pending = sigismember(&pending, SIGPIPE) == 1;
  const ssize_t written = ::write(fd, data, size);
  const int error = errno;
  if (written < 0 && error == EPIPE && !already_pending) {
    const timespec zero{};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = error;
  return written;
}

}  // namespace detail

namespace {

// The thread's file threadpool: a service of its runtime, so it goes after
// the thread's greenlets were unwound (a worker stuck on a dead NFS mount is
// let go, not joined).
struct file_pool : detail::thread_service {
  threadpool pool{4};
};

threadpool& file_threadpool() {
  return detail::thread_service_of<file_pool>().pool;
}

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), "greenev: " + what);
}

constexpr std::size_t chunk = 65536;

}  // namespace

std::size_t nb_read(int fd, std::span<char> buffer) {
  for (;;) {
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got >= 0) return static_cast<std::size_t>(got);
    if (errno == EAGAIN) {
      wait_read(fd);
    } else if (errno != EINTR) {
      throw_errno(errno, "nb_read(" + std::to_string(fd) + ")");
    }
  }
}

std::size_t nb_write(int fd, std::string_view data) {
  if (data.empty()) return 0;
  for (;;) {
    const ssize_t put = detail::write_without_sigpipe(fd, data.data(), data.size());
    if (put >= 0) return static_cast<std::size_t>(put);
    if (errno == EAGAIN) {
      wait_write(fd);
    } else if (errno != EINTR) {
      throw_errno(errno, "nb_write(" + std::to_string(fd) + ")");
    }
  }
}

std::size_t tp_read(int fd, std::span<char> buffer) {
  // The job reads into its own string: a caller killed meanwhile leaves it
  // nothing of the caller's to write into.
  std::string got = file_threadpool().apply([fd, size = buffer.size()] {
    std::string data(size, '\0');
    ssize_t read = 0;
    do {
      read = ::read(fd, data.data(), size);
    } while (read < 0 && errno == EINTR);
    if (read < 0) throw_errno(errno, "tp_read(" + std::to_string(fd) + ")");
    data.resize(static_cast<std::size_t>(read));
    return data;
  });
  std::copy(got.begin(), got.end(), buffer.begin());
  return got.size();
}

std::size_t tp_write(int fd, std::string_view data) {
  return file_threadpool().apply([fd, copy = std::string(data)] {
    ssize_t put = 0;
    do {
      put = detail::write_without_sigpipe(fd, copy.data(), copy.size());
    } while (put < 0 && errno == EINTR);
    if (put < 0) throw_errno(errno, "tp_write(" + std::to_string(fd) + ")");
    return static_cast<std::size_t>(put);
  });
}

file_object::file_object(int fd, file_object_options options) : fd_(fd), owns_(options.close) {
  struct stat info {};
  if (fd < 0 || ::fstat(fd, &info) != 0)
    throw_errno(fd < 0 ? EBADF : errno, "file_object(" + std::to_string(fd) + ")");
  threaded_ = S_ISREG(info.st_mode) || S_ISDIR(info.st_mode);
  if (!threaded_) {
    original_flags_ = ::fcntl(fd, F_GETFL);
    set_non_blocking(fd);
  }
}

file_object file_object::open(const std::string& path, std::string_view mode) {
  std::string plain(mode);
  std::erase(plain, 'b');
  int flags = 0;
  if (plain == "r") {
    flags = O_RDONLY;
  } else if (plain == "w") {
    flags = O_WRONLY | O_CREAT | O_TRUNC;
  } else if (plain == "a") {
    flags = O_WRONLY | O_CREAT | O_APPEND;
  } else if (plain == "r+") {
    flags = O_RDWR;
  } else if (plain == "w+") {
    flags = O_RDWR | O_CREAT | O_TRUNC;
  } else if (plain == "a+") {
    flags = O_RDWR | O_CREAT | O_APPEND;
  } else {
    throw std::invalid_argument("greenev: file_object::open: bad mode '" + std::string(mode) +
                                "' (r, w, a, r+, w+ or a+)");
  }
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0666);
  if (fd < 0) throw_errno(errno, "file_object::open('" + path + "')");
  try {
    return file_object(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
}

file_object::file_object(file_object&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      owns_(other.owns_),
      threaded_(other.threaded_),
      eof_(other.eof_),
      original_flags_(other.original_flags_),
      in_(std::move(other.in_)),
      out_(std::move(other.out_)) {}

file_object& file_object::operator=(file_object&& other) noexcept {
  if (this != &other) {
    file_object old(std::move(*this));
    fd_ = std::exchange(other.fd_, -1);
    owns_ = other.owns_;
    threaded_ = other.threaded_;
    eof_ = other.eof_;
    original_flags_ = other.original_flags_;
    in_ = std::move(other.in_);
    out_ = std::move(other.out_);
  }
  return *this;
}

file_object::~file_object() {
  try {
    close();
  } catch (...) {  // nowhere to report a failed flush from a destructor: close() does
  }
}

std::size_t file_object::raw_read(std::span<char> buffer) {
  return threaded_ ? tp_read(fd_, buffer) : nb_read(fd_, buffer);
}

void file_object::write_all(std::string_view data) {
  while (!data.empty()) data.remove_prefix(threaded_ ? tp_write(fd_, data) : nb_write(fd_, data));
}

std::size_t file_object::fill(std::size_t max) {
  if (fd_ < 0) throw_errno(EBADF, "file_object: read after close");
  if (eof_) return 0;
  const std::size_t old = in_.size();
  in_.resize(old + std::max<std::size_t>(max, 1));
  std::size_t got = 0;
  try {
    got = raw_read(std::span<char>(in_.data() + old, in_.size() - old));
  } catch (...) {
    in_.resize(old);
    throw;
  }
  in_.resize(old + got);
  if (got == 0) eof_ = true;
  return got;
}

std::string file_object::read_some(std::size_t max) {
  if (in_.empty()) fill(std::min(max, chunk));
  const std::size_t take = std::min(max, in_.size());
  std::string result = in_.substr(0, take);
  in_.erase(0, take);
  return result;
}

std::string file_object::read_all() {
  while (fill(chunk) > 0) {
  }
  return std::exchange(in_, {});
}

std::string file_object::readline(std::size_t max) {
  std::size_t searched = 0;
  for (;;) {
    const std::size_t newline = in_.find('\n', searched);
    std::size_t take = 0;
    if (newline != std::string::npos) {
      take = newline + 1;
    } else if (in_.size() >= max || eof_) {
      take = in_.size();
    } else {
      searched = in_.size();
      fill(chunk);
      continue;
    }
    take = std::min(take, max);
    std::string line = in_.substr(0, take);
    in_.erase(0, take);
    return line;
  }
}

void file_object::write(std::string_view data) {
  if (fd_ < 0) throw_errno(EBADF, "file_object: write after close");
  out_ += data;
  if (out_.size() >= chunk) flush();
}

void file_object::flush() {
  if (out_.empty()) return;
  if (fd_ < 0) throw_errno(EBADF, "file_object: flush after close");
  std::string pending = std::exchange(out_, {});
  write_all(pending);
}

void file_object::close() {
  if (fd_ < 0) return;
  const detail::scope_exit release([this]() noexcept {
    if (owns_) {
      cancel_wait(fd_);
      ::close(fd_);
    } else if (original_flags_ >= 0) {
      (void)::fcntl(fd_, F_SETFL, original_flags_);  // hand the fd back as we found it
    }
    fd_ = -1;
    in_.clear();
  });
  flush();
}

}  // namespace greenev
