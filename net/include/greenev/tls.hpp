// TLS over cooperative sockets (gevent.ssl), on OpenSSL 3: the TLS engine runs
// non-blocking and its "want read" / "want write" become waits in the hub, so a
// TLS call blocks only its greenlet.
//
//   greenev::tls_context client_ctx;                       // system CAs, verification on
//   greenev::tls_socket s = greenev::tls_connect(client_ctx, "example.org", 443, 10.0);
//   s.sendall("GET / HTTP/1.0\r\nHost: example.org\r\n\r\n");
//   std::string reply = s.recv(4096);                      // "" at end of stream
//
//   greenev::tls_context server_ctx({.role = greenev::tls_role::server,
//                                    .certificate_chain_file = "cert.pem", .private_key_file = "key.pem"});
//   greenev::stream_server server(where, greenev::tls_handler(server_ctx,
//       [](greenev::tls_socket& conn, const greenev::address&) { conn.sendall(conn.recv(4096)); }));
//
// tls_socket has greenev::socket's names and timeout semantics for the stream
// calls (recv_into, recv, send, sendall, shutdown, close, set_timeout, timeout,
// fd), so code templated on the stream works with both. Timeouts raise
// greenev::timeout_error whose source() is the tls_socket; OS errors are
// std::system_error with the errno; TLS failures are tls_error (a
// std::system_error in greenev::tls_category()) carrying OpenSSL's reason,
// e.g. "certificate verify failed: hostname mismatch".
//
// Threading: a tls_context is immutable once built; copies share it and may be
// used on any thread. A tls_socket belongs to the thread whose hub waits on it;
// one greenlet may read while another writes (each OpenSSL call runs to its end
// without switching), as with socket. No OpenSSL header appears here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/server.hpp>
#include <greenev/socket.hpp>

namespace greenev {

/// What a tls_error is about (its code(), in tls_category()).
enum class tls_errc {
  context = 1,         ///< building a tls_context: a file, a key, a cipher list
  handshake,           ///< the handshake failed (protocol, alert, no shared cipher, not TLS)
  certificate_verify,  ///< the peer's certificate was not accepted (untrusted, expired, wrong name)
  protocol,            ///< a TLS error after the handshake (bad record, alert)
  unexpected_eof,      ///< the peer closed the TCP connection without close_notify where it matters
};

/// The category of tls_errc ("greenev.tls").
[[nodiscard]] const std::error_category& tls_category() noexcept;
[[nodiscard]] std::error_code make_error_code(tls_errc code) noexcept;

/// A TLS failure. what() names the operation, the peer and OpenSSL's reason.
class tls_error : public std::system_error {
 public:
  /// `what` names the operation and the peer; `reason` is OpenSSL's.
  tls_error(tls_errc code, const std::string& what, std::string reason = {}, long verify_result = 0);
  /// OpenSSL's reason ("certificate verify failed: hostname mismatch", "wrong
  /// version number"...); "" if OpenSSL gave none.
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  /// For certificate_verify: OpenSSL's X509_V_ERR_* value; 0 otherwise.
  [[nodiscard]] long verify_result() const noexcept { return verify_result_; }

 private:
  std::string reason_;
  long verify_result_;
};

/// Which end of the handshake a context makes.
enum class tls_role { client, server };

/// The lowest protocol version a context accepts (never below TLS 1.2).
enum class tls_version { tls1_2, tls1_3 };

/// How a tls_context is built (designated initializers, like Asio's
/// ssl::context calls gathered in one place). Files are PEM.
struct tls_context_options {
  /// Client (connects, verifies the server) or server (accepts).
  tls_role role = tls_role::client;
  /// This end's certificate, followed by its intermediates. Required for a
  /// server; optional for a client (client certificates).
  std::string certificate_chain_file{};
  /// The private key of the chain's first certificate; empty: read it from
  /// certificate_chain_file.
  std::string private_key_file{};
  /// Trusted CAs; empty: the system store (OpenSSL's default paths).
  std::string ca_file{};
  /// Verify the peer's certificate. Empty means on for clients, off for
  /// servers (true on a server requires a client certificate: mutual TLS).
  std::optional<bool> verify{};
  /// Clients that verify also check the certificate names server_hostname
  /// (DNS name or IP address). Python's check_hostname.
  bool check_hostname = true;
  /// ALPN protocols, most preferred first. A client offers them; a server
  /// picks the first of its own that the client offered (none: no ALPN).
  std::vector<std::string> alpn{};
  /// OpenSSL cipher list for TLS 1.2 ("ECDHE+AESGCM"); empty: OpenSSL's default.
  std::string ciphers{};
  /// OpenSSL ciphersuites for TLS 1.3; empty: OpenSSL's default.
  std::string ciphersuites{};
  /// The oldest protocol version accepted.
  tls_version min_version = tls_version::tls1_2;
  /// A peer that closes the TCP connection without close_notify after the
  /// handshake reads as end of stream (recv returns 0), as in Python's ssl;
  /// false: recv throws tls_error(unexpected_eof).
  bool suppress_ragged_eofs = true;
};

class tls_socket;

/// How to wrap a connected socket (tls_context::wrap_socket).
struct tls_wrap_options {
  /// Client: the name sent as SNI (unless it is an IP address) and checked
  /// against the certificate. Required when the context verifies with
  /// check_hostname. Must be empty for a server.
  std::string server_hostname{};
  /// Bounds the whole handshake; empty: the socket's timeout.
  std::optional<wait_time> handshake_timeout{};
};

/// Shared, immutable TLS configuration: an OpenSSL SSL_CTX. Cheap to copy.
class tls_context {
 public:
  /// Builds the context: loads the chain, the key (checked against the
  /// chain), the trust store, the cipher lists. Never switches. Throws
  /// tls_error(context) naming the file or setting and OpenSSL's reason
  /// ("greenev: tls: cannot load certificate chain file \"x.pem\": No such
  /// file or directory"), std::invalid_argument for a server without a
  /// certificate or an ALPN name of 0 or more than 255 bytes.
  explicit tls_context(tls_context_options options = {});

