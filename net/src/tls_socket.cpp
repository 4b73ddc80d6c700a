// tls_socket: OpenSSL driven non-blocking over a greenev::socket's fd. Every
// call runs the OpenSSL operation first; on SSL_ERROR_WANT_READ / WANT_WRITE it
// waits in the hub for that direction and runs it again (OpenSSL asks for the
// same call with the same arguments), until the call's deadline. The BIO is
// our own (recv/send with MSG_NOSIGNAL): docs/design.md, "TLS".
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>

#include <greenev/io.hpp>
#include <greenev/timeout.hpp>

#include "tls_internal.hpp"

namespace greenev {

namespace {

using steady = std::chrono::steady_clock;
using tls_state = tls_socket::state;

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), "greenev: tls: " + what);
}

steady::time_point deadline_of(wait_time limit) {
  return limit.is_forever() ? steady::time_point::max() : steady::now() + limit.duration();
}

// --- the BIO ---------------------------------------------------------------

int bio_read(BIO* bio, char* out, std::size_t length, std::size_t* done) {
  auto& s = *static_cast<tls_state*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::recv(s.tcp.fd(), out, length, 0);
    if (n > 0) {
      *done = static_cast<std::size_t>(n);
      return 1;
    }
    if (n == 0) {
      s.eof = true;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(bio);
    } else {
      s.io_error = errno;
    }
    return 0;
  }
}

