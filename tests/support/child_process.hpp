// tests/support/child_process.hpp — external programs (openssl, curl) as
// children of a greenev test, stopped on every path.
//
//   greenev::testing::child_process curl({"curl", "-sS", url});
//   std::string body = curl.read_all(10.0);   // cooperative: greenlets run meanwhile
//   EXPECT_EQ(curl.wait_exit(10.0), 0);
//
// The child's stdin is a pipe (close_stdin() gives it end of file) and its
// stdout and stderr go to one pipe this side reads without blocking the
// thread (greenev::wait_read). The destructor kills the child (SIGKILL) if it
// is still running and reaps it; the child also dies with the thread that
// started it (parent-death signal), so a crashing test leaves nothing behind.
// run_program() runs a short command to its end, blocking the thread (for
// set-up before any greenlet runs).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/hub.hpp>
#include <greenev/io.hpp>

namespace greenev::testing {

namespace detail {

// fork + exec `arguments` with stdin from `in_fd` and stdout/stderr to `out_fd`
// (-1: /dev/null). Returns the pid; throws if fork fails.
inline pid_t spawn_program(const std::vector<std::string>& arguments, int in_fd, int out_fd) {
  std::vector<std::string> copy = arguments;
  std::vector<char*> argv;
  for (std::string& argument : copy) argv.push_back(argument.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(in_fd >= 0 ? in_fd : null_fd, STDIN_FILENO);
    ::dup2(out_fd >= 0 ? out_fd : null_fd, STDOUT_FILENO);
    ::dup2(out_fd >= 0 ? out_fd : null_fd, STDERR_FILENO);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace detail

/// Runs `arguments` to its end, blocking the thread; returns its output
/// (stdout and stderr). Throws std::runtime_error with that output if it
/// exits with a non-zero status.
inline std::string run_program(const std::vector<std::string>& arguments) {
  char path[] = "/tmp/greenev-run-XXXXXX";
  const int out = ::mkstemp(path);
  if (out < 0) throw std::runtime_error("mkstemp failed");
  ::unlink(path);
  const pid_t pid = detail::spawn_program(arguments, -1, out);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string output;
  ::lseek(out, 0, SEEK_SET);
  char buffer[4096];
  for (ssize_t n; (n = ::read(out, buffer, sizeof buffer)) > 0;)
    output.append(buffer, static_cast<std::size_t>(n));
  ::close(out);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (const std::string& argument : arguments) command += argument + " ";
    throw std::runtime_error("command failed: " + command + "\n" + output);
  }
  return output;
}

/// A running external program with piped stdin and output. Not copyable.
class child_process {
 public:
  explicit child_process(const std::vector<std::string>& arguments) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    try {
      pid_ = detail::spawn_program(arguments, in[0], out[1]);
    } catch (...) {
      for (const int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
      throw;
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    output_fd_ = out[0];
    set_non_blocking(output_fd_);
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() {
    close_stdin();
    if (output_fd_ >= 0) {
      cancel_wait(output_fd_);
      ::close(output_fd_);
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// Everything the child wrote so far (what the read calls collected).
  [[nodiscard]] const std::string& output() const noexcept { return output_; }

  /// Ends the child's input.
  void close_stdin() noexcept {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }

  /// Reads the child's output until it contains `needle` (true) or
  /// `limit` passes or the output ends (false). Cooperative.
  bool read_until(std::string_view needle, double limit) {
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(limit));
    while (output_.find(needle) == std::string::npos) {
      if (!read_some(deadline)) return false;
    }
    return true;
  }

  /// Reads the child's output to its end (or until `limit`); returns it all.
  const std::string& read_all(double limit) {
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(limit));
    while (read_some(deadline)) {
    }
    return output_;
  }

  /// Waits up to `limit` seconds (cooperatively) for the child to exit;
  /// returns its exit status, 128 + the signal if killed, -1 if still running.
  int wait_exit(double limit) {
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(limit));
    while (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      greenev::sleep(0.01);
    }
    return status_;
  }

 private:
  // One read; false at end of output or past the deadline.
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    if (output_fd_ < 0) return false;
    for (;;) {
      char buffer[4096];
      const ssize_t n = ::read(output_fd_, buffer, sizeof buffer);
      if (n > 0) {
        output_.append(buffer, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) return false;
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero() || !wait_read(output_fd_, left)) return false;
    }
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int output_fd_ = -1;
  int status_ = -1;
  std::string output_;
};

}  // namespace greenev::testing
