// Child processes: posix_spawn to start them, a pidfd to wait for them on
// the hub (no SIGCHLD handler, so only our own children are reaped), and
// non-blocking pipes read and written with the hub's fd waits.
#include <greenev/subprocess.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/io.hpp>

#include "fd_io.hpp"

extern char** environ;

namespace greenev {

namespace {

using steady = std::chrono::steady_clock;

std::string command_text(const std::vector<std::string>& argv) {
  std::string text;
  for (const std::string& arg : argv) {
    if (!text.empty()) text += ' ';
    text += arg;
  }
  return text;
}

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), "greenev: " + what);
}

// A pidfd for `pid` (Linux 5.3), or -1 where the kernel has none: then
// wait() polls waitpid instead.
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    (void)::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#endif
  (void)pid;
  return -1;
}

int signal_child(pid_t pid, int pidfd, int signal) noexcept {
#ifdef SYS_pidfd_send_signal
  // By pidfd where there is one: it cannot hit a recycled pid.
  if (pidfd >= 0) return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
#endif
  (void)pidfd;
  return ::kill(pid, signal);
}

using detail::write_without_sigpipe;

void close_quietly(int& fd) noexcept {
  if (fd >= 0) {
    cancel_wait(fd);
    ::close(fd);
    fd = -1;
  }
}

wait_time left_until(std::optional<steady::time_point> deadline) {
  if (!deadline) return wait_time::forever();
  return wait_time(std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - steady::now()));
}

std::optional<steady::time_point> deadline_of(wait_time timeout) {
  if (timeout.is_forever()) return std::nullopt;
  return steady::now() + timeout.duration();
}

std::string read_some(int fd, std::size_t max, const char* what) {
  if (fd < 0)
    throw std::logic_error(std::string("greenev: subprocess: ") + what + ": that stream is not a pipe");
  std::string data(max == 0 ? 1 : max, '\0');
  for (;;) {
    const ssize_t got = ::read(fd, data.data(), data.size());
    if (got >= 0) {
      data.resize(static_cast<std::size_t>(got));
      return data;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) throw_errno(errno, std::string("subprocess: ") + what);
    wait_read(fd);
  }
}

// The program's path, looked up as execvp would (PATH, or the default path,
// for a name without '/'). Done here rather than left to the spawn so that a
// missing program is an error naming it wherever the child cannot report an
// exec failure (valgrind runs vfork as fork), as Python's own lookup does.
std::string find_program(const std::string& name, const std::string& path_variable, const std::string& cwd) {
  if (name.find('/') != std::string::npos) {
    const std::string path = name.front() == '/' || cwd.empty() ? name : cwd + "/" + name;
    if (::access(path.c_str(), X_OK) != 0) throw_errno(errno, "subprocess: cannot start '" + name + "'");
    return name;
  }
  int error = ENOENT;
  std::string_view rest = path_variable;
  for (;;) {
    const std::size_t colon = rest.find(':');
    std::string directory(rest.substr(0, colon));
    if (directory.empty()) directory = ".";
    const std::string path = directory + "/" + name;
    struct stat info {};
    if (::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode)) {
      if (::access(path.c_str(), X_OK) == 0) return path;
      error = EACCES;
    }
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  throw_errno(error, "subprocess: cannot start '" + name + "'" +
                         (error == ENOENT ? ": no such program in PATH (" + path_variable + ")" : ""));
}

std::string describe_status(int returncode) {
  if (returncode >= 0) return "returned non-zero exit status " + std::to_string(returncode);
  const char* name = ::sigabbrev_np(-returncode);
  return "died with signal " + std::to_string(-returncode) +
         (name != nullptr ? std::string(" (SIG") + name + ")" : "");
}

}  // namespace

subprocess_timeout::subprocess_timeout(const void* source, std::chrono::nanoseconds after,
                                       std::vector<std::string> argv, std::string out, std::string err)
    : timeout_error(source, after), argv_(std::move(argv)), out_(std::move(out)), err_(std::move(err)) {}

called_process_error::called_process_error(int returncode, std::vector<std::string> argv, std::string out,
                                           std::string err)
    : std::runtime_error("greenev: command '" + command_text(argv) + "' " + describe_status(returncode)),
      returncode_(returncode),
      argv_(std::move(argv)),
      out_(std::move(out)),
      err_(std::move(err)) {}