int bio_write(BIO* bio, const char* data, std::size_t length, std::size_t* done) {
  auto& s = *static_cast<tls_state*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  for (;;) {
    const ssize_t n = ::send(s.tcp.fd(), data, length, MSG_NOSIGNAL);
    if (n >= 0) {
      *done = static_cast<std::size_t>(n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(bio);
    } else {
      s.io_error = errno;
    }
    return 0;
  }
}

long bio_ctrl(BIO* bio, int command, long /*number*/, void* /*pointer*/) {
  switch (command) {
    case BIO_CTRL_FLUSH:  // nothing is buffered here
      return 1;
    case BIO_CTRL_EOF:  // OpenSSL tells an unexpected EOF from an error by this
      return static_cast<tls_state*>(BIO_get_data(bio))->eof ? 1 : 0;
    default:
      return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* make_bio_method() {
  BIO_METHOD* method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "greenev socket");
  if (method == nullptr || BIO_meth_set_read_ex(method, bio_read) != 1 ||
      BIO_meth_set_write_ex(method, bio_write) != 1 || BIO_meth_set_ctrl(method, bio_ctrl) != 1 ||
      BIO_meth_set_create(method, bio_create) != 1) {
    throw tls_error(tls_errc::context, "greenev: tls: cannot create the socket BIO method",
                    detail::tls::drain_errors());
  }
  return method;
}

// --- driving OpenSSL ---------------------------------------------------------

enum class operation { handshake, read, write, shutdown };

const char* name_of(operation op) {
  switch (op) {
    case operation::handshake:
      return "handshake";
    case operation::read:
      return "recv";
    case operation::write:
      return "send";
    case operation::shutdown:
      return "shutdown";
  }
  return "call";
}

bool is_ip_literal(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 || ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// Waits for `events` (1 read, 2 write) on the session's fd until `deadline`.
// Nothing of `s` is touched after the wait: close() from another greenlet
// wakes it with EBADF while `s` may be going away.
void wait_for(tls_state& s, const void* source, int events, steady::time_point deadline, wait_time limit,
              const char* what) {
  if (limit.is_poll()) {
    throw_errno(EAGAIN, std::string(what) + " on a non-blocking socket (timeout 0)");
  }
  wait_time left;
  if (deadline != steady::time_point::max()) {
    left = deadline - steady::now();
    if (left.is_poll()) throw timeout_error(source, limit.duration());
  }
  const bool fresh = !std::exchange(s.watched, true);
  if (!detail::wait_owned_fd(s.tcp.fd(), events, left, fresh, what))
    throw timeout_error(source, limit.duration());
}

// The exception for a failed OpenSSL call. Called with the error queue as
// OpenSSL left it; marks the session fatal.
[[noreturn]] void throw_failure(tls_state& s, operation op, int error) {
  s.fatal = true;
  const std::string where =
      std::string(name_of(op)) + (op == operation::handshake ? " with " : " from ") + s.peer;
  if (s.io_error != 0) {
    ERR_clear_error();
    throw_errno(s.io_error, where);
  }
  const unsigned long first = ERR_peek_error();
  if (s.eof && (error == SSL_ERROR_SYSCALL || ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    ERR_clear_error();
    throw tls_error(tls_errc::unexpected_eof,
                    "greenev: tls: " + where + ": the peer closed the connection without close_notify",
                    "unexpected eof while reading");
  }
  std::string reason = detail::tls::drain_errors();
  if (op == operation::handshake) {
    const long verify = SSL_get_verify_result(s.ssl);
    if (verify != X509_V_OK && ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      reason = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
      std::string name = s.server_hostname.empty() ? "" : " (server_hostname \"" + s.server_hostname + "\")";
      throw tls_error(tls_errc::certificate_verify, "greenev: tls: " + where + name + ": " + reason, reason,
                      verify);
    }
  }
  if (reason.empty()) reason = "SSL_get_error " + std::to_string(error);
  throw tls_error(op == operation::handshake ? tls_errc::handshake : tls_errc::protocol,
                  "greenev: tls: " + where + ": " + reason, reason);
}

// Runs `call` (an OpenSSL call returning 1 on success, as the *_ex calls do)
// until it succeeds. Returns true on success, false at a clean end of stream
// (read: close_notify, or a suppressed ragged EOF). Throws otherwise.
template <class Call>
bool drive(tls_state& s, const void* source, operation op, steady::time_point deadline, wait_time limit,
           Call call) {
  const char* what = name_of(op);
  for (;;) {
    ERR_clear_error();
    s.io_error = 0;
    const int result = call();
    if (result == 1) return true;
    const int error = SSL_get_error(s.ssl, result);
    switch (error) {
      case SSL_ERROR_WANT_READ:
        wait_for(s, source, 1, deadline, limit, what);
        continue;
      case SSL_ERROR_WANT_WRITE:
        wait_for(s, source, 2, deadline, limit, what);
        continue;
      case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
        if (op == operation::read) return false;
        ERR_clear_error();
        throw_errno(EPIPE, std::string(what) + " to " + s.peer + ": the peer ended the TLS session");
      default:
        break;
    }
    if (op == operation::read && s.eof && s.io_error == 0 && s.context->options.suppress_ragged_eofs) {
      ERR_clear_error();  // a TCP close without close_notify: end of stream, as Python's ssl
      s.fatal = true;
      return false;
    }
    throw_failure(s, op, error);
  }
}

tls_state& require(const std::unique_ptr<tls_state>& s, const char* what) {
  if (!s || s->ssl == nullptr || !s->tcp) {
    throw_errno(EBADF, std::string(what) + " on a closed socket");
  }
  return *s;
}

}  // namespace

namespace detail::tls {

BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = make_bio_method();  // lives as long as the process
  return method;
}

}  // namespace detail::tls

// --- tls_socket --------------------------------------------------------------

tls_socket::tls_socket() noexcept = default;
tls_socket::tls_socket(std::unique_ptr<state> s) noexcept : state_(std::move(s)) {}
tls_socket::tls_socket(tls_socket&& other) noexcept = default;

tls_socket& tls_socket::operator=(tls_socket&& other) noexcept {
  if (this != &other) {
    try {
      close();
    } catch (const std::system_error&) {  // the fd is released anyway
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

tls_socket::~tls_socket() {
  try {
    close();
  } catch (const std::system_error&) {  // as socket's destructor: the fd is released anyway
  }
}

int tls_socket::fd() const noexcept {
  return state_ ? state_->tcp.fd() : -1;
}

void tls_socket::set_timeout(wait_time timeout) noexcept {
  if (state_) state_->tcp.set_timeout(timeout);
}

wait_time tls_socket::timeout() const noexcept {
  return state_ ? state_->tcp.timeout() : wait_time{};
}

std::size_t tls_socket::recv_into(std::span<char> buffer, int flags) {
  if (flags != 0) throw std::invalid_argument("greenev: tls: recv flags must be 0 on a TLS socket");
  state& s = require(state_, "recv");
  if (buffer.empty() || s.finished) return 0;
  const wait_time limit = s.tcp.timeout();
  std::size_t got = 0;
  const bool data = drive(s, this, operation::read, deadline_of(limit), limit,
                          [&] { return SSL_read_ex(s.ssl, buffer.data(), buffer.size(), &got); });
  if (!data) {
    s.finished = true;
    return 0;
  }
  return got;
}

std::string tls_socket::recv(std::size_t max_bytes, int flags) {
  std::string data(max_bytes, '\0');
  data.resize(recv_into(data, flags));
  return data;
}

std::size_t tls_socket::pending() const noexcept {
  return state_ && state_->ssl != nullptr ? static_cast<std::size_t>(SSL_pending(state_->ssl)) : 0;
}

std::size_t tls_socket::send(std::string_view data, int flags) {
  if (flags != 0) throw std::invalid_argument("greenev: tls: send flags must be 0 on a TLS socket");
  state& s = require(state_, "send");
  if (s.close_notify_sent) throw_errno(EPIPE, "send after shutdown");
  if (data.empty()) return 0;
  const wait_time limit = s.tcp.timeout();
  std::size_t sent = 0;
  drive(s, this, operation::write, deadline_of(limit), limit,
        [&] { return SSL_write_ex(s.ssl, data.data(), data.size(), &sent); });
  return sent;
}

void tls_socket::sendall(std::string_view data, int flags) {
  if (flags != 0) throw std::invalid_argument("greenev: tls: sendall flags must be 0 on a TLS socket");
  state& s = require(state_, "sendall");
  if (s.close_notify_sent) throw_errno(EPIPE, "sendall after shutdown");
  const wait_time limit = s.tcp.timeout();
  const auto deadline = deadline_of(limit);  // one deadline for the whole call
  while (!data.empty()) {
    std::size_t sent = 0;
    drive(s, this, operation::write, deadline, limit,
          [&] { return SSL_write_ex(s.ssl, data.data(), data.size(), &sent); });
    data.remove_prefix(sent);
  }
}

void tls_socket::shutdown(int how) {
  state& s = require(state_, "shutdown");
  if ((how == SHUT_WR || how == SHUT_RDWR) && !s.close_notify_sent && !s.fatal) {
    const wait_time limit = s.tcp.timeout();
    // SSL_shutdown returns 0 once close_notify is out and the peer's has not
    // come: that is all this waits for.
    drive(s, this, operation::shutdown, deadline_of(limit), limit, [&] {
      const int result = SSL_shutdown(s.ssl);
      return result >= 0 ? 1 : result;
    });
    s.close_notify_sent = true;
  }
  s.tcp.shutdown(how);
}

void tls_socket::close() {
  if (!state_) return;
  SSL_free(std::exchange(state_->ssl, nullptr));
  state_->tcp.close();
}

void tls_socket::set_option(int level, int name, int value) {
  require(state_, "setsockopt").tcp.set_option(level, name, value);
}

int tls_socket::option(int level, int name) const {
  return require(state_, "getsockopt").tcp.option(level, name);
}

address tls_socket::local_address() const {
  return require(state_, "getsockname").tcp.local_address();
}

address tls_socket::peer_address() const {
  return require(state_, "getpeername").tcp.peer_address();
}

std::string tls_socket::alpn_protocol() const {
  if (!state_ || state_->ssl == nullptr) return {};
  const unsigned char* protocol = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(state_->ssl, &protocol, &length);
  return protocol == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(protocol), length);
}

std::string tls_socket::version() const {
  return state_ && state_->ssl != nullptr ? SSL_get_version(state_->ssl) : "";
}

std::string tls_socket::cipher() const {
  if (!state_ || state_->ssl == nullptr) return {};
  const char* name = SSL_get_cipher_name(state_->ssl);
  return name == nullptr ? "" : name;
}

std::string tls_socket::server_hostname() const {
  if (!state_ || state_->ssl == nullptr) return {};
  if (state_->context->options.role == tls_role::client) return state_->server_hostname;
  const char* name = SSL_get_servername(state_->ssl, TLSEXT_NAMETYPE_host_name);
  return name == nullptr ? "" : name;
}

std::string tls_socket::peer_subject() const {
  if (!state_ || state_->ssl == nullptr) return {};
  X509* peer = SSL_get0_peer_certificate(state_->ssl);
  if (peer == nullptr) return {};
  BIO* out = BIO_new(BIO_s_mem());
  if (out == nullptr) return {};
  std::string subject;
  if (X509_NAME_print_ex(out, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
    char* text = nullptr;
    const long length = BIO_get_mem_data(out, &text);
    if (length > 0) subject.assign(text, static_cast<std::size_t>(length));
  }
  BIO_free(out);
  return subject;
}

bool tls_socket::peer_verified() const {
  return state_ && state_->ssl != nullptr && state_->context->verify &&
         SSL_get0_peer_certificate(state_->ssl) != nullptr && SSL_get_verify_result(state_->ssl) == X509_V_OK;
}

std::string tls_socket::verified_host() const {
  if (!peer_verified()) return {};
  const state& s = *state_;
  if (s.context->options.role != tls_role::client || !s.context->options.check_hostname) return {};
  const char* name = SSL_get0_peername(s.ssl);  // the DNS name that matched
  if (name != nullptr) return name;
  return is_ip_literal(s.server_hostname) ? s.server_hostname : "";  // checked as an address
}

// --- making sessions ---------------------------------------------------------

tls_socket tls_context::wrap_socket(socket connected, const tls_wrap_options& options) const {
  const tls_context_options& o = state_->options;
  const bool client = o.role == tls_role::client;
  if (!client && !options.server_hostname.empty()) {
    throw std::invalid_argument("greenev: tls: server_hostname is for clients; this is a server context");
  }
  if (client && state_->verify && o.check_hostname && options.server_hostname.empty()) {
    throw std::invalid_argument(
        "greenev: tls: a verifying client needs server_hostname (or check_hostname = false)");
  }
  if (!connected) throw_errno(EBADF, "wrap_socket on a closed socket");

  auto s = std::make_unique<tls_socket::state>();
  s->tcp = std::move(connected);
  s->context = state_;
  s->server_hostname = options.server_hostname;
  try {
    s->peer = s->tcp.peer_address().to_string();
  } catch (const std::system_error&) {
    s->peer = "the peer";  // gone already: the handshake will say how
  }

  ERR_clear_error();
  s->ssl = SSL_new(state_->ctx);
  BIO* bio = s->ssl == nullptr ? nullptr : BIO_new(detail::tls::socket_bio_method());
  if (bio == nullptr) {
    throw tls_error(tls_errc::context, "greenev: tls: cannot create a session", detail::tls::drain_errors());
  }
  BIO_set_data(bio, s.get());
  SSL_set_bio(s->ssl, bio, bio);  // the session owns the BIO now
  SSL_set_mode(s->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (client) {
    SSL_set_connect_state(s->ssl);
    const std::string& name = s->server_hostname;
    const bool ip = !name.empty() && is_ip_literal(name);
    if (!name.empty() && !ip && SSL_set_tlsext_host_name(s->ssl, name.c_str()) != 1) {
      throw tls_error(tls_errc::context, "greenev: tls: bad server_hostname \"" + name + "\"",
                      detail::tls::drain_errors());
    }
    if (state_->verify && o.check_hostname) {
      const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name.c_str())
                         : SSL_set1_host(s->ssl, name.c_str());
      if (set != 1) {
        throw tls_error(tls_errc::context, "greenev: tls: cannot check server_hostname \"" + name + "\"",
                        detail::tls::drain_errors());
      }
      SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
  } else {
    SSL_set_accept_state(s->ssl);
  }

  const wait_time limit = options.handshake_timeout.value_or(s->tcp.timeout());
  tls_socket::state& session = *s;
  tls_socket result(std::move(s));
  // The timeout's source is the socket being wrapped (`result`), which the
  // caller never sees; on failure `result` closes the connection.
  drive(session, &result, operation::handshake, deadline_of(limit), limit,
        [&session] { return SSL_do_handshake(session.ssl); });
  return result;
}

tls_socket tls_connect(const tls_context& ctx, std::string_view host, std::uint16_t port, wait_time timeout) {
  if (ctx.role() != tls_role::client)
    throw std::invalid_argument("greenev: tls_connect needs a client context");
  socket tcp = create_connection(host, port, timeout);
  return ctx.wrap_socket(std::move(tcp),
                         {.server_hostname = std::string(host), .handshake_timeout = timeout});
}

tls_socket tls_connect(const tls_context& ctx, const address& peer, std::string_view server_hostname,
                       wait_time timeout) {
  if (ctx.role() != tls_role::client)
    throw std::invalid_argument("greenev: tls_connect needs a client context");
  socket tcp(peer.family(), SOCK_STREAM);
  tcp.set_timeout(timeout);
  tcp.connect(peer);
  return ctx.wrap_socket(std::move(tcp),
                         {.server_hostname = std::string(server_hostname), .handshake_timeout = timeout});
}

}  // namespace greenev
