// greenev/subprocess.hpp — start programs and wait for them cooperatively
// (gevent.subprocess / Python's subprocess).
//
//   std::string text = greenev::check_output({"uname", "-r"});        // others run meanwhile
//   greenev::subprocess child({"sort"}, {.in = greenev::stdio::pipe, .out = greenev::stdio::pipe});
//   auto [out, err] = child.communicate("b\na\n");                    // out == "a\nb\n"
//
// Waiting for a child reads a pidfd (Linux 5.3) that becomes readable when the
// child exits, on the waiting thread's hub: no SIGCHLD handler, and greenev
// reaps only the children it started — the program's own waitpid() and
// pclose() keep working. Pipes are read and written cooperatively.
// Threading: a subprocess is used by one thread at a time, but any thread's
// hub may wait for it; several greenlets may wait() for the same child.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/hub.hpp>
#include <greenev/timeout.hpp>

namespace greenev {

/// Where a child's standard stream goes.
enum class stdio {
  inherit,    ///< the parent's (the default)
  pipe,       ///< a pipe the parent reads or writes (subprocess::write_input, read_output, ...)
  devnull,    ///< /dev/null
  to_stdout,  ///< stderr only: the same place as stdout (Python's subprocess.STDOUT)
};

/// How a subprocess starts (designated initializers: `{.out = stdio::pipe}`).
struct subprocess_options {
  stdio in = stdio::inherit;   ///< standard input
  stdio out = stdio::inherit;  ///< standard output
  stdio err = stdio::inherit;  ///< standard error (may be to_stdout)
  /// The child's whole environment, if set; the parent's otherwise.
  std::optional<std::map<std::string, std::string>> env;
  /// The child's working directory, if not empty.
  std::string cwd;
};

/// A timed-out wait() or communicate(): the child still runs. For
/// communicate(), output() and error_output() hold what was read so far.
class subprocess_timeout : public timeout_error {
 public:
  /// `source` is the subprocess, `after` the timeout that passed.
  subprocess_timeout(const void* source, std::chrono::nanoseconds after, std::vector<std::string> argv,
                     std::string out = {}, std::string err = {});
  /// The command.
  [[nodiscard]] const std::vector<std::string>& argv() const noexcept { return argv_; }
  /// What communicate() had read from stdout / stderr so far ("" for wait()).
  ///@{
  [[nodiscard]] const std::string& output() const noexcept { return out_; }
  [[nodiscard]] const std::string& error_output() const noexcept { return err_; }
  ///@}

 private:
  std::vector<std::string> argv_;
  std::string out_;
  std::string err_;
};

/// A child that exited with a non-zero status under check_call(),
/// check_output() or run({.check = true}) (Python's CalledProcessError).
class called_process_error : public std::runtime_error {
 public:
  /// The message names the command and how it ended.
  called_process_error(int returncode, std::vector<std::string> argv, std::string out, std::string err);
  /// The exit status, or minus the signal number that killed the child.
  [[nodiscard]] int returncode() const noexcept { return returncode_; }
  /// The command.
  [[nodiscard]] const std::vector<std::string>& argv() const noexcept { return argv_; }
  /// What the child wrote to a captured stdout / stderr ("" if not captured).
  ///@{
  [[nodiscard]] const std::string& output() const noexcept { return out_; }
  [[nodiscard]] const std::string& error_output() const noexcept { return err_; }
  ///@}

 private:
  int returncode_;
  std::vector<std::string> argv_;
  std::string out_;
  std::string err_;
};

/// A running (or finished) child process (Python's Popen). Movable, not
/// copyable. Destroying one whose child still runs kills it (SIGKILL) and
/// reaps it, as boost::process::child does; wait() first to let it finish.
class subprocess {
 public:
  /// Starts `argv[0]` (looked up in PATH unless it contains a '/') with
  /// `argv`. Never switches. Throws std::invalid_argument for an empty argv,
  /// stderr-only options in the wrong place (to_stdout for in or out) or an
  /// environment entry with '=' in its name; std::system_error naming the
  /// program if it cannot be started (ENOENT: no such program, EACCES, a
  /// missing cwd).
  explicit subprocess(std::vector<std::string> argv, subprocess_options options = {});
  /// Moves the child (and its pipes); `other` is left without one. Assigning
  /// over a subprocess whose child still runs kills and reaps that child.
  ///@{
  subprocess(subprocess&& other) noexcept;
  subprocess& operator=(subprocess&& other) noexcept;
  ///@}
  subprocess(const subprocess&) = delete;
  subprocess& operator=(const subprocess&) = delete;
  ~subprocess();

