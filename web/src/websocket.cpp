// websocket: Beast's websocket::stream, used synchronously, over a transport of
// our own (its "next layer") that reads through a beast_stream after the bytes
// an upgrade left over, and that serialises writes: Beast's synchronous calls
// assume one caller, so a pong or close frame Beast writes from inside a read
// takes the send lock like a send does (docs/design.md, "WebSockets").
#include <greenev/websocket.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/system/system_error.hpp>

#include <greenev/beast_stream.hpp>
#include <greenev/detail/scope_exit.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/socket.hpp>
#include <greenev/timeout.hpp>

#include "http_exchange.hpp"

namespace greenev {

namespace detail {

namespace beast_ws = boost::beast::websocket;
using boost::system::error_code;
using ws_clock = std::chrono::steady_clock;

// Beast's websocket stream holds an Asio timer for its asynchronous calls,
// which greenev never makes; the timer needs an executor. They all live on this
// one io_context, which never runs (created on first use, never destroyed, so a
// websocket outliving static destruction is still fine).
boost::asio::io_context::executor_type unused_executor() {
  static auto* const context = new boost::asio::io_context(1);
  return context->get_executor();
}

// Beast's next layer: the connection's byte_stream, read through `reader_` after
// the bytes already read past an upgrade request, written through `writer_`
// under the send lock (see the top of this file).
class websocket_transport {
 public:
  using executor_type = boost::asio::io_context::executor_type;

  websocket_transport(std::unique_ptr<byte_stream> stream, std::string pending, rlock& send_lock,
                      wait_time close_timeout)
      : stream_(std::move(stream)),
        reader_(*stream_),
        writer_(*stream_),
        pending_(std::move(pending)),
        send_lock_(send_lock),
        close_timeout_(close_timeout) {}
  websocket_transport(const websocket_transport&) = delete;
  websocket_transport& operator=(const websocket_transport&) = delete;

  executor_type get_executor() noexcept { return unused_executor(); }

  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, error_code& ec) {
    ec = {};
    if (!pending_.empty()) {
      const std::size_t n = boost::asio::buffer_copy(buffers, boost::asio::buffer(pending_));
      pending_.erase(0, n);
      return n;
    }
    const std::size_t n = reader_.read_some(buffers, ec);
    if (handshake_copy_ != nullptr && handshake_copy_->size() < 512) {
      std::size_t left = n;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           left > 0 && it != boost::asio::buffer_sequence_end(buffers); ++it) {
        const boost::asio::mutable_buffer b = *it;
        const std::size_t take = std::min(left, b.size());
        handshake_copy_->append(static_cast<const char*>(b.data()), take);
        left -= take;
      }
    }
    return n;
  }
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "greenev: websocket: read");
    return n;
  }

  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, error_code& ec) {
    ec = {};
    const std::size_t size = boost::beast::buffer_bytes(buffers);
    if (close_sent_) return size;  // our close frame is out: Beast's echo of the peer's is dropped
    if (send_lock_.owned_by_current()) {
      const std::size_t n = writer_.write_some(buffers, ec);
      written_ += n;
      return n;
    }
    // Beast writing from inside a read (a pong, a close frame) or a handshake:
    // one whole frame under the lock, so it never lands inside another
    // greenlet's message.
    const std::lock_guard<rlock> hold(send_lock_);
    if (close_sent_) return size;
    write_all(boost::beast::buffers_to_string(buffers), ec);
    return ec ? 0 : size;
  }
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers) {
    error_code ec;
    const std::size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "greenev: websocket: write");
    return n;
  }

  // Writes all of `bytes` (the caller holds the send lock). A write cut short
  // by an error or an exception leaves a partial frame: the stream is closed.
  void write_all(std::string_view bytes, error_code& ec) {
    ec = {};
    const std::size_t before = written_;
    bool done = false;
    const auto cut = scope_exit([&] {
      if (!done && written_ != before) close();
    });
    while (!bytes.empty()) {
      const std::size_t n = writer_.write_some(boost::asio::buffer(bytes.data(), bytes.size()), ec);
      if (ec) break;
      written_ += n;
      bytes.remove_prefix(n);
    }
    done = !ec;
  }

  // The end of the connection after the close frames (Beast calls it through
  // teardown() below): half-close, read what the peer still sends, so that
  // unread bytes do not turn our close into a reset, then close. A client
  // waits (up to close_timeout) for the server to end the TCP connection, as
  // RFC 6455 7.1.1 asks; a server only takes what is already there.
  void teardown(bool wait_for_peer) {
    try {
      stream_->shutdown(SHUT_WR);
      char sink[4096];
      std::size_t dropped = 0;
      if (wait_for_peer) {
        reader_.expires_after(close_timeout_);
        error_code ec;
        while (dropped < 256 * 1024) {
          const std::size_t n = read_some(boost::asio::buffer(sink), ec);
          if (ec) break;
          dropped += n;
        }
      } else if (auto* plain = dynamic_cast<byte_stream_of<socket>*>(stream_.get())) {
        // What is there, without waiting, and without the exception a
        // zero-timeout recv_into raises when nothing is (every close, here).
        ssize_t n = 0;
        while (dropped < 256 * 1024 && (n = ::recv(plain->get().fd(), sink, sizeof sink, MSG_DONTWAIT)) > 0) {
          dropped += static_cast<std::size_t>(n);
        }
      } else {
        stream_->set_timeout(0.0);  // poll: what is there, without waiting
        while (dropped < 256 * 1024) {
          const std::size_t n = stream_->recv_into(sink);
          if (n == 0) break;
          dropped += n;
        }
      }
    } catch (const std::system_error&) {  // the peer is gone already
    } catch (const timeout_error&) {      // nothing more (server) or too slow (client)
    }
    close();
  }

  // Closes the stream, waking greenlets waiting on it. Never switches.
  void close() noexcept {
    try {
      stream_->close();
    } catch (const std::exception&) {  // the fd is released anyway
    }
  }

  beast_stream<byte_stream>& reader() noexcept { return reader_; }
  beast_stream<byte_stream>& writer() noexcept { return writer_; }
  void mark_close_sent() noexcept { close_sent_ = true; }
  [[nodiscard]] std::size_t written() const noexcept { return written_; }
  // Keeps a copy of the first bytes read while set (a client handshake: the
  // status line of a refused upgrade).
  void keep_handshake_copy(std::string* copy) noexcept { handshake_copy_ = copy; }

 private:
  std::unique_ptr<byte_stream> stream_;
  beast_stream<byte_stream> reader_;
  beast_stream<byte_stream> writer_;
  std::string pending_;
  rlock& send_lock_;
  wait_time close_timeout_;
  std::size_t written_ = 0;
  bool close_sent_ = false;
  std::string* handshake_copy_ = nullptr;
};

