// Private to TLS (tls_context.cpp, tls_socket.cpp, tls_server.cpp): the
// states behind tls_context and tls_socket, and OpenSSL's error text.
#pragma once

#include <openssl/ssl.h>

#include <string>

#include <greenev/tls.hpp>

namespace greenev {

struct tls_context::state {
  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() { SSL_CTX_free(ctx); }

  SSL_CTX* ctx = nullptr;
  tls_context_options options;
  bool verify = false;    // options.verify, resolved for the role
  std::string alpn_wire;  // options.alpn as ALPN's length-prefixed list
};

// One connection. Heap-held by tls_socket, so that the BIO's pointer to it
// survives moves of the tls_socket.
struct tls_socket::state {
  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() { SSL_free(ssl); }

  socket tcp;
  SSL* ssl = nullptr;
  std::shared_ptr<const tls_context::state> context;  // keeps the options read below alive
  std::string server_hostname;                        // client: as given
  std::string peer;                                   // "127.0.0.1:443", for messages
  bool watched = false;  // the hub has seen this fd (detail::wait_owned_fd's `fresh`)
  bool eof = false;      // the BIO read end of stream
  int io_error = 0;      // the BIO's last errno other than EAGAIN
  bool fatal = false;    // OpenSSL reported a fatal error: no close_notify
  bool close_notify_sent = false;
  bool finished = false;  // end of stream seen: recv returns 0 from now on
};

namespace detail::tls {

/// OpenSSL's reasons for the errors queued on this thread, oldest first,
/// "; "-separated (empties the queue); "" if none.
std::string drain_errors();

/// The BIO method that reads and writes a tls_socket::state's fd with
/// recv/send (MSG_NOSIGNAL), reporting EAGAIN as "retry". Built once.
BIO_METHOD* socket_bio_method();

}  // namespace detail::tls

}  // namespace greenev
