// Cooperative file IO (gevent.os and gevent.fileobject): pipes, FIFOs,
// terminals and character devices are waited on in the hub; regular files,
// which poll(2) always calls ready and which block in the kernel anyway, are
// read and written on a per-thread threadpool.
//
//   greenev::file_object in(STDIN_FILENO, {.close = false});   // a pipe or a tty: nb_read
//   while (auto line = in.readline(); !line.empty()) handle(line);  // others run meanwhile
//   greenev::file_object log = greenev::file_object::open("out.log", "a");  // a regular file: tp_write
//
// Threading: an fd is used from one thread's hub at a time; a file_object
// belongs to the thread that uses it. The tp_* functions run on the calling
// thread's file threadpool (4 workers, made on first use, gone with the
// thread's hub); don't close an fd while such a call on it may still run.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include <greenev/hub.hpp>

namespace greenev {

/// gevent.os.nb_read: reads up to `buffer.size()` bytes from `fd`, which must
/// be non-blocking (set_non_blocking), waiting cooperatively while there is
/// nothing to read. Returns the count; 0 at end of file. Switches. Throws
/// std::system_error (EBADF if the fd is closed meanwhile).
std::size_t nb_read(int fd, std::span<char> buffer);

/// gevent.os.nb_write: writes some of `data` to the non-blocking `fd`,
/// waiting cooperatively until it can take any. Returns how much it took
/// (at least 1 for non-empty data). Never raises SIGPIPE: a reader that is
/// gone is std::system_error(EPIPE). Switches.
std::size_t nb_write(int fd, std::string_view data);

/// gevent.os.tp_read / tp_write: read(2) / write(2) on the calling thread's
/// file threadpool while the calling greenlet waits. Returns the count (0 at
/// end of file). Switches. Throws std::system_error. If the caller is killed
/// meanwhile, the call still completes on its worker and its result is
/// dropped (the data are the job's own copy).
std::size_t tp_read(int fd, std::span<char> buffer);
std::size_t tp_write(int fd, std::string_view data);

/// How a file_object treats its fd.
struct file_object_options {
  /// Close the fd when the object is closed or destroyed.
  bool close = true;
};

/// gevent.fileobject.FileObject: a buffered, cooperative file on an fd —
/// FileObjectPosix (non-blocking waits) for pipes, FIFOs, sockets, terminals
/// and devices, FileObjectThread (the file threadpool) for regular files and
/// directories. Movable, not copyable.
class file_object {
 public:
  /// Wraps `fd`, made non-blocking unless it is a regular file (the other
  /// users of the same open file, such as a shell sharing the terminal, see
  /// that too; a fd not owned gets its flags back at close()). Throws
  /// std::system_error for a bad fd.
  explicit file_object(int fd, file_object_options options = {});
  /// Opens `path` with fopen's modes: "r", "w", "a", "r+", "w+", "a+" (a
  /// "b" is accepted and means nothing). Throws std::invalid_argument for
  /// another mode, std::system_error naming the path if open fails. Never
  /// switches (opening a FIFO blocks until its other end is opened).
  static file_object open(const std::string& path, std::string_view mode = "r");

  /// Moves the fd and the buffers; `other` is left closed. Assigning over
  /// an open file_object closes it first (flushing, errors ignored).
  ///@{
  file_object(file_object&& other) noexcept;
  file_object& operator=(file_object&& other) noexcept;
  ///@}
  file_object(const file_object&) = delete;
  file_object& operator=(const file_object&) = delete;
  /// Flushes (errors ignored) and closes if it owns the fd.
  ~file_object();

  /// Up to `max` bytes (what is buffered, else one read). "" at end of file. Switches.
  std::string read_some(std::size_t max = 65536);
  /// Everything up to end of file. Switches.
  std::string read_all();
  /// The next line with its '\n' (the last one may lack it), at most `max`
  /// bytes; "" at end of file. Switches.
  std::string readline(std::size_t max = 1 << 20);
  /// Buffers `data`; writes once 64 KiB are buffered. Switches when it writes.
  void write(std::string_view data);
  /// Writes what is buffered. Switches.
  void flush();
  /// flush(), then closes the fd if owned. Idempotent. Switches. Throws what flush() throws.
  void close();

  /// The fd (-1 once closed).
  [[nodiscard]] int fd() const noexcept { return fd_; }
  /// True for a regular file or directory: reads and writes go to the threadpool.
  [[nodiscard]] bool uses_threadpool() const noexcept { return threaded_; }
  /// True after close() (or once moved from).
  [[nodiscard]] bool closed() const noexcept { return fd_ < 0; }

 private:
  std::size_t fill(std::size_t max);
  std::size_t raw_read(std::span<char> buffer);
  void write_all(std::string_view data);

  int fd_ = -1;
  bool owns_ = true;
  bool threaded_ = false;
  bool eof_ = false;
  int original_flags_ = -1;  // fcntl flags before we set O_NONBLOCK; restored if not owned
  std::string in_;           // read, not yet returned
  std::string out_;          // written, not yet flushed
};

}  // namespace greenev
