// A UDP (or Unix datagram) server running a greenlet per datagram
// (gevent.server.DatagramServer).
//
//   greenev::datagram_server echo(greenev::address::parse("127.0.0.1", 9000),
//       [](greenev::datagram_server& server, std::string_view data, const greenev::address& from) {
//         server.sendto(data, from);
//       });
//   echo.serve_forever();   // until echo.stop() (e.g. from a signal_handler)
//
// Each datagram received runs `handler(server, data, sender)` in a new
// greenlet (a member of the server's group, or of its pool when
// max_concurrent is set: receiving pauses while the pool is full, and the
// kernel's socket buffer holds what arrives meanwhile). An exception from a
// handler is reported like any task failure and does not affect the server.
// Threading: every member function must be called on the thread that
// created the server; handlers run on that thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/socket.hpp>

namespace greenev {

/// How a datagram_server runs (designated initializers: `{.max_concurrent = 100}`).
struct datagram_server_options {
  /// At most this many handlers at once; unlimited if empty.
  std::optional<std::size_t> max_concurrent{};
  /// Bytes read per datagram; a longer one is cut to this (UDP's largest is 65507).
  std::size_t max_datagram_size = 65536;
  /// SO_RCVBUF for the socket, if set (bursts beyond it are dropped by the kernel).
  std::optional<int> receive_buffer{};
};

/// A receive loop running a greenlet per datagram (see the top of this file).
class datagram_server {
 public:
  /// Runs once per datagram, in its own greenlet. `data` lives until it returns.
  using handler_type =
      std::function<void(datagram_server& server, std::string_view data, const address& from)>;

  /// A server that will bind `local` (port 0: any free port) at start().
  /// Throws std::invalid_argument for an empty handler or a max_concurrent
  /// or max_datagram_size of 0.
  datagram_server(address local, handler_type handler, datagram_server_options options = {});
  /// A server on a datagram socket that is already bound.
  datagram_server(socket bound, handler_type handler, datagram_server_options options = {});

  datagram_server(const datagram_server&) = delete;
  datagram_server& operator=(const datagram_server&) = delete;
  /// stop(0) if still serving: closes the socket, kills remaining handlers.
  ~datagram_server();

  /// Binds (unless given a socket) and starts receiving in a new greenlet.
  /// After stop(), start() again serves on the same address and port (not
  /// on a given socket: stop closed it). Never switches. Throws
  /// std::system_error if binding fails, greenlet_error if serving already.
  void start();
  /// start() unless started, then waits until stop() is called. Switches.
  void serve_forever();
  /// Stops receiving (closes the socket), waits up to `timeout` for running
  /// handlers, then kills those left. Idempotent. Switches.
  void stop(wait_time timeout = 1.0);

  /// Sends `data` to `to` from the server's socket (a reply). Switches
  /// while the socket buffer is full. Throws std::system_error, EBADF when
  /// not serving.
  std::size_t sendto(std::string_view data, const address& to);

  /// The bound address (the real port after binding port 0); empty before start().
  [[nodiscard]] address local_address() const;
  /// Serving: started and not stopped since.
  [[nodiscard]] bool started() const noexcept;
  /// Datagrams received so far.
  [[nodiscard]] std::size_t received() const noexcept;
  /// Handlers running now.
  [[nodiscard]] std::size_t handling() const noexcept;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace greenev
