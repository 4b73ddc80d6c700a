// tests/support/captured_process.hpp — an external program (curl) run as a child
// with its stdout and stderr captured, waited for cooperatively so that a
// server in the test's own hub keeps running meanwhile.
//
//   greenev::testing::captured_process curl({"curl", "-sS", url});
//   const auto [status, output] = curl.wait(10s);   // greenlets run meanwhile
//
// The destructor kills (SIGKILL) and reaps a child still running, so that no
// path through a test, a failed assertion included, leaves a process behind.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <vector>

#include <greenev/hub.hpp>
#include <greenev/io.hpp>

extern char** environ;

namespace greenev::testing {

class captured_process {
 public:
  struct result {
    int status = -1;  // the exit status; -1 if killed or still running at the limit
    std::string output;
  };

  /// Starts argv[0] (looked up in PATH). Throws std::system_error if it cannot.
  explicit captured_process(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int error = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    if (error != 0) {
      ::close(fds[0]);
      pid_ = -1;
      throw std::system_error(error, std::generic_category(), "posix_spawnp " + argv[0]);
    }
    out_ = fds[0];
    greenev::set_non_blocking(out_);
  }
  captured_process(const captured_process&) = delete;
  captured_process& operator=(const captured_process&) = delete;
  ~captured_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) greenev::close_fd(out_);
  }

  /// Collects the output until the child closes it and exits, waiting at most
  /// `limit` in all (then the child is killed and status is -1). Switches.
  result wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    result r;
    char chunk[4096];
    while (out_ >= 0) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero() || !greenev::wait_read(out_, left)) break;
      const ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n > 0) {
        r.output.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EAGAIN) {
        greenev::close_fd(out_);
        out_ = -1;
      }
    }
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        pid_ = -1;
        r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        break;
      }
      greenev::sleep(0.01);
    }
    return r;  // still running: the destructor kills it
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

}  // namespace greenev::testing
