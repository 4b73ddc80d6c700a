// http_request and http_response: the handler's view of one exchange. Reading
// the body and writing the response go through Beast (the parser's
// buffer_body, the serializer, chunk encoding) over the connection's
// beast_stream, so each blocking call parks only the connection's greenlet.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <stdexcept>
#include <string>
#include <system_error>

#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_cat.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "http_exchange.hpp"

namespace greenev {

namespace detail {

namespace {

namespace net = boost::asio;
using boost::system::error_code;

// tchar (RFC 9110 5.6.2).
bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return boost::beast::iequals(boost::beast::string_view(a.data(), a.size()),
                               boost::beast::string_view(b.data(), b.size()));
}

boost::beast::string_view to_beast(std::string_view s) noexcept {
  return {s.data(), s.size()};
}

std::optional<std::uint64_t> parse_length(std::string_view value) noexcept {
  std::uint64_t n = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (error != std::errc() || end != value.data() + value.size() || value.empty()) return std::nullopt;
  return n;
}

bool status_has_body(unsigned status) noexcept {
  return status != 204 && status != 304;
}

// Status for a failed body read.
unsigned body_status(const error_code& ec) noexcept {
  if (ec == http::error::body_limit) return 413;
  if (ec == boost::beast::error::timeout) return 408;
  return 400;
}

}  // namespace

std::string_view http_date() {
  thread_local std::time_t cached_second = -1;
  thread_local char cached[40];
  thread_local std::size_t cached_size = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm utc{};
    gmtime_r(&now, &utc);
    cached_size = std::strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &utc);
    cached_second = now;
  }
  return {cached, cached_size};
}

void check_header(std::string_view name, std::string_view value) {
  if (!is_token(name)) {
    throw std::invalid_argument("greenev: http_response: \"" + std::string(name) +
                                "\" is not a valid header name");
  }
  if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    throw std::invalid_argument("greenev: http_response: the value of header \"" + std::string(name) +
                                "\" contains CR, LF or NUL");
  }
  if (iequals(name, "Transfer-Encoding")) {
    throw std::invalid_argument(
        "greenev: http_response: Transfer-Encoding is set by the server (write() without a length is "
        "chunked)");
  }
}

http_exchange::http_exchange(http_connection& c, http_request_parser& p, const http_registry& r)
    : conn(c), parser(p), registry(r) {
  const std::string_view target = to_std(parser.get().target());
  const std::size_t mark = target.find('?');
  path = target.substr(0, mark);
  query = mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
  head_request = parser.get().method() == http::verb::head;
  head.version(parser.get().version() == 10 ? 10 : 11);
  head.result(http::status::ok);
}

std::size_t http_exchange::read_body_some(std::span<char> out) {
  if (body_error != 0) throw http_error(body_error, body_error_message);
  if (parser.is_done() || out.empty()) return 0;
  if (expect_continue && !continue_sent) {
    continue_sent = true;
    if (!started) {
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      error_code ec;
      conn.io.expires_never();
      http::write(conn.io, go_on, ec);
      if (ec) {
        broken = send_failed = true;
        body_error = 400;
        body_error_message =
            "greenev: http: sending 100 Continue to " + conn.peer.to_string() + " failed: " + ec.message();
        throw http_error(body_error, body_error_message);
      }
    }
  }
  auto& body = parser.get().body();
  body.data = out.data();
  body.size = out.size();
  conn.io.expires_never();
  conn.io.set_read_timeout(conn.options.body_timeout);
  error_code ec;
  while (body.size == out.size() && !parser.is_done()) {
    http::read_some(conn.io, conn.buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) break;
  }
  const std::size_t n = out.size() - body.size;
  body.data = nullptr;
  body.size = 0;
  if (ec) {
    body_error = body_status(ec);
    body_error_message = "greenev: http: reading the request body from " + conn.peer.to_string() + ": " +
                         (body_error == 408 ? std::string("no data within body_timeout") : ec.message());
    throw http_error(body_error, body_error_message);
  }
  return n;
}

void http_exchange::start(http_framing wanted, std::uint64_t length) {
  started = true;
  const unsigned status = head.result_int();
  if (head.find(http::field::date) == head.end()) head.set(http::field::date, to_beast(http_date()));
  if (!conn.options.server_name.empty() && head.find(http::field::server) == head.end()) {
    head.set(http::field::server, conn.options.server_name);
  }
  bool keep = parser.get().keep_alive() && !registry.stopping.load() && body_error == 0;
  if (const auto connection = head.find(http::field::connection); connection != head.end()) {
    if (http::token_list(connection->value()).exists("close")) keep = false;
  }
  // The client waits for "100 Continue" before sending the body; if the
  // handler answers without reading it, the body may or may not follow.
  if (expect_continue && !continue_sent && !parser.is_done()) keep = false;
  if (!status_has_body(status)) {
    framing = http_framing::none;
    head.erase(http::field::content_length);
  } else if (wanted == http_framing::length) {
    framing = http_framing::length;
    declared_length = length;
    head.content_length(length);
  } else if (head.version() == 11) {
    framing = http_framing::chunked;
    head.chunked(true);
  } else {
    framing = http_framing::until_close;
    keep = false;
  }
  keep_alive = keep;
  head.keep_alive(keep);
  head_bytes.clear();
  append_response_head(head, head_bytes);
}

