// An HTTP/1.1 server running one greenlet per connection (gevent.pywsgi's
// WSGIServer), parsing and serialising with Boost.Beast.
//
//   greenev::http_server server(greenev::address::parse("127.0.0.1", 8080),
//                               [](greenev::http_request& req, greenev::http_response& res) {
//                                 res.set_header("Content-Type", "text/plain");
//                                 res.send("Hello, World!\n");
//                               });
//   server.serve_forever();   // until server.stop() (e.g. from a signal_handler)
//
// The handler runs once per request, in the connection's greenlet, and writes
// the response through `res`: whole (send(), with Content-Length), or streamed
// (write()... then finish() or return), with the Content-Length the handler set
// or else chunked (HTTP/1.1) or until close (HTTP/1.0). Whatever the handler
// does not finish the server finishes when it returns. Reading the request body
// (req.read_some(), req.read_body()) is also blocking-style; a client that
// sent "Expect: 100-continue" gets "100 Continue" when the handler first reads.
// Keep-alive and pipelined requests are served in order on one connection.
// Bad requests are answered (400, 408, 413, 414, 417, 431, 505) and the
// connection closed; an exception escaping the handler is reported through the
// error reporter and answered 500 if no response had started, and the
// connection is closed (docs/errors.md lists them).
//
// Threading: with `workers = N > 1` the handler runs on N threads at once
// (stream_server's SO_REUSEPORT workers); it must be safe to call
// concurrently. Requests and responses belong to their greenlet. Member
// functions of http_server must be called on the thread that created it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <boost/beast/http/fields.hpp>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/socket.hpp>
#include <greenev/tls.hpp>

namespace greenev {

namespace detail {
struct http_exchange;
struct http_server_state;
}  // namespace detail

/// A request the server cannot serve, with the status that answers it:
/// thrown by http_request's body reads (400 malformed, 408 too slow, 413 too
/// large). A handler may throw one too: escaping before the response started,
/// it is answered with its status and message (and not reported).
class http_error : public std::runtime_error {
 public:
  /// `status` is the HTTP status (400..599) that answers it.
  http_error(unsigned status, const std::string& message) : std::runtime_error(message), status_(status) {}
  /// The HTTP status.
  [[nodiscard]] unsigned status() const noexcept { return status_; }

 private:
  unsigned status_;
};

/// A connection's byte stream as the server sees it: greenev::socket's member
/// names behind virtual calls, so that another stream (TLS) can stand in for
/// the accepted socket (http_server_options::wrap). Calls and errors as
/// greenev::socket's.
class byte_stream {
 public:
  virtual ~byte_stream() = default;
  /// socket::recv_into: bytes read, 0 at end of stream. Switches.
  virtual std::size_t recv_into(std::span<char> buffer) = 0;
  /// socket::send: bytes sent (at least 1 unless empty). Switches.
  virtual std::size_t send(std::string_view data) = 0;
  /// socket::sendall. Switches.
  virtual void sendall(std::string_view data) = 0;
  /// socket::shutdown(SHUT_RD / SHUT_WR / SHUT_RDWR).
  virtual void shutdown(int how) = 0;
  /// socket::close: wakes greenlets waiting on the stream (EBADF); idempotent; never switches.
  virtual void close() = 0;
  /// socket::set_timeout: bounds each later blocking call.
  virtual void set_timeout(wait_time timeout) = 0;
};

/// A byte_stream owning a `Stream` with greenev::socket's member names.
template <class Stream>
class byte_stream_of final : public byte_stream {
 public:
  /// Takes `stream` over.
  explicit byte_stream_of(Stream stream) : stream_(std::move(stream)) {}
  /// The stream.
  [[nodiscard]] Stream& get() noexcept { return stream_; }
  std::size_t recv_into(std::span<char> buffer) override { return stream_.recv_into(buffer); }
  std::size_t send(std::string_view data) override { return stream_.send(data); }
  void sendall(std::string_view data) override { stream_.sendall(data); }
  void shutdown(int how) override { stream_.shutdown(how); }
  void close() override { stream_.close(); }
  void set_timeout(wait_time timeout) override { stream_.set_timeout(timeout); }

