// WebSockets (RFC 6455) on greenlets (gevent-websocket): a server side that
// upgrades a request inside an http_server handler, and a client.
//
//   void handler(greenev::http_request& req, greenev::http_response& res) {
//     if (!greenev::is_websocket_upgrade(req)) return res.send("not a websocket\n");
//     greenev::websocket ws = greenev::websocket::accept(req, res);
//     while (auto message = ws.receive()) ws.send(*message);   // echo until the peer closes
//   }
//   greenev::websocket client = greenev::websocket::connect("ws://127.0.0.1:8080/echo");
//
// Framing, masking, fragmentation, UTF-8 checks and the protocol's error codes are
// Boost.Beast's websocket::stream, run synchronously over a beast_stream, so a
// blocking call parks only its greenlet. After accept() the connection belongs to
// the websocket: the HTTP server serves no more requests on it, and the websocket
// may outlive the handler (moved to another greenlet or a list of clients).
// Peers breaking the protocol are closed with 1002 (bad frame), 1007 (invalid UTF-8
// in a text message) or 1009 (larger than max_message_size); receive() then returns
// empty and close_code() says which.
//
// Threading: a websocket belongs to the thread that made it. Any number of
// greenlets may send at once (sends are serialised by a greenev lock, so
// broadcasting from many greenlets is safe); one greenlet receives at a time
// (others wait their turn). close() may be called from any greenlet of the thread.
// Destroying a websocket while another greenlet is inside one of its calls is
// undefined.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <greenev/http_server.hpp>
#include <greenev/hub.hpp>
#include <greenev/tls.hpp>

namespace greenev {

namespace detail {
struct websocket_state;
}  // namespace detail

/// One message: its payload and whether it was sent as binary (else text,
/// which is valid UTF-8).
struct websocket_message {
  std::string data;     ///< the payload
  bool binary = false;  ///< sent as binary (else text)
};

/// How a websocket runs (designated initializers: `{.idle_timeout = 60.0}`).
struct websocket_options {
  /// The largest message received, in bytes (all of its frames): a larger one
  /// closes the connection with 1009.
  std::size_t max_message_size = 16 * 1024 * 1024;
  /// receive() closes the connection with 1001 ("idle timeout") when the peer
  /// sends nothing (not even a ping) for this long.
  wait_time idle_timeout = wait_time::forever();
  /// The longest wait for the peer to take more of an outgoing message (each send).
  wait_time write_timeout = 30.0;
  /// accept(): the 101 response must be sent within this; connect(): the TCP
  /// connection, the TLS handshake and the upgrade together.
  wait_time handshake_timeout = 10.0;
  /// close(): the longest wait for the peer's close frame (and for it to end
  /// the connection) before the connection is closed anyway.
  wait_time close_timeout = 5.0;
  /// Subprotocols (Sec-WebSocket-Protocol). Server: those it speaks; it picks
  /// the first one the client offers that is in this list (none if none
  /// matches). Client: those it offers, in preference order.
  std::vector<std::string> subprotocols{};
  /// Called with the payload of each pong received, in the greenlet that is
  /// inside receive(). Pings are always answered; this only observes pongs.
  std::function<void(std::string_view payload)> on_pong{};
  /// connect() to wss://: the TLS context (a client context); empty: a default
  /// client context (system CAs, certificate and host name checked).
  std::optional<tls_context> tls{};
  /// connect(): extra request header fields (Origin, Authorization, ...).
  std::vector<std::pair<std::string, std::string>> headers{};
};

/// A WebSocket failure: a client handshake that did not end in 101
/// (websocket_handshake_error), a call on a closed websocket (websocket_closed).
class websocket_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The server did not upgrade the connection: status() is the HTTP status it
/// answered with (0 if the answer was not a valid HTTP response or broke the
/// protocol, e.g. a wrong Sec-WebSocket-Accept).
class websocket_handshake_error : public websocket_error {
 public:
  /// `status` is the server's HTTP answer (0 if none came).
  websocket_handshake_error(unsigned status, const std::string& message)
      : websocket_error(message), status_(status) {}
  /// The HTTP status of the answer, 0 if none.
  [[nodiscard]] unsigned status() const noexcept { return status_; }

