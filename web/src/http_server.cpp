// http_server: a stream_server whose per-connection greenlet reads requests
// with Beast's parser over a beast_stream, calls the handler, and loops while
// the connection is kept alive. The header is fed to the parser here (not
// through http::read_header) so that the raw bytes can be checked for what
// Beast 1.74 accepts and a server must not (obs-fold; docs/design.md, "HTTP
// server"), and so that an over-long request line (414) is told from an
// over-large header (431).
#include <greenev/http_server.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/timeout.hpp>

#include "http_exchange.hpp"

namespace greenev {

namespace detail {

struct http_server_state {
  http_server_options options;
  http_server::handler_type handler;
  std::unique_ptr<stream_server> server;
  std::shared_ptr<http_registry> registry = std::make_shared<http_registry>();
  std::atomic<std::size_t> open{0};
  std::atomic<std::uint64_t> requests{0};
};

}  // namespace detail

namespace {

namespace http = boost::beast::http;
using boost::system::error_code;
using detail::http_connection;
using detail::http_exchange;
using detail::http_server_state;
using clock = std::chrono::steady_clock;

// After an error response the client may still be sending (a body we refused):
// closing with unread input would reset the connection and could destroy the
// response before the client reads it, so read and drop a little first.
constexpr std::chrono::milliseconds linger_time{1000};
constexpr std::size_t linger_bytes = 256 * 1024;
// An unread request body is read and dropped, up to this much, to keep the
// connection; a larger rest closes it instead.
constexpr std::size_t drain_bytes = 64 * 1024;
constexpr std::size_t read_chunk = 16 * 1024;
// The first read of a request header: most headers are a few hundred bytes.
constexpr std::size_t header_chunk = 1024;

clock::time_point deadline_after(clock::time_point from, wait_time limit) {
  if (limit.is_forever()) return clock::time_point::max();
  return from + std::chrono::duration_cast<clock::duration>(limit.duration());
}

// Out of line (and drain_body too): their 4 KiB buffers would otherwise sit in
// the frames of the request loop, and stack-clash probing touches every page of
// a frame on entry, so each held connection (a long poll) would keep them.
[[gnu::noinline]] void close_gracefully(http_connection& c) {
  try {
    c.stream.shutdown(SHUT_WR);
    c.io.expires_after(linger_time);
    std::size_t dropped = 0;
    char sink[4096];
    error_code ec;
    while (dropped < linger_bytes) {
      const std::size_t n = c.io.read_some(boost::asio::buffer(sink), ec);
      if (ec) break;
      dropped += n;
    }
  } catch (const std::exception&) {  // the peer is gone already
  }
}

// Outcome of reading a request header: a status to answer with, or none.
enum : unsigned { header_ok = 0, header_quiet_close = 1 };

bool has_obs_fold(std::string_view header) noexcept {
  // obs-fold: a line of the header that starts with SP or HTAB.
  for (std::size_t i = header.find('\n'); i != std::string_view::npos && i + 1 < header.size();
       i = header.find('\n', i + 1)) {
    if (header[i + 1] == ' ' || header[i + 1] == '\t') return true;
  }
  return false;
}

// The status answering a header Beast refused; `data` holds the request's start.
unsigned status_for(const error_code& ec, std::string_view data) noexcept {
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) return 431;
  if (ec == http::error::body_limit) return 413;
  if (ec == http::error::bad_version) {
    // Beast takes HTTP/1.0 and 1.1 only; a well-formed other version is 505.
    const std::string_view line = data.substr(0, data.find("\r\n"));
    if (line.size() >= 9) {
      const std::string_view v = line.substr(line.size() - 9);
      const bool well_formed =
          v.starts_with(" HTTP/") && v[6] >= '0' && v[6] <= '9' && v[7] == '.' && v[8] >= '0' && v[8] <= '9';
      if (well_formed && v != " HTTP/1.0" && v != " HTTP/1.1") return 505;
    }
  }
  return 400;
}

// Fills the connection's buffer until `parser` has a whole header. Returns
// header_ok, header_quiet_close (the client left or timed out before sending
// anything) or the status to answer.
unsigned read_header(http_connection& c, detail::http_request_parser& parser, clock::time_point deadline,
                     bool& obs_fold) {
  const http_server_options& o = c.options;
  c.io.expires_at(deadline);
  for (;;) {
    // Empty lines before a request are ignored (RFC 9112 2.2).
    for (int skipped = 0; skipped < 4 && c.buffer.size() >= 2; ++skipped) {
      const auto* data = static_cast<const char*>(c.buffer.data().data());
      if (data[0] != '\r' || data[1] != '\n') break;
      c.buffer.consume(2);
    }
    const auto* data = static_cast<const char*>(c.buffer.data().data());
    const std::size_t size = c.buffer.size();
    if (size > 0) {
      const std::size_t line_window = std::min(size, o.max_request_line + 2);
      if (std::memchr(data, '\n', line_window) == nullptr && size >= o.max_request_line + 2) return 414;
      error_code ec;
      const std::size_t used = parser.put(boost::asio::const_buffer(data, size), ec);
      if (!ec) {
        obs_fold = has_obs_fold({data, used});
        c.buffer.consume(used);
        c.io.expires_never();
        return header_ok;
      }
      if (ec != http::error::need_more) {
        if (ec == http::error::header_limit && std::memchr(data, '\n', size) == nullptr) return 414;
        return status_for(ec, {data, size});
      }
    }
    const std::size_t room = c.buffer.max_size() - size;
    if (room == 0) return 431;
    error_code ec;
    // Start small and read into what the buffer has: a typical request header
    // fits in one small read, and an idle connection (a held long poll) keeps
    // only a small buffer touched.
    const std::size_t want = std::max(header_chunk, c.buffer.capacity() - size);
    const std::size_t n = c.io.read_some(c.buffer.prepare(std::min({room, want, read_chunk})), ec);
    if (ec) {
      // A request begun and left unfinished in time is answered; one never
      // begun (or a client gone) just closed.
      if (ec == boost::beast::error::timeout && size > 0) return 408;
      return header_quiet_close;
    }
    c.buffer.commit(n);
  }
}

// Checks a parsed header for what Beast accepts but a server should refuse
// (request smuggling shapes, HTTP/2+, unknown expectations). 0 if fine.
unsigned check_request(const http_exchange& x, bool obs_fold, std::string& why) {
  const auto& req = x.parser.get();
  if (obs_fold) return why = "obsolete line folding in the header", 400;
  const std::size_t lengths = req.count(http::field::content_length);
  if (lengths > 1 ||
      (lengths == 1 && req[http::field::content_length].find(',') != boost::beast::string_view::npos)) {
    return why = "more than one Content-Length", 400;
  }
  const std::size_t codings = req.count(http::field::transfer_encoding);
  if (codings > 0) {
    if (codings > 1 || !boost::beast::iequals(req[http::field::transfer_encoding], "chunked")) {
      return why = "only \"Transfer-Encoding: chunked\" is accepted", 400;
    }
  }
  const std::size_t hosts = req.count(http::field::host);
  if (hosts > 1 || (hosts == 0 && req.version() == 11))
    return why = "an HTTP/1.1 request needs one Host", 400;
  return 0;
}

void report_failure(const http_exchange& x, const char* what) {
  detail::report_error("greenev: http_server: handler failed on " + std::string(x.request.method()) + " " +
                       std::string(x.request.target()) + " from " + x.conn.peer.to_string() + ": " + what);
}

// Reads and drops the rest of an unread request body, so that the connection
// can carry the next request. False if it cannot (too much, or an error).
[[gnu::noinline]] bool drain_body(http_exchange& x) {
  if (x.parser.is_done()) return true;
  if (x.body_error != 0 || (x.expect_continue && !x.continue_sent)) return false;
  char sink[4096];
  std::size_t dropped = 0;
  try {
    while (const std::size_t n = x.read_body_some(sink)) {
      dropped += n;
      if (dropped > drain_bytes) return false;
    }
  } catch (const http_error&) {
    return false;
  }
  return true;
}

// Runs the handler for one request and completes its response. Returns
// whether the connection may carry another request.
bool run_exchange(http_server_state& s, http_exchange& x) {
  s.requests.fetch_add(1, std::memory_order_relaxed);
  try {
    s.handler(x.request, x.response);
    x.finish();
  } catch (const http_error& error) {
    // From a body read (x.body_error) or thrown by the handler on purpose.
    if (!x.started) x.send_error(error.status(), x.body_error != 0 ? std::string_view() : error.what());
    return false;
  } catch (const std::exception& error) {
    if (!x.send_failed) report_failure(x, error.what());
    if (!x.started) x.send_error(500, {});
    return false;
  }
  if (!x.keep_alive || x.broken) return false;
  return drain_body(x);
}

// The connection's registration with the registry, for stop().
class registration {
 public:
  registration(detail::http_registry& r, http_connection& c)
      : registry_(r), connection_(c), home_(&hub::current()) {
    const std::lock_guard<std::mutex> hold(registry_.lock);
    registry_.live[home_].insert(&connection_);
  }
  registration(const registration&) = delete;
  registration& operator=(const registration&) = delete;
  ~registration() {
    const std::lock_guard<std::mutex> hold(registry_.lock);
    const auto it = registry_.live.find(home_);
    it->second.erase(&connection_);
    if (it->second.empty()) registry_.live.erase(it);
  }