  /// The role and the options it was built from.
  ///@{
  [[nodiscard]] tls_role role() const noexcept;
  [[nodiscard]] const tls_context_options& options() const noexcept;
  ///@}

  /// Takes `connected` (a connected TCP socket) and makes the handshake in
  /// this context's role. Returns the ready tls_socket, whose timeout is the
  /// socket's. Switches while the peer is slow. On any failure the connection
  /// is closed, then: tls_error (handshake, certificate_verify,
  /// unexpected_eof), std::system_error (ECONNRESET...), timeout_error (its
  /// source() is the socket being wrapped, gone by then), or
  /// std::invalid_argument (server_hostname missing on a verifying client,
  /// given on a server).
  [[nodiscard]] tls_socket wrap_socket(socket connected, const tls_wrap_options& options = {}) const;

  /// Internal (net/src/tls*.cpp): the shared state.
  struct state;

 private:
  std::shared_ptr<const state> state_;
};

/// A TLS stream over a greenev::socket it owns (see the top of this file).
/// Move-only. Made by tls_context::wrap_socket, tls_connect or tls_handler.
class tls_socket {
 public:
  /// No socket: fd() == -1; every operation but close() throws
  /// std::system_error(EBADF).
  tls_socket() noexcept;
  /// Takes `other`'s session and socket; `other` is left empty.
  tls_socket(tls_socket&& other) noexcept;
  /// Closes this socket first (no close_notify), then takes `other`'s.
  tls_socket& operator=(tls_socket&& other) noexcept;
  tls_socket(const tls_socket&) = delete;
  tls_socket& operator=(const tls_socket&) = delete;
  /// close(), ignoring errors.
  ~tls_socket();

  /// The TCP socket's fd, -1 if none; true if it has one. Do not read or
  /// write the fd yourself; and OpenSSL may hold decrypted bytes (pending())
  /// while the fd is not readable, so wait on recv, not on the fd.
  ///@{
  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] explicit operator bool() const noexcept { return fd() >= 0; }
  ///@}

  /// The timeout of every later blocking call: forever (default), zero
  /// (never wait: std::system_error(EAGAIN)), or per call (timeout_error).
  ///@{
  void set_timeout(wait_time timeout) noexcept;
  [[nodiscard]] wait_time timeout() const noexcept;
  ///@}

  /// Decrypts at most buffer.size() bytes into `buffer`; returns how many, 0
  /// at end of stream: the peer's close_notify, or, with
  /// suppress_ragged_eofs, a TCP close without it. Switches while no record
  /// is complete. `flags` must be 0 (TLS has no MSG_PEEK / MSG_OOB):
  /// std::invalid_argument otherwise. Throws tls_error(protocol,
  /// unexpected_eof), std::system_error, timeout_error.
  std::size_t recv_into(std::span<char> buffer, int flags = 0);
  /// Receives at most `max_bytes`; "" at end of stream.
  [[nodiscard]] std::string recv(std::size_t max_bytes, int flags = 0);
  /// Bytes already decrypted and buffered (a recv returns them without waiting).
  [[nodiscard]] std::size_t pending() const noexcept;