 private:
  unsigned status_;
};

/// A send, ping or pong on a websocket that is closed or closing, or that
/// failed during the call (the peer went away, write_timeout passed: the
/// connection is closed then). close_code() tells how it ended.
class websocket_closed : public websocket_error {
 public:
  using websocket_error::websocket_error;
};

/// True if `request` asks for a WebSocket upgrade (GET, "Connection: upgrade",
/// "Upgrade: websocket"). Never switches, never throws.
[[nodiscard]] bool is_websocket_upgrade(const http_request& request) noexcept;

/// One WebSocket connection, either end (see the top of this file). Move-only.
class websocket {
 public:
  /// Upgrades the connection of `request` (inside an http_server handler):
  /// checks the request, sends "101 Switching Protocols" (with the headers set
  /// on `response` before the call, the server's Server header and the chosen
  /// subprotocol) and takes the connection, with any bytes the client sent
  /// after its request, from the server. The server then ends that connection's
  /// HTTP loop when the handler returns. Switches. Throws http_error before
  /// anything is sent for a request that is not an upgrade (400: not a GET
  /// upgrade, missing or malformed Sec-WebSocket-Key, a request body; 426 for a
  /// Sec-WebSocket-Version other than 13, with "Sec-WebSocket-Version: 13"), so
  /// a handler letting it escape answers the client with that status;
  /// std::logic_error if the response had started; websocket_closed if the 101
  /// could not be sent within handshake_timeout (the connection is closed).
  [[nodiscard]] static websocket accept(http_request& request, http_response& response,
                                        websocket_options options = {});

  /// Connects to `url` ("ws://host[:port][/path][?query]" or "wss://...",
  /// host a name, an IPv4 address or a bracketed IPv6 address) and makes the
  /// upgrade, all within handshake_timeout. Switches. Throws
  /// std::invalid_argument for a malformed URL or another scheme;
  /// what create_connection and tls_connect throw (std::system_error,
  /// dns errors, tls_error); timeout_error when handshake_timeout passes;
  /// websocket_handshake_error when the server answers anything but a valid
  /// 101 (or picks a subprotocol that was not offered).
  [[nodiscard]] static websocket connect(std::string_view url, websocket_options options = {});

  /// Moves the connection; the moved-from websocket may only be destroyed or assigned to.
  ///@{
  websocket(websocket&& other) noexcept;
  websocket& operator=(websocket&& other) noexcept;
  ///@}
  websocket(const websocket&) = delete;
  websocket& operator=(const websocket&) = delete;
  /// If still open: sends a close frame (1001) if that needs no wait, then
  /// closes the connection. Never waits for the peer.
  ~websocket();

  /// Waits for the next whole message (pings are answered meanwhile). Returns
  /// it, or empty once the websocket is closed: the peer closed it (its close
  /// frame is answered), close() was called, the peer broke the protocol
  /// (closed with 1002, 1007 or 1009), idle_timeout passed (closed with 1001)
  /// or the connection broke (1006); close_code() says which. Switches.
  /// Exceptions thrown into the greenlet (a kill, a greenev::timeout)
  /// propagate and leave the websocket open; a partly received message is kept
  /// for the next call.
  [[nodiscard]] std::optional<websocket_message> receive();

  /// Sends one message as text (must be valid UTF-8: the peer checks it) or
  /// binary. Waits while another greenlet is sending and while the peer is
  /// slow (each wait at most write_timeout). Switches. Throws websocket_closed
  /// if the websocket is closed or closing, or breaks during the send.
  ///@{
  void send_text(std::string_view text);
  void send_binary(std::string_view data);
  /// As send_text or send_binary, after message.binary.
  void send(const websocket_message& message);
  ///@}

  /// Sends a ping or an unsolicited pong with `payload` (at most 125 bytes,
  /// else std::invalid_argument). Switches; throws as send_text().
  ///@{
  void ping(std::string_view payload = {});
  void pong(std::string_view payload = {});
  ///@}

  /// Starts the closing handshake: sends a close frame with `code` and
  /// `reason` (at most 123 bytes), then waits up to close_timeout for the
  /// peer's close frame and for it to end the connection, then closes the
  /// connection. Messages arriving meanwhile are dropped if no greenlet is in
  /// receive(); if one is, it gets them and then returns empty. Does nothing
  /// if already closed or closing. Switches. Throws std::invalid_argument for
  /// a code a close frame may not carry (valid: 1000-1003, 1007-1011,
  /// 3000-4999) or a longer reason; nothing else (a peer that is gone just
  /// ends the wait).
  void close(std::uint16_t code = 1000, std::string_view reason = {});

  /// True once closing started (either side) or the connection ended.
  [[nodiscard]] bool closed() const noexcept;
  /// How it ended: the code of the first close frame (the peer's if it closed
  /// first, else the one this side sent: close(), a protocol error 1002 / 1007
  /// / 1009, the idle timeout 1001), 1005 for a close frame without a code,
  /// 1006 if the connection broke without one; 0 while open.
  [[nodiscard]] std::uint16_t close_code() const noexcept;
  /// The reason that came with close_code(), "" if none.
  [[nodiscard]] const std::string& close_reason() const noexcept;
  /// The subprotocol agreed in the handshake, "" if none.
  [[nodiscard]] const std::string& subprotocol() const noexcept;

 private:
  explicit websocket(std::unique_ptr<detail::websocket_state> state) noexcept;
  std::unique_ptr<detail::websocket_state> state_;
};

}  // namespace greenev