// Found by Beast through ADL once the close frames are exchanged.
void teardown(boost::beast::role_type role, websocket_transport& transport, error_code& ec) {
  ec = {};
  transport.teardown(role == boost::beast::role_type::client);
}

enum class websocket_phase { open, closing, closed };

struct websocket_state {
  websocket_state(std::unique_ptr<byte_stream> stream, std::string pending, websocket_options o,
                  bool is_client, std::string name)
      : options(std::move(o)),
        client(is_client),
        where(std::move(name)),
        ws(std::move(stream), std::move(pending), send_lock, options.close_timeout) {
    ws.read_message_max(options.max_message_size);
    ws.auto_fragment(true);
    ws.write_buffer_bytes(64 * 1024);
    ws.control_callback([this](beast_ws::frame_type kind, boost::beast::string_view payload) {
      if (kind == beast_ws::frame_type::pong && options.on_pong)
        options.on_pong({payload.data(), payload.size()});
    });
    transport().reader().set_read_timeout(options.idle_timeout);
    transport().writer().set_write_timeout(options.write_timeout);
  }

  websocket_transport& transport() noexcept { return ws.next_layer(); }

  // Records how the websocket ended; the first record wins.
  void record(std::uint16_t code, std::string_view why) {
    if (close_code != 0) return;
    close_code = code;
    close_reason = std::string(why);
  }

  // The websocket is over: closes the stream (idempotent).
  void finish(std::uint16_t code_if_first) {
    record(code_if_first, {});
    phase = websocket_phase::closed;
    transport().close();
  }

