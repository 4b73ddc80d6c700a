// Private: one connection's state and one request/response exchange on it,
// shared by http_server.cpp (the connection loop) and http_message.cpp (what
// http_request and http_response do).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>

#include <greenev/beast_stream.hpp>
#include <greenev/http_server.hpp>
#include <greenev/server.hpp>

namespace greenev::detail {

namespace http = boost::beast::http;

using http_io = beast_stream<byte_stream>;
using http_request_parser = http::request_parser<http::buffer_body>;

inline std::string_view to_std(boost::beast::string_view s) noexcept {
  return {s.data(), s.size()};
}

struct http_connection;

// The connections open on each thread, so that stop() can close the idle ones
// on the thread that owns them. Shared with the callbacks stop() queues on
// worker hubs, which may run after the server is gone.
struct http_registry {
  std::mutex lock;
  std::unordered_map<hub*, std::unordered_set<http_connection*>> live;
  std::atomic<bool> stopping{false};
};

// One connection: its stream, the Beast adapter, and the read buffer that
// keeps bytes read past a request (the next pipelined request).
struct http_connection {
  http_connection(byte_stream& s, const address& p, const http_server_options& o)
      : stream(s), io(s), peer(p), options(o) {}
  byte_stream& stream;
  http_io io;
  boost::beast::flat_buffer buffer;
  const address& peer;
  const http_server_options& options;
  bool idle = false;  // waiting for a request's first byte: stop() may close it
  // The owner of `stream`, which an upgrade (websocket::accept) takes over;
  // the loop then touches the connection no more.
  std::unique_ptr<byte_stream>* owner = nullptr;
};

// How the response body is delimited, decided when it starts.
enum class http_framing { length, chunked, until_close, none };

// One request and its response.
struct http_exchange {
  http_exchange(http_connection& c, http_request_parser& p, const http_registry& r);
  // The exchange behind a request (for websocket::accept).
  static http_exchange& of(const http_request& request) noexcept { return *request.x_; }

  http_connection& conn;
  http_request_parser& parser;
  const http_registry& registry;
  http_request request{*this};
  http_response response{*this};

  // The request.
  std::string_view path;
  std::string_view query;
  bool head_request = false;
  bool expect_continue = false;
  bool continue_sent = false;
  unsigned body_error = 0;  // the status of a failed body read (then the connection closes)
  std::string body_error_message;

  // The response.
  http::response<http::empty_body> head;
  std::optional<std::uint64_t> declared_length;
  std::uint64_t written = 0;
  http_framing framing = http_framing::none;
  bool started = false;
  bool finished = false;
  bool broken = false;       // a send failed, or the body was cut short: close after
  bool send_failed = false;  // the client is gone or too slow (not the handler's fault)
  bool keep_alive = false;
  std::string head_bytes;

  // Reads body bytes (see http_request::read_some).
  std::size_t read_body_some(std::span<char> out);
  // Starts the response: fixes the framing and keep-alive, serialises the header into head_bytes.
  void start(http_framing wanted, std::uint64_t length);
  // Writes `buffers` (header and/or body) to the client; throws on failure.
  template <class ConstBufferSequence>
  void emit(const ConstBufferSequence& buffers);
  void send_whole(std::string_view body);
  void write_part(std::string_view data);
  void finish();
  // A complete error response (no handler involved), Connection: close.
  void send_error(unsigned status, std::string_view detail);
};

// Sends a small complete response with Connection: close; errors ignored.
void send_simple_response(http_connection& c, unsigned status, unsigned version, std::string_view detail,
                          bool header_only = false);

// Appends `head` as Beast's response serializer writes it: "HTTP/1.1 200 OK\r\n" (the
// reason as set, else the standard one), each field as "Name: value\r\n" in order, then
// "\r\n". Written directly: walking the serializer's buffer sequence cost about 6% of a
// keep-alive hello-world request's CPU (docs/design.md).
void append_response_head(const http::response_header<>& head, std::string& out);

// The Date header's value now (RFC 9110 IMF-fixdate), cached per thread per second.
std::string_view http_date();

// Checks a header for http_response: throws std::invalid_argument.
void check_header(std::string_view name, std::string_view value);

}  // namespace greenev::detail