 private:
  detail::http_registry& registry_;
  http_connection& connection_;
  hub* home_;
};

// Serves requests on `c` until it closes (see the top of this file).
void serve_requests(http_server_state& s, http_connection& c, clock::time_point accepted_at) {
  const http_server_options& o = s.options;
  bool first = true;
  for (;;) {
    if (c.buffer.size() == 0) {
      // Idle: waiting for the first byte of a request. stop() may close it now.
      if (s.registry->stopping.load()) return;
      c.idle = true;
      c.io.expires_at(first ? deadline_after(accepted_at, o.header_timeout)
                            : deadline_after(clock::now(), o.keep_alive_timeout));
      error_code ec;
      const std::size_t n = c.io.read_some(c.buffer.prepare(read_chunk), ec);
      c.idle = false;
      if (ec) return;
      c.buffer.commit(n);
    }
    // When the request's first byte came: now, pipelined or after the idle read.
    const clock::time_point header_start = first ? accepted_at : clock::now();
    first = false;
    detail::http_request_parser parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_bytes, UINT32_MAX)));
    parser.body_limit(o.max_body_bytes ? boost::optional<std::uint64_t>(*o.max_body_bytes)
                                       : boost::optional<std::uint64_t>());
    bool obs_fold = false;
    const unsigned header_status =
        read_header(c, parser, deadline_after(header_start, o.header_timeout), obs_fold);
    if (header_status == header_quiet_close) return;
    if (header_status != header_ok) {
      detail::send_simple_response(c, header_status, 11, {});
      close_gracefully(c);
      return;
    }
    http_exchange x(c, parser, *s.registry);
    std::string why;
    unsigned status = check_request(x, obs_fold, why);
    if (status == 0 && parser.get().version() == 11) {
      if (const auto expect = parser.get().find(http::field::expect); expect != parser.get().end()) {
        if (boost::beast::iequals(expect->value(), "100-continue")) {
          x.expect_continue = true;
        } else {
          status = 417;
          why = "only \"Expect: 100-continue\" is understood";
        }
      }
    }
    if (status != 0) {
      x.send_error(status, why);
      close_gracefully(c);
      return;
    }
    if (!run_exchange(s, x)) {
      if (!x.broken) close_gracefully(c);
      return;
    }
    if (s.registry->stopping.load()) return;
  }
}