subprocess::subprocess(std::vector<std::string> argv, subprocess_options options) : argv_(std::move(argv)) {
  if (argv_.empty()) throw std::invalid_argument("greenev: subprocess: an empty argv (no program to run)");
  if (options.in == stdio::to_stdout || options.out == stdio::to_stdout) {
    throw std::invalid_argument("greenev: subprocess: stdio::to_stdout is for stderr only");
  }
  std::vector<std::string> env_entries;
  if (options.env) {
    for (const auto& [name, value] : *options.env) {
      if (name.empty() || name.find('=') != std::string::npos) {
        throw std::invalid_argument("greenev: subprocess: bad environment variable name '" + name + "'");
      }
      env_entries.push_back(name + "=" + value);
    }
  }
  if (!options.cwd.empty()) {
    struct stat info {};
    const int error = ::stat(options.cwd.c_str(), &info) != 0 ? errno : S_ISDIR(info.st_mode) ? 0 : ENOTDIR;
    if (error != 0)
      throw_errno(error, "subprocess: cannot start '" + argv_[0] + "' in '" + options.cwd + "'");
  }
  std::string path_variable = "/bin:/usr/bin";  // glibc's default for execvp
  if (options.env) {
    if (const auto found = options.env->find("PATH"); found != options.env->end())
      path_variable = found->second;
  } else if (const char* inherited = std::getenv("PATH")) {
    path_variable = inherited;
  }
  const std::string program = find_program(argv_[0], path_variable, options.cwd);
  std::vector<char*> args;
  for (std::string& arg : argv_) args.push_back(arg.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& entry : env_entries) envp.push_back(entry.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (const int error = posix_spawn_file_actions_init(&actions); error != 0) throw_errno(error, "subprocess");
  const detail::scope_exit destroy_actions(
      [&actions]() noexcept { posix_spawn_file_actions_destroy(&actions); });
  if (const int error = posix_spawnattr_init(&attributes); error != 0) throw_errno(error, "subprocess");
  const detail::scope_exit destroy_attributes(
      [&attributes]() noexcept { posix_spawnattr_destroy(&attributes); });

  // The child starts with no signal blocked, and SIGPIPE and SIGXFSZ at their
  // defaults (the parent may ignore them), as Python's restore_signals.
  sigset_t none;
  sigset_t defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  // The child's ends, closed here once it started; the parent's ends are
  // members (O_CLOEXEC both: no other child inherits them).
  std::array<int, 3> child_ends{-1, -1, -1};
  const detail::scope_exit close_child_ends([&child_ends]() noexcept {
    for (int fd : child_ends) {
      if (fd >= 0) ::close(fd);
    }
  });
  // On any failure from here the parent's ends close (the child ends by scope).
  try {
    const std::array<stdio, 3> modes{options.in, options.out, options.err};
    const std::array<int*, 3> parent_ends{&in_, &out_, &err_};
    for (int target = 0; target < 3; ++target) {
      int error = 0;
      switch (modes[static_cast<std::size_t>(target)]) {
        case stdio::inherit:
          break;
        case stdio::pipe: {
          int ends[2];
          if (::pipe2(ends, O_CLOEXEC) != 0) throw_errno(errno, "subprocess: pipe");
          const bool child_reads = target == 0;
          child_ends[static_cast<std::size_t>(target)] = ends[child_reads ? 0 : 1];
          *parent_ends[static_cast<std::size_t>(target)] = ends[child_reads ? 1 : 0];
          // Only the parent's end: each end of a pipe is its own open file.
          set_non_blocking(ends[child_reads ? 1 : 0]);
          error = posix_spawn_file_actions_adddup2(&actions, ends[child_reads ? 0 : 1], target);
          break;
        }
        case stdio::devnull:
          error = posix_spawn_file_actions_addopen(&actions, target, "/dev/null",
                                                   target == 0 ? O_RDONLY : O_WRONLY, 0);
          break;
        case stdio::to_stdout:
          error = posix_spawn_file_actions_adddup2(&actions, 1, 2);
          break;
      }
      if (error != 0) throw_errno(error, "subprocess");
    }
    if (!options.cwd.empty()) {
      if (const int error = posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str()); error != 0) {
        throw_errno(error, "subprocess");
      }
    }
    const int error = ::posix_spawn(&pid_, program.c_str(), &actions, &attributes, args.data(),
                                    options.env ? envp.data() : environ);
    if (error != 0) {
      pid_ = -1;
      std::string what = "subprocess: cannot start '" + argv_[0] + "'";
      if (error == ENOENT && !options.cwd.empty())
        what += " (no such program, or no directory '" + options.cwd + "')";
      throw_errno(error, what);
    }
  } catch (...) {
    close_pipes();
    throw;
  }
  pidfd_ = open_pidfd(pid_);
}