void append_response_head(const http::response_header<>& head, std::string& out) {
  // Beast 1.74's string_view is boost's, which std::string cannot append.
  const auto append = [&out](boost::beast::string_view text) { out.append(text.data(), text.size()); };
  const unsigned version = head.version();
  const unsigned code = head.result_int();
  const std::array<char, 13> start{'H',
                                   'T',
                                   'T',
                                   'P',
                                   '/',
                                   static_cast<char>('0' + version / 10),
                                   '.',
                                   static_cast<char>('0' + version % 10),
                                   ' ',
                                   static_cast<char>('0' + code / 100),
                                   static_cast<char>('0' + code / 10 % 10),
                                   static_cast<char>('0' + code % 10),
                                   ' '};
  out.append(start.data(), start.size());
  const boost::beast::string_view reason = head.reason();
  append(reason.empty() ? http::obsolete_reason(head.result()) : reason);
  out.append("\r\n");
  for (const auto& field : head) {
    append(field.name_string());
    out.append(": ");
    append(field.value());
    out.append("\r\n");
  }
  out.append("\r\n");
}

template <class ConstBufferSequence>
void http_exchange::emit(const ConstBufferSequence& buffers) {
  error_code ec;
  conn.io.expires_never();
  conn.io.set_write_timeout(conn.options.write_timeout);
  net::write(conn.io, buffers, ec);
  if (!ec) return;
  broken = send_failed = true;
  keep_alive = false;
  if (ec == boost::beast::error::timeout) {
    throw timeout_error(&response, conn.options.write_timeout.duration());
  }
  throw std::system_error(ec.value(), std::generic_category(),
                          "greenev: http: sending the response to " + conn.peer.to_string());
}

void http_exchange::send_whole(std::string_view body) {
  if (started) throw std::logic_error("greenev: http_response::send: the response has already started");
  if (!status_has_body(head.result_int()) && !body.empty()) {
    throw std::logic_error("greenev: http_response::send: status " + std::to_string(head.result_int()) +
                           " has no body");
  }
  start(http_framing::length, body.size());
  written = body.size();
  if (head_request || framing == http_framing::none) {
    emit(net::buffer(head_bytes));
  } else {
    emit(std::array<net::const_buffer, 2>{net::buffer(head_bytes), net::buffer(body.data(), body.size())});
  }
  finished = true;
}

void http_exchange::write_part(std::string_view data) {
  if (finished) throw std::logic_error("greenev: http_response::write after finish()");
  const bool first = !started;
  if (first) {
    if (declared_length) {
      start(http_framing::length, *declared_length);
    } else {
      start(http_framing::chunked, 0);
    }
  }
  if (!data.empty() && framing == http_framing::none) {
    throw std::logic_error("greenev: http_response::write: status " + std::to_string(head.result_int()) +
                           " has no body");
  }
  if (framing == http_framing::length && written + data.size() > *declared_length) {
    broken = true;
    throw std::logic_error("greenev: http_response::write: " + std::to_string(written + data.size()) +
                           " bytes exceed the Content-Length of " + std::to_string(*declared_length));
  }
  written += data.size();
  const net::const_buffer header = first ? net::buffer(head_bytes) : net::const_buffer();
  if (data.empty() || head_request) {
    if (first) emit(header);
    return;
  }
  const net::const_buffer payload(data.data(), data.size());
  if (framing == http_framing::chunked) {
    emit(boost::beast::buffers_cat(header, http::make_chunk(payload)));
  } else {
    emit(std::array<net::const_buffer, 2>{header, payload});
  }
}

void http_exchange::finish() {
  if (finished) return;
  if (!started) {
    const std::uint64_t length = declared_length.value_or(0);
    if (length != 0) {
      broken = true;
      throw std::logic_error("greenev: http_response: finished with 0 of " + std::to_string(length) +
                             " declared body bytes");
    }
    start(http_framing::length, 0);
    emit(net::buffer(head_bytes));
    finished = true;
    return;
  }
  finished = true;
  if (framing == http_framing::length && written != *declared_length) {
    broken = true;
    keep_alive = false;
    throw std::logic_error("greenev: http_response: finished with " + std::to_string(written) + " of " +
                           std::to_string(*declared_length) + " declared body bytes");
  }
  if (framing == http_framing::chunked && !head_request) emit(http::make_chunk_last());
}