 private:
  Stream stream_;
};

/// How an http_server runs (designated initializers: `{.workers = 2}`).
struct http_server_options {
  /// Longest request line (method, target, version) in bytes: longer is 414.
  std::size_t max_request_line = 8192;
  /// Longest request header (request line and fields) in bytes: longer is 431.
  std::size_t max_header_bytes = 64 * 1024;
  /// Largest request body in bytes (Content-Length or chunked): larger is 413.
  /// Unlimited if empty.
  std::optional<std::uint64_t> max_body_bytes = 16 * 1024 * 1024;
  /// A request header must arrive whole within this, from its first byte (from
  /// the accept, for a connection's first request); else 408 and close.
  wait_time header_timeout = 30.0;
  /// The longest wait for the next piece of a request body (each read).
  wait_time body_timeout = 30.0;
  /// How long a kept-alive connection may wait for its next request before
  /// it is closed (a slowloris client costs one idle greenlet this long).
  wait_time keep_alive_timeout = 15.0;
  /// The longest wait for the client to take more of a response (each send).
  wait_time write_timeout = 30.0;
  /// The Server header's value ("" sends none).
  std::string server_name = "greenev";
  /// Threads, each with a hub and a SO_REUSEPORT listener (stream_server).
  unsigned workers = 1;
  /// At most this many connections at once per thread; accepting pauses
  /// while full. Unlimited if empty.
  std::optional<std::size_t> max_connections{};
  /// listen(2) backlog.
  int backlog = 1024;
  /// Turns each accepted socket into the stream HTTP is spoken over, in the
  /// connection's greenlet (a TLS handshake would go here); the socket's
  /// timeout is header_timeout meanwhile. Empty: the socket itself. An
  /// exception from it closes the connection (std::system_error and
  /// timeout_error quietly, others reported).
  std::function<std::unique_ptr<byte_stream>(socket connection)> wrap{};
  /// Serve HTTPS with this server context (tls.hpp): each connection's
  /// handshake runs in its own greenlet within header_timeout. A failed
  /// handshake (a plain-HTTP client, TLS garbage, a timeout) closes that
  /// connection and is reported once through the error reporter; the server
  /// serves on. Not together with `wrap`.
  std::optional<tls_context> tls{};
};

/// One request as the handler sees it: the parsed header and the body as a
/// stream. Belongs to its greenlet; valid during the handler call only.
class http_request {
 public:
  http_request(const http_request&) = delete;
  http_request& operator=(const http_request&) = delete;

  /// The method as sent ("GET").
  [[nodiscard]] std::string_view method() const noexcept;
  /// The request target as sent ("/path?query"), its path ("/path") and its
  /// query ("query", "" without '?').
  ///@{
  [[nodiscard]] std::string_view target() const noexcept;
  [[nodiscard]] std::string_view path() const noexcept;
  [[nodiscard]] std::string_view query() const noexcept;
  ///@}
  /// 11 for HTTP/1.1, 10 for HTTP/1.0.
  [[nodiscard]] unsigned version() const noexcept;
  /// The first field named `name` (case-insensitive), empty if none.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  /// Every field, in order (Beast's container: iterate, find, count, equal_range).
  [[nodiscard]] const boost::beast::http::fields& headers() const noexcept;
  /// The client's address.
  [[nodiscard]] const address& peer() const noexcept;
  /// The client asked to keep the connection (HTTP/1.1 unless "Connection:
  /// close"; HTTP/1.0 with "Connection: keep-alive").
  [[nodiscard]] bool keep_alive() const noexcept;

  /// The body's declared length; empty for a chunked body. 0 without a body.
  [[nodiscard]] std::optional<std::uint64_t> content_length() const noexcept;
  /// True if the body comes chunked.
  [[nodiscard]] bool chunked() const noexcept;
  /// True once the whole body has been read (at once when there is none).
  [[nodiscard]] bool body_done() const noexcept;

  /// Reads the next bytes of the body into `buffer`; returns how many, 0 at
  /// its end. Sends "100 Continue" first if the client expects it. Switches.
  /// Throws http_error: 400 for a malformed body or a client gone mid-body,
  /// 408 after body_timeout without data, 413 past max_body_bytes; the
  /// connection is closed after such an error.
  std::size_t read_some(std::span<char> buffer);
  /// Reads the rest of the body. Switches; throws as read_some().
  [[nodiscard]] std::string read_body();

