// tls_context: one SSL_CTX configured from tls_context_options, and the TLS
// error category. Every OpenSSL failure becomes a tls_error naming the file or
// setting, with OpenSSL's reasons.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "tls_internal.hpp"

namespace greenev {

namespace {

class tls_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "greenev.tls"; }
  std::string message(int code) const override {
    switch (static_cast<tls_errc>(code)) {
      case tls_errc::context:
        return "TLS configuration error";
      case tls_errc::handshake:
        return "TLS handshake failed";
      case tls_errc::certificate_verify:
        return "certificate verification failed";
      case tls_errc::protocol:
        return "TLS protocol error";
      case tls_errc::unexpected_eof:
        return "TLS peer closed the connection without close_notify";
    }
    return "unknown TLS error";
  }
};

[[noreturn]] void throw_context_error(const std::string& what) {
  const std::string reason = detail::tls::drain_errors();
  throw tls_error(tls_errc::context, "greenev: tls: " + what + (reason.empty() ? "" : ": " + reason), reason);
}

std::string quoted(const std::string& text) {
  return "\"" + text + "\"";
}

std::string alpn_wire_format(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const std::string& protocol : protocols) {
    if (protocol.empty() || protocol.size() > 255) {
      throw std::invalid_argument("greenev: tls: an ALPN protocol name must have 1 to 255 bytes, not " +
                                  std::to_string(protocol.size()));
    }
    wire += static_cast<char>(protocol.size());
    wire += protocol;
  }
  return wire;
}

// The server's ALPN choice: its own first protocol that the client offered.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
                const unsigned char* offered, unsigned int offered_length, void* arg) {
  const auto& own = static_cast<const tls_context::state*>(arg)->alpn_wire;
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_length, reinterpret_cast<const unsigned char*>(own.data()),
                            static_cast<unsigned int>(own.size()), offered,
                            offered_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no common protocol: carry on without ALPN, as Python does
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

void configure(tls_context::state& s) {
  const tls_context_options& o = s.options;
  const bool server = o.role == tls_role::server;
  SSL_CTX* ctx = s.ctx;
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  const int min_version = o.min_version == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1)
    throw_context_error("cannot set the minimum version");
  if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, o.ciphers.c_str()) != 1) {
    throw_context_error("bad cipher list " + quoted(o.ciphers));
  }
  if (!o.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, o.ciphersuites.c_str()) != 1) {
    throw_context_error("bad TLS 1.3 ciphersuites " + quoted(o.ciphersuites));
  }

  if (!o.certificate_chain_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.certificate_chain_file.c_str()) != 1) {
      throw_context_error("cannot load certificate chain file " + quoted(o.certificate_chain_file));
    }
    const std::string& key = o.private_key_file.empty() ? o.certificate_chain_file : o.private_key_file;
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      const unsigned long last = ERR_peek_last_error();
      if (ERR_GET_LIB(last) == ERR_LIB_X509 && ERR_GET_REASON(last) == X509_R_KEY_VALUES_MISMATCH) {
        throw_context_error("private key " + quoted(key) + " does not match certificate " +
                            quoted(o.certificate_chain_file));
      }
      throw_context_error("cannot load private key file " + quoted(key));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      throw_context_error("private key " + quoted(key) + " does not match certificate " +
                          quoted(o.certificate_chain_file));
    }
  } else if (!o.private_key_file.empty()) {
    throw std::invalid_argument("greenev: tls: private_key_file " + quoted(o.private_key_file) +
                                " given without certificate_chain_file");
  }

  if (s.verify || !o.ca_file.empty()) {
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
        throw_context_error("cannot load CA file " + quoted(o.ca_file));
      }
      if (server) {
        // Tells clients which CAs their certificate should come from.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      throw_context_error("cannot load the system CA store");
    }
  }
  int mode = SSL_VERIFY_NONE;
  if (s.verify) mode = server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
  SSL_CTX_set_verify(ctx, mode, nullptr);

  if (!s.alpn_wire.empty()) {
    if (server) {
      SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &s);
    } else if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(s.alpn_wire.data()),
                                       static_cast<unsigned int>(s.alpn_wire.size())) != 0) {
      throw_context_error("cannot set the ALPN protocols");
    }
  }
  if (server) {
    // Sessions resumed by a verifying server must come from this context.
    static constexpr unsigned char session_context[] = "greenev";
    SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);
  }
}

}  // namespace

const std::error_category& tls_category() noexcept {
  static const tls_category_impl category;
  return category;
}

std::error_code make_error_code(tls_errc code) noexcept {
  return {static_cast<int>(code), tls_category()};
}

tls_error::tls_error(tls_errc code, const std::string& what, std::string reason, long verify_result)
    : std::system_error(make_error_code(code), what),
      reason_(std::move(reason)),
      verify_result_(verify_result) {}

namespace detail::tls {

std::string drain_errors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(code);
    std::string line;
    if (reason != nullptr) {
      line = reason;
    } else {
      char buffer[256];
      ERR_error_string_n(code, buffer, sizeof buffer);
      line = buffer;
    }
    if (text.find(line) != std::string::npos) continue;  // OpenSSL repeats itself up the stack
    if (!text.empty()) text += "; ";
    text += line;
  }
  return text;
}

}  // namespace detail::tls

tls_context::tls_context(tls_context_options options) {
  const bool server = options.role == tls_role::server;
  if (server && options.certificate_chain_file.empty()) {
    throw std::invalid_argument("greenev: tls: a server context needs certificate_chain_file");
  }
  auto s = std::make_shared<state>();
  s->verify = options.verify.value_or(!server);
  s->alpn_wire = alpn_wire_format(options.alpn);
  s->options = std::move(options);
  ERR_clear_error();
  s->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (s->ctx == nullptr) throw_context_error("cannot create an SSL_CTX");
  configure(*s);
  state_ = std::move(s);
}

tls_role tls_context::role() const noexcept {
  return state_->options.role;
}

const tls_context_options& tls_context::options() const noexcept {
  return state_->options;
}

}  // namespace greenev
