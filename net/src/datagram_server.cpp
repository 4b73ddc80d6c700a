// The datagram server: one receive loop greenlet on the socket, a greenlet
// per datagram in a group (a pool when bounded).
#include <greenev/datagram_server.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <greenev/error_reporter.hpp>
#include <greenev/event.hpp>
#include <greenev/pool.hpp>
#include <greenev/task.hpp>

namespace greenev {

struct datagram_server::state {
  datagram_server* owner = nullptr;
  address local;
  handler_type handler;
  datagram_server_options options;
  socket sock;
  bool given_socket = false;
  bool serving = false;
  std::unique_ptr<group> handlers;  // a pool when options.max_concurrent is set
  task<void> receiver;
  event stopped;
  std::size_t received = 0;

  void receive_loop();
};

namespace {

void check(const datagram_server_options& options, const datagram_server::handler_type& handler) {
  if (!handler) throw std::invalid_argument("greenev: datagram_server: an empty handler");
  if (options.max_concurrent && *options.max_concurrent == 0) {
    throw std::invalid_argument("greenev: datagram_server: max_concurrent 0 (nothing could ever run)");
  }
  if (options.max_datagram_size == 0)
    throw std::invalid_argument("greenev: datagram_server: max_datagram_size 0");
}

// Errors a datagram socket reports for an earlier send and then carries on:
// an ICMP "port unreachable" for a reply to a sender that left, say.
bool transient(int error) {
  return error == ECONNREFUSED || error == EHOSTUNREACH || error == ENETUNREACH || error == EINTR ||
         error == ENOBUFS || error == ENOMEM;
}

}  // namespace

void datagram_server::state::receive_loop() {
  std::vector<char> buffer(options.max_datagram_size);
  for (;;) {
    address from;
    std::size_t size = 0;
    try {
      size = sock.recvfrom_into(buffer, from);
    } catch (const std::system_error& error) {
      if (error.code().value() == EBADF) return;  // stop() closed the socket
      if (!transient(error.code().value())) {
        detail::report_error(std::string("greenev: datagram_server on ") + local.to_string() + ": " +
                             error.what());
        greenev::sleep(0.01);  // an error that repeats must not spin the loop
      }
      continue;
    }
    ++received;
    // The pool's spawn waits for a free slot: the socket buffer holds what comes meanwhile.
    handlers->spawn([this, data = std::string(buffer.data(), size), from] { handler(*owner, data, from); });
  }
}

datagram_server::datagram_server(address local, handler_type handler, datagram_server_options options)
    : state_(std::make_unique<state>()) {
  check(options, handler);
  state_->owner = this;
  state_->local = local;
  state_->handler = std::move(handler);
  state_->options = options;
}

datagram_server::datagram_server(socket bound, handler_type handler, datagram_server_options options)
    : state_(std::make_unique<state>()) {
  check(options, handler);
  state_->owner = this;
  state_->local = bound.local_address();
  state_->sock = std::move(bound);
  state_->given_socket = true;
  state_->handler = std::move(handler);
  state_->options = options;
}

datagram_server::~datagram_server() {
  try {
    stop(0.0);
  } catch (...) {
    detail::report_error("greenev: datagram_server: stopping in the destructor failed");
  }
}

void datagram_server::start() {
  state& s = *state_;
  if (s.serving) throw greenlet_error("greenev: datagram_server::start: already serving");
  if (s.given_socket && s.sock.fd() < 0) {
    throw greenlet_error("greenev: datagram_server::start: the given socket was closed by stop()");
  }
  if (!s.given_socket) {
    // No SO_REUSEADDR: for UDP it lets a second socket bind the same port
    // (and steal datagrams); with no TIME_WAIT, a restart needs none.
    socket fresh(s.local.family(), SOCK_DGRAM);
    fresh.bind(s.local);
    s.sock = std::move(fresh);
    s.local = s.sock.local_address();  // the real port for port 0
  }
  if (s.options.receive_buffer) s.sock.set_option(SOL_SOCKET, SO_RCVBUF, *s.options.receive_buffer);
  s.handlers = s.options.max_concurrent ? std::make_unique<pool>(*s.options.max_concurrent)
                                        : std::make_unique<group>();
  s.stopped.clear();
  s.serving = true;
  s.receiver = spawn_with({.name = "datagram_server " + s.local.to_string()}, [&s] { s.receive_loop(); });
}

void datagram_server::serve_forever() {
  if (!state_->serving) start();
  state_->stopped.wait();
}

void datagram_server::stop(wait_time timeout) {
  state& s = *state_;
  if (!s.serving) return;
  s.serving = false;
  s.sock.close();                     // wakes the receive loop with EBADF
  if (s.receiver) s.receiver.kill();  // if it was waiting for a pool slot instead
  if (!s.handlers->join(timeout)) s.handlers->kill();
  s.stopped.set();
}

std::size_t datagram_server::sendto(std::string_view data, const address& to) {
  return state_->sock.sendto(data, to);
}

address datagram_server::local_address() const {
  return state_->serving || state_->given_socket ? state_->local : address();
}

bool datagram_server::started() const noexcept {
  return state_->serving;
}

std::size_t datagram_server::received() const noexcept {
  return state_->received;
}

std::size_t datagram_server::handling() const noexcept {
  return state_->handlers ? state_->handlers->size() : 0;
}

}  // namespace greenev
