// tls_handler: TLS for stream_server as a handler adapter, so that
// stream_server (server.cpp) never refers to OpenSSL: the handshake runs in
// the connection's own greenlet, under its own timeout, before the user's
// handler.
#include <sys/socket.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <greenev/error_reporter.hpp>
#include <greenev/timeout.hpp>

#include "tls_internal.hpp"

namespace greenev {

namespace {

struct tls_service {
  tls_context context;
  std::function<void(tls_socket&, const address&)> handler;
  tls_server_options options;
};

void report_handshake_failure(const tls_service& service, const address& peer, const std::exception& error) {
  if (service.options.on_handshake_error) {
    service.options.on_handshake_error(peer, error);
  } else {
    detail::report_error("greenev: tls: handshake with " + peer.to_string() + " failed: " + error.what());
  }
}

// Sends close_notify if the send buffer takes it now; the connection closes
// next anyway, so nothing here waits or throws.
void end_quietly(tls_socket& connection) {
  if (!connection) return;
  try {
    connection.set_timeout(0.0);
    connection.shutdown(SHUT_RDWR);
  } catch (const std::system_error&) {  // EAGAIN, a peer already gone, a session already failed
  }
}

void serve(const tls_service& service, socket& accepted, const address& peer) {
  tls_socket connection;
  const wait_time timeout = accepted.timeout();
  try {
    connection = service.context.wrap_socket(std::move(accepted),
                                             {.handshake_timeout = service.options.handshake_timeout});
  } catch (const std::system_error& error) {  // tls_error, ECONNRESET...
    report_handshake_failure(service, peer, error);
    return;
  } catch (const timeout_error& error) {
    report_handshake_failure(service, peer, error);
    return;
  }
  connection.set_timeout(timeout);
  service.handler(connection, peer);
  end_quietly(connection);
}

}  // namespace

stream_server::handler_type tls_handler(tls_context ctx,
                                        std::function<void(tls_socket&, const address&)> handler,
                                        tls_server_options options) {
  if (ctx.role() != tls_role::server)
    throw std::invalid_argument("greenev: tls_handler needs a server context");
  if (!handler) throw std::invalid_argument("greenev: tls_handler needs a handler");
  // Shared by every connection and, with workers, every thread: read only.
  auto service = std::make_shared<const tls_service>(
      tls_service{std::move(ctx), std::move(handler), std::move(options)});
  return [service](socket& accepted, const address& peer) { serve(*service, accepted, peer); };
}

}  // namespace greenev