  /// Encrypts and sends some of `data` (at least one record's worth, or all
  /// of it); returns how many bytes went; 0 for empty data. Switches while
  /// the send buffer is full. After a timeout or EAGAIN the next send must
  /// start with the same bytes (OpenSSL holds the part of a record already
  /// made). std::system_error(EPIPE) after shutdown(SHUT_WR); EPIPE or
  /// ECONNRESET once the peer is gone; never SIGPIPE. A peer's close_notify ends only its
  /// direction: sending after it is allowed (TLS 1.3 half-close).
  std::size_t send(std::string_view data, int flags = 0);
  /// Sends all of `data`; the timeout bounds the whole call (as socket's).
  void sendall(std::string_view data, int flags = 0);

  /// Ends the stream: if `how` includes SHUT_WR, sends close_notify (once;
  /// it does not wait for the peer's), then shutdown(2) of the TCP side with
  /// `how`. Switches while the send buffer is full. Throws std::system_error,
  /// timeout_error.
  void shutdown(int how);

  /// Frees the TLS session (without close_notify: call shutdown first for a
  /// clean end), then closes the socket, waking its waiting greenlets with
  /// std::system_error(EBADF). Idempotent; never switches.
  void close();

  /// setsockopt / getsockopt / getsockname / getpeername of the TCP socket.
  ///@{
  void set_option(int level, int name, int value);
  [[nodiscard]] int option(int level, int name) const;
  [[nodiscard]] address local_address() const;
  [[nodiscard]] address peer_address() const;
  ///@}

  /// What the handshake settled; "" (or false) without a session. Never throw.
  ///@{
  /// The negotiated ALPN protocol ("h2"); "" if none.
  [[nodiscard]] std::string alpn_protocol() const;
  /// "TLSv1.3", "TLSv1.2".
  [[nodiscard]] std::string version() const;
  /// OpenSSL's cipher name ("TLS_AES_256_GCM_SHA384").
  [[nodiscard]] std::string cipher() const;
  /// Client: the server_hostname it was given. Server: the name the client
  /// asked for with SNI, "" if it sent none.
  [[nodiscard]] std::string server_hostname() const;
  /// The peer certificate's subject, RFC 2253 ("CN=localhost,O=x"); "" if
  /// the peer sent none (a client to a server that does not ask).
  [[nodiscard]] std::string peer_subject() const;
  /// True if verification was on and the peer's certificate passed it.
  [[nodiscard]] bool peer_verified() const;
  /// The name the certificate was checked against and matched (a client
  /// verifying with check_hostname); "" otherwise.
  [[nodiscard]] std::string verified_host() const;
  ///@}

  /// Internal (net/src/tls*.cpp): the session's state.
  struct state;
  /// Internal: a socket over `s` (tls_context::wrap_socket makes them).
  explicit tls_socket(std::unique_ptr<state> s) noexcept;

 private:
  std::unique_ptr<state> state_;
};

/// Connects to `host`:`port` (create_connection: resolves, tries each
/// address with `timeout`) and makes the client handshake with
/// server_hostname = host, bounded by `timeout` too. The socket keeps
/// `timeout`. Switches. Throws what create_connection and wrap_socket throw;
/// std::invalid_argument if `ctx` is a server context.
[[nodiscard]] tls_socket tls_connect(const tls_context& ctx, std::string_view host, std::uint16_t port,
                                     wait_time timeout = {});
/// The same to an address, with the name to send and check given apart.
[[nodiscard]] tls_socket tls_connect(const tls_context& ctx, const address& peer,
                                     std::string_view server_hostname, wait_time timeout = {});

/// How tls_handler treats each connection before the handler runs.
struct tls_server_options {
  /// Bounds each server handshake.
  wait_time handshake_timeout = 10.0;
  /// Called (in the connection's greenlet) when a handshake fails, after the
  /// connection was closed; the handler is not run. Empty: one line through
  /// the error reporter ("greenev: tls: handshake with PEER failed: ...").
  std::function<void(const address& peer, const std::exception& error)> on_handshake_error{};
};

/// A stream_server handler that makes the server handshake on each accepted
/// connection, then runs `handler` with the ready tls_socket; when it returns,
/// sends close_notify if it can without waiting, and closes. A failed
/// handshake (a plain-HTTP client, an alert, a timeout) closes the connection
/// and is reported (options.on_handshake_error); the server carries on.
/// stream_server itself knows nothing of TLS:
///   stream_server server(where, tls_handler(ctx, handle_tls_connection));
/// Throws std::invalid_argument if `ctx` is not a server context or `handler` is empty.
[[nodiscard]] stream_server::handler_type tls_handler(
    tls_context ctx, std::function<void(tls_socket&, const address&)> handler,
    tls_server_options options = {});

}  // namespace greenev

/// @cond
template <>
struct std::is_error_code_enum<greenev::tls_errc> : std::true_type {};
/// @endcond