  // After a failed read: who ended it, and how (see websocket::close_code()).
  void after_read_error(const error_code& ec) {
    if (ec == beast_ws::error::closed) {
      // The peer's close frame; Beast answered it (unless ours went first) and
      // tore the connection down.
      const beast_ws::close_reason& peer = ws.reason();
      record(peer.code == beast_ws::close_code::none ? 1005 : peer.code,
             {peer.reason.data(), peer.reason.size()});
      finish(1005);
    } else if (ec == boost::beast::error::timeout && phase == websocket_phase::open) {
      send_close_frame(1001, "idle timeout", 0.0);
      finish(1001);
    } else if (ec.category() == beast_ws::make_error_code(beast_ws::error::closed).category() &&
               phase == websocket_phase::open) {
      // A protocol error: Beast sent its close frame and tore down.
      if (ec == beast_ws::error::message_too_big) {
        record(1009, "message too big");
      } else if (ec == beast_ws::error::bad_frame_payload) {
        record(1007, "invalid UTF-8 in a text message");
      } else {
        record(1002, ec.message());
      }
      finish(1002);
    } else {
      finish(1006);
    }
  }

  // Writes a close frame ourselves (not Beast's close(), which also reads: it
  // cannot run while another greenlet is inside receive()). Takes the send
  // lock for up to `lock_wait`. False if it could not be sent (the stream is
  // closed then).
  bool send_close_frame(std::uint16_t code, std::string_view why, wait_time lock_wait) {
    if (!send_lock.acquire(lock_wait)) return false;
    const auto release = scope_exit([this] { send_lock.release(); });
    std::string frame;
    frame.push_back(static_cast<char>(0x88));  // FIN, opcode 8 (close)
    const std::size_t length = 2 + why.size();
    frame.push_back(static_cast<char>((client ? 0x80 : 0) | length));
    std::array<unsigned char, 4> mask{};
    if (client) {
      static thread_local std::mt19937 generator(std::random_device{}());
      for (auto& b : mask) b = static_cast<unsigned char>(generator());
      frame.append(reinterpret_cast<const char*>(mask.data()), mask.size());
    }
    std::string payload;
    payload.push_back(static_cast<char>(code >> 8));
    payload.push_back(static_cast<char>(code & 0xff));
    payload.append(why);
    for (std::size_t i = 0; client && i < payload.size(); ++i)
      payload[i] = static_cast<char>(payload[i] ^ mask[i % 4]);
    frame += payload;
    error_code ec;
    transport().write_all(frame, ec);
    transport().mark_close_sent();
    if (ec) transport().close();
    return !ec;
  }

  void require_open(const char* what) const {
    if (phase != websocket_phase::open) {
      throw websocket_closed(std::string("greenev: websocket: ") + what + " on a closed websocket (" + where +
                             ", code " + std::to_string(close_code) + ")");
    }
  }

  // Runs one Beast write (a message, a ping, a pong) under the send lock.
  template <class F>
  void write_under_lock(const char* what, F&& f) {
    require_open(what);
    const std::lock_guard<rlock> hold(send_lock);
    require_open(what);
    const std::size_t before = transport().written();
    bool done = false;
    const auto cut = scope_exit([&] {
      // An exception thrown into the greenlet mid-frame leaves the stream unusable.
      if (!done && transport().written() != before) finish(1006);
    });
    error_code ec;
    f(ec);
    done = true;
    if (ec) {
      if (phase == websocket_phase::open) finish(1006);
      throw websocket_closed(std::string("greenev: websocket: ") + what + " to " + where +
                             " failed: " + ec.message());
    }
  }

  websocket_options options;
  bool client;
  std::string where;  // the peer, for messages
  rlock send_lock;
  mutex read_lock;
  beast_ws::stream<websocket_transport> ws;
  boost::beast::flat_buffer message;
  websocket_phase phase = websocket_phase::open;
  std::uint16_t close_code = 0;
  std::string close_reason;
  std::string subprotocol;
};

