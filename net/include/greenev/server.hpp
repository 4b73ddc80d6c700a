// A TCP (or Unix stream) server running one greenlet per connection
// (gevent.server.StreamServer).
//
//   greenev::stream_server server(greenev::address::parse("127.0.0.1", 8001),
//                                 [](greenev::socket& conn, const greenev::address&) {
//                                   while (auto data = conn.recv(4096); !data.empty()) conn.sendall(data);
//                                 });
//   server.serve_forever();   // until server.stop() (e.g. from a signal_handler)
//
// Each accepted connection runs `handler(conn, peer)` in a new greenlet; the
// connection is closed when the handler returns or throws. An exception from
// a handler is reported like any task failure (stderr) and does not affect the
// server. Accept errors (EMFILE, ENOBUFS...) are reported and retried after a
// growing pause (10 ms up to 1 s), so a full fd table does not spin the loop.
//
// Processes: with `processes = N > 1`, start() binds in this process, then
// forks N children that share the listening socket (each accepts from it on
// its own hub) and never return from start(): each serves until SIGTERM or
// SIGINT (or a stop() reached through a copied signal handler), stops as
// stop(1.0) does and exits with status 0 (_exit: the parent's atexit work is
// not done twice). The parent accepts nothing; a child that dies otherwise
// (a crash, an exit status other than 0, a signal other than SIGTERM/SIGINT)
// is forked again after a pause growing from 0.1 s to 5 s. SIGTERM or SIGINT
// to the parent (when its hub watches signals: the main thread's) is passed
// on to the children, and serve_forever() returns once all have exited;
// stop(timeout) sends SIGTERM, waits `timeout`, then SIGKILLs the rest. A
// child also gets SIGTERM if the parent dies. Fork before starting other
// work: the children get a copy of everything, other greenlets included.
//
// Threading: with `workers = N > 1`, start() runs N - 1 more threads, each
// with its own hub and its own SO_REUSEPORT listener on the same address, so
// the kernel spreads connections over every core; handlers then run on any of
// those threads (share nothing between them without thread-safe means). All
// member functions must be called on the thread that created the server.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/socket.hpp>

namespace greenev {

namespace detail {
struct stream_server_state;
}

/// How a stream_server runs (designated initializers: `{.workers = 2}`).
struct stream_server_options {
  /// At most this many connections handled at once per thread; accepting
  /// pauses while full (gevent's spawn=Pool(n)). Unlimited if empty.
  std::optional<std::size_t> max_connections{};
  /// listen(2) backlog.
  int backlog = 1024;
  /// Threads, each with a hub and a SO_REUSEPORT listener (TCP only).
  unsigned workers = 1;
  /// TCP_NODELAY on accepted TCP connections (request/response traffic).
  bool no_delay = true;
  /// Pre-fork serving (gunicorn's gevent worker): with N > 1, start() binds
  /// the listener here, then forks N children (greenev::fork) that each
  /// serve it with their own hub (and `workers` threads each); this process
  /// only supervises (see the top of this file). 1: serve in this process.
  unsigned processes = 1;
};

/// An accept loop running one greenlet per connection (see the top of this file).
class stream_server {
 public:
  /// Runs once per connection, in its own greenlet; `connection` closes after it.
  using handler_type = std::function<void(socket& connection, const address& peer)>;

  /// A server that will listen on `local` (port 0: any free port). Nothing
  /// is bound until start(). Throws std::invalid_argument for an empty
  /// handler, zero workers or processes, or workers > 1 on a non-TCP address.
  stream_server(address local, handler_type handler, stream_server_options options = {});
  /// A server on a socket that is already bound and listening (workers and
  /// processes must be 1: std::invalid_argument otherwise).
  stream_server(socket listener, handler_type handler, stream_server_options options = {});

  stream_server(const stream_server&) = delete;
  stream_server& operator=(const stream_server&) = delete;
  /// stop(0) if still serving: closes, then kills remaining handlers.
  ~stream_server();

  /// Binds and listens (SO_REUSEADDR), starts accepting in a new greenlet,
  /// and starts the worker threads. Returns once every listener is bound.
  /// After stop(), start() again serves on the same address and port (not on
  /// a given socket: stop closed it). Throws std::system_error if binding
  /// fails (nothing is left running), greenlet_error if serving already or
  /// restarting a server on a given socket. Switches only while waiting for
  /// worker threads to bind. With processes > 1: forks the children (which
  /// never return from it; std::system_error if a fork fails, after the
  /// children already made were stopped) and starts supervising them.
  void start();

  /// start() unless started, then waits until stop() is called (from
  /// another greenlet, e.g. a signal_handler). Switches.
  void serve_forever();

  /// Stops accepting (closes the listeners), waits up to `timeout` for
  /// running handlers to finish, then kills those left; with workers, does
  /// the same on every thread and joins them. Idempotent. Switches. In a
  /// pre-fork parent: SIGTERM to every child, waits up to `timeout` for them
  /// to exit, SIGKILLs the rest and reaps them all.
  void stop(wait_time timeout = 1.0);

  /// gevent's stop_accepting(): stops calling accept() on every thread,
  /// keeping the listeners open (new connections wait in the backlog) and
  /// the running handlers going. start_accepting() resumes. Each returns
  /// once every worker thread has changed (switching while it waits for
  /// them; never with workers = 1). Both do nothing unless serving, and
  /// nothing in a pre-fork parent (which does not accept).
  ///@{
  void stop_accepting();
  void start_accepting();
  ///@}
  /// Serving and not paused by stop_accepting().
  [[nodiscard]] bool accepting() const noexcept;

  /// The bound address (the real port after binding port 0); empty before start().
  [[nodiscard]] address local_address() const;
  /// Serving: started and not stopped since.
  [[nodiscard]] bool started() const noexcept;
  /// stop() was called (and start() not since).
  [[nodiscard]] bool stopped() const noexcept;
  /// Connections being handled on this thread now (0 in a pre-fork parent).
  [[nodiscard]] std::size_t connections() const noexcept;
  /// Connections accepted so far on every thread (of this process).
  [[nodiscard]] std::size_t accepted() const noexcept;
  /// The pids of the running children of a pre-fork parent (empty otherwise).
  [[nodiscard]] std::vector<pid_t> child_pids() const;

 private:
  std::unique_ptr<detail::stream_server_state> state_;
};

}  // namespace greenev
