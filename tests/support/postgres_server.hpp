// tests/support/postgres_server.hpp — a throwaway PostgreSQL server on
// loopback for the libpq interposition tests.
//
//   greenev::testing::postgres_server server;
//   PGconn* conn = PQconnectdb(server.conninfo().c_str());
//
// postgres_server runs Debian's server binaries (package postgresql; the test
// gets their folder from CMake as GREENEV_POSTGRES_BINDIR): initdb makes a
// cluster in a fresh temporary folder (trust authentication, superuser
// "postgres"), then postgres runs in the foreground as a child process on
// 127.0.0.1 and a free port, its Unix socket in that folder too. The
// constructor returns once the server accepts connections; the destructor
// shuts it down at once (SIGQUIT: the postmaster kills its backends) and
// reaps it, then removes the folder. Should the test process die first (a
// crash, ctest's timeout), a watchdog shell stops the postmaster and removes
// the folder when the pipe only the test process writes to closes, so nothing
// is left either way (PR_SET_PDEATHSIG would be simpler, but some sandboxes'
// kernels do not deliver it).
// initdb and postgres refuse to run as root: as root (CI containers) both run
// as the system user "postgres", which owns the folder.
// These helpers block the calling thread (they are not greenev code).
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"  // detail::bound_socket, detail::local_port

extern char** environ;

namespace greenev::testing {

/// A PostgreSQL server in a temporary cluster. Not copyable.
class postgres_server {
 public:
  /// Makes the cluster and starts the server. Throws std::runtime_error
  /// (with the server's log) if that fails or takes more than 60 seconds.
  postgres_server() {
    run_as_ = unprivileged_user();
    char pattern[] = "/tmp/greenev-postgres-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    directory_ = pattern;
    try {
      if (run_as_.has_value() && ::chown(pattern, run_as_->uid, run_as_->gid) != 0) {
        throw std::runtime_error("cannot give " + directory_.string() + " to user postgres");
      }
      start_watchdog();  // from here on, a crash of this process leaves nothing behind
      const int status = run_and_wait({bin("initdb"), "-D", (directory_ / "data").string(), "--auth=trust",
                                       "-U", "postgres", "--no-sync", "--no-instructions"});
      if (status != 0) throw std::runtime_error("initdb failed; its output:\n" + log());
      for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) start();  // a port can be taken meanwhile
      if (pid_ < 0) throw std::runtime_error("postgres did not start; its log:\n" + log());
    } catch (...) {
      stop_watchdog();
      remove_directory();
      throw;
    }
  }
  postgres_server(const postgres_server&) = delete;
  postgres_server& operator=(const postgres_server&) = delete;
  ~postgres_server() {
    stop_watchdog();
    stop();
    remove_directory();
  }

  [[nodiscard]] int port() const noexcept { return port_; }
  /// A libpq connection string for the superuser over TCP on 127.0.0.1.
  [[nodiscard]] std::string conninfo() const {
    return "hostaddr=127.0.0.1 port=" + std::to_string(port_) +
           " user=postgres dbname=postgres connect_timeout=10";
  }
  /// The output of initdb and the server so far (for failure messages).
  [[nodiscard]] std::string log() const {
    std::ifstream file(directory_ / "log");
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  }

 private:
  struct user {
    uid_t uid;
    gid_t gid;
  };

  static std::optional<user> unprivileged_user() {
    if (::geteuid() != 0) return std::nullopt;
    const passwd* entry = ::getpwnam("postgres");
    if (entry == nullptr) {
      throw std::runtime_error(
          "running as root, and there is no user 'postgres' to run the server as "
          "(Debian package postgresql makes it)");
    }
    return user{entry->pw_uid, entry->pw_gid};
  }

  static std::string bin(const char* program) { return std::string(GREENEV_POSTGRES_BINDIR) + "/" + program; }