namespace {

bool is_base64_key(std::string_view key) noexcept {
  // 16 random bytes in base64: 22 characters and "==".
  if (key.size() != 24 || !key.ends_with("==")) return false;
  return std::all_of(key.begin(), key.end() - 2, [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '+' || ch == '/';
  });
}

bool valid_close_code(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
}

// The subprotocol a server picks: the first the client offers that it speaks.
std::string choose_subprotocol(const http::fields& request, const std::vector<std::string>& ours) {
  const auto [first, last] = request.equal_range(http::field::sec_websocket_protocol);
  for (auto field = first; field != last; ++field) {
    for (const auto& offered : http::token_list(field->value())) {
      for (const auto& mine : ours) {
        if (to_std(offered) == mine) return mine;
      }
    }
  }
  return {};
}

struct ws_url {
  bool secure = false;
  std::string host;         // for the connection (no brackets)
  std::uint16_t port = 80;  // the scheme's unless given
  std::string authority;    // the Host header
  std::string target;       // path and query
};

ws_url parse_url(std::string_view url) {
  const auto bad = [&](const char* why) {
    return std::invalid_argument("greenev: websocket: bad URL \"" + std::string(url) + "\": " + why);
  };
  ws_url out;
  std::string_view rest;
  const auto starts = [&](std::string_view scheme) {
    return url.size() >= scheme.size() &&
           boost::beast::iequals(boost::beast::string_view(url.data(), scheme.size()),
                                 boost::beast::string_view(scheme.data(), scheme.size()));
  };
  if (starts("ws://")) {
    rest = url.substr(5);
  } else if (starts("wss://")) {
    rest = url.substr(6);
    out.secure = true;
    out.port = 443;
  } else {
    throw bad("the scheme must be ws:// or wss://");
  }
  const std::size_t end = std::min(rest.find_first_of("/?#"), rest.size());
  if (end < rest.size() && rest[end] == '#') throw bad("a fragment is not allowed");
  out.authority = std::string(rest.substr(0, end));
  std::string_view target = rest.substr(end);
  if (target.find('#') != std::string_view::npos) throw bad("a fragment is not allowed");
  out.target = target.empty() ? "/" : (target[0] == '?' ? "/" + std::string(target) : std::string(target));
  std::string_view authority = out.authority;
  std::string_view port;
  if (authority.starts_with("[")) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad("an unclosed '[' in the host");
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw bad("junk after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) throw bad("no host");
  if (authority.find('@') != std::string_view::npos) throw bad("user information is not supported");
  if (!port.empty() || authority.ends_with(":")) {
    unsigned long value = 0;
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      throw bad("the port must be a number");
    }
    value = std::stoul(std::string(port));
    if (value == 0 || value > 65535) throw bad("the port must be 1..65535");
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

// "HTTP/1.1 404 Not Found" -> 404; 0 if the bytes do not start a status line.
unsigned status_of(std::string_view reply) noexcept {
  if (!reply.starts_with("HTTP/") || reply.size() < 12 || reply[8] != ' ') return 0;
  unsigned status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (reply[i] < '0' || reply[i] > '9') return 0;
    status = status * 10 + static_cast<unsigned>(reply[i] - '0');
  }
  return status;
}

}  // namespace

}  // namespace detail

using detail::websocket_phase;
namespace http = boost::beast::http;
namespace beast_ws = boost::beast::websocket;

bool is_websocket_upgrade(const http_request& request) noexcept {
  try {
    return beast_ws::is_upgrade(detail::http_exchange::of(request).parser.get());
  } catch (...) {  // token parsing allocates nothing, but stay noexcept whatever happens
    return false;
  }
}

websocket::websocket(std::unique_ptr<detail::websocket_state> state) noexcept : state_(std::move(state)) {}
websocket::websocket(websocket&& other) noexcept = default;
websocket& websocket::operator=(websocket&& other) noexcept = default;

websocket::~websocket() {
  if (state_ == nullptr) return;
  detail::websocket_state& s = *state_;
  try {
    if (s.phase == websocket_phase::open) {
      // Only if it needs no wait: a destructor must not switch.
      s.transport().writer().set_write_timeout(0.0);
      s.send_close_frame(1001, {}, 0.0);
    }
  } catch (...) {  // nothing here switches, so nothing is thrown into us; a send error is moot
  }
  s.finish(1006);
}