subprocess::subprocess(subprocess&& other) noexcept
    : argv_(std::move(other.argv_)),
      pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      in_(std::exchange(other.in_, -1)),
      out_(std::exchange(other.out_, -1)),
      err_(std::exchange(other.err_, -1)),
      returncode_(std::exchange(other.returncode_, std::nullopt)),
      talk_(std::move(other.talk_)) {}

subprocess& subprocess::operator=(subprocess&& other) noexcept {
  if (this != &other) {
    subprocess old(std::move(*this));
    argv_ = std::move(other.argv_);
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    in_ = std::exchange(other.in_, -1);
    out_ = std::exchange(other.out_, -1);
    err_ = std::exchange(other.err_, -1);
    returncode_ = std::exchange(other.returncode_, std::nullopt);
    talk_ = std::move(other.talk_);
  }
  return *this;
}

subprocess::~subprocess() {
  close_pipes();
  if (pid_ > 0 && !returncode_) {
    // Still running (or exited, not reaped): end it now rather than leave a
    // zombie or an orphan. SIGKILL cannot be caught, so this wait is short.
    (void)signal_child(pid_, pidfd_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  close_quietly(pidfd_);
}

void subprocess::close_pipes() noexcept {
  close_quietly(in_);
  close_quietly(out_);
  close_quietly(err_);
}

void subprocess::reap(int status) noexcept {
  if (WIFEXITED(status)) {
    returncode_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    returncode_ = -WTERMSIG(status);
  }
}

// Reaps the child if it has exited. Our own children only: waitpid on its pid.
bool subprocess::exited_now() {
  if (returncode_) return true;
  if (pid_ <= 0) throw std::logic_error("greenev: subprocess: a moved-from subprocess has no child");
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      reap(status);
      return returncode_.has_value();
    }
    if (done == 0) return false;
    if (errno == EINTR) continue;
    if (errno == ECHILD) {
      throw std::system_error(ECHILD, std::generic_category(),
                              "greenev: subprocess: pid " + std::to_string(pid_) +
                                  " was reaped by someone else (a waitpid(-1) in the program?)");
    }
    throw_errno(errno, "subprocess: waitpid");
  }
}

std::optional<int> subprocess::poll() {
  (void)exited_now();
  return returncode_;
}

int subprocess::wait(wait_time timeout) {
  const auto deadline = deadline_of(timeout);
  while (!exited_now()) {
    const wait_time left = left_until(deadline);
    if (!left.is_forever() && left.is_poll()) throw subprocess_timeout(this, timeout.duration(), argv_);
    if (pidfd_ >= 0) {
      // poll, not wait_read: several greenlets may wait for one child.
      pollfd entry{pidfd_, POLLIN, 0};
      (void)greenev::poll(std::span<pollfd>(&entry, 1), left);
    } else {
      // No pidfd (a kernel before 5.3): look again every few milliseconds.
      const std::chrono::nanoseconds step = std::chrono::milliseconds(5);
      greenev::sleep(left.is_forever() ? step : std::min(step, left.duration()));
    }
  }
  return *returncode_;
}

void subprocess::send_signal(int signal) {
  if (returncode_ || pid_ <= 0) return;
  if (signal_child(pid_, pidfd_, signal) != 0 && errno != ESRCH) {
    throw_errno(errno, "subprocess: signal " + std::to_string(signal) + " to pid " + std::to_string(pid_));
  }
}

void subprocess::terminate() {
  send_signal(SIGTERM);
}

void subprocess::kill() {
  send_signal(SIGKILL);
}

void subprocess::write_input(std::string_view data) {
  if (in_ < 0) throw std::logic_error("greenev: subprocess: write_input: stdin is not a pipe");
  while (!data.empty()) {
    const ssize_t written = write_without_sigpipe(in_, data.data(), data.size());
    if (written >= 0) {
      data.remove_prefix(static_cast<std::size_t>(written));
    } else if (errno == EAGAIN) {
      wait_write(in_);
    } else if (errno != EINTR) {
      throw_errno(errno, "subprocess: write_input");
    }
  }
}