  // Starts `arguments` as a child with its output appended to the log, as the
  // unprivileged user when root. Returns its pid, or -1.
  pid_t spawn(std::vector<std::string> arguments) {
    const std::string log_path = (directory_ / "log").string();
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    const pid_t child = ::fork();
    if (child != 0) return child;
    // The child: only async-signal-safe calls until exec, and raw system
    // calls where greenev's interposers (a patched dup2) would touch the hub.
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd >= 0) {
      ::syscall(SYS_dup3, log_fd, STDOUT_FILENO, 0);
      ::syscall(SYS_dup3, log_fd, STDERR_FILENO, 0);
    }
    // A shell's background job ignores SIGINT and SIGQUIT, and an ignored
    // signal stays ignored across exec: the postmaster must get SIGQUIT.
    for (const int sig : {SIGINT, SIGQUIT, SIGTERM}) ::signal(sig, SIG_DFL);
    if (run_as_.has_value()) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(run_as_->gid) != 0 || ::setuid(run_as_->uid) != 0) {
        ::_exit(126);
      }
    }
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }

  int run_and_wait(std::vector<std::string> arguments) {
    const pid_t child = spawn(std::move(arguments));
    if (child < 0) return -1;
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void start() {
    {
      const int probe = detail::bound_socket(SOCK_STREAM, 0);
      if (probe < 0) return;
      port_ = detail::local_port(probe);
      ::close(probe);
    }
    pid_ = spawn({bin("postgres"), "-D", (directory_ / "data").string(), "-p", std::to_string(port_), "-k",
                  directory_.string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                  "full_page_writes=off", "-c", "synchronous_commit=off"});
    if (pid_ < 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // gave up (port taken, bad setting)
        pid_ = -1;
        return;
      }
      if (::PQping(conninfo().c_str()) == PQPING_OK) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    stop();
  }

  // A shell that waits for EOF on a pipe whose write end only this process
  // holds (close-on-exec: no server process inherits it), then stops the
  // postmaster named in postmaster.pid (SIGQUIT each second, as one still
  // starting may not handle it yet; SIGKILL after 20 s) and removes the
  // folder. Raw system calls: greenev's interposers would make the pipe
  // non-blocking, and after fork only async-signal-safe calls are allowed.
  void start_watchdog() {
    int ends[2];
    if (::syscall(SYS_pipe2, ends, O_CLOEXEC) != 0) return;
    std::string script =
        "while read -r _; do :; done; pid=$(head -n 1 \"$0/data/postmaster.pid\" 2>/dev/null); "
        "if [ -n \"$pid\" ]; then i=0; while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 200 ]; do "
        "[ $((i % 10)) = 0 ] && kill -QUIT \"$pid\"; sleep 0.1; i=$((i + 1)); done; kill -KILL \"$pid\" "
        "2>/dev/null; "
        "fi; rm -rf \"$0\"";
    std::string directory = directory_.string();
    char sh[] = "/bin/sh";
    char dash_c[] = "-c";
    char* argv[] = {sh, dash_c, script.data(), directory.data(), nullptr};
    watchdog_ = ::fork();
    if (watchdog_ == 0) {
      ::syscall(SYS_dup3, ends[0], STDIN_FILENO, 0);  // without close-on-exec
      ::execve(argv[0], argv, environ);
      ::_exit(127);
    }
    ::syscall(SYS_close, ends[0]);
    if (watchdog_ < 0) {
      ::syscall(SYS_close, ends[1]);
      return;
    }
    watchdog_pipe_ = ends[1];
  }

  void stop_watchdog() noexcept {
    if (watchdog_ > 0) {  // killed, so it cannot signal a reused pid later
      ::kill(watchdog_, SIGKILL);
      ::waitpid(watchdog_, nullptr, 0);
      watchdog_ = -1;
    }
    if (watchdog_pipe_ >= 0) {
      ::syscall(SYS_close, watchdog_pipe_);
      watchdog_pipe_ = -1;
    }
  }

  void stop() noexcept {
    if (pid_ < 0) return;
    ::kill(pid_, SIGQUIT);  // immediate shutdown: the postmaster kills its backends, then exits
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }

  void remove_directory() noexcept {
    std::error_code ignored;
    if (!directory_.empty()) std::filesystem::remove_all(directory_, ignored);
  }

  std::optional<user> run_as_;
  std::filesystem::path directory_;
  int port_ = 0;
  pid_t pid_ = -1;
  pid_t watchdog_ = -1;
  int watchdog_pipe_ = -1;
};

}  // namespace greenev::testing