websocket websocket::accept(http_request& request, http_response& response, websocket_options options) {
  detail::http_exchange& x = detail::http_exchange::of(request);
  if (x.started) throw std::logic_error("greenev: websocket::accept: the response has already started");
  const auto& req = x.parser.get();
  if (!is_websocket_upgrade(request)) {
    throw http_error(
        400, "not a WebSocket upgrade (a GET with \"Connection: upgrade\" and \"Upgrade: websocket\")");
  }
  if (!detail::is_base64_key(detail::to_std(req[http::field::sec_websocket_key]))) {
    throw http_error(400, "missing or malformed Sec-WebSocket-Key");
  }
  if (req[http::field::sec_websocket_version] != "13") {
    response.set_status(426);
    response.set_header("Sec-WebSocket-Version", "13");
    response.set_header("Connection", "close");
    response.send("only WebSocket version 13 is supported\n");
    throw http_error(426, "unsupported Sec-WebSocket-Version (answered 426)");
  }
  if (!x.parser.is_done()) throw http_error(400, "a WebSocket upgrade request has no body");
  detail::http_connection& c = x.conn;
  if (c.owner == nullptr || *c.owner == nullptr) {
    throw std::logic_error("greenev: websocket::accept: the connection was already taken");
  }

  // The hand-over: the stream and the bytes read past the request leave the
  // HTTP loop, which ends once the handler returns (started, finished, broken).
  std::string pending(static_cast<const char*>(c.buffer.data().data()), c.buffer.size());
  c.buffer.consume(c.buffer.size());
  std::unique_ptr<byte_stream> stream = std::move(*c.owner);
  x.started = x.finished = x.broken = true;
  x.keep_alive = false;

  std::string chosen = detail::choose_subprotocol(req, options.subprotocols);
  std::vector<std::pair<std::string, std::string>> extra;
  for (const auto& field : x.head) {
    extra.emplace_back(detail::to_std(field.name_string()), detail::to_std(field.value()));
  }
  const std::string server_name = c.options.server_name;
  auto state = std::make_unique<detail::websocket_state>(std::move(stream), std::move(pending),
                                                         std::move(options), false, c.peer.to_string());
  state->subprotocol = chosen;
  state->ws.set_option(beast_ws::stream_base::decorator([&](beast_ws::response_type& r) {
    for (const auto& [name, value] : extra) r.set(name, value);
    if (server_name.empty()) {
      r.erase(http::field::server);
    } else {
      r.set(http::field::server, server_name);
    }
    if (!chosen.empty()) r.set(http::field::sec_websocket_protocol, chosen);
  }));
  detail::websocket_state& s = *state;
  s.transport().writer().expires_after(s.options.handshake_timeout);
  detail::error_code ec;
  s.ws.accept(req, ec);
  s.transport().writer().expires_never();
  if (ec) {
    s.finish(1006);
    throw websocket_closed("greenev: websocket: sending the 101 response to " + s.where +
                           " failed: " + ec.message());
  }
  return websocket(std::move(state));
}

websocket websocket::connect(std::string_view url, websocket_options options) {
  const detail::ws_url where = detail::parse_url(url);
  const wait_time limit = options.handshake_timeout;
  const auto started = detail::ws_clock::now();
  std::unique_ptr<byte_stream> stream;
  if (where.secure) {
    const tls_context context = options.tls ? *options.tls : tls_context();
    stream =
        std::make_unique<byte_stream_of<tls_socket>>(tls_connect(context, where.host, where.port, limit));
  } else {
    stream = std::make_unique<byte_stream_of<socket>>(create_connection(where.host, where.port, limit));
  }
  auto state = std::make_unique<detail::websocket_state>(std::move(stream), std::string(), std::move(options),
                                                         true, std::string(url));
  detail::websocket_state& s = *state;
  const auto headers = s.options.headers;
  std::string offered;
  for (const auto& name : s.options.subprotocols) offered += (offered.empty() ? "" : ", ") + name;
  s.ws.set_option(beast_ws::stream_base::decorator([&](beast_ws::request_type& r) {
    r.set(http::field::user_agent, "greenev");
    for (const auto& [name, value] : headers) r.set(name, value);
    if (!offered.empty()) r.set(http::field::sec_websocket_protocol, offered);
  }));
  if (!limit.is_forever()) {
    const auto deadline = started + std::chrono::duration_cast<detail::ws_clock::duration>(limit.duration());
    s.transport().reader().expires_at(deadline);
    s.transport().writer().expires_at(deadline);
  }
  std::string reply;
  s.transport().keep_handshake_copy(&reply);
  beast_ws::response_type answer;
  detail::error_code ec;
  s.ws.handshake(answer, where.authority, where.target, ec);
  s.transport().keep_handshake_copy(nullptr);
  s.transport().reader().expires_never();
  s.transport().writer().expires_never();
  if (ec) {
    s.finish(1006);
    if (ec == boost::beast::error::timeout) throw timeout_error(&s, limit.duration());
    const unsigned status = detail::status_of(reply);
    if (status != 0 && status != 101) {
      const std::string line = reply.substr(0, reply.find("\r\n"));
      throw websocket_handshake_error(status, "greenev: websocket: " + std::string(url) + " answered \"" +
                                                  line + "\", not 101 Switching Protocols");
    }
    throw websocket_handshake_error(
        status, "greenev: websocket: the upgrade with " + std::string(url) + " failed: " + ec.message());
  }
  const std::string chosen(detail::to_std(answer[http::field::sec_websocket_protocol]));
  if (!chosen.empty() && std::find(s.options.subprotocols.begin(), s.options.subprotocols.end(), chosen) ==
                             s.options.subprotocols.end()) {
    s.finish(1006);
    throw websocket_handshake_error(101, "greenev: websocket: " + std::string(url) +
                                             " chose the subprotocol \"" + chosen +
                                             "\", which was not offered");
  }
  s.subprotocol = chosen;
  return websocket(std::move(state));
}