 private:
  friend struct detail::http_exchange;
  explicit http_request(detail::http_exchange& exchange) noexcept : x_(&exchange) {}
  detail::http_exchange* x_;
};

/// The response to one request. Headers may be set until the response starts
/// (the first write(), send() or finish()). Belongs to its greenlet; valid
/// during the handler call only.
class http_response {
 public:
  http_response(const http_response&) = delete;
  http_response& operator=(const http_response&) = delete;

  /// The status (200 unless set). set_status takes 200..599 (std::invalid_argument
  /// otherwise) and throws std::logic_error once started.
  ///@{
  void set_status(unsigned status);
  [[nodiscard]] unsigned status() const noexcept;
  ///@}
  /// Replaces (set_header) or adds (add_header) a field, or removes every
  /// field of that name (erase_header). Throws std::invalid_argument for a name
  /// that is not an HTTP token or a value with CR, LF or NUL (nothing is sent),
  /// for Transfer-Encoding (the server frames the body) and for a Content-Length
  /// that is not a number (it is set_content_length()); std::logic_error once started.
  ///@{
  void set_header(std::string_view name, std::string_view value);
  void add_header(std::string_view name, std::string_view value);
  void erase_header(std::string_view name);
  ///@}
  /// The first field named `name` (case-insensitive), empty if none.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const;
  /// Declares the body's length for a streamed body (write()). Throws
  /// std::logic_error once started.
  void set_content_length(std::uint64_t length);

  /// Sends the whole response: headers with Content-Length: body.size(), then
  /// `body` (not for HEAD, 204 or 304). Throws std::logic_error if already
  /// started; on a failed send, std::system_error or timeout_error (the client
  /// is gone or too slow; the connection is closed). Switches.
  void send(std::string_view body);
  /// Sends `data` as the next part of the body, starting the response first
  /// (with the declared Content-Length, else chunked on HTTP/1.1, else until
  /// close); write({}) only starts it. Throws std::logic_error past the declared
  /// length, after finish(), or for a body on 204/304; on a failed send as send().
  /// Switches.
  void write(std::string_view data);
  /// Ends the body (the last chunk); starts an empty response if nothing was
  /// sent. Idempotent. Throws std::logic_error if fewer bytes than the declared
  /// length were written (the connection is then closed); on a failed send as
  /// send(). Switches.
  void finish();
  /// True once the headers went out (or were attempted).
  [[nodiscard]] bool started() const noexcept;
  /// True once finish() (or send()) completed.
  [[nodiscard]] bool finished() const noexcept;

 private:
  friend struct detail::http_exchange;
  explicit http_response(detail::http_exchange& exchange) noexcept : x_(&exchange) {}
  detail::http_exchange* x_;
};

/// An HTTP/1.1 server on a stream_server (see the top of this file).
class http_server {
 public:
  /// Runs once per request (see the top of this file). May switch and throw.
  using handler_type = std::function<void(http_request& request, http_response& response)>;

  /// A server that will listen on `local` (port 0: any free port). Nothing
  /// is bound until start(). Throws std::invalid_argument for an empty handler
  /// or bad options (zero workers or limits, workers > 1 on a non-TCP address).
  http_server(address local, handler_type handler, http_server_options options = {});
  /// A server on a socket that is already bound and listening (workers must be 1).
  http_server(socket listener, handler_type handler, http_server_options options = {});

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;
  /// stop(0) if still serving.
  ~http_server();

  /// Binds and listens, and starts accepting (and the worker threads). As
  /// stream_server::start(): throws std::system_error if binding fails.
  void start();
  /// start() unless started, then waits until stop() is called. Switches.
  void serve_forever();
  /// Graceful stop: stops accepting, closes idle kept-alive connections, lets
  /// requests in flight finish (their responses say "Connection: close") for
  /// up to `timeout`, then kills what is left. Idempotent. Switches.
  void stop(wait_time timeout = 1.0);

  /// The bound address (the real port after binding port 0); empty before start().
  [[nodiscard]] address local_address() const;
  /// Serving: started and not stopped since.
  [[nodiscard]] bool started() const noexcept;
  /// Connections open now, on every thread.
  [[nodiscard]] std::size_t connections() const noexcept;
  /// Requests whose handler was called so far, on every thread.
  [[nodiscard]] std::uint64_t requests() const noexcept;

 private:
  std::shared_ptr<detail::http_server_state> state_;
};

}  // namespace greenev