void send_simple_response(http_connection& c, unsigned status, unsigned version, std::string_view detail,
                          bool header_only) {
  http::response<http::string_body> message{static_cast<http::status>(status), version == 10 ? 10u : 11u};
  message.set(http::field::date, to_beast(http_date()));
  if (!c.options.server_name.empty()) message.set(http::field::server, c.options.server_name);
  message.set(http::field::content_type, "text/plain; charset=utf-8");
  message.keep_alive(false);
  std::string body = std::to_string(status) + " ";
  body += to_std(http::obsolete_reason(static_cast<http::status>(status)));
  if (!detail.empty()) {
    body += ": ";
    body += detail;
  }
  body += '\n';
  message.body() = std::move(body);
  message.prepare_payload();
  error_code ec;
  c.io.expires_never();
  c.io.set_write_timeout(c.options.write_timeout);
  if (header_only) {
    http::response_serializer<http::string_body> serializer{message};
    http::write_header(c.io, serializer, ec);
  } else {
    http::write(c.io, message, ec);
  }
}

void http_exchange::send_error(unsigned status, std::string_view detail) {
  if (status < 400 || status > 599) status = 500;
  started = finished = true;
  keep_alive = false;
  send_simple_response(conn, status, head.version(), detail, head_request);
}

}  // namespace detail

// --- http_request -----------------------------------------------------------------------

std::string_view http_request::method() const noexcept {
  return detail::to_std(x_->parser.get().method_string());
}

std::string_view http_request::target() const noexcept {
  return detail::to_std(x_->parser.get().target());
}

std::string_view http_request::path() const noexcept {
  return x_->path;
}

std::string_view http_request::query() const noexcept {
  return x_->query;
}

unsigned http_request::version() const noexcept {
  return x_->parser.get().version();
}

std::optional<std::string_view> http_request::header(std::string_view name) const {
  const auto& fields = x_->parser.get();
  const auto it = fields.find(detail::to_beast(name));
  if (it == fields.end()) return std::nullopt;
  return detail::to_std(it->value());
}

const boost::beast::http::fields& http_request::headers() const noexcept {
  return x_->parser.get().base();
}

const address& http_request::peer() const noexcept {
  return x_->conn.peer;
}

bool http_request::keep_alive() const noexcept {
  return x_->parser.get().keep_alive();
}

std::optional<std::uint64_t> http_request::content_length() const noexcept {
  if (x_->parser.chunked()) return std::nullopt;
  const auto length = x_->parser.content_length();
  return length ? *length : 0;
}

bool http_request::chunked() const noexcept {
  return x_->parser.chunked();
}

bool http_request::body_done() const noexcept {
  return x_->parser.is_done();
}

std::size_t http_request::read_some(std::span<char> buffer) {
  return x_->read_body_some(buffer);
}

std::string http_request::read_body() {
  std::string body;
  char chunk[16384];
  while (const std::size_t n = read_some(chunk)) body.append(chunk, n);
  return body;
}

// --- http_response ----------------------------------------------------------------------

namespace {

void require_not_started(const detail::http_exchange& x, const char* what) {
  if (x.started) {
    throw std::logic_error(std::string("greenev: http_response::") + what +
                           ": the response has already started");
  }
}

}  // namespace

void http_response::set_status(unsigned status) {
  if (status < 200 || status > 599) {
    throw std::invalid_argument("greenev: http_response::set_status: " + std::to_string(status) +
                                " is not a final status (200..599)");
  }
  require_not_started(*x_, "set_status");
  x_->head.result(status);
}

unsigned http_response::status() const noexcept {
  return x_->head.result_int();
}

void http_response::set_header(std::string_view name, std::string_view value) {
  require_not_started(*x_, "set_header");
  detail::check_header(name, value);
  if (detail::iequals(name, "Content-Length")) {
    const auto length = detail::parse_length(value);
    if (!length) {
      throw std::invalid_argument("greenev: http_response: Content-Length \"" + std::string(value) +
                                  "\" is not a number");
    }
    x_->declared_length = *length;
  }
  x_->head.set(detail::to_beast(name), detail::to_beast(value));
}

void http_response::add_header(std::string_view name, std::string_view value) {
  if (detail::iequals(name, "Content-Length")) return set_header(name, value);
  require_not_started(*x_, "add_header");
  detail::check_header(name, value);
  x_->head.insert(detail::to_beast(name), detail::to_beast(value));
}

void http_response::erase_header(std::string_view name) {
  require_not_started(*x_, "erase_header");
  if (detail::iequals(name, "Content-Length")) x_->declared_length.reset();
  x_->head.erase(detail::to_beast(name));
}

std::optional<std::string_view> http_response::header(std::string_view name) const {
  const auto it = x_->head.find(detail::to_beast(name));
  if (it == x_->head.end()) return std::nullopt;
  return detail::to_std(it->value());
}

void http_response::set_content_length(std::uint64_t length) {
  require_not_started(*x_, "set_content_length");
  x_->declared_length = length;
  x_->head.content_length(length);
}

void http_response::send(std::string_view body) {
  x_->send_whole(body);
}

void http_response::write(std::string_view data) {
  x_->write_part(data);
}

void http_response::finish() {
  x_->finish();
}

bool http_response::started() const noexcept {
  return x_->started;
}

bool http_response::finished() const noexcept {
  return x_->finished;
}

}  // namespace greenev