void subprocess::close_input() {
  close_quietly(in_);
}

std::string subprocess::read_output(std::size_t max) {
  return read_some(out_, max, "read_output (stdout)");
}

std::string subprocess::read_error_output(std::size_t max) {
  return read_some(err_, max, "read_error_output (stderr)");
}

// State kept across a timed-out communicate(), so that calling it again
// loses nothing (Python's contract): the input and how much of it went, and
// the output read so far.
struct subprocess::communication {
  std::string input;
  std::size_t sent = 0;
  output got;
};

subprocess::output subprocess::communicate(std::string_view input, wait_time timeout) {
  if (!talk_) {
    if (!input.empty() && in_ < 0) {
      throw std::invalid_argument("greenev: subprocess: communicate: input given but stdin is not a pipe");
    }
    talk_ = std::make_unique<communication>();
    talk_->input = input;
    if (in_ >= 0 && input.empty()) close_input();
  }
  communication& talk = *talk_;
  const auto deadline = deadline_of(timeout);
  const auto timed_out = [&] {
    return subprocess_timeout(this, timeout.duration(), argv_, talk.got.out, talk.got.err);
  };
  char buffer[65536];
  while (in_ >= 0 || out_ >= 0 || err_ >= 0) {
    std::array<pollfd, 3> entries{};
    std::size_t count = 0;
    if (in_ >= 0) entries[count++] = {in_, POLLOUT, 0};
    if (out_ >= 0) entries[count++] = {out_, POLLIN, 0};
    if (err_ >= 0) entries[count++] = {err_, POLLIN, 0};
    if (greenev::poll(std::span<pollfd>(entries.data(), count), left_until(deadline)) == 0) throw timed_out();
    for (std::size_t i = 0; i < count; ++i) {
      const pollfd& entry = entries[i];
      if (entry.revents == 0) continue;
      if (entry.fd == in_) {
        const ssize_t written =
            write_without_sigpipe(in_, talk.input.data() + talk.sent, talk.input.size() - talk.sent);
        if (written >= 0) {
          talk.sent += static_cast<std::size_t>(written);
          if (talk.sent == talk.input.size()) close_input();
        } else if (errno == EPIPE) {
          close_input();  // the child exited or closed its stdin: not our error
        } else if (errno != EAGAIN && errno != EINTR) {
          throw_errno(errno, "subprocess: communicate: write to stdin");
        }
        continue;
      }
      int& fd = entry.fd == out_ ? out_ : err_;
      std::string& into = entry.fd == out_ ? talk.got.out : talk.got.err;
      const ssize_t read = ::read(fd, buffer, sizeof buffer);
      if (read > 0) {
        into.append(buffer, static_cast<std::size_t>(read));
      } else if (read == 0) {
        close_quietly(fd);
      } else if (errno != EAGAIN && errno != EINTR) {
        throw_errno(errno, "subprocess: communicate: read");
      }
    }
  }
  try {
    wait(left_until(deadline));
  } catch (const subprocess_timeout&) {
    throw timed_out();
  }
  output got = std::move(talk.got);
  talk_.reset();
  return got;
}

completed_process run(std::vector<std::string> argv, run_options options) {
  subprocess_options process = std::move(options.process);
  if (options.input) process.in = stdio::pipe;
  if (options.capture_output) {
    process.out = stdio::pipe;
    if (process.err == stdio::inherit) process.err = stdio::pipe;
  }
  subprocess child(argv, std::move(process));
  subprocess::output got;
  try {
    got = child.communicate(options.input ? *options.input : std::string_view(), options.timeout);
  } catch (const subprocess_timeout&) {
    // Python's run(): the child is killed and reaped before the timeout is raised.
    child.kill();
    child.wait();
    throw;
  }
  completed_process result{std::move(argv), *child.returncode(), std::move(got.out), std::move(got.err)};
  if (options.check && result.returncode != 0) {
    throw called_process_error(result.returncode, result.argv, result.out, result.err);
  }
  return result;
}

std::string check_output(std::vector<std::string> argv, subprocess_options options) {
  options.out = stdio::pipe;
  return run(std::move(argv), {.process = std::move(options), .check = true}).out;
}

void check_call(std::vector<std::string> argv, subprocess_options options) {
  (void)run(std::move(argv), {.process = std::move(options), .check = true});
}

}  // namespace greenev