void serve_connection(http_server_state& s, socket& accepted, const address& peer) {
  const http_server_options& o = s.options;
  const clock::time_point accepted_at = clock::now();
  std::unique_ptr<byte_stream> stream;
  try {
    accepted.set_timeout(o.header_timeout);
    if (o.tls) {
      try {
        stream = std::make_unique<byte_stream_of<tls_socket>>(
            o.tls->wrap_socket(std::move(accepted), {.handshake_timeout = o.header_timeout}));
      } catch (const std::exception& error) {
        // Once per connection: a plain-HTTP client on the HTTPS port, TLS garbage, a stall.
        detail::report_error("greenev: http_server: TLS handshake with " + peer.to_string() +
                             " failed: " + error.what());
        return;
      }
    } else if (o.wrap) {
      stream = o.wrap(std::move(accepted));
      if (!stream) throw std::logic_error("http_server_options::wrap returned no stream");
    } else {
      stream = std::make_unique<byte_stream_of<socket>>(std::move(accepted));
    }
  } catch (const std::system_error&) {
    return;
  } catch (const timeout_error&) {
    return;
  } catch (const std::exception& error) {
    detail::report_error("greenev: http_server: setting up the connection from " + peer.to_string() +
                         " failed: " + error.what());
    return;
  }
  s.open.fetch_add(1, std::memory_order_relaxed);
  const auto count = detail::scope_exit([&s] { s.open.fetch_sub(1, std::memory_order_relaxed); });
  http_connection c(*stream, peer, o);
  c.owner = &stream;  // an upgrade takes the stream (web/src/websocket.cpp)
  c.buffer = boost::beast::flat_buffer(o.max_header_bytes + read_chunk);
  const registration registered(*s.registry, c);

  // Errors of the stream outside a handler (a TLS stream's own exceptions) end
  // this connection only.
  try {
    serve_requests(s, c, accepted_at);
  } catch (const std::exception& error) {
    detail::report_error("greenev: http_server: the connection from " + peer.to_string() +
                         " failed: " + error.what());
  }
}