std::optional<websocket_message> websocket::receive() {
  detail::websocket_state& s = *state_;
  const std::lock_guard<mutex> reading(s.read_lock);
  if (s.phase == websocket_phase::closed) return std::nullopt;
  detail::error_code ec;
  s.ws.read(s.message, ec);
  if (ec) {
    s.after_read_error(ec);
    return std::nullopt;
  }
  websocket_message out{boost::beast::buffers_to_string(s.message.data()), s.ws.got_binary()};
  s.message.clear();
  return out;
}

void websocket::send_text(std::string_view text) {
  detail::websocket_state& s = *state_;
  s.write_under_lock("send", [&](detail::error_code& ec) {
    s.ws.text(true);
    s.ws.write(boost::asio::buffer(text.data(), text.size()), ec);
  });
}

void websocket::send_binary(std::string_view data) {
  detail::websocket_state& s = *state_;
  s.write_under_lock("send", [&](detail::error_code& ec) {
    s.ws.binary(true);
    s.ws.write(boost::asio::buffer(data.data(), data.size()), ec);
  });
}

void websocket::send(const websocket_message& message) {
  if (message.binary) {
    send_binary(message.data);
  } else {
    send_text(message.data);
  }
}

namespace {

beast_ws::ping_data ping_payload(std::string_view payload) {
  if (payload.size() > 125) {
    throw std::invalid_argument("greenev: websocket: a ping or pong payload has at most 125 bytes, not " +
                                std::to_string(payload.size()));
  }
  return beast_ws::ping_data(payload.data(), payload.size());
}

}  // namespace

void websocket::ping(std::string_view payload) {
  const beast_ws::ping_data data = ping_payload(payload);
  detail::websocket_state& s = *state_;
  s.write_under_lock("ping", [&](detail::error_code& ec) { s.ws.ping(data, ec); });
}

void websocket::pong(std::string_view payload) {
  const beast_ws::ping_data data = ping_payload(payload);
  detail::websocket_state& s = *state_;
  s.write_under_lock("pong", [&](detail::error_code& ec) { s.ws.pong(data, ec); });
}

void websocket::close(std::uint16_t code, std::string_view reason) {
  if (!detail::valid_close_code(code)) {
    throw std::invalid_argument("greenev: websocket: " + std::to_string(code) +
                                " is not a code a close frame may carry");
  }
  if (reason.size() > 123) {
    throw std::invalid_argument("greenev: websocket: a close reason has at most 123 bytes, not " +
                                std::to_string(reason.size()));
  }
  detail::websocket_state& s = *state_;
  if (s.phase != websocket_phase::open) return;
  s.phase = websocket_phase::closing;
  s.record(code, reason);
  const auto started = detail::ws_clock::now();
  const wait_time limit = s.options.close_timeout;
  const auto left = [&]() -> wait_time {
    if (limit.is_forever()) return wait_time::forever();
    return limit.duration() - (detail::ws_clock::now() - started);
  };
  if (!s.send_close_frame(code, reason, limit)) {
    s.finish(1006);
    return;
  }
  // The peer's close frame: read it here, or let the greenlet inside
  // receive() read it and wait for that one to give the read lock up.
  if (!s.read_lock.acquire(left())) {
    s.finish(1006);
    return;
  }
  const auto release = detail::scope_exit([&s] { s.read_lock.release(); });
  if (s.phase == websocket_phase::closed) return;
  auto& reader = s.transport().reader();
  reader.expires_after(left());
  const auto restore = detail::scope_exit([&reader] { reader.expires_never(); });
  for (;;) {
    detail::error_code ec;
    s.ws.read(s.message, ec);
    s.message.clear();
    if (ec) {
      s.after_read_error(ec);
      return;
    }
  }
}

bool websocket::closed() const noexcept {
  return state_->phase != websocket_phase::open;
}

std::uint16_t websocket::close_code() const noexcept {
  return state_->close_code;
}

const std::string& websocket::close_reason() const noexcept {
  return state_->close_reason;
}

const std::string& websocket::subprotocol() const noexcept {
  return state_->subprotocol;
}

}  // namespace greenev