  /// The child's process id (-1 once moved from).
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// The command it runs.
  [[nodiscard]] const std::vector<std::string>& argv() const noexcept { return argv_; }

  /// The exit status once the child was reaped (wait(), poll()): the exit code,
  /// or minus the number of the signal that killed it. Empty before.
  [[nodiscard]] std::optional<int> returncode() const noexcept { return returncode_; }

  /// Reaps the child if it has exited; returns returncode(). Never switches.
  std::optional<int> poll();

  /// Waits until the child exits and returns its returncode. Switches.
  /// Throws subprocess_timeout if `timeout` passes first (the child keeps
  /// running); greenlet_error in the hub.
  int wait(wait_time timeout = {});

  /// Sends `signal` to the child; does nothing once it was reaped (the pid
  /// may belong to another process by then). Never switches. Throws
  /// std::system_error if kill(2) fails.
  void send_signal(int signal);
  /// send_signal(SIGTERM) / send_signal(SIGKILL).
  ///@{
  void terminate();
  void kill();
  ///@}

  /// Writes `input` to the child's stdin pipe, if any, then closes it; reads
  /// its stdout and stderr pipes to the end, all at once; then waits for it.
  /// Returns {stdout, stderr} ("" for a stream that is not a pipe). Switches.
  /// A child that exits without reading its input is not an error (EPIPE is
  /// ignored). Throws subprocess_timeout if `timeout` passes, with the
  /// output so far; the child keeps running, and calling communicate() again
  /// (its `input` is then ignored) goes on where this one stopped and returns
  /// all the output, losing nothing. Throws std::invalid_argument for input
  /// without a stdin pipe.
  struct output {
    std::string out;  ///< what the child wrote to its stdout pipe
    std::string err;  ///< ... and to its stderr pipe
  };
  /// See above.
  output communicate(std::string_view input = {}, wait_time timeout = {});

  /// The parent's ends of the pipes (-1 if that stream is not a pipe, or was
  /// closed). Non-blocking: wait with greenev::wait_read/wait_write.
  ///@{
  [[nodiscard]] int stdin_fd() const noexcept { return in_; }
  [[nodiscard]] int stdout_fd() const noexcept { return out_; }
  [[nodiscard]] int stderr_fd() const noexcept { return err_; }
  ///@}

  /// Writes all of `data` to the stdin pipe. Switches while the pipe is full.
  /// Throws std::logic_error without a stdin pipe, std::system_error (EPIPE
  /// if the child closed its end).
  void write_input(std::string_view data);
  /// Closes the stdin pipe (the child then reads end of file). Never switches.
  void close_input();
  /// Reads what the stdout (or stderr) pipe holds, at most `max` bytes,
  /// waiting until there is something. Returns "" at end of file. Switches.
  /// Throws std::logic_error without that pipe.
  ///@{
  std::string read_output(std::size_t max = 65536);
  std::string read_error_output(std::size_t max = 65536);
  ///@}

 private:
  void reap(int status) noexcept;
  void close_pipes() noexcept;
  bool exited_now();

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int in_ = -1;
  int out_ = -1;
  int err_ = -1;
  std::optional<int> returncode_;
  struct communication;
  std::unique_ptr<communication> talk_;  // a communicate() under way
};

/// Python's subprocess.run: the options plus what run() does with them.
struct run_options {
  /// How the child starts (run() changes the streams it needs for input and capture).
  subprocess_options process;
  /// Written to the child's stdin (which becomes a pipe) if set.
  std::optional<std::string> input;
  /// Capture stdout and stderr (they become pipes, unless `process` says
  /// otherwise for err, e.g. to_stdout).
  bool capture_output = false;
  /// Throw called_process_error on a non-zero returncode.
  bool check = false;
  /// For the whole run; on expiry the child is killed and reaped, then
  /// subprocess_timeout is thrown.
  wait_time timeout = {};
};

/// What run() returns.
struct completed_process {
  std::vector<std::string> argv;  ///< the command
  int returncode = 0;             ///< exit status, or minus the signal that killed it
  std::string out;                ///< captured stdout ("" if not captured)
  std::string err;                ///< captured stderr
};

/// Starts `argv`, feeds and collects as `options` says, waits. Switches.
/// Throws what subprocess() and communicate() throw, and called_process_error
/// with `check`.
completed_process run(std::vector<std::string> argv, run_options options = {});

/// Runs `argv` and returns its stdout; throws called_process_error (carrying
/// the output) if it exits non-zero. Switches.
std::string check_output(std::vector<std::string> argv, subprocess_options options = {});

/// Runs `argv`; throws called_process_error if it exits non-zero. Switches.
void check_call(std::vector<std::string> argv, subprocess_options options = {});

}  // namespace greenev