void check_options(const http_server_options& o) {
  if (o.tls && o.wrap) throw std::invalid_argument("greenev: http_server: give tls or wrap, not both");
  if (o.tls && o.tls->role() != tls_role::server) {
    throw std::invalid_argument("greenev: http_server: the tls context must be a server context");
  }
  if (o.max_request_line == 0 || o.max_header_bytes == 0) {
    throw std::invalid_argument(
        "greenev: http_server: max_request_line and max_header_bytes must be at least 1");
  }
  if (o.max_header_bytes > UINT32_MAX) {
    throw std::invalid_argument("greenev: http_server: max_header_bytes must fit in 32 bits");
  }
}

stream_server_options stream_options(const http_server_options& o) {
  return {.max_connections = o.max_connections, .backlog = o.backlog, .workers = o.workers, .no_delay = true};
}

std::shared_ptr<http_server_state> make_state(http_server::handler_type handler,
                                              http_server_options options) {
  if (!handler) throw std::invalid_argument("greenev: http_server needs a handler");
  check_options(options);
  auto state = std::make_shared<http_server_state>();
  state->options = std::move(options);
  state->handler = std::move(handler);
  return state;
}

stream_server::handler_type connection_handler(http_server_state& s) {
  return [&s](socket& connection, const address& peer) { serve_connection(s, connection, peer); };
}

// Closes the idle connections of `home` (runs on home's thread).
void close_idle(detail::http_registry& registry, hub* home) {
  std::vector<http_connection*> idle;
  {
    const std::lock_guard<std::mutex> hold(registry.lock);
    const auto it = registry.live.find(home);
    if (it == registry.live.end()) return;
    for (http_connection* c : it->second) {
      if (c->idle) idle.push_back(c);
    }
  }
  // Only this thread ends its connections, and close() never switches, so
  // each one is still there.
  for (http_connection* c : idle) {
    try {
      c->stream.close();
    } catch (const std::exception&) {  // the fd is released anyway
    }
  }
}

}  // namespace

http_server::http_server(address local, handler_type handler, http_server_options options)
    : state_(make_state(std::move(handler), std::move(options))) {
  state_->server =
      std::make_unique<stream_server>(local, connection_handler(*state_), stream_options(state_->options));
}

http_server::http_server(socket listener, handler_type handler, http_server_options options)
    : state_(make_state(std::move(handler), std::move(options))) {
  state_->server = std::make_unique<stream_server>(std::move(listener), connection_handler(*state_),
                                                   stream_options(state_->options));
}

http_server::~http_server() {
  if (state_ == nullptr || !state_->server->started()) return;
  try {
    stop(0.0);
  } catch (...) {  // destructors do not throw; stop() only fails if the hub is going away
  }
}

void http_server::start() {
  state_->registry->stopping.store(false);
  state_->server->start();
}

void http_server::serve_forever() {
  if (!state_->server->started() && !state_->server->stopped()) start();
  state_->server->serve_forever();
}

void http_server::stop(wait_time timeout) {
  stream_server& server = *state_->server;
  if (!server.started()) return;
  const std::shared_ptr<detail::http_registry> registry = state_->registry;
  registry->stopping.store(true);
  // Every thread closes its own idle connections: this one now, the workers
  // from a callback that runs before stream_server's stop request reaches them.
  std::vector<hub*> homes;
  {
    const std::lock_guard<std::mutex> hold(registry->lock);
    for (const auto& [home, connections] : registry->live) homes.push_back(home);
  }
  hub& here = hub::current();
  for (hub* home : homes) {
    if (home == &here) {
      close_idle(*registry, home);
    } else {
      home->run_callback_threadsafe([registry, home] { close_idle(*registry, home); });
    }
  }
  server.stop(timeout);
}

address http_server::local_address() const {
  return state_->server->local_address();
}

bool http_server::started() const noexcept {
  return state_->server->started();
}

std::size_t http_server::connections() const noexcept {
  return state_->open.load(std::memory_order_relaxed);
}

std::uint64_t http_server::requests() const noexcept {
  return state_->requests.load(std::memory_order_relaxed);
}

}  // namespace greenev
